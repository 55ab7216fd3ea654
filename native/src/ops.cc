// Row-wise elementwise kernels for the forward pass: softmax, log-softmax, activations, SwiGLU
// (plain and GPT-OSS clamped), L2 normalisation and bf16/f16 → f32 widening. Every optimised kernel
// has a *Ref twin written as the plain textbook formula in double precision; tests compare them.
// These run on the caller's thread: they are memory-bound passes over [rows, cols] buffers far
// cheaper than the GEMMs around them, and a libuv round trip would cost more than the work.
#include <cmath>
#include <cstring>
#include <string>

#include "args.h"
#include "registry.h"

namespace moeq {
namespace {

struct Rows {
  View<float> x, out;
  int64_t rows, cols;
};

Rows parseRows(const Napi::CallbackInfo& info, const char* fn) {
  Rows r;
  r.x = typedArg<float>(info, 0, "x");
  r.out = typedArg<float>(info, 1, "out");
  r.rows = intArg(info, 2, "rows");
  r.cols = intArg(info, 3, "cols");
  Napi::Env env = info.Env();
  require(env, r.rows >= 0 && r.cols >= 0, std::string(fn) + ": negative dimension");
  size_t n = static_cast<size_t>(r.rows) * static_cast<size_t>(r.cols);
  require(env, r.x.length >= n, std::string(fn) + ": x is smaller than rows*cols");
  require(env, r.out.length >= n, std::string(fn) + ": out is smaller than rows*cols");
  return r;
}

// --- softmax / log-softmax ---------------------------------------------------------------------
// Max-subtracted in f32 like torch's CPU kernel; the sum is accumulated in f32 with 4 lanes so the
// compiler can vectorise it (the Ref uses double, the difference is far below 1e-6 relative).
void softmaxRow(const float* x, float* y, int64_t n, bool logSpace) {
  if (n == 0) return;
  float m = -INFINITY;
  for (int64_t i = 0; i < n; i++) m = x[i] > m ? x[i] : m;
  if (m == -INFINITY) m = 0;  // a fully masked row gives NaN-free uniform output below
  float s[4] = {0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 4 <= n; i += 4)
    for (int l = 0; l < 4; l++) {
      float e = std::exp(x[i + l] - m);
      if (!logSpace) y[i + l] = e;
      s[l] += e;
    }
  for (; i < n; i++) {
    float e = std::exp(x[i] - m);
    if (!logSpace) y[i] = e;
    s[0] += e;
  }
  float sum = (s[0] + s[1]) + (s[2] + s[3]);
  if (logSpace) {
    float lse = m + std::log(sum);
    for (int64_t j = 0; j < n; j++) y[j] = x[j] - lse;
  } else {
    float inv = 1.0f / sum;
    for (int64_t j = 0; j < n; j++) y[j] *= inv;
  }
}

void softmaxRowRef(const float* x, float* y, int64_t n, bool logSpace) {
  if (n == 0) return;
  double m = -INFINITY;
  for (int64_t i = 0; i < n; i++) m = std::fmax(m, x[i]);
  if (m == -INFINITY) m = 0;
  double sum = 0;
  for (int64_t i = 0; i < n; i++) sum += std::exp(static_cast<double>(x[i]) - m);
  for (int64_t i = 0; i < n; i++) {
    double v = static_cast<double>(x[i]) - m;
    y[i] = static_cast<float>(logSpace ? v - std::log(sum) : std::exp(v) / sum);
  }
}

template <bool LOG, bool REF>
Napi::Value Softmax(const Napi::CallbackInfo& info) {
  Rows r = parseRows(info, LOG ? "logSoftmaxF32" : "softmaxF32");
  for (int64_t i = 0; i < r.rows; i++) {
    const float* x = r.x.data + i * r.cols;
    float* y = r.out.data + i * r.cols;
    if (REF) softmaxRowRef(x, y, r.cols, LOG);
    else softmaxRow(x, y, r.cols, LOG);
  }
  return info.Env().Undefined();
}

// --- activations -------------------------------------------------------------------------------
enum class Act { Silu, GeluTanh, GeluErf, Sigmoid, Softplus, Relu };

Act parseAct(const Napi::CallbackInfo& info, size_t i) {
  if (i >= info.Length() || !info[i].IsString()) throw Napi::TypeError::New(info.Env(), "kind: expected a string");
  std::string k = info[i].As<Napi::String>().Utf8Value();
  if (k == "silu") return Act::Silu;
  if (k == "gelu_tanh") return Act::GeluTanh;
  if (k == "gelu_erf") return Act::GeluErf;
  if (k == "sigmoid") return Act::Sigmoid;
  if (k == "softplus") return Act::Softplus;
  if (k == "relu") return Act::Relu;
  throw Napi::TypeError::New(info.Env(), "activation kind '" + k + "' is not one of silu, gelu_tanh, gelu_erf, sigmoid, softplus, relu");
}

inline float actF(Act a, float x) {
  switch (a) {
    case Act::Silu: return x / (1.0f + std::exp(-x));
    case Act::GeluTanh: {
      const float c = 0.7978845608028654f;  // sqrt(2/pi)
      return 0.5f * x * (1.0f + std::tanh(c * (x + 0.044715f * x * x * x)));
    }
    case Act::GeluErf: return 0.5f * x * (1.0f + std::erf(x * 0.7071067811865476f));
    case Act::Sigmoid: return 1.0f / (1.0f + std::exp(-x));
    // torch's softplus switches to the identity above threshold 20 to avoid exp overflow.
    case Act::Softplus: return x > 20.0f ? x : std::log1p(std::exp(x));
    case Act::Relu: return x > 0 ? x : 0.0f;
  }
  return x;
}

inline double actD(Act a, double x) {
  const double pi = 3.14159265358979323846;
  switch (a) {
    case Act::Silu: return x / (1.0 + std::exp(-x));
    case Act::GeluTanh: return 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / pi) * (x + 0.044715 * x * x * x)));
    case Act::GeluErf: return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0)));
    case Act::Sigmoid: return 1.0 / (1.0 + std::exp(-x));
    case Act::Softplus: return x > 20.0 ? x : std::log(1.0 + std::exp(x));
    case Act::Relu: return x > 0 ? x : 0.0;
  }
  return x;
}

