// Binding of the fused top-k softmax scorer (promobandit/topk.hpp). Checks every
// argument (dtype, shape, contiguity, ranges, finiteness of the users, enough
// eligible items per row) before touching an output, builds the sorted
// exclusion lists, runs the kernel without the GIL, and turns bad data found
// inside the kernel (a non-finite score) into a ValueError naming the field.
// python/promobandit/scoring.py applies the same checks, with the same messages,
// for the Numba backend.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "checks.hpp"
#include "promobandit/topk.hpp"

namespace py = pybind11;
using namespace promobandit;
using promobandit::bind::checked_array;
using promobandit::bind::Kind;

namespace {

ItemType parse_item_type(const std::string& s) {
  if (s == "float32") return ItemType::F32;
  if (s == "float16") return ItemType::F16;
  if (s == "bfloat16") return ItemType::BF16;
  throw std::invalid_argument("item_type: expected 'float32', 'float16' or 'bfloat16', got '" + s +
                              "'");
}

Kind item_kind(ItemType t) {
  switch (t) {
    case ItemType::F16: return Kind::Float16;
    case ItemType::BF16: return Kind::UInt16;
    default: return Kind::Float32;
  }
}

TopkIsa parse_isa(const std::string& s) {
  if (s == "auto") return TopkIsa::Auto;
  if (s == "scalar") return TopkIsa::Scalar;
  if (s == "avx2") return TopkIsa::Avx2;
  if (s == "avx512") return TopkIsa::Avx512;
  throw std::invalid_argument("isa: expected 'auto', 'scalar', 'avx2' or 'avx512', got '" + s + "'");
}

// A (n,) or (B, n) array of kind k; `field` names it in errors.
py::array row_or_rows(const py::object& obj, const char* field, Kind k, int64_t B, int64_t n) {
  py::array a = py::array::ensure(obj);
  if (a && a.ndim() == 2) return checked_array(obj, field, k, 2, {B, n});
  return checked_array(obj, field, k, 1, {n});
}

// Exclusion lists as sorted, unique CSR rows; 1-D: one list for every user,
// 2-D (B, m): one row per user, -1 pads short rows.
struct Exclusions {
  std::vector<int64_t> ids;
  std::vector<int64_t> offsets{0};
  bool per_user = false;
};

Exclusions build_exclusions(const py::object& exclude, int64_t B, int64_t N) {
  Exclusions ex;
  py::array probe = py::array::ensure(exclude);
  const bool two_d = probe && probe.ndim() == 2;
  py::array a = two_d ? checked_array(exclude, "exclude", Kind::Int64, 2, {B, -1})
                      : checked_array(exclude, "exclude", Kind::Int64, 1, {-1});
  const int64_t* p = static_cast<const int64_t*>(a.data());
  const int64_t rows = two_d ? B : 1;
  const int64_t m = two_d ? a.shape(1) : a.shape(0);
  ex.per_user = two_d;
  ex.ids.reserve(static_cast<size_t>(rows * m));
  for (int64_t r = 0; r < rows; ++r) {
    const size_t start = ex.ids.size();
    for (int64_t j = 0; j < m; ++j) {
      const int64_t id = p[r * m + j];
      if (two_d && id == -1) continue;
      if (id < 0 || id >= N) {
        throw std::invalid_argument(
            std::string("exclude: expected item ids in [0, ") + std::to_string(N) + ")" +
            (two_d ? " or -1 (padding)" : "") + ", got " + std::to_string(id) +
            " at flat index " + std::to_string(r * m + j));
      }
      ex.ids.push_back(id);
    }
    std::sort(ex.ids.begin() + static_cast<std::ptrdiff_t>(start), ex.ids.end());
    ex.ids.erase(std::unique(ex.ids.begin() + static_cast<std::ptrdiff_t>(start), ex.ids.end()),
                 ex.ids.end());
    ex.offsets.push_back(static_cast<int64_t>(ex.ids.size()));
  }
  return ex;
}

// Every row must keep at least k eligible items; names the field that took them away.
void check_eligible(const uint8_t* mask, bool mask_per_user, const Exclusions* ex, int64_t B,
                    int64_t N, int64_t k) {
  const int64_t mask_rows = mask == nullptr ? 0 : (mask_per_user ? B : 1);
  const int64_t ex_rows = ex == nullptr ? 0 : (ex->per_user ? B : 1);
  const int64_t rows = std::max<int64_t>(1, std::max(mask_rows, ex_rows));
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* m = mask == nullptr ? nullptr : mask + (mask_per_user ? r * N : 0);
    int64_t n_mask = N;
    if (m != nullptr) {
      n_mask = 0;
      for (int64_t i = 0; i < N; ++i) n_mask += m[i] != 0;
    }
    int64_t n_ex = 0;
    if (ex != nullptr) {
      const int64_t er = ex->per_user ? r : 0;
      for (int64_t j = ex->offsets[er]; j < ex->offsets[er + 1]; ++j) {
        n_ex += m == nullptr || m[ex->ids[j]] != 0;
      }
    }
    if (n_mask - n_ex < k) {
      const bool blame_mask = ex == nullptr || n_mask < k;
      const std::string row = rows > 1 ? "row " + std::to_string(r) + " leaves " : "leaves ";
      throw std::invalid_argument(std::string(blame_mask ? "mask" : "exclude") + ": " + row +
                                  std::to_string(n_mask - n_ex) +
                                  " eligible items, fewer than k = " + std::to_string(k));
    }
  }
}

