import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { native } from "../ts/index.ts";
import type { WeightDtype } from "../ts/kernels.ts";
import { readSafetensors } from "./gptq_fixtures.ts";

// PyTorch's own decode of every code (libs/tensor/test/data/make_tables.py): the independent oracle.
const tables = readSafetensors(
  join(
    dirname(fileURLToPath(import.meta.url)),
    "..",
    "..",
    "libs",
    "tensor",
    "test",
    "data",
    "torch-tables.safetensors",
  ),
);
const decodeTable: Record<Exclude<WeightDtype, "f32">, Float32Array> = {
  bf16: tables["bf16.decode"].data as Float32Array,
  f16: tables["f16.decode"].data as Float32Array,
  f8_e4m3: tables["f8_e4m3.decode"].data as Float32Array,
};
const bytesPer: Record<WeightDtype, number> = { f32: 4, bf16: 2, f16: 2, f8_e4m3: 1 };

function rng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

// Random stored weight: random finite codes of the dtype (NaN codes excluded), as raw bytes.
function randomWeight(dtype: WeightDtype, count: number, r: () => number): Uint8Array {
  if (dtype === "f32") return new Uint8Array(Float32Array.from({ length: count }, () => r() - 0.5).buffer);
  const table = decodeTable[dtype];
  const codes = table.length;
  const out = new Uint8Array(count * bytesPer[dtype]);
  const view = new DataView(out.buffer);
  for (let i = 0; i < count; i++) {
    let c: number;
    // keep magnitudes moderate so f32 sums stay well-conditioned
    do c = Math.floor(r() * codes);
    while (!Number.isFinite(table[c]) || Math.abs(table[c]) > 64);
    if (bytesPer[dtype] === 2) view.setUint16(i * 2, c, true);
    else out[i] = c;
  }
  return out;
}

function jsDecode(dtype: WeightDtype, bytes: Uint8Array, i: number): number {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (dtype === "f32") return view.getFloat32(i * 4, true);
  if (dtype === "f8_e4m3") return decodeTable.f8_e4m3[bytes[i]];
  return decodeTable[dtype][view.getUint16(i * 2, true)];
}

function jsMixed(
  x: Float32Array,
  w: Uint8Array,
  m: number,
  n: number,
  k: number,
  dtype: WeightDtype,
  transB: boolean,
  scale?: Float32Array,
) {
  const storedCols = transB ? k : n;
  const tiles = Math.ceil(storedCols / 128);
  const y = new Float64Array(m * n);
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      let acc = 0;
      for (let p = 0; p < k; p++) {
        const sr = transB ? j : p;
        const sc = transB ? p : j;
        let wv = jsDecode(dtype, w, sr * storedCols + sc);
        if (scale) wv = Math.fround(wv * scale[Math.floor(sr / 128) * tiles + Math.floor(sc / 128)]);
        acc += x[i * k + p] * wv;
      }
      y[i * n + j] = acc;
    }
  return y;
}

function relErr(got: Float32Array, want: Float64Array) {
  let scale = 1e-12;
  for (const v of want) scale = Math.max(scale, Math.abs(v));
  let err = 0;
  for (let i = 0; i < want.length; i++) err = Math.max(err, Math.abs(got[i] - want[i]));
  return err / scale;
}

const sameValue = (a: number, b: number) => (Number.isNaN(a) && Number.isNaN(b)) || Object.is(a, b);

describe("decodeToF32 matches PyTorch's value of every code", () => {
  for (const dtype of ["bf16", "f16", "f8_e4m3"] as const)
    it(dtype, () => {
      const table = decodeTable[dtype];
      const src = dtype === "f8_e4m3" ? Uint8Array.from(table.keys()) : Uint16Array.from(table.keys());
      const out = new Float32Array(table.length);
      native.decodeToF32(src, dtype, out, table.length);
      let bad = 0;
      for (let i = 0; i < table.length; i++) if (!sameValue(out[i], table[i])) bad++;
      expect(bad).toBe(0);
    });
});

const shapes: Array<[number, number, number]> = [
  [1, 1, 1],
  [3, 5, 7],
  [17, 9, 33],
  [31, 130, 129],
  [4, 300, 257],
  [65, 17, 140],
];

