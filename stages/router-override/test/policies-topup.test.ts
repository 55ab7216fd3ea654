import type { Routing, RoutingSpec } from "@moeq/models";
import { describe, expect, it } from "vitest";
import { coverage, DEFAULT_POLICY, TOPUP_TARGET_PER_DIM, topupPolicy } from "../src/policies.ts";
import { parsePolicy } from "../src/policies-parse.ts";

// 8 tokens, 3 experts, top-1, router probabilities given as scores (softmax family).
// Expert 0 has 5 routed tokens, expert 1 two (t5, t6), expert 2 one (t7).
const probs = [
  [0.6, 0.3, 0.1],
  [0.5, 0.1, 0.4],
  [0.7, 0.2, 0.1],
  [0.4, 0.35, 0.25],
  [0.8, 0.1, 0.1],
  [0.2, 0.6, 0.2],
  [0.3, 0.4, 0.3],
  [0.2, 0.3, 0.5],
];
const spec: RoutingSpec = { kind: "softmax_topk", topK: 1, normTopK: false };
const routingOf = (p: number[][], idx: number[], k = 1): Routing => ({
  rows: p.length,
  numExperts: p[0].length,
  topK: k,
  logits: new Float32Array(0),
  scores: Float32Array.from(p.flat()),
  indices: Int32Array.from(idx),
  weights: Float32Array.from(idx, () => 1),
});
const r = routingOf(probs, [0, 0, 0, 0, 0, 1, 1, 2]);
const input = { layer: 0, spec, hiddenSize: 2 };
const close = (got: Float32Array, want: number[]) => {
  expect(got.length).toBe(want.length);
  for (let i = 0; i < want.length; i++) expect(got[i]).toBeCloseTo(want[i], 6);
};

describe("topup policy (the default)", () => {
  it("routed where an expert has N routed tokens; else soft over its routed tokens and its shortfall of most probable near misses, weighted p / mean routed p", () => {
    // N = 4: expert 0 (5 routed) stays routed; expert 1 (2) gets 2 near misses, expert 2 (1) gets 3.
    // expert 1: mean routed p = (0.6 + 0.4) / 2 = 0.5: t5 1.2, t6 0.8; near misses t3 (0.35 → 0.7),
    //   then the tie 0.3 between t0 and t7 → t0 (earlier) 0.6
    // expert 2: mean routed p = 0.5: t7 1; near misses t1 (0.4 → 0.8), t6 (0.6), t3 (0.5)
    const { weights, plan } = topupPolicy(4).plan(r, input);
    close(weights, [1, 0.6, 0, 1, 0, 0.8, 1, 0, 0, 1, 0.7, 0.5, 1, 0, 0, 0, 1.2, 0, 0, 0.8, 0.6, 0, 0, 1]);
    expect(plan).toEqual({ target: 4, added: [0, 2, 3] });
    expect(coverage(r, weights).map((c) => c.calibration)).toEqual(["routed", "blended", "blended"]);
  });

  it("the default target is TOPUP_TARGET_PER_DIM × the hidden size", () => {
    // hidden size 1 → N = 8: every expert is short; shortfalls 3 + 6 + 7 = 16 > rows·k = 8 → halved
    expect(TOPUP_TARGET_PER_DIM).toBe(8);
    const { plan } = topupPolicy().plan(r, { ...input, hiddenSize: 1 });
    expect(plan).toEqual({ target: 8, added: [1, 3, 3] });
  });

  it("an expert without routed tokens is calibrated on its most probable tokens alone (blended, not RTN)", () => {
    const r0 = routingOf(probs, [0, 0, 0, 0, 0, 1, 1, 1]);
    const { weights, plan } = topupPolicy(2).plan(r0, input);
    // expert 2: want 2; most probable t7 (0.5), t1 (0.4); weights p / 0.4 (the least probable taken)
    expect(plan.added[2]).toBe(2);
    close(
      Float32Array.from({ length: 8 }, (_, t) => weights[t * 3 + 2]),
      [0, 1, 0, 0, 0, 0, 0, 1.25],
    );
    const c = coverage(r0, weights)[2];
    expect([c.tokensRouted, c.tokensUsed, c.calibration]).toEqual([0, 2, "blended"]);
  });

  it("bounds the statistics: a layer's rows stay ≤ 2× routed's, an expert's top-up ≤ its shortfall", () => {
    // 512 tokens, 16 experts, top-2, skewed random probabilities; targets from scarce to ample
    let s = 7;
    const rand = () => {
      s = (s * 1103515245 + 12345) % 2 ** 31;
      return s / 2 ** 31;
    };
    const rows = 512;
    const E = 16;
    const p: number[][] = [];
    const idx: number[] = [];
    for (let t = 0; t < rows; t++) {
      const z = Array.from({ length: E }, (_, e) => Math.exp(3 * rand() - e / 4));
      const sum = z.reduce((a, b) => a + b, 0);
      p.push(z.map((v) => v / sum));
      const order = [...z.keys()].sort((a, b) => z[b] - z[a]);
      idx.push(order[0], order[1]);
    }
    const rk = routingOf(p, idx, 2);
    for (const N of [8, 64, 256, 4096]) {
      const { weights, plan } = topupPolicy(N).plan(rk, { ...input, hiddenSize: 64 });
      const cov = coverage(rk, weights);
      const used = cov.reduce((a, c) => a + c.tokensUsed, 0);
      expect(used).toBeLessThanOrEqual(2 * rows * 2);
      for (const c of cov) {
        expect(plan.added[c.expert]).toBeLessThanOrEqual(Math.max(0, Math.min(N, rows) - c.tokensRouted));
        expect(c.tokensUsed).toBe(c.tokensRouted + plan.added[c.expert]);
        expect(c.calibration).toBe(plan.added[c.expert] > 0 ? "blended" : c.tokensUsed > 0 ? "routed" : "fallback");
      }
    }
    // ample target reached by every expert: exactly routed
    const routedOnly = topupPolicy(1).plan(rk, input);
    expect(
      routedOnly.plan.added.every((a, e) => a === 0 || coverage(rk, routedOnly.weights)[e].tokensRouted === 0),
    ).toBe(true);
  });

  it("`default` is an alias of topup; topup:N parses; bad N is refused", () => {
    expect(DEFAULT_POLICY).toBe("topup");
    expect(parsePolicy("default").name).toBe("topup");
    expect(parsePolicy("topup").name).toBe("topup");
    expect(parsePolicy("topup:512").name).toBe("topup:512");
    expect(() => parsePolicy("topup:0")).toThrow(/N must be a positive integer/);
  });
});
