// Binding of the conversion-model kernel (conversion.hpp): an adapter only. The kernel
// object holds views of the NumPy state owned by the Python policy
// (promobandit.policies.conversion), checks and converts every argument with the GIL
// held, then calls the header with the GIL released under its own (recursive) mutex.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstdint>
#include <mutex>
#include <string>

#include "checks.hpp"
#include "promobandit/conversion.hpp"

namespace py = pybind11;
using namespace promobandit;
using promobandit::bind::checked_array;
using promobandit::bind::Kind;

namespace {

std::string num(double v) { return py::str(py::float_(v)).cast<std::string>(); }

// (n, K, 4) quotes: finite, cuts >= 0.
const double* check_quotes(const py::object& obj, int64_t n, int64_t K, bool single,
                           py::object& keep) {
  if (obj.is_none()) {
    throw std::invalid_argument(single ? "quotes: required, the (K, 4) exact pricing of this request"
                                       : "quotes: required, the (n, K, 4) exact pricing of the requests");
  }
  py::array a = single ? checked_array(obj, "quotes", Kind::Float64, 2, {K, kNQuote})
                       : checked_array(obj, "quotes", Kind::Float64, 3, {n, K, kNQuote});
  keep = a;
  const double* q = static_cast<const double*>(a.data());
  for (int64_t i = 0; i < n * K * kNQuote; ++i) {
    if (!std::isfinite(q[i])) {
      throw std::invalid_argument("quotes: expected finite values, got " + num(q[i]) +
                                  " at flat index " + std::to_string(i));
    }
    if ((i % kNQuote) >= kQCutLead && q[i] < 0.0) {
      throw std::invalid_argument(
          "quotes: expected log price cuts >= 0 (columns 2 and 3: the price paid never exceeds "
          "the list price), got " + num(q[i]) + " at row " + std::to_string(i / (K * kNQuote)) +
          ", offer " + std::to_string((i / kNQuote) % K));
    }
  }
  return q;
}

const uint8_t* check_masks(const py::object& obj, int64_t n, int64_t K, bool single,
                           const uint8_t* active, py::object& keep) {
  const uint8_t* m = nullptr;
  if (!obj.is_none()) {
    py::array a = single ? checked_array(obj, "mask", Kind::Bool, 1, {K})
                         : checked_array(obj, "masks", Kind::Bool, 2, {n, K});
    keep = a;
    m = static_cast<const uint8_t*>(a.data());
  }
  for (int64_t i = 0; i < n; ++i) {
    bool any = false;
    for (int64_t k = 0; k < K && !any; ++k) any = active[k] && (m == nullptr || m[i * K + k]);
    if (!any) {
      throw std::invalid_argument(
          single ? std::string("mask: no eligible arm (every arm is masked out or removed); "
                               "expected at least one True among active arms")
                 : "masks: row " + std::to_string(i) +
                       " leaves no eligible arm (every arm masked out or removed)");
    }
  }
  return m;
}

const double* check_floats(const py::object& obj, const char* field, int ndim,
                           std::initializer_list<py::ssize_t> shape, int64_t count,
                           py::object& keep) {
  if (obj.is_none()) return nullptr;
  py::array a = checked_array(obj, field, Kind::Float64, ndim, shape);
  keep = a;
  const double* p = static_cast<const double*>(a.data());
  bind::check_finite(p, count, field);
  return p;
}

class ConvKernel {
 public:
  ConvKernel(double decay, double exploration, int64_t propensity_draws, const py::dict& arrays) {
    p_.decay = decay;
    p_.exploration = exploration;
    p_.propensity_draws = propensity_draws;
    set_arrays(arrays);
  }

  void rebind(const py::dict& arrays) {
    auto lock = exclusive();
    set_arrays(arrays);
  }

  void lock() { exclusive().release(); }
  void unlock() { mu_.unlock(); }
  int64_t n_arms() const { return s_.n_arms; }
  int64_t dim() const { return s_.dim; }

