// GPTQ (Frantar et al. 2022) as the oracle ../shared/device/oracles/gptq_ref.py does it (the
// AutoGPTQ / GPTQModel loop with static_groups = False), in f64 so its codes are reproduced:
//   dead columns (H_jj = 0): H_jj = 1, W[:, j] = 0;  act-order: columns sorted by diag(H) desc;
//   H += damp·mean(diag H)·I;  U = chol(H⁻¹) upper (LAPACK dpotrf / dpotri / dpotrf);
//   per block of `blockSize` columns, column by column: quantize, error e = (w − q)/U_ii,
//   propagate e·U_i,j to the block's later columns; after the block, one GEMM carries the block's
//   errors to all later columns. A group's scale/zero come from the weights as they were at the
//   start of the block that holds the group's first column ("block-start weights").
// Each group's scale is rounded to the dtype the checkpoint stores it in (f32, bf16 or f16, round to
// nearest even through f32 as a PyTorch cast does) before its zero point, codes, dequant and error
// are computed, so that a reader decoding f32((code − zero)·stored scale) gets our dequant exactly.
// Within a block the rows are independent, so each pool thread walks whole rows through the block
// (a row's block segment stays in L1); the cross-block update is a dgemm. gptqRef is a scalar,
// unblocked reference (own Cholesky, error propagated to every later column at once).
#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "args.h"
#include "gemm_parallel.h"
#include "gemm_scratch.h"
#include "registry.h"

extern "C" {
// LAPACK (Fortran ABI; the trailing size_t is gfortran's hidden length of the `uplo` string).
void dpotrf_(const char* uplo, const int* n, double* a, const int* lda, int* info, size_t uploLen);
void dpotri_(const char* uplo, const int* n, double* a, const int* lda, int* info, size_t uploLen);
}

