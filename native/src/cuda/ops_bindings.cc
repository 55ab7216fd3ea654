// N-API entry points of the forward-pass kernels in ops.cu: the CPU kernels' names with a `cuda`
// prefix and the same argument order, CudaBuffers in place of typed arrays, so a caller switches
// device by name (signatures in ../../ts/kernels/cuda.ts). Every operand's byte span is checked
// before launch; outputs that would race with their inputs on the GPU are refused.
#include <cmath>
#include <string>

#include "../args.h"
#include "../registry.h"
#include "blas.h"
#include "common.h"
#include "napi_args.h"
#include "ops.h"

namespace moeq::cuda {
namespace {

int64_t optIntArg(const Napi::CallbackInfo& info, size_t i, const char* name, int64_t dflt) {
  return i < info.Length() && info[i].IsNumber() ? intArg(info, i, name) : dflt;
}

// Span in bytes of rows×cols f32 elements at (rowStride, colStride).
int64_t stridedBytes(int64_t rows, int64_t cols, int64_t rs, int64_t cs) {
  return rows == 0 || cols == 0 ? 0 : ((rows - 1) * rs + (cols - 1) * cs + 1) * 4;
}

// (x, out, rows, cols)
Napi::Value LogSoftmax(const Napi::CallbackInfo& info) {
  const char* fn = "cudaLogSoftmaxF32";
  Buffer& x = bufferArg(info, 0, "cudaLogSoftmaxF32: x");
  Buffer& out = bufferArg(info, 1, "cudaLogSoftmaxF32: out");
  const int64_t rows = intArg(info, 2, "rows"), cols = intArg(info, 3, "cols");
  require(info.Env(), rows >= 0 && cols >= 0 && rows < (int64_t(1) << 31), std::string(fn) + ": bad dimension");
  need(info, x, rows * cols * 4, "cudaLogSoftmaxF32: x");
  need(info, out, rows * cols * 4, "cudaLogSoftmaxF32: out");
  sameDevice(info, x.device(), &out, "cudaLogSoftmaxF32: out");
  sameOrDisjoint(info, out, rows * cols * 4, x, rows * cols * 4, "cudaLogSoftmaxF32: out and x");
  onStream(info.Env(), x.device(), "cudaLogSoftmaxF32 sync", [&](DeviceContext& ctx) {
    launchLogSoftmaxRows(x.as<float>(), out.as<float>(), rows, cols, ctx.stream);
  });
  return info.Env().Undefined();
}

ActKind actArg(const Napi::CallbackInfo& info, size_t i) {
  if (i >= info.Length() || !info[i].IsString())
    throw Napi::TypeError::New(info.Env(), "cudaActivationF32: kind: expected a string");
  const std::string k = info[i].As<Napi::String>().Utf8Value();
  if (k == "silu") return ActKind::Silu;
  if (k == "gelu_tanh") return ActKind::GeluTanh;
  if (k == "gelu_erf") return ActKind::GeluErf;
  if (k == "sigmoid") return ActKind::Sigmoid;
  if (k == "softplus") return ActKind::Softplus;
  if (k == "relu") return ActKind::Relu;
  throw Napi::TypeError::New(info.Env(), "cudaActivationF32: activation kind '" + k +
                                             "' is not one of silu, gelu_tanh, gelu_erf, sigmoid, softplus, relu");
}

// (kind, x, out, n = x's length)
Napi::Value Activation(const Napi::CallbackInfo& info) {
  const ActKind kind = actArg(info, 0);
  Buffer& x = bufferArg(info, 1, "cudaActivationF32: x");
  Buffer& out = bufferArg(info, 2, "cudaActivationF32: out");
  const int64_t n = optIntArg(info, 3, "n", int64_t(x.bytes / 4));
  require(info.Env(), n >= 0, "cudaActivationF32: n must be >= 0");
  need(info, x, n * 4, "cudaActivationF32: x");
  need(info, out, n * 4, "cudaActivationF32: out");
  sameDevice(info, x.device(), &out, "cudaActivationF32: out");
  sameOrDisjoint(info, out, n * 4, x, n * 4, "cudaActivationF32: out and x");
  onStream(info.Env(), x.device(), "cudaActivationF32 sync",
           [&](DeviceContext& ctx) { launchActivation(kind, x.as<float>(), out.as<float>(), n, ctx.stream); });
  return info.Env().Undefined();
}

// (gate, up, out, rows, cols, rowStride, colStride, alpha, limit)
Napi::Value ClampedSwiglu(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Buffer& g = bufferArg(info, 0, "cudaClampedSwigluF32: gate");
  Buffer& u = bufferArg(info, 1, "cudaClampedSwigluF32: up");
  Buffer& out = bufferArg(info, 2, "cudaClampedSwigluF32: out");
  const int64_t rows = intArg(info, 3, "rows"), cols = intArg(info, 4, "cols");
  const int64_t rs = intArg(info, 5, "rowStride"), cs = intArg(info, 6, "colStride");
  const double alpha = numArg(info, 7, "alpha"), limit = numArg(info, 8, "limit");
  require(env, rows >= 0 && cols >= 0 && rs >= 0 && cs >= 1, "cudaClampedSwigluF32: bad dimension");
  const int64_t span = stridedBytes(rows, cols, rs, cs);
  need(info, g, span, "cudaClampedSwigluF32: gate");
  need(info, u, span, "cudaClampedSwigluF32: up");
  need(info, out, rows * cols * 4, "cudaClampedSwigluF32: out");
  sameDevice(info, g.device(), &u, "cudaClampedSwigluF32: up");
  sameDevice(info, g.device(), &out, "cudaClampedSwigluF32: out");
  // out[i] is written while other threads still read gate/up at strided positions
  disjoint(info, out, rows * cols * 4, g, span, "cudaClampedSwigluF32: out and gate");
  disjoint(info, out, rows * cols * 4, u, span, "cudaClampedSwigluF32: out and up");
  onStream(env, g.device(), "cudaClampedSwigluF32 sync", [&](DeviceContext& ctx) {
    launchClampedSwiglu(g.as<float>(), u.as<float>(), out.as<float>(), rows, cols, rs, cs, float(alpha), float(limit),
                        ctx.stream);
  });
  return env.Undefined();
}

// (x, weight|null, bias|null, out, rows, cols, eps)
Napi::Value LayerNorm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Buffer& x = bufferArg(info, 0, "cudaLayerNormF32: x");
  Buffer* w = optBufferArg(info, 1, "cudaLayerNormF32: weight");
  Buffer* b = optBufferArg(info, 2, "cudaLayerNormF32: bias");
  Buffer& out = bufferArg(info, 3, "cudaLayerNormF32: out");
  const int64_t rows = intArg(info, 4, "rows"), cols = intArg(info, 5, "cols");
  const double eps = numArg(info, 6, "eps");
  require(env, rows >= 0 && cols >= 0 && rows < (int64_t(1) << 31), "cudaLayerNormF32: bad dimension");
  need(info, x, rows * cols * 4, "cudaLayerNormF32: x");
  need(info, out, rows * cols * 4, "cudaLayerNormF32: out");
  if (w) need(info, *w, cols * 4, "cudaLayerNormF32: weight");
  if (b) need(info, *b, cols * 4, "cudaLayerNormF32: bias");
  sameDevice(info, x.device(), &out, "cudaLayerNormF32: out");
  sameDevice(info, x.device(), w, "cudaLayerNormF32: weight");
  sameDevice(info, x.device(), b, "cudaLayerNormF32: bias");
  sameOrDisjoint(info, out, rows * cols * 4, x, rows * cols * 4, "cudaLayerNormF32: out and x");
  if (w) disjoint(info, out, rows * cols * 4, *w, cols * 4, "cudaLayerNormF32: out and weight");
  if (b) disjoint(info, out, rows * cols * 4, *b, cols * 4, "cudaLayerNormF32: out and bias");
  onStream(env, x.device(), "cudaLayerNormF32 sync", [&](DeviceContext& ctx) {
    launchLayerNorm(x.as<float>(), w ? w->as<float>() : nullptr, b ? b->as<float>() : nullptr, out.as<float>(), rows,
                    cols, float(eps), ctx.stream);
  });
  return env.Undefined();
}

// (x, out, rows, cols, eps)
Napi::Value L2Norm(const Napi::CallbackInfo& info) {
  Buffer& x = bufferArg(info, 0, "cudaL2NormF32: x");
  Buffer& out = bufferArg(info, 1, "cudaL2NormF32: out");
  const int64_t rows = intArg(info, 2, "rows"), cols = intArg(info, 3, "cols");
  const double eps = numArg(info, 4, "eps");
  require(info.Env(), rows >= 0 && cols >= 0 && rows < (int64_t(1) << 31), "cudaL2NormF32: bad dimension");
  need(info, x, rows * cols * 4, "cudaL2NormF32: x");
  need(info, out, rows * cols * 4, "cudaL2NormF32: out");
  sameDevice(info, x.device(), &out, "cudaL2NormF32: out");
  sameOrDisjoint(info, out, rows * cols * 4, x, rows * cols * 4, "cudaL2NormF32: out and x");
  onStream(info.Env(), x.device(), "cudaL2NormF32 sync", [&](DeviceContext& ctx) {
    launchL2Norm(x.as<float>(), out.as<float>(), rows, cols, float(eps), ctx.stream);
  });
  return info.Env().Undefined();
}

// (x, cos, sin, positions, rows, heads, headDim, rotaryDim, interleaved = false, rowStride = heads·headDim)
Napi::Value Rope(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Buffer& x = bufferArg(info, 0, "cudaRopeF32: x");
  Buffer& cosT = bufferArg(info, 1, "cudaRopeF32: cos");
  Buffer& sinT = bufferArg(info, 2, "cudaRopeF32: sin");
  Buffer& pos = bufferArg(info, 3, "cudaRopeF32: positions");
  const int64_t rows = intArg(info, 4, "rows"), heads = intArg(info, 5, "heads"), headDim = intArg(info, 6, "headDim");
  const int64_t rd = intArg(info, 7, "rotaryDim");
  const bool interleaved = boolArg(info, 8, false);
  const int64_t stride = optIntArg(info, 9, "rowStride", heads * headDim);
  require(env, rows >= 0 && heads >= 0 && headDim >= 0, "cudaRopeF32: negative dimension");
  require(env, rd >= 0 && rd <= headDim && rd % 2 == 0, "cudaRopeF32: rotaryDim must be even and <= headDim");
  require(env, stride >= heads * headDim, "cudaRopeF32: rowStride < heads*headDim");
  need(info, pos, rows * 4, "cudaRopeF32: positions");
  const int64_t xBytes = rows > 0 ? ((rows - 1) * stride + heads * headDim) * 4 : 0;
  need(info, x, xBytes, "cudaRopeF32: x");
  require(env, cosT.bytes == sinT.bytes, "cudaRopeF32: cos and sin tables differ in length");
  const int64_t half = rd / 2;
  const int64_t maxPos = half > 0 ? int64_t(cosT.bytes / 4) / half : 0;
  for (const Buffer* b : {&cosT, &sinT, &pos}) sameDevice(info, x.device(), b, "cudaRopeF32: cos/sin/positions");
  for (const Buffer* b : {&cosT, &sinT, &pos})
    disjoint(info, x, xBytes, *b, int64_t(b->bytes), "cudaRopeF32: x and cos/sin/positions");
  int64_t bad = rows, badPos = 0;
  onStream(env, x.device(), "cudaRopeF32 sync", [&](DeviceContext& ctx) {
    Allocation flag(8, ctx.device);
    check(cudaMemcpyAsync(flag.ptr, &bad, 8, cudaMemcpyHostToDevice, ctx.stream), "cudaRopeF32 flag");
    launchRope(x.as<float>(), cosT.as<float>(), sinT.as<float>(), pos.as<int32_t>(), maxPos, rows, heads, headDim, rd,
               interleaved, stride, static_cast<int64_t*>(flag.ptr), ctx.stream);
    check(cudaMemcpyAsync(&bad, flag.ptr, 8, cudaMemcpyDeviceToHost, ctx.stream), "cudaRopeF32 flag");
    check(cudaStreamSynchronize(ctx.stream), "cudaRopeF32 sync");
    if (bad < rows) {
      int32_t p = 0;
      check(cudaMemcpyAsync(&p, pos.as<int32_t>() + bad, 4, cudaMemcpyDeviceToHost, ctx.stream), "cudaRopeF32 pos");
      check(cudaStreamSynchronize(ctx.stream), "cudaRopeF32 sync");
      badPos = p;
    }
  });
  // as ropeF32, which stops at the first such row; here the other rows are rotated
  require(env, bad >= rows,
          "cudaRopeF32: position " + std::to_string(badPos) + " (row " + std::to_string(bad) +
              ") outside the cos/sin table of " + std::to_string(maxPos) + " positions");
  return env.Undefined();
}

StoredDtype storedDtypeArg(const Napi::CallbackInfo& info, size_t i, const char* fn) {
  const std::string s = i < info.Length() && info[i].IsString() ? info[i].As<Napi::String>().Utf8Value() : "";
  if (s == "f32") return StoredDtype::F32;
  if (s == "bf16") return StoredDtype::BF16;
  if (s == "f16") return StoredDtype::F16;
  if (s == "f8_e4m3") return StoredDtype::F8E4M3;
  throw Napi::TypeError::New(info.Env(), std::string(fn) + ": dtype must be \"f32\", \"bf16\", \"f16\" or \"f8_e4m3\"");
}

int64_t storedBytes(StoredDtype d) { return d == StoredDtype::F32 ? 4 : d == StoredDtype::F8E4M3 ? 1 : 2; }

void decodeInto(const Napi::CallbackInfo& info, const Buffer& src, StoredDtype d, const Buffer& out, int64_t count,
                const std::string& fn) {
  require(info.Env(), count >= 0, fn + ": count must be >= 0");
  need(info, src, count * storedBytes(d), (fn + ": src").c_str());
  need(info, out, count * 4, (fn + ": dst").c_str());
  require(info.Env(), reinterpret_cast<uintptr_t>(src.as<uint8_t>()) % uintptr_t(storedBytes(d)) == 0,
          fn + ": src must start at a multiple of " + std::to_string(storedBytes(d)) + " bytes");
  sameDevice(info, src.device(), &out, (fn + ": dst").c_str());
  disjoint(info, out, count * 4, src, count * storedBytes(d), fn + ": dst and src");
  onStream(info.Env(), src.device(), "decode sync", [&](DeviceContext& ctx) {
    launchDecode(src.as<void>(), d, out.as<float>(), count, nullptr, 1, ctx.stream);
  });
}

// (src, dst): every 16-bit value of src
template <StoredDtype D>
Napi::Value Widen(const Napi::CallbackInfo& info) {
  const std::string fn = D == StoredDtype::BF16 ? "cudaBf16ToF32" : "cudaF16ToF32";
  Buffer& src = bufferArg(info, 0, (fn + ": src").c_str());
  Buffer& dst = bufferArg(info, 1, (fn + ": dst").c_str());
  require(info.Env(), src.bytes % 2 == 0, fn + ": src holds an odd number of bytes");
  decodeInto(info, src, D, dst, int64_t(src.bytes / 2), fn);
  return info.Env().Undefined();
}

// (src, dtype, out, count)
Napi::Value DecodeToF32(const Napi::CallbackInfo& info) {
  Buffer& src = bufferArg(info, 0, "cudaDecodeToF32: src");
  const StoredDtype d = storedDtypeArg(info, 1, "cudaDecodeToF32");
  Buffer& out = bufferArg(info, 2, "cudaDecodeToF32: out");
  decodeInto(info, src, d, out, intArg(info, 3, "count"), "cudaDecodeToF32");
  return info.Env().Undefined();
}

// (x, w, y, m, n, k, dtype, transB = true, blockScale?, accumulate = false, precision = "f32")
// W is decoded whole into a scratch allocation (n·k f32), then one cuBLAS GEMM.
Napi::Value GemmMixed(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Buffer& x = bufferArg(info, 0, "cudaGemmMixed: x");
  Buffer& w = bufferArg(info, 1, "cudaGemmMixed: w");
  Buffer& y = bufferArg(info, 2, "cudaGemmMixed: y");
  const int64_t m = intArg(info, 3, "m"), n = intArg(info, 4, "n"), k = intArg(info, 5, "k");
  const StoredDtype d = storedDtypeArg(info, 6, "cudaGemmMixed");
  const bool transB = boolArg(info, 7, true);
  Buffer* scale = optBufferArg(info, 8, "cudaGemmMixed: blockScale");
  const bool accumulate = boolArg(info, 9, false);
  const Precision p = precisionArg(info, 10, Precision::F32);
  const int64_t lim = int64_t(1) << 31;
  require(env, m >= 0 && n >= 0 && k >= 0 && m < lim && n < lim && k < lim, "cudaGemmMixed: bad dimension");
  need(info, x, m * k * 4, "cudaGemmMixed: x");
  need(info, y, m * n * 4, "cudaGemmMixed: y");
  need(info, w, n * k * storedBytes(d), "cudaGemmMixed: w");
  require(env, reinterpret_cast<uintptr_t>(w.as<uint8_t>()) % uintptr_t(storedBytes(d)) == 0,
          "cudaGemmMixed: w must start at a multiple of " + std::to_string(storedBytes(d)) + " bytes");
  const int64_t sr = transB ? n : k, sc = transB ? k : n;  // stored [sr, sc]
  if (scale) need(info, *scale, ((sr + 127) / 128) * ((sc + 127) / 128) * 4, "cudaGemmMixed: blockScale");
  for (const Buffer* b : {&w, &y}) sameDevice(info, x.device(), b, "cudaGemmMixed: w/y");
  sameDevice(info, x.device(), scale, "cudaGemmMixed: blockScale");
  disjoint(info, y, m * n * 4, x, m * k * 4, "cudaGemmMixed: y and x");
  disjoint(info, y, m * n * 4, w, n * k * storedBytes(d), "cudaGemmMixed: y and w");
  onStream(env, x.device(), "cudaGemmMixed sync", [&](DeviceContext& ctx) {
    std::unique_ptr<Allocation> wf;
    const float* wp = w.as<float>();
    if (d != StoredDtype::F32 || scale) {
      wf = std::make_unique<Allocation>(size_t(n * k) * 4, ctx.device);
      launchDecode(w.as<void>(), d, static_cast<float*>(wf->ptr), n * k, scale ? scale->as<float>() : nullptr, sc,
                   ctx.stream);
      wp = static_cast<const float*>(wf->ptr);
    }
    gemmRowMajor(ctx.blas, false, transB, m, n, k, 1.0f, x.as<float>(), wp, accumulate ? 1.0f : 0.0f, y.as<float>(), p);
    check(cudaStreamSynchronize(ctx.stream), "cudaGemmMixed sync");  // before the scratch goes
  });
  return env.Undefined();
}

// (x, weight, out, batch, seqLen, channels, kernel)
Napi::Value CausalConv1dSilu(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Buffer& x = bufferArg(info, 0, "cudaCausalConv1dSiluF32: x");
  Buffer& w = bufferArg(info, 1, "cudaCausalConv1dSiluF32: weight");
  Buffer& out = bufferArg(info, 2, "cudaCausalConv1dSiluF32: out");
  const int64_t B = intArg(info, 3, "batch"), T = intArg(info, 4, "seqLen"), C = intArg(info, 5, "channels"),
                K = intArg(info, 6, "kernel");
  require(env, B >= 0 && T >= 0 && C >= 0 && K >= 1, "cudaCausalConv1dSiluF32: dimensions must be >= 0 and kernel >= 1");
  const int64_t bytes = B * T * C * 4;
  need(info, x, bytes, "cudaCausalConv1dSiluF32: x");
  need(info, out, bytes, "cudaCausalConv1dSiluF32: out");
  need(info, w, C * K * 4, "cudaCausalConv1dSiluF32: weight");
  sameDevice(info, x.device(), &w, "cudaCausalConv1dSiluF32: weight");
  sameDevice(info, x.device(), &out, "cudaCausalConv1dSiluF32: out");
  disjoint(info, out, bytes, x, bytes, "cudaCausalConv1dSiluF32: out and x");
  disjoint(info, out, bytes, w, C * K * 4, "cudaCausalConv1dSiluF32: out and weight");
  onStream(env, x.device(), "cudaCausalConv1dSiluF32 sync", [&](DeviceContext& ctx) {
    launchCausalConv1dSilu(x.as<float>(), w.as<float>(), out.as<float>(), B, T, C, K, ctx.stream);
  });
  return env.Undefined();
}

// (q, k, v, g, beta, out, batch, seqLen, numHeads, kDim, vDim)
Napi::Value GatedDeltaRule(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* fn = "cudaGatedDeltaRuleRecurrentF32";
  const char* operand[] = {"q", "k", "v", "g", "beta", "out"};
  std::string names[6];
  Buffer* ops[6];
  for (size_t i = 0; i < 6; i++) {
    names[i] = std::string(fn) + ": " + operand[i];
    ops[i] = &bufferArg(info, i, names[i].c_str());
  }
  const int64_t B = intArg(info, 6, "batch"), T = intArg(info, 7, "seqLen"), H = intArg(info, 8, "numHeads"),
                dk = intArg(info, 9, "kDim"), dv = intArg(info, 10, "vDim");
  require(env, B >= 0 && T >= 0 && H >= 0 && dk >= 0 && dv >= 0, "cudaGatedDeltaRuleRecurrentF32: negative dimension");
  require(env, dk <= kDeltaMaxKDim,
          "cudaGatedDeltaRuleRecurrentF32: kDim up to " + std::to_string(kDeltaMaxKDim) + " on the GPU");
  require(env, B * H < (int64_t(1) << 31), "cudaGatedDeltaRuleRecurrentF32: batch·numHeads too large");
  const int64_t rows = B * T * H;
  const int64_t bytes[] = {rows * dk * 4, rows * dk * 4, rows * dv * 4, rows * 4, rows * 4, rows * dv * 4};
  for (size_t i = 0; i < 6; i++) {
    need(info, *ops[i], bytes[i], names[i].c_str());
    sameDevice(info, ops[0]->device(), ops[i], names[i].c_str());
  }
  // out may be v itself (each value is read before its own slot is written); any other overlap races
  for (size_t i = 0; i < 5; i++) {
    const std::string what = std::string(fn) + ": out and " + operand[i];
    if (i == 2) sameOrDisjoint(info, *ops[5], bytes[5], *ops[i], bytes[i], what);
    else disjoint(info, *ops[5], bytes[5], *ops[i], bytes[i], what);
  }
  onStream(env, ops[0]->device(), "cudaGatedDeltaRuleRecurrentF32 sync", [&](DeviceContext& ctx) {
    launchGatedDeltaRule(ops[0]->as<float>(), ops[1]->as<float>(), ops[2]->as<float>(), ops[3]->as<float>(),
                         ops[4]->as<float>(), ops[5]->as<float>(), B, T, H, dk, dv, ctx.stream);
  });
  return env.Undefined();
}

void exportCudaOps(Napi::Env env, Napi::Object exports) {
  auto fn = [&](const char* name, Napi::Function::Callback cb) { exports.Set(name, Napi::Function::New(env, cb, name)); };
  fn("cudaLogSoftmaxF32", LogSoftmax);
  fn("cudaActivationF32", Activation);
  fn("cudaClampedSwigluF32", ClampedSwiglu);
  fn("cudaLayerNormF32", LayerNorm);
  fn("cudaL2NormF32", L2Norm);
  fn("cudaRopeF32", Rope);
  fn("cudaBf16ToF32", Widen<StoredDtype::BF16>);
  fn("cudaF16ToF32", Widen<StoredDtype::F16>);
  fn("cudaDecodeToF32", DecodeToF32);
  fn("cudaGemmMixed", GemmMixed);
  fn("cudaCausalConv1dSiluF32", CausalConv1dSilu);
  fn("cudaGatedDeltaRuleRecurrentF32", GatedDeltaRule);
}
MOEQ_EXPORTS(exportCudaOps);

}  // namespace
}  // namespace moeq::cuda
