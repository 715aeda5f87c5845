// Host interface of the CUDA top-k softmax scorer (topk_kernels.cu), kept free of
// pybind11 so nvcc never sees Python headers and the binding (cuda_module.cpp)
// is compiled by the host compiler.
#pragma once

#include <cstddef>
#include <cstdint>

namespace promobandit {
namespace cuda {

// Every pointer is device memory, row-major and contiguous; semantics as in
// cpp/include/promobandit/topk.hpp. Exclusions are rows of excl_cols sorted
// ascending ids padded at the end with INT64_MAX (one shared row unless per user).
struct TopkArgs {
  const void* items = nullptr;  // (n_items, dim): float, __half or __nv_bfloat16
  int item_type = 0;            // 0 float32, 1 float16, 2 bfloat16
  int64_t n_items = 0, dim = 0;
  const float* users = nullptr;  // (n_users, dim)
  int64_t n_users = 0;
  int64_t k = 1;
  double temperature = 1.0;
  const float* bias = nullptr;    // (n_items,) or null
  const uint8_t* mask = nullptr;  // (n_items,) or (n_users, n_items), nonzero = eligible
  bool mask_per_user = false;
  const int64_t* excl = nullptr;
  int64_t excl_cols = 0;
  bool excl_per_user = false;
  int64_t* ids = nullptr;  // (n_users, k)
  float* scores = nullptr;
  double* probs_topk = nullptr;
  double* probs_full = nullptr;
  double* log_normalizer = nullptr;  // (n_users,)
  void* workspace = nullptr;         // topk_workspace_bytes(...) bytes
  size_t workspace_bytes = 0;
  // status[0]: min over non-finite scores of user * n_items + item; status[1]: min
  // user with fewer than k eligible items. Both must be set to UINT64_MAX before.
  unsigned long long* status = nullptr;
};

// Largest k the kernels select (the per-user merge buffer lives in shared memory).
constexpr int64_t kMaxK = 1024;

size_t topk_workspace_bytes(int64_t n_items, int64_t n_users, int64_t k);

// Launches the kernels on `stream` (a cudaStream_t) on device `device`; returns
// nullptr, or a static error message. Does not synchronise.
const char* topk_launch(const TopkArgs& a, int device, void* stream);

int device_count();

}  // namespace cuda
}  // namespace promobandit
