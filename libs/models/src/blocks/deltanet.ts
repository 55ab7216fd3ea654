// Gated DeltaNet linear attention (Qwen3-Next, Qwen3.5) for prefill:
//   [q | k | v] → causal depthwise conv1d (no bias) → SiLU; q, k L2-normalised per head, q × dk^-½;
//   β = σ(b), g = −exp(A_log)·softplus(a + dt_bias); per value head (q, k from key head ⌊h/r⌋):
//   S ← e^g·S; S += k·(β(v − Sᵀk))ᵀ; o = Sᵀq;
//   then RMSNorm(o)·w · silu(z) per value head and out_proj.
// The delta rule has two forms that must agree: the token recurrence (the definition) and the
// chunked form transformers and FLA run for prefill (WY representation inside a chunk, the state
// carried between chunks). The engine runs the native chunked kernel (native/src/hard_deltanet.cc);
// the TypeScript forms below are its readable, independent twins for the tests.
import { native } from "@moeq/native";
import type { DeltaNetSpec } from "../spec.ts";
import type { F32Weights } from "../weights.ts";
import type { SequenceBatch } from "./attention.ts";
import { linear } from "./linear.ts";

/**
 * out[b,t,c] = silu(Σ_j w[c,j]·x[b, t−(K−1)+j, c]) with zero left padding; x, out [B·T, C]
 * (rows b·T + t), weight [C, K].
 */
export function causalConv1dSilu(
  x: Float32Array,
  weight: Float32Array,
  batch: number,
  seqLen: number,
  channels: number,
  kernel: number,
): Float32Array {
  const out = new Float32Array(batch * seqLen * channels);
  for (let b = 0; b < batch; b++)
    for (let t = 0; t < seqLen; t++) {
      const o = (b * seqLen + t) * channels;
      for (let c = 0; c < channels; c++) {
        let s = 0;
        for (let j = 0; j < kernel; j++) {
          const tt = t - (kernel - 1) + j;
          if (tt >= 0) s += weight[c * kernel + j] * x[(b * seqLen + tt) * channels + c];
        }
        out[o + c] = s;
      }
    }
  native.activationF32("silu", out, out);
  return out;
}

/** Inputs of the delta rule for one batch: per time step t and value head h. */
export interface DeltaRuleInputs {
  readonly seqLen: number;
  readonly numHeads: number;
  readonly kDim: number;
  readonly vDim: number;
  /** q, k [T, H, dk] (q already scaled), v [T, H, dv], g and beta [T, H] */
  readonly q: Float32Array;
  readonly k: Float32Array;
  readonly v: Float32Array;
  readonly g: Float32Array;
  readonly beta: Float32Array;
}

/** The token recurrence; returns o [T, H, dv]. */
export function gatedDeltaRuleRecurrent(x: DeltaRuleInputs): Float32Array {
  const { seqLen: T, numHeads: H, kDim: dk, vDim: dv } = x;
  const out = new Float32Array(T * H * dv);
  const S = new Float64Array(dk * dv);
  const delta = new Float64Array(dv);
  for (let h = 0; h < H; h++) {
    S.fill(0);
    for (let t = 0; t < T; t++) {
      const decay = Math.exp(x.g[t * H + h]);
      const beta = x.beta[t * H + h];
      const kt = x.k.subarray((t * H + h) * dk, (t * H + h + 1) * dk);
      const qt = x.q.subarray((t * H + h) * dk, (t * H + h + 1) * dk);
      const vt = x.v.subarray((t * H + h) * dv, (t * H + h + 1) * dv);
      for (let i = 0; i < S.length; i++) S[i] *= decay;
      for (let j = 0; j < dv; j++) {
        let mem = 0;
        for (let i = 0; i < dk; i++) mem += S[i * dv + j] * kt[i];
        delta[j] = (vt[j] - mem) * beta;
      }
      for (let i = 0; i < dk; i++) for (let j = 0; j < dv; j++) S[i * dv + j] += kt[i] * delta[j];
      const o = out.subarray((t * H + h) * dv, (t * H + h + 1) * dv);
      for (let j = 0; j < dv; j++) {
        let s = 0;
        for (let i = 0; i < dk; i++) s += S[i * dv + j] * qt[i];
        o[j] = s;
      }
    }
  }
  return out;
}

/**
 * The chunked form (chunks of `chunk` steps): inside a chunk with cumulative gates G, the WY
 * matrix A = (I + strict_tril(diag(β)·K·Kᵀ ⊙ e^(Gi−Gj)))⁻¹ turns the sequential updates into
 * U = A·(β·V) and W = A·(β·K·e^G); then V' = U − W·S, O = (Q·e^G)·S + (Q·Kᵀ ⊙ decay)·V', and
 * S ← e^(G_last)·S + (K·e^(G_last − G))ᵀ·V'.
 */
