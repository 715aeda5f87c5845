// Binding of the machine probes (promobandit/machine_probe.hpp): the memory
// bandwidth, FMA peak and core clock that bench/_machine.py reports as this
// machine's limits. In _core rather than a bench-only extension so that the
// benchmarks need no second build and measure code compiled with the same flags
// as the kernels they are compared with. Each probe runs without the GIL and
// returns a dict of plain numbers.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <string>

#include "promobandit/machine_probe.hpp"

namespace py = pybind11;
using namespace promobandit;

namespace {

ProbeIsa parse_probe_isa(const std::string& s) {
  if (s == "auto") return ProbeIsa::Auto;
  if (s == "scalar") return ProbeIsa::Scalar;
  if (s == "avx2") return ProbeIsa::Avx2;
  if (s == "avx512") return ProbeIsa::Avx512;
  throw std::invalid_argument("isa: expected 'auto', 'scalar', 'avx2' or 'avx512', got '" + s + "'");
}

void check_threads(int n_threads) {
  if (n_threads < 0) {
    throw std::invalid_argument("n_threads: expected 0 (all cores) or a positive count, got " +
                                std::to_string(n_threads));
  }
}

py::dict as_dict(const ProbeResult& r, const char* work) {
  py::dict d;
  d["seconds"] = r.seconds;
  d[work] = r.work_per_rep;
  d["threads"] = r.threads;
  d["isa"] = std::string(probe_isa_name(r.isa));
  d["lanes"] = probe_lanes(r.isa);
  d["checksum"] = r.checksum;
  return d;
}

}  // namespace

void bind_probe(py::module_& m) {
  m.def(
      "probe_stream",
      [](const std::string& kind, int64_t n_bytes, int n_threads, int reps, const std::string& isa) {
        check_threads(n_threads);
        const ProbeIsa i = parse_probe_isa(isa);
        ProbeResult r;
        {
          py::gil_scoped_release nogil;
          r = stream_probe(kind, n_bytes, n_threads, reps, i);
        }
        return as_dict(r, "bytes");
      },
      py::arg("kind") = "read", py::arg("n_bytes") = int64_t{1} << 30, py::arg("n_threads") = 0,
      py::arg("reps") = 5, py::arg("isa") = "auto",
      "Memory bandwidth probe: kind 'read' (sum of one array of n_bytes) or 'triad' "
      "(a = b + 3 c, three arrays of n_bytes, non-temporal stores), every thread on its own "
      "slice at once. Returns {'seconds': per repetition, 'bytes': bytes moved per "
      "repetition, 'threads', 'isa', 'lanes', 'checksum'}.");
  m.def(
      "probe_fma",
      [](int64_t iters, int n_threads, int reps, const std::string& isa) {
        check_threads(n_threads);
        const ProbeIsa i = parse_probe_isa(isa);
        ProbeResult r;
        {
          py::gil_scoped_release nogil;
          r = fma_probe(iters, n_threads, reps, i);
        }
        return as_dict(r, "flops");
      },
      py::arg("iters") = int64_t{20'000'000}, py::arg("n_threads") = 0, py::arg("reps") = 5,
      py::arg("isa") = "auto",
      "FMA throughput probe: independent float32 FMA chains in registers on every thread. "
      "Returns {'seconds', 'flops' per repetition (all threads), 'threads', 'isa', 'lanes', "
      "'checksum'}.");
  m.def(
      "probe_clock",
      [](int64_t iters, int n_threads, int reps) {
        check_threads(n_threads);
        ProbeResult r;
        {
          py::gil_scoped_release nogil;
          r = clock_probe(iters, n_threads, reps);
        }
        return as_dict(r, "cycles");
      },
      py::arg("iters") = int64_t{50'000'000}, py::arg("n_threads") = 0, py::arg("reps") = 5,
      "Core clock probe: chains of dependent one-cycle integer adds on every thread; "
      "'cycles' / 'seconds' is the all-core clock in Hz ('cycles' is 0 where the probe "
      "has no inline assembly).");
  m.def("probe_isa_supported",
        [](const std::string& isa) { return probe_isa_supported(parse_probe_isa(isa)); },
        py::arg("isa"));
}
