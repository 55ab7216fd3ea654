// Launchers of the forward-pass kernels the CPU path has in ../ops.cc, ../norm.cc, ../rope.cc,
// ../hard_deltanet.cc and ../gemm_convert.h, with their formulas and argument conventions
// (ops.cu). Row-major f32 unless named; `out` may alias the input where the CPU kernel allows it.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace moeq::cuda {

// Order of ActivationKind in ../../ts/kernels/ops.ts.
enum class ActKind : int { Silu, GeluTanh, GeluErf, Sigmoid, Softplus, Relu };

// Stored weight dtypes of the mixed GEMM (../gemm_convert.h's WeightDtype, same order).
enum class StoredDtype : int { F32, BF16, F16, F8E4M3 };

void launchLogSoftmaxRows(const float* x, float* out, int64_t rows, int64_t cols, cudaStream_t s);
void launchActivation(ActKind kind, const float* x, float* out, int64_t n, cudaStream_t s);
// GPT-OSS: g = min(gate, limit), u = clamp(up, ±limit), out = (u + 1)·g·σ(alpha·g).
void launchClampedSwiglu(const float* gate, const float* up, float* out, int64_t rows, int64_t cols, int64_t rowStride,
                         int64_t colStride, float alpha, float limit, cudaStream_t s);
// Biased variance, two passes (mean, then centred squares); w and b optional.
void launchLayerNorm(const float* x, const float* w, const float* b, float* out, int64_t rows, int64_t cols, float eps,
                     cudaStream_t s);
// y = x / √(Σx² + eps)
void launchL2Norm(const float* x, float* out, int64_t rows, int64_t cols, float eps, cudaStream_t s);
// In place on x [rows, heads, headDim] at rowStride; cos/sin [maxPos, rotaryDim/2]. A row whose
// position is outside [0, maxPos) is left untouched and the lowest such row is written to
// *badRow (initialised by the caller to rows).
void launchRope(float* x, const float* cosT, const float* sinT, const int32_t* pos, int64_t maxPos, int64_t rows,
                int64_t heads, int64_t headDim, int64_t rotaryDim, bool interleaved, int64_t rowStride,
                int64_t* badRow, cudaStream_t s);
// `count` stored values to f32, bit-exact with ../gemm_convert.h. blockScale (optional) multiplies
// each value by its 128×128 tile's scale of the stored [rows, cols] matrix (cols needed then).
void launchDecode(const void* src, StoredDtype d, float* out, int64_t count, const float* blockScale, int64_t cols,
                  cudaStream_t s);
// out[b,t,c] = silu(Σ_j w[c,j]·x[b, t−(K−1)+j, c]), zero left padding.
void launchCausalConv1dSilu(const float* x, const float* w, float* out, int64_t batch, int64_t seqLen,
                            int64_t channels, int64_t kernel, cudaStream_t s);
// Gated delta rule, token recurrence in f32 (../hard_deltanet.cc's recurrentHead): value columns
// are independent of each other, so each (batch, head, 32 columns) is one block whose 4 warps
// split the state rows; the state lives in shared memory.
constexpr int64_t kDeltaMaxKDim = 256;
void launchGatedDeltaRule(const float* q, const float* k, const float* v, const float* g, const float* beta,
                          float* out, int64_t batch, int64_t seqLen, int64_t heads, int64_t kDim, int64_t vDim,
                          cudaStream_t s);

}  // namespace moeq::cuda
