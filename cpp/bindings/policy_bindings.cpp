// Bindings of the bandit kernels: adapters only. A kernel object holds views of
// NumPy arrays owned by the Python policy (state is data: the Python side saves,
// loads, merges and resizes it), checks and converts every argument, then calls the
// header's function (multiarmed.hpp, linear.hpp) with the GIL released; every loop
// over rows, arms or threads lives in the headers.
//
// Threads: a kernel serialises its calls with its own mutex, so the Python policy
// can expose the bound methods directly (no Python frame or lock per request).
// Arguments are checked with the GIL held; the state they were checked against
// changes only in rebind(), which holds both the GIL and the mutex and bumps a
// generation counter, so a call that finds the generation changed when it gets
// the mutex checks its arguments again.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "checks.hpp"
#include "promobandit/linear.hpp"
#include "promobandit/multiarmed.hpp"
#include "promobandit/state.hpp"

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

// 0: count wins over posterior draws; 1: exact by quadrature (state.hpp's PropensityMethod).
int check_method(int method) {
  if (method != kPropensityDraws && method != kPropensityQuadrature) {
    throw std::invalid_argument("propensity_method: expected 0 (draws) or 1 (quadrature), got " +
                                std::to_string(method));
  }
  return method;
}

void check_weight(double w, const char* field) {
  bind::check_finite_scalar(w, field);
  if (w < 0.0) {
    throw std::invalid_argument(std::string(field) + ": expected a weight >= 0, got " +
                                py::str(py::float_(w)).cast<std::string>());
  }
}

// One update's arm, reward and weight, converted and checked (arm in range, reward finite
// and in [0, 1] where unit_interval, weight finite and >= 0): the update methods' and their
// fast paths' common first step.
struct ScalarUpdate {
  int64_t arm = -1;
  double reward = 0.0, weight = 0.0;
};

ScalarUpdate check_scalar_update(py::handle arm_obj, py::handle reward_obj,
                                 py::handle weight_obj, int64_t n_arms, bool unit_interval) {
  ScalarUpdate u;
  u.arm = bind::to_index(arm_obj, "arm");
  u.reward = bind::to_double(reward_obj, "reward");
  u.weight = bind::to_double(weight_obj, "weight");
  bind::check_arm(u.arm, n_arms);
  check_reward(unit_interval, u.reward, "reward");
  check_weight(u.weight, "weight");
  return u;
}

