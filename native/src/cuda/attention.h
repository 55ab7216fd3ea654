// Prefill attention on the GPU with the CPU kernel's options (../attention.cc): causal or not,
// GQA/MQA, sliding window, chunked, sinks, custom scale, value head dim ≠ q/k head dim (MLA).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace moeq::cuda {

constexpr int64_t kAttnMaxHeadDim = 512;

struct AttnArgs {
  const float *q, *k, *v;
  float* out;
  const float* sinks;  // [Hq] or null
  int64_t B, T, Hq, Hkv, D, Dv, qs, ks, vs, os, window, chunk;
  bool causal;
  float scale;
};

void launchAttention(const AttnArgs& a, cudaStream_t s);

}  // namespace moeq::cuda
