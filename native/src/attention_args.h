// The options object of attentionF32 (CPU, ../ts/kernels/attention.ts) and cudaAttentionF32 (GPU)
// parsed and validated in one place, so both devices read the same defaults and reject the same
// input. Buffers stay with the caller (typed arrays on the CPU, CudaBuffers on the GPU): it checks
// their lengths against attnSpans().
#pragma once
#include <napi.h>

#include <cmath>
#include <cstdint>
#include <string>

#include "args.h"

namespace moeq {

struct AttnDims {
  int64_t B = 0, T = 0, Hq = 0, Hkv = 0, D = 0, Dv = 0, qs = 0, ks = 0, vs = 0, os = 0;
  int64_t window = 0, chunk = 0;
  bool causal = true;
  float scale = 1.0f;
};

// Elements each operand must hold: the last row's start plus that row's heads.
struct AttnSpans {
  size_t q = 0, k = 0, v = 0, out = 0;
};

inline int64_t attnOptInt(const Napi::Object& o, const char* key, int64_t dflt, const std::string& fn) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return dflt;
  if (!v.IsNumber()) throw Napi::TypeError::New(o.Env(), fn + ": " + key + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (d != std::floor(d)) throw Napi::TypeError::New(o.Env(), fn + ": " + key + " must be an integer");
  return static_cast<int64_t>(d);
}

// info[4] is the options object; `fn` prefixes every message ("attention", "cudaAttentionF32").
inline AttnDims parseAttnOptions(const Napi::CallbackInfo& info, const std::string& fn) {
  Napi::Env env = info.Env();
  if (info.Length() < 5 || !info[4].IsObject()) throw Napi::TypeError::New(env, fn + ": options object expected");
  Napi::Object o = info[4].As<Napi::Object>();
  AttnDims a;
  a.B = attnOptInt(o, "batch", -1, fn);
  a.T = attnOptInt(o, "seqLen", -1, fn);
  a.Hq = attnOptInt(o, "numHeads", -1, fn);
  a.Hkv = attnOptInt(o, "numKvHeads", a.Hq, fn);
  a.D = attnOptInt(o, "headDim", -1, fn);
  a.Dv = attnOptInt(o, "vHeadDim", a.D, fn);
  a.qs = attnOptInt(o, "qStride", a.Hq * a.D, fn);
  a.ks = attnOptInt(o, "kStride", a.Hkv * a.D, fn);
  a.vs = attnOptInt(o, "vStride", a.Hkv * a.Dv, fn);
  a.os = attnOptInt(o, "outStride", a.Hq * a.Dv, fn);
  a.window = attnOptInt(o, "window", 0, fn);
  a.chunk = attnOptInt(o, "chunk", 0, fn);
  Napi::Value c = o.Get("causal");
  a.causal = c.IsUndefined() ? true : c.ToBoolean().Value();
  Napi::Value sc = o.Get("scale");
  a.scale = sc.IsNumber() ? sc.As<Napi::Number>().FloatValue() : 1.0f / std::sqrt(static_cast<float>(a.D));
  require(env, a.B >= 0 && a.T >= 0 && a.Hq > 0 && a.Hkv > 0 && a.D > 0 && a.Dv > 0,
          fn + ": batch, seqLen >= 0 and numHeads, numKvHeads, headDim, vHeadDim > 0 are required");
  require(env, a.Hq % a.Hkv == 0, fn + ": numHeads must be a multiple of numKvHeads");
  require(env, a.window >= 0 && a.chunk >= 0, fn + ": window and chunk must be >= 0");
  require(env, a.qs >= a.Hq * a.D && a.ks >= a.Hkv * a.D && a.vs >= a.Hkv * a.Dv && a.os >= a.Hq * a.Dv,
          fn + ": a stride is smaller than heads*dim");
  return a;
}

inline AttnSpans attnSpans(const AttnDims& a) {
  const int64_t rows = a.B * a.T;
  if (rows == 0) return {};
  return {static_cast<size_t>((rows - 1) * a.qs + a.Hq * a.D), static_cast<size_t>((rows - 1) * a.ks + a.Hkv * a.D),
          static_cast<size_t>((rows - 1) * a.vs + a.Hkv * a.Dv), static_cast<size_t>((rows - 1) * a.os + a.Hq * a.Dv)};
}

// The optional per-head sink logits: a Float32Array of at least numHeads values, or {} when absent.
inline View<float> attnSinks(const Napi::CallbackInfo& info, const AttnDims& a, const std::string& fn) {
  Napi::Env env = info.Env();
  Napi::Value s = info[4].As<Napi::Object>().Get("sinks");
  if (s.IsUndefined() || s.IsNull()) return {};
  if (!s.IsTypedArray() || s.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throw Napi::TypeError::New(env, fn + ": sinks must be a Float32Array");
  auto ta = s.As<Napi::TypedArray>();
  View<float> v{reinterpret_cast<float*>(static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset()),
                ta.ElementLength()};
  require(env, v.length >= static_cast<size_t>(a.Hq), fn + ": sinks shorter than numHeads");
  return v;
}

}  // namespace moeq
