// One routed expert's input statistics under the calibration plan: its policy rows of the MoE
// input, scaled the way the MoE block scales them (Llama 4: by the routing weight) and weighted by
// the policy's calibration weight, run through the expert with the linear hook observing, so
// gate/up get the input the expert multiplies and down gets act(gate)·up of those rows.
import type { Engine, MoeSpec, Routing } from "@moeq/models";
import { type DeviceKernels, native } from "@moeq/native";
import type { QuantTarget } from "@moeq/runtime";
import { InputStatistics } from "./input-stats.ts";

export interface ExpertRows {
  readonly engine: Engine;
  readonly L: number;
  readonly e: number;
  /** the MoE input [rows, H] */
  readonly x: Float32Array;
  /** rows the policy feeds expert e, and their calibration weights */
  readonly used: readonly number[];
  readonly w: Float32Array;
  /** the real routing (layer output) */
  readonly routing: Routing;
  /** the router's probabilities [rows, E] where the routing weight scales the expert input (routerInputScores), else null */
  readonly scores: Float32Array | null;
  readonly targets: readonly QuantTarget[];
  readonly kernels: DeviceKernels;
  readonly hessians: boolean;
}

/**
 * Where the routing weight scales the expert input (Llama 4: top-1 on the logits, weight σ(z_e)),
 * the weight each expert would get for each token were it selected: σ(z) for all [rows, E]
 * logits, the same kernel the routing applies to the selected ones. null for other MoE blocks.
 */
export function routerInputScores(m: MoeSpec, logits: Float32Array): Float32Array | null {
  if (!m.weightScalesInput) return null;
  if (m.routing.kind !== "topk_sigmoid")
    throw new Error(
      `an expert input scaled by a ${m.routing.kind} routing weight is not supported (only topk_sigmoid)`,
    );
  const s = new Float32Array(logits.length);
  native.activationF32("sigmoid", logits, s);
  return s;
}

/**
 * Per-row input scale of expert e where the routing weight scales the expert input (Llama 4): the
 * real combine weight where the token is routed to e, the router's score for e where only the
 * calibration policy adds it. null when the architecture does not scale inputs.
 */
export function inputScales(
  routing: Routing,
  scores: Float32Array | null,
  e: number,
  used: readonly number[],
): Float32Array | null {
  if (!scores) return null;
  const { numExperts: E, topK: k, indices, weights } = routing;
  return Float32Array.from(used, (t) => {
    for (let j = 0; j < k; j++) if (indices[t * k + j] === e) return weights[t * k + j];
    return scores[t * E + e];
  });
}

export async function expertInputStatistics(r: ExpertRows): Promise<InputStatistics> {
  const stats = new InputStatistics(r.targets, r.kernels, r.hessians);
  if (r.used.length === 0) return stats;
  const H = r.x.length / r.routing.rows;
  const xe = new Float32Array(r.used.length * H);
  for (let i = 0; i < r.used.length; i++) xe.set(r.x.subarray(r.used[i] * H, (r.used[i] + 1) * H), i * H);
  // the same f32 product the MoE block forms (blocks/moe.ts)
  const s = inputScales(r.routing, r.scores, r.e, r.used);
  if (s)
    for (let i = 0; i < r.used.length; i++)
      for (let c = 0; c < H; c++) xe[i * H + c] = Math.fround(xe[i * H + c] * s[i]);
  stats.rowWeights = r.w;
  r.engine.setLinearHook(stats.hook);
  try {
    await r.engine.expert(r.L, r.e, xe);
  } finally {
    r.engine.setLinearHook(undefined);
  }
  await stats.flush();
  return stats;
}
