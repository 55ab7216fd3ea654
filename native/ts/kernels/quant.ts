// GPTQ inner loop and weighted Hessian accumulation (owner: quant). Mixed-dtype GEMM is in ./gemm.ts.

/**
 * What gptqQuantize returns. codes are unsigned 0..2^bits−1 in the original column order;
 * scales / zeros are per (row, group) [rows, nGroups] in quantization order (group g covers
 * quantization positions g·groupSize…, i.e. original columns c with gIdx[c] = g); dequant[r,c] =
 * f32(scales[r, gIdx[c]]·(codes[r,c] − zeros[r, gIdx[c]])) bit for bit, every scale exactly
 * representable in the requested scale dtype; perm[j] = original column quantized j-th.
 */
/**
 * The dtype a checkpoint stores the group scales in. Each scale is rounded to it (RNE through f32,
 * as a PyTorch cast) before codes, dequant and error feedback use it; default "f32".
 */
export type GptqScaleDtype = "f32" | "bf16" | "f16";

export interface GptqNativeResult {
  codes: Uint8Array;
  scales: Float32Array;
  zeros: Int32Array;
  gIdx: Int32Array;
  perm: Int32Array;
  dequant: Float32Array;
  /** tr((W−Q)·H·(W−Q)ᵀ) with the H passed in (no rescaling) */
  loss: number;
}

export interface QuantKernels {
  /** H[cols,cols] += Xᵀ·diag(w)·X (raw weighted sum; w ≥ 0, absent = ones). Float64Array h accumulates in f64. */
  hessianAccumulate(
    h: Float32Array | Float64Array,
    x: Float32Array,
    tokens: number,
    cols: number,
    w?: Float32Array | null,
  ): Promise<void>;
  hessianAccumulateSync(
    h: Float32Array | Float64Array,
    x: Float32Array,
    tokens: number,
    cols: number,
    w?: Float32Array | null,
  ): void;
  hessianAccumulateRef(
    h: Float32Array | Float64Array,
    x: Float32Array,
    tokens: number,
    cols: number,
    w?: Float32Array | null,
  ): void;
  /**
   * GPTQ of W [rows, cols] (f64 inside) with Hessian h [cols, cols]; groupSize −1 = per row.
   * Matches ../shared/device/oracles/gptq_ref.py. Runs off the event loop on the kernel pool.
   */
  gptqQuantize(
    w: Float32Array,
    rows: number,
    cols: number,
    h: Float32Array | Float64Array,
    bits: number,
    groupSize: number,
    symmetric: boolean,
    actOrder: boolean,
    damp: number,
    blockSize: number,
    scaleDtype?: GptqScaleDtype,
  ): Promise<GptqNativeResult>;
  gptqQuantizeSync(
    w: Float32Array,
    rows: number,
    cols: number,
    h: Float32Array | Float64Array,
    bits: number,
    groupSize: number,
    symmetric: boolean,
    actOrder: boolean,
    damp: number,
    blockSize: number,
    scaleDtype?: GptqScaleDtype,
  ): GptqNativeResult;
  /** Scalar, unblocked reference (own Cholesky): same results up to float rounding. */
  gptqQuantizeRef(
    w: Float32Array,
    rows: number,
    cols: number,
    h: Float32Array | Float64Array,
    bits: number,
    groupSize: number,
    symmetric: boolean,
    actOrder: boolean,
    damp: number,
    blockSize: number,
    scaleDtype?: GptqScaleDtype,
  ): GptqNativeResult;
}
