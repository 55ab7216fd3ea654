// Per-device context (stream, cuBLAS/cuSOLVER handles, lanes), allocations and their accounting.
#include <array>
#include <atomic>
#include <map>

#include "common.h"

namespace moeq::cuda {
namespace {

constexpr int kMaxDevices = 64;
std::mutex gContextsMu;
std::array<std::unique_ptr<DeviceContext>, kMaxDevices> gContexts;
std::array<std::atomic<int64_t>, kMaxDevices> gAllocated{};
std::array<std::atomic<int64_t>, kMaxDevices> gPeak{};

void checkDevice(int device) {
  int count = 0;
  check(cudaGetDeviceCount(&count), "cudaGetDeviceCount");
  if (device < 0 || device >= count || device >= kMaxDevices)
    throw CudaError("cuda device " + std::to_string(device) + " does not exist (" + std::to_string(count) +
                    " device(s) visible)");
}

}  // namespace

DeviceContext& context(int device) {
  checkDevice(device);
  check(cudaSetDevice(device), "cudaSetDevice");
  std::lock_guard<std::mutex> lock(gContextsMu);
  auto& c = gContexts[size_t(device)];
  if (!c) {
    auto ctx = std::make_unique<DeviceContext>();
    ctx->device = device;
    check(cudaStreamCreateWithFlags(&ctx->stream, cudaStreamNonBlocking), "cudaStreamCreate");
    check(cublasCreate(&ctx->blas), "cublasCreate");
    check(cublasSetStream(ctx->blas, ctx->stream), "cublasSetStream");
    check(cusolverDnCreate(&ctx->solver), "cusolverDnCreate");
    check(cusolverDnSetStream(ctx->solver, ctx->stream), "cusolverDnSetStream");
    c = std::move(ctx);
  }
  return *c;
}

void DeviceContext::ensureLanes() {
  if (lanesReady) return;
  for (auto& l : lanes) {
    check(cudaStreamCreateWithFlags(&l.stream, cudaStreamNonBlocking), "lane cudaStreamCreate");
    check(cublasCreate(&l.blas), "lane cublasCreate");
    check(cublasSetStream(l.blas, l.stream), "lane cublasSetStream");
    check(cusolverDnCreate(&l.solver), "lane cusolverDnCreate");
    check(cusolverDnSetStream(l.solver, l.stream), "lane cusolverDnSetStream");
  }
  lanesReady = true;
}

void trackAlloc(int device, int64_t delta) {
  int64_t now = gAllocated[size_t(device)].fetch_add(delta) + delta;
  int64_t peak = gPeak[size_t(device)].load();
  while (now > peak && !gPeak[size_t(device)].compare_exchange_weak(peak, now)) {
  }
}
int64_t allocatedBytes(int device) { return gAllocated[size_t(device)].load(); }
int64_t peakBytes(int device) { return gPeak[size_t(device)].load(); }
void resetPeak(int device) { gPeak[size_t(device)].store(gAllocated[size_t(device)].load()); }

Allocation::Allocation(size_t bytes_, int device_) : bytes(bytes_), device(device_) {
  checkDevice(device);
  check(cudaSetDevice(device), "cudaSetDevice");
  if (bytes > 0) {
    cudaError_t e = cudaMalloc(&ptr, bytes);
    if (e != cudaSuccess) {
      cudaGetLastError();  // clear the sticky-free error state for the next call
      size_t freeB = 0, totalB = 0;
      cudaMemGetInfo(&freeB, &totalB);
      throw CudaError("cudaMalloc of " + std::to_string(bytes) + " bytes on device " + std::to_string(device) +
                      " failed: " + cudaGetErrorString(e) + " (" + std::to_string(freeB) + " of " +
                      std::to_string(totalB) + " bytes free)");
    }
    trackAlloc(device, int64_t(bytes));
  }
}

Allocation::Allocation(const cudaIpcMemHandle_t& h, int device_) : device(device_), ipcOpened(true) {
  checkDevice(device);
  check(cudaSetDevice(device), "cudaSetDevice");
  check(cudaIpcOpenMemHandle(&ptr, h, cudaIpcMemLazyEnablePeerAccess), "cudaIpcOpenMemHandle");
}

Allocation::~Allocation() {
  if (!ptr) return;
  cudaSetDevice(device);
  if (ipcOpened) {
    cudaIpcCloseMemHandle(ptr);
  } else {
    // frees are stream-ordered after everything queued so far on the device's stream
    cudaDeviceSynchronize();
    cudaFree(ptr);
    trackAlloc(device, -int64_t(bytes));
  }
}

Precision parsePrecision(const std::string& s) {
  if (s == "f32") return Precision::F32;
  if (s == "tf32") return Precision::TF32;
  if (s == "bf16") return Precision::BF16;
  throw CudaError("precision must be \"f32\", \"tf32\" or \"bf16\", got \"" + s + "\"");
}

}  // namespace moeq::cuda
