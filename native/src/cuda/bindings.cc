// N-API surface of the CUDA build (signatures in ../../ts/kernels/cuda.ts). A CudaBuffer is a JS
// object {bytes, device} holding a byte range of a device allocation; async entry points run on
// the libuv pool and hold the device's lock while they submit and wait.
#include <cuda.h>

#include <cmath>
#include <cstring>
#include <map>

#include "../args.h"
#include "../attention_args.h"
#include "../registry.h"
#include "attention.h"
#include "blas.h"
#include "common.h"
#include "gptq.h"
#include "kernels.h"
#include "layer.h"
#include "napi_args.h"

namespace moeq::cuda {
namespace {

Napi::Value DeviceCount(const Napi::CallbackInfo& info) {
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    cudaGetLastError();
    n = 0;
  }
  return Napi::Number::New(info.Env(), n);
}

Napi::Value DeviceInfo(const Napi::CallbackInfo& info) {
  int dev = deviceArg(info, 0);
  return guarded(info.Env(), [&]() -> Napi::Value {
    DeviceContext& ctx = context(dev);
    cudaDeviceProp p{};
    check(cudaGetDeviceProperties(&p, ctx.device), "cudaGetDeviceProperties");
    size_t freeB = 0, totalB = 0;
    check(cudaMemGetInfo(&freeB, &totalB), "cudaMemGetInfo");
    auto o = Napi::Object::New(info.Env());
    o.Set("name", p.name);
    o.Set("major", p.major);
    o.Set("minor", p.minor);
    o.Set("multiprocessors", p.multiProcessorCount);
    o.Set("totalBytes", double(totalB));
    o.Set("freeBytes", double(freeB));
    o.Set("allocatedBytes", double(allocatedBytes(dev)));
    o.Set("peakBytes", double(peakBytes(dev)));
    return o;
  });
}

Napi::Value ResetPeak(const Napi::CallbackInfo& info) {
  resetPeak(deviceArg(info, 0));
  return info.Env().Undefined();
}

Napi::Value Alloc(const Napi::CallbackInfo& info) {
  int64_t bytes = intArg(info, 0, "cudaAlloc: bytes");
  require(info.Env(), bytes >= 0, "cudaAlloc: bytes must be >= 0");
  int dev = deviceArg(info, 1);
  return guarded(info.Env(), [&]() -> Napi::Value {
    context(dev);
    return wrapBuffer(info.Env(), std::make_shared<Allocation>(size_t(bytes), dev), 0, size_t(bytes));
  });
}

Napi::Value View(const Napi::CallbackInfo& info) {
  Buffer& b = bufferArg(info, 0, "cudaView: buffer");
  int64_t off = intArg(info, 1, "cudaView: byteOffset");
  int64_t bytes = intArg(info, 2, "cudaView: bytes");
  require(info.Env(), off >= 0 && bytes >= 0 && size_t(off + bytes) <= b.bytes,
          "cudaView: [" + std::to_string(off) + ", " + std::to_string(off + bytes) + ") is outside the buffer's " +
              std::to_string(b.bytes) + " bytes");
  return wrapBuffer(info.Env(), b.alloc, b.offset + size_t(off), size_t(bytes));
}

Napi::Value Free(const Napi::CallbackInfo& info) {
  Buffer& b = bufferArg(info, 0, "cudaFree: buffer");
  b.alloc.reset();  // the allocation goes when its last view (or in-flight work) lets go
  return info.Env().Undefined();
}

Napi::Value Upload(const Napi::CallbackInfo& info) {
  Buffer& b = bufferArg(info, 0, "cudaUpload: dst");
  HostBytes h = hostArg(info, 1, "cudaUpload: src");
  int64_t off = info.Length() > 2 && !info[2].IsUndefined() ? intArg(info, 2, "cudaUpload: dstByteOffset") : 0;
  require(info.Env(), off >= 0 && size_t(off) + h.bytes <= b.bytes, "cudaUpload: src does not fit in dst");
  guarded(info.Env(), [&] {
    DeviceContext& ctx = context(b.device());
    std::lock_guard<std::mutex> lock(ctx.mu);
    check(cudaMemcpyAsync(b.as<uint8_t>() + off, h.data, h.bytes, cudaMemcpyHostToDevice, ctx.stream), "cudaUpload");
    check(cudaStreamSynchronize(ctx.stream), "cudaUpload sync");
  });
  return info.Env().Undefined();
}

Napi::Value Download(const Napi::CallbackInfo& info) {
  Buffer& b = bufferArg(info, 0, "cudaDownload: src");
  HostBytes h = hostArg(info, 1, "cudaDownload: dst");
  int64_t off = info.Length() > 2 && !info[2].IsUndefined() ? intArg(info, 2, "cudaDownload: srcByteOffset") : 0;
  require(info.Env(), off >= 0 && size_t(off) + h.bytes <= b.bytes, "cudaDownload: dst is larger than the source range");
  guarded(info.Env(), [&] {
    DeviceContext& ctx = context(b.device());
    std::lock_guard<std::mutex> lock(ctx.mu);
    check(cudaMemcpyAsync(h.data, b.as<uint8_t>() + off, h.bytes, cudaMemcpyDeviceToHost, ctx.stream), "cudaDownload");
    check(cudaStreamSynchronize(ctx.stream), "cudaDownload sync");
  });
  return info.Env().Undefined();
}

Napi::Value Synchronize(const Napi::CallbackInfo& info) {
  int dev = deviceArg(info, 0);
  guarded(info.Env(), [&] {
    DeviceContext& ctx = context(dev);
    check(cudaStreamSynchronize(ctx.stream), "cudaSynchronize");
  });
  return info.Env().Undefined();
}

Napi::Value FillUniform(const Napi::CallbackInfo& info) {
  Buffer& b = bufferArg(info, 0, "cudaFillUniform: buffer");
  int64_t n = intArg(info, 1, "cudaFillUniform: count");
  int64_t seed = intArg(info, 2, "cudaFillUniform: seed");
  double lo = numArg(info, 3, "cudaFillUniform: lo"), hi = numArg(info, 4, "cudaFillUniform: hi");
  need(info, b, n * 4, "cudaFillUniform: buffer");
  guarded(info.Env(), [&] {
    DeviceContext& ctx = context(b.device());
    std::lock_guard<std::mutex> lock(ctx.mu);
    launchFillUniform(b.as<float>(), size_t(n), uint64_t(seed), float(lo), float(hi), ctx.stream);
    check(cudaStreamSynchronize(ctx.stream), "cudaFillUniform sync");
  });
  return info.Env().Undefined();
}

// (a, b, c, m, n, k, transA?, transB?, alpha?, beta?, precision?)
Napi::Value Gemm(const Napi::CallbackInfo& info) {
  Buffer& a = bufferArg(info, 0, "cudaGemmF32: a");
  Buffer& b = bufferArg(info, 1, "cudaGemmF32: b");
  Buffer& c = bufferArg(info, 2, "cudaGemmF32: c");
  int64_t m = intArg(info, 3, "m"), n = intArg(info, 4, "n"), k = intArg(info, 5, "k");
  bool ta = boolArg(info, 6, false), tb = boolArg(info, 7, false);
  double alpha = info.Length() > 8 && !info[8].IsUndefined() ? numArg(info, 8, "alpha") : 1.0;
  double beta = info.Length() > 9 && !info[9].IsUndefined() ? numArg(info, 9, "beta") : 0.0;
  Precision p = precisionArg(info, 10, Precision::F32);
  require(info.Env(), m >= 0 && n >= 0 && k >= 0, "cudaGemmF32: negative dimension");
  need(info, a, m * k * 4, "cudaGemmF32: a");
  need(info, b, k * n * 4, "cudaGemmF32: b");
  need(info, c, m * n * 4, "cudaGemmF32: c");
  sameDevice(info, a.device(), &b, "cudaGemmF32: b");
  sameDevice(info, a.device(), &c, "cudaGemmF32: c");
  guarded(info.Env(), [&] {
    DeviceContext& ctx = context(a.device());
    std::lock_guard<std::mutex> lock(ctx.mu);
    gemmRowMajor(ctx.blas, ta, tb, m, n, k, float(alpha), a.as<float>(), b.as<float>(), float(beta), c.as<float>(), p);
    check(cudaStreamSynchronize(ctx.stream), "cudaGemmF32 sync");
  });
  return info.Env().Undefined();
}

// (a, b, c, m, n, k, batch, transA?, transB?, alpha?, beta?, precision?) — contiguous batches
Napi::Value GemmBatched(const Napi::CallbackInfo& info) {
  Buffer& a = bufferArg(info, 0, "cudaGemmBatchedF32: a");
  Buffer& b = bufferArg(info, 1, "cudaGemmBatchedF32: b");
  Buffer& c = bufferArg(info, 2, "cudaGemmBatchedF32: c");
  int64_t m = intArg(info, 3, "m"), n = intArg(info, 4, "n"), k = intArg(info, 5, "k"), batch = intArg(info, 6, "batch");
  bool ta = boolArg(info, 7, false), tb = boolArg(info, 8, false);
  double alpha = info.Length() > 9 && !info[9].IsUndefined() ? numArg(info, 9, "alpha") : 1.0;
  double beta = info.Length() > 10 && !info[10].IsUndefined() ? numArg(info, 10, "beta") : 0.0;
  Precision p = precisionArg(info, 11, Precision::F32);
  require(info.Env(), m >= 0 && n >= 0 && k >= 0 && batch >= 0, "cudaGemmBatchedF32: negative dimension");
  need(info, a, batch * m * k * 4, "cudaGemmBatchedF32: a");
  need(info, b, batch * k * n * 4, "cudaGemmBatchedF32: b");
  need(info, c, batch * m * n * 4, "cudaGemmBatchedF32: c");
  sameDevice(info, a.device(), &b, "cudaGemmBatchedF32: b");
  sameDevice(info, a.device(), &c, "cudaGemmBatchedF32: c");
  guarded(info.Env(), [&] {
    DeviceContext& ctx = context(a.device());
    std::lock_guard<std::mutex> lock(ctx.mu);
    gemmRowMajorBatched(ctx.blas, ta, tb, m, n, k, float(alpha), a.as<float>(), m * k, b.as<float>(), k * n,
                        float(beta), c.as<float>(), m * n, batch, p);
    check(cudaStreamSynchronize(ctx.stream), "cudaGemmBatchedF32 sync");
  });
  return info.Env().Undefined();
}

// (h, x, tokens, cols, w|null, precision?) → Promise<void>
Napi::Value HessianAccumulate(const Napi::CallbackInfo& info) {
  Buffer& h = bufferArg(info, 0, "cudaHessianAccumulate: h");
  Buffer& x = bufferArg(info, 1, "cudaHessianAccumulate: x");
  int64_t tokens = intArg(info, 2, "tokens"), cols = intArg(info, 3, "cols");
  Buffer* w = optBufferArg(info, 4, "cudaHessianAccumulate: w");
  Precision p = precisionArg(info, 5, Precision::F32);
  require(info.Env(), tokens >= 0 && cols > 0, "cudaHessianAccumulate: tokens must be >= 0 and cols > 0");
  need(info, h, cols * cols * 4, "cudaHessianAccumulate: h");
  need(info, x, tokens * cols * 4, "cudaHessianAccumulate: x");
  if (w) need(info, *w, tokens * 4, "cudaHessianAccumulate: w");
  sameDevice(info, h.device(), &x, "cudaHessianAccumulate: x");
  sameDevice(info, h.device(), w, "cudaHessianAccumulate: w");
  Buffer hb = h, xb = x;
  std::shared_ptr<Buffer> wb = w ? std::make_shared<Buffer>(*w) : nullptr;
  std::vector<Napi::Value> keep{info[0], info[1]};
  return runAsync(info.Env(), [hb, xb, wb, tokens, cols, p] {
    DeviceContext& ctx = context(hb.device());
    std::lock_guard<std::mutex> lock(ctx.mu);
    hessianAccumulate(ctx, hb.as<float>(), xb.as<float>(), wb ? wb->as<float>() : nullptr, tokens, cols, p);
  }, keep);
}

Napi::Value Softmax(const Napi::CallbackInfo& info) {
  Buffer& x = bufferArg(info, 0, "cudaSoftmaxF32: x");
  Buffer& out = bufferArg(info, 1, "cudaSoftmaxF32: out");
  int64_t rows = intArg(info, 2, "rows"), cols = intArg(info, 3, "cols");
  require(info.Env(), rows >= 0 && cols > 0, "cudaSoftmaxF32: rows must be >= 0 and cols > 0");
  need(info, x, rows * cols * 4, "cudaSoftmaxF32: x");
  need(info, out, rows * cols * 4, "cudaSoftmaxF32: out");
  sameDevice(info, x.device(), &out, "cudaSoftmaxF32: out");
  guarded(info.Env(), [&] {
    DeviceContext& ctx = context(x.device());
    std::lock_guard<std::mutex> lock(ctx.mu);
    launchSoftmaxRows(x.as<float>(), out.as<float>(), rows, cols, ctx.stream);
    check(cudaStreamSynchronize(ctx.stream), "cudaSoftmaxF32 sync");
  });
  return info.Env().Undefined();
}

// (x, rows, cols, k, indices, values)
Napi::Value Topk(const Napi::CallbackInfo& info) {
  Buffer& x = bufferArg(info, 0, "cudaTopkF32: x");
  int64_t rows = intArg(info, 1, "rows"), cols = intArg(info, 2, "cols"), k = intArg(info, 3, "k");
  Buffer& idx = bufferArg(info, 4, "cudaTopkF32: indices");
  Buffer& val = bufferArg(info, 5, "cudaTopkF32: values");
  require(info.Env(), rows >= 0 && cols > 0 && cols < (int64_t(1) << 31) && k >= 0 && k <= cols,
          "cudaTopkF32: need rows >= 0, cols > 0 and 0 <= k <= cols");
  need(info, x, rows * cols * 4, "cudaTopkF32: x");
  need(info, idx, rows * k * 4, "cudaTopkF32: indices");
  need(info, val, rows * k * 4, "cudaTopkF32: values");
  guarded(info.Env(), [&] {
    DeviceContext& ctx = context(x.device());
    std::lock_guard<std::mutex> lock(ctx.mu);
    launchTopkRows(x.as<float>(), rows, cols, int(k), idx.as<int32_t>(), val.as<float>(), ctx.stream);
    check(cudaStreamSynchronize(ctx.stream), "cudaTopkF32 sync");
  });
  return info.Env().Undefined();
}

// (gate, up, out, rows, cols, rowStride?, colStride?)
Napi::Value Swiglu(const Napi::CallbackInfo& info) {
  Buffer& g = bufferArg(info, 0, "cudaSwigluF32: gate");
  Buffer& u = bufferArg(info, 1, "cudaSwigluF32: up");
  Buffer& out = bufferArg(info, 2, "cudaSwigluF32: out");
  int64_t rows = intArg(info, 3, "rows"), cols = intArg(info, 4, "cols");
  int64_t rs = info.Length() > 5 && !info[5].IsUndefined() ? intArg(info, 5, "rowStride") : cols;
  int64_t cs = info.Length() > 6 && !info[6].IsUndefined() ? intArg(info, 6, "colStride") : 1;
  require(info.Env(), rows >= 0 && cols >= 0 && rs >= 0 && cs >= 0, "cudaSwigluF32: negative size or stride");
  const int64_t span = rows == 0 || cols == 0 ? 0 : ((rows - 1) * rs + (cols - 1) * cs + 1) * 4;
  need(info, g, span, "cudaSwigluF32: gate");
  need(info, u, span, "cudaSwigluF32: up");
  need(info, out, rows * cols * 4, "cudaSwigluF32: out");
  guarded(info.Env(), [&] {
    DeviceContext& ctx = context(g.device());
    std::lock_guard<std::mutex> lock(ctx.mu);
    launchSwiglu(g.as<float>(), u.as<float>(), out.as<float>(), rows, cols, rs, cs, ctx.stream);
    check(cudaStreamSynchronize(ctx.stream), "cudaSwigluF32 sync");
  });
  return info.Env().Undefined();
}

// (x, weight|null, out, rows, cols, eps, plusOne?)
Napi::Value RmsNorm(const Napi::CallbackInfo& info) {
  Buffer& x = bufferArg(info, 0, "cudaRmsNormF32: x");
  Buffer* w = optBufferArg(info, 1, "cudaRmsNormF32: weight");
  Buffer& out = bufferArg(info, 2, "cudaRmsNormF32: out");
  int64_t rows = intArg(info, 3, "rows"), cols = intArg(info, 4, "cols");
  double eps = numArg(info, 5, "eps");
  bool plusOne = boolArg(info, 6, false);
  require(info.Env(), rows >= 0 && cols > 0, "cudaRmsNormF32: rows must be >= 0 and cols > 0");
  need(info, x, rows * cols * 4, "cudaRmsNormF32: x");
  need(info, out, rows * cols * 4, "cudaRmsNormF32: out");
  if (w) need(info, *w, cols * 4, "cudaRmsNormF32: weight");
  guarded(info.Env(), [&] {
    DeviceContext& ctx = context(x.device());
    std::lock_guard<std::mutex> lock(ctx.mu);
    launchRmsNorm(x.as<float>(), w ? w->as<float>() : nullptr, out.as<float>(), rows, cols, float(eps), plusOne,
                  ctx.stream);
    check(cudaStreamSynchronize(ctx.stream), "cudaRmsNormF32 sync");
  });
  return info.Env().Undefined();
}

// (w, h, experts, rows, cols, bits, groupSize, symmetric, actOrder, damp, blockSize, scaleDtype?) → Promise<result>
Napi::Value GptqBatched(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Buffer& w = bufferArg(info, 0, "cudaGptqBatched: w");
  Buffer& h = bufferArg(info, 1, "cudaGptqBatched: h");
  int64_t E = intArg(info, 2, "experts"), rows = intArg(info, 3, "rows"), cols = intArg(info, 4, "cols");
  GptqBatchSpec s;
  s.bits = int(intArg(info, 5, "bits"));
  s.group = intArg(info, 6, "groupSize");
  s.sym = boolArg(info, 7, true);
  s.actOrder = boolArg(info, 8, false);
  s.damp = numArg(info, 9, "damp");
  s.blockSize = intArg(info, 10, "blockSize");
  if (info.Length() > 11 && !info[11].IsUndefined()) {
    const std::string sd = info[11].IsString() ? info[11].As<Napi::String>().Utf8Value() : "";
    if (sd == "f32") s.scaleDtype = 0;
    else if (sd == "bf16") s.scaleDtype = 1;
    else if (sd == "f16") s.scaleDtype = 2;
    else throw Napi::TypeError::New(env, "cudaGptqBatched: scaleDtype must be \"f32\", \"bf16\" or \"f16\"");
  }
  require(env, E > 0 && rows > 0 && cols > 0 && cols < 65536 && rows < (int64_t(1) << 31),
          "cudaGptqBatched: experts/rows/cols out of range");
  require(env, s.bits >= 2 && s.bits <= 8, "cudaGptqBatched: bits must be 2..8, got " + std::to_string(s.bits));
  require(env, s.group == -1 || s.group > 0, "cudaGptqBatched: groupSize must be -1 or positive");
  require(env, s.blockSize >= 1 && s.blockSize <= 128, "cudaGptqBatched: blockSize must be 1..128 on the GPU");
  require(env, std::isfinite(s.damp) && s.damp >= 0, "cudaGptqBatched: damp must be finite and >= 0");
  need(info, w, E * rows * cols * 4, "cudaGptqBatched: w");
  need(info, h, E * cols * cols * 4, "cudaGptqBatched: h");
  sameDevice(info, w.device(), &h, "cudaGptqBatched: h");
  Buffer wb = w, hb = h;
  auto out = std::make_shared<GptqBatchOut>();
  return runAsync(env, [wb, hb, E, rows, cols, s, out] {
    DeviceContext& ctx = context(wb.device());
    std::lock_guard<std::mutex> lock(ctx.mu);
    gptqBatched(ctx, wb.as<float>(), hb.as<float>(), E, rows, cols, s, *out);
  }, {info[0], info[1]}, [out, E, rows, cols](Napi::Env env) -> Napi::Value {
    auto r = Napi::Object::New(env);
    r.Set("codes", wrapBuffer(env, out->codes, 0, out->codes->bytes));
    r.Set("scales", wrapBuffer(env, out->scales, 0, out->scales->bytes));
    r.Set("zeros", wrapBuffer(env, out->zeros, 0, out->zeros->bytes));
    r.Set("dequant", wrapBuffer(env, out->dequant, 0, out->dequant->bytes));
    auto perm = Napi::Int32Array::New(env, out->perm.size());
    std::memcpy(perm.Data(), out->perm.data(), out->perm.size() * 4);
    auto gIdx = Napi::Int32Array::New(env, out->gIdx.size());
    std::memcpy(gIdx.Data(), out->gIdx.data(), out->gIdx.size() * 4);
    auto loss = Napi::Float64Array::New(env, out->loss.size());
    std::memcpy(loss.Data(), out->loss.data(), out->loss.size() * 8);
    r.Set("perm", perm);
    r.Set("gIdx", gIdx);
    r.Set("loss", loss);
    auto sec = Napi::Object::New(env);
    sec.Set("prepare", out->secPrepare);
    sec.Set("factor", out->secFactor);
    sec.Set("sweep", out->secSweep);
    sec.Set("loss", out->secLoss);
    r.Set("seconds", sec);
    return r;
  });
}

// (x, tokens, hidden, router, gateUp, experts, inter, precision?, timePhases?) → Promise<result>
Napi::Value MoeCalibrate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Buffer& x = bufferArg(info, 0, "cudaMoeCalibrate: x");
  int64_t N = intArg(info, 1, "tokens"), H = intArg(info, 2, "hidden");
  Buffer& g = bufferArg(info, 3, "cudaMoeCalibrate: router");
  Buffer& gu = bufferArg(info, 4, "cudaMoeCalibrate: gateUp");
  int64_t E = intArg(info, 5, "experts"), I = intArg(info, 6, "inter");
  Precision p = precisionArg(info, 7, Precision::TF32);
  bool timePhases = boolArg(info, 8, false);
  require(env, N > 0 && H > 0 && E > 0 && I > 0, "cudaMoeCalibrate: sizes must be positive");
  need(info, x, N * H * 4, "cudaMoeCalibrate: x");
  need(info, g, E * H * 4, "cudaMoeCalibrate: router");
  need(info, gu, E * 2 * I * H * 4, "cudaMoeCalibrate: gateUp");
  sameDevice(info, x.device(), &g, "cudaMoeCalibrate: router");
  sameDevice(info, x.device(), &gu, "cudaMoeCalibrate: gateUp");
  Buffer xb = x, gb = g, gub = gu;
  auto out = std::make_shared<MoeCalibOut>();
  return runAsync(env, [xb, gb, gub, N, H, E, I, p, timePhases, out] {
    DeviceContext& ctx = context(xb.device());
    std::lock_guard<std::mutex> lock(ctx.mu);
    moeCalibrate(ctx, xb.as<float>(), N, H, gb.as<float>(), gub.as<float>(), E, I, p, timePhases, *out);
  }, {info[0], info[3], info[4]}, [out](Napi::Env env) -> Napi::Value {
    auto r = Napi::Object::New(env);
    r.Set("probs", wrapBuffer(env, out->probs, 0, out->probs->bytes));
    r.Set("hIn", wrapBuffer(env, out->hIn, 0, out->hIn->bytes));
    r.Set("hDown", wrapBuffer(env, out->hDown, 0, out->hDown->bytes));
    auto sec = Napi::Object::New(env);
    sec.Set("router", out->secRouter);
    sec.Set("hessianIn", out->secHessianIn);
    sec.Set("act", out->secAct);
    sec.Set("hessianDown", out->secHessianDown);
    r.Set("seconds", sec);
    return r;
  });
}

