// Gated DeltaNet kernels (Qwen3-Next, Qwen3.5 linear attention), prefill:
//   causalConv1dSiluF32: out[b,t,c] = silu(Σ_j w[c,j]·x[b, t−(K−1)+j, c]), zero left padding.
//   gatedDeltaRuleF32:   per (batch, value head), S ← e^g·S; S += k·(β(v − Sᵀk))ᵀ; o = Sᵀq,
//     computed in the chunked (WY) form transformers / FLA use for prefill, one (b, h) pair per
//     thread: inside a chunk A = (I + strict_tril(β K Kᵀ ⊙ e^(Gi−Gj)))⁻¹ by forward substitution,
//     U = A·(βV), W = A·(βK e^G), V' = U − W·S, O = (Q e^G)·S + (Q Kᵀ ⊙ decay)·V', then the state
//     S ← e^(G_last) S + (K e^(G_last − G))ᵀ V'.
//   gatedDeltaRuleRecurrentF32: the token recurrence in f32; *Ref: both definitions in double.
// Layouts (rows b·T + t): q, k [rows, H, dk] (q already scaled), v and out [rows, H, dv],
// g and beta [rows, H].
#include <algorithm>
#include <atomic>
#include <cmath>
#include <string>
#include <thread>
#include <vector>

#include "args.h"
#include "registry.h"