namespace moeq {
namespace {

enum class ScaleDtype { F32, BF16, F16 };

struct GptqSpec {
  ScaleDtype scaleDtype = ScaleDtype::F32;
  int bits = 4;
  int64_t group = 128;  // -1 = one group per row
  bool sym = true, actOrder = false;
  double damp = 0.01;
  int64_t blockSize = 128;
};

struct GptqIO {
  const float* w = nullptr;
  const float* hf = nullptr;  // one of hf / hd
  const double* hd = nullptr;
  int64_t rows = 0, cols = 0;
  uint8_t* codes = nullptr;  // [rows, cols], original column order
  float* scales = nullptr;   // [rows, nGroups], quantization order
  int32_t* zeros = nullptr;  // [rows, nGroups]
  int32_t* gIdx = nullptr;   // [cols]
  int32_t* perm = nullptr;   // [cols]
  float* dequant = nullptr;  // [rows, cols]
  double loss = 0;
};

inline int64_t groupOf(const GptqSpec& s, int64_t cols) { return s.group == -1 ? cols : s.group; }
inline int64_t nGroups(const GptqSpec& s, int64_t cols) {
  int64_t g = groupOf(s, cols);
  return cols == 0 ? 0 : (cols + g - 1) / g;
}

// torch.round rounds half to even; nearbyint does under the default FE_TONEAREST mode.
inline double roundEven(double v) { return std::nearbyint(v); }

const char* dtypeName(ScaleDtype d) { return d == ScaleDtype::F32 ? "f32" : d == ScaleDtype::BF16 ? "bf16" : "f16"; }

// A positive f64 scale as the stored dtype holds it: f64 → f32 (RNE), then, for bf16 / f16, RNE to
// 8 / 11 significant bits on that dtype's grid (subnormal quantum 2^-133 / 2^-24). A scale that
// underflows becomes the dtype's smallest positive value, so codes stay finite; one that
// overflows cannot be stored at all.
double roundScale(double scale, ScaleDtype d) {
  const float f = static_cast<float>(scale);
  double v = f;
  if (d != ScaleDtype::F32 && v > 0 && std::isfinite(v)) {
    int ex = 0;
    std::frexp(v, &ex);  // v = m·2^ex, m ∈ [0.5, 1)
    const int bits = d == ScaleDtype::BF16 ? 8 : 11;
    const int minExp = d == ScaleDtype::BF16 ? -133 : -24;
    const double q = std::ldexp(1.0, std::max(ex - bits, minExp));
    v = std::nearbyint(v / q) * q;  // exact: v / q and the product only shift exponents
  }
  const double maxFinite = d == ScaleDtype::F32   ? double(std::numeric_limits<float>::max())
                           : d == ScaleDtype::BF16 ? std::ldexp(255.0, 120)  // 0x7F7F
                                                   : 65504.0;
  if (!(v <= maxFinite))
    throw std::runtime_error("group scale " + std::to_string(scale) + " overflows " + dtypeName(d) +
                             " (weights too large to store their scale in this dtype)");
  if (v == 0) v = std::ldexp(1.0, d == ScaleDtype::F32 ? -149 : d == ScaleDtype::BF16 ? -133 : -24);
  return v;
}

// The oracle's find_params on one row's group values, with the scale rounded to its stored dtype
// first (the zero point is derived from that scale, and clamped: a scale rounded down can push
// −xmin/scale just past maxq).
inline void findParams(const double* x, int64_t len, int bits, bool sym, ScaleDtype sd, double& scale, double& zero) {
  const double maxq = std::ldexp(1.0, bits) - 1;
  double xmin = 0, xmax = 0;
  for (int64_t i = 0; i < len; i++) {
    xmin = std::min(xmin, x[i]);
    xmax = std::max(xmax, x[i]);
  }
  if (sym) {
    xmax = std::max(std::fabs(xmin), xmax);
    xmin = -xmax;
  }
  if (xmin == 0 && xmax == 0) {
    xmin = -1;
    xmax = 1;
  }
  scale = roundScale((xmax - xmin) / maxq, sd);
  zero = sym ? (maxq + 1) / 2 : std::clamp(roundEven(-xmin / scale), 0.0, maxq);
}

inline double quantCode(double x, double scale, double zero, double maxq) {
  return std::clamp(roundEven(x / scale) + zero, 0.0, maxq);
}

// Shared preprocessing: f64 copies, dead columns, act-order permutation, damping.
// Returns W [rows, n] and H [n, n] in quantization (permuted) order; fills io.perm.
void prepare(const GptqIO& io, const GptqSpec& s, double* W, double* H) {
  const int64_t rows = io.rows, n = io.cols;
  auto h = [&](int64_t i, int64_t j) { return io.hd ? io.hd[i * n + j] : static_cast<double>(io.hf[i * n + j]); };
  std::vector<double> diag(static_cast<size_t>(n));
  std::vector<char> dead(static_cast<size_t>(n));
  for (int64_t j = 0; j < n; j++) {
    diag[j] = h(j, j);
    dead[j] = diag[j] == 0;
    if (dead[j]) diag[j] = 1;
  }
  std::vector<int32_t> perm(static_cast<size_t>(n));
  std::iota(perm.begin(), perm.end(), 0);
  if (s.actOrder)
    std::stable_sort(perm.begin(), perm.end(), [&](int32_t a, int32_t b) { return diag[a] > diag[b]; });
  std::copy(perm.begin(), perm.end(), io.perm);
  // W and H are gathered straight into quantization order (one pass each)
  parallelFor(rows, [&](int64_t b, int64_t e, size_t) {
    for (int64_t r = b; r < e; r++) {
      const float* src = io.w + r * n;
      double* dst = W + r * n;
      for (int64_t j = 0; j < n; j++) dst[j] = dead[perm[j]] ? 0.0 : static_cast<double>(src[perm[j]]);
    }
  }, 64);
  double mean = 0;
  for (int64_t j = 0; j < n; j++) mean += diag[perm[j]];
  mean /= static_cast<double>(n);
  for (int64_t i = 0; i < n; i++) {
    for (int64_t j = 0; j < n; j++) H[i * n + j] = h(perm[i], perm[j]);
    H[i * n + i] = diag[perm[i]] + s.damp * mean;
  }
}

// H ← upper Cholesky factor of H⁻¹ (row-major), as torch.linalg.cholesky(cholesky_inverse(
// cholesky(H)), upper=True). A symmetric matrix reads the same in both majors; Fortran's 'L'
// factor of the (symmetric) input, read row-major, is the upper factor we need.
void inverseCholeskyUpper(double* H, int64_t n) {
  int nn = static_cast<int>(n), info = 0;
  dpotrf_("L", &nn, H, &nn, &info, 1);
  if (info > 0)
    throw std::runtime_error("Hessian is not positive definite after damping (leading minor " + std::to_string(info) +
                             "); raise damp or check the calibration data");
  dpotri_("L", &nn, H, &nn, &info, 1);
  if (info != 0) throw std::runtime_error("Hessian inverse failed (LAPACK dpotri info " + std::to_string(info) + ")");
  // dpotri filled Fortran's lower triangle = row-major upper; mirror it to the other half.
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = i + 1; j < n; j++) H[j * n + i] = H[i * n + j];
  dpotrf_("L", &nn, H, &nn, &info, 1);
  if (info != 0) throw std::runtime_error("Cholesky of the inverse Hessian failed (leading minor " + std::to_string(info) + ")");
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < i; j++) H[i * n + j] = 0;
}

