// The device engine's glue kernels (see engine_ops.h) and prefill attention on cuBLAS batched
// GEMMs. The glue kernels are plain one-thread-per-element loops with the CPU engine's rounding
// (products of an f32 and a JS number in double, fused multiply-adds where the JS loop adds an
// exact double product to an f32); attention's scalar references are the CPU attentionF32 and
// the one-warp-per-query cudaAttentionF32, which native/bench/gpu/goldens.ts checks it against.
#include <algorithm>
#include <cmath>
#include <vector>

#include "engine_ops.h"

namespace moeq::cuda {
namespace {

constexpr int kThreads = 256;

unsigned gridFor(int64_t n) {
  const int64_t b = (n + kThreads - 1) / kThreads;
  return unsigned(std::clamp<int64_t>(b, 1, int64_t(65535) * 64));
}

#define GRID_STRIDE(i, n) \
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); i += int64_t(gridDim.x) * blockDim.x)

__global__ void fillRowsKernel(float* y, const float* row, int64_t rows, int64_t cols) {
  GRID_STRIDE(i, rows * cols) y[i] = row[i % cols];
}

__global__ void residualAddKernel(const float* a, const float* b, float* out, int64_t n, double scale, bool plain) {
  GRID_STRIDE(i, n) out[i] = plain ? __fadd_rn(a[i], b[i]) : __fadd_rn(a[i], float(double(b[i]) * scale));
}

__global__ void scaleKernel(const float* x, float* out, int64_t n, double f, bool divide) {
  GRID_STRIDE(i, n) out[i] = float(divide ? double(x[i]) / f : double(x[i]) * f);
}

__global__ void clampKernel(const float* x, float* out, int64_t n, float c) {
  GRID_STRIDE(i, n) out[i] = fminf(c, fmaxf(-c, x[i]));
}

__global__ void mulKernel(const float* a, const float* b, float* out, int64_t n) {
  GRID_STRIDE(i, n) out[i] = __fmul_rn(a[i], b[i]);
}

__global__ void stridedKernel(const float* src, float* dst, int64_t rows, int64_t cols, int64_t rs, int64_t cs,
                              int64_t drs, bool mul) {
  GRID_STRIDE(i, rows * cols) {
    const int64_t r = i / cols, c = i % cols;
    const float v = src[r * rs + c * cs];
    float& d = dst[r * drs + c];
    d = mul ? __fmul_rn(d, v) : v;
  }
}

__global__ void gatherRowsKernel(const float* x, const int32_t* idx, const float* w, float* out, int64_t n,
                                 int64_t cols, int64_t xRows, unsigned long long* bad) {
  GRID_STRIDE(i, n * cols) {
    const int64_t r = i / cols, c = i % cols;
    const int64_t src = idx[r];
    if (src < 0 || src >= xRows) {
      if (c == 0) atomicMin(bad, (unsigned long long)r);
      continue;
    }
    const float v = x[src * cols + c];
    out[i] = w ? __fmul_rn(v, w[r]) : v;
  }
}

__global__ void scatterAddRowsKernel(float* y, const float* src, const int32_t* idx, const float* w, int64_t n,
                                     int64_t cols, int64_t yRows, unsigned long long* bad) {
  GRID_STRIDE(i, n * cols) {
    const int64_t r = i / cols, c = i % cols;
    const int64_t dst = idx[r];
    if (dst < 0 || dst >= yRows) {
      if (c == 0) atomicMin(bad, (unsigned long long)r);
      continue;
    }
    float& o = y[dst * cols + c];
    o = w ? __fmaf_rn(src[i], w[r], o) : __fadd_rn(o, src[i]);
  }
}

__global__ void rowScaleAddKernel(float* out, const float* src, const float* g, int64_t rows, int64_t cols) {
  GRID_STRIDE(i, rows * cols) out[i] = __fmaf_rn(g[i / cols], src[i], out[i]);
}

__global__ void scaleRowsKernel(float* x, const float* f, int64_t rows, int64_t cols) {
  GRID_STRIDE(i, rows * cols) x[i] = __fmul_rn(x[i], f[i / cols]);
}

__global__ void renormRowsKernel(float* w, int64_t rows, int64_t k) {
  GRID_STRIDE(r, rows) {
    float s = 0;
    for (int64_t j = 0; j < k; j++) s = __fadd_rn(s, w[r * k + j]);
    for (int64_t j = 0; j < k; j++) w[r * k + j] = __fdiv_rn(w[r * k + j], s);
  }
}

