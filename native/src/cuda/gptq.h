// Batched GPTQ on the GPU: every expert of a layer (same rows/cols) in one pass.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "common.h"

namespace moeq::cuda {

struct GptqBatchSpec {
  int bits = 4;
  int64_t group = 128;  // -1 = one group per row
  bool sym = true, actOrder = false;
  double damp = 0.01;
  int64_t blockSize = 128;  // 1..128 (one 128-column register tile per warp)
  int scaleDtype = 0;       // stored scale dtype: 0 f32, 1 bf16, 2 f16
};

struct GptqBatchOut {
  std::shared_ptr<Allocation> codes, scales, zeros, dequant;  // [E,rows,cols] u8, [E,rows,nG] f32/i32, [E,rows,cols] f32
  std::vector<int32_t> perm, gIdx;                              // [E, cols]
  std::vector<double> loss;                                     // [E]
  double secPrepare = 0, secFactor = 0, secSweep = 0, secLoss = 0;
};

// W [E, rows, cols] f32 and H [E, cols, cols] f32 on ctx's device. Throws CudaError (with the
// expert's index) when a Hessian is not positive definite after damping.
void gptqBatched(DeviceContext& ctx, const float* W, const float* H, int64_t E, int64_t rows, int64_t cols,
                 const GptqBatchSpec& spec, GptqBatchOut& out);

}  // namespace moeq::cuda
