// Mixed-dtype GEMM: Y[m,n] = X[m,k] · op(W) with X, Y in f32 and W stored as raw bytes in
// f32 / bf16 / f16 / f8_e4m3 (optionally with 128×128 block scales). W is decoded to f32 a block
// of stored rows at a time into a bounded scratch buffer and each block goes through OpenBLAS
// sgemm, so the f32 copy of a weight never exists in full (weights arrive as views over mmap'd
// safetensors). transB = true is PyTorch's Linear layout (W stored [n,k], Y = X·Wᵀ); false means
// W stored [k,n] (Y = X·W). gemmMixedRef is the scalar reference.
#include <cblas.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "args.h"
#include "gemm_convert.h"
#include "gemm_parallel.h"
#include "gemm_scratch.h"
#include "registry.h"

namespace moeq {

namespace {

// f32 elements of decode scratch per call (32 MiB, a bound, not a copy of a big weight). Each
// block is one sgemm call, and every call packs X again: at 8 MiB a 1024×4096×4096 product took
// 8 calls and lost ~10 % to that (bf16 ratio 0.90 vs sgemm), at 32 MiB 2 calls lose ~3 %.
constexpr int64_t kScratchFloats = int64_t(1) << 23;

struct MixedGemm {
  const float* x = nullptr;
  const uint8_t* w = nullptr;
  float* y = nullptr;
  const float* blockScale = nullptr;
  int64_t m = 0, n = 0, k = 0;
};

void decodeRowsParallel(const uint8_t* w, WeightDtype d, int64_t cols, int64_t r0, int64_t r1, float* dst,
                        const float* scale) {
  int64_t rows = r1 - r0;
  int64_t minChunk = std::max<int64_t>(1, 16384 / std::max<int64_t>(1, cols));
  parallelFor(rows, [&](int64_t b, int64_t e, size_t) { decodeRows(w, d, cols, r0 + b, r0 + e, dst + b * cols, scale); },
              minChunk);
}

void mixedGemm(const MixedGemm& g, WeightDtype d, bool transB, bool accumulate, Scratch<float>& scratch) {
  const float beta0 = accumulate ? 1.0f : 0.0f;
  if (g.m == 0 || g.n == 0) return;
  if (g.k == 0) {
    if (!accumulate) std::fill(g.y, g.y + g.m * g.n, 0.0f);
    return;
  }
  const bool aligned = reinterpret_cast<uintptr_t>(g.w) % alignof(float) == 0;
  if (d == WeightDtype::F32 && !g.blockScale && aligned) {  // nothing to decode: straight to sgemm
    cblas_sgemm(CblasRowMajor, CblasNoTrans, transB ? CblasTrans : CblasNoTrans, int(g.m), int(g.n), int(g.k), 1.0f,
                g.x, int(g.k), reinterpret_cast<const float*>(g.w), transB ? int(g.k) : int(g.n), beta0, g.y, int(g.n));
    return;
  }
  if (transB) {  // W [n,k]: blocks of output columns
    int64_t nb = std::clamp<int64_t>(kScratchFloats / g.k, 16, g.n);
    float* buf = scratch.get(static_cast<size_t>(nb * g.k));
    for (int64_t r0 = 0; r0 < g.n; r0 += nb) {
      int64_t r1 = std::min(g.n, r0 + nb);
      decodeRowsParallel(g.w, d, g.k, r0, r1, buf, g.blockScale);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(g.m), int(r1 - r0), int(g.k), 1.0f, g.x, int(g.k),
                  buf, int(g.k), beta0, g.y + r0, int(g.n));
    }
  } else {  // W [k,n]: blocks of the reduction dimension, accumulated into Y
    int64_t kb = std::clamp<int64_t>(kScratchFloats / g.n, 16, g.k);
    float* buf = scratch.get(static_cast<size_t>(kb * g.n));
    for (int64_t p0 = 0; p0 < g.k; p0 += kb) {
      int64_t p1 = std::min(g.k, p0 + kb);
      decodeRowsParallel(g.w, d, g.n, p0, p1, buf, g.blockScale);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(g.m), int(g.n), int(p1 - p0), 1.0f, g.x + p0,
                  int(g.k), buf, int(g.n), p0 == 0 ? beta0 : 1.0f, g.y, int(g.n));
    }
  }
}

