// Elementwise / row kernels of the CUDA build: the same formulas as the CPU kernels in ../ops.cc,
// ../norm.cc and ../topk.cc (one warp per row where a row reduction is needed).
#include <cuda_bf16.h>

#include <cmath>

#include "common.h"
#include "kernels.h"

namespace moeq::cuda {
namespace {

constexpr int kWarp = 32;

__device__ __forceinline__ float warpMax(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ __forceinline__ float warpSum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// splitmix64 of (seed, index): reproducible and independent of the launch shape.
__global__ void fillUniformKernel(float* x, size_t n, uint64_t seed, float lo, float hi) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    uint64_t z = seed + 0x9e3779b97f4a7c15ull * (i + 1);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    x[i] = lo + (hi - lo) * float(double(z >> 40) * (1.0 / 16777216.0));
  }
}

__global__ void softmaxKernel(const float* x, float* out, int64_t rows, int64_t cols) {
  int64_t r = blockIdx.x * int64_t(blockDim.x / kWarp) + threadIdx.x / kWarp;
  int lane = threadIdx.x % kWarp;
  if (r >= rows) return;
  const float* xr = x + r * cols;
  float* yr = out + r * cols;
  float m = -INFINITY;
  for (int64_t c = lane; c < cols; c += kWarp) m = fmaxf(m, xr[c]);
  m = warpMax(m);
  float s = 0;
  for (int64_t c = lane; c < cols; c += kWarp) s += expf(xr[c] - m);
  s = warpSum(s);
  const float inv = 1.0f / s;
  for (int64_t c = lane; c < cols; c += kWarp) yr[c] = expf(xr[c] - m) * inv;
}

// a ranks before b: NaN first, then larger values, then lower index
__device__ __forceinline__ bool ranksBefore(float a, int ia, float b, int ib) {
  bool na = isnan(a), nb = isnan(b);
  if (na != nb) return na;
  if (!na && a != b) return a > b;
  return ia < ib;
}

__global__ void topkKernel(const float* x, int64_t rows, int64_t cols, int k, int32_t* idx, float* val) {
  int64_t r = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (r >= rows) return;
  const float* xr = x + r * cols;
  float prevV = 0;
  int prevI = -1;
  for (int p = 0; p < k; p++) {
    float bestV = 0;
    int bestI = -1;
    for (int c = 0; c < int(cols); c++) {
      float v = xr[c];
      if (prevI >= 0 && !ranksBefore(prevV, prevI, v, c)) continue;  // already picked
      if (bestI < 0 || ranksBefore(v, c, bestV, bestI)) {
        bestV = v;
        bestI = c;
      }
    }
    idx[r * k + p] = bestI;
    val[r * k + p] = bestV;
    prevV = bestV;
    prevI = bestI;
  }
}

__device__ __forceinline__ float silu(float g) { return g / (1.0f + expf(-g)); }

__global__ void swigluKernel(const float* gate, const float* up, float* out, int64_t rows, int64_t cols, int64_t rs,
                             int64_t cs) {
  int64_t n = rows * cols;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t r = i / cols, c = i % cols;
    float g = gate[r * rs + c * cs];
    out[i] = silu(g) * up[r * rs + c * cs];
  }
}

__global__ void rmsNormKernel(const float* x, const float* w, float* out, int64_t rows, int64_t cols, float eps,
                              bool plusOne) {
  int64_t r = blockIdx.x * int64_t(blockDim.x / kWarp) + threadIdx.x / kWarp;
  int lane = threadIdx.x % kWarp;
  if (r >= rows) return;
  const float* xr = x + r * cols;
  float s = 0;
  for (int64_t c = lane; c < cols; c += kWarp) s += xr[c] * xr[c];
  s = warpSum(s);
  const float inv = rsqrtf(s / float(cols) + eps);
  for (int64_t c = lane; c < cols; c += kWarp) {
    float g = w ? (plusOne ? 1.0f + w[c] : w[c]) : 1.0f;
    out[r * cols + c] = g * (xr[c] * inv);
  }
}

__global__ void scaleRowsKernel(const float* x, const float* w, int64_t ws, float* out, int64_t rows, int64_t cols,
                                bool vec) {
  int64_t n4 = rows * cols / 4;
  if (vec) {
    const float4* x4 = reinterpret_cast<const float4*>(x);
    float4* o4 = reinterpret_cast<float4*>(out);
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n4; i += int64_t(gridDim.x) * blockDim.x) {
      float s = w[(i * 4 / cols) * ws];
      float4 v = x4[i];
      o4[i] = make_float4(v.x * s, v.y * s, v.z * s, v.w * s);
    }
    return;
  }
  int64_t n = rows * cols;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = x[i] * w[(i / cols) * ws];
}

__global__ void swigluWeightedKernel(const float* y, int64_t inter, const float* w, int64_t ws, float* a, float* aw,
                                     int64_t rows) {
  int64_t n = rows * inter;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t r = i / inter, c = i % inter;
    float v = silu(y[r * 2 * inter + c]) * y[r * 2 * inter + inter + c];
    a[i] = v;
    aw[i] = v * w[r * ws];
  }
}

