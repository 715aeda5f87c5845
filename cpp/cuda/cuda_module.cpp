// promobandit._cuda: the CUDA top-k softmax scorer, driven by raw device pointers.
// The Python side (promobandit/scoring.py) checks dtype, shape, contiguity and
// device of torch CUDA tensors, allocates outputs and workspace with torch, and
// passes data_ptr() values and torch's current stream; this module only
// launches. It imports on machines without a GPU or driver: device_count()
// then returns 0.
#include <pybind11/pybind11.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "topk_cuda.hpp"

namespace py = pybind11;
namespace pc = promobandit::cuda;

namespace {

template <class T>
T* ptr(uintptr_t p) {
  return reinterpret_cast<T*>(p);
}

void topk_softmax(uintptr_t items, int item_type, int64_t n_items, int64_t dim, uintptr_t users,
                  int64_t n_users, int64_t k, double temperature, uintptr_t bias, uintptr_t mask,
                  bool mask_per_user, uintptr_t excl, int64_t excl_cols, bool excl_per_user,
                  uintptr_t ids, uintptr_t scores, uintptr_t probs_topk, uintptr_t probs_full,
                  uintptr_t log_normalizer, uintptr_t workspace, size_t workspace_bytes,
                  uintptr_t status, int device, uintptr_t stream) {
  if (item_type < 0 || item_type > 2) throw std::invalid_argument("item_type: expected 0, 1 or 2");
  if (n_items < 1 || dim < 1 || n_users < 1) {
    throw std::invalid_argument("items/users: expected non-empty matrices");
  }
  if (k < 1 || k > n_items || k > pc::kMaxK) {
    throw std::invalid_argument("k: expected 1 <= k <= min(n_items, " +
                                std::to_string(pc::kMaxK) + "), got " + std::to_string(k));
  }
  pc::TopkArgs a;
  a.items = ptr<const void>(items);
  a.item_type = item_type;
  a.n_items = n_items;
  a.dim = dim;
  a.users = ptr<const float>(users);
  a.n_users = n_users;
  a.k = k;
  a.temperature = temperature;
  a.bias = ptr<const float>(bias);
  a.mask = ptr<const uint8_t>(mask);
  a.mask_per_user = mask_per_user;
  a.excl = ptr<const int64_t>(excl);
  a.excl_cols = excl_cols;
  a.excl_per_user = excl_per_user;
  a.ids = ptr<int64_t>(ids);
  a.scores = ptr<float>(scores);
  a.probs_topk = ptr<double>(probs_topk);
  a.probs_full = ptr<double>(probs_full);
  a.log_normalizer = ptr<double>(log_normalizer);
  a.workspace = ptr<void>(workspace);
  a.workspace_bytes = workspace_bytes;
  a.status = ptr<unsigned long long>(status);
  const char* why = nullptr;
  {
    py::gil_scoped_release nogil;
    why = pc::topk_launch(a, device, ptr<void>(stream));
  }
  if (why != nullptr) throw std::runtime_error(std::string("cuda top-k launch failed: ") + why);
}

}  // namespace

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "promobandit CUDA kernels: fused top-k softmax scoring on raw device pointers";
  m.def("device_count", &pc::device_count,
        "Number of visible CUDA devices; 0 without a device or a driver.");
  m.def("workspace_bytes", &pc::topk_workspace_bytes, py::arg("n_items"), py::arg("n_users"),
        py::arg("k"), "Bytes of device workspace topk_softmax needs.");
  m.attr("max_k") = pc::kMaxK;
  m.def("topk_softmax", &topk_softmax, py::arg("items"), py::arg("item_type"),
        py::arg("n_items"), py::arg("dim"), py::arg("users"), py::arg("n_users"), py::arg("k"),
        py::arg("temperature"), py::arg("bias"), py::arg("mask"), py::arg("mask_per_user"),
        py::arg("excl"), py::arg("excl_cols"), py::arg("excl_per_user"), py::arg("ids"),
        py::arg("scores"), py::arg("probs_topk"), py::arg("probs_full"),
        py::arg("log_normalizer"), py::arg("workspace"), py::arg("workspace_bytes"),
        py::arg("status"), py::arg("device"), py::arg("stream"),
        "Launches the scorer on `stream` (torch.cuda.current_stream().cuda_stream) with "
        "device pointers (tensor.data_ptr(); 0 for an absent bias, mask or exclusion "
        "list). Does not synchronise; status (2 uint64, preset to 2**64-1) gets the "
        "first non-finite score as user * n_items + item and the first user with fewer "
        "than k eligible items.");
}
