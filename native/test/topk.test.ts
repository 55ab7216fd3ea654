import { describe, expect, it } from "vitest";
import { native } from "../ts/index.ts";

function rng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  };
}

describe("topkF32", () => {
  for (const [rows, cols, k] of [
    [1, 1, 1],
    [3, 8, 2],
    [7, 33, 5],
    [16, 257, 8],
    [2, 64, 64],
    [5, 9, 0],
  ] as const)
    it(`${rows}x${cols} k=${k} with many ties`, () => {
      const r = rng(rows * 7 + cols * 3 + k);
      // values on a coarse grid so ties are frequent
      const x = Float32Array.from({ length: rows * cols }, () => Math.round(r() * 6) / 2);
      const i1 = new Int32Array(rows * k);
      const v1 = new Float32Array(rows * k);
      const i2 = new Int32Array(rows * k);
      const v2 = new Float32Array(rows * k);
      native.topkF32(x, rows, cols, k, i1, v1);
      native.topkF32Ref(x, rows, cols, k, i2, v2);
      expect(Array.from(i1)).toEqual(Array.from(i2));
      expect(Array.from(v1)).toEqual(Array.from(v2));
      // independent oracle: JS sort by (value desc, index asc)
      for (let row = 0; row < rows; row++) {
        const order = Array.from({ length: cols }, (_, c) => c).sort(
          (a, b) => x[row * cols + b] - x[row * cols + a] || a - b,
        );
        expect(Array.from(i1.subarray(row * k, (row + 1) * k))).toEqual(order.slice(0, k));
      }
    });
  it("ranks NaN first and the lower index among ties", () => {
    const idx = new Int32Array(3);
    const val = new Float32Array(3);
    native.topkF32(Float32Array.of(1, 2, NaN, 2), 1, 4, 3, idx, val);
    expect(Array.from(idx)).toEqual([2, 1, 3]);
  });
  it("rejects k > cols", () => {
    expect(() => native.topkF32(new Float32Array(4), 1, 4, 5, new Int32Array(5), new Float32Array(5))).toThrow(
      /k must/,
    );
  });
});
