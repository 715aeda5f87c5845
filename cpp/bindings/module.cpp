// promobandit._core: one compiled module; each kernel family binds itself from
// its own file so the families can grow independently.
#include <pybind11/pybind11.h>

namespace py = pybind11;

void bind_rng(py::module_& m);
void bind_policies(py::module_& m);
void bind_topk(py::module_& m);
void bind_probe(py::module_& m);
void bind_conversion(py::module_& m);

#define PB_STRINGIFY(x) #x
#define PB_MACRO_STRINGIFY(x) PB_STRINGIFY(x)

PYBIND11_MODULE(_core, m) {
  m.doc() = "promobandit native kernels (C++): RNG, bandit policies, top-k softmax scoring";
  bind_rng(m);
  bind_policies(m);
  bind_topk(m);
  bind_probe(m);
  bind_conversion(m);
#ifdef VERSION_INFO
  m.attr("__version__") = PB_MACRO_STRINGIFY(VERSION_INFO);
#else
  m.attr("__version__") = "dev";
#endif
}
