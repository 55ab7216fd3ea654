// N-API entry points of the device engine's kernels (engine_ops.h; types in
// ../../ts/kernels/cuda.ts): every operand's byte span is checked before launch, outputs that
// would race with an input are refused, bad gather/scatter indices are a RangeError naming the row.
#include <string>
#include <vector>

#include "../args.h"
#include "../attention_args.h"
#include "../registry.h"
#include "common.h"
#include "engine_ops.h"
#include "napi_args.h"

namespace moeq::cuda {
namespace {

int64_t dimArg(const Napi::CallbackInfo& info, size_t i, const char* fn, const char* name) {
  const int64_t v = intArg(info, i, name);
  require(info.Env(), v >= 0 && v < (int64_t(1) << 40), std::string(fn) + ": " + name + " out of range");
  return v;
}

std::string nm(const char* fn, const char* what) { return std::string(fn) + ": " + what; }

// (q, k, v, out, opts, precision = "f32", scratchBytes = 1 GiB): attentionF32's options
Napi::Value AttentionGemm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* fn = "cudaAttentionGemm";
  Buffer& q = bufferArg(info, 0, "cudaAttentionGemm: q");
  Buffer& k = bufferArg(info, 1, "cudaAttentionGemm: k");
  Buffer& v = bufferArg(info, 2, "cudaAttentionGemm: v");
  Buffer& out = bufferArg(info, 3, "cudaAttentionGemm: out");
  const AttnDims d = parseAttnOptions(info, fn);
  const Precision p = precisionArg(info, 5, Precision::F32);
  const int64_t scratch =
      info.Length() > 6 && info[6].IsNumber() ? dimArg(info, 6, fn, "scratchBytes") : (int64_t(1) << 30);
  const int64_t lim = int64_t(1) << 31;
  require(env, d.T < lim / 2 && d.qs < lim && d.ks < lim && d.vs < lim && d.os < lim,
          nm(fn, "seqLen or a stride is too large for cuBLAS"));
  const AttnSpans span = attnSpans(d);
  need(info, q, int64_t(span.q) * 4, "cudaAttentionGemm: q");
  need(info, k, int64_t(span.k) * 4, "cudaAttentionGemm: k");
  need(info, v, int64_t(span.v) * 4, "cudaAttentionGemm: v");
  need(info, out, int64_t(span.out) * 4, "cudaAttentionGemm: out");
  for (const Buffer* b : {&k, &v, &out}) sameDevice(info, q.device(), b, "cudaAttentionGemm: k/v/out");
  for (const Buffer* b : {&q, &k, &v})
    disjoint(info, out, int64_t(span.out) * 4, *b, int64_t(b->bytes), nm(fn, "out and q/k/v"));
  const View<float> sv = attnSinks(info, d, fn);
  std::vector<float> sinks(sv.data, sv.data + (sv.data ? d.Hq : 0));
  AttnGemmArgs a{};
  a.B = d.B, a.T = d.T, a.Hq = d.Hq, a.Hkv = d.Hkv, a.D = d.D, a.Dv = d.Dv;
  a.qs = d.qs, a.ks = d.ks, a.vs = d.vs, a.os = d.os, a.window = d.window, a.chunk = d.chunk;
  a.causal = d.causal;
  a.scale = d.scale;
  a.q = q.as<float>(), a.k = k.as<float>(), a.v = v.as<float>(), a.out = out.as<float>();
  onStream(env, q.device(), "cudaAttentionGemm sync", [&](DeviceContext& ctx) {
    std::unique_ptr<Allocation> ds;
    if (!sinks.empty()) {
      ds = std::make_unique<Allocation>(sinks.size() * 4, ctx.device);
      check(cudaMemcpyAsync(ds->ptr, sinks.data(), ds->bytes, cudaMemcpyHostToDevice, ctx.stream), "sinks upload");
      a.sinks = static_cast<float*>(ds->ptr);
    }
    attentionGemm(ctx, a, p, scratch);
  });
  return env.Undefined();
}

// (y, row, rows, cols)
Napi::Value FillRows(const Napi::CallbackInfo& info) {
  const char* fn = "cudaFillRowsF32";
  Buffer& y = bufferArg(info, 0, "cudaFillRowsF32: y");
  Buffer& row = bufferArg(info, 1, "cudaFillRowsF32: row");
  const int64_t rows = dimArg(info, 2, fn, "rows"), cols = dimArg(info, 3, fn, "cols");
  need(info, y, rows * cols * 4, "cudaFillRowsF32: y");
  need(info, row, cols * 4, "cudaFillRowsF32: row");
  sameDevice(info, y.device(), &row, "cudaFillRowsF32: row");
  disjoint(info, y, rows * cols * 4, row, cols * 4, nm(fn, "y and row"));
  onStream(info.Env(), y.device(), "cudaFillRowsF32 sync",
           [&](DeviceContext& ctx) { launchFillRows(y.as<float>(), row.as<float>(), rows, cols, ctx.stream); });
  return info.Env().Undefined();
}

// (a, b, out, n, scale = 1): out = a + f32(b·scale)
Napi::Value ResidualAdd(const Napi::CallbackInfo& info) {
  const char* fn = "cudaResidualAddF32";
  Buffer& a = bufferArg(info, 0, "cudaResidualAddF32: a");
  Buffer& b = bufferArg(info, 1, "cudaResidualAddF32: b");
  Buffer& out = bufferArg(info, 2, "cudaResidualAddF32: out");
  const int64_t n = dimArg(info, 3, fn, "n");
  const double s = info.Length() > 4 && info[4].IsNumber() ? numArg(info, 4, "scale") : 1.0;
  for (Buffer* x : {&a, &b, &out}) need(info, *x, n * 4, "cudaResidualAddF32: a/b/out");
  sameDevice(info, a.device(), &b, "cudaResidualAddF32: b");
  sameDevice(info, a.device(), &out, "cudaResidualAddF32: out");
  sameOrDisjoint(info, out, n * 4, a, n * 4, nm(fn, "out and a"));
  sameOrDisjoint(info, out, n * 4, b, n * 4, nm(fn, "out and b"));
  onStream(info.Env(), a.device(), "cudaResidualAddF32 sync", [&](DeviceContext& ctx) {
    launchResidualAdd(a.as<float>(), b.as<float>(), out.as<float>(), n, s, ctx.stream);
  });
  return info.Env().Undefined();
}

// (x, out, n, factor, divide = false)
Napi::Value Scale(const Napi::CallbackInfo& info) {
  const char* fn = "cudaScaleF32";
  Buffer& x = bufferArg(info, 0, "cudaScaleF32: x");
  Buffer& out = bufferArg(info, 1, "cudaScaleF32: out");
  const int64_t n = dimArg(info, 2, fn, "n");
  const double f = numArg(info, 3, "factor");
  const bool divide = boolArg(info, 4, false);
  need(info, x, n * 4, "cudaScaleF32: x");
  need(info, out, n * 4, "cudaScaleF32: out");
  sameDevice(info, x.device(), &out, "cudaScaleF32: out");
  sameOrDisjoint(info, out, n * 4, x, n * 4, nm(fn, "out and x"));
  onStream(info.Env(), x.device(), "cudaScaleF32 sync",
           [&](DeviceContext& ctx) { launchScale(x.as<float>(), out.as<float>(), n, f, divide, ctx.stream); });
  return info.Env().Undefined();
}

// (x, out, n, limit): clamp to ±limit
Napi::Value Clamp(const Napi::CallbackInfo& info) {
  const char* fn = "cudaClampF32";
  Buffer& x = bufferArg(info, 0, "cudaClampF32: x");
  Buffer& out = bufferArg(info, 1, "cudaClampF32: out");
  const int64_t n = dimArg(info, 2, fn, "n");
  const double c = numArg(info, 3, "limit");
  need(info, x, n * 4, "cudaClampF32: x");
  need(info, out, n * 4, "cudaClampF32: out");
  sameDevice(info, x.device(), &out, "cudaClampF32: out");
  sameOrDisjoint(info, out, n * 4, x, n * 4, nm(fn, "out and x"));
  onStream(info.Env(), x.device(), "cudaClampF32 sync",
           [&](DeviceContext& ctx) { launchClamp(x.as<float>(), out.as<float>(), n, float(c), ctx.stream); });
  return info.Env().Undefined();
}

// (a, b, out, n): out = a·b
Napi::Value Mul(const Napi::CallbackInfo& info) {
  const char* fn = "cudaMulF32";
  Buffer& a = bufferArg(info, 0, "cudaMulF32: a");
  Buffer& b = bufferArg(info, 1, "cudaMulF32: b");
  Buffer& out = bufferArg(info, 2, "cudaMulF32: out");
  const int64_t n = dimArg(info, 3, fn, "n");
  for (Buffer* x : {&a, &b, &out}) need(info, *x, n * 4, "cudaMulF32: a/b/out");
  sameDevice(info, a.device(), &b, "cudaMulF32: b");
  sameDevice(info, a.device(), &out, "cudaMulF32: out");
  sameOrDisjoint(info, out, n * 4, a, n * 4, nm(fn, "out and a"));
  sameOrDisjoint(info, out, n * 4, b, n * 4, nm(fn, "out and b"));
  onStream(info.Env(), a.device(), "cudaMulF32 sync",
           [&](DeviceContext& ctx) { launchMul(a.as<float>(), b.as<float>(), out.as<float>(), n, ctx.stream); });
  return info.Env().Undefined();
}

// (src, dst, rows, cols, rowStride, colStride, multiply = false, dstRowStride = cols)
Napi::Value Strided(const Napi::CallbackInfo& info) {
  const char* fn = "cudaStridedF32";
  Buffer& src = bufferArg(info, 0, "cudaStridedF32: src");
  Buffer& dst = bufferArg(info, 1, "cudaStridedF32: dst");
  const int64_t rows = dimArg(info, 2, fn, "rows"), cols = dimArg(info, 3, fn, "cols");
  const int64_t rs = dimArg(info, 4, fn, "rowStride"), cs = dimArg(info, 5, fn, "colStride");
  const bool mul = boolArg(info, 6, false);
  const int64_t drs = info.Length() > 7 && info[7].IsNumber() ? dimArg(info, 7, fn, "dstRowStride") : cols;
  require(info.Env(), drs >= cols, nm(fn, "dstRowStride < cols"));
  const int64_t span = rows == 0 || cols == 0 ? 0 : ((rows - 1) * rs + (cols - 1) * cs + 1) * 4;
  const int64_t dspan = rows == 0 || cols == 0 ? 0 : ((rows - 1) * drs + cols) * 4;
  need(info, src, span, "cudaStridedF32: src");
  need(info, dst, dspan, "cudaStridedF32: dst");
  sameDevice(info, src.device(), &dst, "cudaStridedF32: dst");
  disjoint(info, dst, dspan, src, span, nm(fn, "dst and src"));
  onStream(info.Env(), src.device(), "cudaStridedF32 sync", [&](DeviceContext& ctx) {
    launchStrided(src.as<float>(), dst.as<float>(), rows, cols, rs, cs, drs, mul, ctx.stream);
  });
  return info.Env().Undefined();
}

// Runs a gather/scatter with a device flag for the first bad row and reports it.
template <typename F>
void withBadRow(const Napi::CallbackInfo& info, int device, const char* fn, int64_t n, const Buffer& idx, F&& launch) {
  int64_t bad = n;
  onStream(info.Env(), device, fn, [&](DeviceContext& ctx) {
    Allocation flag(8, ctx.device);
    check(cudaMemcpyAsync(flag.ptr, &bad, 8, cudaMemcpyHostToDevice, ctx.stream), "row flag");
    launch(ctx, static_cast<int64_t*>(flag.ptr));
    check(cudaMemcpyAsync(&bad, flag.ptr, 8, cudaMemcpyDeviceToHost, ctx.stream), "row flag");
    check(cudaStreamSynchronize(ctx.stream), fn);
  });
  if (bad < n) {
    int32_t v = 0;
    onStream(info.Env(), device, fn, [&](DeviceContext& ctx) {
      check(cudaMemcpyAsync(&v, idx.as<int32_t>() + bad, 4, cudaMemcpyDeviceToHost, ctx.stream), "row index");
    });
    throw Napi::RangeError::New(info.Env(), std::string(fn) + ": index " + std::to_string(v) + " (entry " +
                                                std::to_string(bad) + ") is outside the matrix's rows");
  }
}

// (x, idx i32 [n], scale f32 [n] | null, out, n, cols): out[i] = x[idx[i]] (· scale[i])
Napi::Value GatherRows(const Napi::CallbackInfo& info) {
  const char* fn = "cudaGatherRowsF32";
  Buffer& x = bufferArg(info, 0, "cudaGatherRowsF32: x");
  Buffer& idx = bufferArg(info, 1, "cudaGatherRowsF32: idx");
  Buffer* w = optBufferArg(info, 2, "cudaGatherRowsF32: scale");
  Buffer& out = bufferArg(info, 3, "cudaGatherRowsF32: out");
  const int64_t n = dimArg(info, 4, fn, "n"), cols = dimArg(info, 5, fn, "cols");
  require(info.Env(), cols > 0, nm(fn, "cols must be > 0"));
  need(info, idx, n * 4, "cudaGatherRowsF32: idx");
  if (w) need(info, *w, n * 4, "cudaGatherRowsF32: scale");
  need(info, out, n * cols * 4, "cudaGatherRowsF32: out");
  for (const Buffer* b : {&idx, &out}) sameDevice(info, x.device(), b, "cudaGatherRowsF32: idx/out");
  sameDevice(info, x.device(), w, "cudaGatherRowsF32: scale");
  disjoint(info, out, n * cols * 4, x, int64_t(x.bytes), nm(fn, "out and x"));
  const int64_t xRows = int64_t(x.bytes / 4) / cols;
  withBadRow(info, x.device(), fn, n, idx, [&](DeviceContext& ctx, int64_t* bad) {
    launchGatherRows(x.as<float>(), idx.as<int32_t>(), w ? w->as<float>() : nullptr, out.as<float>(), n, cols, xRows,
                     bad, ctx.stream);
  });
  return info.Env().Undefined();
}

// (y, src, idx i32 [n] (distinct), scale f32 [n] | null, n, cols): y[idx[i]] += src[i]·scale[i]
Napi::Value ScatterAddRows(const Napi::CallbackInfo& info) {
  const char* fn = "cudaScatterAddRowsF32";
  Buffer& y = bufferArg(info, 0, "cudaScatterAddRowsF32: y");
  Buffer& src = bufferArg(info, 1, "cudaScatterAddRowsF32: src");
  Buffer& idx = bufferArg(info, 2, "cudaScatterAddRowsF32: idx");
  Buffer* w = optBufferArg(info, 3, "cudaScatterAddRowsF32: scale");
  const int64_t n = dimArg(info, 4, fn, "n"), cols = dimArg(info, 5, fn, "cols");
  require(info.Env(), cols > 0, nm(fn, "cols must be > 0"));
  need(info, src, n * cols * 4, "cudaScatterAddRowsF32: src");
  need(info, idx, n * 4, "cudaScatterAddRowsF32: idx");
  if (w) need(info, *w, n * 4, "cudaScatterAddRowsF32: scale");
  for (const Buffer* b : {&src, &idx}) sameDevice(info, y.device(), b, "cudaScatterAddRowsF32: src/idx");
  sameDevice(info, y.device(), w, "cudaScatterAddRowsF32: scale");
  disjoint(info, y, int64_t(y.bytes), src, n * cols * 4, nm(fn, "y and src"));
  const int64_t yRows = int64_t(y.bytes / 4) / cols;
  withBadRow(info, y.device(), fn, n, idx, [&](DeviceContext& ctx, int64_t* bad) {
    launchScatterAddRows(y.as<float>(), src.as<float>(), idx.as<int32_t>(), w ? w->as<float>() : nullptr, n, cols,
                         yRows, bad, ctx.stream);
  });
  return info.Env().Undefined();
}

// (out, src, g [rows], rows, cols): out[r, c] += g[r]·src[r, c]
Napi::Value RowScaleAdd(const Napi::CallbackInfo& info) {
  const char* fn = "cudaRowScaleAddF32";
  Buffer& out = bufferArg(info, 0, "cudaRowScaleAddF32: out");
  Buffer& src = bufferArg(info, 1, "cudaRowScaleAddF32: src");
  Buffer& g = bufferArg(info, 2, "cudaRowScaleAddF32: g");
  const int64_t rows = dimArg(info, 3, fn, "rows"), cols = dimArg(info, 4, fn, "cols");
  need(info, out, rows * cols * 4, "cudaRowScaleAddF32: out");
  need(info, src, rows * cols * 4, "cudaRowScaleAddF32: src");
  need(info, g, rows * 4, "cudaRowScaleAddF32: g");
  for (const Buffer* b : {&src, &g}) sameDevice(info, out.device(), b, "cudaRowScaleAddF32: src/g");
  disjoint(info, out, rows * cols * 4, src, rows * cols * 4, nm(fn, "out and src"));
  disjoint(info, out, rows * cols * 4, g, rows * 4, nm(fn, "out and g"));
  onStream(info.Env(), out.device(), "cudaRowScaleAddF32 sync", [&](DeviceContext& ctx) {
    launchRowScaleAdd(out.as<float>(), src.as<float>(), g.as<float>(), rows, cols, ctx.stream);
  });
  return info.Env().Undefined();
}

// (x, f [rows], rows, cols): x[r, c] *= f[r], in place
Napi::Value ScaleRows(const Napi::CallbackInfo& info) {
  const char* fn = "cudaScaleRowsF32";
  Buffer& x = bufferArg(info, 0, "cudaScaleRowsF32: x");
  Buffer& f = bufferArg(info, 1, "cudaScaleRowsF32: f");
  const int64_t rows = dimArg(info, 2, fn, "rows"), cols = dimArg(info, 3, fn, "cols");
  need(info, x, rows * cols * 4, "cudaScaleRowsF32: x");
  need(info, f, rows * 4, "cudaScaleRowsF32: f");
  sameDevice(info, x.device(), &f, "cudaScaleRowsF32: f");
  disjoint(info, x, rows * cols * 4, f, rows * 4, nm(fn, "x and f"));
  onStream(info.Env(), x.device(), "cudaScaleRowsF32 sync",
           [&](DeviceContext& ctx) { launchScaleRowsInPlace(x.as<float>(), f.as<float>(), rows, cols, ctx.stream); });
  return info.Env().Undefined();
}

// (w, rows, k): each row divided by its sum, in place
Napi::Value RenormRows(const Napi::CallbackInfo& info) {
  const char* fn = "cudaRenormRowsF32";
  Buffer& w = bufferArg(info, 0, "cudaRenormRowsF32: w");
  const int64_t rows = dimArg(info, 1, fn, "rows"), k = dimArg(info, 2, fn, "k");
  need(info, w, rows * k * 4, "cudaRenormRowsF32: w");
  onStream(info.Env(), w.device(), "cudaRenormRowsF32 sync",
           [&](DeviceContext& ctx) { launchRenormRows(w.as<float>(), rows, k, ctx.stream); });
  return info.Env().Undefined();
}

// (codes u8 [rows, cols], scales f32 [⌈rows/br⌉, ⌈cols/bc⌉], out, rows, cols, br, bc, outDtype "bf16" | "f32")
Napi::Value DequantFp8Block(const Napi::CallbackInfo& info) {
  const char* fn = "cudaDequantFp8Block";
  Buffer& codes = bufferArg(info, 0, "cudaDequantFp8Block: codes");
  Buffer& scales = bufferArg(info, 1, "cudaDequantFp8Block: scales");
  Buffer& out = bufferArg(info, 2, "cudaDequantFp8Block: out");
  const int64_t rows = dimArg(info, 3, fn, "rows"), cols = dimArg(info, 4, fn, "cols");
  const int64_t br = dimArg(info, 5, fn, "blockRows"), bc = dimArg(info, 6, fn, "blockCols");
  const std::string dt = info.Length() > 7 && info[7].IsString() ? info[7].As<Napi::String>().Utf8Value() : "";
  require(info.Env(), dt == "bf16" || dt == "f32", nm(fn, "outDtype must be \"bf16\" or \"f32\""));
  require(info.Env(), br > 0 && bc > 0, nm(fn, "block sizes must be > 0"));
  const bool bf16 = dt == "bf16";
  const int64_t ob = rows * cols * (bf16 ? 2 : 4);
  need(info, codes, rows * cols, "cudaDequantFp8Block: codes");
  need(info, scales, ((rows + br - 1) / br) * ((cols + bc - 1) / bc) * 4, "cudaDequantFp8Block: scales");
  need(info, out, ob, "cudaDequantFp8Block: out");
  require(info.Env(), out.offset % 4 == 0 && scales.offset % 4 == 0, nm(fn, "out and scales must be 4-byte aligned"));
  for (const Buffer* b : {&scales, &out}) sameDevice(info, codes.device(), b, "cudaDequantFp8Block: scales/out");
  disjoint(info, out, ob, codes, rows * cols, nm(fn, "out and codes"));
  onStream(info.Env(), codes.device(), "cudaDequantFp8Block sync", [&](DeviceContext& ctx) {
    launchDequantFp8Block(codes.as<uint8_t>(), scales.as<float>(), out.as<void>(), rows, cols, br, bc, bf16, ctx.stream);
  });
  return info.Env().Undefined();
}

// (blocks u8 [E, rows, nb, 16], scales u8 [E, rows, nb], out bf16 [E, nb·32, rows], E, rows, nb)
Napi::Value DequantMxfp4T(const Napi::CallbackInfo& info) {
  const char* fn = "cudaDequantMxfp4T";
  Buffer& blocks = bufferArg(info, 0, "cudaDequantMxfp4T: blocks");
  Buffer& scales = bufferArg(info, 1, "cudaDequantMxfp4T: scales");
  Buffer& out = bufferArg(info, 2, "cudaDequantMxfp4T: out");
  const int64_t E = dimArg(info, 3, fn, "experts"), rows = dimArg(info, 4, fn, "rows"), nb = dimArg(info, 5, fn, "blocks");
  const int64_t n = E * rows * nb;
  need(info, blocks, n * 16, "cudaDequantMxfp4T: blocks");
  need(info, scales, n, "cudaDequantMxfp4T: scales");
  need(info, out, n * 64, "cudaDequantMxfp4T: out");
  require(info.Env(), out.offset % 2 == 0, nm(fn, "out must be 2-byte aligned"));
  for (const Buffer* b : {&scales, &out}) sameDevice(info, blocks.device(), b, "cudaDequantMxfp4T: scales/out");
  disjoint(info, out, n * 64, blocks, n * 16, nm(fn, "out and blocks"));
  int64_t bad = n;
  onStream(info.Env(), blocks.device(), "cudaDequantMxfp4T sync", [&](DeviceContext& ctx) {
    Allocation flag(8, ctx.device);
    check(cudaMemcpyAsync(flag.ptr, &bad, 8, cudaMemcpyHostToDevice, ctx.stream), "flag");
    launchDequantMxfp4T(blocks.as<uint8_t>(), scales.as<uint8_t>(), out.as<uint16_t>(), E, rows, nb,
                        static_cast<int64_t*>(flag.ptr), ctx.stream);
    check(cudaMemcpyAsync(&bad, flag.ptr, 8, cudaMemcpyDeviceToHost, ctx.stream), "flag");
    check(cudaStreamSynchronize(ctx.stream), "cudaDequantMxfp4T sync");
  });
  if (bad < n)
    throw Napi::RangeError::New(info.Env(), std::string(fn) + ": scale of expert " + std::to_string(bad / (rows * nb)) +
                                                ", row " + std::to_string((bad / nb) % rows) + ", block " +
                                                std::to_string(bad % nb) + " is the E8M0 NaN code 0xff");
  return info.Env().Undefined();
}

// (q [B·T, H, D], k [B·T, D], w [B·T, H], out [B, T, T], batch, seqLen, heads, headDim, scale, headScale)
Napi::Value IndexerScores(const Napi::CallbackInfo& info) {
  const char* fn = "cudaIndexerScoresF32";
  Buffer& q = bufferArg(info, 0, "cudaIndexerScoresF32: q");
  Buffer& k = bufferArg(info, 1, "cudaIndexerScoresF32: k");
  Buffer& w = bufferArg(info, 2, "cudaIndexerScoresF32: w");
  Buffer& out = bufferArg(info, 3, "cudaIndexerScoresF32: out");
  const int64_t B = dimArg(info, 4, fn, "batch"), T = dimArg(info, 5, fn, "seqLen"), H = dimArg(info, 6, fn, "heads"),
                D = dimArg(info, 7, fn, "headDim");
  const double scale = numArg(info, 8, "scale"), headScale = numArg(info, 9, "headScale");
  const int64_t rows = B * T;
  need(info, q, rows * H * D * 4, "cudaIndexerScoresF32: q");
  need(info, k, rows * D * 4, "cudaIndexerScoresF32: k");
  need(info, w, rows * H * 4, "cudaIndexerScoresF32: w");
  need(info, out, rows * T * 4, "cudaIndexerScoresF32: out");
  for (const Buffer* b : {&k, &w, &out}) sameDevice(info, q.device(), b, "cudaIndexerScoresF32: k/w/out");
  for (const Buffer* b : {&q, &k, &w}) disjoint(info, out, rows * T * 4, *b, int64_t(b->bytes), nm(fn, "out and q/k/w"));
  onStream(info.Env(), q.device(), "cudaIndexerScoresF32 sync", [&](DeviceContext& ctx) {
    launchIndexerScores(q.as<float>(), k.as<float>(), w.as<float>(), out.as<float>(), B, T, H, D, scale, headScale,
                        ctx.stream);
  });
  return info.Env().Undefined();
}

// (q, k [B·T, H, D], v, out [B·T, H, Dv], sel i32 [B·T, topK], batch, seqLen, heads, headDim, vHeadDim, topK, scale)
Napi::Value SparseAttention(const Napi::CallbackInfo& info) {
  const char* fn = "cudaSparseAttentionF32";
  Buffer& q = bufferArg(info, 0, "cudaSparseAttentionF32: q");
  Buffer& k = bufferArg(info, 1, "cudaSparseAttentionF32: k");
  Buffer& v = bufferArg(info, 2, "cudaSparseAttentionF32: v");
  Buffer& out = bufferArg(info, 3, "cudaSparseAttentionF32: out");
  Buffer& sel = bufferArg(info, 4, "cudaSparseAttentionF32: selected");
  const int64_t B = dimArg(info, 5, fn, "batch"), T = dimArg(info, 6, fn, "seqLen"), H = dimArg(info, 7, fn, "heads"),
                D = dimArg(info, 8, fn, "headDim"), Dv = dimArg(info, 9, fn, "vHeadDim"), K = dimArg(info, 10, fn, "topK");
  const double scale = numArg(info, 11, "scale");
  require(info.Env(), D <= 512 && Dv <= 512, nm(fn, "head dims up to 512 on the GPU"));
  const int64_t rows = B * T;
  need(info, q, rows * H * D * 4, "cudaSparseAttentionF32: q");
  need(info, k, rows * H * D * 4, "cudaSparseAttentionF32: k");
  need(info, v, rows * H * Dv * 4, "cudaSparseAttentionF32: v");
  need(info, out, rows * H * Dv * 4, "cudaSparseAttentionF32: out");
  need(info, sel, rows * K * 4, "cudaSparseAttentionF32: selected");
  for (const Buffer* b : {&k, &v, &out, &sel}) sameDevice(info, q.device(), b, "cudaSparseAttentionF32: operands");
  for (const Buffer* b : {&q, &k, &v, &sel})
    disjoint(info, out, rows * H * Dv * 4, *b, int64_t(b->bytes), nm(fn, "out and an input"));
  onStream(info.Env(), q.device(), "cudaSparseAttentionF32 sync", [&](DeviceContext& ctx) {
    launchSparseAttention(q.as<float>(), k.as<float>(), v.as<float>(), out.as<float>(), sel.as<int32_t>(), B, T, H, D,
                          Dv, K, float(scale), ctx.stream);
  });
  return info.Env().Undefined();
}

void exportEngineOps(Napi::Env env, Napi::Object exports) {
  auto fn = [&](const char* name, Napi::Function::Callback cb) { exports.Set(name, Napi::Function::New(env, cb, name)); };
  fn("cudaAttentionGemm", AttentionGemm);
  fn("cudaFillRowsF32", FillRows);
  fn("cudaResidualAddF32", ResidualAdd);
  fn("cudaScaleF32", Scale);
  fn("cudaClampF32", Clamp);
  fn("cudaMulF32", Mul);
  fn("cudaStridedF32", Strided);
  fn("cudaGatherRowsF32", GatherRows);
  fn("cudaScatterAddRowsF32", ScatterAddRows);
  fn("cudaRowScaleAddF32", RowScaleAdd);
  fn("cudaScaleRowsF32", ScaleRows);
  fn("cudaRenormRowsF32", RenormRows);
  fn("cudaDequantFp8Block", DequantFp8Block);
  fn("cudaDequantMxfp4T", DequantMxfp4T);
  fn("cudaIndexerScoresF32", IndexerScores);
  fn("cudaSparseAttentionF32", SparseAttention);
}
MOEQ_EXPORTS(exportEngineOps);

}  // namespace
}  // namespace moeq::cuda
