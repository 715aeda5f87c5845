// Plain C++ checks of the header-only kernels (built only when CMake runs on this
// project directly): known-answer Philox vectors and a Cholesky inverse; the
// policy kernels' batch loops are checked in test_policies.cpp.
#include <atomic>
#include <cmath>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "check.hpp"
#include "promobandit/linalg.hpp"
#include "promobandit/parallel.hpp"
#include "promobandit/rng.hpp"

// The persistent pool: every index covered once, for any thread count and many calls in
// a row; the lowest worker's exception comes back; concurrent callers (one falls back to
// threads of its own) and nested calls still cover everything.
static void test_parallel_pool() {
  using namespace promobandit;
  for (int rep = 0; rep < 200; ++rep) {
    for (int t : {1, 2, 3, 5, 8}) {
      const int64_t n = 1000 + rep;
      std::vector<int> hits(static_cast<size_t>(n), 0);
      parallel_for(n, t, 2, [&](int64_t lo, int64_t hi, int) {
        for (int64_t i = lo; i < hi; ++i) hits[static_cast<size_t>(i)] += 1;
      });
      bool ok = true;
      for (int h : hits) ok = ok && h == 1;
      CHECK(ok);
    }
  }
  bool caught = false;
  try {
    parallel_for(1000, 4, 2, [&](int64_t lo, int64_t, int w) {
      if (w >= 1) throw std::runtime_error(std::to_string(w) + " " + std::to_string(lo));
    });
  } catch (const std::runtime_error& e) {
    caught = std::string(e.what()) == "1 250";
  }
  CHECK(caught);
  std::atomic<int64_t> total{0};
  auto body = [&]() {
    for (int rep = 0; rep < 100; ++rep) {
      parallel_for(512, 3, 2, [&](int64_t lo, int64_t hi, int) {
        parallel_for(hi - lo, 2, 2, [&](int64_t a, int64_t b, int) { total += b - a; });
      });
    }
  };
  std::thread other(body);
  body();
  other.join();
  CHECK(total.load() == 2 * 100 * 512);
}

int main() {
  using namespace promobandit;
  test_parallel_pool();
  // Random123 known-answer vectors for philox4x32_10.
  {
    uint32_t c[4] = {0, 0, 0, 0}, k[2] = {0, 0}, o[4];
    philox4x32_10(c, k, o);
    CHECK(o[0] == 0x6627e8d5u && o[1] == 0xe169c58du && o[2] == 0xbc57ac4cu && o[3] == 0x9b00dbd8u);
  }
  {
    uint32_t c[4] = {0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u};
    uint32_t k[2] = {0xa4093822u, 0x299f31d0u}, o[4];
    philox4x32_10(c, k, o);
    CHECK(o[0] == 0xd16cfe09u && o[1] == 0x94fdccebu && o[2] == 0x5001e420u && o[3] == 0x24126ea1u);
  }
  {
    double a[9] = {4, 2, 0.6, 2, 2, 0.5, 0.6, 0.5, 3}, inv[9], work[18];
    CHECK(spd_inverse(a, inv, 3, work));
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 3; ++j) {
        double s = 0;
        for (int k = 0; k < 3; ++k) s += a[i * 3 + k] * inv[k * 3 + j];
        CHECK(std::fabs(s - (i == j ? 1.0 : 0.0)) < 1e-12);
      }
  }
  {
    Stream s(42, 7);
    double m = 0;
    const int n = 200000;
    for (int i = 0; i < n; ++i) m += s.uniform();
    CHECK(std::fabs(m / n - 0.5) < 0.01);
  }
  return test::report("test_kernels");
}