// Flat index of the first inf/NaN item entry, or -1, and whether it is a NaN.
int64_t first_nonfinite_item(const py::array& items, ItemType t, bool& is_nan) {
  const int64_t n = static_cast<int64_t>(items.size());
  if (t == ItemType::F32) {
    const float* p = static_cast<const float*>(items.data());
    for (int64_t i = 0; i < n; ++i) {
      if (!std::isfinite(p[i])) {
        is_nan = std::isnan(p[i]);
        return i;
      }
    }
    return -1;
  }
  // Half formats: all-ones exponent means inf (zero mantissa) or NaN.
  const uint16_t* p = static_cast<const uint16_t*>(items.data());
  const uint16_t exp_mask = t == ItemType::F16 ? 0x7C00 : 0x7F80;
  const uint16_t mant_mask = t == ItemType::F16 ? 0x03FF : 0x007F;
  for (int64_t i = 0; i < n; ++i) {
    if ((p[i] & exp_mask) == exp_mask) {
      is_nan = (p[i] & mant_mask) != 0;
      return i;
    }
  }
  return -1;
}

template <class T>
py::array_t<T> out_or_new(const py::object& out, const char* field, Kind kind,
                          std::initializer_list<py::ssize_t> shape) {
  if (out.is_none()) return py::array_t<T>(std::vector<py::ssize_t>(shape));
  py::array a = checked_array(out, field, kind, static_cast<int>(shape.size()), shape);
  if (!a.writeable()) {
    throw std::invalid_argument(std::string(field) + ": expected a writeable array");
  }
  return py::reinterpret_borrow<py::array_t<T>>(a);
}

