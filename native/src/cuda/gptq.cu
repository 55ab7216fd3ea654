// Batched GPTQ: the algorithm of ../gptq.cc (the oracle's loop, f64 throughout) for all experts
// of a layer at once.
//   prepare   dead columns, act-order permutation (host sort of the diagonals), damping; W and the
//             reversed Hessian gathered into quantization order, f64.
//   factor    U = chol(H⁻¹) upper without forming H⁻¹: with P the reversal permutation,
//             P·H·P = M·Mᵀ (cuSOLVER potrf) gives H = R·Rᵀ with R = P·M·P upper, so H⁻¹ = R⁻ᵀ·R⁻¹
//             and U = R⁻¹ = P·M⁻¹·P (one triangular solve). Experts spread over kLanes (16)
//             streams: one potrf of n = 2048 is latency-bound and leaves most of the chip idle.
//   sweep     per 128-column block, one kernel for every (expert, row): a warp owns a row, its
//             128-column segment in registers (column 32·k + lane in slot k), the expert's
//             128×128 block of U in shared memory; the error of column i is broadcast with a
//             shuffle. The block's errors reach the later columns through one strided-batched DGEMM.
//   loss      tr((W−Q)·H·(W−Q)ᵀ) with the caller's W and H (DGEMM + reduction), as gptq.cc.
// Products in the sweep use __dmul_rn / __dsub_rn: no FMA contraction, the CPU kernel's rounding.
// Group scales are rounded to the dtype the checkpoint stores (f32 / bf16 / f16) before the zero
// point, codes, dequant and error feedback, as gptq.cc does.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <string>

#include "gptq.h"

namespace moeq::cuda {
namespace {

constexpr int kSweepThreads = 1024;
constexpr int kSlots = 4;  // 4 × 32 lanes = 128 columns per warp
constexpr int kMaxBlock = kSlots * 32;
constexpr int kScaleF32 = 0, kScaleBf16 = 1;  // 2: f16

__global__ void extractDiagKernel(const float* H, float* diag, int64_t E, int64_t n) {
  int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= E * n) return;
  int64_t e = i / n, j = i % n;
  diag[i] = H[e * n * n + j * n + j];
}

__global__ void gatherWKernel(const float* W, double* Wp, const int32_t* perm, const uint8_t* dead, int64_t E,
                              int64_t rows, int64_t n) {
  int64_t total = E * rows * n;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t e = i / (rows * n), j = i % n, r = (i / n) % rows;
    int32_t pj = perm[e * n + j];
    Wp[i] = dead[e * n + pj] ? 0.0 : double(W[(e * rows + r) * n + pj]);
  }
}

// Hr[e,i,j] = Hp[e, n−1−i, n−1−j], Hp = permuted H with the fixed, damped diagonal.
__global__ void gatherHKernel(const float* H, double* Hr, const int32_t* perm, const double* diagFixed,
                              const double* dampAdd, int64_t E, int64_t n) {
  int64_t total = E * n * n;
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < total; t += int64_t(gridDim.x) * blockDim.x) {
    int64_t e = t / (n * n), i = (t / n) % n, j = t % n;
    int64_t a = n - 1 - i, b = n - 1 - j;
    int32_t pa = perm[e * n + a], pb = perm[e * n + b];
    Hr[t] = a == b ? diagFixed[e * n + pa] + dampAdd[e] : double(H[e * n * n + int64_t(pa) * n + pb]);
  }
}

__global__ void identityKernel(double* X, int64_t E, int64_t n) {
  int64_t total = E * n * n;
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < total; t += int64_t(gridDim.x) * blockDim.x) {
    int64_t i = (t / n) % n, j = t % n;
    X[t] = i == j ? 1.0 : 0.0;
  }
}

