import { describe, expect, it } from "vitest";
import { native } from "../ts/index.ts";
import type { AttentionOptions } from "../ts/kernels.ts";

function rng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  };
}

// Independent JS oracle: materialise the mask and the full score matrix per (b, h).
function jsAttention(
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  o: Required<Omit<AttentionOptions, "sinks">> & { sinks?: Float32Array },
) {
  const out = new Float64Array(o.batch * o.seqLen * o.outStride);
  const g = o.numHeads / o.numKvHeads;
  for (let b = 0; b < o.batch; b++)
    for (let h = 0; h < o.numHeads; h++) {
      const hk = Math.floor(h / g);
      for (let i = 0; i < o.seqLen; i++) {
        const logits: number[] = [];
        for (let j = 0; j < o.seqLen; j++) {
          const ok =
            (!o.causal || j <= i) &&
            (o.window === 0 || i - j < o.window) &&
            (o.chunk === 0 || Math.floor(i / o.chunk) === Math.floor(j / o.chunk));
          let s = 0;
          for (let d = 0; d < o.headDim; d++)
            s +=
              q[(b * o.seqLen + i) * o.qStride + h * o.headDim + d] *
              k[(b * o.seqLen + j) * o.kStride + hk * o.headDim + d];
          logits.push(ok ? s * o.scale : Number.NEGATIVE_INFINITY);
        }
        const all = o.sinks ? [...logits, o.sinks[h]] : logits;
        const m = Math.max(...all);
        const z = all.reduce((t, s) => t + Math.exp(s - m), 0);
        for (let d = 0; d < o.vHeadDim; d++) {
          let acc = 0;
          for (let j = 0; j < o.seqLen; j++)
            acc += (Math.exp(logits[j] - m) / z) * v[(b * o.seqLen + j) * o.vStride + hk * o.vHeadDim + d];
          out[(b * o.seqLen + i) * o.outStride + h * o.vHeadDim + d] = acc;
        }
      }
    }
  return out;
}

interface Case {
  name: string;
  batch: number;
  seqLen: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  vHeadDim: number;
  causal?: boolean;
  window?: number;
  chunk?: number;
  sinks?: boolean;
  scale?: number;
  pad?: number;
}

const cases: Case[] = [
  { name: "single token", batch: 1, seqLen: 1, numHeads: 1, numKvHeads: 1, headDim: 3, vHeadDim: 3 },
  { name: "causal MHA", batch: 2, seqLen: 13, numHeads: 3, numKvHeads: 3, headDim: 8, vHeadDim: 8 },
  { name: "GQA", batch: 3, seqLen: 17, numHeads: 6, numKvHeads: 2, headDim: 16, vHeadDim: 16 },
  { name: "MQA", batch: 1, seqLen: 9, numHeads: 4, numKvHeads: 1, headDim: 5, vHeadDim: 5 },
  { name: "bidirectional", batch: 2, seqLen: 7, numHeads: 2, numKvHeads: 1, headDim: 4, vHeadDim: 4, causal: false },
  { name: "sliding window", batch: 2, seqLen: 21, numHeads: 4, numKvHeads: 2, headDim: 8, vHeadDim: 8, window: 5 },
  { name: "chunked", batch: 1, seqLen: 23, numHeads: 2, numKvHeads: 2, headDim: 6, vHeadDim: 6, chunk: 8 },
  { name: "sinks", batch: 2, seqLen: 11, numHeads: 4, numKvHeads: 2, headDim: 8, vHeadDim: 8, sinks: true, window: 4 },
  { name: "custom scale", batch: 1, seqLen: 10, numHeads: 2, numKvHeads: 2, headDim: 8, vHeadDim: 8, scale: 0.7 },
  { name: "MLA v dim != qk dim", batch: 2, seqLen: 12, numHeads: 3, numKvHeads: 3, headDim: 24, vHeadDim: 16 },
  { name: "strided rows", batch: 2, seqLen: 9, numHeads: 2, numKvHeads: 1, headDim: 8, vHeadDim: 8, pad: 5 },
];

describe("attentionF32", () => {
  for (const c of cases)
    it(c.name, async () => {
      const r = rng(c.seqLen * 97 + c.numHeads * 13 + c.headDim);
      const pad = c.pad ?? 0;
      const o = {
        batch: c.batch,
        seqLen: c.seqLen,
        numHeads: c.numHeads,
        numKvHeads: c.numKvHeads,
        headDim: c.headDim,
        vHeadDim: c.vHeadDim,
        causal: c.causal ?? true,
        window: c.window ?? 0,
        chunk: c.chunk ?? 0,
        scale: c.scale ?? 1 / Math.sqrt(c.headDim),
        qStride: c.numHeads * c.headDim + pad,
        kStride: c.numKvHeads * c.headDim + pad,
        vStride: c.numKvHeads * c.vHeadDim + pad,
        outStride: c.numHeads * c.vHeadDim + pad,
        sinks: c.sinks ? Float32Array.from({ length: c.numHeads }, () => r() * 4) : undefined,
      };
      const rows = c.batch * c.seqLen;
      const q = Float32Array.from({ length: rows * o.qStride }, () => r() * 3);
      const k = Float32Array.from({ length: rows * o.kStride }, () => r() * 3);
      const v = Float32Array.from({ length: rows * o.vStride }, () => r() * 3);
      const fast = new Float32Array(rows * o.outStride);
      const sync = new Float32Array(rows * o.outStride);
      const ref = new Float32Array(rows * o.outStride);
      await native.attentionF32(q, k, v, fast, o);
      native.attentionF32Sync(q, k, v, sync, o);
      native.attentionF32Ref(q, k, v, ref, o);
      const want = jsAttention(q, k, v, o);
      for (let i = 0; i < want.length; i++) {
        expect(Math.abs(ref[i] - want[i])).toBeLessThan(1e-5);
        expect(Math.abs(fast[i] - want[i])).toBeLessThan(2e-5);
      }
      expect(Array.from(sync)).toEqual(Array.from(fast));
    });
  it("rejects numHeads not a multiple of numKvHeads", () => {
    const x = new Float32Array(64);
    expect(() =>
      native.attentionF32Sync(x, x, x, x, { batch: 1, seqLen: 2, numHeads: 3, numKvHeads: 2, headDim: 4 }),
    ).toThrow(/multiple/);
  });
  it("rejects a short q buffer", () => {
    const x = new Float32Array(64);
    expect(() =>
      native.attentionF32Sync(new Float32Array(3), x, x, x, { batch: 1, seqLen: 2, numHeads: 2, headDim: 4 }),
    ).toThrow(/q is too short/);
  });
});
