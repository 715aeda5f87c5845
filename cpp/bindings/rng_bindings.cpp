// Bindings of the counter-based RNG: whole arrays of draws from one stream, so
// tests and users can check the C++ and Numba streams against each other.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <cstdint>
#include <string>

#include "promobandit/rng.hpp"

namespace py = pybind11;
using promobandit::Stream;

namespace {

int64_t check_n(int64_t n) {
  if (n < 0) throw std::invalid_argument("n: expected a count >= 0, got " + std::to_string(n));
  return n;
}

void check_shape_param(double v, const char* field) {
  if (!(v > 0.0) || !std::isfinite(v)) {
    throw std::invalid_argument(std::string(field) + ": expected a finite number > 0, got " +
                                py::str(py::float_(v)).cast<std::string>());
  }
}

template <class T, class Draw>
py::array_t<T> draws(uint64_t seed, uint64_t stream, uint32_t purpose, int64_t n, Draw draw) {
  py::array_t<T> out(check_n(n));
  T* o = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    Stream s(seed, stream, purpose);
    for (int64_t i = 0; i < n; ++i) o[i] = draw(s);
  }
  return out;
}

}  // namespace

void bind_rng(py::module_& m) {
  m.def(
      "philox4x32_10",
      [](std::array<uint32_t, 4> ctr, std::array<uint32_t, 2> key) {
        std::array<uint32_t, 4> out{};
        promobandit::philox4x32_10(ctr.data(), key.data(), out.data());
        return out;
      },
      py::arg("counter"), py::arg("key"), "One Philox4x32-10 block.");
  m.def(
      "rng_u32",
      [](uint64_t seed, uint64_t stream, uint32_t purpose, int64_t n) {
        return draws<uint32_t>(seed, stream, purpose, n, [](Stream& s) { return s.next_u32(); });
      },
      py::arg("seed"), py::arg("stream"), py::arg("purpose"), py::arg("n"));
  m.def(
      "rng_uniform",
      [](uint64_t seed, uint64_t stream, uint32_t purpose, int64_t n) {
        return draws<double>(seed, stream, purpose, n, [](Stream& s) { return s.uniform(); });
      },
      py::arg("seed"), py::arg("stream"), py::arg("purpose"), py::arg("n"));
  m.def(
      "rng_normal",
      [](uint64_t seed, uint64_t stream, uint32_t purpose, int64_t n) {
        return draws<double>(seed, stream, purpose, n, [](Stream& s) { return s.normal(); });
      },
      py::arg("seed"), py::arg("stream"), py::arg("purpose"), py::arg("n"));
  m.def(
      "rng_gamma",
      [](uint64_t seed, uint64_t stream, uint32_t purpose, double shape, int64_t n) {
        check_shape_param(shape, "shape");
        return draws<double>(seed, stream, purpose, n, [shape](Stream& s) { return s.gamma(shape); });
      },
      py::arg("seed"), py::arg("stream"), py::arg("purpose"), py::arg("shape"), py::arg("n"));
  m.def(
      "rng_beta",
      [](uint64_t seed, uint64_t stream, uint32_t purpose, double a, double b, int64_t n) {
        check_shape_param(a, "a");
        check_shape_param(b, "b");
        return draws<double>(seed, stream, purpose, n, [a, b](Stream& s) { return s.beta(a, b); });
      },
      py::arg("seed"), py::arg("stream"), py::arg("purpose"), py::arg("a"), py::arg("b"),
      py::arg("n"));
}