export function gatedDeltaRuleChunked(x: DeltaRuleInputs, chunk = 64): Float32Array {
  const { seqLen: T, numHeads: H, kDim: dk, vDim: dv } = x;
  const out = new Float32Array(T * H * dv);
  const S = new Float64Array(dk * dv);
  const C = chunk;
  const G = new Float64Array(C);
  const A = new Float64Array(C * C);
  const U = new Float64Array(C * dv);
  const W = new Float64Array(C * dk);
  const Vn = new Float64Array(C * dv);
  const qk = new Float64Array(C * C);
  const at = (t: number, h: number, d: number) => (t * H + h) * d;
  for (let h = 0; h < H; h++) {
    S.fill(0);
    for (let c0 = 0; c0 < T; c0 += C) {
      const L = Math.min(C, T - c0);
      let acc = 0;
      for (let i = 0; i < L; i++) {
        acc += x.g[(c0 + i) * H + h];
        G[i] = acc;
      }
      // A: strictly lower part −β_i (k_i·k_j) e^(G_i − G_j), then the forward substitution.
      A.fill(0);
      for (let i = 0; i < L; i++) {
        const ki = at(c0 + i, h, dk);
        const bi = x.beta[(c0 + i) * H + h];
        for (let j = 0; j < i; j++) {
          const kj = at(c0 + j, h, dk);
          let d = 0;
          for (let e = 0; e < dk; e++) d += x.k[ki + e] * x.k[kj + e];
          A[i * C + j] = -bi * d * Math.exp(G[i] - G[j]);
        }
      }
      for (let i = 1; i < L; i++)
        for (let j = 0; j < i; j++) {
          let s = A[i * C + j];
          for (let m = j + 1; m < i; m++) s += A[i * C + m] * A[m * C + j];
          A[i * C + j] = s;
        }
      for (let i = 0; i < L; i++) A[i * C + i] = 1;
      // U = A·(β V), W = A·(β K e^G)
      for (let i = 0; i < L; i++) {
        for (let e = 0; e < dv; e++) U[i * dv + e] = 0;
        for (let e = 0; e < dk; e++) W[i * dk + e] = 0;
        for (let j = 0; j <= i; j++) {
          const a = A[i * C + j];
          if (a === 0) continue;
          const bj = x.beta[(c0 + j) * H + h];
          const vj = at(c0 + j, h, dv);
          const kj = at(c0 + j, h, dk);
          const eg = Math.exp(G[j]);
          for (let e = 0; e < dv; e++) U[i * dv + e] += a * bj * x.v[vj + e];
          for (let e = 0; e < dk; e++) W[i * dk + e] += a * bj * x.k[kj + e] * eg;
        }
      }
      // V' = U − W·S
      for (let i = 0; i < L; i++)
        for (let e = 0; e < dv; e++) {
          let s = 0;
          for (let d = 0; d < dk; d++) s += W[i * dk + d] * S[d * dv + e];
          Vn[i * dv + e] = U[i * dv + e] - s;
        }
      // intra-chunk scores (Q Kᵀ ⊙ decay), lower triangle including the diagonal
      for (let i = 0; i < L; i++) {
        const qi = at(c0 + i, h, dk);
        for (let j = 0; j <= i; j++) {
          const kj = at(c0 + j, h, dk);
          let d = 0;
          for (let e = 0; e < dk; e++) d += x.q[qi + e] * x.k[kj + e];
          qk[i * C + j] = d * Math.exp(G[i] - G[j]);
        }
      }
      for (let i = 0; i < L; i++) {
        const qi = at(c0 + i, h, dk);
        const eg = Math.exp(G[i]);
        const o = at(c0 + i, h, dv);
        for (let e = 0; e < dv; e++) {
          let s = 0;
          for (let d = 0; d < dk; d++) s += x.q[qi + d] * eg * S[d * dv + e];
          for (let j = 0; j <= i; j++) s += qk[i * C + j] * Vn[j * dv + e];
          out[o + e] = s;
        }
      }
      const gl = G[L - 1];
      const el = Math.exp(gl);
      for (let i = 0; i < S.length; i++) S[i] *= el;
      for (let j = 0; j < L; j++) {
        const kj = at(c0 + j, h, dk);
        const f = Math.exp(gl - G[j]);
        for (let d = 0; d < dk; d++) {
          const kd = x.k[kj + d] * f;
          if (kd === 0) continue;
          for (let e = 0; e < dv; e++) S[d * dv + e] += kd * Vn[j * dv + e];
        }
      }
    }
  }
  return out;
}

function copyCols(
  src: Float32Array,
  srcCols: number,
  srcOff: number,
  dst: Float32Array,
  dstCols: number,
  dstOff: number,
  n: number,
  rows: number,
) {
  for (let r = 0; r < rows; r++)
    dst.set(src.subarray(r * srcCols + srcOff, r * srcCols + srcOff + n), r * dstCols + dstOff);
}

