// Forward-pass kernels of the CUDA build with the CPU kernels' formulas (see ops.h). Row
// reductions take one block per row (log-softmax rows can be a whole vocabulary wide). RoPE and
// the causal conv use __fmul_rn/__fadd_rn so nvcc cannot contract them into FMAs: the CPU build
// (x86-64-v2, no FMA) rounds every product, and this way RoPE agrees with ropeF32 bit for bit.
#include <cmath>

#include "common.h"
#include "ops.h"

namespace moeq::cuda {
namespace {

constexpr int kWarp = 32;

__device__ __forceinline__ float warpSum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warpMax(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Every thread of the block gets the result. blockDim.x is a multiple of 32, at most 1024.
template <bool MAX>
__device__ float blockReduce(float v) {
  __shared__ float part[32];
  v = MAX ? warpMax(v) : warpSum(v);
  const int w = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  __syncthreads();  // a previous call's readers are done with `part`
  if (lane == 0) part[w] = v;
  __syncthreads();
  const int nw = blockDim.x / kWarp;
  v = lane < nw ? part[lane] : (MAX ? -INFINITY : 0.0f);
  return MAX ? warpMax(v) : warpSum(v);
}

int rowThreads(int64_t cols) {
  if (cols >= 256) return 256;
  return int(cols < kWarp ? kWarp : (cols + kWarp - 1) / kWarp * kWarp);
}

int gridFor(int64_t n, int threads) {
  int64_t b = (n + threads - 1) / threads;
  return int(b < 1 ? 1 : (b > 65535 * 8 ? 65535 * 8 : b));
}

__global__ void logSoftmaxKernel(const float* x, float* out, int64_t cols) {
  const float* xr = x + int64_t(blockIdx.x) * cols;
  float* yr = out + int64_t(blockIdx.x) * cols;
  float m = -INFINITY;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) m = fmaxf(m, xr[c]);
  m = blockReduce<true>(m);
  if (m == -INFINITY) m = 0;  // a fully masked row: as the CPU kernel
  float s = 0;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) s += expf(xr[c] - m);
  s = blockReduce<false>(s);
  const float lse = m + logf(s);
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) yr[c] = xr[c] - lse;
}

__device__ __forceinline__ float act(ActKind k, float x) {
  switch (k) {
    case ActKind::Silu: return x / (1.0f + expf(-x));
    case ActKind::GeluTanh: return 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
    case ActKind::GeluErf: return 0.5f * x * (1.0f + erff(x * 0.7071067811865476f));
    case ActKind::Sigmoid: return 1.0f / (1.0f + expf(-x));
    case ActKind::Softplus: return x > 20.0f ? x : log1pf(expf(x));  // torch's threshold 20
    case ActKind::Relu: return x > 0 ? x : 0.0f;
  }
  return x;
}

__global__ void activationKernel(ActKind k, const float* x, float* out, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = act(k, x[i]);
}

__global__ void clampedSwigluKernel(const float* gate, const float* up, float* out, int64_t rows, int64_t cols,
                                    int64_t rs, int64_t cs, float alpha, float limit) {
  const int64_t n = rows * cols;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t o = (i / cols) * rs + (i % cols) * cs;
    float a = gate[o], u = up[o];
    a = a < limit ? a : limit;
    u = u < limit ? (u > -limit ? u : -limit) : limit;
    out[i] = (u + 1.0f) * (a / (1.0f + expf(-alpha * a)));
  }
}

__global__ void layerNormKernel(const float* x, const float* w, const float* b, float* out, int64_t cols, float eps) {
  const float* xr = x + int64_t(blockIdx.x) * cols;
  float* yr = out + int64_t(blockIdx.x) * cols;
  float s = 0;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) s += xr[c];
  const float mean = blockReduce<false>(s) / float(cols);
  float v = 0;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) v += (xr[c] - mean) * (xr[c] - mean);
  const float inv = 1.0f / sqrtf(blockReduce<false>(v) / float(cols) + eps);
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    float t = (xr[c] - mean) * inv;
    if (w) t *= w[c];
    if (b) t += b[c];
    yr[c] = t;
  }
}