template <bool REF>
Napi::Value Activation(const Napi::CallbackInfo& info) {
  Act a = parseAct(info, 0);
  View<float> x = typedArg<float>(info, 1, "x");
  View<float> out = typedArg<float>(info, 2, "out");
  int64_t n = info.Length() > 3 && info[3].IsNumber() ? intArg(info, 3, "n") : static_cast<int64_t>(x.length);
  require(info.Env(), n >= 0 && x.length >= static_cast<size_t>(n) && out.length >= static_cast<size_t>(n),
          "activationF32: x/out shorter than n");
  for (int64_t i = 0; i < n; i++) out.data[i] = REF ? static_cast<float>(actD(a, x.data[i])) : actF(a, x.data[i]);
  return info.Env().Undefined();
}

// --- SwiGLU ------------------------------------------------------------------------------------
// gate(r,c) = gate[r*rowStride + c*colStride], likewise up: one signature covers separate buffers,
// fused [gate | up] rows (up = buf.subarray(I)) and GPT-OSS's interleaved pairs (colStride 2).
struct Glu {
  View<float> gate, up, out;
  int64_t rows, cols, rowStride, colStride;
};

Glu parseGlu(const Napi::CallbackInfo& info, const char* fn) {
  Glu g;
  g.gate = typedArg<float>(info, 0, "gate");
  g.up = typedArg<float>(info, 1, "up");
  g.out = typedArg<float>(info, 2, "out");
  g.rows = intArg(info, 3, "rows");
  g.cols = intArg(info, 4, "cols");
  g.rowStride = info.Length() > 5 && info[5].IsNumber() ? intArg(info, 5, "rowStride") : g.cols;
  g.colStride = info.Length() > 6 && info[6].IsNumber() ? intArg(info, 6, "colStride") : 1;
  Napi::Env env = info.Env();
  require(env, g.rows >= 0 && g.cols >= 0 && g.rowStride >= 0 && g.colStride >= 1, std::string(fn) + ": bad dimension");
  if (g.rows > 0 && g.cols > 0) {
    size_t last = static_cast<size_t>((g.rows - 1) * g.rowStride + (g.cols - 1) * g.colStride);
    require(env, g.gate.length > last, std::string(fn) + ": gate is too short for rows/cols/strides");
    require(env, g.up.length > last, std::string(fn) + ": up is too short for rows/cols/strides");
  }
  require(env, g.out.length >= static_cast<size_t>(g.rows * g.cols), std::string(fn) + ": out is smaller than rows*cols");
  return g;
}

