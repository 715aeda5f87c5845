// Bindings of the bandit kernels. A kernel object holds views of NumPy arrays
// owned by the Python policy (state is data: the Python side saves, loads,
// merges and resizes it), checks every argument, then runs with the GIL released.
// Kernel objects are not thread-safe: the Python policy serialises calls.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <string>
#include <vector>

#include "checks.hpp"
#include "promobandit/linear.hpp"
#include "promobandit/multiarmed.hpp"

namespace py = pybind11;
using namespace promobandit;
using promobandit::bind::checked_array;
using promobandit::bind::Kind;

namespace {

template <class T>
T* ptr(py::array& a) {
  return static_cast<T*>(a.mutable_data());
}

void check_reward(bool unit_interval, double r, const char* field) {
  bind::check_finite_scalar(r, field);
  if (unit_interval && (r < 0.0 || r > 1.0)) {
    throw std::invalid_argument(std::string(field) +
                                ": Beta-Bernoulli Thompson sampling takes rewards in [0, 1], got " +
                                py::str(py::float_(r)).cast<std::string>());
  }
}

void check_weight(double w, const char* field) {
  bind::check_finite_scalar(w, field);
  if (w < 0.0) {
    throw std::invalid_argument(std::string(field) + ": expected a weight >= 0, got " +
                                py::str(py::float_(w)).cast<std::string>());
  }
}

// Optional (n, K) bool masks; returns nullptr for None. Every row needs an eligible arm.
const uint8_t* check_masks(const py::object& masks, int64_t n, int64_t K, const uint8_t* active,
                           py::array& keep) {
  if (masks.is_none()) return nullptr;
  keep = checked_array(masks, "masks", Kind::Bool, 2, {n, K});
  const uint8_t* m = static_cast<const uint8_t*>(keep.data());
  for (int64_t i = 0; i < n; ++i) {
    bool any = false;
    for (int64_t a = 0; a < K && !any; ++a) any = m[i * K + a] && active[a];
    if (!any) {
      throw std::invalid_argument("masks: row " + std::to_string(i) +
                                  " leaves no eligible arm (every arm masked out or removed)");
    }
  }
  return m;
}

const uint8_t* check_mask(const py::object& mask, int64_t K, const uint8_t* active, py::array& keep) {
  const uint8_t* m = nullptr;
  if (!mask.is_none()) {
    keep = checked_array(mask, "mask", Kind::Bool, 1, {K});
    m = static_cast<const uint8_t*>(keep.data());
  }
  for (int64_t a = 0; a < K; ++a) {
    if (active[a] && (m == nullptr || m[a])) return m;
  }
  throw std::invalid_argument(
      "mask: no eligible arm (every arm is masked out or removed); expected at least one True "
      "among active arms");
}

// (n,) output buffer: the given one after checks, or a new array.
template <class T>
py::array_t<T> out_buffer(const py::object& out, int64_t n, const char* field, Kind k) {
  if (out.is_none()) return py::array_t<T>(n);
  py::array a = checked_array(out, field, k, 1, {n});
  return py::reinterpret_borrow<py::array_t<T>>(a);
}

class MabKernel {
 public:
  MabKernel(int kind, double decay, std::vector<double> hyper, int64_t propensity_draws,
            int64_t propensity_refresh, uint64_t seed, py::object stats, py::object active,
            py::object counters, py::object prop_cache, py::object prop_mask) {
    if (kind < kBetaTS || kind > kSoftmax) throw std::invalid_argument("kind: unknown policy kind");
    if (hyper.size() > 4) throw std::invalid_argument("hyper: at most 4 hyperparameters");
    p_.kind = kind;
    p_.decay = decay;
    for (size_t i = 0; i < hyper.size(); ++i) p_.p[i] = hyper[i];
    p_.propensity_draws = propensity_draws;
    p_.propensity_refresh = propensity_refresh < 1 ? 1 : propensity_refresh;
    p_.seed = seed;
    stats_ = checked_array(stats, "stats", Kind::Float64, 2, {-1, 3});
    const int64_t K = stats_.shape(0);
    active_ = checked_array(active, "active", Kind::Bool, 1, {K});
    counters_ = checked_array(counters, "counters", Kind::Int64, 1, {kNumCounters});
    cache_ = checked_array(prop_cache, "prop_cache", Kind::Float64, 1, {K});
    pmask_ = checked_array(prop_mask, "prop_mask", Kind::Bool, 1, {K});
    s_.n_arms = K;
    s_.stats = ptr<double>(stats_);
    s_.active = ptr<uint8_t>(active_);
    s_.counters = ptr<int64_t>(counters_);
    s_.prop_cache = ptr<double>(cache_);
    s_.prop_mask = ptr<uint8_t>(pmask_);
  }

