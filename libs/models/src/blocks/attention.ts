// Self-attention block for prefill: q/k/v projections (+bias, optional clip), q/k norms (per head
// or over the whole projection, before or after RoPE), partial / interleaved RoPE, the native
// attention kernel (GQA, sliding window, chunks, sinks) and the output projection.
import { native } from "@moeq/native";
import type { AttentionSpec, NormSpec } from "../spec.ts";
import type { F32Weights } from "../weights.ts";
import { linear } from "./linear.ts";
import { applyNorm } from "./norm.ts";
import type { RopeTables } from "./rope.ts";
import { applyQTemperature } from "./temperature.ts";

export interface SequenceBatch {
  readonly batch: number;
  readonly seqLen: number;
  /** position of each row (b·T + t) */
  readonly positions: Int32Array;
}

function clip(x: Float32Array, c: number) {
  for (let i = 0; i < x.length; i++) x[i] = Math.min(c, Math.max(-c, x[i]));
}

/** [n, 2·d] rows of [q | gate] (Qwen3-Next gated attention) → q [n, d] and gate [n, d]. */
function splitGate(qg: Float32Array, n: number, d: number): { q: Float32Array; gate: Float32Array } {
  const q = new Float32Array(n * d);
  const gate = new Float32Array(n * d);
  for (let i = 0; i < n; i++) {
    q.set(qg.subarray(2 * i * d, (2 * i + 1) * d), i * d);
    gate.set(qg.subarray((2 * i + 1) * d, (2 * i + 2) * d), i * d);
  }
  return { q, gate };
}

function qkNorm(w: F32Weights, norm: NormSpec, scope: "head" | "full", x: Float32Array, rows: number, heads: number) {
  applyNorm(w, norm, x, scope === "head" ? rows * heads : rows, x);
}

export async function attentionBlock(
  w: F32Weights,
  spec: AttentionSpec,
  x: Float32Array,
  seq: SequenceBatch,
  rope: RopeTables | null,
): Promise<Float32Array> {
  const rows = seq.batch * seq.seqLen;
  const [qRaw, k, v] = await Promise.all([
    linear(w, spec.q, x, rows),
    linear(w, spec.k, x, rows),
    linear(w, spec.v, x, rows),
  ]);
  const { q, gate } = spec.outputGate ? splitGate(qRaw, rows * spec.numHeads, spec.headDim) : { q: qRaw, gate: null };
  if (spec.clipQkv !== undefined) for (const t of [q, k, v]) clip(t, spec.clipQkv);
  if (spec.valueScale !== undefined) for (let i = 0; i < v.length; i++) v[i] *= spec.valueScale;
  const n = spec.qkNorm;
  if (n && !n.afterRope) {
    qkNorm(w, n.q, n.scope, q, rows, spec.numHeads);
    qkNorm(w, n.k, n.scope, k, rows, spec.numKvHeads);
  }
  if (spec.rope && rope) {
    const { rotaryDim, interleaved } = spec.rope;
    native.ropeF32(q, rope.cos, rope.sin, seq.positions, rows, spec.numHeads, spec.headDim, rotaryDim, interleaved);
    native.ropeF32(k, rope.cos, rope.sin, seq.positions, rows, spec.numKvHeads, spec.headDim, rotaryDim, interleaved);
  }
  if (n?.afterRope) {
    qkNorm(w, n.q, n.scope, q, rows, spec.numHeads);
    qkNorm(w, n.k, n.scope, k, rows, spec.numKvHeads);
  }
  if (spec.qTemperature) applyQTemperature(q, seq.positions, q.length / rows, spec.qTemperature);
  const out = new Float32Array(rows * spec.numHeads * spec.vHeadDim);
  await native.attentionF32(q, k, v, out, {
    batch: seq.batch,
    seqLen: seq.seqLen,
    numHeads: spec.numHeads,
    numKvHeads: spec.numKvHeads,
    headDim: spec.headDim,
    vHeadDim: spec.vHeadDim,
    scale: spec.scale,
    causal: true,
    window: spec.window ?? 0,
    chunk: spec.chunk ?? 0,
    sinks: spec.sinks ? w.get(spec.sinks, spec.numHeads) : undefined,
  });
  if (gate) {
    native.activationF32("sigmoid", gate, gate);
    for (let i = 0; i < out.length; i++) out[i] *= gate[i];
  }
  return linear(w, spec.o, out, rows);
}
