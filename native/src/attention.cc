// Prefill attention (no KV cache) over batched equal-length sequences, f32.
// Layout: row (b,t) of q/k/v/out starts at (b·T+t)·stride; head h occupies [h·d, (h+1)·d), so the
// projections' outputs are used in place without transposes. Covers causal / bidirectional,
// GQA/MQA (q head h reads kv head h / (Hq/Hkv)), sliding window (key j visible iff i−j < window),
// chunked attention (same ⌊i/chunk⌋), attention sinks (a per-head logit that joins the softmax
// denominator and is then dropped), a custom scale, and a value head dim ≠ q/k head dim (MLA).
// NoPE layers and q/k norms are the caller's business (they happen before this kernel).
// attentionF32 runs on the libuv pool and splits (batch, head) pairs over hardware threads;
// attentionF32Ref is the plain triple loop in double precision it is tested against.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <string>
#include <thread>
#include <vector>

#include "args.h"
#include "attention_args.h"
#include "registry.h"

namespace moeq {
namespace {

struct Attn : AttnDims {
  View<float> q, k, v, out, sinks;
};

Attn parseAttn(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Attn a;
  a.q = typedArg<float>(info, 0, "q");
  a.k = typedArg<float>(info, 1, "k");
  a.v = typedArg<float>(info, 2, "v");
  a.out = typedArg<float>(info, 3, "out");
  static_cast<AttnDims&>(a) = parseAttnOptions(info, "attention");
  a.sinks = attnSinks(info, a, "attention");
  const AttnSpans need = attnSpans(a);
  require(env, a.q.length >= need.q, "attention: q is too short");
  require(env, a.k.length >= need.k, "attention: k is too short");
  require(env, a.v.length >= need.v, "attention: v is too short");
  require(env, a.out.length >= need.out, "attention: out is too short");
  return a;
}

// Visible key range [lo, hi) for query i; chunked and sliding masks are both contiguous ranges.
inline void keyRange(const Attn& a, int64_t i, int64_t& lo, int64_t& hi) {
  lo = 0;
  hi = a.causal ? i + 1 : a.T;
  if (a.window > 0) lo = std::max<int64_t>(lo, i - a.window + 1);
  if (a.chunk > 0) {
    int64_t c0 = (i / a.chunk) * a.chunk;
    lo = std::max(lo, c0);
    hi = std::min(hi, c0 + a.chunk);
  }
}

inline float dot(const float* x, const float* y, int64_t n) {
  float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; l++) s[l] += x[i + l] * y[i + l];
  for (; i < n; i++) s[0] += x[i] * y[i];
  return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

// One (batch, head): this head's keys are packed transposed ([D, T]) and its values contiguous
// ([T, Dv]) so that both inner loops are unit-stride vertical SIMD (scores for many keys at once,
// then p·v over the value dims) with no horizontal reductions.
struct Scratch {
  std::vector<float> kt, v, sc, acc;
};

// The build targets x86-64-v2 (SSE4.2); an AVX2/FMA clone is picked at load time where the CPU
// has it, doubling the vector width of both inner loops.
__attribute__((target_clones("arch=haswell", "default"))) void attendHead(const Attn& a, int64_t b, int64_t h, Scratch& w) {
  const int64_t T = a.T, D = a.D, Dv = a.Dv;
  int64_t hk = h / (a.Hq / a.Hkv);
  w.kt.resize(static_cast<size_t>(D * T));
  w.v.resize(static_cast<size_t>(T * Dv));
  w.sc.resize(static_cast<size_t>(T));
  w.acc.resize(static_cast<size_t>(Dv));
  float* kt = w.kt.data();
  float* vp = w.v.data();
  float* sc = w.sc.data();
  float* acc = w.acc.data();
  for (int64_t j = 0; j < T; j++) {
    const float* kj = a.k.data + (b * T + j) * a.ks + hk * D;
    for (int64_t d = 0; d < D; d++) kt[d * T + j] = kj[d];
    const float* vj = a.v.data + (b * T + j) * a.vs + hk * Dv;
    std::copy(vj, vj + Dv, vp + j * Dv);
  }
  for (int64_t i = 0; i < T; i++) {
    int64_t lo, hi;
    keyRange(a, i, lo, hi);
    const float* qi = a.q.data + (b * T + i) * a.qs + h * D;
    std::fill(sc + lo, sc + hi, 0.0f);
    for (int64_t d = 0; d < D; d++) {
      const float qd = qi[d];
      const float* row = kt + d * T;
      for (int64_t j = lo; j < hi; j++) sc[j] += qd * row[j];
    }
    float m = a.sinks.data ? a.sinks.data[h] : -INFINITY;
    for (int64_t j = lo; j < hi; j++) {
      sc[j] *= a.scale;
      m = sc[j] > m ? sc[j] : m;
    }
    float denom = a.sinks.data ? std::exp(a.sinks.data[h] - m) : 0.0f;
    std::fill(acc, acc + Dv, 0.0f);
    for (int64_t j = lo; j < hi; j++) {
      const float p = std::exp(sc[j] - m);
      denom += p;
      const float* vj = vp + j * Dv;
      for (int64_t d = 0; d < Dv; d++) acc[d] += p * vj[d];
    }
    float* o = a.out.data + (b * T + i) * a.os + h * Dv;
    const float inv = denom > 0 ? 1.0f / denom : 0.0f;
    for (int64_t d = 0; d < Dv; d++) o[d] = acc[d] * inv;
  }
}

void attentionFast(const Attn& a) {
  int64_t jobs = a.B * a.Hq;
  int64_t nt = std::max<int64_t>(1, std::min<int64_t>(jobs, std::thread::hardware_concurrency()));
  std::atomic<int64_t> next{0};
  auto worker = [&] {
    Scratch w;
    for (int64_t j; (j = next.fetch_add(1)) < jobs;) attendHead(a, j / a.Hq, j % a.Hq, w);
  };
  std::vector<std::thread> pool;
  for (int64_t t = 1; t < nt; t++) pool.emplace_back(worker);
  worker();
  for (auto& t : pool) t.join();
}

void attentionRef(const Attn& a) {
  std::vector<double> p(static_cast<size_t>(a.T));
  for (int64_t b = 0; b < a.B; b++)
    for (int64_t h = 0; h < a.Hq; h++) {
      int64_t hk = h / (a.Hq / a.Hkv);
      for (int64_t i = 0; i < a.T; i++) {
        double m = a.sinks.data ? a.sinks.data[h] : -INFINITY;
        for (int64_t j = 0; j < a.T; j++) {
          bool visible = (!a.causal || j <= i) && (a.window == 0 || i - j < a.window) &&
                         (a.chunk == 0 || i / a.chunk == j / a.chunk);
          if (!visible) {
            p[j] = -INFINITY;
            continue;
          }
          double s = 0;
          for (int64_t d = 0; d < a.D; d++)
            s += static_cast<double>(a.q.data[(b * a.T + i) * a.qs + h * a.D + d]) * a.k.data[(b * a.T + j) * a.ks + hk * a.D + d];
          p[j] = s * a.scale;
          m = std::max(m, p[j]);
        }
        double denom = a.sinks.data ? std::exp(a.sinks.data[h] - m) : 0.0;
        for (int64_t j = 0; j < a.T; j++) {
          p[j] = p[j] == -INFINITY ? 0.0 : std::exp(p[j] - m);
          denom += p[j];
        }
        for (int64_t d = 0; d < a.Dv; d++) {
          double o = 0;
          for (int64_t j = 0; j < a.T; j++) o += p[j] * a.v.data[(b * a.T + j) * a.vs + hk * a.Dv + d];
          a.out.data[(b * a.T + i) * a.os + h * a.Dv + d] = static_cast<float>(denom > 0 ? o / denom : 0.0);
        }
      }
    }
}

Napi::Value AttentionF32(const Napi::CallbackInfo& info) {
  Attn a = parseAttn(info);
  std::vector<Napi::Value> keep = {info[0], info[1], info[2], info[3]};
  Napi::Value s = info[4].As<Napi::Object>().Get("sinks");
  if (a.sinks.data) keep.push_back(s);
  return runAsync(info.Env(), [a] { attentionFast(a); }, keep);
}

Napi::Value AttentionF32Sync(const Napi::CallbackInfo& info) {
  attentionFast(parseAttn(info));
  return info.Env().Undefined();
}

Napi::Value AttentionF32Ref(const Napi::CallbackInfo& info) {
  attentionRef(parseAttn(info));
  return info.Env().Undefined();
}

void exportAttention(Napi::Env env, Napi::Object e) {
  e.Set("attentionF32", Napi::Function::New(env, AttentionF32, "attentionF32"));
  e.Set("attentionF32Sync", Napi::Function::New(env, AttentionF32Sync, "attentionF32Sync"));
  e.Set("attentionF32Ref", Napi::Function::New(env, AttentionF32Ref, "attentionF32Ref"));
}
MOEQ_EXPORTS(exportAttention);

}  // namespace
}  // namespace moeq
