// Launchers of the per-layer MoE statistics helpers (moe_stats.cu): the row gather that builds one
// expert's calibration rows out of the layer's MoE input, an absolute-maximum reduction (static
// activation ranges) and per-row dot products (per-projection GPTQ loss out of a batched call).
// Scalar references: gatherRowsRef / absMaxRef / rowDotRef in ../../test/cuda_stats_checks.ts.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace moeq::cuda {

// out[i, :] = x[index[i], :] (· scale[i] when scale is given, one f32 product as the CPU block
// forms it). An index outside [0, xRows) leaves its row untouched and the lowest such i goes to
// *badRow (initialised by the caller to n).
void launchGatherRows(const float* x, int64_t xRows, int64_t cols, const int32_t* index, int64_t n,
                      const float* scale, float* out, int32_t* badRow, cudaStream_t s);
// *out = max |x[i]| over n values as f32 bits (NaN ranks above +inf, so a NaN input shows); *out
// must start at 0.
void launchAbsMax(const float* x, int64_t n, uint32_t* out, cudaStream_t s);
// dst[b, i] = f32(f64(src[b, i]) · scale[b]) for `blocks` blocks of blockLen values (GPTQ's
// 2/Σw normalisation of a stack of raw Hessian sums, rounded once as the CPU path rounds it).
void launchScaleBlocks(const float* src, float* dst, int64_t blocks, int64_t blockLen, const double* scale,
                       cudaStream_t s);
// out[r] = Σ_c a[r, c]·b[r, c] in f64, one warp per row.
void launchRowDot(const float* a, const float* b, int64_t rows, int64_t cols, double* out, cudaStream_t s);

}  // namespace moeq::cuda
