// Multi-head latent attention for prefill (DeepSeek-V2/V3/V3.2, GLM-4.7-Flash). The latent
// projections are expanded to ordinary per-head q/k/v and fed to the native attention kernel.
// Per head, q and k are laid out [rope | nope] rather than transformers' [nope | rope]: a
// permutation applied to both leaves every q·k unchanged and lets ropeF32 rotate the leading
// dims. With a DSA indexer (V3.2) and more causal keys than index_topk, each query attends only
// to the keys the indexer selected (selectKeys + sparseAttention in ./dsa-indexer.ts).
import { native } from "@moeq/native";
import { ModelConfigError } from "../errors.ts";
import type { MlaSpec } from "../spec.ts";
import type { F32Weights } from "../weights.ts";
import type { SequenceBatch } from "./attention.ts";
import { indexerScores, selectKeys, sparseAttention } from "./dsa-indexer.ts";
import { linear } from "./linear.ts";
import { applyNorm } from "./norm.ts";
import type { RopeSpec, RopeTables } from "./rope.ts";

export async function mlaBlock(
  w: F32Weights,
  spec: MlaSpec,
  x: Float32Array,
  seq: SequenceBatch,
  rope: (r: RopeSpec) => RopeTables,
): Promise<Float32Array> {
  const rows = seq.batch * seq.seqLen;
  const { numHeads: H, qkNopeHeadDim: N, qkRopeHeadDim: R, vHeadDim: V, kvLoraRank: C } = spec;
  const D = N + R;

  let qLatent: Float32Array | null = null;
  let q: Float32Array;
  if (spec.qA && spec.qB && spec.qANorm) {
    qLatent = applyNorm(w, spec.qANorm, await linear(w, spec.qA, x, rows), rows);
    q = await linear(w, spec.qB, qLatent, rows);
  } else if (spec.q) q = await linear(w, spec.q, x, rows);
  else
    throw new ModelConfigError({
      field: "q_lora_rank",
      message: `MLA block of ${spec.o.weight} has neither q_proj nor q_a_proj/q_a_layernorm/q_b_proj`,
    });

  const kva = await linear(w, spec.kvA, x, rows); // [rows, C + R]
  const c = new Float32Array(rows * C);
  const kRope = new Float32Array(rows * R);
  for (let r = 0; r < rows; r++) {
    c.set(kva.subarray(r * (C + R), r * (C + R) + C), r * C);
    kRope.set(kva.subarray(r * (C + R) + C, (r + 1) * (C + R)), r * R);
  }
  const kvb = await linear(w, spec.kvB, applyNorm(w, spec.kvANorm, c, rows), rows); // [rows, H·(N + V)]

  const Q = new Float32Array(rows * H * D);
  const K = new Float32Array(rows * H * D);
  const Vv = new Float32Array(rows * H * V);
  for (let r = 0; r < rows; r++)
    for (let h = 0; h < H; h++) {
      const qs = (r * H + h) * D;
      const o = r * H * D + h * D;
      Q.set(q.subarray(qs + N, qs + D), o);
      Q.set(q.subarray(qs, qs + N), o + R);
      const ks = (r * H + h) * (N + V);
      K.set(kvb.subarray(ks, ks + N), o + R);
      Vv.set(kvb.subarray(ks + N, ks + N + V), (r * H + h) * V);
    }
  const tables = rope(spec.rope);
  native.ropeF32(Q, tables.cos, tables.sin, seq.positions, rows, H, D, R, spec.rope.interleaved);
  native.ropeF32(kRope, tables.cos, tables.sin, seq.positions, rows, 1, R, R, spec.rope.interleaved);
  for (let r = 0; r < rows; r++) for (let h = 0; h < H; h++) K.set(kRope.subarray(r * R, (r + 1) * R), (r * H + h) * D);

  const out = new Float32Array(rows * H * V);
  const ix = spec.indexer;
  if (ix && seq.seqLen > ix.topK) {
    if (!qLatent)
      throw new ModelConfigError({
        field: "q_lora_rank",
        message: `the DSA indexer of ${spec.o.weight} reads the q latent: it needs q_lora_rank (q_a_proj)`,
      });
    const scores = await indexerScores(w, ix, x, qLatent, seq, rope(ix.rope));
    const selected = selectKeys(scores, seq.batch, seq.seqLen, ix.topK);
    sparseAttention(Q, K, Vv, out, selected, {
      batch: seq.batch,
      seqLen: seq.seqLen,
      numHeads: H,
      headDim: D,
      vHeadDim: V,
      scale: spec.scale,
      topK: ix.topK,
    });
  } else
    await native.attentionF32(Q, K, Vv, out, {
      batch: seq.batch,
      seqLen: seq.seqLen,
      numHeads: H,
      numKvHeads: H,
      headDim: D,
      vHeadDim: V,
      scale: spec.scale,
      causal: true,
    });
  return linear(w, spec.o, out, rows);
}
