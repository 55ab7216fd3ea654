// RMSNorm (weight, 1+weight and weightless variants) and LayerNorm (with/without weight and bias)
// over the last dimension of [rows, cols] f32, computed in f32 as transformers does once the model
// is upcast. The *Ref twins accumulate in double and are what the optimised versions are tested on.
#include <cmath>
#include <string>

#include "args.h"
#include "registry.h"

namespace moeq {
namespace {

// A typed array or null/undefined (optional weight/bias).
View<float> optFloats(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (i >= info.Length() || info[i].IsNull() || info[i].IsUndefined()) return {};
  return typedArg<float>(info, i, name);
}

struct NormArgs {
  View<float> x, w, b, out;
  int64_t rows, cols;
  float eps;
  bool plusOne = false;
};

void checkCommon(Napi::Env env, const NormArgs& a, const char* fn) {
  require(env, a.rows >= 0 && a.cols >= 0, std::string(fn) + ": negative dimension");
  size_t n = static_cast<size_t>(a.rows * a.cols);
  require(env, a.x.length >= n, std::string(fn) + ": x is smaller than rows*cols");
  require(env, a.out.length >= n, std::string(fn) + ": out is smaller than rows*cols");
  require(env, !a.w.data || a.w.length >= static_cast<size_t>(a.cols), std::string(fn) + ": weight is shorter than cols");
  require(env, !a.b.data || a.b.length >= static_cast<size_t>(a.cols), std::string(fn) + ": bias is shorter than cols");
}

// rmsNormF32(x, weight|null, out, rows, cols, eps, plusOne=false)
NormArgs parseRms(const Napi::CallbackInfo& info) {
  NormArgs a;
  a.x = typedArg<float>(info, 0, "x");
  a.w = optFloats(info, 1, "weight");
  a.out = typedArg<float>(info, 2, "out");
  a.rows = intArg(info, 3, "rows");
  a.cols = intArg(info, 4, "cols");
  a.eps = static_cast<float>(numArg(info, 5, "eps"));
  a.plusOne = boolArg(info, 6, false);
  checkCommon(info.Env(), a, "rmsNormF32");
  return a;
}

template <bool REF>
Napi::Value RmsNorm(const Napi::CallbackInfo& info) {
  NormArgs a = parseRms(info);
  for (int64_t r = 0; r < a.rows; r++) {
    const float* x = a.x.data + r * a.cols;
    float* y = a.out.data + r * a.cols;
    if (REF) {
      double s = 0;
      for (int64_t j = 0; j < a.cols; j++) s += static_cast<double>(x[j]) * x[j];
      double inv = 1.0 / std::sqrt(s / static_cast<double>(a.cols) + a.eps);
      for (int64_t j = 0; j < a.cols; j++) {
        double w = a.w.data ? (a.plusOne ? 1.0 + a.w.data[j] : a.w.data[j]) : 1.0;
        y[j] = static_cast<float>(w * (x[j] * inv));
      }
    } else {
      float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      int64_t j = 0;
      for (; j + 8 <= a.cols; j += 8)
        for (int l = 0; l < 8; l++) s[l] += x[j + l] * x[j + l];
      for (; j < a.cols; j++) s[0] += x[j] * x[j];
      float sum = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
      float inv = 1.0f / std::sqrt(sum / static_cast<float>(a.cols) + a.eps);
      if (!a.w.data) for (j = 0; j < a.cols; j++) y[j] = x[j] * inv;
      else if (a.plusOne) for (j = 0; j < a.cols; j++) y[j] = (1.0f + a.w.data[j]) * (x[j] * inv);
      else for (j = 0; j < a.cols; j++) y[j] = a.w.data[j] * (x[j] * inv);
    }
  }
  return info.Env().Undefined();
}

// layerNormF32(x, weight|null, bias|null, out, rows, cols, eps): biased variance, like torch.
template <bool REF>
Napi::Value LayerNorm(const Napi::CallbackInfo& info) {
  NormArgs a;
  a.x = typedArg<float>(info, 0, "x");
  a.w = optFloats(info, 1, "weight");
  a.b = optFloats(info, 2, "bias");
  a.out = typedArg<float>(info, 3, "out");
  a.rows = intArg(info, 4, "rows");
  a.cols = intArg(info, 5, "cols");
  a.eps = static_cast<float>(numArg(info, 6, "eps"));
  checkCommon(info.Env(), a, "layerNormF32");
  for (int64_t r = 0; r < a.rows; r++) {
    const float* x = a.x.data + r * a.cols;
    float* y = a.out.data + r * a.cols;
    if (a.cols == 0) continue;
    if (REF) {
      double mean = 0, var = 0;
      for (int64_t j = 0; j < a.cols; j++) mean += x[j];
      mean /= static_cast<double>(a.cols);
      for (int64_t j = 0; j < a.cols; j++) var += (x[j] - mean) * (x[j] - mean);
      double inv = 1.0 / std::sqrt(var / static_cast<double>(a.cols) + a.eps);
      for (int64_t j = 0; j < a.cols; j++) {
        double v = (x[j] - mean) * inv;
        if (a.w.data) v *= a.w.data[j];
        if (a.b.data) v += a.b.data[j];
        y[j] = static_cast<float>(v);
      }
    } else {
      // Two passes (mean, then centred squares) avoid the cancellation of E[x²] − E[x]².
      float s = 0;
      for (int64_t j = 0; j < a.cols; j++) s += x[j];
      float mean = s / static_cast<float>(a.cols);
      float v = 0;
      for (int64_t j = 0; j < a.cols; j++) v += (x[j] - mean) * (x[j] - mean);
      float inv = 1.0f / std::sqrt(v / static_cast<float>(a.cols) + a.eps);
      for (int64_t j = 0; j < a.cols; j++) {
        float t = (x[j] - mean) * inv;
        if (a.w.data) t *= a.w.data[j];
        if (a.b.data) t += a.b.data[j];
        y[j] = t;
      }
    }
  }
  return info.Env().Undefined();
}

void exportNorm(Napi::Env env, Napi::Object e) {
  e.Set("rmsNormF32", Napi::Function::New(env, RmsNorm<false>, "rmsNormF32"));
  e.Set("rmsNormF32Ref", Napi::Function::New(env, RmsNorm<true>, "rmsNormF32Ref"));
  e.Set("layerNormF32", Napi::Function::New(env, LayerNorm<false>, "layerNormF32"));
  e.Set("layerNormF32Ref", Napi::Function::New(env, LayerNorm<true>, "layerNormF32Ref"));
}
MOEQ_EXPORTS(exportNorm);

}  // namespace
}  // namespace moeq
