// One way to run a loop on several threads: contiguous chunks, the first worker
// exception kept and rethrown after every thread has joined (hnswlib's
// ParallelFor, without its lost-exception bug). Results must not depend on the
// thread count, so callers write disjoint outputs and merge deterministically.
#pragma once

#include <algorithm>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace promobandit {

// Batch kernels run rows on the calling thread only below 2 * kRowsPerThread rows:
// starting a thread costs more than this many decisions.
constexpr int64_t kRowsPerThread = 64;

// Number of threads to use for `n_threads` (<= 0: hardware concurrency).
inline int resolve_threads(int n_threads) {
  if (n_threads > 0) return n_threads;
  const unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw);
}

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
  std::exception_ptr first;
  std::mutex mu;
  std::vector<std::thread> workers;
  workers.reserve(static_cast<size_t>(t - 1));
  const int64_t chunk = (n + t - 1) / t;
  auto run = [&](int w) {
    const int64_t lo = static_cast<int64_t>(w) * chunk;
    const int64_t hi = std::min<int64_t>(n, lo + chunk);
    if (lo >= hi) return;
    try {
      fn(lo, hi, w);
    } catch (...) {
      std::lock_guard<std::mutex> g(mu);
      if (!first) first = std::current_exception();
    }
  };
  for (int w = 1; w < t; ++w) workers.emplace_back(run, w);
  run(0);
  for (auto& th : workers) th.join();
  if (first) std::rethrow_exception(first);
}

}  // namespace promobandit
