// scaleDtype: each group's scale is rounded to the dtype a checkpoint stores it in before the zero
// point, codes and dequant (and, in GPTQ, the error feedback) use it.
import { describe, expect, it } from "vitest";
import {
  GptqNumericalError,
  gptq,
  IntQuantInputError,
  quantizeIntRtn,
  roundScale,
  type ScaleDtype,
} from "../src/index.ts";
import { rng } from "./int-fixtures.ts";

// Representability from the bits, independent of the conversion routines under test.
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
function exactIn(v: number, dtype: ScaleDtype): boolean {
  if (!(v > 0) || !Number.isFinite(v) || Math.fround(v) !== v) return false;
  if (dtype === "f32") return true;
  if (dtype === "bf16") {
    f32[0] = v;
    return (u32[0] & 0xffff) === 0;
  }
  if (v > 65504) return false;
  const quantum = 2 ** Math.max(Math.floor(Math.log2(v)) - 10, -24); // 11 significant bits; subnormals 2^-24
  return Number.isInteger(v / quantum);
}

/** What libs/formats' readers decode: f32((code − zero)·stored scale). */
function readerDequant(
  r: { codes: Uint8Array; scales: Float32Array; zeros: Int32Array; gIdx: Int32Array },
  rows: number,
  cols: number,
) {
  const nG = r.scales.length / rows;
  return Float32Array.from({ length: rows * cols }, (_, i) => {
    const g = Math.floor(i / cols) * nG + r.gIdx[i % cols];
    return Math.fround((r.codes[i] - r.zeros[g]) * r.scales[g]);
  });
}

describe("roundScale on hand-worked values (RNE, as PyTorch casts)", () => {
  it("bf16 keeps 8 significant bits, ties to even", () => {
    expect(roundScale(1 + 2 ** -8, "bf16")).toBe(1); // tie → even mantissa 0
    expect(roundScale(1 + 3 * 2 ** -8, "bf16")).toBe(1 + 2 ** -6); // tie → even mantissa 2
    expect(roundScale(1 + 2 ** -8 + 2 ** -20, "bf16")).toBe(1 + 2 ** -7);
    expect(roundScale(1 / 255, "bf16")).toBe(2 ** -8 * (1 + 2 ** -7)); // 1.0039 is past the half step
  });
  it("f16 keeps 11 significant bits, subnormals on 2^-24, underflow to the smallest, overflow to Infinity", () => {
    expect(roundScale(1 + 2 ** -11, "f16")).toBe(1);
    expect(roundScale(1 + 3 * 2 ** -11, "f16")).toBe(1 + 2 ** -9);
    expect(roundScale(3 * 2 ** -25, "f16")).toBe(2 ** -23); // subnormal tie → even
    expect(roundScale(2 ** -30, "f16")).toBe(2 ** -24); // would be 0
    expect(roundScale(65519, "f16")).toBe(65504);
    expect(roundScale(65520, "f16")).toBe(Number.POSITIVE_INFINITY);
  });
  it("f32 rounds the f64 value once", () => {
    expect(roundScale(0.1, "f32")).toBe(Math.fround(0.1));
    expect(roundScale(2 / 15, "f32")).toBe(Math.fround(2 / 15));
  });
});

describe("quantizeIntRtn with a narrow scale dtype", () => {
  it("asymmetric 8-bit: a scale rounded down clamps the zero point (hand-worked)", () => {
    // scale = x/255 ≈ 2^-8·1.0038 → bf16 2^-8 (rounded down); −min/scale ≈ 255.97 → 256 → zero
    // clamps to 255; −x → round(−255.97) + 255 = −1 → code 0 → dequant −255·2^-8
    const x = Math.fround(255 * 2 ** -8 * 1.0038);
    const r = quantizeIntRtn(Float32Array.of(-x, 0), 1, 2, {
      bits: 8,
      groupSize: -1,
      symmetric: false,
      clip: "minmax",
      scaleDtype: "bf16",
    });
    expect(Array.from(r.scales)).toEqual([2 ** -8]);
    expect(Array.from(r.zeros)).toEqual([255]);
    expect(Array.from(r.codes)).toEqual([0, 255]);
    expect(Array.from(r.dequant)).toEqual([-255 * 2 ** -8, 0]);
  });

  for (const scaleDtype of ["f32", "bf16", "f16"] as const)
    for (const clip of ["minmax", "mse"] as const)
      it(`${scaleDtype} ${clip}: scales exact in the dtype, dequant = what a reader decodes`, () => {
        const r = rng(scaleDtype.length * 17 + clip.length);
        const [rows, cols] = [13, 101];
        // includes rows of tiny weights, whose f16 scales are subnormal
        const w = Float32Array.from(
          { length: rows * cols },
          (_, i) => (r() - 0.5) * (Math.floor(i / cols) % 4 === 3 ? 1e-5 : 0.2),
        );
        for (const cfg of [
          { bits: 4, groupSize: 32, symmetric: true },
          { bits: 3, groupSize: -1, symmetric: false },
          { bits: 8, groupSize: 16, symmetric: false },
        ]) {
          const q = quantizeIntRtn(w, rows, cols, { ...cfg, clip, scaleDtype });
          for (const s of q.scales) expect(exactIn(s, scaleDtype), `scale ${s}`).toBe(true);
          expect(Buffer.from(q.dequant.buffer).equals(Buffer.from(readerDequant(q, rows, cols).buffer))).toBe(true);
        }
      });
});