__global__ void l2NormKernel(const float* x, float* out, int64_t cols, float eps) {
  const float* xr = x + int64_t(blockIdx.x) * cols;
  float* yr = out + int64_t(blockIdx.x) * cols;
  float s = 0;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) s += xr[c] * xr[c];
  const float inv = 1.0f / sqrtf(blockReduce<false>(s) + eps);
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) yr[c] = xr[c] * inv;
}

__global__ void ropeKernel(float* x, const float* cosT, const float* sinT, const int32_t* pos, int64_t maxPos,
                           int64_t rows, int64_t heads, int64_t headDim, int64_t half, bool interleaved,
                           int64_t stride, int64_t* badRow) {
  const int64_t n = rows * heads * half;
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < n; t += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = t % half, h = (t / half) % heads, r = t / (half * heads);
    const int64_t p = pos[r];
    if (p < 0 || p >= maxPos) {
      if (h == 0 && i == 0) atomicMin(reinterpret_cast<long long*>(badRow), static_cast<long long>(r));
      continue;
    }
    const float c = cosT[p * half + i], s = sinT[p * half + i];
    float* v = x + r * stride + h * headDim;
    const int64_t i1 = interleaved ? 2 * i : i, i2 = interleaved ? 2 * i + 1 : i + half;
    const float a = v[i1], b = v[i2];
    v[i1] = __fsub_rn(__fmul_rn(a, c), __fmul_rn(b, s));
    v[i2] = __fadd_rn(__fmul_rn(b, c), __fmul_rn(a, s));
  }
}

__device__ __forceinline__ float decodeOne(const void* src, StoredDtype d, int64_t i) {
  switch (d) {
    case StoredDtype::F32: return static_cast<const float*>(src)[i];
    case StoredDtype::BF16: return __uint_as_float(uint32_t(static_cast<const uint16_t*>(src)[i]) << 16);
    case StoredDtype::F16: {
      const uint32_t h = static_cast<const uint16_t*>(src)[i];
      const uint32_t sign = (h & 0x8000u) << 16, e = (h >> 10) & 0x1f, man = h & 0x3ff;
      if (e == 0x1f) return __uint_as_float(sign | 0x7f800000u | (man << 13));  // inf / NaN, payload kept
      if (e != 0) return __uint_as_float(sign | ((e + 112) << 23) | (man << 13));
      const float v = float(man) * 5.9604644775390625e-08f;  // subnormal: man·2^-24, exact
      return sign ? -v : v;
    }
    case StoredDtype::F8E4M3: {
      const uint32_t c = static_cast<const uint8_t*>(src)[i];
      const uint32_t e = (c >> 3) & 0xf, m = c & 7;
      float mag;
      if (e == 0xf && m == 7) mag = __uint_as_float(0x7fc00000u);
      else if (e == 0) mag = float(m) * 0.001953125f;  // m/8 · 2^-6
      else mag = __uint_as_float(((e + 120) << 23) | (m << 20));
      return (c & 0x80) ? -mag : mag;
    }
  }
  return 0;
}

__global__ void decodeKernel(const void* src, StoredDtype d, float* out, int64_t n, const float* scale, int64_t cols) {
  const int64_t tiles = scale ? (cols + 127) / 128 : 0;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    float v = decodeOne(src, d, i);
    if (scale) v *= scale[(i / cols / 128) * tiles + (i % cols) / 128];
    out[i] = v;
  }
}

__global__ void causalConvKernel(const float* x, const float* w, float* out, int64_t T, int64_t C, int64_t K,
                                 int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t c = i % C, t = (i / C) % T, b = i / (C * T);
    float s = 0;
    for (int64_t j = 0; j < K; j++) {
      const int64_t src = t - (K - 1) + j;
      if (src >= 0) s = __fadd_rn(s, __fmul_rn(w[c * K + j], x[(b * T + src) * C + c]));
    }
    out[i] = s / (1.0f + expf(-s));
  }
}