// U[e,i,j] (row-major, upper) = Minv_cm[e](n−1−i, n−1−j) = Minv[e][(n−1−i) + (n−1−j)·n]; tiled so
// both the read (along i) and the write (along j) are coalesced.
__global__ void gatherUKernel(const double* Minv, double* U, int64_t n) {
  __shared__ double tile[32][33];
  const int64_t e = blockIdx.z;
  const int64_t i0 = int64_t(blockIdx.y) * 32, j0 = int64_t(blockIdx.x) * 32;
  const double* M = Minv + e * n * n;
  for (int dy = threadIdx.y; dy < 32; dy += blockDim.y) {
    int64_t j = j0 + dy, i = i0 + threadIdx.x;
    if (i < n && j < n) tile[dy][threadIdx.x] = M[(n - 1 - i) + (n - 1 - j) * n];
  }
  __syncthreads();
  for (int dy = threadIdx.y; dy < 32; dy += blockDim.y) {
    int64_t i = i0 + dy, j = j0 + threadIdx.x;
    if (i < n && j < n) U[e * n * n + i * n + j] = j >= i ? tile[threadIdx.x][dy] : 0.0;
  }
}

// gptq.cc's roundScale: f64 → f32 (RNE), then for bf16 / f16 RNE to 8 / 11 significant bits on
// that dtype's grid; an underflow becomes the dtype's smallest positive value, an overflow is
// flagged (expert + 1 in *overflow) and reported by the host.
__device__ double roundScaleDev(double scale, int sd, int64_t e, int* overflow) {
  double v = double(__double2float_rn(scale));
  if (sd != kScaleF32 && v > 0 && isfinite(v)) {
    int ex = 0;
    frexp(v, &ex);
    const int bits = sd == kScaleBf16 ? 8 : 11;
    const int minExp = sd == kScaleBf16 ? -133 : -24;
    const double q = ldexp(1.0, max(ex - bits, minExp));
    v = rint(v / q) * q;
  }
  const double maxFinite = sd == kScaleF32 ? 3.4028234663852886e38 : sd == kScaleBf16 ? ldexp(255.0, 120) : 65504.0;
  if (!(v <= maxFinite)) {
    atomicMax(overflow, int(e) + 1);
    v = maxFinite;
  }
  if (v == 0) v = ldexp(1.0, sd == kScaleF32 ? -149 : sd == kScaleBf16 ? -133 : -24);
  return v;
}

__device__ __forceinline__ void findParamsDev(double xmin, double xmax, int bits, bool sym, int sd, int64_t e,
                                              int* overflow, double& scale, double& zero) {
  const double maxq = ldexp(1.0, bits) - 1;
  if (sym) {
    xmax = fmax(fabs(xmin), xmax);
    xmin = -xmax;
  }
  if (xmin == 0 && xmax == 0) {
    xmin = -1;
    xmax = 1;
  }
  scale = roundScaleDev((xmax - xmin) / maxq, sd, e, overflow);
  zero = sym ? (maxq + 1) / 2 : fmin(fmax(rint(-xmin / scale), 0.0), maxq);
}

struct SweepArgs {
  const double* U;
  double* W;
  double* Eb;
  double* pS;
  double* pZ;
  float* scalesOut;
  int32_t* zerosOut;
  uint8_t* codes;
  float* deq;
  const int32_t* perm;
  int* overflow;
  int64_t rows, n, i1, g, nG;
  int bs, bits, scaleDtype;
  bool sym;
};