// g_idx, and the proxy loss tr((W−Q)·H·(W−Q)ᵀ) with the caller's W and H (dead columns included,
// as the oracle does) and the f32 dequant (the oracle's Q.float()). The blocked path works a chunk
// of rows D at a time: up to kSyrkMaxCols columns it forms G = DᵀD with dsyrk (half the flops of
// D·H) and sums H_ij·G_ij; wider weights use D·H by dgemm, whose scratch is chunk × cols instead
// of cols².
constexpr int64_t kSyrkMaxCols = 2048;

void finish(GptqIO& io, const GptqSpec& s, bool useBlas) {
  const int64_t rows = io.rows, n = io.cols, g = groupOf(s, n);
  for (int64_t j = 0; j < n; j++) io.gIdx[io.perm[j]] = static_cast<int32_t>(j / g);
  auto h = [&](int64_t i, int64_t j) { return io.hd ? io.hd[i * n + j] : static_cast<double>(io.hf[i * n + j]); };
  double loss = 0;
  if (useBlas) {
    Scratch<double> ds, gs, hs;
    const int64_t chunk = std::min<int64_t>(rows, 512);
    const bool syrk = n <= kSyrkMaxCols;
    double* D = ds.get(size_t(chunk * n));
    double* G = gs.get(size_t(syrk ? n * n : chunk * n));
    const double* H = io.hd;
    if (!syrk && !H) {
      double* hd = hs.get(size_t(n * n));
      for (int64_t i = 0; i < n * n; i++) hd[i] = io.hf[i];
      H = hd;
    }
    for (int64_t r0 = 0; r0 < rows; r0 += chunk) {
      const int64_t cr = std::min(chunk, rows - r0);
      for (int64_t i = 0; i < cr * n; i++)
        D[i] = static_cast<double>(io.w[r0 * n + i]) - static_cast<double>(io.dequant[r0 * n + i]);
      if (syrk) {
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, int(n), int(cr), 1.0, D, int(n), r0 == 0 ? 0.0 : 1.0, G, int(n));
      } else {
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(cr), int(n), int(n), 1.0, D, int(n), H, int(n), 0.0, G,
                    int(n));
        for (int64_t i = 0; i < cr * n; i++) loss += D[i] * G[i];
      }
    }
    if (syrk)
      for (int64_t i = 0; i < n; i++) {
        loss += h(i, i) * G[i * n + i];
        for (int64_t j = i + 1; j < n; j++) loss += (h(i, j) + h(j, i)) * G[i * n + j];
      }
  } else {
    std::vector<double> d(static_cast<size_t>(n));
    for (int64_t r = 0; r < rows; r++) {
      for (int64_t j = 0; j < n; j++) d[j] = static_cast<double>(io.w[r * n + j]) - static_cast<double>(io.dequant[r * n + j]);
      for (int64_t i = 0; i < n; i++) {
        double acc = 0;
        for (int64_t j = 0; j < n; j++) acc += h(i, j) * d[j];
        loss += d[i] * acc;
      }
    }
  }
  io.loss = loss;
}

