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
  /** the MoE input width: an expert's gate/up Hessian is hiddenSize × hiddenSize */
  readonly hiddenSize: number;
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
  [routedPolicy, allPolicy, softPolicy, soft2Policy, routedW2Policy, topupPolicy()].map((p) => [p.name, p]),
);

/** What `--policy default` means: the policy `moeq quantize` uses unless told otherwise. */
export const DEFAULT_POLICY = "topup";

/**
 * What calibrated an expert: `routed` = exactly its routed tokens; `blended` = its routed tokens
 * (if any) and tokens the router did not send it; `fallback` = no calibration token (RTN, or the
 * zero-token fallback policy's column when one is set — then `blended`).
 */
export type ExpertCalibration = "routed" | "blended" | "fallback";

export interface Coverage {
  readonly expert: number;
  readonly tokensRouted: number;
  readonly tokensUsed: number;
  readonly weightMass: number;
  readonly ess: number;
  readonly calibration: ExpertCalibration;
}

export function coverage(r: Routing, calib: Float32Array): Coverage[] {
  const E = r.numExperts;
  const routed = new Array<number>(E).fill(0);
  for (let i = 0; i < r.indices.length; i++) routed[r.indices[i]]++;
  const isRouted = new Uint8Array(r.rows * E);
  forEachRouted(r, (t, e) => {
    isRouted[t * E + e] = 1;
  });
  return Array.from({ length: E }, (_, e) => {
    let used = 0;
    let usedRouted = 0;
    let s = 0;
    let s2 = 0;
    for (let t = 0; t < r.rows; t++) {
      const w = calib[t * E + e];
      if (w > 0) {
        used++;
        usedRouted += isRouted[t * E + e];
        s += w;
        s2 += w * w;
      }
    }
    const calibration: ExpertCalibration =
      used === 0 ? "fallback" : usedRouted === used && used === routed[e] ? "routed" : "blended";
    return {
      expert: e,
      tokensRouted: routed[e],
      tokensUsed: used,
      weightMass: s,
      ess: s2 > 0 ? (s * s) / s2 : 0,
      calibration,
    };
  });
}

/**
 * The evidence target of `topup` in multiples of the expert's input width: with n samples of
 * dimension d, the sample covariance's eigenvalues spread by about ((1+√(d/n))/(1−√(d/n)))², ≈ 4.4
 * at n = 8d — below that an expert's routed tokens alone give GPTQ a poorly conditioned Hessian.
 */
export const TOPUP_TARGET_PER_DIM = 8;

/**
 * k-th largest value (k ≥ 1) of v by quickselect (v is reordered); O(n), no sort of the rows.
 */
function kthLargest(v: Float32Array, k: number): number {
  let lo = 0;
  let hi = v.length - 1;
  const want = k - 1;
  while (lo < hi) {
    const pivot = v[(lo + hi) >>> 1];
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (v[i] > pivot) i++;
      while (v[j] < pivot) j--;
      if (i <= j) {
        const t = v[i];
        v[i] = v[j];
        v[j] = t;
        i++;
        j--;
      }
    }
    if (want <= j) hi = j;
    else if (want >= i) lo = i;
    else return v[want];
  }
  return v[want];
}

/** What `topup` did for each expert of a layer, with the numbers behind the decision. */
export interface TopupPlan {
  /** routed tokens an expert needs to be calibrated on them alone */
  readonly target: number;
  /** per expert: unrouted tokens added (0: routed only) */
  readonly added: readonly number[];
}

/**
 * `topup[:N]` (alias `default`): an expert with at least N routed tokens (default
 * TOPUP_TARGET_PER_DIM × the hidden size) is calibrated on exactly its routed tokens (`routed`).
 * One with n < N is calibrated as `soft` would calibrate it, restricted to its routed tokens and
 * the unrouted tokens the router found most probable for it: every one weighted
 * p_e(t) / (mean p_e over its routed tokens). Its top-up is its shortfall N − n, scaled down in
 * proportion for every expert of the layer when the shortfalls add up to more than the layer's
 * routed rows (rows·k): the statistics rows of a layer stay ≤ twice routed's, where `soft` costs
 * E/k times routed's.
 */
export function topupPolicy(
  target?: number,
): CalibrationPolicy & { plan(r: Routing, i: PolicyInput): { weights: Float32Array; plan: TopupPlan } } {
  const plan = (r: Routing, i: PolicyInput) => {
    const E = r.numExperts;
    const N = target ?? TOPUP_TARGET_PER_DIM * i.hiddenSize;
    const w = dense(r);
    const routedCount = new Array<number>(E).fill(0);
    forEachRouted(r, (t, e) => {
      if (w[t * E + e] === 0) routedCount[e]++;
      w[t * E + e] = 1;
    });
    // each expert's shortfall, all scaled by one factor so their sum fits the routed rows
    const shortfall = routedCount.map((n) => Math.max(0, Math.min(N, r.rows) - n));
    const total = shortfall.reduce((a, b) => a + b, 0);
    const scale = total > r.rows * r.topK ? (r.rows * r.topK) / total : 1;
    const added = new Array<number>(E).fill(0);
    let p: Float32Array | undefined;
    for (let e = 0; e < E; e++) {
      const n = routedCount[e];
      const want = Math.floor(shortfall[e] * scale);
      if (want <= 0) continue;
      p ??= routerProbabilities(r, i.spec);
      let routedMass = 0;
      const free = new Float32Array(r.rows - n);
      let m = 0;
      // column e still holds 1 exactly on its routed tokens, 0 elsewhere
      for (let t = 0; t < r.rows; t++) {
        if (w[t * E + e] > 0) routedMass += p[t * E + e];
        else free[m++] = p[t * E + e];
      }
      const threshold = kthLargest(free, want);
      if (!(threshold > 0)) continue;
      // soft's weights relative to the expert's typical routed token (any scale: GPTQ damping is relative)
      const unit = n > 0 && routedMass > 0 ? n / routedMass : 1 / threshold;
      // strictly above the threshold first, then ties in token order until `want`
      let above = 0;
      for (let t = 0; t < r.rows; t++) if (w[t * E + e] === 0 && p[t * E + e] > threshold) above++;
      let ties = want - above;
      for (let t = 0; t < r.rows; t++) {
        const pe = p[t * E + e];
        if (w[t * E + e] > 0) w[t * E + e] = Math.fround(pe * unit);
        else if (pe > threshold || (pe === threshold && ties-- > 0)) {
          w[t * E + e] = Math.fround(pe * unit);
          if (w[t * E + e] > 0) added[e]++;
        }
      }
    }
    return { weights: w, plan: { target: N, added } };
  };
  return {
    name: target === undefined ? "topup" : `topup:${target}`,
    weights: (r, i) => plan(r, i).weights,
    plan,
  };
}