  py::tuple select(const py::object& /*context*/, const py::object& mask) {
    py::array keep;
    const uint8_t* m = check_mask(mask, s_.n_arms, s_.active, keep);
    std::pair<int64_t, double> r;
    {
      py::gil_scoped_release nogil;
      r = mab_select(p_, s_, m);
    }
    return py::make_tuple(r.first, r.second);
  }

  py::tuple select_batch(const py::object& /*contexts*/, const py::object& masks, py::object n_obj,
                         const py::object& out_arms, const py::object& out_props) {
    int64_t n = -1;
    if (!n_obj.is_none()) n = n_obj.cast<int64_t>();
    if (!masks.is_none() && n < 0) {
      py::array a = checked_array(masks, "masks", Kind::Bool, 2, {-1, s_.n_arms});
      n = a.shape(0);
    }
    if (n < 0) throw std::invalid_argument("n: give the number of decisions or masks of shape (n, K)");
    py::array keep;
    const uint8_t* m = check_masks(masks, n, s_.n_arms, s_.active, keep);
    if (m == nullptr) {
      py::array none;
      check_mask(py::none(), s_.n_arms, s_.active, none);
    }
    auto arms = out_buffer<int64_t>(out_arms, n, "out_arms", Kind::Int64);
    auto props = out_buffer<double>(out_props, n, "out_props", Kind::Float64);
    int64_t* pa = arms.mutable_data();
    double* pp = props.mutable_data();
    const int64_t K = s_.n_arms;
    {
      py::gil_scoped_release nogil;
      for (int64_t i = 0; i < n; ++i) {
        auto r = mab_select(p_, s_, m ? m + i * K : nullptr);
        pa[i] = r.first;
        pp[i] = r.second;
      }
    }
    return py::make_tuple(arms, props);
  }

  void update(py::handle arm_obj, py::handle reward_obj, const py::object& /*context*/,
              py::handle weight_obj) {
    const int64_t arm = bind::to_index(arm_obj, "arm");
    const double reward = bind::to_double(reward_obj, "reward");
    const double weight = bind::to_double(weight_obj, "weight");
    bind::check_arm(arm, s_.n_arms);
    check_reward(p_.kind == kBetaTS, reward, "reward");
    check_weight(weight, "weight");
    py::gil_scoped_release nogil;
    mab_update(p_, s_, arm, reward, weight);
  }

  void update_batch(const py::object& arms, const py::object& rewards, const py::object& /*contexts*/,
                    const py::object& weights) {
    py::array a = checked_array(arms, "arms", Kind::Int64, 1, {-1});
    const int64_t n = a.shape(0);
    py::array r = checked_array(rewards, "rewards", Kind::Float64, 1, {n});
    py::array w;
    const int64_t* pa = static_cast<const int64_t*>(a.data());
    const double* pr = static_cast<const double*>(r.data());
    const double* pw = nullptr;
    if (!weights.is_none()) {
      w = checked_array(weights, "weights", Kind::Float64, 1, {n});
      pw = static_cast<const double*>(w.data());
    }
    // Check every row before touching state: a rejected batch changes nothing.
    for (int64_t i = 0; i < n; ++i) {
      bind::check_arm(pa[i], s_.n_arms, "arms");
      check_reward(p_.kind == kBetaTS, pr[i], "rewards");
      if (pw) check_weight(pw[i], "weights");
    }
    py::gil_scoped_release nogil;
    for (int64_t i = 0; i < n; ++i) mab_update(p_, s_, pa[i], pr[i], pw ? pw[i] : 1.0);
  }