// Rows [rb, re) through columns [i1, i2): quantize each column, propagate its error to the
// block's later columns, record the scaled errors E for the cross-block GEMM. Cloned for AVX2
// (wider vectors for the error update; no FMA, whose single rounding would drift from the
// oracle's multiply-then-subtract).
__attribute__((target_clones("avx2", "default")))
void quantizeBlockRows(GptqIO& io, const GptqSpec& s, const double* W, const double* U, double* E, double* params,
                       int64_t i1, int64_t i2, int64_t rb, int64_t re, int64_t g, int64_t nG, double maxq) {
  const int64_t n = io.cols, bs = i2 - i1;
  const int32_t* perm = io.perm;
  std::vector<double> w1(static_cast<size_t>(bs));
  for (int64_t r = rb; r < re; r++) {
    const double* wRow = W + r * n;  // block-start weights (W[:, i1:] is untouched in-block)
    std::copy(wRow + i1, wRow + i2, w1.begin());
    // a group that began in an earlier block keeps its f64 parameters across blocks
    double& scale = params[2 * r];
    double& zero = params[2 * r + 1];
    uint8_t* codeRow = io.codes + r * n;
    float* qRow = io.dequant + r * n;
    double* eRow = E + r * bs;
    for (int64_t i = 0; i < bs; i++) {
      const int64_t col = i1 + i;
      if (col % g == 0) {
        findParams(wRow + col, std::min(g, n - col), s.bits, s.sym, s.scaleDtype, scale, zero);
        io.scales[r * nG + col / g] = static_cast<float>(scale);
        io.zeros[r * nG + col / g] = static_cast<int32_t>(zero);
      }
      const double x = w1[i];
      const double code = quantCode(x, scale, zero, maxq);
      const double q = scale * (code - zero);
      codeRow[perm[col]] = static_cast<uint8_t>(code);
      qRow[perm[col]] = static_cast<float>(q);
      const double e = (x - q) / U[col * n + col];
      const double* urow = U + col * n + i1;
      double* w = w1.data();
      for (int64_t j = i + 1; j < bs; j++) w[j] -= e * urow[j];
      eRow[i] = e;
    }
  }
}

void gptqBlocked(GptqIO& io, const GptqSpec& s) {
  const int64_t rows = io.rows, n = io.cols, g = groupOf(s, n), nG = nGroups(s, n);
  const double maxq = std::ldexp(1.0, s.bits) - 1;
  Scratch<double> ws, us, es, ps;
  double* W = ws.get(size_t(rows * n));
  double* U = us.get(size_t(n * n));
  prepare(io, s, W, U);
  inverseCholeskyUpper(U, n);
  const int64_t bsMax = std::min(s.blockSize, n);
  double* E = es.get(size_t(rows * bsMax));
  double* params = ps.get(size_t(2 * rows));  // per row: scale, zero of the current group (f64)
  for (int64_t i1 = 0; i1 < n; i1 += s.blockSize) {
    const int64_t i2 = std::min(i1 + s.blockSize, n), bs = i2 - i1;
    parallelFor(rows, [&](int64_t rb, int64_t re, size_t) {
      quantizeBlockRows(io, s, W, U, E, params, i1, i2, rb, re, g, nG, maxq);
    }, 8);
    if (i2 < n)
      cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(rows), int(n - i2), int(bs), -1.0, E, int(bs),
                  U + i1 * n + i2, int(n), 1.0, W + i2, int(n));
  }
  finish(io, s, true);
}

