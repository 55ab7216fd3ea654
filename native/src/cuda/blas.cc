#include "blas.h"

#include <algorithm>

#include "kernels.h"

namespace moeq::cuda {
namespace {

cublasComputeType_t computeType(Precision p) {
  switch (p) {
    case Precision::F32: return CUBLAS_COMPUTE_32F;
    case Precision::TF32: return CUBLAS_COMPUTE_32F_FAST_TF32;
    case Precision::BF16: return CUBLAS_COMPUTE_32F;  // on bf16 copies (see gemmRowMajor)
  }
  return CUBLAS_COMPUTE_32F;
}

void checkDims(int64_t m, int64_t n, int64_t k) {
  const int64_t lim = int64_t(1) << 31;
  if (m < 0 || n < 0 || k < 0 || m >= lim || n >= lim || k >= lim)
    throw CudaError("gemm (cuda): dimensions out of range");
}

}  // namespace

void gemmRowMajorBf16(cublasHandle_t h, bool transA, bool transB, int64_t m, int64_t n, int64_t k, float alpha,
                      const void* A, const void* B, float beta, float* C) {
  checkDims(m, n, k);
  if (m == 0 || n == 0) return;
  check(cublasGemmEx(h, transB ? CUBLAS_OP_T : CUBLAS_OP_N, transA ? CUBLAS_OP_T : CUBLAS_OP_N, int(n), int(m), int(k),
                     &alpha, B, CUDA_R_16BF, int(transB ? k : n), A, CUDA_R_16BF, int(transA ? m : k), &beta, C,
                     CUDA_R_32F, int(n), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
        "cublasGemmEx (bf16)");
}

void gemmRowMajor(cublasHandle_t h, bool transA, bool transB, int64_t m, int64_t n, int64_t k, float alpha,
                  const float* A, const float* B, float beta, float* C, Precision p) {
  checkDims(m, n, k);
  if (m == 0 || n == 0) return;
  if (p == Precision::BF16) {
    cudaStream_t st = nullptr;
    check(cublasGetStream(h, &st), "cublasGetStream");
    int dev = 0;
    check(cudaGetDevice(&dev), "cudaGetDevice");
    Allocation a(size_t(m * k) * 2, dev), b(size_t(k * n) * 2, dev);
    launchToBf16(A, a.ptr, size_t(m * k), st);
    launchToBf16(B, b.ptr, size_t(k * n), st);
    gemmRowMajorBf16(h, transA, transB, m, n, k, alpha, a.ptr, b.ptr, beta, C);
    check(cudaStreamSynchronize(st), "gemm (bf16) sync");
    return;
  }
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
  if (p == Precision::BF16) {
    for (int64_t i = 0; i < batch; i++)
      gemmRowMajor(h, transA, transB, m, n, k, alpha, A + i * sA, B + i * sB, beta, C + i * sC, p);
    return;
  }
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
  if (p == Precision::BF16) {
    Allocation xb(size_t(chunk * cols) * 2, ctx.device), xwb(size_t(chunk * cols) * 2, ctx.device);
    for (int64_t t0 = 0; t0 < tokens; t0 += chunk) {
      const int64_t t = std::min(chunk, tokens - t0);
      launchToBf16(X + t0 * cols, xb.ptr, size_t(t * cols), ctx.stream);
      launchScaleRowsBf16(X + t0 * cols, w + t0, 1, xwb.ptr, t, cols, ctx.stream);
      gemmRowMajorBf16(ctx.blas, true, false, cols, cols, t, 1.0f, xwb.ptr, xb.ptr, 1.0f, H);
    }
    check(cudaStreamSynchronize(ctx.stream), "hessianAccumulate sync");
    return;
  }
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
