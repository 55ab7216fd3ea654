// Calibration policies: which tokens feed each expert's statistics, with what weight. A policy
// turns the layer's real routing into a dense [rows, E] weight matrix (0 = not used); the
// layer's output always uses the real routing, whatever the policy says. The calibrator only
// ever sees the matrix, so a policy (built in, or a user's process: external-policy.ts) never
// touches it.
import type { Routing, RoutingSpec } from "@moeq/models";
import { routerProbabilities } from "./policies-probability.ts";

/** What a policy may know beyond the routing: the layer and the architecture's routing rule. */
export interface PolicyInput {
  readonly layer: number;
  readonly spec: RoutingSpec;
}

export interface CalibrationPolicy {
  /** the spec it was parsed from, e.g. `fill:256` (recorded in events and reports) */
  readonly name: string;
  /** [rows, E] calibration weight of every token for every expert; finite and ≥ 0 */
  weights(routing: Routing, input: PolicyInput): Float32Array | Promise<Float32Array>;
  /** releases what the policy holds (the external policy's process) */
  close?(): Promise<void>;
}

const dense = (r: Routing) => new Float32Array(r.rows * r.numExperts);

function forEachRouted(r: Routing, f: (t: number, e: number, combine: number) => void) {
  for (let t = 0; t < r.rows; t++)
    for (let j = 0; j < r.topK; j++) f(t, r.indices[t * r.topK + j], r.weights[t * r.topK + j]);
}

/** The model's real top-k: each routed token counts once for its expert. */
export const routedPolicy: CalibrationPolicy = {
  name: "routed",
  weights(r) {
    const w = dense(r);
    forEachRouted(r, (t, e) => {
      w[t * r.numExperts + e] = 1;
    });
    return w;
  },
};

/** Every token to every expert with equal weight (llm-compressor's calibrate-all-experts). */
export const allPolicy: CalibrationPolicy = { name: "all", weights: (r) => dense(r).fill(1) };

/** Every token, weighted by the router's probability for the expert (policies-probability.ts). */
export const softPolicy: CalibrationPolicy = { name: "soft", weights: (r, i) => routerProbabilities(r, i.spec) };

/** Every token, weighted by the squared router probability: closer to `routed` where the router is confident. */
export const soft2Policy: CalibrationPolicy = {
  name: "soft2",
  weights(r, i) {
    const p = routerProbabilities(r, i.spec);
    for (let k = 0; k < p.length; k++) p[k] = Math.fround(p[k] * p[k]);
    return p;
  },
};

/**
 * Routed tokens weighted by their combine weight squared: the expert's output enters the layer
 * scaled by that weight, so its output error costs w² in the layer's squared error.
 */
export const routedW2Policy: CalibrationPolicy = {
  name: "routed-w2",
  weights(r) {
    const w = dense(r);
    forEachRouted(r, (t, e, c) => {
      w[t * r.numExperts + e] = Math.fround(c * c);
    });
    return w;
  },
};

/**
 * `fill:N`: the routed tokens, and for an expert with fewer than N of them, the unrouted tokens
 * it is most probable for (router probability, ties to the earlier token) until it has N.
 */
export function fillPolicy(n: number): CalibrationPolicy {
  return {
    name: `fill:${n}`,
    weights(r, i) {
      const E = r.numExperts;
      const w = routedPolicy.weights(r, i) as Float32Array;
      const p = routerProbabilities(r, i.spec);
      for (let e = 0; e < E; e++) {
        let have = 0;
        for (let t = 0; t < r.rows; t++) if (w[t * E + e] > 0) have++;
        if (have >= n) continue;
        const candidates: number[] = [];
        for (let t = 0; t < r.rows; t++) if (w[t * E + e] === 0) candidates.push(t);
        candidates.sort((a, b) => p[b * E + e] - p[a * E + e] || a - b);
        for (const t of candidates.slice(0, n - have)) w[t * E + e] = 1;
      }
      return w;
    },
  };
}

/** `mix:λ` = λ·all + (1−λ)·routed: routed tokens weigh 1, every other token λ. */
export function mixPolicy(lambda: number): CalibrationPolicy {
  return {
    name: `mix:${lambda}`,
    weights(r) {
      const w = dense(r).fill(lambda);
      forEachRouted(r, (t, e) => {
        w[t * r.numExperts + e] = 1;
      });
      return w;
    },
  };
}

/** The fixed-name built-in policies; `fill:N`, `mix:λ` and `external:…` are parsed (policies-parse.ts). */
export const policies: ReadonlyMap<string, CalibrationPolicy> = new Map(
  [routedPolicy, allPolicy, softPolicy, soft2Policy, routedW2Policy].map((p) => [p.name, p]),
);

export interface Coverage {
  readonly expert: number;
  readonly tokensRouted: number;
  readonly tokensUsed: number;
  readonly weightMass: number;
  readonly ess: number;
}

export function coverage(r: Routing, calib: Float32Array): Coverage[] {
  const E = r.numExperts;
  const routed = new Array<number>(E).fill(0);
  for (let i = 0; i < r.indices.length; i++) routed[r.indices[i]]++;
  return Array.from({ length: E }, (_, e) => {
    let used = 0;
    let s = 0;
    let s2 = 0;
    for (let t = 0; t < r.rows; t++) {
      const w = calib[t * E + e];
      if (w > 0) {
        used++;
        s += w;
        s2 += w * w;
      }
    }
    return { expert: e, tokensRouted: routed[e], tokensUsed: used, weightMass: s, ess: s2 > 0 ? (s * s) / s2 : 0 };
  });
}
