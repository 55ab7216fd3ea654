// Reusable scratch buffers for the quantization kernels. Fresh large allocations are mmap'd by
// malloc and every first touch of a page faults; on sandboxed hosts that costs ~10 ms per MiB,
// more than the arithmetic of a GPTQ block. The calibrator quantizes hundreds of same-shaped
// experts in a row, so buffers are leased from a free list and handed back instead of freed.
// What stays resident is bounded: at most kMaxRetainedBytes in total across the free list (a
// buffer that would exceed it is freed on release).
#pragma once
#include <cstddef>
#include <memory>
#include <mutex>
#include <vector>

namespace moeq {

template <typename T>
class ScratchPool {
 public:
  static constexpr size_t kMaxRetainedBytes = size_t(1) << 30;

  class Lease {
   public:
    Lease() : Lease(ScratchPool::instance()) {}
    explicit Lease(ScratchPool& pool) : pool_(pool), buf_(pool.take()) {}
    ~Lease() { pool_.give(std::move(buf_)); }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    // At least n elements; contents are unspecified (callers overwrite what they read).
    T* get(size_t n) {
      if (buf_->size() < n) buf_->resize(n);
      return buf_->data();
    }

   private:
    ScratchPool& pool_;
    std::unique_ptr<std::vector<T>> buf_;
  };

  static ScratchPool& instance() {
    static ScratchPool pool;
    return pool;
  }

 private:
  std::unique_ptr<std::vector<T>> take() {
    std::lock_guard<std::mutex> g(m_);
    if (free_.empty()) return std::make_unique<std::vector<T>>();
    auto b = std::move(free_.back());
    free_.pop_back();
    retained_ -= b->size() * sizeof(T);
    return b;
  }
  void give(std::unique_ptr<std::vector<T>> b) {
    const size_t bytes = b->size() * sizeof(T);
    std::lock_guard<std::mutex> g(m_);
    if (retained_ + bytes > kMaxRetainedBytes) return;  // freed here
    retained_ += bytes;
    free_.push_back(std::move(b));
  }
  std::mutex m_;
  std::vector<std::unique_ptr<std::vector<T>>> free_;
  size_t retained_ = 0;
};

template <typename T>
using Scratch = typename ScratchPool<T>::Lease;

}  // namespace moeq
