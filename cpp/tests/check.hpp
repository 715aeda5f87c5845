// The one assertion macro of the C++ tests: report file, line and expression,
// count the failure and go on, so one run lists every failing check.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace promobandit::test {
inline int failures = 0;

inline int report(const char* what) {
  if (failures) {
    std::fprintf(stderr, "%s: %d failures\n", what, failures);
    return EXIT_FAILURE;
  }
  std::printf("%s: all checks passed\n", what);
  return EXIT_SUCCESS;
}

// Bit-for-bit equality of two double arrays (NaN equals a NaN with the same bits).
inline bool same_bits(const double* a, const double* b, long n) {
  return std::memcmp(a, b, static_cast<size_t>(n) * sizeof(double)) == 0;
}
}  // namespace promobandit::test

#define CHECK(c)                                                      \
  do {                                                                \
    if (!(c)) {                                                       \
      std::fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, #c);    \
      ++promobandit::test::failures;                                  \
    }                                                                 \
  } while (0)
