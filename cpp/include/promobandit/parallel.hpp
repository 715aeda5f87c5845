// One way to run a loop on several threads: contiguous chunks, the first worker
// exception kept and rethrown after every chunk has finished (hnswlib's ParallelFor,
// without its lost-exception bug). Results must not depend on the thread count, so
// callers write disjoint outputs and merge deterministically.
//
// The chunks run on a persistent pool (started on first use, grown to the largest
// thread count asked for), so a call costs a hand-off, not a thread start: batches of
// a thousand decisions take tens of microseconds, a thread start about as much.
// The pool is built from atomics only (no std::condition_variable, whose GLIBC symbols
// are newer than the manylinux_2_34 baseline the wheel is repaired to, like the barrier
// in machine_probe.hpp): an idle worker spins briefly, then yields, then sleeps in
// short naps (kPoolNapMicros), so an idle pool costs no core. A call that finds the
// pool busy (another thread's call, or a nested one) starts its own threads as before;
// a forked child starts a fresh pool. Workers are detached and the pool is never
// destroyed, so no worker touches freed memory at interpreter exit; a static guard
// asks them to stop when the library unloads.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include <unistd.h>

namespace promobandit {

// Batch kernels run rows on the calling thread only below 2 * kRowsPerThread rows:
// handing rows to another thread costs more than this many decisions.
constexpr int64_t kRowsPerThread = 64;

// Idle workers: yield for kPoolSpinMicros after their last job, then nap this long
// between looks (the wake-up latency of a pool idle for longer than the spin).
constexpr int64_t kPoolSpinMicros = 2000;
constexpr int64_t kPoolNapMicros = 100;
constexpr int kPoolMaxThreads = 256;  // threads the pool keeps at most (more: own threads)

// Number of threads to use for `n_threads` (<= 0: hardware concurrency).
inline int resolve_threads(int n_threads) {
  if (n_threads > 0) return n_threads;
  const unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw);
}

namespace detail {

// Chunk w of [0, n) split into t chunks.
inline void chunk_of(int64_t n, int t, int w, int64_t* lo, int64_t* hi) {
  const int64_t chunk = (n + t - 1) / t;
  *lo = std::min<int64_t>(n, static_cast<int64_t>(w) * chunk);
  *hi = std::min<int64_t>(n, *lo + chunk);
}

class ThreadPool {
 public:
  // The process's pool (a new one in a forked child: the parent's workers are gone).
  static ThreadPool& instance() {
    std::atomic<ThreadPool*>& pool = slot();
    static std::mutex mu;
    ThreadPool* p = pool.load(std::memory_order_acquire);
    if (p != nullptr && p->pid_ == ::getpid()) return *p;
    std::lock_guard<std::mutex> g(mu);
    p = pool.load(std::memory_order_relaxed);
    if (p == nullptr || p->pid_ != ::getpid()) {
      p = new ThreadPool();  // never freed (see the header comment); a parent's is leaked
      pool.store(p, std::memory_order_release);
    }
    return *p;
  }

  // The pool if one was started in this process, else nullptr.
  static ThreadPool* started() {
    ThreadPool* p = slot().load(std::memory_order_acquire);
    return p != nullptr && p->pid_ == ::getpid() ? p : nullptr;
  }

  // Claims the pool for one call; false when another call holds it.
  bool try_acquire() { return !busy_.exchange(true, std::memory_order_acquire); }
  void release() { busy_.store(false, std::memory_order_release); }

  // Runs job(w) for w in 1..t-1 on workers, job(0) on the caller; returns when all are
  // done. The caller holds the pool (try_acquire) and catches inside job.
  template <class Job>
  void run(int t, Job& job) {
    grow(t - 1);
    job_ctx_ = &job;
    job_fn_ = [](void* ctx, int w) { (*static_cast<Job*>(ctx))(w); };
    done_.store(0, std::memory_order_relaxed);
    // The generation word carries the call's worker count, so a worker never reads the
    // job fields of a call it takes no part in (they may be rewritten meanwhile).
    const uint64_t g = gen_.load(std::memory_order_relaxed);
    gen_.store(((g >> 16) + 1) << 16 | static_cast<uint64_t>(t - 1), std::memory_order_release);
    job(0);
    int spins = 0;
    while (done_.load(std::memory_order_acquire) != t - 1) {
      if (++spins > 64) std::this_thread::yield();
    }
  }