void gptqRef(GptqIO& io, const GptqSpec& s) {
  const int64_t rows = io.rows, n = io.cols, g = groupOf(s, n), nG = nGroups(s, n);
  const double maxq = std::ldexp(1.0, s.bits) - 1;
  std::vector<double> W(static_cast<size_t>(rows * n)), H(static_cast<size_t>(n * n));
  prepare(io, s, W.data(), H.data());
  // scalar Cholesky H = L·Lᵀ, inverse via L⁻¹, then the upper factor of H⁻¹
  std::vector<double> L(static_cast<size_t>(n * n), 0.0);
  for (int64_t j = 0; j < n; j++) {
    double d = H[j * n + j];
    for (int64_t k = 0; k < j; k++) d -= L[j * n + k] * L[j * n + k];
    if (!(d > 0)) throw std::runtime_error("Hessian is not positive definite after damping");
    L[j * n + j] = std::sqrt(d);
    for (int64_t i = j + 1; i < n; i++) {
      double v = H[i * n + j];
      for (int64_t k = 0; k < j; k++) v -= L[i * n + k] * L[j * n + k];
      L[i * n + j] = v / L[j * n + j];
    }
  }
  std::vector<double> Li(static_cast<size_t>(n * n), 0.0);  // L⁻¹ (lower)
  for (int64_t c = 0; c < n; c++)
    for (int64_t i = c; i < n; i++) {
      double v = i == c ? 1.0 : 0.0;
      for (int64_t k = c; k < i; k++) v -= L[i * n + k] * Li[k * n + c];
      Li[i * n + c] = v / L[i * n + i];
    }
  std::vector<double> Hinv(static_cast<size_t>(n * n));  // L⁻ᵀ·L⁻¹
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < n; j++) {
      double acc = 0;
      for (int64_t k = std::max(i, j); k < n; k++) acc += Li[k * n + i] * Li[k * n + j];
      Hinv[i * n + j] = acc;
    }
  std::vector<double> U(static_cast<size_t>(n * n), 0.0);  // Hinv = Uᵀ·U
  for (int64_t i = 0; i < n; i++) {
    double d = Hinv[i * n + i];
    for (int64_t k = 0; k < i; k++) d -= U[k * n + i] * U[k * n + i];
    U[i * n + i] = std::sqrt(d);
    for (int64_t j = i + 1; j < n; j++) {
      double v = Hinv[i * n + j];
      for (int64_t k = 0; k < i; k++) v -= U[k * n + i] * U[k * n + j];
      U[i * n + j] = v / U[i * n + i];
    }
  }
  std::vector<double> snapshot(W);
  std::vector<double> scale(static_cast<size_t>(rows)), zero(static_cast<size_t>(rows));
  for (int64_t col = 0; col < n; col++) {
    if (col % s.blockSize == 0) snapshot = W;
    for (int64_t r = 0; r < rows; r++) {
      if (col % g == 0) {
        findParams(snapshot.data() + r * n + col, std::min(g, n - col), s.bits, s.sym, s.scaleDtype, scale[r], zero[r]);
        io.scales[r * nG + col / g] = static_cast<float>(scale[r]);
        io.zeros[r * nG + col / g] = static_cast<int32_t>(zero[r]);
      }
      double x = W[r * n + col];
      double code = quantCode(x, scale[r], zero[r], maxq);
      double q = scale[r] * (code - zero[r]);
      io.codes[r * n + io.perm[col]] = static_cast<uint8_t>(code);
      io.dequant[r * n + io.perm[col]] = static_cast<float>(q);
      double e = (x - q) / U[col * n + col];
      for (int64_t j = col + 1; j < n; j++) W[r * n + j] -= e * U[col * n + j];
    }
  }
  finish(io, s, false);
}

// (w: Float32Array, rows, cols, h: Float32Array|Float64Array, bits, groupSize, sym, actOrder, damp, blockSize,
//  scaleDtype?: "f32" | "bf16" | "f16")
struct GptqCall {
  GptqIO io;
  GptqSpec spec;
  Napi::Object result;
};

