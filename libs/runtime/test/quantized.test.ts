import { quantizeIntRtn } from "@moeq/quant";
import { describe, expect, it } from "vitest";
import { dequantizeInt } from "../src/quantized.ts";

describe("dequantizeInt", () => {
  it.each([
    [5, 64, 32, true],
    [7, 96, 32, false],
    [3, 40, -1, true],
    [9, 48, 16, false],
  ])("matches @moeq/quant's own dequant for %i×%i g%i sym=%s", (rows, cols, groupSize, symmetric) => {
    let s = 12345;
    const w = Float32Array.from({ length: rows * cols }, () => {
      s = (s * 1103515245 + 12345) >>> 0;
      return (s / 2 ** 32 - 0.5) * 0.2;
    });
    const q = quantizeIntRtn(w, rows, cols, { bits: 4, groupSize, symmetric, clip: "minmax" });
    // @moeq/quant multiplies by the f64 scale; stored scales are f32, hence ≤ 1 f32 ulp apart.
    const d = dequantizeInt(q, rows, cols);
    let worst = 0;
    for (let i = 0; i < d.length; i++)
      worst = Math.max(worst, Math.abs(d[i] - q.dequant[i]) / Math.max(1e-12, Math.abs(q.dequant[i])));
    expect(worst).toBeLessThan(2e-7);
    // and a wrong group map is caught: shifting g_idx changes the result
    const shifted = { ...q, gIdx: q.gIdx.map((g) => (g + 1) % (q.scales.length / rows)) };
    if (q.scales.length / rows > 1) expect([...dequantizeInt(shifted, rows, cols)]).not.toEqual([...d]);
  });
});
