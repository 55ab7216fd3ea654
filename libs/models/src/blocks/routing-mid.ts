// Routing rules of the "mid" architectures that select on the raw logits: top-k then softmax
// (GPT-OSS, Granite-MoE), top-k then sigmoid (Llama 4), and Phi-MoE's inference sparsemixer.
// Ties resolve to the lower expert index, like native.topkF32 and torch.max on CPU.
import { native } from "@moeq/native";
import type { RoutingSpec } from "../spec.ts";
import type { Routing } from "./routing.ts";

export type MidRoutingSpec = Extract<RoutingSpec, { kind: "topk_softmax" | "topk_sigmoid" | "sparsemixer" }>;

export function isMidRouting(spec: RoutingSpec): spec is MidRoutingSpec {
  return spec.kind === "topk_softmax" || spec.kind === "topk_sigmoid" || spec.kind === "sparsemixer";
}

/** The combine weights scattered into [rows, E] (0 for experts not selected). */
function scatter(indices: Int32Array, weights: Float32Array, rows: number, E: number, k: number): Float32Array {
  const s = new Float32Array(rows * E);
  for (let r = 0; r < rows; r++) for (let j = 0; j < k; j++) s[r * E + indices[r * k + j]] = weights[r * k + j];
  return s;
}

export function routeMid(spec: MidRoutingSpec, logits: Float32Array, rows: number, E: number): Routing {
  const k = Math.min(spec.topK, E);
  const indices = new Int32Array(rows * k);
  const weights = new Float32Array(rows * k);
  if (spec.kind === "sparsemixer") sparsemixer(logits, rows, E, k, spec.jitterEps, indices, weights);
  else {
    native.topkF32(logits, rows, E, k, indices, weights);
    if (spec.kind === "topk_softmax") native.softmaxF32(weights, weights, rows, k);
    else native.activationF32("sigmoid", weights, weights);
  }
  return { rows, numExperts: E, topK: k, logits, scores: scatter(indices, weights, rows, E, k), indices, weights };
}

/**
 * Each round: m = max of the remaining logits (first index on ties); every j with
 * (m − z_j)/max(|z_j|, m) > 2ε is masked; the winner's weight is its softmax over the unmasked
 * remaining logits; then the winner leaves. As in transformers, the mask's denominator reads
 * the original logits and the ratio is compared in f32.
 */
function sparsemixer(
  z: Float32Array,
  rows: number,
  E: number,
  k: number,
  eps: number,
  idx: Int32Array,
  w: Float32Array,
) {
  const f = Math.fround;
  const threshold = f(2 * eps);
  const live = new Uint8Array(E);
  for (let r = 0; r < rows; r++) {
    const row = z.subarray(r * E, (r + 1) * E);
    live.fill(1);
    for (let j = 0; j < k; j++) {
      let best = -1;
      for (let e = 0; e < E; e++) if (live[e] && (best < 0 || row[e] > row[best])) best = e;
      const m = row[best];
      let denom = 0;
      for (let e = 0; e < E; e++) {
        if (!live[e]) continue;
        const factor = Math.max(Math.abs(row[e]), m);
        if (f(f(m - row[e]) / factor) > threshold) continue;
        denom += Math.exp(row[e] - m);
      }
      idx[r * k + j] = best;
      w[r * k + j] = 1 / denom;
      live[best] = 0;
    }
  }
}

/** DBRX moe_normalize_expert_weights = p ≠ 1: w /= ‖w‖_p over the selected experts. */
export function pNormalise(w: Float32Array, rows: number, k: number, p: number): void {
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let j = 0; j < k; j++) s += Math.abs(w[r * k + j]) ** p;
    const n = Math.fround(s ** (1 / p));
    for (let j = 0; j < k; j++) w[r * k + j] = Math.fround(w[r * k + j] / n);
  }
}
