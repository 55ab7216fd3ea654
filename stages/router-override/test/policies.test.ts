import type { Routing } from "@moeq/models";
import { describe, expect, it } from "vitest";
import { coverage, routedPolicy } from "../src/policies.ts";

// 5 tokens, 4 experts, top-2; expert 3 is never selected.
const input = { layer: 0, spec: { kind: "softmax_topk", topK: 2, normTopK: true } } as const;
const routing: Routing = {
  rows: 5,
  numExperts: 4,
  topK: 2,
  logits: new Float32Array(0),
  scores: new Float32Array(0),
  indices: Int32Array.from([0, 1, 1, 2, 0, 2, 1, 0, 2, 1]),
  weights: Float32Array.from([0.6, 0.4, 0.7, 0.3, 0.5, 0.5, 0.9, 0.1, 0.8, 0.2]),
};

describe("routed policy", () => {
  it("gives weight 1 to exactly the routed (token, expert) pairs", () => {
    const w = routedPolicy.weights(routing, input);
    expect([...w]).toEqual([1, 1, 0, 0, 0, 1, 1, 0, 1, 0, 1, 0, 1, 1, 0, 0, 0, 1, 1, 0]);
  });

  it("reports coverage: routed/used tokens, weight mass, ESS; unrouted experts have zero", () => {
    const c = coverage(routing, routedPolicy.weights(routing, input));
    expect(c).toEqual([
      { expert: 0, tokensRouted: 3, tokensUsed: 3, weightMass: 3, ess: 3, calibration: "routed" },
      { expert: 1, tokensRouted: 4, tokensUsed: 4, weightMass: 4, ess: 4, calibration: "routed" },
      { expert: 2, tokensRouted: 3, tokensUsed: 3, weightMass: 3, ess: 3, calibration: "routed" },
      { expert: 3, tokensRouted: 0, tokensUsed: 0, weightMass: 0, ess: 0, calibration: "fallback" },
    ]);
  });

  it("ESS of unequal weights is (Σw)²/Σw²", () => {
    const calib = new Float32Array(5 * 4);
    calib[0 * 4 + 3] = 1;
    calib[1 * 4 + 3] = 0.5;
    const c = coverage(routing, calib)[3];
    expect(c.tokensUsed).toBe(2);
    expect(c.weightMass).toBeCloseTo(1.5);
    expect(c.ess).toBeCloseTo(2.25 / 1.25);
    expect(c.calibration).toBe("blended");
  });
});