void mixedGemmRef(const MixedGemm& g, WeightDtype d, bool transB, bool accumulate) {
  const int64_t storedCols = transB ? g.k : g.n;
  const int64_t tilesPerRow = (storedCols + 127) / 128;
  for (int64_t i = 0; i < g.m; i++)
    for (int64_t j = 0; j < g.n; j++) {
      double acc = 0;
      for (int64_t p = 0; p < g.k; p++) {
        int64_t sr = transB ? j : p, sc = transB ? p : j;
        float wv = decodeOne(g.w, static_cast<size_t>(sr * storedCols + sc), d);
        if (g.blockScale) wv *= g.blockScale[(sr / 128) * tilesPerRow + sc / 128];
        acc += static_cast<double>(g.x[i * g.k + p]) * wv;
      }
      g.y[i * g.n + j] = static_cast<float>(acc) + (accumulate ? g.y[i * g.n + j] : 0.0f);
    }
}

// Raw bytes of any typed array (the weight may be a Uint8Array view over an mmap'd file).
View<uint8_t> bytesArg(Napi::Env env, Napi::Value v, const std::string& name) {
  if (!v.IsTypedArray()) throw Napi::TypeError::New(env, name + ": expected a typed array");
  auto ta = v.As<Napi::TypedArray>();
  return {static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset(), ta.ByteLength()};
}

View<float> f32Value(Napi::Env env, Napi::Value v, const std::string& name) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throw Napi::TypeError::New(env, name + ": expected a Float32Array");
  auto ta = v.As<Napi::TypedArray>();
  return {reinterpret_cast<float*>(static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset()), ta.ElementLength()};
}

int64_t intValue(Napi::Env env, Napi::Value v, const std::string& name) {
  if (!v.IsNumber()) throw Napi::TypeError::New(env, name + ": expected a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (d != static_cast<double>(static_cast<int64_t>(d)) || d < 0 || d >= 2147483648.0)
    throw Napi::RangeError::New(env, name + ": expected a non-negative 32-bit integer");
  return static_cast<int64_t>(d);
}

// Validates one product's buffers against its shape; `label` prefixes messages ("gemmMixed",
// "gemmMixedBatched[3]") so an error names the operand at fault.
MixedGemm parseProduct(Napi::Env env, Napi::Value x, Napi::Value w, Napi::Value y, Napi::Value m, Napi::Value n,
                       Napi::Value k, Napi::Value scale, WeightDtype d, bool transB, const std::string& label) {
  MixedGemm g;
  g.m = intValue(env, m, label + ": m");
  g.n = intValue(env, n, label + ": n");
  g.k = intValue(env, k, label + ": k");
  auto xv = f32Value(env, x, label + ": x");
  auto wv = bytesArg(env, w, label + ": w");
  auto yv = f32Value(env, y, label + ": y");
  require(env, xv.length >= size_t(g.m * g.k), label + ": x is smaller than m*k");
  require(env, yv.length >= size_t(g.m * g.n), label + ": y is smaller than m*n");
  require(env, wv.length >= size_t(g.n * g.k) * dtypeBytes(d),
          label + ": w holds " + std::to_string(wv.length) + " bytes, fewer than n*k*" + std::to_string(dtypeBytes(d)));
  g.x = xv.data;
  g.w = wv.data;
  g.y = yv.data;
  if (!scale.IsUndefined() && !scale.IsNull()) {
    auto sv = f32Value(env, scale, label + ": blockScale");
    int64_t sr = transB ? g.n : g.k, sc = transB ? g.k : g.n;
    size_t need = size_t(((sr + 127) / 128) * ((sc + 127) / 128));
    require(env, sv.length >= need,
            label + ": blockScale has " + std::to_string(sv.length) + " values, the 128×128 tiles need " + std::to_string(need));
    g.blockScale = sv.data;
  }
  return g;
}

WeightDtype dtypeArg(const Napi::CallbackInfo& info, size_t i) {
  if (i >= info.Length() || !info[i].IsString()) throw Napi::TypeError::New(info.Env(), "dtype: expected a string");
  try {
    return parseWeightDtype(info[i].As<Napi::String>().Utf8Value());
  } catch (const std::exception& e) {
    throw Napi::TypeError::New(info.Env(), e.what());
  }
}

Napi::Value arg(const Napi::CallbackInfo& info, size_t i) { return i < info.Length() ? info[i] : info.Env().Undefined(); }

// (x, w, y, m, n, k, dtype, transB = true, blockScale?, accumulate = false)
struct MixedCall {
  MixedGemm g;
  WeightDtype d;
  bool transB, accumulate;
};
MixedCall parseMixed(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  MixedCall c;
  c.d = dtypeArg(info, 6);
  c.transB = boolArg(info, 7, true);
  c.accumulate = boolArg(info, 9, false);
  c.g = parseProduct(env, arg(info, 0), arg(info, 1), arg(info, 2), arg(info, 3), arg(info, 4), arg(info, 5), arg(info, 8),
                     c.d, c.transB, "gemmMixed");
  return c;
}

Napi::Value GemmMixed(const Napi::CallbackInfo& info) {
  MixedCall c = parseMixed(info);
  std::vector<Napi::Value> keep{info[0], info[1], info[2]};
  if (c.g.blockScale) keep.push_back(info[8]);
  return runAsync(info.Env(), [c] {
    Scratch<float> scratch;
    mixedGemm(c.g, c.d, c.transB, c.accumulate, scratch);
  }, keep);
}

Napi::Value GemmMixedSync(const Napi::CallbackInfo& info) {
  MixedCall c = parseMixed(info);
  Scratch<float> scratch;
  mixedGemm(c.g, c.d, c.transB, c.accumulate, scratch);
  return info.Env().Undefined();
}

Napi::Value GemmMixedRef(const Napi::CallbackInfo& info) {
  MixedCall c = parseMixed(info);
  mixedGemmRef(c.g, c.d, c.transB, c.accumulate);
  return info.Env().Undefined();
}

// (items: Array<{x, w, y, m, n, k, blockScale?}>, dtype, transB = true, accumulate = false)
// One call for many independent products (the experts of a layer): one trip to the pool and
// one scratch buffer reused across items.
Napi::Value GemmMixedBatched(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsArray()) throw Napi::TypeError::New(env, "gemmMixedBatched: items must be an array");
  WeightDtype d = dtypeArg(info, 1);
  bool transB = boolArg(info, 2, true);
  bool accumulate = boolArg(info, 3, false);
  auto items = info[0].As<Napi::Array>();
  std::vector<MixedGemm> gs;
  std::vector<Napi::Value> keep;
  for (uint32_t i = 0; i < items.Length(); i++) {
    std::string label = "gemmMixedBatched[" + std::to_string(i) + "]";
    Napi::Value it = items.Get(i);
    if (!it.IsObject()) throw Napi::TypeError::New(env, label + ": expected an object");
    auto o = it.As<Napi::Object>();
    gs.push_back(parseProduct(env, o.Get("x"), o.Get("w"), o.Get("y"), o.Get("m"), o.Get("n"), o.Get("k"),
                              o.Get("blockScale"), d, transB, label));
    keep.push_back(o);
  }
  return runAsync(env, [gs, d, transB, accumulate] {
    Scratch<float> scratch;
    for (auto& g : gs) mixedGemm(g, d, transB, accumulate, scratch);
  }, keep);
}