GptqCall parseGptq(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  GptqCall c;
  auto w = typedArg<float>(info, 0, "gptq: w");
  c.io.rows = intArg(info, 1, "gptq: rows");
  c.io.cols = intArg(info, 2, "gptq: cols");
  const int64_t rows = c.io.rows, n = c.io.cols;
  require(env, rows > 0 && n > 0 && rows < (int64_t(1) << 31) && n < 65536, "gptq: rows/cols out of range");
  require(env, w.length >= size_t(rows * n), "gptq: w is smaller than rows*cols");
  c.io.w = w.data;
  if (!info[3].IsTypedArray()) throw Napi::TypeError::New(env, "gptq: h must be a Float32Array or Float64Array");
  size_t hLen;
  if (info[3].As<Napi::TypedArray>().TypedArrayType() == napi_float64_array) {
    auto h = typedArg<double>(info, 3, "gptq: h");
    c.io.hd = h.data;
    hLen = h.length;
  } else {
    auto h = typedArg<float>(info, 3, "gptq: h (Float32Array or Float64Array)");
    c.io.hf = h.data;
    hLen = h.length;
  }
  require(env, hLen >= size_t(n * n), "gptq: h is smaller than cols*cols");
  c.spec.bits = static_cast<int>(intArg(info, 4, "gptq: bits"));
  c.spec.group = intArg(info, 5, "gptq: groupSize");
  c.spec.sym = boolArg(info, 6, true);
  c.spec.actOrder = boolArg(info, 7, false);
  c.spec.damp = numArg(info, 8, "gptq: damp");
  c.spec.blockSize = intArg(info, 9, "gptq: blockSize");
  if (info.Length() > 10 && !info[10].IsUndefined()) {
    if (!info[10].IsString()) throw Napi::TypeError::New(env, "gptq: scaleDtype must be \"f32\", \"bf16\" or \"f16\"");
    const std::string sd = info[10].As<Napi::String>().Utf8Value();
    if (sd == "f32") c.spec.scaleDtype = ScaleDtype::F32;
    else if (sd == "bf16") c.spec.scaleDtype = ScaleDtype::BF16;
    else if (sd == "f16") c.spec.scaleDtype = ScaleDtype::F16;
    else throw Napi::TypeError::New(env, "gptq: scaleDtype must be \"f32\", \"bf16\" or \"f16\", got \"" + sd + "\"");
  }
  require(env, c.spec.bits >= 2 && c.spec.bits <= 8, "gptq: bits must be 2..8, got " + std::to_string(c.spec.bits));
  require(env, c.spec.group == -1 || c.spec.group > 0, "gptq: groupSize must be -1 or positive");
  require(env, c.spec.blockSize > 0, "gptq: blockSize must be positive");
  require(env, std::isfinite(c.spec.damp) && c.spec.damp >= 0, "gptq: damp must be finite and >= 0");
  for (int64_t i = 0; i < rows * n; i++)
    if (!std::isfinite(w.data[i]))
      throw Napi::RangeError::New(env, "gptq: w[" + std::to_string(i / n) + "," + std::to_string(i % n) + "] is not finite");
  for (int64_t i = 0; i < n * n; i++) {
    double v = c.io.hd ? c.io.hd[i] : c.io.hf[i];
    if (!std::isfinite(v))
      throw Napi::RangeError::New(env, "gptq: h[" + std::to_string(i / n) + "," + std::to_string(i % n) + "] is not finite");
  }
  const int64_t nG = nGroups(c.spec, n);
  auto codes = Napi::Uint8Array::New(env, size_t(rows * n));
  auto scales = Napi::Float32Array::New(env, size_t(rows * nG));
  auto zeros = Napi::Int32Array::New(env, size_t(rows * nG));
  auto gIdx = Napi::Int32Array::New(env, size_t(n));
  auto perm = Napi::Int32Array::New(env, size_t(n));
  auto dequant = Napi::Float32Array::New(env, size_t(rows * n));
  c.io.codes = codes.Data();
  c.io.scales = scales.Data();
  c.io.zeros = zeros.Data();
  c.io.gIdx = gIdx.Data();
  c.io.perm = perm.Data();
  c.io.dequant = dequant.Data();
  c.result = Napi::Object::New(env);
  c.result.Set("codes", codes);
  c.result.Set("scales", scales);
  c.result.Set("zeros", zeros);
  c.result.Set("gIdx", gIdx);
  c.result.Set("perm", perm);
  c.result.Set("dequant", dequant);
  return c;
}

Napi::Value GptqQuantize(const Napi::CallbackInfo& info) {
  GptqCall c = parseGptq(info);
  auto io = std::make_shared<GptqIO>(c.io);
  auto spec = c.spec;
  auto resultRef = std::make_shared<Napi::ObjectReference>(Napi::Persistent(c.result));
  return runAsync(info.Env(), [io, spec] { gptqBlocked(*io, spec); }, {info[0], info[3], c.result},
                  [io, resultRef](Napi::Env env) -> Napi::Value {
                    Napi::Object r = resultRef->Value();
                    r.Set("loss", Napi::Number::New(env, io->loss));
                    return r;
                  });
}

Napi::Value GptqQuantizeSync(const Napi::CallbackInfo& info) {
  GptqCall c = parseGptq(info);
  try {
    gptqBlocked(c.io, c.spec);
  } catch (const std::exception& e) {
    throw Napi::Error::New(info.Env(), e.what());
  }
  c.result.Set("loss", Napi::Number::New(info.Env(), c.io.loss));
  return c.result;
}

Napi::Value GptqQuantizeRef(const Napi::CallbackInfo& info) {
  GptqCall c = parseGptq(info);
  try {
    gptqRef(c.io, c.spec);
  } catch (const std::exception& e) {
    throw Napi::Error::New(info.Env(), e.what());
  }
  c.result.Set("loss", Napi::Number::New(info.Env(), c.io.loss));
  return c.result;
}

void exportGptq(Napi::Env env, Napi::Object exports) {
  exports.Set("gptqQuantize", Napi::Function::New(env, GptqQuantize, "gptqQuantize"));
  exports.Set("gptqQuantizeSync", Napi::Function::New(env, GptqQuantizeSync, "gptqQuantizeSync"));
  exports.Set("gptqQuantizeRef", Napi::Function::New(env, GptqQuantizeRef, "gptqQuantizeRef"));
}
MOEQ_EXPORTS(exportGptq);

}  // namespace
}  // namespace moeq
