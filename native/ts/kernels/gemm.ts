export interface GemmKernels {
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
