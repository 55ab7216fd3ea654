// Rotary position embedding applied in place to [rows, heads, headDim] f32 (row stride may be
// larger, e.g. q inside a fused projection). Only the first rotaryDim dims of each head rotate
// (partial RoPE). Half-split pairs (i, i+rd/2) (NeoX / rotate_half) or interleaved pairs
// (2i, 2i+1) (GPT-J / complex). cos/sin tables [maxPos, rd/2] come from TypeScript, where the
// scaling variants (linear, dynamic NTK, llama3, YaRN) are computed.
#include <cmath>
#include <string>

#include "args.h"
#include "registry.h"

namespace moeq {
namespace {

template <bool REF>
Napi::Value Rope(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  View<float> x = typedArg<float>(info, 0, "x");
  View<float> cosT = typedArg<float>(info, 1, "cos");
  View<float> sinT = typedArg<float>(info, 2, "sin");
  View<int32_t> pos = typedArg<int32_t>(info, 3, "positions");
  int64_t rows = intArg(info, 4, "rows"), heads = intArg(info, 5, "heads"), headDim = intArg(info, 6, "headDim");
  int64_t rd = intArg(info, 7, "rotaryDim");
  bool interleaved = boolArg(info, 8, false);
  int64_t stride = info.Length() > 9 && info[9].IsNumber() ? intArg(info, 9, "rowStride") : heads * headDim;
  require(env, rows >= 0 && heads >= 0 && headDim >= 0, "ropeF32: negative dimension");
  require(env, rd >= 0 && rd <= headDim && rd % 2 == 0, "ropeF32: rotaryDim must be even and <= headDim");
  require(env, stride >= heads * headDim, "ropeF32: rowStride < heads*headDim");
  require(env, pos.length >= static_cast<size_t>(rows), "ropeF32: positions shorter than rows");
  if (rows > 0) require(env, x.length >= static_cast<size_t>((rows - 1) * stride + heads * headDim), "ropeF32: x too short");
  int64_t half = rd / 2;
  require(env, cosT.length == sinT.length, "ropeF32: cos and sin tables differ in length");
  int64_t maxPos = half > 0 ? static_cast<int64_t>(cosT.length) / half : 0;
  for (int64_t r = 0; r < rows; r++) {
    int64_t p = pos.data[r];
    if (half > 0) require(env, p >= 0 && p < maxPos, "ropeF32: position " + std::to_string(p) + " outside the cos/sin table");
    const float* c = cosT.data + p * half;
    const float* s = sinT.data + p * half;
    for (int64_t h = 0; h < heads; h++) {
      float* v = x.data + r * stride + h * headDim;
      for (int64_t i = 0; i < half; i++) {
        int64_t i1 = interleaved ? 2 * i : i, i2 = interleaved ? 2 * i + 1 : i + half;
        if (REF) {
          double a = v[i1], b = v[i2], cc = c[i], ss = s[i];
          v[i1] = static_cast<float>(a * cc - b * ss);
          v[i2] = static_cast<float>(b * cc + a * ss);
        } else {
          float a = v[i1], b = v[i2];
          v[i1] = a * c[i] - b * s[i];
          v[i2] = b * c[i] + a * s[i];
        }
      }
    }
  }
  return env.Undefined();
}

void exportRope(Napi::Env env, Napi::Object e) {
  e.Set("ropeF32", Napi::Function::New(env, Rope<false>, "ropeF32"));
  e.Set("ropeF32Ref", Napi::Function::New(env, Rope<true>, "ropeF32Ref"));
}
MOEQ_EXPORTS(exportRope);

}  // namespace
}  // namespace moeq
