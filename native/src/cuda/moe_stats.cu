// Per-layer MoE statistics helpers (see moe_stats.h). Plain memory-bound kernels: the Hessian and
// expert GEMMs they feed are cuBLAS calls.
#include "common.h"
#include "moe_stats.h"

namespace moeq::cuda {
namespace {

inline unsigned gridFor(int64_t n, int threads) {
  int64_t b = (n + threads - 1) / threads;
  return unsigned(b > 65535 * 32 ? 65535 * 32 : (b < 1 ? 1 : b));
}

__global__ void gatherRowsKernel(const float* x, int64_t xRows, int64_t cols, const int32_t* index, int64_t n,
                                 const float* scale, float* out, int32_t* badRow) {
  const int64_t total = n * cols;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / cols, c = i - r * cols;
    const int32_t src = index[r];
    if (src < 0 || src >= xRows) {
      if (c == 0) atomicMin(badRow, int32_t(r));
      continue;
    }
    const float v = x[int64_t(src) * cols + c];
    out[i] = scale ? __fmul_rn(v, scale[r]) : v;
  }
}

__global__ void absMaxKernel(const float* x, int64_t n, uint32_t* out) {
  uint32_t m = 0;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const uint32_t b = __float_as_uint(x[i]) & 0x7fffffffu;  // |x| as bits: order of non-negative floats, NaN highest
    m = b > m ? b : m;
  }
  for (int o = 16; o > 0; o >>= 1) {
    const uint32_t v = __shfl_down_sync(0xffffffffu, m, o);
    m = v > m ? v : m;
  }
  if ((threadIdx.x & 31) == 0 && m) atomicMax(out, m);
}

__global__ void rowDotKernel(const float* a, const float* b, int64_t rows, int64_t cols, double* out) {
  const int64_t warp = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) / 32;
  const int lane = threadIdx.x & 31;
  if (warp >= rows) return;
  const float* ar = a + warp * cols;
  const float* br = b + warp * cols;
  double s = 0;
  for (int64_t c = lane; c < cols; c += 32) s += double(ar[c]) * double(br[c]);
  for (int o = 16; o > 0; o >>= 1) s += __shfl_down_sync(0xffffffffu, s, o);
  if (lane == 0) out[warp] = s;
}

__global__ void scaleBlocksKernel(const float* src, float* dst, int64_t blocks, int64_t blockLen,
                                  const double* scale) {
  const int64_t total = blocks * blockLen;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = float(__dmul_rn(double(src[i]), scale[i / blockLen]));
}

}  // namespace

void launchScaleBlocks(const float* src, float* dst, int64_t blocks, int64_t blockLen, const double* scale,
                       cudaStream_t s) {
  if (blocks == 0 || blockLen == 0) return;
  scaleBlocksKernel<<<gridFor(blocks * blockLen, 256), 256, 0, s>>>(src, dst, blocks, blockLen, scale);
  checkLaunch("scaleBlocks");
}

void launchGatherRows(const float* x, int64_t xRows, int64_t cols, const int32_t* index, int64_t n,
                      const float* scale, float* out, int32_t* badRow, cudaStream_t s) {
  if (n == 0 || cols == 0) return;
  gatherRowsKernel<<<gridFor(n * cols, 256), 256, 0, s>>>(x, xRows, cols, index, n, scale, out, badRow);
  checkLaunch("gatherRows");
}

void launchAbsMax(const float* x, int64_t n, uint32_t* out, cudaStream_t s) {
  if (n == 0) return;
  absMaxKernel<<<gridFor(n, 256) > 4096 ? 4096 : gridFor(n, 256), 256, 0, s>>>(x, n, out);
  checkLaunch("absMax");
}

void launchRowDot(const float* a, const float* b, int64_t rows, int64_t cols, double* out, cudaStream_t s) {
  if (rows == 0) return;
  rowDotKernel<<<unsigned((rows * 32 + 255) / 256), 256, 0, s>>>(a, b, rows, cols, out);
  checkLaunch("rowDot");
}

}  // namespace moeq::cuda