describe("RTN (TypeScript) and GPTQ with H = I (C++) round scales identically", () => {
  const configs = [
    { rows: 7, cols: 70, bits: 4, groupSize: 32, symmetric: true },
    { rows: 5, cols: 129, bits: 3, groupSize: -1, symmetric: false },
    { rows: 3, cols: 300, bits: 8, groupSize: 128, symmetric: false },
    { rows: 6, cols: 45, bits: 2, groupSize: 9, symmetric: false },
  ];
  for (const scaleDtype of ["f32", "bf16", "f16"] as const)
    for (const cfg of configs)
      it(`${scaleDtype} ${JSON.stringify(cfg)}`, async () => {
        const r = rng(cfg.cols * 3 + cfg.bits);
        // row 1 is tiny so that f16 scales go subnormal
        const w = Float32Array.from(
          { length: cfg.rows * cfg.cols },
          (_, i) => (r() - 0.5) * (Math.floor(i / cfg.cols) === 1 ? 3e-6 : r() < 0.05 ? 1 : 0.1),
        );
        const h = new Float32Array(cfg.cols * cfg.cols);
        for (let i = 0; i < cfg.cols; i++) h[i * cfg.cols + i] = 1;
        const a = quantizeIntRtn(w, cfg.rows, cfg.cols, { ...cfg, clip: "minmax", scaleDtype });
        const b = await gptq(w, cfg.rows, cfg.cols, h, { ...cfg, actOrder: false, scaleDtype });
        expect(Array.from(b.scales)).toEqual(Array.from(a.scales));
        expect(Array.from(b.zeros)).toEqual(Array.from(a.zeros));
        expect(Array.from(b.codes)).toEqual(Array.from(a.codes));
        expect(Buffer.from(b.dequant.buffer).equals(Buffer.from(a.dequant.buffer))).toBe(true);
      });
});

describe("scaleDtype errors name the tensor", () => {
  const huge = Float32Array.from({ length: 16 }, (_, i) => (i % 2 ? 1 : -1) * 1e6);
  const eye = new Float32Array(16 * 16);
  for (let i = 0; i < 16; i++) eye[i * 16 + i] = 1;
  const opts = { bits: 4, groupSize: 8, symmetric: true, name: "model.layers.2.mlp.experts.5.down_proj.weight" };
  it("RTN: a scale beyond f16 is an IntQuantInputError", () => {
    expect(() => quantizeIntRtn(huge, 1, 16, { ...opts, clip: "minmax", scaleDtype: "f16" })).toThrow(
      IntQuantInputError,
    );
    expect(() => quantizeIntRtn(huge, 1, 16, { ...opts, clip: "minmax", scaleDtype: "f16" })).toThrow(
      /experts\.5\.down_proj\.weight: row 0 group 0: scale .* overflows f16/,
    );
    expect(() => quantizeIntRtn(huge, 1, 16, { ...opts, clip: "minmax", scaleDtype: "e4m3" as never })).toThrow(
      /scaleDtype must be one of f32, bf16, f16, got e4m3/,
    );
  });
  it("GPTQ: a scale beyond f16 is a GptqNumericalError", async () => {
    const err = await gptq(huge, 1, 16, eye, { ...opts, actOrder: false, scaleDtype: "f16" }).catch((e) => e);
    expect(err).toBeInstanceOf(GptqNumericalError);
    expect((err as Error).message).toMatch(/experts\.5\.down_proj\.weight: .*overflows f16/);
    await expect(gptq(huge, 1, 16, eye, { ...opts, actOrder: false, scaleDtype: "x" as never })).rejects.toBeInstanceOf(
      IntQuantInputError,
    );
  });
});
