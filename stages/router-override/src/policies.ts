// Calibration policies: which tokens feed each expert's statistics, with what weight. A policy
// turns the layer's real routing into a dense [rows, E] weight matrix (0 = not used); the
// layer's output always uses the real routing. Only `routed` ships in this issue; `all`, `soft`,
// `soft2`, `routed-w2`, `fill:N`, `mix:λ` and an external-process policy implement the same
// interface.
import type { Routing } from "@moeq/models";

export interface CalibrationPolicy {
  readonly name: string;
  /** [rows, E] calibration weight of every token for every expert */
  weights(routing: Routing): Float32Array;
}

/** The model's real top-k: each routed token counts once for its expert. */
export const routedPolicy: CalibrationPolicy = {
  name: "routed",
  weights(r) {
    const w = new Float32Array(r.rows * r.numExperts);
    for (let t = 0; t < r.rows; t++) for (let j = 0; j < r.topK; j++) w[t * r.numExperts + r.indices[t * r.topK + j]] = 1;
    return w;
  },
};

export const policies: ReadonlyMap<string, CalibrationPolicy> = new Map([[routedPolicy.name, routedPolicy]]);

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