__global__ void __launch_bounds__(kSweepThreads) sweepKernel(SweepArgs a) {
  extern __shared__ double Us[];
  const int64_t e = blockIdx.y;
  const int bs = a.bs;
  const int64_t n = a.n, i1 = a.i1;
  const double* Ue = a.U + e * n * n;
  for (int t = threadIdx.x; t < bs * bs; t += blockDim.x) Us[t] = Ue[(i1 + t / bs) * n + i1 + t % bs];
  __syncthreads();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const double maxq = ldexp(1.0, a.bits) - 1;
  const int64_t firstGroup = ((i1 + a.g - 1) / a.g) * a.g;
  for (int64_t r = int64_t(blockIdx.x) * (kSweepThreads / 32) + warp; r < a.rows;
       r += int64_t(gridDim.x) * (kSweepThreads / 32)) {
    const int64_t rowIdx = e * a.rows + r;
    const double* Wrow = a.W + rowIdx * n;
    // parameters of the groups that start in this block, from the block-start weights
    for (int64_t gs = firstGroup; gs < i1 + bs; gs += a.g) {
      const int64_t len = min(a.g, n - gs);
      double mn = 0, mx = 0;
      for (int64_t c = lane; c < len; c += 32) {
        double v = Wrow[gs + c];
        mn = fmin(mn, v);
        mx = fmax(mx, v);
      }
      for (int o = 16; o > 0; o >>= 1) {
        mn = fmin(mn, __shfl_xor_sync(0xffffffffu, mn, o));
        mx = fmax(mx, __shfl_xor_sync(0xffffffffu, mx, o));
      }
      double scale, zero;
      findParamsDev(mn, mx, a.bits, a.sym, a.scaleDtype, e, a.overflow, scale, zero);
      if (lane == 0) {
        const int64_t gi = rowIdx * a.nG + gs / a.g;
        a.pS[gi] = scale;
        a.pZ[gi] = zero;
        a.scalesOut[gi] = float(scale);
        a.zerosOut[gi] = int32_t(zero);
      }
    }
    __syncwarp();
    double w[kSlots];
#pragma unroll
    for (int k = 0; k < kSlots; k++) {
      const int c = k * 32 + lane;
      w[k] = c < bs ? Wrow[i1 + c] : 0.0;
    }
    int64_t curG = -1;
    double scale = 1, zero = 0;
    for (int i = 0; i < bs; i++) {
      const int slot = i >> 5;
      double v = w[0];
#pragma unroll
      for (int k = 1; k < kSlots; k++)
        if (slot == k) v = w[k];
      const double x = __shfl_sync(0xffffffffu, v, i & 31);
      const int64_t col = i1 + i;
      const int64_t grp = col / a.g;
      if (grp != curG) {
        curG = grp;
        scale = a.pS[rowIdx * a.nG + grp];
        zero = a.pZ[rowIdx * a.nG + grp];
      }
      const double code = fmin(fmax(rint(x / scale) + zero, 0.0), maxq);
      const double q = __dmul_rn(scale, code - zero);
      const double err = (x - q) / Us[i * bs + i];
      if (lane == 0) {
        const int64_t pc = a.perm[e * n + col];
        a.codes[rowIdx * n + pc] = uint8_t(code);
        a.deq[rowIdx * n + pc] = float(q);
        a.Eb[rowIdx * bs + i] = err;
      }
#pragma unroll
      for (int k = 0; k < kSlots; k++) {
        const int c = k * 32 + lane;
        if (c > i && c < bs) w[k] = __dsub_rn(w[k], __dmul_rn(err, Us[i * bs + c]));
      }
    }
  }
}

__global__ void lossPrepKernel(const float* W, const float* deq, const float* H, double* D, double* Hd, int64_t nWD,
                               int64_t nH) {
  int64_t total = nWD > nH ? nWD : nH;
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < total; t += int64_t(gridDim.x) * blockDim.x) {
    if (t < nWD) D[t] = double(W[t]) - double(deq[t]);
    if (t < nH) Hd[t] = double(H[t]);
  }
}

__global__ void lossReduceKernel(const double* D, const double* T, double* loss, int64_t perExpert) {
  const int64_t e = blockIdx.y;
  double s = 0;
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < perExpert; t += int64_t(gridDim.x) * blockDim.x)
    s += D[e * perExpert + t] * T[e * perExpert + t];
  for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
  __shared__ double part[32];
  if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = s;
  __syncthreads();
  if (threadIdx.x == 0) {
    double b = 0;
    for (int k = 0; k < int(blockDim.x >> 5); k++) b += part[k];
    atomicAdd(loss + e, b);
  }
}

int grid1d(int64_t n) { return int(std::clamp<int64_t>((n + 255) / 256, 1, 132 * 64)); }

struct Clock {
  std::chrono::steady_clock::time_point t = std::chrono::steady_clock::now();
  double lap(cudaStream_t s) {
    check(cudaStreamSynchronize(s), "gptq: stream sync");
    auto now = std::chrono::steady_clock::now();
    double d = std::chrono::duration<double>(now - t).count();
    t = now;
    return d;
  }
};

}  // namespace

