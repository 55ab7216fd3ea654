// Launchers of moeq's own CUDA kernels (kernels.cu, gptq.cu). Row-major, f32 unless named.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace moeq::cuda {

void launchFillUniform(float* x, size_t n, uint64_t seed, float lo, float hi, cudaStream_t s);
void launchSoftmaxRows(const float* x, float* out, int64_t rows, int64_t cols, cudaStream_t s);
// Row top-k, descending; ties: lower index first; NaN ranks above every number (as topkF32).
void launchTopkRows(const float* x, int64_t rows, int64_t cols, int k, int32_t* idx, float* val, cudaStream_t s);
void launchSwiglu(const float* gate, const float* up, float* out, int64_t rows, int64_t cols, int64_t rowStride,
                  int64_t colStride, cudaStream_t s);
void launchRmsNorm(const float* x, const float* w, float* out, int64_t rows, int64_t cols, float eps, bool plusOne,
                   cudaStream_t s);
// out[t, c] = x[t, c] · w[t·wStride]
void launchScaleRows(const float* x, const float* w, int64_t wStride, float* out, int64_t rows, int64_t cols,
                     cudaStream_t s);
// From y [rows, 2·inter] (gate | up): a = silu(gate)·up and aw = a · w[t·wStride].
void launchSwigluWeighted(const float* y, int64_t inter, const float* w, int64_t wStride, float* a, float* aw,
                          int64_t rows, cudaStream_t s);

// bf16 (round to nearest even) copies for the tensor-core GEMMs; `out` points to __nv_bfloat16.
void launchToBf16(const float* x, void* out, size_t n, cudaStream_t s);
void launchScaleRowsBf16(const float* x, const float* w, int64_t wStride, void* out, int64_t rows, int64_t cols,
                         cudaStream_t s);
void launchSwigluWeightedBf16(const float* y, int64_t inter, const float* w, int64_t wStride, void* a, void* aw,
                              int64_t rows, cudaStream_t s);

}  // namespace moeq::cuda