// (q, k, v, out, options) with the options of attentionF32 (sinks: a host Float32Array)
Napi::Value Attention(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Buffer& q = bufferArg(info, 0, "cudaAttentionF32: q");
  Buffer& k = bufferArg(info, 1, "cudaAttentionF32: k");
  Buffer& v = bufferArg(info, 2, "cudaAttentionF32: v");
  Buffer& out = bufferArg(info, 3, "cudaAttentionF32: out");
  const AttnDims d = parseAttnOptions(info, "cudaAttentionF32");
  require(env, d.D <= kAttnMaxHeadDim && d.Dv <= kAttnMaxHeadDim,
          "cudaAttentionF32: head dims up to " + std::to_string(kAttnMaxHeadDim) + " on the GPU");
  const AttnSpans span = attnSpans(d);
  need(info, q, int64_t(span.q) * 4, "cudaAttentionF32: q");
  need(info, k, int64_t(span.k) * 4, "cudaAttentionF32: k");
  need(info, v, int64_t(span.v) * 4, "cudaAttentionF32: v");
  need(info, out, int64_t(span.out) * 4, "cudaAttentionF32: out");
  sameDevice(info, q.device(), &k, "cudaAttentionF32: k");
  sameDevice(info, q.device(), &v, "cudaAttentionF32: v");
  sameDevice(info, q.device(), &out, "cudaAttentionF32: out");
  const moeq::View<float> sv = attnSinks(info, d, "cudaAttentionF32");
  std::vector<float> sinks(sv.data, sv.data + (sv.data ? d.Hq : 0));
  AttnArgs a{};
  a.B = d.B, a.T = d.T, a.Hq = d.Hq, a.Hkv = d.Hkv, a.D = d.D, a.Dv = d.Dv;
  a.qs = d.qs, a.ks = d.ks, a.vs = d.vs, a.os = d.os, a.window = d.window, a.chunk = d.chunk;
  a.causal = d.causal;
  a.scale = d.scale;
  onStream(env, q.device(), "cudaAttentionF32 sync", [&](DeviceContext& ctx) {
    std::unique_ptr<Allocation> ds;
    if (!sinks.empty()) {
      ds = std::make_unique<Allocation>(sinks.size() * 4, ctx.device);
      check(cudaMemcpyAsync(ds->ptr, sinks.data(), ds->bytes, cudaMemcpyHostToDevice, ctx.stream), "sinks upload");
      a.sinks = static_cast<float*>(ds->ptr);
    }
    a.q = q.as<float>();
    a.k = k.as<float>();
    a.v = v.as<float>();
    a.out = out.as<float>();
    launchAttention(a, ctx.stream);
    // the sinks allocation must outlive the kernel: wait here, before ds goes
    check(cudaStreamSynchronize(ctx.stream), "cudaAttentionF32 sync");
  });
  return env.Undefined();
}