// (src bytes, dtype, out Float32Array, count): decodes `count` stored values (tests compare it
// with PyTorch's own value tables).
Napi::Value DecodeToF32(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto src = bytesArg(env, arg(info, 0), "decodeToF32: src");
  WeightDtype d = dtypeArg(info, 1);
  auto out = f32Value(env, arg(info, 2), "decodeToF32: out");
  int64_t count = intValue(env, arg(info, 3), "decodeToF32: count");
  require(env, src.length >= size_t(count) * dtypeBytes(d), "decodeToF32: src is smaller than count values");
  require(env, out.length >= size_t(count), "decodeToF32: out is smaller than count");
  decodeRows(src.data, d, count, 0, count ? 1 : 0, out.data, nullptr);
  return env.Undefined();
}

Napi::Value PoolThreads(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(RowPool::instance().threads()));
}

void exportMixed(Napi::Env env, Napi::Object exports) {
  exports.Set("gemmMixed", Napi::Function::New(env, GemmMixed, "gemmMixed"));
  exports.Set("gemmMixedSync", Napi::Function::New(env, GemmMixedSync, "gemmMixedSync"));
  exports.Set("gemmMixedRef", Napi::Function::New(env, GemmMixedRef, "gemmMixedRef"));
  exports.Set("gemmMixedBatched", Napi::Function::New(env, GemmMixedBatched, "gemmMixedBatched"));
  exports.Set("decodeToF32", Napi::Function::New(env, DecodeToF32, "decodeToF32"));
  exports.Set("kernelPoolThreads", Napi::Function::New(env, PoolThreads, "kernelPoolThreads"));
}
MOEQ_EXPORTS(exportMixed);

}  // namespace
}  // namespace moeq
