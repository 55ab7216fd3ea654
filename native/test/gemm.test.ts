import { describe, expect, it } from "vitest";
import { native } from "../ts/index.ts";

// Deterministic PRNG so a failure names a reproducible case.
function rng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  };
}
const fill = (n: number, r: () => number) => Float32Array.from({ length: n }, r);

// Plain JS reference, independent of the C++ one.
function jsGemm(a: Float32Array, b: Float32Array, m: number, n: number, k: number, ta: boolean, tb: boolean) {
  const c = new Float64Array(m * n);
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      let acc = 0;
      for (let p = 0; p < k; p++) acc += (ta ? a[p * m + i] : a[i * k + p]) * (tb ? b[j * k + p] : b[p * n + j]);
      c[i * n + j] = acc;
    }
  return c;
}

function maxRelErr(got: Float32Array, want: Float64Array) {
  let scale = 1e-12;
  for (const w of want) scale = Math.max(scale, Math.abs(w));
  let err = 0;
  for (let i = 0; i < want.length; i++) err = Math.max(err, Math.abs(got[i] - want[i]));
  return err / scale;
}

const shapes: Array<[number, number, number]> = [
  [1, 1, 1],
  [3, 5, 7],
  [17, 9, 33],
  [64, 64, 64],
  [127, 65, 31],
  [5, 200, 13],
  [250, 3, 129],
];

describe("gemmF32 (OpenBLAS) against a JS reference", () => {
  for (const [m, n, k] of shapes)
    for (const ta of [false, true])
      for (const tb of [false, true])
        it(`m=${m} n=${n} k=${k} ta=${ta} tb=${tb}`, async () => {
          const r = rng(m * 1000003 + n * 1009 + k + (ta ? 7 : 0) + (tb ? 13 : 0));
          const a = fill(m * k, r);
          const b = fill(k * n, r);
          const c = new Float32Array(m * n);
          await native.gemmF32(a, b, c, m, n, k, ta, tb);
          expect(maxRelErr(c, jsGemm(a, b, m, n, k, ta, tb))).toBeLessThan(1e-5);
          const ref = new Float32Array(m * n);
          native.gemmF32Ref(a, b, ref, m, n, k, ta, tb);
          expect(maxRelErr(ref, jsGemm(a, b, m, n, k, ta, tb))).toBeLessThan(1e-6);
        });

  it("applies alpha and beta", () => {
    const r = rng(42);
    const [m, n, k] = [7, 11, 5];
    const a = fill(m * k, r);
    const b = fill(k * n, r);
    const c0 = fill(m * n, r);
    const c = c0.slice();
    native.gemmF32Sync(a, b, c, m, n, k, false, false, 2, 0.5);
    const want = jsGemm(a, b, m, n, k, false, false).map((v, i) => 2 * v + 0.5 * c0[i]);
    expect(maxRelErr(c, want)).toBeLessThan(1e-5);
  });

  it("rejects buffers smaller than the shape", () => {
    expect(() => native.gemmF32Sync(new Float32Array(5), new Float32Array(6), new Float32Array(6), 2, 3, 3)).toThrow(
      /a is smaller/,
    );
    expect(() =>
      native.gemmF32Sync(new Float64Array(6) as never, new Float32Array(6), new Float32Array(4), 2, 2, 3),
    ).toThrow(/wrong typed array/);
  });
});