// ---------- CUDA IPC: memory handles, interprocess events

std::mutex gIpcMu;
std::map<std::string, std::weak_ptr<Allocation>> gOpened;  // one mapping per handle per process

using GetAddressRange = CUresult (*)(CUdeviceptr*, size_t*, CUdeviceptr);
size_t allocationSize(void* ptr) {
  static GetAddressRange fn = [] {
    void* f = nullptr;
    cudaDriverEntryPointQueryResult q{};
    if (cudaGetDriverEntryPointByVersion("cuMemGetAddressRange", &f, 12000, cudaEnableDefault, &q) != cudaSuccess ||
        q != cudaDriverEntryPointSuccess)
      f = nullptr;
    return reinterpret_cast<GetAddressRange>(f);
  }();
  if (!fn) throw CudaError("cuMemGetAddressRange is not available from the driver");
  CUdeviceptr base = 0;
  size_t size = 0;
  if (fn(&base, &size, reinterpret_cast<CUdeviceptr>(ptr)) != CUDA_SUCCESS)
    throw CudaError("cuMemGetAddressRange failed on an opened IPC allocation");
  return size;
}

// (buffer) → {handle: Uint8Array(64), offset, allocationBytes}
Napi::Value IpcExport(const Napi::CallbackInfo& info) {
  Buffer& b = bufferArg(info, 0, "cudaIpcExport: buffer");
  if (b.alloc->ipcOpened)
    throw Napi::Error::New(info.Env(), "cudaIpcExport: the buffer was opened from another process's handle; only the "
                                       "producing process can export it");
  return guarded(info.Env(), [&]() -> Napi::Value {
    context(b.device());
    cudaIpcMemHandle_t h;
    check(cudaIpcGetMemHandle(&h, b.alloc->ptr), "cudaIpcGetMemHandle");
    auto bytes = Napi::Uint8Array::New(info.Env(), sizeof(h));
    std::memcpy(bytes.Data(), &h, sizeof(h));
    auto o = Napi::Object::New(info.Env());
    o.Set("handle", bytes);
    o.Set("offset", double(b.offset));
    o.Set("allocationBytes", double(b.alloc->bytes));
    return o;
  });
}

