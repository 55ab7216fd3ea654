// RoPE tables against closed forms written out independently here.
import { inverseFrequencies, type RopeSpec, ropeTables } from "@moeq/models";
import { describe, expect, it } from "vitest";

const base = (rd: number, theta: number) => Array.from({ length: rd / 2 }, (_, i) => 1 / theta ** ((2 * i) / rd));
const close = (a: ArrayLike<number>, b: ArrayLike<number>, tol = 1e-6) => {
  expect(a.length).toBe(b.length);
  for (let i = 0; i < a.length; i++)
    expect(Math.abs(a[i] - b[i])).toBeLessThanOrEqual(tol * Math.max(1, Math.abs(b[i])));
};
const spec = (scaling: RopeSpec["scaling"], rd = 16, theta = 10000): RopeSpec => ({
  theta,
  rotaryDim: rd,
  interleaved: false,
  scaling,
});

describe("RoPE frequencies", () => {
  it("default: θ^(−2i/d), cos/sin of p·f", () => {
    const t = ropeTables(spec({ type: "default" }), 5);
    const f = base(16, 10000);
    close(
      t.cos.subarray(3 * 8, 4 * 8),
      f.map((x) => Math.cos(3 * x)),
    );
    close(
      t.sin.subarray(4 * 8, 5 * 8),
      f.map((x) => Math.sin(4 * x)),
    );
  });
  it("linear divides the frequencies by the factor", () => {
    close(
      inverseFrequencies(spec({ type: "linear", factor: 4 }), 10).invFreq,
      base(16, 10000).map((x) => x / 4),
    );
  });
  it("dynamic NTK is the default up to the original length, then grows the base", () => {
    const s = spec({ type: "dynamic", factor: 2, originalMax: 32 });
    close(inverseFrequencies(s, 32).invFreq, base(16, 10000));
    const grown = 10000 * ((2 * 64) / 32 - 1) ** (16 / 14);
    close(inverseFrequencies(s, 64).invFreq, base(16, grown));
  });
  it("NTK-alpha (Hunyuan) scales the base by α^(d/(d−2))", () => {
    close(inverseFrequencies(spec({ type: "ntk_alpha", alpha: 1000 }), 8).invFreq, base(16, 10000 * 1000 ** (16 / 14)));
  });
  it("llama3 keeps high frequencies, divides low ones, blends in between", () => {
    const s = spec({ type: "llama3", factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMax: 64 }, 32, 500000);
    const got = inverseFrequencies(s, 10).invFreq;
    const f = base(32, 500000);
    for (let i = 0; i < f.length; i++) {
      const wl = (2 * Math.PI) / f[i];
      if (wl < 64 / 4) expect(got[i]).toBeCloseTo(f[i], 6);
      else if (wl > 64) expect(got[i] / (f[i] / 8)).toBeCloseTo(1, 5);
      else expect(got[i] > f[i] / 8 && got[i] < f[i]).toBe(true);
    }
  });
  it("YaRN: attention factor 0.1·ln(f)+1 multiplies cos/sin; extremes are extrapolated / interpolated", () => {
    const s = spec({ type: "yarn", factor: 16, originalMax: 64, betaFast: 32, betaSlow: 1, truncate: true }, 32);
    const { invFreq, attentionFactor } = inverseFrequencies(s, 10);
    expect(attentionFactor).toBeCloseTo(0.1 * Math.log(16) + 1, 10);
    const f = base(32, 10000);
    expect(invFreq[0]).toBeCloseTo(f[0], 6);
    expect(invFreq[15] / (f[15] / 16)).toBeCloseTo(1, 5);
    const t = ropeTables(s, 2);
    expect(t.cos[0]).toBeCloseTo(attentionFactor, 6);
    const m = spec({
      type: "yarn",
      factor: 40,
      originalMax: 64,
      betaFast: 32,
      betaSlow: 1,
      mscale: 1,
      mscaleAllDim: 1,
      truncate: true,
    });
    expect(inverseFrequencies(m, 8).attentionFactor).toBe(1);
  });
});
