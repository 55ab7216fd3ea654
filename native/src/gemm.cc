// f32 GEMM, row-major: C[m,n] = alpha * op(A)[m,k] · op(B)[k,n] + beta * C.
// op(A) = A ([m,k]) or Aᵀ (A stored [k,m]); likewise B ([k,n] or stored [n,k]).
// The optimised path is OpenBLAS's sgemm; gemmF32Ref is the plain reference it is tested against.
#include <cblas.h>

#include "args.h"
#include "registry.h"

namespace moeq {

void gemmRef(const float* A, const float* B, float* C, int64_t m, int64_t n, int64_t k, bool ta,
             bool tb, float alpha, float beta) {
  for (int64_t i = 0; i < m; i++)
    for (int64_t j = 0; j < n; j++) {
      double acc = 0;
      for (int64_t p = 0; p < k; p++) {
        float a = ta ? A[p * m + i] : A[i * k + p];
        float b = tb ? B[j * k + p] : B[p * n + j];
        acc += static_cast<double>(a) * b;
      }
      float prev = beta == 0.0f ? 0.0f : beta * C[i * n + j];
      C[i * n + j] = static_cast<float>(alpha * acc) + prev;
    }
}

void gemmBlas(const float* A, const float* B, float* C, int64_t m, int64_t n, int64_t k, bool ta,
              bool tb, float alpha, float beta) {
  if (m == 0 || n == 0) return;
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
              static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), alpha, A,
              ta ? static_cast<int>(m) : static_cast<int>(k), B,
              tb ? static_cast<int>(k) : static_cast<int>(n), beta, C, static_cast<int>(n));
}

namespace {

struct GemmArgs {
  View<float> a, b, c;
  int64_t m, n, k;
  bool ta, tb;
  float alpha, beta;
};

GemmArgs parseGemm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  GemmArgs g;
  g.a = typedArg<float>(info, 0, "a");
  g.b = typedArg<float>(info, 1, "b");
  g.c = typedArg<float>(info, 2, "c");
  g.m = intArg(info, 3, "m");
  g.n = intArg(info, 4, "n");
  g.k = intArg(info, 5, "k");
  g.ta = boolArg(info, 6, false);
  g.tb = boolArg(info, 7, false);
  g.alpha = info.Length() > 8 && info[8].IsNumber() ? static_cast<float>(numArg(info, 8, "alpha")) : 1.0f;
  g.beta = info.Length() > 9 && info[9].IsNumber() ? static_cast<float>(numArg(info, 9, "beta")) : 0.0f;
  require(env, g.m >= 0 && g.n >= 0 && g.k >= 0, "gemm: negative dimension");
  require(env, g.a.length >= static_cast<size_t>(g.m * g.k), "gemm: a is smaller than m*k");
  require(env, g.b.length >= static_cast<size_t>(g.k * g.n), "gemm: b is smaller than k*n");
  require(env, g.c.length >= static_cast<size_t>(g.m * g.n), "gemm: c is smaller than m*n");
  require(env, g.m < (1LL << 31) && g.n < (1LL << 31) && g.k < (1LL << 31), "gemm: dimension too large");
  return g;
}

Napi::Value GemmF32(const Napi::CallbackInfo& info) {
  GemmArgs g = parseGemm(info);
  return runAsync(info.Env(), [g] { gemmBlas(g.a.data, g.b.data, g.c.data, g.m, g.n, g.k, g.ta, g.tb, g.alpha, g.beta); },
                  {info[0], info[1], info[2]});
}

Napi::Value GemmF32Sync(const Napi::CallbackInfo& info) {
  GemmArgs g = parseGemm(info);
  gemmBlas(g.a.data, g.b.data, g.c.data, g.m, g.n, g.k, g.ta, g.tb, g.alpha, g.beta);
  return info.Env().Undefined();
}

Napi::Value GemmF32Ref(const Napi::CallbackInfo& info) {
  GemmArgs g = parseGemm(info);
  gemmRef(g.a.data, g.b.data, g.c.data, g.m, g.n, g.k, g.ta, g.tb, g.alpha, g.beta);
  return info.Env().Undefined();
}

Napi::Value BlasThreads(const Napi::CallbackInfo& info) {
  if (info.Length() > 0 && info[0].IsNumber()) openblas_set_num_threads(static_cast<int>(intArg(info, 0, "threads")));
  return Napi::Number::New(info.Env(), openblas_get_num_threads());
}

void exportGemm(Napi::Env env, Napi::Object exports) {
  exports.Set("gemmF32", Napi::Function::New(env, GemmF32, "gemmF32"));
  exports.Set("gemmF32Sync", Napi::Function::New(env, GemmF32Sync, "gemmF32Sync"));
  exports.Set("gemmF32Ref", Napi::Function::New(env, GemmF32Ref, "gemmF32Ref"));
  exports.Set("blasThreads", Napi::Function::New(env, BlasThreads, "blasThreads"));
}
MOEQ_EXPORTS(exportGemm);

}  // namespace
}  // namespace moeq
