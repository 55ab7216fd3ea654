// Launchers of the device engine's glue kernels (engine_ops.cu): the elementwise, gather/scatter
// and row steps the CPU engine (libs/models) does in TypeScript loops, with the same f32 rounding,
// and prefill attention on cuBLAS batched GEMMs (tensor cores in tf32 / bf16). Row-major f32.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "common.h"

namespace moeq::cuda {

// y[r, :] = row[:] for r < rows
void launchFillRows(float* y, const float* row, int64_t rows, int64_t cols, cudaStream_t s);
// out = a + (scale == 1 ? b : f32(b·scale)) with the product in double (the scale is a JS number)
void launchResidualAdd(const float* a, const float* b, float* out, int64_t n, double scale, cudaStream_t s);
// out = f32(x·factor) or f32(x / factor), in double
void launchScale(const float* x, float* out, int64_t n, double factor, bool divide, cudaStream_t s);
void launchClamp(const float* x, float* out, int64_t n, float c, cudaStream_t s);
void launchMul(const float* a, const float* b, float* out, int64_t n, cudaStream_t s);
// dst[r·drs + c] = src[r·rs + c·cs]; mul: dst[…] *= src[…] instead
void launchStrided(const float* src, float* dst, int64_t rows, int64_t cols, int64_t rs, int64_t cs, int64_t drs,
                   bool mul, cudaStream_t s);
// out[i, :] = x[idx[i], :] (· w[i] when w, rounded to f32); an index outside [0, xRows) leaves the
// row untouched and lowers *bad to i (the caller initialises it to n)
void launchGatherRows(const float* x, const int32_t* idx, const float* w, float* out, int64_t n, int64_t cols,
                      int64_t xRows, int64_t* bad, cudaStream_t s);
// y[idx[i], :] = fma(src[i, :], w[i], y[idx[i], :]) (w null: + src); indices must be distinct
void launchScatterAddRows(float* y, const float* src, const int32_t* idx, const float* w, int64_t n, int64_t cols,
                          int64_t yRows, int64_t* bad, cudaStream_t s);
// out[r, c] = fma(g[r], src[r, c], out[r, c])
void launchRowScaleAdd(float* out, const float* src, const float* g, int64_t rows, int64_t cols, cudaStream_t s);
// x[r, c] = x[r, c]·f[r]
void launchScaleRowsInPlace(float* x, const float* f, int64_t rows, int64_t cols, cudaStream_t s);
// w[r, :] /= Σ w[r, :] (sequential f32 sum, as the CPU's renormalise with eps = floor = 0)
void launchRenormRows(float* w, int64_t rows, int64_t k, cudaStream_t s);

// FP8 block-quantized weight [rows, cols] (codes e4m3, scales f32 [⌈rows/br⌉, ⌈cols/bc⌉]) to bf16
// bits of f32(code)·scale (round to nearest even; NaN → 0x7fc0: fp8-source.ts's rounding) or f32.
void launchDequantFp8Block(const uint8_t* codes, const float* scales, void* out, int64_t rows, int64_t cols,
                           int64_t br, int64_t bc, bool bf16, cudaStream_t s);
// MXFP4 blocks [E, rows, nb, 16] + E8M0 scales [E, rows, nb] to bf16 [E, nb·32, rows] (transposed,
// low nibble first: mxfp4-source.ts). A scale 0xff lowers *bad to its flat index (caller sets n).
void launchDequantMxfp4T(const uint8_t* blocks, const uint8_t* scales, uint16_t* out, int64_t E, int64_t rows,
                         int64_t nb, int64_t* bad, cudaStream_t s);

// DSA lightning-indexer scores out[b, t, s] = Σ_h f32(w[r,h]·headScale)·max(0, f32(q_h(r)·k(s)·scale))
// (dot in double, sum by FMAs in head order: dsa-indexer.ts's rounding), −∞ for s > t.
void launchIndexerScores(const float* q, const float* k, const float* w, float* out, int64_t B, int64_t T, int64_t H,
                         int64_t D, double scale, double headScale, cudaStream_t s);
// Softmax attention of each query over its selected keys (sel [B·T, topK]; entries < 0 or after the
// query are skipped): q, k [B·T, H, D], v, out [B·T, H, Dv]. One warp per (row, head).
void launchSparseAttention(const float* q, const float* k, const float* v, float* out, const int32_t* sel, int64_t B,
                           int64_t T, int64_t H, int64_t D, int64_t Dv, int64_t topK, float scale, cudaStream_t s);

// Prefill attention with the options of attentionF32: per chunk of (batch, head) pairs,
// S = scale·Q·Kᵀ (cublasGemmBatchedEx), a masked softmax per row (causal / window / chunk / sinks,
// the CPU kernel's formula), O = P·V (cublasGemmBatchedEx). F32 is exact f32 (CUDA cores); TF32
// and BF16 run both products on the tensor cores (cuBLAS compute types 32F_FAST_TF32 / 32F_FAST_16BF).
struct AttnGemmArgs {
  const float *q, *k, *v;
  float* out;
  const float* sinks;  // device [Hq] or null
  int64_t B, T, Hq, Hkv, D, Dv, qs, ks, vs, os, window, chunk;
  bool causal;
  float scale;
};
// scratchBytes bounds the score matrices held at once (at least one T×T).
void attentionGemm(DeviceContext& ctx, const AttnGemmArgs& a, Precision p, int64_t scratchBytes);

}  // namespace moeq::cuda