// (handle: Uint8Array(64), device, offset, bytes) → CudaBuffer
Napi::Value IpcOpen(const Napi::CallbackInfo& info) {
  HostBytes hb = hostArg(info, 0, "cudaIpcOpen: handle");
  require(info.Env(), hb.bytes == sizeof(cudaIpcMemHandle_t),
          "cudaIpcOpen: handle must be " + std::to_string(sizeof(cudaIpcMemHandle_t)) + " bytes, got " +
              std::to_string(hb.bytes));
  int dev = int(intArg(info, 1, "cudaIpcOpen: device"));
  int64_t off = intArg(info, 2, "cudaIpcOpen: offset"), bytes = intArg(info, 3, "cudaIpcOpen: bytes");
  require(info.Env(), off >= 0 && bytes >= 0, "cudaIpcOpen: offset and bytes must be >= 0");
  return guarded(info.Env(), [&]() -> Napi::Value {
    context(dev);
    std::string key(reinterpret_cast<char*>(hb.data), hb.bytes);
    key += ":" + std::to_string(dev);
    std::shared_ptr<Allocation> a;
    {
      std::lock_guard<std::mutex> lock(gIpcMu);
      a = gOpened[key].lock();
      if (!a) {
        cudaIpcMemHandle_t h;
        std::memcpy(&h, hb.data, sizeof(h));
        a = std::make_shared<Allocation>(h, dev);
        a->bytes = allocationSize(a->ptr);
        gOpened[key] = a;
      }
    }
    if (size_t(off + bytes) > a->bytes)
      throw Napi::RangeError::New(info.Env(), "cudaIpcOpen: [" + std::to_string(off) + ", " +
                                                  std::to_string(off + bytes) + ") is past the end of the " +
                                                  std::to_string(a->bytes) + "-byte allocation");
    return wrapBuffer(info.Env(), a, size_t(off), size_t(bytes));
  });
}

