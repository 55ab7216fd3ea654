// A process-wide pool of worker threads (one per core) for the quantization kernels' row-parallel
// loops. Kernels already run on a libuv worker (runAsync); this pool adds intra-kernel parallelism
// without oversubscribing: parallelFor splits a range into one chunk per pool thread and the caller
// runs a chunk itself. Calls from several libuv workers at once are serialised by a mutex, which
// keeps the total thread count at "cores" instead of cores × libuv workers.
#pragma once
#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace moeq {

class RowPool {
 public:
  static RowPool& instance() {
    static RowPool pool;
    return pool;
  }
  size_t threads() const { return workers_.size() + 1; }

  // fn(begin, end, worker) over [0, n) in contiguous chunks; worker < threads(). Blocks until done.
  // Not reentrant: fn must not call parallelFor itself (it would wait on the call mutex forever).
  void parallelFor(int64_t n, const std::function<void(int64_t, int64_t, size_t)>& fn, int64_t minChunk = 1) {
    if (n <= 0) return;
    int64_t parts = std::min<int64_t>(static_cast<int64_t>(threads()), std::max<int64_t>(1, n / std::max<int64_t>(1, minChunk)));
    if (parts <= 1) {
      fn(0, n, 0);
      return;
    }
    std::lock_guard<std::mutex> serial(callMutex_);
    std::exception_ptr error;
    std::mutex errorMutex;
    std::function<void(int64_t)> chunk = [&](int64_t p) {
      int64_t b = n * p / parts, e = n * (p + 1) / parts;
      try {
        fn(b, e, static_cast<size_t>(p));
      } catch (...) {
        std::lock_guard<std::mutex> g(errorMutex);
        if (!error) error = std::current_exception();
      }
    };
    {
      std::unique_lock<std::mutex> lk(m_);
      task_ = &chunk;
      pending_ = parts - 1;
      nextPart_ = 1;
      totalParts_ = parts;
      generation_++;
    }
    cv_.notify_all();
    chunk(0);
    std::unique_lock<std::mutex> lk(m_);
    done_.wait(lk, [&] { return pending_ == 0; });
    task_ = nullptr;
    if (error) std::rethrow_exception(error);
  }

 private:
  RowPool() {
    unsigned hc = std::thread::hardware_concurrency();
    size_t n = hc > 1 ? hc - 1 : 0;
    for (size_t i = 0; i < n; i++) workers_.emplace_back([this] { loop(); });
  }
  ~RowPool() {
    {
      std::lock_guard<std::mutex> lk(m_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
  }
  void loop() {
    uint64_t seen = 0;
    for (;;) {
      std::unique_lock<std::mutex> lk(m_);
      cv_.wait(lk, [&] { return stop_ || (generation_ != seen && nextPart_ < totalParts_); });
      if (stop_) return;
      int64_t p = nextPart_++;
      if (nextPart_ >= totalParts_) seen = generation_;
      auto* task = task_;
      lk.unlock();
      (*task)(p);
      lk.lock();
      if (--pending_ == 0) done_.notify_all();
    }
  }

  std::vector<std::thread> workers_;
  std::mutex m_, callMutex_;
  std::condition_variable cv_, done_;
  const std::function<void(int64_t)>* task_ = nullptr;
  int64_t pending_ = 0, nextPart_ = 0, totalParts_ = 0;
  uint64_t generation_ = 0;
  bool stop_ = false;
};

inline void parallelFor(int64_t n, const std::function<void(int64_t, int64_t, size_t)>& fn, int64_t minChunk = 1) {
  RowPool::instance().parallelFor(n, fn, minChunk);
}

}  // namespace moeq
