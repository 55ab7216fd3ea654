import { describe, expect, it } from "vitest";
import { native } from "../ts/index.ts";

function rng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  };
}

function tables(maxPos: number, rd: number, theta: number) {
  const half = rd / 2;
  const cos = new Float32Array(maxPos * half);
  const sin = new Float32Array(maxPos * half);
  for (let p = 0; p < maxPos; p++)
    for (let i = 0; i < half; i++) {
      const a = p * theta ** ((-2 * i) / rd);
      cos[p * half + i] = Math.cos(a);
      sin[p * half + i] = Math.sin(a);
    }
  return { cos, sin };
}

// Oracle through complex multiplication: pair (a, b) ↦ (a + ib)·e^{iθ}.
function jsRope(
  x: Float32Array,
  pos: Int32Array,
  rows: number,
  heads: number,
  d: number,
  rd: number,
  inter: boolean,
  theta: number,
  stride: number,
) {
  const y = Float64Array.from(x);
  const half = rd / 2;
  for (let r = 0; r < rows; r++)
    for (let h = 0; h < heads; h++)
      for (let i = 0; i < half; i++) {
        const o = r * stride + h * d;
        const [i1, i2] = inter ? [2 * i, 2 * i + 1] : [i, i + half];
        const ang = pos[r] * theta ** ((-2 * i) / rd);
        const a = x[o + i1];
        const b = x[o + i2];
        y[o + i1] = a * Math.cos(ang) - b * Math.sin(ang);
        y[o + i2] = a * Math.sin(ang) + b * Math.cos(ang);
      }
  return y;
}

describe("ropeF32", () => {
  for (const [rows, heads, d, rd] of [
    [1, 1, 2, 2],
    [5, 3, 16, 16],
    [7, 2, 16, 8],
    [11, 4, 30, 10],
    [3, 5, 64, 64],
  ] as const)
    for (const inter of [false, true])
      it(`rows=${rows} heads=${heads} d=${d} rotary=${rd} interleaved=${inter}`, () => {
        const r = rng(rows * 17 + heads * 5 + d + rd + (inter ? 1 : 0));
        const stride = heads * d + 3; // rows live inside a wider buffer (fused projection)
        const x = Float32Array.from({ length: rows * stride }, () => r() * 4);
        const pos = Int32Array.from({ length: rows }, (_, i) => (i * 37) % 50);
        const { cos, sin } = tables(50, rd, 10000);
        const a = Float32Array.from(x);
        const b = Float32Array.from(x);
        native.ropeF32(a, cos, sin, pos, rows, heads, d, rd, inter, stride);
        native.ropeF32Ref(b, cos, sin, pos, rows, heads, d, rd, inter, stride);
        const want = jsRope(x, pos, rows, heads, d, rd, inter, 10000, stride);
        for (let i = 0; i < x.length; i++) {
          expect(Math.abs(a[i] - want[i])).toBeLessThan(2e-5);
          expect(Math.abs(a[i] - b[i])).toBeLessThan(1e-5);
        }
      });
  it("rejects positions outside the table", () => {
    const { cos, sin } = tables(4, 4, 10000);
    expect(() => native.ropeF32(new Float32Array(4), cos, sin, Int32Array.of(4), 1, 1, 4, 4)).toThrow(/outside/);
  });
  it("rejects an odd rotary dim", () => {
    const { cos, sin } = tables(4, 4, 10000);
    expect(() => native.ropeF32(new Float32Array(4), cos, sin, Int32Array.of(0), 1, 1, 4, 3)).toThrow(/even/);
  });
});
