// One warp per (batch, head, query): the q row and the output accumulator live in registers
// (head dims up to 512 = 16 values per lane), keys stream through an online softmax (running max
// and denominator, rescaled as the max grows), so the T×T score matrix is never stored. K/V rows
// are re-read per query from L2: simple and exact in f32; a tensor-core tiled kernel is the next
// step if prefill attention ever dominates calibration on the GPU.
#include <cmath>

#include "attention.h"
#include "common.h"

namespace moeq::cuda {
namespace {

constexpr int kPer = int(kAttnMaxHeadDim / 32);

__global__ void attentionKernel(AttnArgs a) {
  const int64_t gw = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x & 31;
  if (gw >= a.B * a.Hq * a.T) return;
  const int64_t i = gw % a.T, h = (gw / a.T) % a.Hq, b = gw / (a.T * a.Hq);
  const int64_t hk = h / (a.Hq / a.Hkv);
  const float* qrow = a.q + (b * a.T + i) * a.qs + h * a.D;
  float qv[kPer], acc[kPer];
#pragma unroll
  for (int u = 0; u < kPer; u++) {
    const int64_t d = int64_t(u) * 32 + lane;
    qv[u] = d < a.D ? qrow[d] : 0.0f;
    acc[u] = 0.0f;
  }
  int64_t jlo = 0, jhi = a.T - 1;
  if (a.causal) jhi = i;
  if (a.window > 0) jlo = max(jlo, i - a.window + 1);
  if (a.chunk > 0) {
    jlo = max(jlo, (i / a.chunk) * a.chunk);
    jhi = min(jhi, (i / a.chunk) * a.chunk + a.chunk - 1);
  }
  float m = -INFINITY, l = 0.0f;
  for (int64_t j = jlo; j <= jhi; j++) {
    const float* krow = a.k + (b * a.T + j) * a.ks + hk * a.D;
    float s = 0.0f;
#pragma unroll
    for (int u = 0; u < kPer; u++) {
      const int64_t d = int64_t(u) * 32 + lane;
      if (d < a.D) s += qv[u] * krow[d];
    }
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    s *= a.scale;
    const float mNew = fmaxf(m, s);
    const float corr = expf(m - mNew), p = expf(s - mNew);
    l = l * corr + p;
    const float* vrow = a.v + (b * a.T + j) * a.vs + hk * a.Dv;
#pragma unroll
    for (int u = 0; u < kPer; u++) {
      const int64_t d = int64_t(u) * 32 + lane;
      if (d < a.Dv) acc[u] = acc[u] * corr + p * vrow[d];
    }
    m = mNew;
  }
  if (a.sinks) {
    const float sk = a.sinks[h];
    const float mNew = fmaxf(m, sk);
    const float corr = expf(m - mNew);
    l = l * corr + expf(sk - mNew);
#pragma unroll
    for (int u = 0; u < kPer; u++) acc[u] *= corr;
  }
  float* orow = a.out + (b * a.T + i) * a.os + h * a.Dv;
  const float inv = l > 0 ? 1.0f / l : 0.0f;
#pragma unroll
  for (int u = 0; u < kPer; u++) {
    const int64_t d = int64_t(u) * 32 + lane;
    if (d < a.Dv) orow[d] = acc[u] * inv;
  }
}

}  // namespace

void launchAttention(const AttnArgs& a, cudaStream_t s) {
  const int64_t warps = a.B * a.Hq * a.T;
  if (warps == 0) return;
  attentionKernel<<<unsigned((warps + 3) / 4), 128, 0, s>>>(a);
  checkLaunch("attention");
}

}  // namespace moeq::cuda