template <bool REF>
Napi::Value Swiglu(const Napi::CallbackInfo& info) {
  Glu g = parseGlu(info, "swigluF32");
  for (int64_t r = 0; r < g.rows; r++)
    for (int64_t c = 0; c < g.cols; c++) {
      int64_t o = r * g.rowStride + c * g.colStride;
      float a = g.gate.data[o], u = g.up.data[o];
      g.out.data[r * g.cols + c] = REF ? static_cast<float>(actD(Act::Silu, a) * u) : actF(Act::Silu, a) * u;
    }
  return info.Env().Undefined();
}

// GPT-OSS: gate = min(gate, limit); up = clamp(up, ±limit); out = (up + 1) · gate·σ(alpha·gate).
template <bool REF>
Napi::Value ClampedSwiglu(const Napi::CallbackInfo& info) {
  Glu g = parseGlu(info, "clampedSwigluF32");
  float alpha = static_cast<float>(numArg(info, 7, "alpha"));
  float limit = static_cast<float>(numArg(info, 8, "limit"));
  for (int64_t r = 0; r < g.rows; r++)
    for (int64_t c = 0; c < g.cols; c++) {
      int64_t o = r * g.rowStride + c * g.colStride;
      float a = g.gate.data[o], u = g.up.data[o];
      if (REF) {
        double ad = std::fmin(static_cast<double>(a), limit);
        double ud = std::fmax(std::fmin(static_cast<double>(u), limit), -static_cast<double>(limit));
        g.out.data[r * g.cols + c] = static_cast<float>((ud + 1.0) * ad / (1.0 + std::exp(-alpha * ad)));
      } else {
        a = a < limit ? a : limit;
        u = u < limit ? (u > -limit ? u : -limit) : limit;
        g.out.data[r * g.cols + c] = (u + 1.0f) * (a / (1.0f + std::exp(-alpha * a)));
      }
    }
  return info.Env().Undefined();
}

// --- L2 normalisation: y = x · rsqrt(Σx² + eps) (the fla / Qwen3-Next convention) ---------------
template <bool REF>
Napi::Value L2Norm(const Napi::CallbackInfo& info) {
  Rows r = parseRows(info, "l2NormF32");
  float eps = static_cast<float>(numArg(info, 4, "eps"));
  for (int64_t i = 0; i < r.rows; i++) {
    const float* x = r.x.data + i * r.cols;
    float* y = r.out.data + i * r.cols;
    if (REF) {
      double s = 0;
      for (int64_t j = 0; j < r.cols; j++) s += static_cast<double>(x[j]) * x[j];
      double inv = 1.0 / std::sqrt(s + eps);
      for (int64_t j = 0; j < r.cols; j++) y[j] = static_cast<float>(x[j] * inv);
    } else {
      float s[4] = {0, 0, 0, 0};
      int64_t j = 0;
      for (; j + 4 <= r.cols; j += 4)
        for (int l = 0; l < 4; l++) s[l] += x[j + l] * x[j + l];
      for (; j < r.cols; j++) s[0] += x[j] * x[j];
      float inv = 1.0f / std::sqrt((s[0] + s[1]) + (s[2] + s[3]) + eps);
      for (j = 0; j < r.cols; j++) y[j] = x[j] * inv;
    }
  }
  return info.Env().Undefined();
}