// grid (batch·heads, ⌈vDim/32⌉), block kRowWarps warps: lane owns value column j, warp w the
// state rows [w·⌈dk/4⌉, …) of S[:, j] in shared memory ([kDim][32], conflict-free); the per-column
// sums Σ_i S·k and Σ_i S·q are the warps' partial sums added in warp order (deterministic). The
// next token's k, q, v, g, β are loaded into registers while this token computes, so the global
// latency is hidden behind the two passes over S instead of stalling every step.
constexpr int kRowWarps = 4;
constexpr int kStage = 2;  // k/q values each thread stages per token
static_assert(kStage * kWarp * kRowWarps >= kDeltaMaxKDim, "a token's k and q must fit the block's staging registers");

__global__ void deltaRuleKernel(const float* q, const float* k, const float* v, const float* g, const float* beta,
                                float* out, int64_t T, int64_t H, int64_t dk, int64_t dv) {
  extern __shared__ float sm[];
  float* S = sm;
  float* ks = S + dk * kWarp;
  float* qs = ks + dk;
  float* red = qs + dk;  // [2][kRowWarps][32]: partial Σ S·k, then partial Σ S·q
  const int lane = threadIdx.x % kWarp, w = threadIdx.x / kWarp, tid = threadIdx.x;
  const int nthreads = kWarp * kRowWarps;
  const int64_t b = blockIdx.x / H, h = blockIdx.x % H;
  const int64_t j = int64_t(blockIdx.y) * kWarp + lane;
  const bool live = j < dv;
  const int64_t per = (dk + kRowWarps - 1) / kRowWarps;
  const int64_t i0 = min(dk, w * per), i1 = min(dk, i0 + per);
  for (int64_t i = i0; i < i1; i++) S[i * kWarp + lane] = 0.0f;
  float pk[kStage], pq[kStage], pv = 0.0f, pg = 0.0f, pb = 0.0f;
  auto fetch = [&](int64_t r) {
#pragma unroll
    for (int u = 0; u < kStage; u++) {
      const int64_t i = tid + int64_t(u) * nthreads;
      pk[u] = i < dk ? k[r * dk + i] : 0.0f;
      pq[u] = i < dk ? q[r * dk + i] : 0.0f;
    }
    pv = live ? v[r * dv + j] : 0.0f;
    pg = g[r];
    pb = beta[r];
  };
  if (T > 0) fetch(b * T * H + h);
  for (int64_t t = 0; t < T; t++) {
    const int64_t r = (b * T + t) * H + h;
    __syncthreads();  // the previous token's readers of ks, qs and red are done
#pragma unroll
    for (int u = 0; u < kStage; u++) {
      const int64_t i = tid + int64_t(u) * nthreads;
      if (i < dk) {
        ks[i] = pk[u];
        qs[i] = pq[u];
      }
    }
    const float decay = expf(pg), bt = pb, vj = pv;
    if (t + 1 < T) fetch(r + H);  // row (b·T + t + 1)·H + h
    __syncthreads();
    float mem = 0;
    for (int64_t i = i0; i < i1; i++) {
      const float s = S[i * kWarp + lane] * decay;
      S[i * kWarp + lane] = s;
      mem += s * ks[i];
    }
    red[w * kWarp + lane] = mem;
    __syncthreads();
    mem = 0;
#pragma unroll
    for (int x = 0; x < kRowWarps; x++) mem += red[x * kWarp + lane];
    const float delta = (vj - mem) * bt;
    float o = 0;
    for (int64_t i = i0; i < i1; i++) {
      const float s = S[i * kWarp + lane] + ks[i] * delta;
      S[i * kWarp + lane] = s;
      o += s * qs[i];
    }
    red[(kRowWarps + w) * kWarp + lane] = o;
    __syncthreads();
    if (w == 0 && live) {
      o = 0;
#pragma unroll
      for (int x = 0; x < kRowWarps; x++) o += red[(kRowWarps + x) * kWarp + lane];
      out[r * dv + j] = o;  // v's value of this row was read a token earlier (out may be v)
    }
  }
}

}  // namespace

