#include "blas.h"

#include <algorithm>

#include "kernels.h"

namespace moeq::cuda {
namespace {

cublasComputeType_t computeType(Precision p) {
  switch (p) {
    case Precision::F32: return CUBLAS_COMPUTE_32F;
    case Precision::TF32: return CUBLAS_COMPUTE_32F_FAST_TF32;
    case Precision::BF16: return CUBLAS_COMPUTE_32F_FAST_16BF;
  }
  return CUBLAS_COMPUTE_32F;
}

void checkDims(int64_t m, int64_t n, int64_t k) {
  const int64_t lim = int64_t(1) << 31;
  if (m < 0 || n < 0 || k < 0 || m >= lim || n >= lim || k >= lim)
    throw CudaError("gemm (cuda): dimensions out of range");
}

}  // namespace

void gemmRowMajor(cublasHandle_t h, bool transA, bool transB, int64_t m, int64_t n, int64_t k, float alpha,
                  const float* A, const float* B, float beta, float* C, Precision p) {
  checkDims(m, n, k);
  if (m == 0 || n == 0) return;
  check(cublasGemmEx(h, transB ? CUBLAS_OP_T : CUBLAS_OP_N, transA ? CUBLAS_OP_T : CUBLAS_OP_N, int(n), int(m), int(k),
                     &alpha, B, CUDA_R_32F, int(transB ? k : n), A, CUDA_R_32F, int(transA ? m : k), &beta, C,
                     CUDA_R_32F, int(n), computeType(p), CUBLAS_GEMM_DEFAULT),
        "cublasGemmEx");
}

void gemmRowMajorBatched(cublasHandle_t h, bool transA, bool transB, int64_t m, int64_t n, int64_t k, float alpha,
                         const float* A, int64_t sA, const float* B, int64_t sB, float beta, float* C, int64_t sC,
                         int64_t batch, Precision p) {
  checkDims(m, n, k);
  if (m == 0 || n == 0 || batch == 0) return;
  check(cublasGemmStridedBatchedEx(h, transB ? CUBLAS_OP_T : CUBLAS_OP_N, transA ? CUBLAS_OP_T : CUBLAS_OP_N, int(n),
                                   int(m), int(k), &alpha, B, CUDA_R_32F, int(transB ? k : n), sB, A, CUDA_R_32F,
                                   int(transA ? m : k), sA, &beta, C, CUDA_R_32F, int(n), sC, int(batch),
                                   computeType(p), CUBLAS_GEMM_DEFAULT),
        "cublasGemmStridedBatchedEx");
}

void hessianAccumulate(DeviceContext& ctx, float* H, const float* X, const float* w, int64_t tokens, int64_t cols,
                       Precision p) {
  if (tokens == 0 || cols == 0) return;
  if (!w) {
    gemmRowMajor(ctx.blas, true, false, cols, cols, tokens, 1.0f, X, X, 1.0f, H, p);
    return;
  }
  const int64_t chunk = std::clamp<int64_t>((int64_t(1) << 26) / cols, 1, tokens);
  Allocation scratch(size_t(chunk * cols) * 4, ctx.device);
  float* xw = static_cast<float*>(scratch.ptr);
  for (int64_t t0 = 0; t0 < tokens; t0 += chunk) {
    const int64_t t = std::min(chunk, tokens - t0);
    launchScaleRows(X + t0 * cols, w + t0, 1, xw, t, cols, ctx.stream);
    gemmRowMajor(ctx.blas, true, false, cols, cols, t, 1.0f, xw, X + t0 * cols, 1.0f, H, p);
  }
  check(cudaStreamSynchronize(ctx.stream), "hessianAccumulate sync");
}

}  // namespace moeq::cuda