py::tuple topk_softmax_py(const py::object& items, const py::object& users, int64_t k,
                       double temperature, const py::object& mask, const py::object& exclude,
                       const py::object& bias, int n_threads, const std::string& item_type,
                       const py::object& out_ids, const py::object& out_scores,
                       const py::object& out_probs_topk, const py::object& out_probs_full,
                       const py::object& out_log_normalizer, const std::string& isa) {
  const ItemType type = parse_item_type(item_type);
  const TopkIsa want_isa = parse_isa(isa);
  py::array E = checked_array(items, "items", item_kind(type), 2, {-1, -1});
  const int64_t N = E.shape(0), d = E.shape(1);
  if (N < 1 || d < 1) {
    throw std::invalid_argument("items: expected at least one item and one dimension, got shape " +
                                bind::shape_str(E));
  }
  py::array U = checked_array(users, "users", Kind::Float32, 2, {-1, d});
  const int64_t B = U.shape(0);
  if (B < 1) throw std::invalid_argument("users: expected at least one user, got shape " +
                                         bind::shape_str(U));
  if (k < 1 || k > N) {
    throw std::invalid_argument("k: expected 1 <= k <= " + std::to_string(N) +
                                " (the number of items), got " + std::to_string(k));
  }
  if (!(temperature > 0.0) || !std::isfinite(temperature) ||
      !std::isfinite(topk_detail::log2e_over(temperature))) {
    throw std::invalid_argument("temperature: expected a finite number > 0 (and > 1e-37), got " +
                                py::str(py::float_(temperature)).cast<std::string>());
  }
  bind::check_finite(static_cast<const float*>(U.data()), B * d, "users");

  py::array M, Bi;
  const uint8_t* mask_p = nullptr;
  bool mask_per_user = false;
  if (!mask.is_none()) {
    M = row_or_rows(mask, "mask", Kind::Bool, B, N);
    mask_p = static_cast<const uint8_t*>(M.data());
    mask_per_user = M.ndim() == 2;
  }
  Exclusions ex;
  const bool has_ex = !exclude.is_none();
  if (has_ex) ex = build_exclusions(exclude, B, N);
  const float* bias_p = nullptr;
  if (!bias.is_none()) {
    Bi = checked_array(bias, "bias", Kind::Float32, 1, {N});
    bias_p = static_cast<const float*>(Bi.data());
  }
  check_eligible(mask_p, mask_per_user, has_ex ? &ex : nullptr, B, N, k);

  auto ids = out_or_new<int64_t>(out_ids, "out.ids", Kind::Int64, {B, k});
  auto scores = out_or_new<float>(out_scores, "out.scores", Kind::Float32, {B, k});
  auto pt = out_or_new<double>(out_probs_topk, "out.probs_topk", Kind::Float64, {B, k});
  auto pf = out_or_new<double>(out_probs_full, "out.probs_full", Kind::Float64, {B, k});
  auto ln = out_or_new<double>(out_log_normalizer, "out.log_normalizer", Kind::Float64, {B});

  TopkArgs a;
  a.items = E.data();
  a.item_type = type;
  a.n_items = N;
  a.dim = d;
  a.users = static_cast<const float*>(U.data());
  a.n_users = B;
  a.k = k;
  a.temperature = temperature;
  a.bias = bias_p;
  a.mask = mask_p;
  a.mask_per_user = mask_per_user;
  if (has_ex) {
    a.excl_ids = ex.ids.data();
    a.excl_offsets = ex.offsets.data();
    a.excl_per_user = ex.per_user;
  }
  TopkOutputs o;
  o.ids = ids.mutable_data();
  o.scores = scores.mutable_data();
  o.probs_topk = pt.mutable_data();
  o.probs_full = pf.mutable_data();
  o.log_normalizer = ln.mutable_data();

  TopkStatus st;
  {
    py::gil_scoped_release nogil;
    st = promobandit::topk_softmax(a, o, n_threads, want_isa);
  }
  if (st.nonfinite_user >= 0) {
    // A non-finite score comes from a non-finite bias or item entry (users were
    // checked above), or from a dot product that overflows float32.
    if (bias_p != nullptr) bind::check_finite(bias_p, N, "bias");
    bool is_nan = false;
    const int64_t at = first_nonfinite_item(E, type, is_nan);
    if (at >= 0) {
      throw std::invalid_argument(std::string("items: expected finite values, found ") +
                                  (is_nan ? "nan" : "inf") + " at flat index " +
                                  std::to_string(at));
    }
    throw std::invalid_argument(
        "items: the score of item " + std::to_string(st.nonfinite_item) + " for user row " +
        std::to_string(st.nonfinite_user) +
        " overflows float32; expected embeddings whose dot products fit in float32");
  }
  if (st.short_user >= 0) {
    throw std::invalid_argument("mask: row " + std::to_string(st.short_user) +
                                " leaves fewer than k = " + std::to_string(k) +
                                " eligible items");
  }
  return py::make_tuple(ids, scores, pt, pf, ln);
}

}  // namespace

void bind_topk(py::module_& m) {
  m.def("topk_softmax", &topk_softmax_py,
        "Fused top-k softmax scoring of users (B, d) against items (N, d): returns "
        "(ids (B, k) int64, scores (B, k) float32, probs_topk (B, k) float64, "
        "probs_full (B, k) float64, log_normalizer (B,) float64). Items are float32, "
        "float16, or uint16 bfloat16 bits (item_type='bfloat16'); mask is (N,) or (B, N) "
        "bool; exclude is (m,) or (B, m) int64 (-1 pads 2-D rows); bias is (N,) float32.",
        py::arg("items"), py::arg("users"), py::arg("k"), py::arg("temperature") = 1.0,
        py::arg("mask") = py::none(), py::arg("exclude") = py::none(),
        py::arg("bias") = py::none(), py::arg("n_threads") = 0,
        py::arg("item_type") = "float32", py::arg("out_ids") = py::none(),
        py::arg("out_scores") = py::none(), py::arg("out_probs_topk") = py::none(),
        py::arg("out_probs_full") = py::none(), py::arg("out_log_normalizer") = py::none(),
        py::arg("isa") = "auto");
  m.def(
      "topk_isa", [] { return std::string(topk_isa_name(topk_best_isa())); },
      "The instruction set the top-k scorer uses on this CPU: 'avx512', 'avx2' or 'scalar'.");
  m.def(
      "topk_isa_supported",
      [](const std::string& isa) { return topk_isa_supported(parse_isa(isa)); },
      py::arg("isa"), "Whether this CPU can run the top-k scorer with the given instruction set.");
}
