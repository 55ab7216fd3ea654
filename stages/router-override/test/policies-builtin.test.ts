import type { Routing, RoutingSpec } from "@moeq/models";
import { describe, expect, it } from "vitest";
import { allPolicy, fillPolicy, mixPolicy, routedW2Policy, soft2Policy, softPolicy } from "../src/policies.ts";
import { checkWeights, parsePolicy, withZeroTokenFallback } from "../src/policies-parse.ts";

// 4 tokens, 3 experts, top-1. Logits ln(1), ln(2), ln(5) etc. give softmax probabilities by hand.
const ln = Math.log;
const logits = Float32Array.from([ln(1), ln(2), ln(7), ln(3), ln(1), ln(1), ln(1), ln(8), ln(1), ln(2), ln(2), ln(6)]);
const probs = [0.1, 0.2, 0.7, 0.6, 0.2, 0.2, 0.1, 0.8, 0.1, 0.2, 0.2, 0.6];
const r: Routing = {
  rows: 4,
  numExperts: 3,
  topK: 1,
  logits,
  scores: new Float32Array(0),
  indices: Int32Array.from([2, 0, 1, 2]),
  weights: Float32Array.from([0.5, 0.25, 1, 0.75]),
};
const topkSoftmax: RoutingSpec = { kind: "topk_softmax", topK: 1 };
const input = { layer: 0, spec: topkSoftmax };
const close = (got: Float32Array, want: number[]) => {
  expect(got.length).toBe(want.length);
  for (let i = 0; i < want.length; i++) expect(got[i]).toBeCloseTo(want[i], 6);
};

describe("built-in policies (hand-computed cases)", () => {
  it("all: 1 everywhere", () => close(allPolicy.weights(r, input) as Float32Array, new Array(12).fill(1)));
  it("soft: the router's probability for every (token, expert)", () =>
    close(softPolicy.weights(r, input) as Float32Array, probs));
  it("soft2: squared probabilities", () =>
    close(
      soft2Policy.weights(r, input) as Float32Array,
      probs.map((p) => p * p),
    ));
  it("routed-w2: combine weight² on the routed pairs only", () =>
    close(routedW2Policy.weights(r, input) as Float32Array, [0, 0, 0.25, 0.0625, 0, 0, 0, 1, 0, 0, 0, 0.5625]));
  it("mix:0.3: routed 1, everything else 0.3", () =>
    close(mixPolicy(0.3).weights(r, input) as Float32Array, [0.3, 0.3, 1, 1, 0.3, 0.3, 0.3, 1, 0.3, 0.3, 0.3, 1]));
  it("fill:2 tops every expert up to 2 tokens with its most probable unrouted tokens", () => {
    // expert 0: routed t1; best unrouted by p: t3 (0.2) → t1,t3. expert 1: routed t2; then t0/t1/t3 tie at 0.2 → t0.
    // expert 2: routed t0, t3 (already 2).
    close(fillPolicy(2).weights(r, input) as Float32Array, [0, 1, 1, 1, 0, 0, 0, 1, 0, 1, 0, 1]);
  });
  it("fill:N larger than the tokens uses every token", () =>
    close(fillPolicy(99).weights(r, input) as Float32Array, new Array(12).fill(1)));
});

describe("policy specs", () => {
  it.each(["routed", "all", "soft", "soft2", "routed-w2", "fill:256", "mix:0.3", "mix:1", "mix:0"])(
    "parses %s and keeps it as the name",
    (s) => expect(parsePolicy(s).name).toBe(s),
  );
  it.each(["", "Soft", "fill:0", "fill:-1", "fill:x", "mix:1.5", "mix:-0.1", "mix:", "external:"])(
    "rejects %j with a PolicyError naming the policy",
    (s) => {
      try {
        parsePolicy(s);
        expect.unreachable();
      } catch (e) {
        expect((e as { _tag: string })._tag).toBe("PolicyError");
        expect((e as Error).message).toMatch(/policy/);
      }
    },
  );
});

describe("zero-token fallback", () => {
  const sparse: Routing = { ...r, indices: Int32Array.from([2, 0, 2, 2]) }; // expert 1 never routed
  it("rtn leaves the empty expert empty (the calibrator then uses RTN and says so)", async () => {
    const w = await withZeroTokenFallback(parsePolicy("routed"), "rtn").weights(sparse, input);
    expect([w[1], w[4], w[7], w[10]]).toEqual([0, 0, 0, 0]);
  });
  it("a fallback policy fills only the empty expert's column", async () => {
    const w = await withZeroTokenFallback(parsePolicy("routed"), parsePolicy("soft")).weights(sparse, input);
    close(w, [0, 0.2, 1, 1, 0.2, 0, 0, 0.8, 1, 0, 0.2, 1]);
  });
});

describe("checkWeights", () => {
  it.each([
    [new Float32Array(11), /4×3 weights, got 11/],
    [Float32Array.from({ length: 12 }, (_, i) => (i === 5 ? -1 : 0)), /token 1 for expert 2/],
    [Float32Array.from({ length: 12 }, (_, i) => (i === 3 ? Number.NaN : 0)), /token 1 for expert 0/],
  ])("rejects a wrong answer naming the source and the entry", (w, msg) => {
    expect(() => checkWeights(w, r, "policy x (layer 3)")).toThrow(msg);
    try {
      checkWeights(w, r, "policy x (layer 3)");
    } catch (e) {
      expect((e as { _tag: string; message: string })._tag).toBe("PolicyError");
      expect((e as Error).message).toContain("policy x (layer 3)");
    }
  });
});