/** Projections in the canonical order: qkv [rows, 2·Hk·dk + Hv·dv], z [rows, Hv·dv], b and a [rows, Hv]. */
async function project(w: F32Weights, spec: DeltaNetSpec, x: Float32Array, rows: number) {
  const { numKHeads: Hk, numVHeads: Hv, kHeadDim: dk, vHeadDim: dv } = spec;
  const p = spec.projections;
  if (p.layout === "split") {
    const [qkv, z, b, a] = await Promise.all([
      linear(w, p.qkv, x, rows),
      linear(w, p.z, x, rows),
      linear(w, p.b, x, rows),
      linear(w, p.a, x, rows),
    ]);
    return { qkv, z, b, a };
  }
  const r = Hv / Hk;
  const keyDim = Hk * dk;
  const convDim = 2 * keyDim + Hv * dv;
  const per = 2 * dk + 2 * r * dv;
  const [qkvz, ba] = await Promise.all([linear(w, p.qkvz, x, rows), linear(w, p.ba, x, rows)]);
  const qkv = new Float32Array(rows * convDim);
  const z = new Float32Array(rows * Hv * dv);
  const b = new Float32Array(rows * Hv);
  const a = new Float32Array(rows * Hv);
  const cols = Hk * per;
  for (let g = 0; g < Hk; g++) {
    copyCols(qkvz, cols, g * per, qkv, convDim, g * dk, dk, rows);
    copyCols(qkvz, cols, g * per + dk, qkv, convDim, keyDim + g * dk, dk, rows);
    copyCols(qkvz, cols, g * per + 2 * dk, qkv, convDim, 2 * keyDim + g * r * dv, r * dv, rows);
    copyCols(qkvz, cols, g * per + 2 * dk + r * dv, z, Hv * dv, g * r * dv, r * dv, rows);
    copyCols(ba, Hk * 2 * r, g * 2 * r, b, Hv, g * r, r, rows);
    copyCols(ba, Hk * 2 * r, g * 2 * r + r, a, Hv, g * r, r, rows);
  }
  return { qkv, z, b, a };
}

export async function deltaNetBlock(
  w: F32Weights,
  spec: DeltaNetSpec,
  x: Float32Array,
  seq: SequenceBatch,
): Promise<Float32Array> {
  const { batch: B, seqLen: T } = seq;
  const rows = B * T;
  const { numKHeads: Hk, numVHeads: Hv, kHeadDim: dk, vHeadDim: dv, convKernel: K } = spec;
  const keyDim = Hk * dk;
  const convDim = 2 * keyDim + Hv * dv;
  const r = Hv / Hk;
  const { qkv: raw, z, b, a } = await project(w, spec, x, rows);
  const qkv = new Float32Array(raw.length);
  native.causalConv1dSiluF32(raw, w.get(spec.conv, convDim * K), qkv, B, T, convDim, K);

  // q, k: L2-normalised per key head (eps 1e-6), repeated to the value heads; q × dk^-½
  const qk = new Float32Array(rows * 2 * keyDim);
  copyCols(qkv, convDim, 0, qk, 2 * keyDim, 0, 2 * keyDim, rows);
  native.l2NormF32(qk, qk, rows * 2 * Hk, dk, 1e-6);
  const q = new Float32Array(rows * Hv * dk);
  const k = new Float32Array(rows * Hv * dk);
  const v = new Float32Array(rows * Hv * dv);
  const qScale = dk ** -0.5;
  for (let t = 0; t < rows; t++) {
    for (let h = 0; h < Hv; h++) {
      const g = Math.floor(h / r);
      const src = t * 2 * keyDim + g * dk;
      for (let e = 0; e < dk; e++) {
        q[(t * Hv + h) * dk + e] = qk[src + e] * qScale;
        k[(t * Hv + h) * dk + e] = qk[src + keyDim + e];
      }
    }
    v.set(qkv.subarray(t * convDim + 2 * keyDim, (t + 1) * convDim), t * Hv * dv);
  }
  const aLog = w.get(spec.aLog, Hv);
  const dtBias = w.get(spec.dtBias, Hv);
  const beta = new Float32Array(rows * Hv);
  native.activationF32("sigmoid", b, beta);
  const gate = new Float32Array(rows * Hv);
  for (let t = 0; t < rows; t++) for (let h = 0; h < Hv; h++) gate[t * Hv + h] = a[t * Hv + h] + dtBias[h];
  native.activationF32("softplus", gate, gate);
  for (let t = 0; t < rows; t++) for (let h = 0; h < Hv; h++) gate[t * Hv + h] *= -Math.exp(aLog[h]);

  const o = new Float32Array(rows * Hv * dv);
  await native.gatedDeltaRuleF32(q, k, v, gate, beta, o, B, T, Hv, dk, dv, 64);
  // RMSNorm per value head (plain w), then × silu(z)
  const nw = spec.norm.weight ? w.get(spec.norm.weight, dv) : null;
  native.rmsNormF32(o, nw, o, rows * Hv, dv, spec.norm.eps, false);
  const zs = new Float32Array(z.length);
  native.activationF32("silu", z, zs);
  for (let i = 0; i < o.length; i++) o[i] *= zs[i];
  return linear(w, spec.out, o, rows);
}