  py::array_t<double> expectations() {
    py::array_t<double> out(s_.n_arms);
    double* o = out.mutable_data();
    for (int64_t a = 0; a < s_.n_arms; ++a) o[a] = mab_expectation(p_, s_, a);
    return out;
  }

  int64_t n_arms() const { return s_.n_arms; }

 private:
  MabParams p_;
  MabState s_;
  py::array stats_, active_, counters_, cache_, pmask_;
};

class LinKernel {
 public:
  LinKernel(int kind, double decay, double exploration, double ridge, int64_t refresh_every,
            int64_t propensity_draws, uint64_t seed, py::object A, py::object A_inv, py::object b,
            py::object theta, py::object n, py::object since_refresh, py::object active,
            py::object counters) {
    if (kind != kLinUCB && kind != kLinTS) throw std::invalid_argument("kind: unknown policy kind");
    p_.kind = kind;
    p_.decay = decay;
    p_.exploration = exploration;
    p_.ridge = ridge;
    p_.refresh_every = refresh_every < 1 ? 1 : refresh_every;
    p_.propensity_draws = propensity_draws;
    p_.seed = seed;
    A_ = checked_array(A, "A", Kind::Float64, 3, {-1, -1, -1});
    const int64_t K = A_.shape(0), d = A_.shape(1);
    A_ = checked_array(A, "A", Kind::Float64, 3, {K, d, d});
    Ai_ = checked_array(A_inv, "A_inv", Kind::Float64, 3, {K, d, d});
    b_ = checked_array(b, "b", Kind::Float64, 2, {K, d});
    theta_ = checked_array(theta, "theta", Kind::Float64, 2, {K, d});
    n_ = checked_array(n, "n", Kind::Float64, 1, {K});
    since_ = checked_array(since_refresh, "since_refresh", Kind::Int64, 1, {K});
    active_ = checked_array(active, "active", Kind::Bool, 1, {K});
    counters_ = checked_array(counters, "counters", Kind::Int64, 1, {kNumCounters});
    s_.n_arms = K;
    s_.dim = d;
    s_.A = ptr<double>(A_);
    s_.A_inv = ptr<double>(Ai_);
    s_.b = ptr<double>(b_);
    s_.theta = ptr<double>(theta_);
    s_.n = ptr<double>(n_);
    s_.since_refresh = ptr<int64_t>(since_);
    s_.active = ptr<uint8_t>(active_);
    s_.counters = ptr<int64_t>(counters_);
    mean_.resize(K);
    var_.resize(K);
    u_.resize(d);
    work_.resize(2 * d * d);
  }

  py::tuple select(const py::object& context, const py::object& mask) {
    const double* x = check_context(context, "context");
    py::array keep;
    const uint8_t* m = check_mask(mask, s_.n_arms, s_.active, keep);
    std::pair<int64_t, double> r;
    {
      py::gil_scoped_release nogil;
      auto w = scratch();
      r = lin_select(p_, s_, m, x, w);
    }
    return py::make_tuple(r.first, r.second);
  }

  py::tuple select_batch(const py::object& contexts, const py::object& masks, py::object n_obj,
                         const py::object& out_arms, const py::object& out_props) {
    if (contexts.is_none()) throw std::invalid_argument("contexts: required for a contextual policy");
    py::array c = checked_array(contexts, "contexts", Kind::Float64, 2, {-1, s_.dim});
    const int64_t n = c.shape(0);
    if (!n_obj.is_none() && n_obj.cast<int64_t>() != n) {
      throw std::invalid_argument("n: disagrees with the number of contexts");
    }
    const double* px = static_cast<const double*>(c.data());
    bind::check_finite(px, n * s_.dim, "contexts");
    py::array keep;
    const uint8_t* m = check_masks(masks, n, s_.n_arms, s_.active, keep);
    if (m == nullptr) {
      py::array none;
      check_mask(py::none(), s_.n_arms, s_.active, none);
    }
    auto arms = out_buffer<int64_t>(out_arms, n, "out_arms", Kind::Int64);
    auto props = out_buffer<double>(out_props, n, "out_props", Kind::Float64);
    int64_t* pa = arms.mutable_data();
    double* pp = props.mutable_data();
    const int64_t K = s_.n_arms, d = s_.dim;
    {
      py::gil_scoped_release nogil;
      auto w = scratch();
      for (int64_t i = 0; i < n; ++i) {
        auto r = lin_select(p_, s_, m ? m + i * K : nullptr, px + i * d, w);
        pa[i] = r.first;
        pp[i] = r.second;
      }
    }
    return py::make_tuple(arms, props);
  }