struct Event {
  cudaEvent_t ev = nullptr;
  int device = 0;
  ~Event() {
    if (ev) {
      cudaSetDevice(device);
      cudaEventDestroy(ev);
    }
  }
};
constexpr const char* kEventSlot = "__moeqCudaEvent";

Napi::Object wrapEvent(Napi::Env env, Event* e, const cudaIpcEventHandle_t& h) {
  auto o = Napi::Object::New(env);
  auto bytes = Napi::Uint8Array::New(env, sizeof(h));
  std::memcpy(bytes.Data(), &h, sizeof(h));
  o.Set("handle", bytes);
  o.Set("device", e->device);
  o.DefineProperty(Napi::PropertyDescriptor::Value(
      kEventSlot, Napi::External<Event>::New(env, e, [](Napi::Env, Event* p) { delete p; }), napi_default));
  return o;
}

Event& eventArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (i < info.Length() && info[i].IsObject()) {
    auto v = info[i].As<Napi::Object>().Get(kEventSlot);
    if (v.IsExternal()) return *v.As<Napi::External<Event>>().Data();
  }
  throw Napi::TypeError::New(info.Env(), std::string(name) + ": expected a CudaIpcEvent");
}

Napi::Value IpcEventCreate(const Napi::CallbackInfo& info) {
  int dev = deviceArg(info, 0);
  return guarded(info.Env(), [&]() -> Napi::Value {
    context(dev);
    auto* e = new Event{nullptr, dev};
    try {
      check(cudaEventCreateWithFlags(&e->ev, cudaEventDisableTiming | cudaEventInterprocess), "cudaEventCreate");
      cudaIpcEventHandle_t h;
      check(cudaIpcGetEventHandle(&h, e->ev), "cudaIpcGetEventHandle");
      return wrapEvent(info.Env(), e, h);
    } catch (...) {
      delete e;
      throw;
    }
  });
}