describe("gemmMixed against a JS reference over PyTorch's decode tables", () => {
  for (const dtype of ["f32", "bf16", "f16", "f8_e4m3"] as const)
    for (const [m, n, k] of shapes)
      for (const transB of [true, false])
        it(`${dtype} m=${m} n=${n} k=${k} transB=${transB}`, async () => {
          const r = rng(m * 7919 + n * 104729 + k * 31 + (transB ? 1 : 0) + dtype.length * 1000);
          const x = Float32Array.from({ length: m * k }, () => r() - 0.5);
          const w = randomWeight(dtype, n * k, r);
          const want = jsMixed(x, w, m, n, k, dtype, transB);
          const y = new Float32Array(m * n);
          await native.gemmMixed(x, w, y, m, n, k, dtype, transB);
          expect(relErr(y, want)).toBeLessThan(2e-5);
          const ref = new Float32Array(m * n);
          native.gemmMixedRef(x, w, ref, m, n, k, dtype, transB);
          expect(relErr(ref, want)).toBeLessThan(1e-6);
        });

  for (const transB of [true, false])
    it(`f8_e4m3 with 128×128 block scales (weight_scale_inv), transB=${transB}`, () => {
      const [m, n, k] = [9, 260, 300];
      const r = rng(transB ? 5 : 6);
      const x = Float32Array.from({ length: m * k }, () => r() - 0.5);
      const w = randomWeight("f8_e4m3", n * k, r);
      const [sr, sc] = transB ? [n, k] : [k, n];
      const scale = Float32Array.from({ length: Math.ceil(sr / 128) * Math.ceil(sc / 128) }, () => 0.001 + r() * 0.01);
      const want = jsMixed(x, w, m, n, k, "f8_e4m3", transB, scale);
      const y = new Float32Array(m * n);
      native.gemmMixedSync(x, w, y, m, n, k, "f8_e4m3", transB, scale);
      expect(relErr(y, want)).toBeLessThan(2e-5);
    });

  it("accumulates into y when asked, and works on an unaligned byte view of a larger buffer", () => {
    const [m, n, k] = [5, 33, 70];
    const r = rng(99);
    const x = Float32Array.from({ length: m * k }, () => r() - 0.5);
    const w0 = randomWeight("bf16", n * k, r);
    const big = new Uint8Array(w0.length + 3);
    big.set(w0, 3);
    const w = big.subarray(3); // odd byte offset, as a tensor inside an mmap'd file can be
    const y0 = Float32Array.from({ length: m * n }, () => r());
    const y = y0.slice();
    native.gemmMixedSync(x, w, y, m, n, k, "bf16", true, null, true);
    const want = jsMixed(x, w0, m, n, k, "bf16", true).map((v, i) => v + y0[i]);
    expect(relErr(y, want)).toBeLessThan(2e-5);
  });

  it("decodes an f32 weight stored at an unaligned byte offset", () => {
    const [m, n, k] = [4, 9, 13];
    const r = rng(17);
    const x = Float32Array.from({ length: m * k }, () => r() - 0.5);
    const w0 = randomWeight("f32", n * k, r);
    const big = new Uint8Array(w0.length + 1);
    big.set(w0, 1);
    const y = new Float32Array(m * n);
    native.gemmMixedSync(x, big.subarray(1), y, m, n, k, "f32", true);
    expect(relErr(y, jsMixed(x, w0, m, n, k, "f32", true))).toBeLessThan(2e-5);
  });

  it("runs a batch of independent products (experts) in one call", async () => {
    const r = rng(123);
    const dims: Array<[number, number, number]> = [
      [3, 40, 64],
      [0, 40, 64],
      [11, 7, 129],
      [1, 300, 5],
    ];
    const items = dims.map(([m, n, k]) => ({
      x: Float32Array.from({ length: m * k }, () => r() - 0.5),
      w: randomWeight("f16", n * k, r),
      y: new Float32Array(m * n),
      m,
      n,
      k,
    }));
    await native.gemmMixedBatched(items, "f16", true);
    for (const it of items) expect(relErr(it.y, jsMixed(it.x, it.w, it.m, it.n, it.k, "f16", true))).toBeLessThan(2e-5);
  });

  it("rejects bad shapes, dtypes and buffers with messages naming the operand", () => {
    const x = new Float32Array(6);
    const y = new Float32Array(6);
    expect(() => native.gemmMixedSync(x, new Uint8Array(11), y, 2, 3, 3, "bf16")).toThrow(/w holds 11 bytes/);
    expect(() => native.gemmMixedSync(x, new Uint8Array(18), y, 2, 3, 3, "int4" as never)).toThrow(
      /unknown weight dtype/,
    );
    expect(() => native.gemmMixedSync(x, new Uint8Array(9), y, 2, 3, 3, "f8_e4m3", true, new Float32Array(0))).toThrow(
      /blockScale has 0 values/,
    );
    expect(() => native.gemmMixedSync(new Float32Array(5), new Uint8Array(18), y, 2, 3, 3, "bf16")).toThrow(
      /x is smaller/,
    );
    expect(() => native.gemmMixedBatched([{ x, w: new Uint8Array(1), y, m: 2, n: 3, k: 3 }], "f16")).toThrow(
      /gemmMixedBatched\[0\]: w holds 1 bytes/,
    );
    expect(() => native.gemmMixedSync(x, new Uint8Array(18), y, -2, 3, 3, "bf16")).toThrow(
      /m: expected a non-negative/,
    );
  });

  it("has a kernel pool sized to the cores", () => {
    expect(native.kernelPoolThreads()).toBeGreaterThanOrEqual(1);
  });
});
