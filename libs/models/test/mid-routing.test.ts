// Mid-architecture routing rules and attention helpers against hand-worked cases (the formulas of
// transformers' GptOssTopKRouter / GraniteMoeTopKGating, Llama4Router, Phi-MoE's sparsemixer in
// eval mode, DBRX's p-norm, Llama 4's temperature tuning and LongRoPE), independent of the code.
import { describe, expect, it } from "vitest";
import { inverseFrequencies, ropeFromConfig } from "../src/blocks/rope.ts";
import { route } from "../src/blocks/routing.ts";
import { applyQTemperature } from "../src/blocks/temperature.ts";
import { ConfigReader } from "../src/config.ts";

const f32 = (xs: number[]) => Float32Array.from(xs);

describe("mid routing rules", () => {
  it("topk_softmax: top-k of the logits, softmax over the selected ones", () => {
    const r = route({ kind: "topk_softmax", topK: 2 }, f32([1, 3, 2, -1]), 1, 4, null);
    expect(Array.from(r.indices)).toEqual([1, 2]);
    const e = Math.exp(-1);
    expect(r.weights[0]).toBeCloseTo(1 / (1 + e), 6);
    expect(r.weights[1]).toBeCloseTo(e / (1 + e), 6);
    expect(Array.from(r.scores).map((x) => +x.toFixed(6))).toEqual([
      0,
      +(1 / (1 + e)).toFixed(6),
      +(e / (1 + e)).toFixed(6),
      0,
    ]);
  });

  it("topk_sigmoid: sigmoid of the selected logits, no renormalisation", () => {
    const r = route({ kind: "topk_sigmoid", topK: 1 }, f32([0.5, -2, 3, 2.9, 0, 1]), 2, 3, null);
    expect(Array.from(r.indices)).toEqual([2, 0]);
    expect(r.weights[0]).toBeCloseTo(1 / (1 + Math.exp(-3)), 6);
    expect(r.weights[1]).toBeCloseTo(1 / (1 + Math.exp(-2.9)), 6);
    expect(r.scores[1 * 3 + 2]).toBe(0);
  });

  it("sparsemixer: masks logits far below the winner, softmax over the rest, two rounds", () => {
    // round 1: m = 2; (2 − 1.99)/2 = 0.005 ≤ 0.02 kept; 0.5 and −1 masked → w = 1/(1 + e^−0.01)
    // round 2: m = 1.99; (1.99 − 0.5)/1.99 > 0.02 and 3/1.99 > 0.02 masked → w = 1
    const r = route({ kind: "sparsemixer", topK: 2, jitterEps: 0.01 }, f32([2, 1.99, 0.5, -1]), 1, 4, null);
    expect(Array.from(r.indices)).toEqual([0, 1]);
    expect(r.weights[0]).toBeCloseTo(1 / (1 + Math.exp(-0.01)), 6);
    expect(r.weights[1]).toBeCloseTo(1, 6);
  });

  it("sparsemixer: negative maxima use max(|z|, m) as the denominator; near-ties stay in the softmax", () => {
    // z = [−3, −1, −1.01, −1.02]: round 1 m = −1 (index 1): (−1 + 1.01)/1.01 ≈ 0.0099 kept,
    // (−1 + 1.02)/1.02 ≈ 0.0196 kept, 2/3 masked → w1 = 1/(1 + e^−0.01 + e^−0.02).
    // Round 2 m = −1.01 (index 2): (−1.01 + 1.02)/1.02 ≈ 0.0098 kept → w2 = 1/(1 + e^−0.01).
    const r = route({ kind: "sparsemixer", topK: 2, jitterEps: 0.01 }, f32([-3, -1, -1.01, -1.02]), 1, 4, null);
    expect(Array.from(r.indices)).toEqual([1, 2]);
    expect(r.weights[0]).toBeCloseTo(1 / (1 + Math.exp(-0.01) + Math.exp(-0.02)), 5);
    expect(r.weights[1]).toBeCloseTo(1 / (1 + Math.exp(-0.01)), 5);
  });

  it("sparsemixer: a larger jitter eps keeps more experts in the softmax", () => {
    // eps 0.5: threshold 1; (2 − 0.5)/2 = 0.75 kept, (2 + 1)/2 = 1.5 masked
    const r = route({ kind: "sparsemixer", topK: 2, jitterEps: 0.5 }, f32([2, 1.99, 0.5, -1]), 1, 4, null);
    expect(r.weights[0]).toBeCloseTo(1 / (1 + Math.exp(-0.01) + Math.exp(-1.5)), 6);
  });

  it("DBRX p-norm: softmax, top-k, divide by the p-norm of the selected probabilities", () => {
    const z = f32([Math.log(3), Math.log(4), 0, -50]);
    const p1 = route({ kind: "softmax_topk", topK: 2, normTopK: true }, z, 1, 4, null);
    expect(Array.from(p1.weights).map((x) => +x.toFixed(6))).toEqual([+(4 / 7).toFixed(6), +(3 / 7).toFixed(6)]);
    const p2 = route({ kind: "softmax_topk", topK: 2, normTopK: true, normPower: 2 }, z, 1, 4, null);
    expect(p2.weights[0]).toBeCloseTo(0.8, 6);
    expect(p2.weights[1]).toBeCloseTo(0.6, 6);
  });
});