// e4m3 as ops.cu's decodeOne (PyTorch's .to(float32)): bias 7, no infinities, S.1111.111 NaN
__device__ __forceinline__ float e4m3(uint32_t c) {
  const uint32_t e = (c >> 3) & 0xf, m = c & 7;
  float mag;
  if (e == 0xf && m == 7) mag = __uint_as_float(0x7fc00000u);
  else if (e == 0) mag = float(m) * 0.001953125f;
  else mag = __uint_as_float(((e + 120) << 23) | (m << 20));
  return (c & 0x80) ? -mag : mag;
}

// f32 → bf16 bits, round to nearest even, NaN → 0x7fc0 (libs/tensor's f32BitsToBf16Bits)
__device__ __forceinline__ uint16_t bf16Bits(float v) {
  const uint32_t u = __float_as_uint(v);
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;
  return uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

__global__ void dequantFp8BlockKernel(const uint8_t* codes, const float* scales, void* out, int64_t rows, int64_t cols,
                                      int64_t br, int64_t bc, bool bf16) {
  const int64_t sc = (cols + bc - 1) / bc;
  GRID_STRIDE(i, rows * cols) {
    const int64_t r = i / cols, c = i % cols;
    const float v = __fmul_rn(e4m3(codes[i]), scales[(r / br) * sc + c / bc]);
    if (bf16) static_cast<uint16_t*>(out)[i] = bf16Bits(v);
    else static_cast<float*>(out)[i] = v;
  }
}

__global__ void dequantMxfp4TKernel(const uint8_t* blocks, const uint8_t* scales, uint16_t* out, int64_t E,
                                    int64_t rows, int64_t nb, unsigned long long* bad) {
  const float lut[16] = {0.f, 0.5f, 1.f, 1.5f, 2.f, 3.f, 4.f, 6.f, -0.f, -0.5f, -1.f, -1.5f, -2.f, -3.f, -4.f, -6.f};
  const int64_t cols = nb * 32;
  // one thread per output element of expert e: (e, c, r) = value of stored (r, c)
  GRID_STRIDE(i, E * rows * cols) {
    const int64_t r = i % rows, c = (i / rows) % cols, e = i / (rows * cols);
    const int64_t g = c / 32, j = (c % 32) / 2;
    const int64_t si = (e * rows + r) * nb + g;
    const uint32_t sc = scales[si];
    if (sc == 0xffu) {
      atomicMin(bad, (unsigned long long)si);
      continue;
    }
    const uint8_t byte = blocks[si * 16 + j];
    const float v = ldexpf(lut[(c & 1) ? (byte >> 4) : (byte & 15)], int(sc) - 127);
    out[i] = bf16Bits(v);
  }
}

__global__ void indexerScoresKernel(const float* q, const float* k, const float* w, float* out, int64_t B, int64_t T,
                                    int64_t H, int64_t D, double scale, double headScale) {
  GRID_STRIDE(i, B * T * T) {
    const int64_t s = i % T, t = (i / T) % T, b = i / (T * T);
    if (s > t) {
      out[i] = -INFINITY;
      continue;
    }
    const int64_t r = b * T + t;
    const float* kr = k + (b * T + s) * D;
    float acc = 0;
    for (int64_t h = 0; h < H; h++) {
      const float* qh = q + (r * H + h) * D;
      double d = 0;
      for (int64_t e = 0; e < D; e++) d += double(qh[e]) * double(kr[e]);
      const float dot = float(fmax(0.0, d * scale));
      const float wh = float(double(w[r * H + h]) * headScale);
      acc = __fmaf_rn(wh, dot, acc);
    }
    out[i] = acc;
  }
}

constexpr int kSparsePer = 16;  // head dims up to 512 (16 values per lane)

__global__ void sparseAttentionKernel(const float* q, const float* k, const float* v, float* out, const int32_t* sel,
                                      int64_t B, int64_t T, int64_t H, int64_t D, int64_t Dv, int64_t topK,
                                      float scale) {
  const int64_t gw = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x & 31;
  if (gw >= B * T * H) return;
  const int64_t h = gw % H, r = gw / H, t = r % T, b = r / T;
  float qv[kSparsePer], acc[kSparsePer];
#pragma unroll
  for (int u = 0; u < kSparsePer; u++) {
    const int64_t d = int64_t(u) * 32 + lane;
    qv[u] = d < D ? q[(r * H + h) * D + d] : 0.0f;
    acc[u] = 0.0f;
  }
  float m = -INFINITY, l = 0.0f;
  for (int64_t j = 0; j < topK; j++) {
    const int64_t key = sel[r * topK + j];
    if (key < 0 || key > t) continue;
    const float* kr = k + ((b * T + key) * H + h) * D;
    float sc = 0;
#pragma unroll
    for (int u = 0; u < kSparsePer; u++) {
      const int64_t d = int64_t(u) * 32 + lane;
      if (d < D) sc += qv[u] * kr[d];
    }
    for (int o = 16; o > 0; o >>= 1) sc += __shfl_xor_sync(0xffffffffu, sc, o);
    sc *= scale;
    const float mNew = fmaxf(m, sc);
    const float corr = expf(m - mNew), p = expf(sc - mNew);
    l = l * corr + p;
    const float* vr = v + ((b * T + key) * H + h) * Dv;
#pragma unroll
    for (int u = 0; u < kSparsePer; u++) {
      const int64_t d = int64_t(u) * 32 + lane;
      if (d < Dv) acc[u] = acc[u] * corr + p * vr[d];
    }
    m = mNew;
  }
  const float inv = l > 0 ? 1.0f / l : 0.0f;
#pragma unroll
  for (int u = 0; u < kSparsePer; u++) {
    const int64_t d = int64_t(u) * 32 + lane;
    if (d < Dv) out[(r * H + h) * Dv + d] = acc[u] * inv;
  }
}

__device__ __forceinline__ float warpReduce(float v, bool isMax) {
  for (int o = 16; o > 0; o >>= 1) {
    const float u = __shfl_xor_sync(0xffffffffu, v, o);
    v = isMax ? fmaxf(v, u) : v + u;
  }
  return v;
}

__device__ float blockReduce(float v, bool isMax) {
  __shared__ float part[32];
  v = warpReduce(v, isMax);
  const int w = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();
  if (lane == 0) part[w] = v;
  __syncthreads();
  v = lane < int(blockDim.x / 32) ? part[lane] : (isMax ? -INFINITY : 0.0f);
  return warpReduce(v, isMax);
}

// One block per score row (pair, query i) of a chunk starting at pair p0. The row already holds
// scale·q·k; keys outside [lo, hi) become 0, the rest exp(s − m)/denom with m and denom over the
// visible keys and the head's sink (attention.cc's formula).
__global__ void maskedSoftmaxKernel(float* S, int64_t T, int64_t Hq, int64_t p0, const float* sinks, bool causal,
                                    int64_t window, int64_t chunk) {
  const int64_t row = blockIdx.x;
  const int64_t i = row % T, pair = p0 + row / T, h = pair % Hq;
  float* s = S + row * T;
  int64_t lo = 0, hi = causal ? i + 1 : T;
  if (window > 0) lo = max(lo, i - window + 1);
  if (chunk > 0) {
    const int64_t c0 = (i / chunk) * chunk;
    lo = max(lo, c0);
    hi = min(hi, c0 + chunk);
  }
  float m = sinks ? sinks[h] : -INFINITY;
  for (int64_t j = lo + threadIdx.x; j < hi; j += blockDim.x) m = fmaxf(m, s[j]);
  m = blockReduce(m, true);
  float d = 0;
  for (int64_t j = lo + threadIdx.x; j < hi; j += blockDim.x) d += expf(s[j] - m);
  d = blockReduce(d, false);
  if (sinks) d += expf(sinks[h] - m);
  const float inv = d > 0 ? 1.0f / d : 0.0f;
  for (int64_t j = threadIdx.x; j < T; j += blockDim.x) s[j] = j >= lo && j < hi ? expf(s[j] - m) * inv : 0.0f;
}

}  // namespace