  py::tuple select(const py::object& context, const py::object& mask, const py::object& bias,
                   const py::object& quotes) {
    auto lock = exclusive();
    const int64_t K = s_.n_arms, d = s_.dim;
    py::object kx, km, kb, kq;
    if (context.is_none()) throw std::invalid_argument("context: required for a contextual policy");
    const double* x = check_floats(context, "context", 1, {d}, d, kx);
    const uint8_t* m = check_masks(mask, 1, K, true, s_.active, km);
    const double* b = check_floats(bias, "bias", 1, {K}, K, kb);
    const double* q = check_quotes(quotes, 1, K, true, kq);
    int64_t arm;
    double prop;
    {
      py::gil_scoped_release nogil;
      conv_select_batch(p_, s_, m, b, x, q, 1, &arm, &prop, ws_);
    }
    return py::make_tuple(arm, prop);
  }

  py::tuple select_batch(const py::object& contexts, const py::object& masks, py::object n_obj,
                         const py::object& out_arms, const py::object& out_props,
                         py::handle n_threads, const py::object& biases,
                         const py::object& quotes) {
    auto lock = exclusive();
    const int64_t K = s_.n_arms, d = s_.dim;
    const int64_t t = bind::to_index(n_threads, "n_threads");
    if (t < 0 || t > 1024) {
      throw std::invalid_argument("n_threads: expected 0 (all cores) to 1024, got " +
                                  std::to_string(t));
    }
    if (contexts.is_none()) throw std::invalid_argument("contexts: required for a contextual policy");
    py::array c = checked_array(contexts, "contexts", Kind::Float64, 2, {-1, d});
    const int64_t n = c.shape(0);
    if (!n_obj.is_none() && bind::to_index(n_obj, "n") != n) {
      throw std::invalid_argument("n: disagrees with the number of contexts");
    }
    const double* x = static_cast<const double*>(c.data());
    bind::check_finite(x, n * d, "contexts");
    py::object km, kb, kq;
    const uint8_t* m = check_masks(masks, n, K, false, s_.active, km);
    const double* b = check_floats(biases, "biases", 2, {n, K}, n * K, kb);
    const double* q = check_quotes(quotes, n, K, false, kq);
    py::array_t<int64_t> arms = out_arms.is_none()
        ? py::array_t<int64_t>(n)
        : py::reinterpret_borrow<py::array_t<int64_t>>(
              checked_array(out_arms, "out_arms", Kind::Int64, 1, {n}));
    py::array_t<double> props = out_props.is_none()
        ? py::array_t<double>(n)
        : py::reinterpret_borrow<py::array_t<double>>(
              checked_array(out_props, "out_props", Kind::Float64, 1, {n}));
    int64_t* pa = arms.mutable_data();
    double* pp = props.mutable_data();
    {
      py::gil_scoped_release nogil;
      conv_select_batch(p_, s_, m, b, x, q, n, pa, pp, ws_);
    }
    return py::make_tuple(arms, props);
  }

  void update(py::handle arm_obj, py::handle outcome_obj, const py::object& context,
              const py::object& cuts, py::handle weight_obj) {
    auto lock = exclusive();
    const int64_t arm = bind::to_index(arm_obj, "arm");
    bind::check_arm(arm, s_.n_arms);
    int64_t outcome;
    if (py::isinstance<py::array>(outcome_obj)) {
      py::array o = checked_array(py::reinterpret_borrow<py::object>(outcome_obj), "outcomes",
                                  Kind::Int64, 1, {1});
      outcome = *static_cast<const int64_t*>(o.data());
    } else {
      outcome = bind::to_index(outcome_obj, "outcome");
    }
    check_outcome(outcome, 0);
    const double weight = bind::to_double(weight_obj, "weight");
    bind::check_finite_scalar(weight, "weight");
    if (weight < 0.0) throw std::invalid_argument("weight: expected a weight >= 0, got " + num(weight));
    py::object kx, kc;
    if (context.is_none()) throw std::invalid_argument("context: required for a contextual policy");
    const double* x = check_floats(context, "context", 1, {s_.dim}, s_.dim, kx);
    const double* c = check_cuts(cuts, 1, kc);
    {
      py::gil_scoped_release nogil;
      conv_update_rows(p_, s_, &arm, &outcome, x, c, &weight, 1, ws_);
    }
  }

