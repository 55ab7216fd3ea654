export interface GemmKernels extends GemmMixedKernels {
  /** C[m,n] = alpha·op(A)·op(B) + beta·C; op(A)=Aᵀ when transA (A stored [k,m]), likewise B ([n,k]). */
  gemmF32(
    a: Float32Array,
    b: Float32Array,
    c: Float32Array,
    m: number,
    n: number,
    k: number,
    transA?: boolean,
    transB?: boolean,
    alpha?: number,
    beta?: number,
  ): Promise<void>;
  gemmF32Sync(
    a: Float32Array,
    b: Float32Array,
    c: Float32Array,
    m: number,
    n: number,
    k: number,
    transA?: boolean,
    transB?: boolean,
    alpha?: number,
    beta?: number,
  ): void;
  gemmF32Ref(
    a: Float32Array,
    b: Float32Array,
    c: Float32Array,
    m: number,
    n: number,
    k: number,
    transA?: boolean,
    transB?: boolean,
    alpha?: number,
    beta?: number,
  ): void;
  /** Sets (when given) and returns OpenBLAS's thread count. */
  blasThreads(threads?: number): number;
}

/** Stored element type of a mixed-GEMM weight (decoded exactly as PyTorch's `.to(float32)`). */
export type WeightDtype = "f32" | "bf16" | "f16" | "f8_e4m3";

/** One product of a batched mixed GEMM (e.g. one expert). */
export interface GemmMixedItem {
  x: Float32Array;
  /** raw stored bytes (any typed array view, e.g. a Uint8Array over an mmap'd file) */
  w: ArrayBufferView;
  y: Float32Array;
  m: number;
  n: number;
  k: number;
  /** per-128×128-tile f32 scale of the stored matrix ("weight_scale_inv"), [ceil(rows/128), ceil(cols/128)] */
  blockScale?: Float32Array | null;
}

export interface GemmMixedKernels {
  /**
   * Y[m,n] = X[m,k]·Wᵀ with W stored [n,k] (transB = true, PyTorch Linear layout) or Y = X·W with
   * W stored [k,n] (transB = false). W is decoded a block of rows at a time (bounded scratch,
   * never a full f32 copy) and multiplied with OpenBLAS sgemm. accumulate: Y += instead of Y =.
   */
  gemmMixed(
    x: Float32Array,
    w: ArrayBufferView,
    y: Float32Array,
    m: number,
    n: number,
    k: number,
    dtype: WeightDtype,
    transB?: boolean,
    blockScale?: Float32Array | null,
    accumulate?: boolean,
  ): Promise<void>;
  gemmMixedSync(
    x: Float32Array,
    w: ArrayBufferView,
    y: Float32Array,
    m: number,
    n: number,
    k: number,
    dtype: WeightDtype,
    transB?: boolean,
    blockScale?: Float32Array | null,
    accumulate?: boolean,
  ): void;
  gemmMixedRef(
    x: Float32Array,
    w: ArrayBufferView,
    y: Float32Array,
    m: number,
    n: number,
    k: number,
    dtype: WeightDtype,
    transB?: boolean,
    blockScale?: Float32Array | null,
    accumulate?: boolean,
  ): void;
  /** Many independent products in one call (one dtype / orientation for all), run in order off the event loop. */
  gemmMixedBatched(items: GemmMixedItem[], dtype: WeightDtype, transB?: boolean, accumulate?: boolean): Promise<void>;
  /** Decodes `count` stored values of `dtype` from `src` into `out`. */
  decodeToF32(src: ArrayBufferView, dtype: WeightDtype, out: Float32Array, count: number): void;
  /** Threads of the kernels' row pool (one per core). */
  kernelPoolThreads(): number;
}
