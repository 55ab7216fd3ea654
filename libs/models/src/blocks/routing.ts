// Routing functions: router logits [T, E] → scores, the selected experts and their combine
// weights. Top-k ties resolve to the lower expert index (native.topkF32's rule).
import { native } from "@moeq/native";
import type { RoutingSpec } from "../spec.ts";
import { isMidRouting, pNormalise, routeMid } from "./routing-mid.ts";

export interface Routing {
  readonly rows: number;
  readonly numExperts: number;
  readonly topK: number;
  /** [rows, E] raw router logits */
  readonly logits: Float32Array;
  /** [rows, E] the arch's scores: softmax probabilities, or sigmoid scores (before any bias) */
  readonly scores: Float32Array;
  /** [rows, topK] selected experts, best first */
  readonly indices: Int32Array;
  /** [rows, topK] combine weights of the selected experts */
  readonly weights: Float32Array;
}

function topk(x: Float32Array, rows: number, cols: number, k: number) {
  const indices = new Int32Array(rows * k);
  const values = new Float32Array(rows * k);
  native.topkF32(x, rows, cols, k, indices, values);
  return { indices, values };
}

/** `bias` is the selection bias (e_score_correction_bias) in f32 when the spec names one. */
export function route(
  spec: RoutingSpec,
  logits: Float32Array,
  rows: number,
  E: number,
  bias: Float32Array | null,
): Routing {
  if (isMidRouting(spec)) return routeMid(spec, logits, rows, E);
  const k = spec.topK;
  const scores = new Float32Array(rows * E);
  if (spec.kind === "softmax_topk") {
    native.softmaxF32(logits, scores, rows, E);
    const { indices, values } = topk(scores, rows, E, k);
    if (spec.normTopK && spec.normPower !== undefined && spec.normPower !== 1)
      pNormalise(values, rows, k, spec.normPower);
    else if (spec.normTopK) renormalise(values, rows, k, 0, 0);
    return { rows, numExperts: E, topK: k, logits, scores, indices, weights: values };
  }
  if (spec.kind === "softmax_bias") {
    native.softmaxF32(logits, scores, rows, E);
    const sel = addBias(scores, bias, rows, E);
    const { indices } = topk(sel, rows, E, k);
    const weights = gather(scores, indices, rows, E, k);
    renormalise(weights, rows, k, 0, spec.normMin);
    return { rows, numExperts: E, topK: k, logits, scores, indices, weights };
  }
  if (spec.kind === "softmax_group_limited") {
    native.softmaxF32(logits, scores, rows, E);
    const sel = spec.nGroup > 1 ? scores.slice() : scores;
    if (spec.nGroup > 1) maskGroups(sel, rows, E, spec.nGroup, spec.topkGroup, 1);
    const { indices } = topk(sel, rows, E, k);
    const weights = gather(scores, indices, rows, E, k);
    if (spec.scale !== 1) for (let i = 0; i < weights.length; i++) weights[i] = Math.fround(weights[i] * spec.scale);
    return { rows, numExperts: E, topK: k, logits, scores, indices, weights };
  }
  native.activationF32("sigmoid", logits, scores);
  const sel = addBias(scores, bias, rows, E);
  if (spec.nGroup > 1) maskGroups(sel, rows, E, spec.nGroup, spec.topkGroup);
  const { indices } = topk(sel, rows, E, k);
  const weights = gather(scores, indices, rows, E, k);
  if (spec.normTopK) renormalise(weights, rows, k, 1e-20, 0);
  if (spec.scale !== 1) for (let i = 0; i < weights.length; i++) weights[i] *= spec.scale;
  return { rows, numExperts: E, topK: k, logits, scores, indices, weights };
}

function addBias(s: Float32Array, bias: Float32Array | null, rows: number, E: number): Float32Array {
  if (!bias) return s;
  const out = new Float32Array(s.length);
  for (let r = 0; r < rows; r++) for (let e = 0; e < E; e++) out[r * E + e] = s[r * E + e] + bias[e];
  return out;
}

function gather(s: Float32Array, idx: Int32Array, rows: number, E: number, k: number): Float32Array {
  const out = new Float32Array(rows * k);
  for (let r = 0; r < rows; r++) for (let j = 0; j < k; j++) out[r * k + j] = s[r * E + idx[r * k + j]];
  return out;
}

/** w /= max(Σw + eps, floor), in f32 like torch. */
function renormalise(w: Float32Array, rows: number, k: number, eps: number, floor: number) {
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let j = 0; j < k; j++) s = Math.fround(s + w[r * k + j]);
    const d = Math.max(Math.fround(s + eps), floor);
    for (let j = 0; j < k; j++) w[r * k + j] = Math.fround(w[r * k + j] / d);
  }
}

/**
 * Group limit: group score = sum of its top-`perGroup` (DeepSeek-V3: 2; DeepSeek-V2: 1, the max);
 * zero (as transformers does) all but the best topkGroup groups.
 */
function maskGroups(sel: Float32Array, rows: number, E: number, nGroup: number, topkGroup: number, perGroup = 2) {
  const g = E / nGroup;
  const gs = new Float32Array(nGroup);
  for (let r = 0; r < rows; r++) {
    const row = sel.subarray(r * E, (r + 1) * E);
    for (let q = 0; q < nGroup; q++) {
      const { values } = topk(row.subarray(q * g, (q + 1) * g), 1, g, Math.min(perGroup, g));
      gs[q] = values.reduce((a, b) => a + b, 0);
    }
    const { indices } = topk(gs, 1, nGroup, topkGroup);
    const keep = new Set(indices);
    for (let q = 0; q < nGroup; q++) if (!keep.has(q)) row.fill(0, q * g, (q + 1) * g);
  }
}