__global__ void toBf16Kernel(const float* x, __nv_bfloat16* out, size_t n) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    out[i] = __float2bfloat16_rn(x[i]);
}

__global__ void scaleRowsBf16Kernel(const float* x, const float* w, int64_t ws, __nv_bfloat16* out, int64_t rows,
                                    int64_t cols) {
  int64_t n = rows * cols;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = __float2bfloat16_rn(x[i] * w[(i / cols) * ws]);
}

__global__ void swigluWeightedBf16Kernel(const float* y, int64_t inter, const float* w, int64_t ws, __nv_bfloat16* a,
                                         __nv_bfloat16* aw, int64_t rows) {
  int64_t n = rows * inter;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t r = i / inter, c = i % inter;
    float v = silu(y[r * 2 * inter + c]) * y[r * 2 * inter + inter + c];
    a[i] = __float2bfloat16_rn(v);
    aw[i] = __float2bfloat16_rn(v * w[r * ws]);
  }
}

int gridFor(int64_t n, int threads) {
  int64_t b = (n + threads - 1) / threads;
  return int(b < 1 ? 1 : (b > 65535 * 8 ? 65535 * 8 : b));
}

}  // namespace

void launchFillUniform(float* x, size_t n, uint64_t seed, float lo, float hi, cudaStream_t s) {
  if (n == 0) return;
  fillUniformKernel<<<gridFor(int64_t(n), 256), 256, 0, s>>>(x, n, seed, lo, hi);
  checkLaunch("fillUniform");
}
void launchSoftmaxRows(const float* x, float* out, int64_t rows, int64_t cols, cudaStream_t s) {
  if (rows == 0) return;
  softmaxKernel<<<int((rows + 7) / 8), 256, 0, s>>>(x, out, rows, cols);
  checkLaunch("softmax");
}
void launchTopkRows(const float* x, int64_t rows, int64_t cols, int k, int32_t* idx, float* val, cudaStream_t s) {
  if (rows == 0 || k == 0) return;
  topkKernel<<<int((rows + 127) / 128), 128, 0, s>>>(x, rows, cols, k, idx, val);
  checkLaunch("topk");
}
void launchSwiglu(const float* gate, const float* up, float* out, int64_t rows, int64_t cols, int64_t rs, int64_t cs,
                  cudaStream_t s) {
  if (rows * cols == 0) return;
  swigluKernel<<<gridFor(rows * cols, 256), 256, 0, s>>>(gate, up, out, rows, cols, rs, cs);
  checkLaunch("swiglu");
}
void launchRmsNorm(const float* x, const float* w, float* out, int64_t rows, int64_t cols, float eps, bool plusOne,
                   cudaStream_t s) {
  if (rows == 0) return;
  rmsNormKernel<<<int((rows + 7) / 8), 256, 0, s>>>(x, w, out, rows, cols, eps, plusOne);
  checkLaunch("rmsNorm");
}
void launchScaleRows(const float* x, const float* w, int64_t ws, float* out, int64_t rows, int64_t cols,
                     cudaStream_t s) {
  if (rows * cols == 0) return;
  const bool vec = cols % 4 == 0 && (reinterpret_cast<uintptr_t>(x) | reinterpret_cast<uintptr_t>(out)) % 16 == 0;
  scaleRowsKernel<<<gridFor(rows * cols / 4 + 1, 256), 256, 0, s>>>(x, w, ws, out, rows, cols, vec);
  checkLaunch("scaleRows");
}
void launchSwigluWeighted(const float* y, int64_t inter, const float* w, int64_t ws, float* a, float* aw, int64_t rows,
                          cudaStream_t s) {
  if (rows * inter == 0) return;
  swigluWeightedKernel<<<gridFor(rows * inter, 256), 256, 0, s>>>(y, inter, w, ws, a, aw, rows);
  checkLaunch("swigluWeighted");
}

void launchToBf16(const float* x, void* out, size_t n, cudaStream_t s) {
  if (n == 0) return;
  toBf16Kernel<<<gridFor(int64_t(n), 256), 256, 0, s>>>(x, static_cast<__nv_bfloat16*>(out), n);
  checkLaunch("toBf16");
}
void launchScaleRowsBf16(const float* x, const float* w, int64_t ws, void* out, int64_t rows, int64_t cols,
                         cudaStream_t s) {
  if (rows * cols == 0) return;
  scaleRowsBf16Kernel<<<gridFor(rows * cols, 256), 256, 0, s>>>(x, w, ws, static_cast<__nv_bfloat16*>(out), rows,
                                                                  cols);
  checkLaunch("scaleRowsBf16");
}
void launchSwigluWeightedBf16(const float* y, int64_t inter, const float* w, int64_t ws, void* a, void* aw,
                              int64_t rows, cudaStream_t s) {
  if (rows * inter == 0) return;
  swigluWeightedBf16Kernel<<<gridFor(rows * inter, 256), 256, 0, s>>>(
      y, inter, w, ws, static_cast<__nv_bfloat16*>(a), static_cast<__nv_bfloat16*>(aw), rows);
  checkLaunch("swigluWeightedBf16");
}

}  // namespace moeq::cuda
