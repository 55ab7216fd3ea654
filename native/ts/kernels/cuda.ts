// CUDA kernels (owner: gpu; C++ in ../../src/cuda, built only with -DWITH_CUDA=ON). On the CPU
// build none of these exist: reach them through `cudaKernels()` (../device.ts), which throws a
// CudaUnavailable error naming the build instead of an undefined-function crash.
// Matrices are row-major f32 unless named; a CudaBuffer is a byte range of a device allocation.

import type { AttentionOptions } from "./attention.ts";
import type { GemmMixedKernels } from "./gemm.ts";
import type { OpsKernels } from "./ops.ts";
import type { GptqScaleDtype } from "./quant.ts";

/** A byte range of device memory. Views share the allocation; it is freed when the last goes. */
export interface CudaBuffer {
  readonly bytes: number;
  readonly device: number;
}

/** cuBLAS math mode of the f32 GEMMs: exact f32, TF32 tensor cores, or bf16 tensor cores (f32 accumulate). */
export type CudaPrecision = "f32" | "tf32" | "bf16";

export interface CudaDeviceInfo {
  name: string;
  major: number;
  minor: number;
  multiprocessors: number;
  totalBytes: number;
  freeBytes: number;
  /** bytes moeq holds in cudaMalloc allocations now / at most since the last cudaResetPeak */
  allocatedBytes: number;
  peakBytes: number;
}

/** All experts of a layer quantized together; layout [experts, rows, cols] etc. */
export interface CudaGptqResult {
  /** u8 [E, rows, cols], original column order */
  codes: CudaBuffer;
  /** f32 [E, rows, nGroups], quantization order (as gptqQuantize) */
  scales: CudaBuffer;
  /** i32 [E, rows, nGroups] */
  zeros: CudaBuffer;
  /** f32 [E, rows, cols] */
  dequant: CudaBuffer;
  /** [E, cols]: group of each original column / column quantized j-th */
  gIdx: Int32Array;
  perm: Int32Array;
  /** [E]: tr((W−Q)·H·(W−Q)ᵀ) with the H passed in */
  loss: Float64Array;
  seconds: { prepare: number; factor: number; sweep: number; loss: number };
}

export interface CudaMoeCalibration {
  /** f32 [tokens, experts]: softmax of the router logits */
  probs: CudaBuffer;
  /** f32 [E, hidden, hidden]: Σ_t p[t,e]·x_t·x_tᵀ (raw weighted sums) */
  hIn: CudaBuffer;
  /** f32 [E, inter, inter]: Σ_t p[t,e]·a_t·a_tᵀ, a = silu(x·gateᵀ)·(x·upᵀ) */
  hDown: CudaBuffer;
  /** per phase; only measured (else 0) when timePhases is set, which serialises the phases */
  seconds: { router: number; hessianIn: number; act: number; hessianDown: number };
}

export interface CudaIpcExport {
  /** 64-byte cudaIpcMemHandle_t of the allocation's base */
  handle: Uint8Array;
  /** byte offset of this buffer inside the allocation */
  offset: number;
  allocationBytes: number;
}

/** An interprocess CUDA event (ordering across processes without a host round trip). */
export interface CudaIpcEvent {
  readonly handle: Uint8Array;
  readonly device: number;
}

/** A CPU kernel's parameter types with every typed array (or ArrayBufferView) as a CudaBuffer. */
type DeviceArg<T> = T extends ArrayBufferView ? CudaBuffer : T;
type DeviceArgs<P extends unknown[]> = { [K in keyof P]: DeviceArg<P[K]> };
/** The same parameter list on the device; synchronous (each call waits for its kernel). */
type OnDevice<F extends (...args: never[]) => unknown> = (...args: DeviceArgs<Parameters<F>>) => void;