void gptqBatched(DeviceContext& ctx, const float* W, const float* H, int64_t E, int64_t rows, int64_t n,
                 const GptqBatchSpec& spec, GptqBatchOut& out) {
  if (spec.blockSize < 1 || spec.blockSize > kMaxBlock)
    throw CudaError("gptq (cuda): blockSize must be 1.." + std::to_string(kMaxBlock) + ", got " +
                    std::to_string(spec.blockSize));
  const int dev = ctx.device;
  cudaStream_t st = ctx.stream;
  const int64_t g = spec.group == -1 ? n : spec.group;
  const int64_t nG = (n + g - 1) / g;
  const int bs = int(std::min<int64_t>(spec.blockSize, n));
  Clock clock;

  // ---- prepare: diagonals to the host (dead columns, act-order sort, damping mean)
  std::vector<float> diag(size_t(E * n));
  {
    Allocation d(size_t(E * n) * sizeof(float), dev);
    extractDiagKernel<<<int((E * n + 255) / 256), 256, 0, st>>>(H, static_cast<float*>(d.ptr), E, n);
    checkLaunch("gptq: extractDiag");
    check(cudaMemcpyAsync(diag.data(), d.ptr, d.bytes, cudaMemcpyDeviceToHost, st), "gptq: diag download");
    check(cudaStreamSynchronize(st), "gptq: diag sync");
  }
  std::vector<double> diagFixed(size_t(E * n)), dampAdd(static_cast<size_t>(E));
  std::vector<uint8_t> dead(size_t(E * n));
  out.perm.assign(size_t(E * n), 0);
  out.gIdx.assign(size_t(E * n), 0);
  for (int64_t e = 0; e < E; e++) {
    double mean = 0;
    for (int64_t j = 0; j < n; j++) {
      double v = diag[e * n + j];
      if (!std::isfinite(v))
        throw CudaError("gptq (cuda): expert " + std::to_string(e) + ": H[" + std::to_string(j) + "," +
                        std::to_string(j) + "] is not finite");
      dead[e * n + j] = v == 0;
      diagFixed[e * n + j] = v == 0 ? 1.0 : v;
      mean += diagFixed[e * n + j];
    }
    dampAdd[e] = spec.damp * mean / double(n);
    int32_t* p = out.perm.data() + e * n;
    std::iota(p, p + n, 0);
    if (spec.actOrder)
      std::stable_sort(p, p + n, [&](int32_t a, int32_t b) { return diagFixed[e * n + a] > diagFixed[e * n + b]; });
    for (int64_t j = 0; j < n; j++) out.gIdx[e * n + p[j]] = int32_t(j / g);
  }
  Allocation dPerm(size_t(E * n) * 4, dev), dDead(size_t(E * n), dev), dDiag(size_t(E * n) * 8, dev),
      dDamp(size_t(E) * 8, dev);
  check(cudaMemcpyAsync(dPerm.ptr, out.perm.data(), dPerm.bytes, cudaMemcpyHostToDevice, st), "gptq: perm upload");
  check(cudaMemcpyAsync(dDead.ptr, dead.data(), dDead.bytes, cudaMemcpyHostToDevice, st), "gptq: dead upload");
  check(cudaMemcpyAsync(dDiag.ptr, diagFixed.data(), dDiag.bytes, cudaMemcpyHostToDevice, st), "gptq: diag upload");
  check(cudaMemcpyAsync(dDamp.ptr, dampAdd.data(), dDamp.bytes, cudaMemcpyHostToDevice, st), "gptq: damp upload");
  const int32_t* perm = static_cast<const int32_t*>(dPerm.ptr);

  Allocation Wp(size_t(E * rows * n) * 8, dev);
  auto Hr = std::make_unique<Allocation>(size_t(E * n * n) * 8, dev);  // reversed H, then U
  auto Minv = std::make_unique<Allocation>(size_t(E * n * n) * 8, dev);
  double* wp = static_cast<double*>(Wp.ptr);
  double* hr = static_cast<double*>(Hr->ptr);
  double* minv = static_cast<double*>(Minv->ptr);
  gatherWKernel<<<grid1d(E * rows * n), 256, 0, st>>>(W, wp, perm, static_cast<uint8_t*>(dDead.ptr), E, rows, n);
  checkLaunch("gptq: gatherW");
  gatherHKernel<<<grid1d(E * n * n), 256, 0, st>>>(H, hr, perm, static_cast<double*>(dDiag.ptr),
                                                   static_cast<double*>(dDamp.ptr), E, n);
  checkLaunch("gptq: gatherH");
  identityKernel<<<grid1d(E * n * n), 256, 0, st>>>(minv, E, n);
  checkLaunch("gptq: identity");
  out.secPrepare = clock.lap(st);

  // ---- factor: potrf + trsm per expert, spread over the lanes
  ctx.ensureLanes();
  int lwork = 0;
  check(cusolverDnDpotrf_bufferSize(ctx.lanes[0].solver, CUBLAS_FILL_MODE_LOWER, int(n), hr, int(n), &lwork),
        "gptq: potrf_bufferSize");
  std::vector<std::unique_ptr<Allocation>> work;
  for (int l = 0; l < kLanes; l++) work.push_back(std::make_unique<Allocation>(size_t(std::max(lwork, 1)) * 8, dev));
  Allocation dInfo(size_t(E) * 4, dev);
  check(cudaMemsetAsync(dInfo.ptr, 0, dInfo.bytes, st), "gptq: info memset");
  check(cudaStreamSynchronize(st), "gptq: pre-factor sync");
  const double one = 1.0;
  for (int64_t e = 0; e < E; e++) {
    Lane& ln = ctx.lanes[e % kLanes];
    double* He = hr + e * n * n;
    check(cusolverDnDpotrf(ln.solver, CUBLAS_FILL_MODE_LOWER, int(n), He, int(n),
                           static_cast<double*>(work[e % kLanes]->ptr), lwork, static_cast<int*>(dInfo.ptr) + e),
          "gptq: potrf");
    check(cublasDtrsm(ln.blas, CUBLAS_SIDE_LEFT, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N, CUBLAS_DIAG_NON_UNIT, int(n),
                      int(n), &one, He, int(n), minv + e * n * n, int(n)),
          "gptq: trsm");
  }
  for (int l = 0; l < kLanes; l++) check(cudaStreamSynchronize(ctx.lanes[l].stream), "gptq: lane sync");
  std::vector<int> info(static_cast<size_t>(E));
  check(cudaMemcpy(info.data(), dInfo.ptr, dInfo.bytes, cudaMemcpyDeviceToHost), "gptq: info download");
  for (int64_t e = 0; e < E; e++)
    if (info[e] != 0)
      throw CudaError("gptq (cuda): expert " + std::to_string(e) +
                      ": Hessian is not positive definite after damping (cuSOLVER potrf info " +
                      std::to_string(info[e]) + "); raise damp or check the calibration data");
  {
    dim3 grid(unsigned((n + 31) / 32), unsigned((n + 31) / 32), unsigned(E));
    gatherUKernel<<<grid, dim3(32, 8), 0, st>>>(minv, hr, n);
    checkLaunch("gptq: gatherU");
  }
  const double* U = hr;
  out.secFactor = clock.lap(st);

  // ---- sweep
  out.codes = std::make_shared<Allocation>(size_t(E * rows * n), dev);
  out.dequant = std::make_shared<Allocation>(size_t(E * rows * n) * 4, dev);
  out.scales = std::make_shared<Allocation>(size_t(E * rows * nG) * 4, dev);
  out.zeros = std::make_shared<Allocation>(size_t(E * rows * nG) * 4, dev);
  Allocation pS(size_t(E * rows * nG) * 8, dev), pZ(size_t(E * rows * nG) * 8, dev), Eb(size_t(E * rows * bs) * 8, dev);
  const size_t smem = size_t(bs) * bs * 8;
  check(cudaFuncSetAttribute(sweepKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(kMaxBlock * kMaxBlock * 8)),
        "gptq: sweep smem attribute");
  Allocation dOverflow(sizeof(int), dev);
  check(cudaMemsetAsync(dOverflow.ptr, 0, sizeof(int), st), "gptq: overflow flag");
  SweepArgs a{U, wp, static_cast<double*>(Eb.ptr), static_cast<double*>(pS.ptr), static_cast<double*>(pZ.ptr),
              static_cast<float*>(out.scales->ptr), static_cast<int32_t*>(out.zeros->ptr),
              static_cast<uint8_t*>(out.codes->ptr), static_cast<float*>(out.dequant->ptr), perm,
              static_cast<int*>(dOverflow.ptr), rows, n, 0, g, nG, bs, spec.bits, spec.scaleDtype, spec.sym};
  const unsigned gx = unsigned(std::max<int64_t>(1, (rows + 32 * 4 - 1) / (32 * 4)));
  const double minusOne = -1.0;
  check(cublasSetStream(ctx.blas, st), "gptq: cublasSetStream");
  for (int64_t i1 = 0; i1 < n; i1 += bs) {
    const int64_t i2 = std::min(i1 + bs, n);
    a.i1 = i1;
    a.bs = int(i2 - i1);
    sweepKernel<<<dim3(gx, unsigned(E)), kSweepThreads, size_t(a.bs) * a.bs * 8, st>>>(a);
    checkLaunch("gptq: sweep");
    if (i2 < n)
      check(cublasDgemmStridedBatched(ctx.blas, CUBLAS_OP_N, CUBLAS_OP_N, int(n - i2), int(rows), a.bs, &minusOne,
                                      U + i1 * n + i2, int(n), n * n, static_cast<double*>(Eb.ptr), a.bs,
                                      rows * a.bs, &one, wp + i2, int(n), rows * n, int(E)),
            "gptq: trailing update");
  }
  (void)smem;
  out.secSweep = clock.lap(st);
  int overflow = 0;
  check(cudaMemcpy(&overflow, dOverflow.ptr, sizeof(int), cudaMemcpyDeviceToHost), "gptq: overflow flag download");
  if (overflow)
    throw CudaError("gptq (cuda): expert " + std::to_string(overflow - 1) + ": a group scale overflows " +
                    (spec.scaleDtype == 0 ? "f32" : spec.scaleDtype == 1 ? "bf16" : "f16") +
                    " (weights too large to store their scale in this dtype)");

  // ---- loss: D = W − Q (caller's order), T = D·H, loss = Σ D⊙T; Minv's storage holds H in f64
  Hr.reset();
  double* D = wp;
  double* Hd = minv;
  Allocation T(size_t(E * rows * n) * 8, dev), dLoss(size_t(E) * 8, dev);
  lossPrepKernel<<<grid1d(std::max(E * rows * n, E * n * n)), 256, 0, st>>>(
      W, static_cast<float*>(out.dequant->ptr), H, D, Hd, E * rows * n, E * n * n);
  checkLaunch("gptq: lossPrep");
  const double zeroD = 0.0;
  check(cublasDgemmStridedBatched(ctx.blas, CUBLAS_OP_N, CUBLAS_OP_N, int(n), int(rows), int(n), &one, Hd, int(n),
                                  n * n, D, int(n), rows * n, &zeroD, static_cast<double*>(T.ptr), int(n), rows * n,
                                  int(E)),
        "gptq: loss gemm");
  check(cudaMemsetAsync(dLoss.ptr, 0, dLoss.bytes, st), "gptq: loss memset");
  lossReduceKernel<<<dim3(unsigned(std::clamp<int64_t>((rows * n + 255) / 256, 1, 64)), unsigned(E)), 256, 0, st>>>(
      D, static_cast<double*>(T.ptr), static_cast<double*>(dLoss.ptr), rows * n);
  checkLaunch("gptq: lossReduce");
  out.loss.assign(size_t(E), 0.0);
  check(cudaMemcpyAsync(out.loss.data(), dLoss.ptr, dLoss.bytes, cudaMemcpyDeviceToHost, st), "gptq: loss download");
  out.secLoss = clock.lap(st);
}

}  // namespace moeq::cuda
