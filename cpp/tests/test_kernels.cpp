// Plain C++ checks of the header-only kernels (built only when CMake runs on this
// project directly): known-answer Philox vectors and a Cholesky inverse; the
// policy kernels' batch loops are checked in test_policies.cpp.
#include <cmath>

#include "check.hpp"
#include "promobandit/linalg.hpp"
#include "promobandit/rng.hpp"

int main() {
  using namespace promobandit;
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