namespace moeq {
namespace {

struct Delta {
  View<float> q, k, v, g, beta, out;
  int64_t B, T, H, dk, dv, chunk;
};

Delta parseDelta(const Napi::CallbackInfo& info, bool withChunk, const char* fn) {
  Napi::Env env = info.Env();
  Delta d;
  d.q = typedArg<float>(info, 0, "q");
  d.k = typedArg<float>(info, 1, "k");
  d.v = typedArg<float>(info, 2, "v");
  d.g = typedArg<float>(info, 3, "g");
  d.beta = typedArg<float>(info, 4, "beta");
  d.out = typedArg<float>(info, 5, "out");
  d.B = intArg(info, 6, "batch");
  d.T = intArg(info, 7, "seqLen");
  d.H = intArg(info, 8, "numHeads");
  d.dk = intArg(info, 9, "kDim");
  d.dv = intArg(info, 10, "vDim");
  d.chunk = withChunk && info.Length() > 11 && info[11].IsNumber() ? intArg(info, 11, "chunk") : 64;
  std::string f(fn);
  require(env, d.B >= 0 && d.T >= 0 && d.H >= 0 && d.dk >= 0 && d.dv >= 0, f + ": negative dimension");
  require(env, d.chunk >= 1, f + ": chunk must be >= 1");
  const size_t rows = static_cast<size_t>(d.B * d.T);
  const size_t H = static_cast<size_t>(d.H);
  require(env, d.q.length == rows * H * d.dk, f + ": q must hold batch·seqLen·numHeads·kDim values");
  require(env, d.k.length == rows * H * d.dk, f + ": k must hold batch·seqLen·numHeads·kDim values");
  require(env, d.v.length == rows * H * d.dv, f + ": v must hold batch·seqLen·numHeads·vDim values");
  require(env, d.out.length == rows * H * d.dv, f + ": out must hold batch·seqLen·numHeads·vDim values");
  require(env, d.g.length == rows * H && d.beta.length == rows * H, f + ": g and beta must hold batch·seqLen·numHeads values");
  return d;
}

template <typename Acc>
void recurrentHead(const Delta& d, int64_t b, int64_t h) {
  const int64_t H = d.H, dk = d.dk, dv = d.dv;
  std::vector<Acc> S(static_cast<size_t>(dk * dv), 0), delta(static_cast<size_t>(dv));
  for (int64_t t = 0; t < d.T; t++) {
    const int64_t r = b * d.T + t;
    const Acc decay = std::exp(static_cast<Acc>(d.g.data[r * H + h]));
    const Acc beta = d.beta.data[r * H + h];
    const float* kt = d.k.data + (r * H + h) * dk;
    const float* qt = d.q.data + (r * H + h) * dk;
    const float* vt = d.v.data + (r * H + h) * dv;
    for (auto& s : S) s *= decay;
    for (int64_t j = 0; j < dv; j++) {
      Acc mem = 0;
      for (int64_t i = 0; i < dk; i++) mem += S[i * dv + j] * kt[i];
      delta[j] = (vt[j] - mem) * beta;
    }
    for (int64_t i = 0; i < dk; i++)
      for (int64_t j = 0; j < dv; j++) S[i * dv + j] += kt[i] * delta[j];
    float* o = d.out.data + (r * H + h) * dv;
    for (int64_t j = 0; j < dv; j++) {
      Acc s = 0;
      for (int64_t i = 0; i < dk; i++) s += S[i * dv + j] * qt[i];
      o[j] = static_cast<float>(s);
    }
  }
}

// Small row-major products for one chunk, C = beta·C + alpha·op(A)·op(B). OpenBLAS (0.3.21 has
// no per-thread thread count) would start its own threads inside each of the pool's threads;
// these loops keep one thread per (sequence, head) and vectorise over the innermost index.
enum class Op { N, T };
void mm(Op ta, Op tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda, const float* B,
        int64_t ldb, float beta, float* C, int64_t ldc) {
  for (int64_t i = 0; i < M; i++) {
    float* c = C + i * ldc;
    if (beta == 0) std::fill(c, c + N, 0.0f);
    else if (beta != 1)
      for (int64_t j = 0; j < N; j++) c[j] *= beta;
    if (tb == Op::N) {
      for (int64_t p = 0; p < K; p++) {
        const float a = alpha * (ta == Op::N ? A[i * lda + p] : A[p * lda + i]);
        if (a == 0) continue;
        const float* b = B + p * ldb;
        for (int64_t j = 0; j < N; j++) c[j] += a * b[j];
      }
    } else {
      for (int64_t j = 0; j < N; j++) {
        const float* b = B + j * ldb;
        float dot = 0;
        if (ta == Op::N) {
          const float* a = A + i * lda;
          for (int64_t p = 0; p < K; p++) dot += a[p] * b[p];
        } else
          for (int64_t p = 0; p < K; p++) dot += A[p * lda + i] * b[p];
        c[j] += alpha * dot;
      }
    }
  }
}

struct ChunkScratch {
  std::vector<float> S, G, A, U, W, Vn, QK, Vb, Kx, Kt;
  ChunkScratch(int64_t C, int64_t dk, int64_t dv)
      : S(dk * dv), G(C), A(C * C), U(C * dv), W(C * dk), Vn(C * dv), QK(C * C), Vb(C * dv), Kx(C * dk), Kt(dk * C) {}
};

// One (sequence, value head) pair (q/k/v rows of a head are strided by numHeads·dim in the
// [rows, H, dim] layouts).
void chunkedHead(const Delta& d, int64_t b, int64_t h, ChunkScratch& s) {
  const int64_t H = d.H, dk = d.dk, dv = d.dv, C = d.chunk;
  const int ldk = static_cast<int>(H * dk), ldv = static_cast<int>(H * dv), iC = static_cast<int>(C);
  const int idk = static_cast<int>(dk), idv = static_cast<int>(dv);
  auto at = [&](int64_t t) { return (b * d.T + t) * H + h; };
  std::fill(s.S.begin(), s.S.end(), 0.0f);
  float* S = s.S.data();
  float* A = s.A.data();
  float* QK = s.QK.data();
  if (dk == 0 || dv == 0) {
    for (int64_t t = 0; t < d.T; t++) std::fill(d.out.data + at(t) * dv, d.out.data + at(t) * dv + dv, 0.0f);
    return;
  }
  for (int64_t c0 = 0; c0 < d.T; c0 += C) {
    const int64_t L = std::min(C, d.T - c0);
    const int iL = static_cast<int>(L);
    const float* Q = d.q.data + at(c0) * dk;
    const float* K = d.k.data + at(c0) * dk;
    const float* V = d.v.data + at(c0) * dv;
    float* O = d.out.data + at(c0) * dv;
    float acc = 0;
    for (int64_t i = 0; i < L; i++) s.G[i] = acc += d.g.data[at(c0 + i)];
    // A = strict_tril(−β_i (k_i·k_j) e^(G_i − G_j)), then the forward substitution, then + I
    // Kᵀ of the chunk, contiguous, so both score products vectorise over keys
    for (int64_t j = 0; j < L; j++)
      for (int64_t e = 0; e < dk; e++) s.Kt[e * C + j] = K[j * ldk + e];
    mm(Op::N, Op::N, iL, iL, idk, 1.0f, K, ldk, s.Kt.data(), iC, 0.0f, A, iC);
    for (int64_t i = 0; i < L; i++) {
      const float bi = d.beta.data[at(c0 + i)];
      for (int64_t j = 0; j < i; j++) A[i * C + j] *= -bi * std::exp(s.G[i] - s.G[j]);
      for (int64_t j = i; j < L; j++) A[i * C + j] = 0;
    }
    // row i uses its own original entries and the finished rows above
    for (int64_t i = 1; i < L; i++)
      for (int64_t j = 0; j < i; j++) {
        float v = A[i * C + j];
        for (int64_t m = j + 1; m < i; m++) v += A[i * C + m] * A[m * C + j];
        A[i * C + j] = v;
      }
    for (int64_t i = 0; i < L; i++) A[i * C + i] = 1;
    // U = A·(βV), W = A·(βK e^G)
    for (int64_t i = 0; i < L; i++) {
      const float bi = d.beta.data[at(c0 + i)];
      const float be = bi * std::exp(s.G[i]);
      for (int64_t e = 0; e < dv; e++) s.Vb[i * dv + e] = bi * V[i * ldv + e];
      for (int64_t e = 0; e < dk; e++) s.Kx[i * dk + e] = be * K[i * ldk + e];
    }
    mm(Op::N, Op::N, iL, idv, iL, 1.0f, A, iC, s.Vb.data(), idv, 0.0f, s.U.data(), idv);
    mm(Op::N, Op::N, iL, idk, iL, 1.0f, A, iC, s.Kx.data(), idk, 0.0f, s.W.data(), idk);
    // V' = U − W·S
    std::copy(s.U.begin(), s.U.begin() + L * dv, s.Vn.begin());
    mm(Op::N, Op::N, iL, idv, idk, -1.0f, s.W.data(), idk, S, idv, 1.0f, s.Vn.data(), idv);
    // O = (Q e^G)·S + (Q Kᵀ ⊙ decay)·V'
    mm(Op::N, Op::N, iL, iL, idk, 1.0f, Q, ldk, s.Kt.data(), iC, 0.0f, QK, iC);
    for (int64_t i = 0; i < L; i++) {
      for (int64_t j = 0; j <= i; j++) QK[i * C + j] *= std::exp(s.G[i] - s.G[j]);
      for (int64_t j = i + 1; j < L; j++) QK[i * C + j] = 0;
      const float eg = std::exp(s.G[i]);
      for (int64_t e = 0; e < dk; e++) s.Kx[i * dk + e] = eg * Q[i * ldk + e];
    }
    mm(Op::N, Op::N, iL, idv, idk, 1.0f, s.Kx.data(), idk, S, idv, 0.0f, O, ldv);
    mm(Op::N, Op::N, iL, idv, iL, 1.0f, QK, iC, s.Vn.data(), idv, 1.0f, O, ldv);
    // S ← e^(G_last)·S + (K e^(G_last − G))ᵀ·V'
    const float gl = s.G[L - 1];
    const float el = std::exp(gl);
    for (int64_t i = 0; i < dk * dv; i++) S[i] *= el;
    for (int64_t j = 0; j < L; j++) {
      const float f = std::exp(gl - s.G[j]);
      for (int64_t e = 0; e < dk; e++) s.Kx[j * dk + e] = f * K[j * ldk + e];
    }
    mm(Op::T, Op::N, idk, idv, iL, 1.0f, s.Kx.data(), idk, s.Vn.data(), idv, 1.0f, S, idv);
  }
}

void chunkedAll(const Delta& d) {
  const int64_t jobs = d.B * d.H;
  const int64_t nt = std::max<int64_t>(1, std::min<int64_t>(jobs, std::thread::hardware_concurrency()));
  std::atomic<int64_t> next{0};
  auto worker = [&] {
    ChunkScratch s(d.chunk, d.dk, d.dv);
    for (int64_t j; (j = next.fetch_add(1)) < jobs;) chunkedHead(d, j / d.H, j % d.H, s);
  };
  std::vector<std::thread> pool;
  for (int64_t t = 1; t < nt; t++) pool.emplace_back(worker);
  worker();
  for (auto& t : pool) t.join();
}

Napi::Value GatedDeltaRuleF32(const Napi::CallbackInfo& info) {
  Delta d = parseDelta(info, true, "gatedDeltaRuleF32");
  std::vector<Napi::Value> keep = {info[0], info[1], info[2], info[3], info[4], info[5]};
  return runAsync(info.Env(), [d] { chunkedAll(d); }, keep);
}

Napi::Value GatedDeltaRuleRecurrentF32(const Napi::CallbackInfo& info) {
  Delta d = parseDelta(info, false, "gatedDeltaRuleRecurrentF32");
  for (int64_t b = 0; b < d.B; b++)
    for (int64_t h = 0; h < d.H; h++) recurrentHead<float>(d, b, h);
  return info.Env().Undefined();
}

Napi::Value GatedDeltaRuleF32Ref(const Napi::CallbackInfo& info) {
  Delta d = parseDelta(info, false, "gatedDeltaRuleF32Ref");
  for (int64_t b = 0; b < d.B; b++)
    for (int64_t h = 0; h < d.H; h++) recurrentHead<double>(d, b, h);
  return info.Env().Undefined();
}

template <bool REF>
Napi::Value CausalConv1dSilu(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  View<float> x = typedArg<float>(info, 0, "x");
  View<float> w = typedArg<float>(info, 1, "weight");
  View<float> out = typedArg<float>(info, 2, "out");
  const int64_t B = intArg(info, 3, "batch"), T = intArg(info, 4, "seqLen"), Cn = intArg(info, 5, "channels"),
                K = intArg(info, 6, "kernel");
  const std::string f = REF ? "causalConv1dSiluF32Ref" : "causalConv1dSiluF32";
  require(env, B >= 0 && T >= 0 && Cn >= 0 && K >= 1, f + ": dimensions must be >= 0 and kernel >= 1");
  const size_t n = static_cast<size_t>(B * T * Cn);
  require(env, x.length == n && out.length == n, f + ": x and out must hold batch·seqLen·channels values");
  require(env, w.length == static_cast<size_t>(Cn * K), f + ": weight must hold channels·kernel values");
  require(env, x.data != out.data, f + ": out must not alias x");
  for (int64_t b = 0; b < B; b++)
    for (int64_t t = 0; t < T; t++) {
      float* o = out.data + (b * T + t) * Cn;
      for (int64_t c = 0; c < Cn; c++) {
        double sd = 0;
        float sf = 0;
        for (int64_t j = 0; j < K; j++) {
          const int64_t src = t - (K - 1) + j;
          if (src < 0) continue;
          const float xv = x.data[(b * T + src) * Cn + c];
          if (REF) sd += static_cast<double>(w.data[c * K + j]) * xv;
          else sf += w.data[c * K + j] * xv;
        }
        if (REF) o[c] = static_cast<float>(sd / (1.0 + std::exp(-sd)));
        else o[c] = sf / (1.0f + std::exp(-sf));
      }
    }
  return env.Undefined();
}

void exportHardDeltaNet(Napi::Env env, Napi::Object e) {
  e.Set("gatedDeltaRuleF32", Napi::Function::New(env, GatedDeltaRuleF32, "gatedDeltaRuleF32"));
  e.Set("gatedDeltaRuleRecurrentF32", Napi::Function::New(env, GatedDeltaRuleRecurrentF32, "gatedDeltaRuleRecurrentF32"));
  e.Set("gatedDeltaRuleF32Ref", Napi::Function::New(env, GatedDeltaRuleF32Ref, "gatedDeltaRuleF32Ref"));
  e.Set("causalConv1dSiluF32", Napi::Function::New(env, CausalConv1dSilu<false>, "causalConv1dSiluF32"));
  e.Set("causalConv1dSiluF32Ref", Napi::Function::New(env, CausalConv1dSilu<true>, "causalConv1dSiluF32Ref"));
}

}  // namespace

MOEQ_EXPORTS(exportHardDeltaNet);

}  // namespace moeq