describe("Llama 4 attention temperature (NoPE layers)", () => {
  it("q × (log1p(floor((pos + 1)/floor_scale))·attn_scale + 1)", () => {
    const q = new Float32Array(4 * 2).fill(1);
    applyQTemperature(q, Int32Array.from([0, 2, 3, 8]), 2, { floorScale: 4, attnScale: 0.1 });
    // floor((p+1)/4) = 0, 0, 1, 2
    expect(Array.from(q).map((x) => +x.toFixed(6))).toEqual(
      [1, 1, 1, 1, 1 + 0.1 * Math.log(2), 1 + 0.1 * Math.log(2), 1 + 0.1 * Math.log(3), 1 + 0.1 * Math.log(3)].map(
        (x) => +Math.fround(x).toFixed(6),
      ),
    );
  });
});

describe("LongRoPE (Phi-3 / Phi-MoE)", () => {
  const cfg = (extra: Record<string, unknown> = {}) =>
    new ConfigReader(
      {
        max_position_embeddings: 131072,
        rope_parameters: {
          rope_type: "longrope",
          rope_theta: 10000,
          original_max_position_embeddings: 4096,
          short_factor: [1, 2, 4, 8],
          long_factor: [2, 3, 5, 7],
          ...extra,
        },
      },
      "config.json",
    );

  it("short factors up to original_max, long beyond; attention factor √(1 + ln f / ln orig)", () => {
    const spec = ropeFromConfig(cfg(), 8, false);
    const short = inverseFrequencies(spec, 4096);
    const long = inverseFrequencies(spec, 4097);
    for (let i = 0; i < 4; i++) {
      const base = 10000 ** ((2 * i) / 8);
      // inverse frequencies are formed in f32, like torch
      expect(Math.abs(short.invFreq[i] * [1, 2, 4, 8][i] * base - 1)).toBeLessThan(1e-6);
      expect(Math.abs(long.invFreq[i] * [2, 3, 5, 7][i] * base - 1)).toBeLessThan(1e-6);
    }
    expect(short.attentionFactor).toBeCloseTo(Math.sqrt(1 + Math.log(32) / Math.log(4096)), 12);
  });

  it("Phi-MoE's short_mscale / long_mscale replace the attention factor", () => {
    const spec = ropeFromConfig(cfg({ short_mscale: 1.1, long_mscale: 1.3 }), 8, false);
    expect(inverseFrequencies(spec, 10).attentionFactor).toBe(1.1);
    expect(inverseFrequencies(spec, 5000).attentionFactor).toBe(1.3);
  });

  it("a factor list of the wrong length is a typed error naming the field", () => {
    expect(() => ropeFromConfig(cfg({ short_factor: [1, 2] }), 8, false)).toThrow(/short_factor must be a list of 4/);
  });
});
