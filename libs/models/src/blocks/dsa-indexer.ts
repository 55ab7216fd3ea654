// DeepSeek Sparse Attention (V3.2): the lightning indexer scores every (query, key) pair,
//   score[t, s] = Σ_h w_h(x_t)·H^-½ · relu(q_h(t)·k(s) · D^-½),
// with q_h from the normed q latent (wq_b), one key head k = LayerNorm(wk·x), both with half-split
// RoPE on their first rotaryDim dims; each query keeps its top-k causal keys and MLA attends to
// those only. Below index_topk causal keys the selection is every key, i.e. dense attention.
import { native } from "@moeq/native";
import type { IndexerSpec } from "../spec.ts";
import type { F32Weights } from "../weights.ts";
import type { SequenceBatch } from "./attention.ts";
import { linear } from "./linear.ts";
import { applyNorm } from "./norm.ts";
import type { RopeTables } from "./rope.ts";

/** Index scores [B, T, T] (query-major); future keys are −∞. */
export async function indexerScores(
  w: F32Weights,
  spec: IndexerSpec,
  x: Float32Array,
  qLatent: Float32Array,
  seq: SequenceBatch,
  rope: RopeTables,
): Promise<Float32Array> {
  const { batch: B, seqLen: T } = seq;
  const rows = B * T;
  const { numHeads: Hi, headDim: Di } = spec;
  const rd = spec.rope.rotaryDim;
  const q = await linear(w, spec.wqB, qLatent, rows); // [rows, Hi·Di]
  const k = applyNorm(w, spec.kNorm, await linear(w, spec.wk, x, rows), rows); // [rows, Di]
  const weights = await linear(w, spec.weightsProj, x, rows); // [rows, Hi]
  native.ropeF32(q, rope.cos, rope.sin, seq.positions, rows, Hi, Di, rd, false);
  native.ropeF32(k, rope.cos, rope.sin, seq.positions, rows, 1, Di, rd, false);
  const softmaxScale = Math.fround(Di ** -0.5);
  const headScale = Math.fround(Hi ** -0.5);
  const out = new Float32Array(B * T * T);
  const dots = new Float32Array(T);
  for (let b = 0; b < B; b++)
    for (let t = 0; t < T; t++) {
      const row = out.subarray((b * T + t) * T, (b * T + t + 1) * T);
      row.fill(Number.NEGATIVE_INFINITY, t + 1);
      row.fill(0, 0, t + 1);
      const r = b * T + t;
      for (let h = 0; h < Hi; h++) {
        const qh = q.subarray((r * Hi + h) * Di, (r * Hi + h + 1) * Di);
        const wh = Math.fround(weights[r * Hi + h] * headScale);
        for (let s = 0; s <= t; s++) {
          const ks = k.subarray((b * T + s) * Di, (b * T + s + 1) * Di);
          let d = 0;
          for (let i = 0; i < Di; i++) d += qh[i] * ks[i];
          dots[s] = Math.max(0, d * softmaxScale);
        }
        for (let s = 0; s <= t; s++) row[s] += wh * dots[s];
      }
    }
  return out;
}

/**
 * Top-k keys per query from scores [B, T, T] (future keys −∞ are never chosen): [B·T, k] key
 * positions, best first, −1 where a query has fewer than k causal keys. Ties go to the lower position.
 */
export function selectKeys(scores: Float32Array, batch: number, seqLen: number, k: number): Int32Array {
  const T = seqLen;
  const out = new Int32Array(batch * T * k).fill(-1);
  const order = new Int32Array(T);
  for (let r = 0; r < batch * T; r++) {
    const t = r % T;
    const row = scores.subarray(r * T, (r + 1) * T);
    const n = t + 1;
    for (let s = 0; s < n; s++) order[s] = s;
    const view = order.subarray(0, n);
    view.sort((a, b) => row[b] - row[a] || a - b);
    for (let j = 0; j < Math.min(k, n); j++) out[r * k + j] = view[j];
  }
  return out;
}

export interface SparseAttentionShape {
  readonly batch: number;
  readonly seqLen: number;
  readonly numHeads: number;
  readonly headDim: number;
  readonly vHeadDim: number;
  readonly scale: number;
  readonly topK: number;
}

/** Softmax attention of each query over its selected keys only (q, k [B·T, H, D]; v, out [B·T, H, Dv]). */
export function sparseAttention(
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  out: Float32Array,
  selected: Int32Array,
  s: SparseAttentionShape,
): void {
  const { batch: B, seqLen: T, numHeads: H, headDim: D, vHeadDim: Dv, scale, topK } = s;
  const logits = new Float64Array(topK);
  for (let b = 0; b < B; b++)
    for (let t = 0; t < T; t++) {
      const r = b * T + t;
      const sel = selected.subarray(r * topK, (r + 1) * topK);
      for (let h = 0; h < H; h++) {
        const qh = q.subarray((r * H + h) * D, (r * H + h + 1) * D);
        let max = Number.NEGATIVE_INFINITY;
        for (let j = 0; j < topK; j++) {
          if (sel[j] < 0) continue;
          const kr = b * T + sel[j];
          const kh = k.subarray((kr * H + h) * D, (kr * H + h + 1) * D);
          let d = 0;
          for (let i = 0; i < D; i++) d += qh[i] * kh[i];
          logits[j] = d * scale;
          if (logits[j] > max) max = logits[j];
        }
        let sum = 0;
        for (let j = 0; j < topK; j++) {
          if (sel[j] < 0) continue;
          logits[j] = Math.exp(logits[j] - max);
          sum += logits[j];
        }
        const o = out.subarray((r * H + h) * Dv, (r * H + h + 1) * Dv);
        o.fill(0);
        const acc = new Float64Array(Dv);
        for (let j = 0; j < topK; j++) {
          if (sel[j] < 0) continue;
          const kr = b * T + sel[j];
          const p = logits[j] / sum;
          const vh = v.subarray((kr * H + h) * Dv, (kr * H + h + 1) * Dv);
          for (let i = 0; i < Dv; i++) acc[i] += p * vh[i];
        }
        for (let i = 0; i < Dv; i++) o[i] = acc[i];
      }
    }
}
