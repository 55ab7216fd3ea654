import { describe, expect, it } from "vitest";
import { native } from "../ts/index.ts";

function rng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  };
}
const fill = (n: number, r: () => number, scale = 4) => Float32Array.from({ length: n }, () => r() * scale);
const shapes: Array<[number, number]> = [
  [1, 1],
  [3, 7],
  [4, 64],
  [17, 33],
  [2, 1001],
];

// Independent JS oracles (plain formulas in f64).
function jsRms(x: Float32Array, w: Float32Array | null, rows: number, cols: number, eps: number, plusOne: boolean) {
  const y = new Float64Array(x.length);
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let c = 0; c < cols; c++) s += x[r * cols + c] ** 2;
    const inv = 1 / Math.sqrt(s / cols + eps);
    for (let c = 0; c < cols; c++) y[r * cols + c] = x[r * cols + c] * inv * (w ? (plusOne ? 1 + w[c] : w[c]) : 1);
  }
  return y;
}
function jsLn(
  x: Float32Array,
  w: Float32Array | null,
  b: Float32Array | null,
  rows: number,
  cols: number,
  eps: number,
) {
  const y = new Float64Array(x.length);
  for (let r = 0; r < rows; r++) {
    const row = Array.from(x.subarray(r * cols, (r + 1) * cols));
    const mean = row.reduce((s, v) => s + v, 0) / cols;
    const v = row.reduce((s, t) => s + (t - mean) ** 2, 0) / cols;
    for (let c = 0; c < cols; c++)
      y[r * cols + c] = ((row[c] - mean) / Math.sqrt(v + eps)) * (w ? w[c] : 1) + (b ? b[c] : 0);
  }
  return y;
}
const maxAbs = (a: Float32Array, b: ArrayLike<number>) => {
  let e = 0;
  for (let i = 0; i < a.length; i++) e = Math.max(e, Math.abs(a[i] - b[i]));
  return e;
};

describe("RMSNorm", () => {
  for (const [rows, cols] of shapes)
    for (const variant of ["weight", "1+weight", "weightless"] as const)
      it(`${variant} ${rows}x${cols}`, () => {
        const r = rng(rows * 101 + cols);
        const x = fill(rows * cols, r);
        const w = variant === "weightless" ? null : fill(cols, r, 2);
        const plusOne = variant === "1+weight";
        const a = new Float32Array(x.length);
        const b = new Float32Array(x.length);
        native.rmsNormF32(x, w, a, rows, cols, 1e-6, plusOne);
        native.rmsNormF32Ref(x, w, b, rows, cols, 1e-6, plusOne);
        const want = jsRms(x, w, rows, cols, 1e-6, plusOne);
        expect(maxAbs(b, want)).toBeLessThan(1e-5);
        expect(maxAbs(a, want)).toBeLessThan(2e-5);
      });
  it("eps matters for a near-zero row", () => {
    const x = new Float32Array(4);
    x[0] = 1e-4;
    const a = new Float32Array(4);
    native.rmsNormF32(x, null, a, 1, 4, 1e-2);
    expect(a[0]).toBeCloseTo(1e-4 / Math.sqrt(1e-8 / 4 + 1e-2), 6);
  });
  it("rejects a short weight", () => {
    expect(() => native.rmsNormF32(new Float32Array(8), new Float32Array(3), new Float32Array(8), 2, 4, 1e-6)).toThrow(
      /weight is shorter/,
    );
  });
});

describe("LayerNorm", () => {
  for (const [rows, cols] of shapes)
    for (const [hasW, hasB] of [
      [true, true],
      [true, false],
      [false, false],
    ] as const)
      it(`w=${hasW} b=${hasB} ${rows}x${cols}`, () => {
        const r = rng(rows * 13 + cols + (hasB ? 5 : 0));
        const x = fill(rows * cols, r, 6).map((v) => v + 3);
        const w = hasW ? fill(cols, r, 2) : null;
        const b = hasB ? fill(cols, r, 2) : null;
        const got = new Float32Array(x.length);
        const ref = new Float32Array(x.length);
        native.layerNormF32(x, w, b, got, rows, cols, 1e-5);
        native.layerNormF32Ref(x, w, b, ref, rows, cols, 1e-5);
        const want = jsLn(x, w, b, rows, cols, 1e-5);
        expect(maxAbs(ref, want)).toBeLessThan(1e-5);
        expect(maxAbs(got, want)).toBeLessThan(5e-5);
      });
});
