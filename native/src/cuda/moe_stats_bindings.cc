// N-API entry points of moe_stats.cu (signatures in ../../ts/kernels/cuda.ts): every operand's byte
// span is checked before launch, bad indices come back as a RangeError naming the row.
#include <cstring>
#include <string>
#include <vector>

#include "../args.h"
#include "../registry.h"
#include "common.h"
#include "moe_stats.h"
#include "napi_args.h"

namespace moeq::cuda {
namespace {

// (x, xRows, cols, index i32 [n], n, scale f32 [n] | null, out [n, cols])
Napi::Value GatherRows(const Napi::CallbackInfo& info) {
  const char* fn = "cudaGatherRowsF32";
  Buffer& x = bufferArg(info, 0, "cudaGatherRowsF32: x");
  const int64_t xRows = intArg(info, 1, "xRows"), cols = intArg(info, 2, "cols");
  Buffer& index = bufferArg(info, 3, "cudaGatherRowsF32: index");
  const int64_t n = intArg(info, 4, "n");
  Buffer* scale = optBufferArg(info, 5, "cudaGatherRowsF32: scale");
  Buffer& out = bufferArg(info, 6, "cudaGatherRowsF32: out");
  require(info.Env(), xRows >= 0 && cols >= 0 && n >= 0 && xRows < (int64_t(1) << 31),
          std::string(fn) + ": bad dimension");
  need(info, x, xRows * cols * 4, "cudaGatherRowsF32: x");
  need(info, index, n * 4, "cudaGatherRowsF32: index");
  if (scale) need(info, *scale, n * 4, "cudaGatherRowsF32: scale");
  need(info, out, n * cols * 4, "cudaGatherRowsF32: out");
  for (const Buffer* b : {&index, scale, &out}) sameDevice(info, x.device(), b, "cudaGatherRowsF32: operand");
  disjoint(info, out, n * cols * 4, x, xRows * cols * 4, "cudaGatherRowsF32: out and x");
  int32_t bad = int32_t(n);
  onStream(info.Env(), x.device(), "cudaGatherRowsF32 sync", [&](DeviceContext& ctx) {
    Allocation flag(4, ctx.device);
    check(cudaMemcpyAsync(flag.ptr, &bad, 4, cudaMemcpyHostToDevice, ctx.stream), "gatherRows flag");
    launchGatherRows(x.as<float>(), xRows, cols, index.as<int32_t>(), n, scale ? scale->as<float>() : nullptr,
                     out.as<float>(), static_cast<int32_t*>(flag.ptr), ctx.stream);
    check(cudaMemcpyAsync(&bad, flag.ptr, 4, cudaMemcpyDeviceToHost, ctx.stream), "gatherRows flag");
    check(cudaStreamSynchronize(ctx.stream), "cudaGatherRowsF32 sync");
  });
  if (bad < n)
    throw Napi::RangeError::New(info.Env(), std::string(fn) + ": index[" + std::to_string(bad) +
                                                "] is outside the " + std::to_string(xRows) + " rows of x");
  return info.Env().Undefined();
}

// (x, n) → max |x| (f32; NaN when x holds one)
Napi::Value AbsMax(const Napi::CallbackInfo& info) {
  Buffer& x = bufferArg(info, 0, "cudaAbsMaxF32: x");
  const int64_t n = intArg(info, 1, "n");
  require(info.Env(), n >= 0, "cudaAbsMaxF32: negative n");
  need(info, x, n * 4, "cudaAbsMaxF32: x");
  uint32_t bits = 0;
  onStream(info.Env(), x.device(), "cudaAbsMaxF32 sync", [&](DeviceContext& ctx) {
    Allocation acc(4, ctx.device);
    check(cudaMemsetAsync(acc.ptr, 0, 4, ctx.stream), "absMax init");
    launchAbsMax(x.as<float>(), n, static_cast<uint32_t*>(acc.ptr), ctx.stream);
    check(cudaMemcpyAsync(&bits, acc.ptr, 4, cudaMemcpyDeviceToHost, ctx.stream), "absMax result");
    check(cudaStreamSynchronize(ctx.stream), "cudaAbsMaxF32 sync");  // before acc is freed
  });
  float v;
  static_assert(sizeof v == sizeof bits);
  std::memcpy(&v, &bits, 4);
  return Napi::Number::New(info.Env(), double(v));
}

// (a, b, rows, cols) → Float64Array [rows] of Σ_c a·b
Napi::Value RowDot(const Napi::CallbackInfo& info) {
  Buffer& a = bufferArg(info, 0, "cudaRowDotF32: a");
  Buffer& b = bufferArg(info, 1, "cudaRowDotF32: b");
  const int64_t rows = intArg(info, 2, "rows"), cols = intArg(info, 3, "cols");
  require(info.Env(), rows >= 0 && cols >= 0, "cudaRowDotF32: negative size");
  need(info, a, rows * cols * 4, "cudaRowDotF32: a");
  need(info, b, rows * cols * 4, "cudaRowDotF32: b");
  sameDevice(info, a.device(), &b, "cudaRowDotF32: b");
  auto result = Napi::Float64Array::New(info.Env(), size_t(rows));
  onStream(info.Env(), a.device(), "cudaRowDotF32 sync", [&](DeviceContext& ctx) {
    if (rows == 0) return;
    Allocation acc(size_t(rows) * 8, ctx.device);
    launchRowDot(a.as<float>(), b.as<float>(), rows, cols, static_cast<double*>(acc.ptr), ctx.stream);
    check(cudaMemcpyAsync(result.Data(), acc.ptr, size_t(rows) * 8, cudaMemcpyDeviceToHost, ctx.stream),
          "rowDot result");
    check(cudaStreamSynchronize(ctx.stream), "cudaRowDotF32 sync");  // before acc is freed
  });
  return result;
}

// (src, dst, blocks, blockLen, scale: Float64Array [blocks]); dst may be src itself
Napi::Value ScaleBlocks(const Napi::CallbackInfo& info) {
  Buffer& src = bufferArg(info, 0, "cudaScaleBlocksF32: src");
  Buffer& dst = bufferArg(info, 1, "cudaScaleBlocksF32: dst");
  const int64_t blocks = intArg(info, 2, "blocks"), len = intArg(info, 3, "blockLen");
  require(info.Env(), blocks >= 0 && len >= 0, "cudaScaleBlocksF32: negative size");
  if (info.Length() <= 4 || !info[4].IsTypedArray() ||
      info[4].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array)
    throw Napi::TypeError::New(info.Env(), "cudaScaleBlocksF32: scale: expected a Float64Array");
  auto scale = info[4].As<Napi::Float64Array>();
  require(info.Env(), int64_t(scale.ElementLength()) >= blocks,
          "cudaScaleBlocksF32: scale has " + std::to_string(scale.ElementLength()) + " values, needs " +
              std::to_string(blocks));
  need(info, src, blocks * len * 4, "cudaScaleBlocksF32: src");
  need(info, dst, blocks * len * 4, "cudaScaleBlocksF32: dst");
  sameDevice(info, src.device(), &dst, "cudaScaleBlocksF32: dst");
  sameOrDisjoint(info, dst, blocks * len * 4, src, blocks * len * 4, "cudaScaleBlocksF32: dst and src");
  std::vector<double> host(scale.Data(), scale.Data() + blocks);
  onStream(info.Env(), src.device(), "cudaScaleBlocksF32 sync", [&](DeviceContext& ctx) {
    if (blocks == 0) return;
    Allocation ds(size_t(blocks) * 8, ctx.device);
    check(cudaMemcpyAsync(ds.ptr, host.data(), ds.bytes, cudaMemcpyHostToDevice, ctx.stream), "scale upload");
    launchScaleBlocks(src.as<float>(), dst.as<float>(), blocks, len, static_cast<double*>(ds.ptr), ctx.stream);
    check(cudaStreamSynchronize(ctx.stream), "cudaScaleBlocksF32 sync");  // before ds is freed
  });
  return info.Env().Undefined();
}

void exportCudaStats(Napi::Env env, Napi::Object exports) {
  auto fn = [&](const char* name, Napi::Function::Callback cb) { exports.Set(name, Napi::Function::New(env, cb, name)); };
  fn("cudaGatherRowsF32", GatherRows);
  fn("cudaAbsMaxF32", AbsMax);
  fn("cudaRowDotF32", RowDot);
  fn("cudaScaleBlocksF32", ScaleBlocks);
}
MOEQ_EXPORTS(exportCudaStats);

}  // namespace
}  // namespace moeq::cuda