void launchFillRows(float* y, const float* row, int64_t rows, int64_t cols, cudaStream_t s) {
  if (rows * cols == 0) return;
  fillRowsKernel<<<gridFor(rows * cols), kThreads, 0, s>>>(y, row, rows, cols);
  checkLaunch("fillRows");
}
void launchResidualAdd(const float* a, const float* b, float* out, int64_t n, double scale, cudaStream_t s) {
  if (n == 0) return;
  residualAddKernel<<<gridFor(n), kThreads, 0, s>>>(a, b, out, n, scale, scale == 1.0);
  checkLaunch("residualAdd");
}
void launchScale(const float* x, float* out, int64_t n, double factor, bool divide, cudaStream_t s) {
  if (n == 0) return;
  scaleKernel<<<gridFor(n), kThreads, 0, s>>>(x, out, n, factor, divide);
  checkLaunch("scale");
}
void launchClamp(const float* x, float* out, int64_t n, float c, cudaStream_t s) {
  if (n == 0) return;
  clampKernel<<<gridFor(n), kThreads, 0, s>>>(x, out, n, c);
  checkLaunch("clamp");
}
void launchMul(const float* a, const float* b, float* out, int64_t n, cudaStream_t s) {
  if (n == 0) return;
  mulKernel<<<gridFor(n), kThreads, 0, s>>>(a, b, out, n);
  checkLaunch("mul");
}
void launchStrided(const float* src, float* dst, int64_t rows, int64_t cols, int64_t rs, int64_t cs, int64_t drs,
                   bool mul, cudaStream_t s) {
  if (rows * cols == 0) return;
  stridedKernel<<<gridFor(rows * cols), kThreads, 0, s>>>(src, dst, rows, cols, rs, cs, drs, mul);
  checkLaunch("strided");
}
void launchGatherRows(const float* x, const int32_t* idx, const float* w, float* out, int64_t n, int64_t cols,
                      int64_t xRows, int64_t* bad, cudaStream_t s) {
  if (n * cols == 0) return;
  gatherRowsKernel<<<gridFor(n * cols), kThreads, 0, s>>>(x, idx, w, out, n, cols, xRows,
                                                          reinterpret_cast<unsigned long long*>(bad));
  checkLaunch("gatherRows");
}
void launchScatterAddRows(float* y, const float* src, const int32_t* idx, const float* w, int64_t n, int64_t cols,
                          int64_t yRows, int64_t* bad, cudaStream_t s) {
  if (n * cols == 0) return;
  scatterAddRowsKernel<<<gridFor(n * cols), kThreads, 0, s>>>(y, src, idx, w, n, cols, yRows,
                                                              reinterpret_cast<unsigned long long*>(bad));
  checkLaunch("scatterAddRows");
}
void launchRowScaleAdd(float* out, const float* src, const float* g, int64_t rows, int64_t cols, cudaStream_t s) {
  if (rows * cols == 0) return;
  rowScaleAddKernel<<<gridFor(rows * cols), kThreads, 0, s>>>(out, src, g, rows, cols);
  checkLaunch("rowScaleAdd");
}
void launchScaleRowsInPlace(float* x, const float* f, int64_t rows, int64_t cols, cudaStream_t s) {
  if (rows * cols == 0) return;
  scaleRowsKernel<<<gridFor(rows * cols), kThreads, 0, s>>>(x, f, rows, cols);
  checkLaunch("scaleRows");
}
void launchRenormRows(float* w, int64_t rows, int64_t k, cudaStream_t s) {
  if (rows == 0) return;
  renormRowsKernel<<<gridFor(rows), kThreads, 0, s>>>(w, rows, k);
  checkLaunch("renormRows");
}

