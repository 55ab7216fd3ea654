#include "layer.h"

#include <chrono>

#include "blas.h"
#include "kernels.h"

namespace moeq::cuda {

void moeCalibrate(DeviceContext& ctx, const float* X, int64_t N, int64_t H, const float* router, const float* gateUp,
                  int64_t E, int64_t I, Precision p, bool timePhases, MoeCalibOut& out) {
  const int dev = ctx.device;
  cudaStream_t st = ctx.stream;
  check(cublasSetStream(ctx.blas, st), "cublasSetStream");
  using clk = std::chrono::steady_clock;
  auto t = clk::now();
  // per-phase times need a sync after each launch; without it the phases overlap on the stream
  auto lap = [&](double& acc) {
    if (!timePhases) return;
    check(cudaStreamSynchronize(st), "moeCalibrate sync");
    auto now = clk::now();
    acc += std::chrono::duration<double>(now - t).count();
    t = now;
  };
  out.probs = std::make_shared<Allocation>(size_t(N * E) * 4, dev);
  out.hIn = std::make_shared<Allocation>(size_t(E * H * H) * 4, dev);
  out.hDown = std::make_shared<Allocation>(size_t(E * I * I) * 4, dev);
  float* probs = static_cast<float*>(out.probs->ptr);
  // router logits in f32 (as the reference does): routing decisions are sensitive to rounding
  gemmRowMajor(ctx.blas, false, true, N, E, H, 1.0f, X, router, 0.0f, probs, Precision::F32);
  launchSoftmaxRows(probs, probs, N, E, st);
  lap(out.secRouter);
  if (p == Precision::BF16) {
    // bf16 copies: x once, x·p[:,e] and the expert's gate/up rows per expert, a and a·p from SwiGLU
    Allocation xb(size_t(N * H) * 2, dev), xwb(size_t(N * H) * 2, dev), gub(size_t(2 * I * H) * 2, dev),
        y(size_t(N * 2 * I) * 4, dev), ab(size_t(N * I) * 2, dev), awb(size_t(N * I) * 2, dev);
    launchToBf16(X, xb.ptr, size_t(N * H), st);
    for (int64_t e = 0; e < E; e++) {
      launchScaleRowsBf16(X, probs + e, E, xwb.ptr, N, H, st);
      gemmRowMajorBf16(ctx.blas, true, false, H, H, N, 1.0f, xwb.ptr, xb.ptr, 0.0f,
                       static_cast<float*>(out.hIn->ptr) + e * H * H);
      lap(out.secHessianIn);
      launchToBf16(gateUp + e * 2 * I * H, gub.ptr, size_t(2 * I * H), st);
      gemmRowMajorBf16(ctx.blas, false, true, N, 2 * I, H, 1.0f, xb.ptr, gub.ptr, 0.0f, static_cast<float*>(y.ptr));
      launchSwigluWeightedBf16(static_cast<float*>(y.ptr), I, probs + e, E, ab.ptr, awb.ptr, N, st);
      lap(out.secAct);
      gemmRowMajorBf16(ctx.blas, true, false, I, I, N, 1.0f, awb.ptr, ab.ptr, 0.0f,
                       static_cast<float*>(out.hDown->ptr) + e * I * I);
      lap(out.secHessianDown);
    }
    check(cudaStreamSynchronize(st), "moeCalibrate sync");
    return;
  }
  Allocation xw(size_t(N * H) * 4, dev), y(size_t(N * 2 * I) * 4, dev), a(size_t(N * I) * 4, dev),
      aw(size_t(N * I) * 4, dev);
  for (int64_t e = 0; e < E; e++) {
    launchScaleRows(X, probs + e, E, static_cast<float*>(xw.ptr), N, H, st);
    gemmRowMajor(ctx.blas, true, false, H, H, N, 1.0f, static_cast<float*>(xw.ptr), X, 0.0f,
                 static_cast<float*>(out.hIn->ptr) + e * H * H, p);
    lap(out.secHessianIn);
    gemmRowMajor(ctx.blas, false, true, N, 2 * I, H, 1.0f, X, gateUp + e * 2 * I * H, 0.0f,
                 static_cast<float*>(y.ptr), p);
    launchSwigluWeighted(static_cast<float*>(y.ptr), I, probs + e, E, static_cast<float*>(a.ptr),
                         static_cast<float*>(aw.ptr), N, st);
    lap(out.secAct);
    gemmRowMajor(ctx.blas, true, false, I, I, N, 1.0f, static_cast<float*>(aw.ptr), static_cast<float*>(a.ptr), 0.0f,
                 static_cast<float*>(out.hDown->ptr) + e * I * I, p);
    lap(out.secHessianDown);
  }
  check(cudaStreamSynchronize(st), "moeCalibrate sync");
}

}  // namespace moeq::cuda
