// Soft-weighted calibration of one MoE layer on the GPU (what the calibrator needs per layer):
// router probabilities p = softmax(X·Gᵀ) over all experts, and for every expert e
//   H_in[e]   = Σ_t p[t,e]·x_t·x_tᵀ                       (input of gate/up)
//   H_down[e] = Σ_t p[t,e]·a_t·a_tᵀ, a = silu(x·gateᵀ)·(x·upᵀ) (input of down)
// Raw weighted sums (the CPU calibrator's convention; GPTQ is invariant to their scale).
#pragma once
#include <memory>

#include "common.h"

namespace moeq::cuda {

struct MoeCalibOut {
  std::shared_ptr<Allocation> probs, hIn, hDown;  // [N,E], [E,H,H], [E,I,I] f32
  double secRouter = 0, secHessianIn = 0, secAct = 0, secHessianDown = 0;
};

// X [N,H], router G [E,H], gateUp [E, 2I, H] (gate rows, then up rows), all f32 on ctx's device.
void moeCalibrate(DeviceContext& ctx, const float* X, int64_t N, int64_t H, const float* router, const float* gateUp,
                  int64_t E, int64_t I, Precision p, bool timePhases, MoeCalibOut& out);

}  // namespace moeq::cuda