void launchDequantFp8Block(const uint8_t* codes, const float* scales, void* out, int64_t rows, int64_t cols,
                           int64_t br, int64_t bc, bool bf16, cudaStream_t s) {
  if (rows * cols == 0) return;
  dequantFp8BlockKernel<<<gridFor(rows * cols), kThreads, 0, s>>>(codes, scales, out, rows, cols, br, bc, bf16);
  checkLaunch("dequantFp8Block");
}
void launchDequantMxfp4T(const uint8_t* blocks, const uint8_t* scales, uint16_t* out, int64_t E, int64_t rows,
                         int64_t nb, int64_t* bad, cudaStream_t s) {
  if (E * rows * nb == 0) return;
  dequantMxfp4TKernel<<<gridFor(E * rows * nb * 32), kThreads, 0, s>>>(blocks, scales, out, E, rows, nb,
                                                                      reinterpret_cast<unsigned long long*>(bad));
  checkLaunch("dequantMxfp4T");
}

void launchIndexerScores(const float* q, const float* k, const float* w, float* out, int64_t B, int64_t T, int64_t H,
                         int64_t D, double scale, double headScale, cudaStream_t s) {
  if (B * T == 0) return;
  indexerScoresKernel<<<gridFor(B * T * T), kThreads, 0, s>>>(q, k, w, out, B, T, H, D, scale, headScale);
  checkLaunch("indexerScores");
}
void launchSparseAttention(const float* q, const float* k, const float* v, float* out, const int32_t* sel, int64_t B,
                           int64_t T, int64_t H, int64_t D, int64_t Dv, int64_t topK, float scale, cudaStream_t s) {
  const int64_t warps = B * T * H;
  if (warps == 0) return;
  sparseAttentionKernel<<<unsigned((warps + 3) / 4), 128, 0, s>>>(q, k, v, out, sel, B, T, H, D, Dv, topK, scale);
  checkLaunch("sparseAttention");
}