  void stop() { stop_.store(true, std::memory_order_release); }
  bool stopped() const { return stop_.load(std::memory_order_acquire); }

 private:
  ThreadPool() : pid_(::getpid()) {}

  static std::atomic<ThreadPool*>& slot() {
    static std::atomic<ThreadPool*> p{nullptr};
    return p;
  }

  void grow(int want) {
    want = std::min(want, kPoolMaxThreads);
    while (static_cast<int>(started_) < want) {
      const int index = static_cast<int>(started_) + 1;  // worker 0 is the caller
      std::thread(&ThreadPool::loop, this, index, gen_.load(std::memory_order_acquire)).detach();
      ++started_;
    }
  }

  void loop(int index, uint64_t seen) {
    auto last = std::chrono::steady_clock::now();
    for (;;) {
      const uint64_t g = gen_.load(std::memory_order_acquire);
      if (stop_.load(std::memory_order_acquire)) return;
      if (g == seen) {
        const auto now = std::chrono::steady_clock::now();
        if (now - last < std::chrono::microseconds(kPoolSpinMicros)) {
          std::this_thread::yield();
        } else {
          std::this_thread::sleep_for(std::chrono::microseconds(kPoolNapMicros));
        }
        continue;
      }
      seen = g;
      if (static_cast<uint64_t>(index) <= (g & 0xFFFF)) {
        job_fn_(job_ctx_, index);
        done_.fetch_add(1, std::memory_order_acq_rel);
      }
      last = std::chrono::steady_clock::now();
    }
  }

  const pid_t pid_;
  std::atomic<bool> busy_{false};
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> gen_{0};
  std::atomic<int> done_{0};
  // Written by the caller before gen_'s release increment, read by workers after its
  // acquire load, so plain fields suffice.
  void* job_ctx_ = nullptr;
  void (*job_fn_)(void*, int) = nullptr;
  size_t started_ = 0;
};

// Asks the pool's workers to return when the library is unloaded (interpreter exit).
struct PoolStopAtExit {
  ~PoolStopAtExit() {
    if (ThreadPool* p = ThreadPool::started()) p->stop();
  }
};
inline PoolStopAtExit pool_stop_at_exit;

}  // namespace detail

// Calls fn(begin, end, worker) on [0, n) split into at most n_threads contiguous
// chunks; runs inline when n < serial_threshold or one thread is asked for.
template <class Fn>
void parallel_for(int64_t n, int n_threads, int64_t serial_threshold, Fn&& fn) {
  const int t = std::max(1, std::min<int>(resolve_threads(n_threads),
                                          static_cast<int>(std::max<int64_t>(n, 1))));
  if (t == 1 || n < serial_threshold) {
    if (n > 0) fn(int64_t{0}, n, 0);
    return;
  }
  // One exception slot per worker; the lowest worker's is rethrown, whatever the timing.
  std::vector<std::exception_ptr> errors(static_cast<size_t>(t));
  auto run = [&](int w) {
    int64_t lo, hi;
    detail::chunk_of(n, t, w, &lo, &hi);
    if (lo >= hi) return;
    try {
      fn(lo, hi, w);
    } catch (...) {
      errors[static_cast<size_t>(w)] = std::current_exception();
    }
  };
  detail::ThreadPool& pool = detail::ThreadPool::instance();
  if (t - 1 <= kPoolMaxThreads && pool.try_acquire()) {
    if (!pool.stopped()) {
      pool.run(t, run);
      pool.release();
    } else {  // after the exit guard ran, the workers are gone: do the chunks here
      pool.release();
      for (int w = 0; w < t; ++w) run(w);
    }
  } else {  // the pool is busy (a concurrent or nested call): threads of its own
    std::vector<std::thread> workers;
    workers.reserve(static_cast<size_t>(t - 1));
    for (int w = 1; w < t; ++w) workers.emplace_back(run, w);
    run(0);
    for (auto& th : workers) th.join();
  }
  for (auto& e : errors) {
    if (e) std::rethrow_exception(e);
  }
}

}  // namespace promobandit
