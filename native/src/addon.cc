#include "registry.h"

namespace moeq {
std::vector<ExportFn>& exportRegistry() {
  static std::vector<ExportFn> fns;
  return fns;
}
}  // namespace moeq

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  for (auto fn : moeq::exportRegistry()) fn(env, exports);
#ifdef MOEQ_WITH_CUDA
  exports.Set("withCuda", Napi::Boolean::New(env, true));
#else
  exports.Set("withCuda", Napi::Boolean::New(env, false));
#endif
  return exports;
}

NODE_API_MODULE(moeq_native, Init)