void attentionGemm(DeviceContext& ctx, const AttnGemmArgs& a, Precision p, int64_t scratchBytes) {
  const int64_t pairsTotal = a.B * a.Hq;
  if (pairsTotal == 0 || a.T == 0) return;
  const int64_t tt = a.T * a.T;
  const int64_t pairs = std::clamp<int64_t>(scratchBytes / (tt * 4), 1, pairsTotal);
  Allocation S(size_t(pairs * tt) * 4, ctx.device);
  // six pointer arrays per chunk: K, Q, S for the scores; V, P, out for the values
  Allocation ptrs(size_t(pairs) * 6 * sizeof(void*), ctx.device);
  std::vector<const void*> host(size_t(pairs) * 6);
  const cublasComputeType_t ct = p == Precision::F32    ? CUBLAS_COMPUTE_32F
                                 : p == Precision::TF32 ? CUBLAS_COMPUTE_32F_FAST_TF32
                                                        : CUBLAS_COMPUTE_32F_FAST_16BF;
  const float one = 1.0f, zero = 0.0f, scale = a.scale;
  const int64_t group = a.Hq / a.Hkv;
  float* sBase = static_cast<float*>(S.ptr);
  const void** dev = static_cast<const void**>(ptrs.ptr);
  for (int64_t p0 = 0; p0 < pairsTotal; p0 += pairs) {
    const int64_t n = std::min(pairs, pairsTotal - p0);
    for (int64_t j = 0; j < n; j++) {
      const int64_t pair = p0 + j, b = pair / a.Hq, h = pair % a.Hq, hk = h / group;
      host[size_t(0 * pairs + j)] = a.k + b * a.T * a.ks + hk * a.D;
      host[size_t(1 * pairs + j)] = a.q + b * a.T * a.qs + h * a.D;
      host[size_t(2 * pairs + j)] = sBase + j * tt;
      host[size_t(3 * pairs + j)] = a.v + b * a.T * a.vs + hk * a.Dv;
      host[size_t(4 * pairs + j)] = sBase + j * tt;
      host[size_t(5 * pairs + j)] = a.out + b * a.T * a.os + h * a.Dv;
    }
    // the previous chunk's GEMMs read the device arrays: overwrite them only after those ran
    check(cudaStreamSynchronize(ctx.stream), "attentionGemm sync");
    check(cudaMemcpyAsync(ptrs.ptr, host.data(), host.size() * sizeof(void*), cudaMemcpyHostToDevice, ctx.stream),
          "attentionGemm pointers");
    // column-major view: Sᵀ[T_k, T_q] = Kᵀᵀ·Qᵀ, i.e. S[i, j] = Σ_d Q[i, d]·K[j, d]
    check(cublasGemmBatchedEx(ctx.blas, CUBLAS_OP_T, CUBLAS_OP_N, int(a.T), int(a.T), int(a.D), &scale,
                              dev + 0 * pairs, CUDA_R_32F, int(a.ks), dev + 1 * pairs, CUDA_R_32F, int(a.qs), &zero,
                              const_cast<void**>(dev + 2 * pairs), CUDA_R_32F, int(a.T), int(n), ct,
                              CUBLAS_GEMM_DEFAULT),
          "cublasGemmBatchedEx (scores)");
    maskedSoftmaxKernel<<<unsigned(n * a.T), kThreads, 0, ctx.stream>>>(sBase, a.T, a.Hq, p0, a.sinks, a.causal,
                                                                        a.window, a.chunk);
    checkLaunch("maskedSoftmax");
    // Oᵀ[Dv, T_q] = Vᵀ[Dv, T_k]·Pᵀ[T_k, T_q]
    check(cublasGemmBatchedEx(ctx.blas, CUBLAS_OP_N, CUBLAS_OP_N, int(a.Dv), int(a.T), int(a.T), &one,
                              dev + 3 * pairs, CUDA_R_32F, int(a.vs), dev + 4 * pairs, CUDA_R_32F, int(a.T), &zero,
                              const_cast<void**>(dev + 5 * pairs), CUDA_R_32F, int(a.os), int(n), ct,
                              CUBLAS_GEMM_DEFAULT),
          "cublasGemmBatchedEx (values)");
  }
  check(cudaStreamSynchronize(ctx.stream), "attentionGemm sync");
}

}  // namespace moeq::cuda