  void update(py::handle arm_obj, py::handle reward_obj, const py::object& context,
              py::handle weight_obj) {
    const int64_t arm = bind::to_index(arm_obj, "arm");
    const double reward = bind::to_double(reward_obj, "reward");
    const double weight = bind::to_double(weight_obj, "weight");
    bind::check_arm(arm, s_.n_arms);
    check_reward(false, reward, "reward");
    check_weight(weight, "weight");
    const double* x = check_context(context, "context");
    py::gil_scoped_release nogil;
    auto w = scratch();
    lin_update(p_, s_, arm, reward, x, weight, w);
  }

  void update_batch(const py::object& arms, const py::object& rewards, const py::object& contexts,
                    const py::object& weights) {
    py::array a = checked_array(arms, "arms", Kind::Int64, 1, {-1});
    const int64_t n = a.shape(0), d = s_.dim;
    py::array r = checked_array(rewards, "rewards", Kind::Float64, 1, {n});
    if (contexts.is_none()) throw std::invalid_argument("contexts: required for a contextual policy");
    py::array c = checked_array(contexts, "contexts", Kind::Float64, 2, {n, d});
    const int64_t* pa = static_cast<const int64_t*>(a.data());
    const double* pr = static_cast<const double*>(r.data());
    const double* px = static_cast<const double*>(c.data());
    bind::check_finite(px, n * d, "contexts");
    py::array w;
    const double* pw = nullptr;
    if (!weights.is_none()) {
      w = checked_array(weights, "weights", Kind::Float64, 1, {n});
      pw = static_cast<const double*>(w.data());
    }
    for (int64_t i = 0; i < n; ++i) {
      bind::check_arm(pa[i], s_.n_arms, "arms");
      check_reward(false, pr[i], "rewards");
      if (pw) check_weight(pw[i], "weights");
    }
    py::gil_scoped_release nogil;
    auto ws = scratch();
    for (int64_t i = 0; i < n; ++i) lin_update(p_, s_, pa[i], pr[i], px + i * d, pw ? pw[i] : 1.0, ws);
  }

  // theta_a . x for every arm: (K,) for one context, (n, K) for a batch.
  py::array_t<double> expectations(const py::object& contexts) {
    if (contexts.is_none()) throw std::invalid_argument("contexts: required for a contextual policy");
    py::array c = py::array::ensure(contexts);
    const bool single = c && c.ndim() == 1;
    c = checked_array(contexts, "contexts", Kind::Float64, single ? 1 : 2,
                      single ? std::initializer_list<py::ssize_t>{s_.dim}
                             : std::initializer_list<py::ssize_t>{-1, s_.dim});
    const int64_t n = single ? 1 : c.shape(0), K = s_.n_arms, d = s_.dim;
    const double* px = static_cast<const double*>(c.data());
    bind::check_finite(px, n * d, "contexts");
    py::array_t<double> out = single ? py::array_t<double>(K) : py::array_t<double>({n, K});
    double* o = out.mutable_data();
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t a = 0; a < K; ++a) o[i * K + a] = dot(s_.theta + a * d, px + i * d, d);
    }
    return out;
  }

  // Exact refresh of every arm (after a load or merge changed A and b).
  void refresh_all() {
    py::gil_scoped_release nogil;
    for (int64_t a = 0; a < s_.n_arms; ++a) lin_refresh_arm(s_, a, work_.data());
  }

  int64_t n_arms() const { return s_.n_arms; }
  int64_t dim() const { return s_.dim; }

 private:
  LinScratch scratch() { return LinScratch{mean_.data(), var_.data(), u_.data(), work_.data()}; }

  const double* check_context(const py::object& context, const char* field) {
    if (context.is_none()) {
      throw std::invalid_argument(std::string(field) + ": required for a contextual policy");
    }
    ctx_keep_ = checked_array(context, field, Kind::Float64, 1, {s_.dim});
    const double* x = static_cast<const double*>(ctx_keep_.data());
    bind::check_finite(x, s_.dim, field);
    return x;
  }

  LinParams p_;
  LinState s_;
  py::array A_, Ai_, b_, theta_, n_, since_, active_, counters_, ctx_keep_;
  std::vector<double> mean_, var_, u_, work_;
};

}  // namespace

