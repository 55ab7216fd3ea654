// elementwise, norms, activations, softmax, top-k, RoPE (owner: models). All row-major f32;
// `out` may alias the input. Each kernel has a *Ref twin (plain formula in double precision).

export type ActivationKind = "silu" | "gelu_tanh" | "gelu_erf" | "sigmoid" | "softplus" | "relu";

type RowsKernel = (x: Float32Array, out: Float32Array, rows: number, cols: number) => void;
type Act = (kind: ActivationKind, x: Float32Array, out: Float32Array, n?: number) => void;
/** gate(r,c) = gate[r·rowStride + c·colStride], same for up (defaults: rowStride = cols, colStride = 1). */
type Glu = (
  gate: Float32Array,
  up: Float32Array,
  out: Float32Array,
  rows: number,
  cols: number,
  rowStride?: number,
  colStride?: number,
) => void;
type ClampedGlu = (
  gate: Float32Array,
  up: Float32Array,
  out: Float32Array,
  rows: number,
  cols: number,
  rowStride: number,
  colStride: number,
  alpha: number,
  limit: number,
) => void;
type RmsNorm = (
  x: Float32Array,
  weight: Float32Array | null,
  out: Float32Array,
  rows: number,
  cols: number,
  eps: number,
  plusOne?: boolean,
) => void;
type LayerNorm = (
  x: Float32Array,
  weight: Float32Array | null,
  bias: Float32Array | null,
  out: Float32Array,
  rows: number,
  cols: number,
  eps: number,
) => void;
type L2Norm = (x: Float32Array, out: Float32Array, rows: number, cols: number, eps: number) => void;
type TopK = (x: Float32Array, rows: number, cols: number, k: number, indices: Int32Array, values: Float32Array) => void;
/** In place on x [rows, heads, headDim] (row stride ≥ heads·headDim); cos/sin are [maxPos, rotaryDim/2]. */
type Rope = (
  x: Float32Array,
  cos: Float32Array,
  sin: Float32Array,
  positions: Int32Array,
  rows: number,
  heads: number,
  headDim: number,
  rotaryDim: number,
  interleaved?: boolean,
  rowStride?: number,
) => void;

/**
 * Gated delta rule (Qwen3-Next / Qwen3.5 linear attention), rows b·seqLen + t: q, k
 * [rows, numHeads, kDim] (q already scaled), v and out [rows, numHeads, vDim], g (log decay) and
 * beta [rows, numHeads]. Per (b, head): S ← e^g·S; S += k·(β(v − Sᵀk))ᵀ; o = Sᵀq, from S = 0.
 */
type DeltaRule<R> = (
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  g: Float32Array,
  beta: Float32Array,
  out: Float32Array,
  batch: number,
  seqLen: number,
  numHeads: number,
  kDim: number,
  vDim: number,
) => R;
/** out[b,t,c] = silu(Σ_j w[c,j]·x[b, t−(K−1)+j, c]) over x, out [batch·seqLen, channels], weight [channels, K]; out ≠ x. */
type CausalConv = (
  x: Float32Array,
  weight: Float32Array,
  out: Float32Array,
  batch: number,
  seqLen: number,
  channels: number,
  kernel: number,
) => void;

export interface OpsKernels {
  /** The chunked (WY) form (default chunk 64) on the libuv pool, (b, head) pairs over threads. */
  gatedDeltaRuleF32: (...args: [...Parameters<DeltaRule<void>>, chunk?: number]) => Promise<void>;
  /** The token recurrence in f32. */
  gatedDeltaRuleRecurrentF32: DeltaRule<void>;
  /** The token recurrence in double precision. */
  gatedDeltaRuleF32Ref: DeltaRule<void>;
  /** Causal depthwise conv1d (zero left padding, no bias) + SiLU. */
  causalConv1dSiluF32: CausalConv;
  causalConv1dSiluF32Ref: CausalConv;
  /** Row softmax, max-subtracted. */
  softmaxF32: RowsKernel;
  softmaxF32Ref: RowsKernel;
  logSoftmaxF32: RowsKernel;
  logSoftmaxF32Ref: RowsKernel;
  /** silu, gelu (tanh / erf), sigmoid, softplus (identity above 20, like torch), relu. */
  activationF32: Act;
  activationF32Ref: Act;
  /** out = silu(gate) · up. */
  swigluF32: Glu;
  swigluF32Ref: Glu;
  /** GPT-OSS: out = (clamp(up, ±limit) + 1) · g·σ(alpha·g) with g = min(gate, limit). */
  clampedSwigluF32: ClampedGlu;
  clampedSwigluF32Ref: ClampedGlu;
  /** y = w ⊙ x / √(mean(x²)+eps); weight null = weightless; plusOne uses (1 + w). */
  rmsNormF32: RmsNorm;
  rmsNormF32Ref: RmsNorm;
  /** Biased-variance LayerNorm; weight and bias optional. */
  layerNormF32: LayerNorm;
  layerNormF32Ref: LayerNorm;
  /** y = x · rsqrt(Σx² + eps). */
  l2NormF32: L2Norm;
  l2NormF32Ref: L2Norm;
  /** Row top-k, descending; ties: lower index first; NaN ranks above every number. */
  topkF32: TopK;
  topkF32Ref: TopK;
  ropeF32: Rope;
  ropeF32Ref: Rope;
  /** Widen bf16 / f16 bits (Uint16Array, or a 2-aligned Uint8Array) to f32. */
  bf16ToF32(src: Uint16Array | Uint8Array, dst: Float32Array): void;
  f16ToF32(src: Uint16Array | Uint8Array, dst: Float32Array): void;
}
