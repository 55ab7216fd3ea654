// Shared pieces of the CUDA build: error checks that turn CUDA/cuBLAS/cuSOLVER status codes into
// exceptions naming the call, device allocations shared between JS handles, views and async work,
// and one stream + library handles per device (all moeq GPU work on a device is ordered on that
// stream; a mutex serialises host threads because cuBLAS/cuSOLVER handles are not thread-safe).
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>

namespace moeq::cuda {

struct CudaError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

inline void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw CudaError(std::string(what) + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")");
}
inline void check(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) throw CudaError(std::string(what) + ": cuBLAS status " + std::to_string(int(s)));
}
inline void check(cusolverStatus_t s, const char* what) {
  if (s != CUSOLVER_STATUS_SUCCESS) throw CudaError(std::string(what) + ": cuSOLVER status " + std::to_string(int(s)));
}
// After a kernel launch: launch-configuration errors surface here, not at the next sync.
inline void checkLaunch(const char* what) { check(cudaGetLastError(), what); }

// One device allocation (ours, or another process's opened through a CUDA IPC handle).
struct Allocation {
  void* ptr = nullptr;
  size_t bytes = 0;
  int device = 0;
  bool ipcOpened = false;
  Allocation(size_t bytes, int device);                       // cudaMalloc
  Allocation(const cudaIpcMemHandle_t& h, int device);        // cudaIpcOpenMemHandle
  ~Allocation();
  Allocation(const Allocation&) = delete;
  Allocation& operator=(const Allocation&) = delete;
};

// A byte range of an allocation: what a JS CudaBuffer holds.
struct Buffer {
  std::shared_ptr<Allocation> alloc;
  size_t offset = 0;
  size_t bytes = 0;
  int device() const { return alloc->device; }
  template <typename T>
  T* as() const { return reinterpret_cast<T*>(static_cast<uint8_t*>(alloc->ptr) + offset); }
};

// Extra streams (own library handles) for independent per-expert factorizations.
struct Lane {
  cudaStream_t stream = nullptr;
  cublasHandle_t blas = nullptr;
  cusolverDnHandle_t solver = nullptr;
};
constexpr int kLanes = 16;

struct DeviceContext {
  int device = 0;
  cudaStream_t stream = nullptr;
  cublasHandle_t blas = nullptr;
  cusolverDnHandle_t solver = nullptr;
  Lane lanes[kLanes];
  bool lanesReady = false;
  std::mutex mu;
  void ensureLanes();
};

// Lazily created per device; also makes `device` current on the calling thread.
DeviceContext& context(int device);

// Bytes currently allocated by moeq on a device and the peak since the last reset.
void trackAlloc(int device, int64_t delta);
int64_t allocatedBytes(int device);
int64_t peakBytes(int device);
void resetPeak(int device);

enum class Precision { F32, TF32, BF16 };
Precision parsePrecision(const std::string& s);

}  // namespace moeq::cuda
