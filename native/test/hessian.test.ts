import { describe, expect, it } from "vitest";
import { native } from "../ts/index.ts";

function rng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

// Plain JS Xᵀ·diag(w)·X, independent of the C++ reference.
function jsHessian(x: Float32Array, tokens: number, cols: number, w?: Float32Array) {
  const h = new Float64Array(cols * cols);
  for (let t = 0; t < tokens; t++) {
    const wt = w ? w[t] : 1;
    for (let i = 0; i < cols; i++) {
      const a = wt * x[t * cols + i];
      for (let j = 0; j < cols; j++) h[i * cols + j] += a * x[t * cols + j];
    }
  }
  return h;
}

function relErr(got: ArrayLike<number>, want: Float64Array) {
  let scale = 1e-12;
  for (const v of want) scale = Math.max(scale, Math.abs(v));
  let err = 0;
  for (let i = 0; i < want.length; i++) err = Math.max(err, Math.abs(got[i] - want[i]));
  return err / scale;
}

describe("hessianAccumulate: H += Xᵀ·diag(w)·X", () => {
  const shapes: Array<[number, number]> = [
    [1, 1],
    [7, 3],
    [33, 17],
    [300, 65],
    [1025, 129],
  ];
  for (const [tokens, cols] of shapes)
    for (const weighted of [false, true])
      for (const f64 of [false, true])
        it(`tokens=${tokens} cols=${cols} weighted=${weighted} ${f64 ? "f64" : "f32"}`, async () => {
          const r = rng(tokens * 131 + cols + (weighted ? 7 : 0) + (f64 ? 3 : 0));
          const x = Float32Array.from({ length: tokens * cols }, () => r() * 2 - 1);
          const w = weighted ? Float32Array.from({ length: tokens }, () => (r() < 0.2 ? 0 : r())) : undefined;
          const h = f64 ? new Float64Array(cols * cols) : new Float32Array(cols * cols);
          await native.hessianAccumulate(h, x, tokens, cols, w);
          const want = jsHessian(x, tokens, cols, w);
          expect(relErr(h, want)).toBeLessThan(f64 ? 1e-6 : 2e-5);
          for (let i = 0; i < cols; i++) for (let j = 0; j < i; j++) expect(h[i * cols + j]).toBe(h[j * cols + i]);
          const ref = f64 ? new Float64Array(cols * cols) : new Float32Array(cols * cols);
          native.hessianAccumulateRef(ref, x, tokens, cols, w);
          expect(relErr(ref, want)).toBeLessThan(1e-6);
        });

  it("adds to what the accumulator holds (two batches = one big batch)", () => {
    const [tokens, cols] = [50, 20];
    const r = rng(77);
    const x = Float32Array.from({ length: tokens * cols }, () => r() - 0.5);
    const w = Float32Array.from({ length: tokens }, () => r());
    const h = new Float64Array(cols * cols);
    native.hessianAccumulateSync(h, x.subarray(0, 20 * cols), 20, cols, w.subarray(0, 20));
    native.hessianAccumulateSync(h, x.subarray(20 * cols), 30, cols, w.subarray(20));
    expect(relErr(h, jsHessian(x, tokens, cols, w))).toBeLessThan(1e-6);
  });

  it("rejects negative or non-finite weights and short buffers, naming them", () => {
    const x = new Float32Array(12);
    expect(() => native.hessianAccumulateSync(new Float32Array(9), x, 4, 3, Float32Array.of(1, 1, -0.5, 1))).toThrow(
      /w\[2\] = -0\.5/,
    );
    expect(() =>
      native.hessianAccumulateSync(new Float32Array(9), x, 4, 3, Float32Array.of(1, Number.NaN, 1, 1)),
    ).toThrow(/w\[1\]/);
    expect(() => native.hessianAccumulateSync(new Float32Array(8), x, 4, 3)).toThrow(/h is smaller/);
    expect(() => native.hessianAccumulateSync(new Float32Array(9), x, 5, 3)).toThrow(/x is smaller/);
    expect(() => native.hessianAccumulateSync(new Float32Array(9), x, 4, 3, new Float32Array(3))).toThrow(
      /w is shorter/,
    );
  });
});