Napi::Value IpcEventOpen(const Napi::CallbackInfo& info) {
  HostBytes hb = hostArg(info, 0, "cudaIpcEventOpen: handle");
  require(info.Env(), hb.bytes == sizeof(cudaIpcEventHandle_t), "cudaIpcEventOpen: handle must be 64 bytes");
  int dev = deviceArg(info, 1);
  return guarded(info.Env(), [&]() -> Napi::Value {
    context(dev);
    cudaIpcEventHandle_t h;
    std::memcpy(&h, hb.data, sizeof(h));
    auto* e = new Event{nullptr, dev};
    try {
      check(cudaIpcOpenEventHandle(&e->ev, h), "cudaIpcOpenEventHandle");
      return wrapEvent(info.Env(), e, h);
    } catch (...) {
      delete e;
      throw;
    }
  });
}

// record on the device's stream: completes once everything queued before it has run
Napi::Value EventRecord(const Napi::CallbackInfo& info) {
  Event& e = eventArg(info, 0, "cudaEventRecord: event");
  guarded(info.Env(), [&] {
    DeviceContext& ctx = context(e.device);
    std::lock_guard<std::mutex> lock(ctx.mu);
    check(cudaEventRecord(e.ev, ctx.stream), "cudaEventRecord");
  });
  return info.Env().Undefined();
}