void bind_policies(py::module_& m) {
  py::class_<MabKernel>(m, "MabKernel", "Non-contextual bandit kernel over views of NumPy state")
      .def(py::init<int, double, std::vector<double>, int64_t, int64_t, uint64_t, py::object,
                    py::object, py::object, py::object, py::object>(),
           py::arg("kind"), py::arg("decay"), py::arg("hyper"), py::arg("propensity_draws"),
           py::arg("propensity_refresh"), py::arg("seed"), py::arg("stats"), py::arg("active"),
           py::arg("counters"), py::arg("prop_cache"), py::arg("prop_mask"))
      .def("select", &MabKernel::select, py::arg("context") = py::none(), py::arg("mask") = py::none())
      .def("select_batch", &MabKernel::select_batch, py::arg("contexts") = py::none(),
           py::arg("masks") = py::none(), py::arg("n") = py::none(),
           py::arg("out_arms") = py::none(), py::arg("out_props") = py::none())
      .def("update", &MabKernel::update, py::arg("arm"), py::arg("reward"),
           py::arg("context") = py::none(), py::arg("weight") = 1.0)
      .def("update_batch", &MabKernel::update_batch, py::arg("arms"), py::arg("rewards"),
           py::arg("contexts") = py::none(), py::arg("weights") = py::none())
      .def("expectations", &MabKernel::expectations)
      .def_property_readonly("n_arms", &MabKernel::n_arms);

  py::class_<LinKernel>(m, "LinKernel", "Disjoint linear bandit kernel over views of NumPy state")
      .def(py::init<int, double, double, double, int64_t, int64_t, uint64_t, py::object, py::object,
                    py::object, py::object, py::object, py::object, py::object, py::object>(),
           py::arg("kind"), py::arg("decay"), py::arg("exploration"), py::arg("ridge"),
           py::arg("refresh_every"), py::arg("propensity_draws"), py::arg("seed"), py::arg("A"),
           py::arg("A_inv"), py::arg("b"), py::arg("theta"), py::arg("n"),
           py::arg("since_refresh"), py::arg("active"), py::arg("counters"))
      .def("select", &LinKernel::select, py::arg("context") = py::none(), py::arg("mask") = py::none())
      .def("select_batch", &LinKernel::select_batch, py::arg("contexts") = py::none(),
           py::arg("masks") = py::none(), py::arg("n") = py::none(),
           py::arg("out_arms") = py::none(), py::arg("out_props") = py::none())
      .def("update", &LinKernel::update, py::arg("arm"), py::arg("reward"),
           py::arg("context") = py::none(), py::arg("weight") = 1.0)
      .def("update_batch", &LinKernel::update_batch, py::arg("arms"), py::arg("rewards"),
           py::arg("contexts") = py::none(), py::arg("weights") = py::none())
      .def("expectations", &LinKernel::expectations, py::arg("contexts"))
      .def("refresh_all", &LinKernel::refresh_all)
      .def_property_readonly("n_arms", &LinKernel::n_arms)
      .def_property_readonly("dim", &LinKernel::dim);
}