// --- widening conversions (weights are stored bf16/f16 and computed in f32) ---------------------
Napi::Value Bf16ToF32(const Napi::CallbackInfo& info) {
  View<uint16_t> src = typedArg<uint16_t>(info, 0, "src", true);
  View<float> dst = typedArg<float>(info, 1, "dst");
  require(info.Env(), dst.length >= src.length, "bf16ToF32: dst is shorter than src");
  for (size_t i = 0; i < src.length; i++) {
    uint32_t bits = static_cast<uint32_t>(src.data[i]) << 16;
    std::memcpy(&dst.data[i], &bits, 4);
  }
  return info.Env().Undefined();
}

float halfToFloat(uint16_t h) {
  uint32_t sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
  float v;
  if (exp == 0) v = std::ldexp(static_cast<float>(man), -24);
  else if (exp == 31) v = man ? NAN : INFINITY;
  else v = std::ldexp(static_cast<float>(man | 0x400), static_cast<int>(exp) - 25);
  uint32_t bits;
  std::memcpy(&bits, &v, 4);
  bits |= sign;
  std::memcpy(&v, &bits, 4);
  return v;
}

Napi::Value F16ToF32(const Napi::CallbackInfo& info) {
  View<uint16_t> src = typedArg<uint16_t>(info, 0, "src", true);
  View<float> dst = typedArg<float>(info, 1, "dst");
  require(info.Env(), dst.length >= src.length, "f16ToF32: dst is shorter than src");
  for (size_t i = 0; i < src.length; i++) dst.data[i] = halfToFloat(src.data[i]);
  return info.Env().Undefined();
}

void exportOps(Napi::Env env, Napi::Object e) {
  e.Set("softmaxF32", Napi::Function::New(env, Softmax<false, false>, "softmaxF32"));
  e.Set("softmaxF32Ref", Napi::Function::New(env, Softmax<false, true>, "softmaxF32Ref"));
  e.Set("logSoftmaxF32", Napi::Function::New(env, Softmax<true, false>, "logSoftmaxF32"));
  e.Set("logSoftmaxF32Ref", Napi::Function::New(env, Softmax<true, true>, "logSoftmaxF32Ref"));
  e.Set("activationF32", Napi::Function::New(env, Activation<false>, "activationF32"));
  e.Set("activationF32Ref", Napi::Function::New(env, Activation<true>, "activationF32Ref"));
  e.Set("swigluF32", Napi::Function::New(env, Swiglu<false>, "swigluF32"));
  e.Set("swigluF32Ref", Napi::Function::New(env, Swiglu<true>, "swigluF32Ref"));
  e.Set("clampedSwigluF32", Napi::Function::New(env, ClampedSwiglu<false>, "clampedSwigluF32"));
  e.Set("clampedSwigluF32Ref", Napi::Function::New(env, ClampedSwiglu<true>, "clampedSwigluF32Ref"));
  e.Set("l2NormF32", Napi::Function::New(env, L2Norm<false>, "l2NormF32"));
  e.Set("l2NormF32Ref", Napi::Function::New(env, L2Norm<true>, "l2NormF32Ref"));
  e.Set("bf16ToF32", Napi::Function::New(env, Bf16ToF32, "bf16ToF32"));
  e.Set("f16ToF32", Napi::Function::New(env, F16ToF32, "f16ToF32"));
}
MOEQ_EXPORTS(exportOps);

}  // namespace
}  // namespace moeq
