// N-API argument helpers of the CUDA bindings (bindings.cc, ops_bindings.cc): CudaBuffer objects
// (a JS object carrying an External<Buffer>), size checks naming the argument, CUDA errors turned
// into JS errors, and the lock-launch-sync pattern every synchronous entry point uses.
#pragma once
#include <napi.h>

#include <memory>
#include <mutex>
#include <string>

#include "../args.h"
#include "common.h"

namespace moeq::cuda {

constexpr const char* kSlot = "__moeqCuda";

inline Napi::Object wrapBuffer(Napi::Env env, std::shared_ptr<Allocation> alloc, size_t offset, size_t bytes) {
  auto* b = new Buffer{std::move(alloc), offset, bytes};
  auto obj = Napi::Object::New(env);
  obj.Set("bytes", Napi::Number::New(env, double(bytes)));
  obj.Set("device", Napi::Number::New(env, b->device()));
  obj.DefineProperty(Napi::PropertyDescriptor::Value(
      kSlot, Napi::External<Buffer>::New(env, b, [](Napi::Env, Buffer* p) { delete p; }), napi_default));
  return obj;
}

inline Buffer& bufferArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (i < info.Length() && info[i].IsObject()) {
    auto v = info[i].As<Napi::Object>().Get(kSlot);
    if (v.IsExternal()) {
      Buffer* b = v.As<Napi::External<Buffer>>().Data();
      if (!b->alloc) throw Napi::Error::New(info.Env(), std::string(name) + ": the CudaBuffer was freed");
      return *b;
    }
  }
  throw Napi::TypeError::New(info.Env(), std::string(name) + ": expected a CudaBuffer");
}

inline Buffer* optBufferArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (i >= info.Length() || info[i].IsNull() || info[i].IsUndefined()) return nullptr;
  return &bufferArg(info, i, name);
}

inline void need(const Napi::CallbackInfo& info, const Buffer& b, int64_t bytes, const char* name) {
  if (bytes < 0 || size_t(bytes) > b.bytes)
    throw Napi::RangeError::New(info.Env(), std::string(name) + ": CudaBuffer holds " + std::to_string(b.bytes) +
                                                " bytes, needs " + std::to_string(bytes));
}

inline void sameDevice(const Napi::CallbackInfo& info, int dev, const Buffer* b, const char* name) {
  if (b && b->device() != dev)
    throw Napi::Error::New(info.Env(), std::string(name) + ": on device " + std::to_string(b->device()) +
                                           ", the other operands are on device " + std::to_string(dev));
}

// CUDA failures surface as JS errors with the failing call's name.
template <typename F>
auto guarded(Napi::Env env, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const CudaError& e) {
    throw Napi::Error::New(env, e.what());
  }
}

inline int deviceArg(const Napi::CallbackInfo& info, size_t i) {
  if (i >= info.Length() || info[i].IsUndefined()) return 0;
  return int(intArg(info, i, "device"));
}

struct HostBytes {
  uint8_t* data;
  size_t bytes;
};
inline HostBytes hostArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (i >= info.Length() || !info[i].IsTypedArray())
    throw Napi::TypeError::New(info.Env(), std::string(name) + ": expected a typed array");
  auto ta = info[i].As<Napi::TypedArray>();
  return {static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset(), ta.ByteLength()};
}

// Byte ranges [offset, offset + bytes) of two buffers intersect inside one allocation.
inline bool overlaps(const Buffer& a, int64_t aBytes, const Buffer& b, int64_t bBytes) {
  if (a.alloc != b.alloc || aBytes <= 0 || bBytes <= 0) return false;
  return a.offset < b.offset + size_t(bBytes) && b.offset < a.offset + size_t(aBytes);
}

// In-place use (out is the input, element for element) is fine; any other overlap would race
// between threads on the GPU, where the CPU kernel's sequential loop would not.
inline void sameOrDisjoint(const Napi::CallbackInfo& info, const Buffer& out, int64_t outBytes, const Buffer& in,
                           int64_t inBytes, const std::string& what) {
  if (overlaps(out, outBytes, in, inBytes) && out.offset != in.offset)
    throw Napi::RangeError::New(info.Env(), what + " overlap without starting at the same byte");
}

inline void disjoint(const Napi::CallbackInfo& info, const Buffer& out, int64_t outBytes, const Buffer& in,
                     int64_t inBytes, const std::string& what) {
  if (overlaps(out, outBytes, in, inBytes)) throw Napi::RangeError::New(info.Env(), what + " must not overlap");
}

inline Precision precisionArg(const Napi::CallbackInfo& info, size_t i, Precision dflt) {
  if (i >= info.Length() || info[i].IsUndefined()) return dflt;
  if (!info[i].IsString()) throw Napi::TypeError::New(info.Env(), "precision: expected \"f32\", \"tf32\" or \"bf16\"");
  try {
    return parsePrecision(info[i].As<Napi::String>().Utf8Value());
  } catch (const CudaError& e) {
    throw Napi::TypeError::New(info.Env(), e.what());
  }
}

// Runs f(ctx) on the device's stream under its lock and waits for it: CUDA failures become JS
// errors naming `what`.
template <typename F>
void onStream(Napi::Env env, int device, const char* what, F&& f) {
  guarded(env, [&] {
    DeviceContext& ctx = context(device);
    std::lock_guard<std::mutex> lock(ctx.mu);
    f(ctx);
    check(cudaStreamSynchronize(ctx.stream), what);
  });
}

}  // namespace moeq::cuda
