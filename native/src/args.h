// Argument helpers shared by kernel bindings: typed views over JS typed arrays that keep the
// backing buffer alive while a kernel runs on a worker thread, and a promise-returning worker.
#pragma once
#include <napi.h>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace moeq {

template <typename T>
struct View {
  T* data = nullptr;
  size_t length = 0;  // elements
};

template <typename T>
inline napi_typedarray_type typedArrayTypeFor();
template <> inline napi_typedarray_type typedArrayTypeFor<float>() { return napi_float32_array; }
template <> inline napi_typedarray_type typedArrayTypeFor<double>() { return napi_float64_array; }
template <> inline napi_typedarray_type typedArrayTypeFor<int32_t>() { return napi_int32_array; }
template <> inline napi_typedarray_type typedArrayTypeFor<uint32_t>() { return napi_uint32_array; }
template <> inline napi_typedarray_type typedArrayTypeFor<uint8_t>() { return napi_uint8_array; }
template <> inline napi_typedarray_type typedArrayTypeFor<int8_t>() { return napi_int8_array; }
template <> inline napi_typedarray_type typedArrayTypeFor<uint16_t>() { return napi_uint16_array; }
template <> inline napi_typedarray_type typedArrayTypeFor<int16_t>() { return napi_int16_array; }
template <> inline napi_typedarray_type typedArrayTypeFor<int64_t>() { return napi_bigint64_array; }

// A typed array argument of exactly element type T (or a Uint8Array reinterpreted when
// allowBytes is set and its byte length is a multiple of sizeof(T)).
template <typename T>
View<T> typedArg(const Napi::CallbackInfo& info, size_t i, const char* name, bool allowBytes = false) {
  Napi::Env env = info.Env();
  if (i >= info.Length() || !info[i].IsTypedArray())
    throw Napi::TypeError::New(env, std::string(name) + ": expected a typed array");
  auto ta = info[i].As<Napi::TypedArray>();
  auto type = ta.TypedArrayType();
  uint8_t* base = static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
  if (type == typedArrayTypeFor<T>()) return {reinterpret_cast<T*>(base), ta.ElementLength()};
  if (allowBytes && type == napi_uint8_array && ta.ByteLength() % sizeof(T) == 0 &&
      reinterpret_cast<uintptr_t>(base) % alignof(T) == 0)
    return {reinterpret_cast<T*>(base), ta.ByteLength() / sizeof(T)};
  throw Napi::TypeError::New(env, std::string(name) + ": wrong typed array element type");
}

inline int64_t intArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (i >= info.Length() || !info[i].IsNumber())
    throw Napi::TypeError::New(info.Env(), std::string(name) + ": expected a number");
  double v = info[i].As<Napi::Number>().DoubleValue();
  if (v != static_cast<double>(static_cast<int64_t>(v)))
    throw Napi::TypeError::New(info.Env(), std::string(name) + ": expected an integer");
  return static_cast<int64_t>(v);
}

inline double numArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (i >= info.Length() || !info[i].IsNumber())
    throw Napi::TypeError::New(info.Env(), std::string(name) + ": expected a number");
  return info[i].As<Napi::Number>().DoubleValue();
}

inline bool boolArg(const Napi::CallbackInfo& info, size_t i, bool dflt) {
  if (i >= info.Length() || info[i].IsUndefined()) return dflt;
  return info[i].ToBoolean().Value();
}

inline void require(Napi::Env env, bool ok, const std::string& msg) {
  if (!ok) throw Napi::RangeError::New(env, msg);
}

// Runs `work` on the libuv pool and resolves a promise with `done(env)`. Every JS value
// listed in `keep` (the typed arrays the work reads/writes) is pinned until completion.
class PromiseWorker : public Napi::AsyncWorker {
 public:
  PromiseWorker(Napi::Env env, std::function<void()> work,
                std::function<Napi::Value(Napi::Env)> done, const std::vector<Napi::Value>& keep)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), work_(std::move(work)),
        done_(std::move(done)) {
    for (auto& v : keep) refs_.push_back(Napi::Persistent(v.As<Napi::Object>()));
  }
  Napi::Promise promise() { return deferred_.Promise(); }
  void Execute() override {
    try {
      work_();
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }
  void OnOK() override {
    Napi::Env env = Env();
    deferred_.Resolve(done_ ? done_(env) : env.Undefined());
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::function<void()> work_;
  std::function<Napi::Value(Napi::Env)> done_;
  std::vector<Napi::ObjectReference> refs_;
};

inline Napi::Promise runAsync(Napi::Env env, std::function<void()> work,
                              const std::vector<Napi::Value>& keep,
                              std::function<Napi::Value(Napi::Env)> done = nullptr) {
  auto* w = new PromiseWorker(env, std::move(work), std::move(done), keep);
  auto p = w->promise();
  w->Queue();
  return p;
}

}  // namespace moeq