void launchLogSoftmaxRows(const float* x, float* out, int64_t rows, int64_t cols, cudaStream_t s) {
  if (rows == 0 || cols == 0) return;
  logSoftmaxKernel<<<unsigned(rows), rowThreads(cols), 0, s>>>(x, out, cols);
  checkLaunch("logSoftmax");
}

void launchActivation(ActKind kind, const float* x, float* out, int64_t n, cudaStream_t s) {
  if (n == 0) return;
  activationKernel<<<gridFor(n, 256), 256, 0, s>>>(kind, x, out, n);
  checkLaunch("activation");
}

void launchClampedSwiglu(const float* gate, const float* up, float* out, int64_t rows, int64_t cols, int64_t rs,
                         int64_t cs, float alpha, float limit, cudaStream_t s) {
  if (rows * cols == 0) return;
  clampedSwigluKernel<<<gridFor(rows * cols, 256), 256, 0, s>>>(gate, up, out, rows, cols, rs, cs, alpha, limit);
  checkLaunch("clampedSwiglu");
}

void launchLayerNorm(const float* x, const float* w, const float* b, float* out, int64_t rows, int64_t cols, float eps,
                     cudaStream_t s) {
  if (rows == 0 || cols == 0) return;
  layerNormKernel<<<unsigned(rows), rowThreads(cols), 0, s>>>(x, w, b, out, cols, eps);
  checkLaunch("layerNorm");
}

void launchL2Norm(const float* x, float* out, int64_t rows, int64_t cols, float eps, cudaStream_t s) {
  if (rows == 0 || cols == 0) return;
  l2NormKernel<<<unsigned(rows), rowThreads(cols), 0, s>>>(x, out, cols, eps);
  checkLaunch("l2Norm");
}

void launchRope(float* x, const float* cosT, const float* sinT, const int32_t* pos, int64_t maxPos, int64_t rows,
                int64_t heads, int64_t headDim, int64_t rotaryDim, bool interleaved, int64_t rowStride,
                int64_t* badRow, cudaStream_t s) {
  const int64_t half = rotaryDim / 2;
  if (rows * heads * half == 0) return;
  ropeKernel<<<gridFor(rows * heads * half, 256), 256, 0, s>>>(x, cosT, sinT, pos, maxPos, rows, heads, headDim, half,
                                                                interleaved, rowStride, badRow);
  checkLaunch("rope");
}

void launchDecode(const void* src, StoredDtype d, float* out, int64_t count, const float* blockScale, int64_t cols,
                  cudaStream_t s) {
  if (count == 0) return;
  decodeKernel<<<gridFor(count, 256), 256, 0, s>>>(src, d, out, count, blockScale, cols);
  checkLaunch("decode");
}

void launchCausalConv1dSilu(const float* x, const float* w, float* out, int64_t batch, int64_t seqLen,
                            int64_t channels, int64_t kernel, cudaStream_t s) {
  const int64_t n = batch * seqLen * channels;
  if (n == 0) return;
  causalConvKernel<<<gridFor(n, 256), 256, 0, s>>>(x, w, out, seqLen, channels, kernel, n);
  checkLaunch("causalConv1dSilu");
}

void launchGatedDeltaRule(const float* q, const float* k, const float* v, const float* g, const float* beta,
                          float* out, int64_t batch, int64_t seqLen, int64_t heads, int64_t kDim, int64_t vDim,
                          cudaStream_t s) {
  if (batch * heads * seqLen * vDim == 0) return;
  const dim3 grid(unsigned(batch * heads), unsigned((vDim + kWarp - 1) / kWarp));
  const size_t smem = size_t(kDim * kWarp + 2 * kDim + 2 * kRowWarps * kWarp) * sizeof(float);  // ≤ 36 KiB
  deltaRuleKernel<<<grid, kWarp * kRowWarps, smem, s>>>(q, k, v, g, beta, out, seqLen, heads, kDim, vDim);
  checkLaunch("gatedDeltaRule");
}

}  // namespace moeq::cuda
