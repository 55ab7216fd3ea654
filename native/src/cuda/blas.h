// Row-major GEMMs on cuBLAS (column-major inside: C = A·B row-major is Cᵀ = Bᵀ·Aᵀ column-major).
// Precision BF16: f32 operands are rounded to bf16 copies (RNE) and multiplied on the tensor cores
// with f32 accumulation; TF32 lets cuBLAS use TF32 tensor cores on the f32 operands.
#pragma once
#include "common.h"

namespace moeq::cuda {

// C[m,n] = alpha·op(A)·op(B) + beta·C; A stored [m,k] ([k,m] when transA), B [k,n] ([n,k] when transB).
void gemmRowMajor(cublasHandle_t h, bool transA, bool transB, int64_t m, int64_t n, int64_t k, float alpha,
                  const float* A, const float* B, float beta, float* C, Precision p);
// A, B already bf16 (__nv_bfloat16), C f32, f32 accumulation.
void gemmRowMajorBf16(cublasHandle_t h, bool transA, bool transB, int64_t m, int64_t n, int64_t k, float alpha,
                      const void* A, const void* B, float beta, float* C);
// The same for `batch` products at element strides sA, sB, sC.
void gemmRowMajorBatched(cublasHandle_t h, bool transA, bool transB, int64_t m, int64_t n, int64_t k, float alpha,
                         const float* A, int64_t sA, const float* B, int64_t sB, float beta, float* C, int64_t sC,
                         int64_t batch, Precision p);
// H[cols,cols] += Xᵀ·diag(w)·X (w null = ones), tokens processed in chunks through a scaled copy.
void hessianAccumulate(DeviceContext& ctx, float* H, const float* X, const float* w, int64_t tokens, int64_t cols,
                       Precision p);

}  // namespace moeq::cuda