// Optional (n, K) bool masks; returns nullptr for None. Every row needs an eligible arm.
const uint8_t* check_masks(const py::object& masks, int64_t n, int64_t K, const uint8_t* active,
                           py::object& keep) {
  if (masks.is_none()) return nullptr;
  py::array arr = checked_array(masks, "masks", Kind::Bool, 2, {n, K});
  keep = arr;
  const uint8_t* m = static_cast<const uint8_t*>(arr.data());
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

const uint8_t* check_mask(const py::object& mask, int64_t K, const uint8_t* active, py::object& keep) {
  const uint8_t* m = nullptr;
  if (!mask.is_none()) {
    py::array arr = checked_array(mask, "mask", Kind::Bool, 1, {K});
    keep = arr;
    m = static_cast<const uint8_t*>(arr.data());
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

// Optional per-arm score adjustments: (K,) for one request, (n, K) for a batch.
const double* check_bias(const py::object& bias, int64_t K, py::object& keep) {
  if (bias.is_none()) return nullptr;
  py::array arr = checked_array(bias, "bias", Kind::Float64, 1, {K});
  keep = arr;
  const double* b = static_cast<const double*>(arr.data());
  bind::check_finite(b, K, "bias");
  return b;
}

const double* check_biases(const py::object& biases, int64_t n, int64_t K, py::object& keep) {
  if (biases.is_none()) return nullptr;
  py::array arr = checked_array(biases, "biases", Kind::Float64, 2, {n, K});
  keep = arr;
  const double* b = static_cast<const double*>(arr.data());
  bind::check_finite(b, n * K, "biases");
  return b;
}

int check_threads(py::handle n_threads) {
  const int64_t t = bind::to_index(n_threads, "n_threads");
  if (t < 0 || t > 1024) {
    throw std::invalid_argument("n_threads: expected 0 (all cores) to 1024, got " +
                                std::to_string(t));
  }
  return static_cast<int>(t);
}

// The per-row arguments every select_batch takes, checked the same way.
struct BatchArgs {
  const uint8_t* m = nullptr;
  const double* b = nullptr;
  py::object keep_m, keep_b;
  py::array_t<int64_t> arms;
  py::array_t<double> props;
  int64_t n = 0;
  int threads = 1;

  // Masks (n, K) leaving an eligible arm in every row (or none) and biases (n, K).
  void check_rows(int64_t rows, const py::object& masks, const py::object& biases, int64_t K,
                  const uint8_t* active) {
    n = rows;
    m = check_masks(masks, n, K, active, keep_m);
    if (m == nullptr) {
      py::object none;
      check_mask(py::none(), K, active, none);
    }
    b = check_biases(biases, n, K, keep_b);
  }

  void check(int64_t rows, const py::object& masks, const py::object& biases,
             const py::object& out_arms, const py::object& out_props, py::handle n_threads,
             int64_t K, const uint8_t* active) {
    check_rows(rows, masks, biases, K, active);
    arms = out_buffer<int64_t>(out_arms, n, "out_arms", Kind::Int64);
    props = out_buffer<double>(out_props, n, "out_props", Kind::Float64);
    threads = check_threads(n_threads);
  }
};

// The arguments every update_batch takes (arms, rewards, optional weights), checked
// row by row before anything is applied: a rejected batch changes nothing.
struct UpdateArgs {
  py::object keep_a, keep_r, keep_w;
  const int64_t* pa = nullptr;
  const double* pr = nullptr;
  const double* pw = nullptr;
  int64_t n = 0;

  void check(const py::object& arms, const py::object& rewards, const py::object& weights,
             int64_t K, bool unit_rewards) {
    py::array a = checked_array(arms, "arms", Kind::Int64, 1, {-1});
    n = a.shape(0);
    py::array r = checked_array(rewards, "rewards", Kind::Float64, 1, {n});
    keep_a = a;
    keep_r = r;
    pa = static_cast<const int64_t*>(a.data());
    pr = static_cast<const double*>(r.data());
    if (!weights.is_none()) {
      py::array w = checked_array(weights, "weights", Kind::Float64, 1, {n});
      keep_w = w;
      pw = static_cast<const double*>(w.data());
    }
    for (int64_t i = 0; i < n; ++i) {
      bind::check_arm(pa[i], K, "arms");
      check_reward(unit_rewards, pr[i], "rewards");
      if (pw) check_weight(pw[i], "weights");
    }
  }
};

// The mutex and generation logic shared by both kernels.
class Guarded {
 public:
  // Python-side structural changes (merge, remove_arm, state_dict) hold the mutex
  // across several steps; it is recursive so kernel calls from that thread pass.
  void lock() { exclusive().release(); }
  void unlock() { mu_.unlock(); }

 protected:
  // Runs check() with the GIL held, then compute(checked) with the GIL released
  // and the mutex held; repeats the check if a rebind slipped in between.
  template <class Check, class Compute>
  auto guarded(Check&& check, Compute&& compute) {
    for (;;) {
      auto checked = check();
      const uint64_t gen = gen_;
      py::gil_scoped_release nogil;
      std::lock_guard<std::recursive_mutex> lock(mu_);
      if (gen == gen_) return compute(checked);
    }
  }

  // Holds the mutex while the GIL is held: safe because no mutex holder ever
  // waits for the GIL.
  std::unique_lock<std::recursive_mutex> exclusive() {
    std::unique_lock<std::recursive_mutex> lock(mu_, std::defer_lock);
    if (!lock.try_lock()) {
      py::gil_scoped_release nogil;
      lock.lock();
    }
    return lock;
  }

  std::recursive_mutex mu_;
  uint64_t gen_ = 0;
};

class MabKernel : public Guarded {
 public:
  MabKernel(int kind, double decay, std::vector<double> hyper, int64_t propensity_draws,
            int64_t propensity_refresh, const py::dict& arrays, int propensity_method,
            bool first_on_ties, bool matching, double propensity_tolerance) {
    if (!is_mab_kind(kind)) throw std::invalid_argument("kind: unknown policy kind");
    if (hyper.size() > 4) throw std::invalid_argument("hyper: at most 4 hyperparameters");
    p_.kind = kind;
    p_.decay = decay;
    for (size_t i = 0; i < hyper.size(); ++i) p_.p[i] = hyper[i];
    p_.propensity_draws = propensity_draws;
    p_.propensity_refresh = propensity_refresh < 1 ? 1 : propensity_refresh;
    p_.propensity_method = check_method(propensity_method);
    p_.first_on_ties = first_on_ties;
    if (matching && !(kind == kBetaTS && p_.propensity_method == kPropensityQuadrature)) {
      throw std::invalid_argument("matching: probability matching is Beta TS with "
                                  "propensity_method=\"quadrature\" only");
    }
    if (!(propensity_tolerance >= 0.0) || !std::isfinite(propensity_tolerance)) {
      throw std::invalid_argument("propensity_tolerance: expected a finite number >= 0");
    }
    p_.matching = matching;
    p_.propensity_tolerance = propensity_tolerance;
    set_arrays(arrays);
  }

  // Replaces the state arrays atomically with respect to every other call.
  void rebind(const py::dict& arrays) {
    auto lock = exclusive();
    set_arrays(arrays);
    ++gen_;
  }

  py::tuple select(const py::object& /*context*/, const py::object& mask, const py::object& bias) {
    struct Checked {
      const uint8_t* m;
      const double* b;
      py::object keep_m, keep_b;  // null handles: an empty py::array would allocate
    };
    auto r = guarded(
        [&] {
          Checked c;
          c.m = check_mask(mask, s_.n_arms, s_.active, c.keep_m);
          c.b = check_bias(bias, s_.n_arms, c.keep_b);
          return c;
        },
        [&](const Checked& c) { return mab_select(p_, s_, c.m, c.b); });
    return py::make_tuple(r.first, r.second);
  }

  py::tuple select_batch(const py::object& /*contexts*/, const py::object& masks, py::object n_obj,
                         const py::object& out_arms, const py::object& out_props,
                         py::handle n_threads, const py::object& biases) {
    using Checked = BatchArgs;
    Checked out = guarded(
        [&] {
          Checked c;
          int64_t n = n_obj.is_none() ? -1 : bind::to_index(n_obj, "n");
          if (!masks.is_none() && n < 0) {
            n = checked_array(masks, "masks", Kind::Bool, 2, {-1, s_.n_arms}).shape(0);
          }
          if (n < 0) {
            throw std::invalid_argument("n: give the number of decisions or masks of shape (n, K)");
          }
          c.check(n, masks, biases, out_arms, out_props, n_threads, s_.n_arms, s_.active);
          return c;
        },
        [&](Checked& c) {
          mab_select_batch(p_, s_, c.m, c.b, c.n, c.threads, c.arms.mutable_data(),
                           c.props.mutable_data());
          return std::move(c);
        });
    return py::make_tuple(out.arms, out.props);
  }

  void update(py::handle arm_obj, py::handle reward_obj, const py::object& /*context*/,
              py::handle weight_obj) {
    guarded(
        [&] {
          return check_scalar_update(arm_obj, reward_obj, weight_obj, s_.n_arms,
                                     p_.kind == kBetaTS);
        },
        [&](const ScalarUpdate& c) {
          mab_update(p_, s_, c.arm, c.reward, c.weight);
          return 0;
        });
  }

  // The fast path of the checked single update (policies._multiarmed:
  // MultiArmedPolicy._make_fast_update) in one native call: an update in the kernel's own
  // form whose magnitude keeps box[0], the running bound on the arms' sums, at most
  // `limit` (box[0] + |w| max(|r|, 1)^2) is applied and box[0] raised; returns true. False
  // changes nothing and leaves the update to the general path, which checks it and names
  // what is wrong exactly as before (anything the kernel would refuse, an unknown bound
  // (None), a bound past the limit).
  bool update_fast(py::handle arm_obj, py::handle reward_obj, const py::object& /*context*/,
                   py::handle weight_obj, py::list box, double limit) {
    struct Checked : ScalarUpdate {
      bool ok = false;
    };
    const Checked out = guarded(
        [&] {
          Checked c;
          try {
            static_cast<ScalarUpdate&>(c) = check_scalar_update(
                arm_obj, reward_obj, weight_obj, s_.n_arms, p_.kind == kBetaTS);
          } catch (const std::exception&) {
            return c;  // not the kernel's form: the general path decides
          }
          const py::object b0 = box[0];
          if (b0.is_none()) return c;
          const double r = std::fabs(c.reward), m = r > 1.0 ? r : 1.0;
          const double nb = b0.cast<double>() + std::fabs(c.weight) * m * m;
          if (!(nb <= limit)) return c;
          box[0] = py::float_(nb);
          c.ok = true;
          return c;
        },
        [&](const Checked& c) {
          if (c.ok) mab_update(p_, s_, c.arm, c.reward, c.weight);
          return c;
        });
    return out.ok;
  }

  // update_fast for a batch: rows in the kernel's own form whose magnitudes keep box[0]
  // at most `limit` after all of them (box[0] + sum |w_i| max(|r_i|, 1)^2: each row adds
  // at most its term to any sum's magnitude, as for one update) are applied in row order,
  // as update_batch, and box[0] raised; returns true. False changes nothing and leaves
  // the batch to the general path (the copy-apply-check of the checked batch), which
  // refuses it whole and names its first bad row exactly as before.
  bool update_batch_fast(const py::object& arms, const py::object& rewards,
                         const py::object& /*contexts*/, const py::object& weights,
                         py::list box, double limit) {
    struct Checked : UpdateArgs {
      bool ok = false;
    };
    const Checked out = guarded(
        [&] {
          Checked c;
          try {
            c.check(arms, rewards, weights, s_.n_arms, p_.kind == kBetaTS);
          } catch (const std::exception&) {
            return c;  // not the kernel's form: the general path decides
          }
          const py::object b0 = box[0];
          if (b0.is_none()) return c;
          double nb = b0.cast<double>();
          for (int64_t i = 0; i < c.n; ++i) {
            const double r = std::fabs(c.pr[i]), m = r > 1.0 ? r : 1.0;
            nb += (c.pw ? std::fabs(c.pw[i]) : 1.0) * m * m;
          }
          if (!(nb <= limit)) return c;
          box[0] = py::float_(nb);
          c.ok = true;
          return c;
        },
        [&](const Checked& c) {
          if (c.ok) mab_update_batch(p_, s_, c.pa, c.pr, c.pw, c.n);
          return c;
        });
    return out.ok;
  }

  void update_batch(const py::object& arms, const py::object& rewards, const py::object& /*contexts*/,
                    const py::object& weights) {
    guarded(
        [&] {
          UpdateArgs c;
          c.check(arms, rewards, weights, s_.n_arms, p_.kind == kBetaTS);
          return c;
        },
        [&](const UpdateArgs& c) {
          mab_update_batch(p_, s_, c.pa, c.pr, c.pw, c.n);
          return 0;
        });
  }


  // (n, K) action distributions for n requests (masks (n, K) or none).
  py::array_t<double> action_probabilities(const py::object& masks, py::object n_obj,
                                           py::handle draws_obj, const py::object& biases) {
    auto lock = exclusive();
    const int64_t K = s_.n_arms;
    int64_t n = n_obj.is_none() ? -1 : bind::to_index(n_obj, "n");
    if (!masks.is_none() && n < 0) {
      n = checked_array(masks, "masks", Kind::Bool, 2, {-1, K}).shape(0);
    }
    if (n < 0) throw std::invalid_argument("n: give the number of rows or masks of shape (n, K)");
    BatchArgs rows;
    rows.check_rows(n, masks, biases, K, s_.active);
    const uint8_t* m = rows.m;
    const double* b = rows.b;
    MabParams p = p_;
    p.propensity_draws = bind::to_index(draws_obj, "draws");
    // draws >= 1 counts wins over draws; 0 asks for the exact (quadrature) distribution.
    if (p.propensity_draws >= 1) p.propensity_method = kPropensityDraws;
    if (mab_is_thompson(p) && p.propensity_draws < 1 &&
        !(p.kind == kBetaTS && p.propensity_method == kPropensityQuadrature)) {
      throw std::invalid_argument("draws: Thompson sampling estimates its action distribution "
                                  "from posterior draws; expected draws >= 1");
    }
    py::array_t<double> out({n, K});
    double* o = out.mutable_data();
    {
      py::gil_scoped_release nogil;
      mab_action_probabilities_rows(p, s_, m, b, n, o);
    }
    return out;
  }

  py::array_t<double> expectations() {
    auto lock = exclusive();
    py::array_t<double> out(s_.n_arms);
    mab_expectations(p_, s_, out.mutable_data());
    return out;
  }

  int64_t n_arms() const { return s_.n_arms; }

 private:
  void set_arrays(const py::dict& arrays) {
    auto get = [&](const char* name) -> py::object {
      if (!arrays.contains(name)) throw std::invalid_argument(std::string("arrays: missing ") + name);
      return arrays[name];
    };
    py::array stats = checked_array(get("stats"), "stats", Kind::Float64, 2, {-1, 3});
    const int64_t K = stats.shape(0);
    py::array active = checked_array(get("active"), "active", Kind::Bool, 1, {K});
    py::array counters = checked_array(get("counters"), "counters", Kind::Int64, 1, {kNumCounters});
    py::array cache = checked_array(get("prop_cache"), "prop_cache", Kind::Float64, 1, {K});
    py::array pmask = checked_array(get("prop_mask"), "prop_mask", Kind::Bool, 1, {K});
    // Optional: the posteriors the cache was filled with (propensity_tolerance needs it);
    // a private one when absent, as the Numba kernel does.
    py::array post;
    if (arrays.contains("prop_post")) {
      post = checked_array(arrays["prop_post"], "prop_post", Kind::Float64, 2, {K, kBetaPostCols});
    } else {
      py::array_t<double> own({K, int64_t{kBetaPostCols}});
      std::fill(own.mutable_data(), own.mutable_data() + kBetaPostCols * K, 0.0);
      post = own;
    }
    // Optional: the node grid's snapshot of the cached Beta TS win probabilities
    // (beta_grid.hpp); without it they are recomputed by quad_max_propensities.
    const bool has_grid = arrays.contains("quad_grid");
    py::array grid_snap;
    if (has_grid) {
      grid_snap = checked_array(arrays["quad_grid"], "quad_grid", Kind::Float64, 2, {K, 2});
    }
    grid_snap_ = grid_snap;
    has_grid_ = has_grid;
    post_ = post;
    stats_ = stats;
    active_ = active;
    counters_ = counters;
    cache_ = cache;
    pmask_ = pmask;
    s_.n_arms = K;
    s_.stats = ptr<double>(stats_);
    s_.active = ptr<uint8_t>(active_);
    s_.counters = ptr<int64_t>(counters_);
    s_.prop_cache = ptr<double>(cache_);
    s_.prop_mask = ptr<uint8_t>(pmask_);
    s_.prop_post = ptr<double>(post_);
    s_.quad_grid = has_grid_ ? ptr<double>(grid_snap_) : nullptr;
    s_.grid = &grid_;
    p_.seed = static_cast<uint64_t>(s_.counters[kCtrSeed]);
  }

  MabParams p_;
  MabState s_;
  py::array stats_, active_, counters_, cache_, pmask_, post_, grid_snap_;
  bool has_grid_ = false;
  BetaGrid grid_;  // the incremental columns of quad_grid's node grid (a cache, not state)
};

class LinKernel : public Guarded {
 public:
  LinKernel(int kind, double decay, double exploration, double ridge, int64_t refresh_every,
            int64_t propensity_draws, const py::dict& arrays, int propensity_method,
            bool first_on_ties, bool batch_accumulate) {
    if (!is_lin_kind(kind)) throw std::invalid_argument("kind: unknown policy kind");
    p_.kind = kind;
    p_.decay = decay;
    p_.exploration = exploration;
    p_.ridge = ridge;
    p_.refresh_every = refresh_every < 1 ? 1 : refresh_every;
    p_.propensity_draws = propensity_draws;
    p_.propensity_method = check_method(propensity_method);
    p_.first_on_ties = first_on_ties;
    p_.batch_accumulate = batch_accumulate;
    set_arrays(arrays);
  }

  void rebind(const py::dict& arrays) {
    auto lock = exclusive();
    set_arrays(arrays);
    ++gen_;
  }

  py::tuple select(const py::object& context, const py::object& mask, const py::object& bias) {
    struct Checked {
      const double* x;
      const uint8_t* m;
      const double* b;
      py::object keep_x, keep_m, keep_b;
    };
    auto r = guarded(
        [&] {
          Checked c;
          c.x = check_context(context, "context", c.keep_x);
          c.m = check_mask(mask, s_.n_arms, s_.active, c.keep_m);
          c.b = check_bias(bias, s_.n_arms, c.keep_b);
          return c;
        },
        [&](const Checked& c) { return lin_select(p_, s_, c.m, c.b, c.x, scratch_); });
    return py::make_tuple(r.first, r.second);
  }

  py::tuple select_batch(const py::object& contexts, const py::object& masks, py::object n_obj,
                         const py::object& out_arms, const py::object& out_props,
                         py::handle n_threads, const py::object& biases) {
    struct Checked : BatchArgs {
      py::object c;
      const double* px = nullptr;
    };
    Checked out = guarded(
        [&] {
          Checked c;
          if (contexts.is_none()) {
            throw std::invalid_argument("contexts: required for a contextual policy");
          }
          py::array ctx = checked_array(contexts, "contexts", Kind::Float64, 2, {-1, s_.dim});
          c.c = ctx;
          const int64_t n = ctx.shape(0);
          if (!n_obj.is_none() && bind::to_index(n_obj, "n") != n) {
            throw std::invalid_argument("n: disagrees with the number of contexts");
          }
          c.px = static_cast<const double*>(ctx.data());
          bind::check_finite(c.px, n * s_.dim, "contexts");
          c.check(n, masks, biases, out_arms, out_props, n_threads, s_.n_arms, s_.active);
          return c;
        },
        [&](Checked& c) {
          lin_select_batch(p_, s_, c.m, c.b, c.px, c.n, c.threads, c.arms.mutable_data(),
                           c.props.mutable_data());
          return std::move(c);
        });
    return py::make_tuple(out.arms, out.props);
  }

  void update(py::handle arm_obj, py::handle reward_obj, const py::object& context,
              py::handle weight_obj) {
    struct Checked : ScalarUpdate {
      const double* x = nullptr;
      py::object keep;
    };
    guarded(
        [&] {
          Checked c;
          static_cast<ScalarUpdate&>(c) =
              check_scalar_update(arm_obj, reward_obj, weight_obj, s_.n_arms, false);
          c.x = check_context(context, "context", c.keep);
          return c;
        },
        [&](const Checked& c) {
          lin_update_rows(p_, s_, &c.arm, &c.reward, c.x, &c.weight, 1, scratch_);
          return 0;
        });
  }

  // The fast path of the checked single update (policies.linear,
  // LinearPolicy._make_fast_update), in one native call: with decay 1, an update in the
  // kernel's own form (an integer arm in range, finite numbers, a C-contiguous float64
  // context of width d) whose magnitudes keep box[0], the running bound on the entries of
  // A, b and n, at most `limit` (box[0] + |w| (|x|^2 + r^2 + 1), |x|^2, |w| and r^2 all at
  // most limit) is applied and box[0] raised; when the arm's exact refresh is due, the
  // arm's statistics are copied first and put back if the refresh fails. Returns true when
  // applied. False changes nothing (box[0] may have been raised, which only makes later
  // checks stricter) and sends the update down the general path, which converts, checks
  // and names what is wrong exactly as before: anything else the kernel would refuse, an
  // unknown bound (None), a bound past the limit, a failed refresh.
  bool update_fast(py::handle arm_obj, py::handle reward_obj, const py::object& context,
                   py::handle weight_obj, py::list box, double limit) {
    if (p_.decay < 1.0) return false;
    struct Checked : ScalarUpdate {
      const double* x = nullptr;
      bool refresh = false;
      py::object keep;
    };
    Checked out = guarded(
        [&] {
          Checked c;
          try {
            static_cast<ScalarUpdate&>(c) =
                check_scalar_update(arm_obj, reward_obj, weight_obj, s_.n_arms, false);
            c.x = check_context(context, "context", c.keep);
          } catch (const std::exception&) {
            c.x = nullptr;  // not the kernel's form: the general path decides
            return c;
          }
          const py::object b0 = box[0];
          if (b0.is_none()) {
            c.x = nullptr;
            return c;
          }
          double xx = 0.0;
          for (int64_t j = 0; j < s_.dim; ++j) xx += c.x[j] * c.x[j];
          const double r = std::fabs(c.reward), w = std::fabs(c.weight);
          const double nb = b0.cast<double>() + w * (xx + r * r + 1.0);
          if (!(nb <= limit && xx <= limit && w <= limit && r * r <= limit)) {
            c.x = nullptr;
            return c;
          }
          box[0] = py::float_(nb);
          return c;
        },
        [&](Checked& c) {
          if (c.x == nullptr) return std::move(c);
          // Read under the mutex: another thread's update of this arm may have moved it.
          c.refresh = s_.since_refresh[c.arm] + 1 >= p_.refresh_every;
          if (!c.refresh) {
            lin_update_rows(p_, s_, &c.arm, &c.reward, c.x, &c.weight, 1, scratch_);
            return std::move(c);
          }
          const int64_t d = s_.dim, a = c.arm;
          std::vector<double> keep(static_cast<size_t>(2 * d * d + 2 * d + 1));
          double* k = keep.data();
          std::copy(s_.A + a * d * d, s_.A + (a + 1) * d * d, k);
          std::copy(s_.A_inv + a * d * d, s_.A_inv + (a + 1) * d * d, k + d * d);
          std::copy(s_.b + a * d, s_.b + (a + 1) * d, k + 2 * d * d);
          std::copy(s_.theta + a * d, s_.theta + (a + 1) * d, k + 2 * d * d + d);
          k[2 * d * d + 2 * d] = s_.n[a];
          const int64_t since = s_.since_refresh[a];
          int64_t counters[kNumCounters];
          std::copy(s_.counters, s_.counters + kNumCounters, counters);
          try {
            lin_update_rows(p_, s_, &c.arm, &c.reward, c.x, &c.weight, 1, scratch_);
          } catch (...) {
            std::copy(k, k + d * d, s_.A + a * d * d);
            std::copy(k + d * d, k + 2 * d * d, s_.A_inv + a * d * d);
            std::copy(k + 2 * d * d, k + 2 * d * d + d, s_.b + a * d);
            std::copy(k + 2 * d * d + d, k + 2 * d * d + 2 * d, s_.theta + a * d);
            s_.n[a] = k[2 * d * d + 2 * d];
            s_.since_refresh[a] = since;
            std::copy(counters, counters + kNumCounters, s_.counters);
            c.x = nullptr;  // the general path repeats it and raises the refresh's error
          }
          return std::move(c);
        });
    return out.x != nullptr;
  }

  void update_batch(const py::object& arms, const py::object& rewards, const py::object& contexts,
                    const py::object& weights) {
    struct Checked : UpdateArgs {
      py::object keep_x;
      const double* px = nullptr;
    };
    guarded(
        [&] {
          Checked c;
          c.check(arms, rewards, weights, s_.n_arms, false);
          if (contexts.is_none()) {
            throw std::invalid_argument("contexts: required for a contextual policy");
          }
          py::array x = checked_array(contexts, "contexts", Kind::Float64, 2, {c.n, s_.dim});
          c.keep_x = x;
          c.px = static_cast<const double*>(x.data());
          bind::check_finite(c.px, c.n * s_.dim, "contexts");
          return c;
        },
        [&](const Checked& c) {
          if (p_.batch_accumulate) {  // the batch's sums, one exact refresh per arm
            lin_accumulate_rows(p_, s_, c.pa, c.pr, c.px, c.pw, c.n, accumulator_);
          } else {
            lin_update_rows(p_, s_, c.pa, c.pr, c.px, c.pw, c.n, scratch_);
          }
          return 0;
        });
  }


  // (n, K) action distributions for contexts (n, d): LinUCB one-hot, LinTS estimated
  // from `draws` score draws per row on the evaluation stream of the row's index.
  py::array_t<double> action_probabilities(const py::object& contexts, const py::object& masks,
                                           py::handle draws_obj, py::handle n_threads,
                                           const py::object& biases) {
    auto lock = exclusive();
    if (contexts.is_none()) throw std::invalid_argument("contexts: required for a contextual policy");
    py::array c = checked_array(contexts, "contexts", Kind::Float64, 2, {-1, s_.dim});
    const int64_t n = c.shape(0), K = s_.n_arms, d = s_.dim;
    const double* px = static_cast<const double*>(c.data());
    bind::check_finite(px, n * d, "contexts");
    BatchArgs rows;
    rows.check_rows(n, masks, biases, K, s_.active);
    const uint8_t* m = rows.m;
    const double* b = rows.b;
    const int64_t draws = bind::to_index(draws_obj, "draws");
    // draws >= 1 counts wins over draws; 0 asks for the exact (quadrature) distribution.
    LinParams p = p_;
    if (draws >= 1) p.propensity_method = kPropensityDraws;
    if (p.kind == kLinTS && draws < 1 && p.propensity_method != kPropensityQuadrature) {
      throw std::invalid_argument("draws: Thompson sampling estimates its action distribution "
                                  "from posterior draws; expected draws >= 1");
    }
    const int threads = check_threads(n_threads);
    py::array_t<double> out({n, K});
    double* o = out.mutable_data();
    {
      py::gil_scoped_release nogil;
      lin_action_probabilities_rows(p, s_, m, b, px, n, draws, threads, o);
    }
    return out;
  }

  // theta_a . x for every arm: (K,) for one context, (n, K) for a batch.
  py::array_t<double> expectations(const py::object& contexts) {
    if (contexts.is_none()) throw std::invalid_argument("contexts: required for a contextual policy");
    py::array c = py::array::ensure(contexts);
    const bool single = c && c.ndim() == 1;
    c = checked_array(contexts, "contexts", Kind::Float64, single ? 1 : 2,
                      single ? std::initializer_list<py::ssize_t>{s_.dim}
                             : std::initializer_list<py::ssize_t>{-1, s_.dim});
    auto lock = exclusive();
    const int64_t n = single ? 1 : c.shape(0), K = s_.n_arms, d = s_.dim;
    const double* px = static_cast<const double*>(c.data());
    bind::check_finite(px, n * d, "contexts");
    py::array_t<double> out = single ? py::array_t<double>(K) : py::array_t<double>({n, K});
    lin_expectations(s_, px, n, out.mutable_data());
    return out;
  }

  // Exact refresh of every arm (after a merge summed A and b).
  void refresh_all() {
    auto lock = exclusive();
    py::gil_scoped_release nogil;
    lin_refresh_all(s_, scratch_.work);
  }

  int64_t n_arms() const { return s_.n_arms; }
  int64_t dim() const { return s_.dim; }

 private:
  const double* check_context(const py::object& context, const char* field, py::object& keep) {
    if (context.is_none()) {
      throw std::invalid_argument(std::string(field) + ": required for a contextual policy");
    }
    py::array arr = checked_array(context, field, Kind::Float64, 1, {s_.dim});
    keep = arr;
    const double* x = static_cast<const double*>(arr.data());
    bind::check_finite(x, s_.dim, field);
    return x;
  }

  void set_arrays(const py::dict& arrays) {
    auto get = [&](const char* name) -> py::object {
      if (!arrays.contains(name)) throw std::invalid_argument(std::string("arrays: missing ") + name);
      return arrays[name];
    };
    py::array A = checked_array(get("A"), "A", Kind::Float64, 3, {-1, -1, -1});
    const int64_t K = A.shape(0), d = A.shape(1);
    A = checked_array(get("A"), "A", Kind::Float64, 3, {K, d, d});
    py::array Ai = checked_array(get("A_inv"), "A_inv", Kind::Float64, 3, {K, d, d});
    py::array b = checked_array(get("b"), "b", Kind::Float64, 2, {K, d});
    py::array theta = checked_array(get("theta"), "theta", Kind::Float64, 2, {K, d});
    py::array n = checked_array(get("n"), "n", Kind::Float64, 1, {K});
    py::array since = checked_array(get("since_refresh"), "since_refresh", Kind::Int64, 1, {K});
    py::array active = checked_array(get("active"), "active", Kind::Bool, 1, {K});
    py::array counters = checked_array(get("counters"), "counters", Kind::Int64, 1, {kNumCounters});
    if (s_.dim != 0 && d != s_.dim) throw std::invalid_argument("A: dimension cannot change");
    A_ = A; Ai_ = Ai; b_ = b; theta_ = theta; n_ = n; since_ = since; active_ = active;
    counters_ = counters;
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
    p_.seed = static_cast<uint64_t>(s_.counters[kCtrSeed]);
    scratch_ = workspace_.reset(K, d);
  }

  LinParams p_;
  LinState s_;
  py::array A_, Ai_, b_, theta_, n_, since_, active_, counters_;
  LinWorkspace workspace_;  // the scratch of calls on the calling thread
  LinScratch scratch_{};
  LinAccumulator accumulator_;  // the buffers of batch_accumulate's update_batch
};

}  // namespace

void bind_policies(py::module_& m) {
  // The codes of state.hpp, for python/promobandit/policies/_codes.py.
  py::dict kinds, slots;
  for (const auto& c : kMabKindNames) kinds[c.name] = c.code;
  for (const auto& c : kLinKindNames) kinds[c.name] = c.code;
  for (const auto& c : kCounterSlotNames) slots[c.name] = c.code;
  m.attr("POLICY_KINDS") = kinds;
  m.attr("COUNTER_SLOTS") = slots;
  py::dict methods;
  for (const auto& c : kPropensityMethodNames) methods[c.name] = c.code;
  m.attr("PROPENSITY_METHODS") = methods;

  py::class_<MabKernel>(m, "MabKernel",
                        "Non-contextual bandit kernel over views of NumPy state; calls are "
                        "serialised by an internal mutex and run without the GIL")
      .def(py::init<int, double, std::vector<double>, int64_t, int64_t, py::dict, int, bool,
                    bool, double>(),
           py::arg("kind"), py::arg("decay"), py::arg("hyper"), py::arg("propensity_draws"),
           py::arg("propensity_refresh"), py::arg("arrays"), py::arg("propensity_method") = 0,
           py::arg("first_on_ties") = false, py::arg("matching") = false,
           py::arg("propensity_tolerance") = 0.0)
      .def("select", &MabKernel::select, py::arg("context") = py::none(),
           py::arg("mask") = py::none(), py::arg("bias") = py::none(),
           "select(context=None, mask=None, bias=None) -> (arm, propensity); context is ignored")
      .def("select_batch", &MabKernel::select_batch, py::arg("contexts") = py::none(),
           py::arg("masks") = py::none(), py::arg("n") = py::none(),
           py::arg("out_arms") = py::none(), py::arg("out_props") = py::none(),
           py::arg("n_threads") = 1, py::arg("biases") = py::none(),
           "select_batch(contexts=None, masks=None, n=None, out_arms=None, out_props=None, "
           "n_threads=1, biases=None) -> (arms, propensities)")
      .def("update", &MabKernel::update, py::arg("arm"), py::arg("reward"),
           py::arg("context") = py::none(), py::arg("weight") = 1.0,
           "update(arm, reward, context=None, weight=1.0)")
      .def("update_fast", &MabKernel::update_fast, py::arg("arm"), py::arg("reward"),
           py::arg("context"), py::arg("weight"), py::arg("box"), py::arg("limit"),
           "update_fast(arm, reward, context, weight, box, limit) -> applied: the checked "
           "update's fast path (see MultiArmedPolicy._make_fast_update)")
      .def("update_batch_fast", &MabKernel::update_batch_fast, py::arg("arms"),
           py::arg("rewards"), py::arg("contexts"), py::arg("weights"), py::arg("box"),
           py::arg("limit"),
           "update_batch_fast(arms, rewards, contexts, weights, box, limit) -> applied: the "
           "checked batch's fast path")
      .def("update_batch", &MabKernel::update_batch, py::arg("arms"), py::arg("rewards"),
           py::arg("contexts") = py::none(), py::arg("weights") = py::none(),
           "update_batch(arms, rewards, contexts=None, weights=None)")
      .def("expectations", &MabKernel::expectations)
      .def("action_probabilities", &MabKernel::action_probabilities,
           py::arg("masks") = py::none(), py::arg("n") = py::none(), py::arg("draws") = 1000,
           py::arg("biases") = py::none())
      .def("rebind", &MabKernel::rebind, py::arg("arrays"))
      .def("lock", &MabKernel::lock, "hold the kernel's (recursive) mutex")
      .def("unlock", &MabKernel::unlock)
      .def_property_readonly("n_arms", &MabKernel::n_arms);

  py::class_<LinKernel>(m, "LinKernel",
                        "Disjoint linear bandit kernel over views of NumPy state; calls are "
                        "serialised by an internal mutex and run without the GIL")
      .def(py::init<int, double, double, double, int64_t, int64_t, py::dict, int, bool, bool>(),
           py::arg("kind"), py::arg("decay"), py::arg("exploration"), py::arg("ridge"),
           py::arg("refresh_every"), py::arg("propensity_draws"), py::arg("arrays"),
           py::arg("propensity_method") = 0, py::arg("first_on_ties") = false,
           py::arg("batch_accumulate") = false)
      .def("select", &LinKernel::select, py::arg("context") = py::none(),
           py::arg("mask") = py::none(), py::arg("bias") = py::none(),
           "select(context, mask=None, bias=None) -> (arm, propensity)")
      .def("select_batch", &LinKernel::select_batch, py::arg("contexts") = py::none(),
           py::arg("masks") = py::none(), py::arg("n") = py::none(),
           py::arg("out_arms") = py::none(), py::arg("out_props") = py::none(),
           py::arg("n_threads") = 1, py::arg("biases") = py::none(),
           "select_batch(contexts, masks=None, n=None, out_arms=None, out_props=None, "
           "n_threads=1, biases=None) -> (arms, propensities)")
      .def("update", &LinKernel::update, py::arg("arm"), py::arg("reward"),
           py::arg("context") = py::none(), py::arg("weight") = 1.0,
           "update(arm, reward, context, weight=1.0)")
      .def("update_batch", &LinKernel::update_batch, py::arg("arms"), py::arg("rewards"),
           py::arg("contexts") = py::none(), py::arg("weights") = py::none(),
           "update_batch(arms, rewards, contexts, weights=None)")
      .def("update_fast", &LinKernel::update_fast, py::arg("arm"), py::arg("reward"),
           py::arg("context"), py::arg("weight"), py::arg("box"), py::arg("limit"),
           "update_fast(arm, reward, context, weight, box, limit) -> applied: the checked "
           "update's fast path (see LinearPolicy._make_fast_update)")
      .def("expectations", &LinKernel::expectations, py::arg("contexts"))
      .def("action_probabilities", &LinKernel::action_probabilities, py::arg("contexts"),
           py::arg("masks") = py::none(), py::arg("draws") = 1000, py::arg("n_threads") = 1,
           py::arg("biases") = py::none())
      .def("refresh_all", &LinKernel::refresh_all)
      .def("rebind", &LinKernel::rebind, py::arg("arrays"))
      .def("lock", &LinKernel::lock, "hold the kernel's (recursive) mutex")
      .def("unlock", &LinKernel::unlock)
      .def_property_readonly("n_arms", &LinKernel::n_arms)
      .def_property_readonly("dim", &LinKernel::dim);
}
