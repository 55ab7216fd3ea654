// Weighted Hessian accumulation for GPTQ: H[cols,cols] += Xᵀ·diag(w)·X, X [tokens, cols] f32,
// w [tokens] (absent = all ones), H f32 or f64 (the accumulator's element type picks the BLAS
// precision). Normalisation is the caller's: this adds the raw weighted sum S = Σ_t w_t·x_t·x_tᵀ;
// GPTQ's convention is H = 2·S / Σ_t w_t (libs/quant's gptq takes S plus Σw and scales it).
// The weights are routing probabilities, so they must be ≥ 0: that lets a token block be scaled by
// √w_t and go through syrk (half the flops of a general GEMM).
#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "args.h"
#include "gemm_parallel.h"
#include "gemm_scratch.h"
#include "registry.h"

namespace moeq {
namespace {

constexpr int64_t kTokenBlockFloats = int64_t(1) << 20;

template <typename T>
void mirrorUpper(T* h, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < i; j++) h[i * n + j] = h[j * n + i];
}

template <typename T>
void hessianBlas(T* h, const float* x, const float* w, int64_t tokens, int64_t cols) {
  if (tokens == 0 || cols == 0) return;
  const int64_t tb = std::clamp<int64_t>(kTokenBlockFloats / cols, 8, tokens);
  Scratch<T> scratch;
  T* block = scratch.get(static_cast<size_t>(tb * cols));
  for (int64_t t0 = 0; t0 < tokens; t0 += tb) {
    int64_t t1 = std::min(tokens, t0 + tb);
    parallelFor(t1 - t0, [&](int64_t b, int64_t e, size_t) {
      for (int64_t t = t0 + b; t < t0 + e; t++) {
        T s = w ? static_cast<T>(std::sqrt(static_cast<double>(w[t]))) : T(1);
        const float* src = x + t * cols;
        T* dst = block + (t - t0) * cols;
        for (int64_t c = 0; c < cols; c++) dst[c] = static_cast<T>(src[c]) * s;
      }
    }, std::max<int64_t>(1, 16384 / cols));
    if constexpr (std::is_same_v<T, float>)
      cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, int(cols), int(t1 - t0), 1.0f, block, int(cols), 1.0f, h,
                  int(cols));
    else
      cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, int(cols), int(t1 - t0), 1.0, block, int(cols), 1.0, h,
                  int(cols));
  }
  mirrorUpper(h, cols);
}

template <typename T>
void hessianRef(T* h, const float* x, const float* w, int64_t tokens, int64_t cols) {
  for (int64_t i = 0; i < cols; i++)
    for (int64_t j = 0; j < cols; j++) {
      double acc = 0;
      for (int64_t t = 0; t < tokens; t++)
        acc += (w ? static_cast<double>(w[t]) : 1.0) * x[t * cols + i] * x[t * cols + j];
      h[i * cols + j] = static_cast<T>(static_cast<double>(h[i * cols + j]) + acc);
    }
}

struct HessianCall {
  void* h = nullptr;
  bool f64 = false;
  const float* x = nullptr;
  const float* w = nullptr;
  int64_t tokens = 0, cols = 0;
};

// (h: Float32Array|Float64Array, x: Float32Array, tokens, cols, w?: Float32Array|null)
HessianCall parseHessian(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  HessianCall c;
  c.tokens = intArg(info, 2, "tokens");
  c.cols = intArg(info, 3, "cols");
  require(env, c.tokens >= 0 && c.cols >= 0 && c.cols < 65536 && c.tokens < (int64_t(1) << 31),
          "hessianAccumulate: tokens/cols out of range");
  if (!info[0].IsTypedArray()) throw Napi::TypeError::New(env, "hessianAccumulate: h must be a Float32Array or Float64Array");
  auto ht = info[0].As<Napi::TypedArray>().TypedArrayType();
  if (ht == napi_float64_array) {
    auto v = typedArg<double>(info, 0, "hessianAccumulate: h");
    c.h = v.data;
    c.f64 = true;
    require(env, v.length >= size_t(c.cols * c.cols), "hessianAccumulate: h is smaller than cols*cols");
  } else {
    auto v = typedArg<float>(info, 0, "hessianAccumulate: h (Float32Array or Float64Array)");
    c.h = v.data;
    require(env, v.length >= size_t(c.cols * c.cols), "hessianAccumulate: h is smaller than cols*cols");
  }
  auto x = typedArg<float>(info, 1, "hessianAccumulate: x");
  require(env, x.length >= size_t(c.tokens * c.cols), "hessianAccumulate: x is smaller than tokens*cols");
  c.x = x.data;
  if (info.Length() > 4 && !info[4].IsUndefined() && !info[4].IsNull()) {
    auto w = typedArg<float>(info, 4, "hessianAccumulate: w");
    require(env, w.length >= size_t(c.tokens), "hessianAccumulate: w is shorter than tokens");
    for (int64_t t = 0; t < c.tokens; t++)
      require(env, w.data[t] >= 0.0f && std::isfinite(w.data[t]),
              "hessianAccumulate: w[" + std::to_string(t) + "] = " + std::to_string(w.data[t]) + " (weights must be finite and >= 0)");
    c.w = w.data;
  }
  return c;
}

void runHessian(const HessianCall& c, bool ref) {
  if (c.f64) {
    auto* h = static_cast<double*>(c.h);
    ref ? hessianRef(h, c.x, c.w, c.tokens, c.cols) : hessianBlas(h, c.x, c.w, c.tokens, c.cols);
  } else {
    auto* h = static_cast<float*>(c.h);
    ref ? hessianRef(h, c.x, c.w, c.tokens, c.cols) : hessianBlas(h, c.x, c.w, c.tokens, c.cols);
  }
}

Napi::Value HessianAccumulate(const Napi::CallbackInfo& info) {
  HessianCall c = parseHessian(info);
  std::vector<Napi::Value> keep{info[0], info[1]};
  if (c.w) keep.push_back(info[4]);
  return runAsync(info.Env(), [c] { runHessian(c, false); }, keep);
}

Napi::Value HessianAccumulateSync(const Napi::CallbackInfo& info) {
  runHessian(parseHessian(info), false);
  return info.Env().Undefined();
}

Napi::Value HessianAccumulateRef(const Napi::CallbackInfo& info) {
  runHessian(parseHessian(info), true);
  return info.Env().Undefined();
}

void exportHessian(Napi::Env env, Napi::Object exports) {
  exports.Set("hessianAccumulate", Napi::Function::New(env, HessianAccumulate, "hessianAccumulate"));
  exports.Set("hessianAccumulateSync", Napi::Function::New(env, HessianAccumulateSync, "hessianAccumulateSync"));
  exports.Set("hessianAccumulateRef", Napi::Function::New(env, HessianAccumulateRef, "hessianAccumulateRef"));
}
MOEQ_EXPORTS(exportHessian);

}  // namespace
}  // namespace moeq