  void update_batch(const py::object& arms, const py::object& outcomes, const py::object& contexts,
                    const py::object& cuts, const py::object& weights) {
    auto lock = exclusive();
    py::array a = checked_array(arms, "arms", Kind::Int64, 1, {-1});
    const int64_t n = a.shape(0);
    const int64_t* pa = static_cast<const int64_t*>(a.data());
    for (int64_t i = 0; i < n; ++i) bind::check_arm(pa[i], s_.n_arms, "arms");
    py::array o = checked_array(outcomes, "outcomes", Kind::Int64, 1, {n});
    const int64_t* po = static_cast<const int64_t*>(o.data());
    for (int64_t i = 0; i < n; ++i) check_outcome(po[i], i);
    if (contexts.is_none()) throw std::invalid_argument("contexts: required for a contextual policy");
    py::object kx, kc, kw;
    const double* x = check_floats(contexts, "contexts", 2, {n, s_.dim}, n * s_.dim, kx);
    const double* c = check_cuts(cuts, n, kc);
    const double* w = check_floats(weights, "weights", 1, {n}, n, kw);
    if (w != nullptr) {
      for (int64_t i = 0; i < n; ++i) {
        if (w[i] < 0.0) throw std::invalid_argument("weights: expected finite weights >= 0");
      }
    }
    {
      py::gil_scoped_release nogil;
      conv_update_rows(p_, s_, pa, po, x, c, w, n, ws_);
    }
  }

  py::array_t<double> expectations(const py::object& contexts, const py::object& quotes) {
    auto lock = exclusive();
    if (contexts.is_none()) throw std::invalid_argument("contexts: required for a contextual policy");
    py::array c = checked_array(contexts, "contexts", Kind::Float64, 2, {-1, s_.dim});
    const int64_t n = c.shape(0), K = s_.n_arms;
    const double* x = static_cast<const double*>(c.data());
    bind::check_finite(x, n * s_.dim, "contexts");
    py::object kq;
    const double* q = check_quotes(quotes, n, K, false, kq);
    py::array_t<double> out({n, K});
    conv_expectations(s_, x, q, n, out.mutable_data(), ws_);
    return out;
  }

  py::array_t<double> action_probabilities(const py::object& contexts, const py::object& masks,
                                           py::handle draws_obj, py::handle /*n_threads*/,
                                           const py::object& biases, const py::object& quotes) {
    auto lock = exclusive();
    if (contexts.is_none()) throw std::invalid_argument("contexts: required for a contextual policy");
    py::array c = checked_array(contexts, "contexts", Kind::Float64, 2, {-1, s_.dim});
    const int64_t n = c.shape(0), K = s_.n_arms;
    const double* x = static_cast<const double*>(c.data());
    bind::check_finite(x, n * s_.dim, "contexts");
    py::object km, kb, kq;
    const uint8_t* m = check_masks(masks, n, K, false, s_.active, km);
    const double* b = check_floats(biases, "biases", 2, {n, K}, n * K, kb);
    const double* q = check_quotes(quotes, n, K, false, kq);
    const int64_t draws = bind::to_index(draws_obj, "draws");
    if (draws < 1) {
      throw std::invalid_argument("draws: Thompson sampling estimates its action distribution "
                                  "from posterior draws; expected draws >= 1");
    }
    py::array_t<double> out({n, K});
    double* o = out.mutable_data();
    {
      py::gil_scoped_release nogil;
      conv_action_probabilities(p_, s_, m, b, x, q, n, draws, o, ws_);
    }
    return out;
  }

 private:
  static void check_outcome(int64_t o, int64_t row) {
    if (o < 0 || o > 2) {
      throw std::invalid_argument("outcomes: expected 0 (no purchase), 1 (lead line) or 2 (whole "
                                  "basket), got " + std::to_string(o) + " at row " +
                                  std::to_string(row));
    }
  }

  static const double* check_cuts(const py::object& obj, int64_t n, py::object& keep) {
    if (obj.is_none()) throw std::invalid_argument("cuts: required, (cut_lead, cut_basket) of the chosen offer");
    py::array a = checked_array(obj, "cuts", Kind::Float64, 2, {n, 2});
    keep = a;
    const double* c = static_cast<const double*>(a.data());
    for (int64_t i = 0; i < 2 * n; ++i) {
      if (!std::isfinite(c[i]) || c[i] < 0.0) {
        throw std::invalid_argument("cuts: expected finite log price cuts >= 0 (lead, basket), got " +
                                    num(c[i]) + " at row " + std::to_string(i / 2));
      }
    }
    return c;
  }