// the device's stream waits (on the GPU) for the event: later work is ordered after the producer's
Napi::Value EventWait(const Napi::CallbackInfo& info) {
  Event& e = eventArg(info, 0, "cudaEventWait: event");
  guarded(info.Env(), [&] {
    DeviceContext& ctx = context(e.device);
    std::lock_guard<std::mutex> lock(ctx.mu);
    check(cudaStreamWaitEvent(ctx.stream, e.ev, 0), "cudaStreamWaitEvent");
  });
  return info.Env().Undefined();
}

Napi::Value EventSynchronize(const Napi::CallbackInfo& info) {
  Event& e = eventArg(info, 0, "cudaEventSynchronize: event");
  guarded(info.Env(), [&] {
    context(e.device);
    check(cudaEventSynchronize(e.ev), "cudaEventSynchronize");
  });
  return info.Env().Undefined();
}

void exportCuda(Napi::Env env, Napi::Object exports) {
  auto fn = [&](const char* name, Napi::Function::Callback cb) { exports.Set(name, Napi::Function::New(env, cb, name)); };
  fn("cudaDeviceCount", DeviceCount);
  fn("cudaDeviceInfo", DeviceInfo);
  fn("cudaResetPeak", ResetPeak);
  fn("cudaAlloc", Alloc);
  fn("cudaView", View);
  fn("cudaFree", Free);
  fn("cudaUpload", Upload);
  fn("cudaDownload", Download);
  fn("cudaSynchronize", Synchronize);
  fn("cudaFillUniform", FillUniform);
  fn("cudaGemmF32", Gemm);
  fn("cudaGemmBatchedF32", GemmBatched);
  fn("cudaHessianAccumulate", HessianAccumulate);
  fn("cudaSoftmaxF32", Softmax);
  fn("cudaTopkF32", Topk);
  fn("cudaSwigluF32", Swiglu);
  fn("cudaRmsNormF32", RmsNorm);
  fn("cudaAttentionF32", Attention);
  fn("cudaGptqBatched", GptqBatched);
  fn("cudaMoeCalibrate", MoeCalibrate);
  fn("cudaIpcExport", IpcExport);
  fn("cudaIpcOpen", IpcOpen);
  fn("cudaIpcEventCreate", IpcEventCreate);
  fn("cudaIpcEventOpen", IpcEventOpen);
  fn("cudaEventRecord", EventRecord);
  fn("cudaEventWait", EventWait);
  fn("cudaEventSynchronize", EventSynchronize);
}
MOEQ_EXPORTS(exportCuda);

}  // namespace
}  // namespace moeq::cuda