export interface CudaKernels {
  /** 0 when no driver / GPU is visible. */
  cudaDeviceCount(): number;
  cudaDeviceInfo(device?: number): CudaDeviceInfo;
  cudaResetPeak(device?: number): void;
  cudaAlloc(bytes: number, device?: number): CudaBuffer;
  cudaView(buf: CudaBuffer, byteOffset: number, bytes: number): CudaBuffer;
  /** Drops this handle; the memory goes once no view or running kernel uses it. */
  cudaFree(buf: CudaBuffer): void;
  cudaUpload(dst: CudaBuffer, src: ArrayBufferView, dstByteOffset?: number): void;
  cudaDownload(src: CudaBuffer, dst: ArrayBufferView, srcByteOffset?: number): void;
  cudaSynchronize(device?: number): void;
  /** count f32 uniform in [lo, hi) from (seed, index) — benchmark and test data made on the device */
  cudaFillUniform(buf: CudaBuffer, count: number, seed: number, lo: number, hi: number): void;
  /** As gemmF32: C[m,n] = alpha·op(A)·op(B) + beta·C (precision default "f32"). */
  cudaGemmF32(
    a: CudaBuffer,
    b: CudaBuffer,
    c: CudaBuffer,
    m: number,
    n: number,
    k: number,
    transA?: boolean,
    transB?: boolean,
    alpha?: number,
    beta?: number,
    precision?: CudaPrecision,
  ): void;
  /** `batch` contiguous products (strides m·k, k·n, m·n). */
  cudaGemmBatchedF32(
    a: CudaBuffer,
    b: CudaBuffer,
    c: CudaBuffer,
    m: number,
    n: number,
    k: number,
    batch: number,
    transA?: boolean,
    transB?: boolean,
    alpha?: number,
    beta?: number,
    precision?: CudaPrecision,
  ): void;
  /** As hessianAccumulate: H[cols,cols] += Xᵀ·diag(w)·X (f32 accumulator; precision default "f32"). */
  cudaHessianAccumulate(
    h: CudaBuffer,
    x: CudaBuffer,
    tokens: number,
    cols: number,
    w?: CudaBuffer | null,
    precision?: CudaPrecision,
  ): Promise<void>;
  cudaSoftmaxF32(x: CudaBuffer, out: CudaBuffer, rows: number, cols: number): void;
  /** As topkF32 (descending, ties: lower index, NaN first); indices i32, values f32 [rows, k]. */
  cudaTopkF32(x: CudaBuffer, rows: number, cols: number, k: number, indices: CudaBuffer, values: CudaBuffer): void;
  cudaSwigluF32(
    gate: CudaBuffer,
    up: CudaBuffer,
    out: CudaBuffer,
    rows: number,
    cols: number,
    rowStride?: number,
    colStride?: number,
  ): void;
  cudaRmsNormF32(
    x: CudaBuffer,
    weight: CudaBuffer | null,
    out: CudaBuffer,
    rows: number,
    cols: number,
    eps: number,
    plusOne?: boolean,
  ): void;
  // The forward-pass kernels of OpsKernels / GemmMixedKernels: the CPU kernel's name with a `cuda`
  // prefix and its very parameter list with CudaBuffers for the typed arrays (OnDevice), so a
  // caller switches by name. `out` may be the input itself where the CPU kernel allows it; a
  // partial overlap (which would race on the GPU) is a RangeError.
  cudaLogSoftmaxF32: OnDevice<OpsKernels["logSoftmaxF32"]>;
  /** n defaults to x's length in f32 values. */
  cudaActivationF32: OnDevice<OpsKernels["activationF32"]>;
  /** GPT-OSS: (clamp(up, ±limit) + 1) · g·σ(alpha·g), g = min(gate, limit); out must not overlap gate/up. */
  cudaClampedSwigluF32: OnDevice<OpsKernels["clampedSwigluF32"]>;
  cudaLayerNormF32: OnDevice<OpsKernels["layerNormF32"]>;
  cudaL2NormF32: OnDevice<OpsKernels["l2NormF32"]>;
  /**
   * In place; cos/sin f32 [maxPos, rotaryDim/2] and positions i32 [rows] on the device. A position
   * outside the table is a RangeError naming it and its row (the other rows are rotated).
   */
  cudaRopeF32: OnDevice<OpsKernels["ropeF32"]>;
  /** Every 16-bit value of src widened to f32 (src 2-byte aligned). */
  cudaBf16ToF32: OnDevice<OpsKernels["bf16ToF32"]>;
  cudaF16ToF32: OnDevice<OpsKernels["f16ToF32"]>;
  /** `count` stored values, bit-exact with PyTorch's `.to(float32)`. */
  cudaDecodeToF32: OnDevice<GemmMixedKernels["decodeToF32"]>;
  /**
   * Y[m,n] = X·Wᵀ (W stored [n,k], transB default true) or X·W (W stored [k,n]); W decoded on the
   * device into an n·k f32 scratch (with its 128×128 block scales), then one cuBLAS GEMM in
   * `precision` (default "f32"). w must start at a multiple of its element size.
   */
  cudaGemmMixed: (
    ...args: [...DeviceArgs<Parameters<GemmMixedKernels["gemmMixedSync"]>>, precision?: CudaPrecision]
  ) => void;
  /** out must not overlap x. */
  cudaCausalConv1dSiluF32: OnDevice<OpsKernels["causalConv1dSiluF32"]>;
  /**
   * The token recurrence in f32 (as gatedDeltaRuleRecurrentF32): value columns are independent, so
   * every (batch, head, 32 columns) runs in parallel, 4 warps splitting the state rows; kDim up to
   * 256. out may be v itself.
   */
  cudaGatedDeltaRuleRecurrentF32: OnDevice<OpsKernels["gatedDeltaRuleRecurrentF32"]>;
  /** As attentionF32 (same options; sinks a host Float32Array); head dims up to 512. */
  cudaAttentionF32(q: CudaBuffer, k: CudaBuffer, v: CudaBuffer, out: CudaBuffer, opts: AttentionOptions): void;
  /**
   * As attentionF32 (same options, sinks a host Float32Array) on cuBLAS batched GEMMs: per chunk of
   * (batch, head) pairs S = scale·Q·Kᵀ, a masked softmax per row, O = P·V. "f32" exact (CUDA cores),
   * "tf32" / "bf16" both products on the tensor cores. scratchBytes (default 1 GiB) bounds the score
   * matrices held at once (at least one seqLen²). out must not overlap q, k or v.
   */
  cudaAttentionGemm(
    q: CudaBuffer,
    k: CudaBuffer,
    v: CudaBuffer,
    out: CudaBuffer,
    opts: AttentionOptions,
    precision?: CudaPrecision,
    scratchBytes?: number,
  ): void;
  // The device engine's glue (engine_ops.cu): the CPU engine's TypeScript loops with its rounding.
  /** y[r, :] = row[:] */
  cudaFillRowsF32(y: CudaBuffer, row: CudaBuffer, rows: number, cols: number): void;
  /** out = a + f32(b·scale) (scale default 1: a + b); out may be a or b */
  cudaResidualAddF32(a: CudaBuffer, b: CudaBuffer, out: CudaBuffer, n: number, scale?: number): void;
  /** out = f32(x·factor), or f32(x / factor) when divide (in double: the factor is a JS number) */
  cudaScaleF32(x: CudaBuffer, out: CudaBuffer, n: number, factor: number, divide?: boolean): void;
  /** out = clamp(x, −limit, limit) */
  cudaClampF32(x: CudaBuffer, out: CudaBuffer, n: number, limit: number): void;
  /** out = a·b elementwise */
  cudaMulF32(a: CudaBuffer, b: CudaBuffer, out: CudaBuffer, n: number): void;
  /** dst[r·dstRowStride + c] = src[r·rowStride + c·colStride] (dstRowStride default cols); multiply: *= instead */
  cudaStridedF32(
    src: CudaBuffer,
    dst: CudaBuffer,
    rows: number,
    cols: number,
    rowStride: number,
    colStride: number,
    multiply?: boolean,
    dstRowStride?: number,
  ): void;
  /** out[i, :] = x[idx[i], :] (· scale[i]); idx i32 [n]; an index outside x's rows is a RangeError */
  cudaGatherRowsF32(
    x: CudaBuffer,
    idx: CudaBuffer,
    scale: CudaBuffer | null,
    out: CudaBuffer,
    n: number,
    cols: number,
  ): void;
  /** y[idx[i], :] += src[i, :]·scale[i] (one rounding: an FMA); idx i32 [n], distinct */
  cudaScatterAddRowsF32(
    y: CudaBuffer,
    src: CudaBuffer,
    idx: CudaBuffer,
    scale: CudaBuffer | null,
    n: number,
    cols: number,
  ): void;
  /** out[r, c] += g[r]·src[r, c] (an FMA) */
  cudaRowScaleAddF32(out: CudaBuffer, src: CudaBuffer, g: CudaBuffer, rows: number, cols: number): void;
  /** x[r, c] *= f[r], in place */
  cudaScaleRowsF32(x: CudaBuffer, f: CudaBuffer, rows: number, cols: number): void;
  /** each row of w [rows, k] divided by its (sequential f32) sum, in place */
  cudaRenormRowsF32(w: CudaBuffer, rows: number, k: number): void;
  /**
   * FP8 block-quantized weight to its float form on the device: codes u8 (e4m3) [rows, cols], scales
   * f32 [⌈rows/blockRows⌉, ⌈cols/blockCols⌉]; out bf16 bits of f32(code)·scale rounded to nearest
   * even (fp8BlockSource's BF16 presentation) or f32.
   */
  cudaDequantFp8Block(
    codes: CudaBuffer,
    scales: CudaBuffer,
    out: CudaBuffer,
    rows: number,
    cols: number,
    blockRows: number,
    blockCols: number,
    outDtype: "bf16" | "f32",
  ): void;
  /**
   * GPT-OSS MXFP4 experts to bf16 on the device, transposed as mxfp4ExpertSource presents them:
   * blocks u8 [E, rows, nb, 16] + E8M0 scales u8 [E, rows, nb] → out bf16 [E, nb·32, rows]. A 0xff
   * scale is a RangeError naming its expert, row and block.
   */
  cudaDequantMxfp4T(
    blocks: CudaBuffer,
    scales: CudaBuffer,
    out: CudaBuffer,
    experts: number,
    rows: number,
    blocks32: number,
  ): void;
  /**
   * DeepSeek-V3.2 indexer scores out [B, T, T] = Σ_h f32(w·headScale)·relu(q_h·k·scale), −∞ after
   * the query (dsa-indexer.ts's indexerScores, its rounding); q [B·T, heads, headDim], k [B·T, headDim], w [B·T, heads].
   */
  cudaIndexerScoresF32(
    q: CudaBuffer,
    k: CudaBuffer,
    w: CudaBuffer,
    out: CudaBuffer,
    batch: number,
    seqLen: number,
    heads: number,
    headDim: number,
    scale: number,
    headScale: number,
  ): void;
  /** sparseAttention on the device: each query over its selected keys (i32 [B·T, topK]; < 0 or future skipped). */
  cudaSparseAttentionF32(
    q: CudaBuffer,
    k: CudaBuffer,
    v: CudaBuffer,
    out: CudaBuffer,
    selected: CudaBuffer,
    batch: number,
    seqLen: number,
    heads: number,
    headDim: number,
    vHeadDim: number,
    topK: number,
    scale: number,
  ): void;
  /**
   * GPTQ of `experts` matrices W [E, rows, cols] with Hessians h [E, cols, cols] in one pass (the
   * algorithm and conventions of gptqQuantize, f64 inside, scales rounded to scaleDtype — default
   * f32 — before zero points, codes and error feedback); blockSize 1..128.
   */
  cudaGptqBatched(
    w: CudaBuffer,
    h: CudaBuffer,
    experts: number,
    rows: number,
    cols: number,
    bits: number,
    groupSize: number,
    symmetric: boolean,
    actOrder: boolean,
    damp: number,
    blockSize: number,
    scaleDtype?: GptqScaleDtype,
  ): Promise<CudaGptqResult>;
  /**
   * Soft-weighted calibration of one MoE layer: router softmax over all experts, then every
   * expert's input and down-projection Hessians weighted by its router probability.
   * x [tokens, hidden], router [E, hidden], gateUp [E, 2·inter, hidden] (gate rows, then up rows).
   */
  cudaMoeCalibrate(
    x: CudaBuffer,
    tokens: number,
    hidden: number,
    router: CudaBuffer,
    gateUp: CudaBuffer,
    experts: number,
    inter: number,
    precision?: CudaPrecision,
    timePhases?: boolean,
  ): Promise<CudaMoeCalibration>;
  /**
   * One expert's calibration rows: out[i, :] = x[index[i], :] (· scale[i], one f32 product, when
   * scale is given: Llama 4's router-scaled expert input). index i32 [n] and scale f32 [n] on the
   * device; an index outside [0, xRows) is a RangeError naming its position.
   */
  cudaGatherRowsF32(
    x: CudaBuffer,
    xRows: number,
    cols: number,
    index: CudaBuffer,
    n: number,
    scale: CudaBuffer | null,
    out: CudaBuffer,
  ): void;
  /** max |x[i]| over n f32 values (NaN when one is NaN): an input's absmax without a download. */
  cudaAbsMaxF32(x: CudaBuffer, n: number): number;
  /**
   * dst[b, i] = f32(f64(src[b, i]) · scale[b]) over `blocks` blocks of blockLen values (a stack of raw
   * Hessian sums brought to GPTQ's 2/Σw convention, rounded once as the CPU path does); dst may be src.
   */
  cudaScaleBlocksF32(src: CudaBuffer, dst: CudaBuffer, blocks: number, blockLen: number, scale: Float64Array): void;
  /** Per row Σ_c a[r, c]·b[r, c], accumulated in f64 (per-projection GPTQ loss out of a batched call). */
  cudaRowDotF32(a: CudaBuffer, b: CudaBuffer, rows: number, cols: number): Float64Array;
  /** Handle for another process on this host; only for allocations this process made. */
  cudaIpcExport(buf: CudaBuffer): CudaIpcExport;
  /** Maps another process's allocation; rejects ranges past the allocation's end. */
  cudaIpcOpen(handle: Uint8Array, device: number, offset: number, bytes: number): CudaBuffer;
  cudaIpcEventCreate(device?: number): CudaIpcEvent;
  cudaIpcEventOpen(handle: Uint8Array, device?: number): CudaIpcEvent;
  /** Records on the device's stream (after everything moeq queued there). */
  cudaEventRecord(ev: CudaIpcEvent): void;
  /** The device's stream waits on the GPU for the event. */
  cudaEventWait(ev: CudaIpcEvent): void;
  cudaEventSynchronize(ev: CudaIpcEvent): void;
}