  void set_arrays(const py::dict& arrays) {
    py::array active = checked_array(arrays["active"], "active", Kind::Bool, 1, {-1});
    const int64_t K = active.shape(0);
    py::array mu = checked_array(arrays["mu"], "mu", Kind::Float64, 2, {2, -1});
    const int64_t p = mu.shape(1);
    const int64_t d = (p - 1 - K) / 2;
    if (d < 1 || 2 * d + 1 + K != p) {
      throw std::invalid_argument("mu: expected (2, 2 d + 1 + K) with K = " + std::to_string(K));
    }
    py::array Sigma = checked_array(arrays["Sigma"], "Sigma", Kind::Float64, 3, {2, p, p});
    py::array n = checked_array(arrays["n"], "n", Kind::Float64, 1, {K});
    py::array counters = checked_array(arrays["counters"], "counters", Kind::Int64, 1, {kNumCounters});
    keep_ = py::make_tuple(active, mu, Sigma, n, counters);
    s_.n_arms = K;
    s_.dim = d;
    s_.active = static_cast<uint8_t*>(active.mutable_data());
    s_.mu = static_cast<double*>(mu.mutable_data());
    s_.Sigma = static_cast<double*>(Sigma.mutable_data());
    s_.n = static_cast<double*>(n.mutable_data());
    s_.counters = static_cast<int64_t*>(counters.mutable_data());
    p_.seed = static_cast<uint64_t>(s_.counters[kCtrSeed]);
    ws_.reset(K, p);
  }

  // Holds the mutex while the GIL is held: no mutex holder ever waits for the GIL.
  std::unique_lock<std::recursive_mutex> exclusive() {
    std::unique_lock<std::recursive_mutex> lock(mu_, std::defer_lock);
    if (!lock.try_lock()) {
      py::gil_scoped_release nogil;
      lock.lock();
    }
    return lock;
  }

  ConvParams p_;
  ConvState s_;
  ConvWorkspace ws_;
  py::object keep_;
  std::recursive_mutex mu_;
};

}  // namespace

void bind_conversion(py::module_& m) {
  py::class_<ConvKernel>(m, "ConvKernel",
                         "Conversion-model Thompson sampling kernel over views of NumPy state; "
                         "calls are serialised by an internal mutex and run without the GIL")
      .def(py::init<double, double, int64_t, py::dict>(), py::arg("decay"),
           py::arg("exploration"), py::arg("propensity_draws"), py::arg("arrays"))
      .def("select", &ConvKernel::select, py::arg("context") = py::none(),
           py::arg("mask") = py::none(), py::arg("bias") = py::none(),
           py::arg("quotes") = py::none(), "select(context, mask, bias, quotes) -> (arm, propensity)")
      .def("select_batch", &ConvKernel::select_batch, py::arg("contexts") = py::none(),
           py::arg("masks") = py::none(), py::arg("n") = py::none(),
           py::arg("out_arms") = py::none(), py::arg("out_props") = py::none(),
           py::arg("n_threads") = 1, py::arg("biases") = py::none(),
           py::arg("quotes") = py::none())
      .def("update", &ConvKernel::update, py::arg("arm"), py::arg("outcome"),
           py::arg("context") = py::none(), py::arg("cuts") = py::none(),
           py::arg("weight") = 1.0)
      .def("update_batch", &ConvKernel::update_batch, py::arg("arms"), py::arg("outcomes"),
           py::arg("contexts") = py::none(), py::arg("cuts") = py::none(),
           py::arg("weights") = py::none())
      .def("expectations", &ConvKernel::expectations, py::arg("contexts"), py::arg("quotes"))
      .def("action_probabilities", &ConvKernel::action_probabilities, py::arg("contexts"),
           py::arg("masks") = py::none(), py::arg("draws") = 1000, py::arg("n_threads") = 1,
           py::arg("biases") = py::none(), py::arg("quotes") = py::none())
      .def("rebind", &ConvKernel::rebind, py::arg("arrays"))
      .def("lock", &ConvKernel::lock)
      .def("unlock", &ConvKernel::unlock)
      .def_property_readonly("n_arms", &ConvKernel::n_arms)
      .def_property_readonly("dim", &ConvKernel::dim);
}
