"""The policy interface, its configs and the state machinery every policy shares.

A policy keeps all of its statistics in dense NumPy arrays (``self._arrays``)
and hands views of them to a backend kernel (C++ or Numba) that does the
per-request work with the GIL released. Because state is plain arrays, saving,
loading, merging replicas and adding arms are written once, here.

Inputs: the kernels read C-contiguous float64 (contexts, rewards, weights, biases),
int64 (arms) and bool (masks) arrays in place, and those go straight through. Anything
else that has such a value is converted once at the edge: pandas DataFrames and Series
(by position; the index is not aligned), lists, float16/float32, integer or bool
rewards and contexts, arm ids of any integer dtype, strided or byte-swapped views. What
has none (strings, object or datetime columns, float arm ids, 0/1 masks, missing arm
ids) is refused with a ValueError naming the field, and nothing is learnt from it.

Threads: ``select``, ``select_batch``, ``update`` and ``update_batch`` call the
kernel's own methods (bound on the instance: one small Python frame per request); the
kernel serialises them with its mutex and runs them without the GIL, so
concurrent calls from several threads lose no update and other Python threads
keep running. Structural changes (adding or removing arms, loading, merging,
saving) hold the same mutex for their whole duration.
"""

from __future__ import annotations

import dataclasses
import operator
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import numpy as np

from .. import _backends
from .._validation import check_int, check_range, check_seed, edge_bool, edge_float, edge_int

# Counter slots, defined in cpp/include/promobandit/state.hpp and read from _core;
# CTR_SEED holds the seed's uint64 bits, so the seed is state like everything else.
from ._codes import (
    CTR_DECISIONS,
    CTR_PROPENSITY_AT,
    CTR_SEED,
    CTR_UPDATES,
    METHOD_DRAWS,
    METHOD_QUADRATURE,
    N_COUNTERS,
)
from .traits import PolicyTraits

FORMAT = "promobandit.policy"
# The fast path of checked updates (Policy's "checked updates"): a sum-of-statistics
# family applies an update without the copy-and-test when a running bound on its
# statistics' magnitude stays at most this after the update. float64 overflows at
# 1.8e308: the margin of 1e8 also covers increments of the bound lost to threads racing
# on it (each at most this, at most one lost per concurrent thread).
FAST_UPDATE_BOUND = 1e300
# What a fast check answers: 0 (False) the exact slow path; FAST_DIRECT (1, True) apply
# as it is; FAST_GUARDED apply under a light guard (a copy put back if the kernel raises
# midway; the values are proven finite, so no test after).
FAST_DIRECT, FAST_GUARDED = 1, 2
FORMAT_VERSION = 1


def new_counters(seed: int) -> np.ndarray:
    """The counter array of a fresh policy with this seed."""
    counters = np.zeros(N_COUNTERS, dtype=np.int64)
    counters[CTR_PROPENSITY_AT] = -1
    counters[CTR_SEED:].view(np.uint64)[0] = seed
    return counters


@dataclasses.dataclass(frozen=True)
class PolicyConfig:
    """Settings every policy has.

    decay: forgetting factor gamma in (0, 1]. At every update all statistics of
        every arm are multiplied by gamma before the new observation is added
        (discounted bandits: an observation k updates old weighs gamma**k, an
        effective memory of about 1 / (1 - gamma) updates); priors keep their
        weight. 1.0 (the default) never forgets.
    ties: how an exact tie of the highest score is broken. "random" (the default):
        uniformly among the tied arms, from the policy's own stream (seed, decision
        number, tie purpose), so a cold start spreads over the arms; propensities
        count the share (1/m among m tied arms). "first": the lowest arm id, with no
        draw (MABWiser's rule, used by promobandit.compat to reproduce it).
    """

    decay: float = 1.0
    ties: str = "random"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        check_range("decay", self.decay, 0.0, 1.0, lo_open=True)
        if self.ties not in ("random", "first"):
            raise ValueError(f"ties: expected 'random' or 'first', got {self.ties!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# propensity_method settings -> state.hpp's PropensityMethod codes (read through _codes)
PROPENSITY_METHODS = {"draws": METHOD_DRAWS, "quadrature": METHOD_QUADRATURE}


def check_method(method: Any) -> int:
    """The kernel code of a propensity_method setting ("quadrature" or "draws")."""
    if method not in PROPENSITY_METHODS:
        raise ValueError(f"propensity_method: expected one of {sorted(PROPENSITY_METHODS)}, "
                         f"got {method!r}")
    return PROPENSITY_METHODS[method]


@dataclasses.dataclass(frozen=True)
class ThompsonConfig(PolicyConfig):
    """Settings of Thompson sampling policies.

    propensity_draws: posterior draws used to estimate the propensity of the
        chosen arm (the probability that it wins the posterior draw) where the
        propensity is estimated by draws (GaussianTS; BetaTS and LinTS with
        propensity_method="draws"; they compute it exactly by default). The
        estimate is (wins + 1) / (draws + K_eligible): add-one smoothing keeps
        it positive for inverse-propensity estimators, at a bias of at most
        K / draws. 0 skips the estimate and returns NaN. Its standard error is
        at most 0.5 / sqrt(draws).
    propensity_refresh: non-contextual policies only: reuse an estimate (for
        the same eligible arms) for up to this many updates before drawing it
        again. 1 (the default) re-estimates after every update; the estimate
        is always reused while no update happened, since the posterior is
        unchanged.
    """

    propensity_draws: int = 1000
    propensity_refresh: int = 1

    def validate(self) -> None:
        super().validate()
        check_int("propensity_draws", self.propensity_draws, 0)
        check_int("propensity_refresh", self.propensity_refresh, 1)


# --- the edge: conversion of friendly inputs, only when the kernel refused them ----------
# Each wrapper calls the kernel with the arguments as given. A refusal (ValueError, raised
# before any state changed) costs a C++ exception, some microseconds, so a wrapper whose
# caller needed a conversion converts first from then on (a no-op on arrays already in
# the kernel's form) until a call needs none; a caller whose arrays are in the kernel's
# form never pays for a check in Python.

def _edge_select(kernel_select: Any) -> Any:
    convert = False

    def select(context: Any = None, mask: Any = None, bias: Any = None) -> tuple[int, float]:
        nonlocal convert
        if not convert:
            try:
                return kernel_select(context, mask, bias)
            except ValueError:
                pass
        c, m, b = edge_float(context, "context"), edge_bool(mask, "mask"), edge_float(bias, "bias")
        convert = not (c is context and m is mask and b is bias)
        return kernel_select(c, m, b)
    return select


def _edge_select_batch(kernel_select_batch: Any) -> Any:
    convert = False

    def select_batch(contexts: Any = None, masks: Any = None, n: int | None = None,
                     out_arms: Any = None, out_props: Any = None, n_threads: int = 1,
                     biases: Any = None) -> tuple[np.ndarray, np.ndarray]:
        nonlocal convert
        if not convert:
            try:
                return kernel_select_batch(contexts, masks, n, out_arms, out_props, n_threads,
                                           biases)
            except ValueError:
                pass
        c, m = edge_float(contexts, "contexts"), edge_bool(masks, "masks")
        b = edge_float(biases, "biases")
        convert = not (c is contexts and m is masks and b is biases)
        return kernel_select_batch(c, m, n, out_arms, out_props, n_threads, b)
    return select_batch


def _edge_update(kernel_update: Any) -> Any:
    convert = False

    def update(arm: Any, reward: Any, context: Any = None, weight: Any = 1.0) -> None:
        nonlocal convert
        if not convert:
            try:
                return kernel_update(arm, reward, context, weight)
            except ValueError:
                pass
        c = edge_float(context, "context")  # scalars (arm, reward, weight) need no help
        convert = c is not context
        return kernel_update(arm, reward, c, weight)
    return update


def _edge_update_batch(kernel_update_batch: Any) -> Any:
    convert = False

    def update_batch(arms: Any, rewards: Any, contexts: Any = None, weights: Any = None) -> None:
        nonlocal convert
        if not convert:
            try:
                return kernel_update_batch(arms, rewards, contexts, weights)
            except ValueError:
                pass
        a, r = edge_int(arms, "arms"), edge_float(rewards, "rewards")
        c, w = edge_float(contexts, "contexts"), edge_float(weights, "weights")
        convert = not (a is arms and r is rewards and c is contexts and w is weights)
        return kernel_update_batch(a, r, c, w)
    return update_batch


def _checked_update(policy: Policy, update: Any) -> Any:
    """policy.update with the finiteness check (see Policy's "checked updates")."""
    fast = policy._make_fast_update()
    native = policy._native_fast_update()
    kernel_fast, limit = native if native is not None else (None, 0.0)
    box = policy._bound
    guarded, light = policy._guarded_update, policy._lightly_guarded_update

    def checked(arm: Any, reward: Any, context: Any = None, weight: Any = 1.0) -> None:
        if kernel_fast is not None and kernel_fast(arm, reward, context, weight, box, limit):
            return None  # the fast path, checked and applied in one native call
        how = 0 if fast is None else fast(arm, reward, context, weight)
        if how == FAST_DIRECT:
            return update(arm, reward, context, weight)
        if how == FAST_GUARDED:
            return light(lambda: update(arm, reward, context, weight), arm)
        guarded(lambda: update(arm, reward, context, weight), arm, f"update (arm {arm!r})",
                lambda: policy._precheck_update(arm, reward, context, weight))
        return None
    return checked


def _checked_update_batch(policy: Policy, update_batch: Any) -> Any:
    """policy.update_batch with the finiteness check, refused whole, naming the row."""

    native = policy._native_fast_update_batch()
    kernel_fast, limit = native if native is not None else (None, 0.0)
    box = policy._bound

    def checked(arms: Any, rewards: Any, contexts: Any = None, weights: Any = None) -> None:
        if kernel_fast is not None:
            if box[0] is None:  # unknown after a wholesale change: measured from the arrays
                box[0] = policy._measure_bound()
            if kernel_fast(arms, rewards, contexts, weights, box, limit):
                return  # the bound proves every sum stays finite: applied in one native call

        def rows() -> tuple[int, Any]:
            # Only for a refused batch: its rows one by one, to name the first bad one.
            a = np.asarray(edge_int(arms, "arms"))
            r = np.asarray(edge_float(rewards, "rewards"))
            c = edge_float(contexts, "contexts")
            w = None if weights is None else np.asarray(edge_float(weights, "weights"))

            def row(i: int) -> None:
                policy._kernel.update(int(a[i]), float(r[i]), None if c is None else c[i],
                                      1.0 if w is None else float(w[i]))
            return len(a), row
        policy._guarded_batch(lambda: update_batch(arms, rewards, contexts, weights), rows,
                              "update_batch",
                              lambda: policy._precheck_batch(arms, rewards, contexts, weights))
    return checked


class Policy(ABC):
    """A bandit policy: choose an arm, learn from its reward.

    Common arguments:
        n_arms: number of arms (offers) at the start; arms can be added and removed.
        config: the policy's frozen config; keyword arguments build one instead.
        seed: integer in [0, 2**64). Decision i draws from the counter-based stream
            (seed, i), so a seed gives the same decisions on every backend, thread
            count and batch split.
        backend: "auto" | "cpp" | "numba" (the environment variable
            PROMOBANDIT_BACKEND replaces "auto").
    """

    name: ClassVar[str]
    # Declared by every concrete policy class; read by callers instead of tests of the
    # class or its name (see promobandit.policies.traits).
    traits: ClassVar[PolicyTraits]
    # Set from traits.contextual (kept as a class attribute: make_policy and the configs
    # read it from the class).
    contextual: ClassVar[bool] = False
    config_class: ClassVar[type[PolicyConfig]] = PolicyConfig

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        traits = cls.__dict__.get("traits")
        if traits is not None:
            if not isinstance(traits, PolicyTraits):
                raise TypeError(f"{cls.__name__}.traits: expected a PolicyTraits, got "
                                f"{type(traits).__name__}")
            cls.contextual = traits.contextual

    def __init__(self, n_arms: int, config: PolicyConfig | None = None, *, seed: int = 0,
                 backend: str = "auto", **kwargs: Any) -> None:
        if not isinstance(getattr(type(self), "traits", None), PolicyTraits):
            raise TypeError(f"{type(self).__name__}: a policy class must declare "
                            "traits = PolicyTraits(...)")
        if config is None:
            config = self.config_class(**kwargs)
        elif kwargs:
            raise ValueError(f"config: give either a config or keyword settings, not both "
                             f"(got {sorted(kwargs)})")
        if not isinstance(config, self.config_class):
            raise ValueError(f"config: expected a {self.config_class.__name__}, "
                             f"got {type(config).__name__}")
        self.config = config
        self._seed = check_seed(seed)  # read by _new_arrays; afterwards the arrays hold it
        self._backend_request = backend
        self.backend = _backends.resolve(backend)
        self._lock = threading.RLock()  # serialises structural changes among themselves
        k = check_int("n_arms", n_arms, 1)
        self._arrays = self._new_arrays(k)
        # the fast update check's bound on the statistics' magnitude (None: not measured)
        self._bound: list[float | None] = [None]
        self._bind()

    # --- state layout, provided by each family -------------------------------------------
    @abstractmethod
    def _new_arrays(self, n_arms: int) -> dict[str, np.ndarray]:
        """Fresh state arrays for n_arms arms (must include 'active' and 'counters')."""

    @abstractmethod
    def _new_arm_rows(self) -> dict[str, np.ndarray]:
        """The rows a newly added arm gets in each per-arm array."""

    @abstractmethod
    def _make_kernel(self, module: Any) -> Any:
        """A backend kernel over self._arrays (module: _core or the Numba kernels),
        constructed with the family's settings and the dict of arrays."""

    @abstractmethod
    def _merge_arrays(self, other: dict[str, np.ndarray]) -> None:
        """Adds the sufficient statistics of another replica's arrays to ours."""

    def _after_merge(self) -> None:  # noqa: B027 - an optional hook, empty by default
        """Hook run after another replica's statistics were added."""

    def _bind(self) -> None:
        if self.backend == "cpp":
            module: Any = _backends.core()
        else:
            from .._numba import kernels as module
        self._kernel = self._make_kernel(module)
        # The hot methods call the kernel first with what they were given: arrays already
        # in its form (C-contiguous float64 / int64 / bool) go straight through, no copy,
        # no check in Python. Only when the kernel rejects the call (before touching any
        # state) are the arguments converted at the edge (data frames, float32, integer
        # or bool rewards, int32 arm ids, strided views) and the kernel called once more;
        # what cannot be converted reaches the kernel unchanged and is rejected again with
        # its own message. Their documentation is on the class methods of the same names.
        self.select = _edge_select(self._kernel.select)  # type: ignore[method-assign]
        self.select_batch = _edge_select_batch(  # type: ignore[method-assign]
            self._kernel.select_batch)
        update = _edge_update(self._kernel.update)
        update_batch = _edge_update_batch(self._kernel.update_batch)
        if self._update_rows or self._update_whole:
            # Every update is checked before it counts (see "Checked updates" below).
            update, update_batch = _checked_update(self, update), _checked_update_batch(
                self, update_batch)
        self.update = update  # type: ignore[method-assign]
        self.update_batch = update_batch  # type: ignore[method-assign]

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Holds the policy's lock and the kernel's mutex: no request runs meanwhile."""
        with self._lock:
            self._kernel.lock()
            try:
                yield
            finally:
                self._kernel.unlock()

    def _replace_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Swaps in new state arrays; call inside _exclusive()."""
        self._kernel.rebind(arrays)
        self._arrays = arrays
        self._bound[0] = None  # the statistics changed wholesale: measured again when needed

    # --- checked updates -----------------------------------------------------------------
    # An update is committed only if every statistic it wrote is finite: a finite but huge
    # reward, weight or context (e.g. 1e200, in bounds for the kernel's checks) would
    # otherwise overflow a sum (inf, then NaN) and every later decision would be garbage.
    # The slow path, exact for every policy: under the kernel's mutex, copy what the update
    # writes (``_update_rows``: the updated arm's row of these arrays; ``_update_whole``:
    # these arrays whole; with decay < 1, or when the arm is not a valid index, every
    # state array), apply, test the written values, and on a non-finite value (or any
    # exception from the kernel) put the copies back and raise ValueError naming the arm
    # (or the batch row) and the statistic: the state_dict is byte for byte as before.
    # The fast path costs a few float operations: a family whose statistics are sums
    # proves from a running bound on their magnitude (``_bound[0]``, raised by every
    # update, measured again from the arrays after a wholesale change) that the update
    # cannot leave the finite range, and applies it directly, or under a light guard (a
    # copy put back if the kernel raises midway, e.g. a failed exact refresh) when it
    # can still fail that way (``_make_fast_update``). On the C++ backend the check and
    # the update run in one native call (``_native_fast_update``: the kernels'
    # update_fast, the same check; multi-armed batches too, ``update_batch_fast``, with
    # the rows' terms summed), about 1.8 us less per linear update. Near the limit, and
    # for bad input, the slow path decides. Linear policies also refuse before the kernel runs an
    # update whose exact refresh would overflow (``_precheck_update``). Threads racing
    # on the bound may lose increments of it; FAST_UPDATE_BOUND's margin covers that.
    _update_rows: ClassVar[tuple[str, ...]] = ()
    _update_whole: ClassVar[tuple[str, ...]] = ()

    def _make_fast_update(self) -> Any:
        """None, or a function (arm, reward, context, weight) -> 0, FAST_DIRECT or
        FAST_GUARDED: FAST_DIRECT (or True) when a closed-form bound proves the update
        keeps every statistic finite (it then records the new bound in ``self._bound``),
        FAST_GUARDED when it does but the kernel may still raise after a partial write,
        0 (False) to send it through the exact slow path. A closure, made once per
        binding: the check is a few float operations."""
        return None

    def _native_fast_update(self) -> tuple[Any, float] | None:
        """None, or (kernel_fast, limit): a kernel method kernel_fast(arm, reward,
        context, weight, box, limit) -> bool that runs ``_make_fast_update``'s check on
        the running bound box = ``self._bound`` and applies the update when it passes
        (True), all in one call; False leaves the update to the general path (the
        Python check, then the slow path), having changed nothing but perhaps raised
        box[0]. Same decisions and state as the Python check; only cheaper."""
        return None

    def _measure_bound(self) -> float:
        """The bound on the magnitude of the family's sums, measured from the arrays (the
        fast checks' starting point when ``_bound[0]`` is unknown)."""
        raise NotImplementedError(f"{self.name} has no fast update check")

    def _native_fast_update_batch(self) -> tuple[Any, float] | None:
        """As _native_fast_update for update_batch: None, or (kernel_fast, limit) with
        kernel_fast(arms, rewards, contexts, weights, box, limit) -> bool applying a batch
        whose rows' bound terms, summed, keep box[0] within the limit (False: the checked
        batch's general path, unchanged)."""
        return None

    def _precheck_update(self, arm: Any, reward: Any, context: Any, weight: Any) -> str | None:
        """On the slow path, before the kernel runs: why this update must be refused
        although its result would be finite (a kernel step that cannot be undone, e.g. a
        factorisation that overflows), or None."""
        return None

    def _precheck_batch(self, arms: Any, rewards: Any, contexts: Any,
                        weights: Any) -> tuple[int, str] | None:
        """As _precheck_update for a batch: (the first row to refuse, why), or None."""
        return None

    def _arm_slot(self, arm: Any) -> int | None:
        try:
            a = operator.index(arm)
        except TypeError:
            return None
        return a if 0 <= a < self.n_arms else None

    def _save_update(self, arm: Any) -> list[tuple[str, Any, np.ndarray]]:
        """Copies of what an update of `arm` may write (None: a batch, or all arms)."""
        a = None if arm is None or self.config.decay < 1.0 else self._arm_slot(arm)
        arrays = self._arrays
        if a is None:
            return [(name, ..., v.copy()) for name, v in arrays.items()
                    if name not in ("active",)]
        saved = [(name, a, arrays[name][a].copy()) for name in self._update_rows]
        saved += [(name, ..., arrays[name].copy()) for name in self._update_whole]
        saved.append(("counters", ..., arrays["counters"].copy()))
        return saved

    def _restore_update(self, saved: list[tuple[str, Any, np.ndarray]]) -> None:
        arrays = self._arrays
        for name, index, copy in saved:
            arrays[name][index] = copy

    def _nonfinite_written(self, saved: list[tuple[str, Any, np.ndarray]]) -> str | None:
        """The first saved statistic that was finite and is no longer, or None (a cache
        that holds NaN by design, e.g. a switched-off estimate, is not a statistic made
        non-finite)."""
        arrays = self._arrays
        for name, index, copy in saved:
            if (copy.dtype.kind == "f" and not np.isfinite(arrays[name][index]).all()
                    and np.isfinite(copy).all()):
                return name
        return None

    def _guarded_update(self, apply: Any, arm: Any, what: str, precheck: Any = None) -> None:
        """The slow path: apply() under the kernel's mutex, checked, undone when a
        statistic it wrote is not finite (ValueError naming `what` and the statistic).
        precheck() (optional) first gives a reason to refuse without running the kernel."""
        self._kernel.lock()
        try:
            why = None if precheck is None else precheck()
            if why is not None:
                raise ValueError(f"{what}: {why}; nothing was learnt from it, the policy is "
                                 "unchanged")
            saved = self._apply_saved(apply, arm)
            bad = self._nonfinite_written(saved)
            if bad is not None:
                self._restore_update(saved)
                raise ValueError(
                    f"{what}: the update would make the policy's {bad!r} statistics "
                    "non-finite (a sum overflowed: the reward, weight or context is too "
                    "large in magnitude); nothing was learnt from it, the policy is unchanged")
            self._raise_bound(saved)
        except BaseException:
            self._bound[0] = None  # measured again from the arrays at the next fast check
            raise
        finally:
            self._kernel.unlock()

    def _lightly_guarded_update(self, apply: Any, arm: Any) -> None:
        """apply() under the kernel's mutex, its writes put back if it raises midway (the
        fast check proved the values finite, so nothing is tested after)."""
        self._kernel.lock()
        try:
            self._apply_saved(apply, arm)
        finally:
            self._kernel.unlock()

    def _apply_saved(self, apply: Any, arm: Any) -> list[tuple[str, Any, np.ndarray]]:
        """Saves what an update of `arm` (None: a batch, every arm) may write, runs
        apply() and returns the saved rows; when apply() raises, everything is put back
        first. The kernel refuses bad input before changing anything, but a numeric
        failure inside (a precision matrix that lost positive definiteness) may come
        after a partial write."""
        saved = self._save_update(arm)
        try:
            apply()
        except BaseException:
            self._restore_update(saved)
            raise
        return saved

    # Arrays whose magnitude the fast check's bound covers (the family's sums).
    _bound_arrays: ClassVar[tuple[str, ...]] = ()

    def _raise_bound(self, saved: list[tuple[str, Any, np.ndarray]]) -> None:
        """After an applied slow update: the bound grows to cover the rows it wrote (they
        are few: cheaper than measuring every arm again), or is dropped when it is unknown
        or the update wrote whole arrays."""
        b = self._bound[0]
        if b is None:
            return
        arrays = self._arrays
        for name, index, _ in saved:
            if name in self._bound_arrays:
                if index is ...:
                    self._bound[0] = None
                    return
                b = max(b, float(np.abs(arrays[name][index]).max(initial=0.0)))
        self._bound[0] = b

    def _guarded_batch(self, apply: Any, rows: Any, what: str, precheck: Any = None) -> None:
        """A batch on the slow path (a batch's copy is small beside its n updates). When
        the batch writes a non-finite statistic it is refused whole; its first such row
        is found by applying the rows one by one from the saved state (rows() gives their
        number and a function applying row i), and named in the ValueError."""
        self._kernel.lock()
        try:
            refused = None if precheck is None else precheck()
            if refused is not None:
                raise ValueError(f"{what}: row {refused[0]}: {refused[1]}; the batch was "
                                 "refused whole, the policy is unchanged")
            saved = self._apply_saved(apply, None)
            bad = self._nonfinite_written(saved)
            if bad is None:
                return
            self._restore_update(saved)
            n, apply_row = rows()
            row = n - 1
            try:
                for i in range(n):
                    try:
                        apply_row(i)
                    except ValueError:  # a numeric failure inside the kernel: this row
                        row = i
                        break
                    found = self._nonfinite_written(saved)
                    if found is not None:
                        row, bad = i, found
                        break
            finally:
                self._restore_update(saved)
            raise ValueError(
                f"{what}: row {row}'s update would make the policy's {bad!r} statistics "
                "non-finite (a sum overflowed: its reward, weight or context is too large "
                "in magnitude); the batch was refused whole, the policy is unchanged")
        finally:
            self._bound[0] = None
            self._kernel.unlock()

    # --- properties ---------------------------------------------------------------------
    @property
    def n_arms(self) -> int:
        """Number of arm slots, removed arms included (arm ids are never reused)."""
        return int(self._arrays["active"].shape[0])

    @property
    def active_arms(self) -> np.ndarray:
        """Ids of the arms that can be selected."""
        return np.flatnonzero(self._arrays["active"])

    @property
    def seed(self) -> int:
        """The seed: decision i draws from the counter-based stream (seed, i)."""
        return int(self._arrays["counters"][CTR_SEED:].view(np.uint64)[0])

    @property
    def version(self) -> int:
        """Number of updates applied so far: the policy version logged with decisions."""
        return int(self._arrays["counters"][CTR_UPDATES])

    @property
    def n_decisions(self) -> int:
        """Number of decisions made so far (the stream id of the next one)."""
        return int(self._arrays["counters"][CTR_DECISIONS])

    # --- decisions and learning ----------------------------------------------------------
    def select(self, context: Any = None, mask: Any = None,
               bias: Any = None) -> tuple[int, float]:
        """Choose an arm for one request.

        context: (d,) features (contextual policies; ignored otherwise): a float64
            array, or any form the module's "Inputs" lists (a Series, a list, float32).
        mask: optional (K,) bool, True where the arm is eligible for this request.
        bias: optional (K,) float64 added to each arm's score (sampled value, upper
            bound or mean) before the choice, in reward units: how a budget's shadow
            price or a fairness multiplier steers any policy without retraining it.
            UCB still plays an arm never updated first.
        Returns (arm, propensity): the probability that the policy chooses this arm
        here (exact for UCB, epsilon-greedy and softmax; estimated for Thompson
        sampling, see ThompsonConfig.propensity_draws).
        """
        return self._kernel.select(context, mask, bias)

    def select_batch(self, contexts: Any = None, masks: Any = None, n: int | None = None, *,
                     out_arms: np.ndarray | None = None, out_props: np.ndarray | None = None,
                     n_threads: int = 1,
                     biases: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Choose arms for n requests, as n calls of select without updates between them.

        contexts: (n, d) features, float64 or a DataFrame, any float dtype (contextual
        policies). masks: optional (n, K) bool.
        n: number of decisions (non-contextual policies without masks).
        out_arms / out_props: optional preallocated (n,) int64 / float64 outputs.
        n_threads: threads for the rows (0: all cores; C++ backend only, batches of
            128 rows or more). The result is the same for every thread count.
        biases: optional (n, K) float64 score adjustments (see select).
        Returns (arms (n,) int64, propensities (n,) float64).
        """
        return self._kernel.select_batch(contexts, masks, n, out_arms, out_props, n_threads,
                                         biases)

    def update(self, arm: int, reward: float, context: Any = None, weight: float = 1.0) -> None:
        """Learn from one observed reward of `arm` (weight >= 0 scales its influence).

        Updates to removed arms are accepted so that late feedback is never lost.
        Checked before it counts: an update that would make a statistic non-finite (a
        finite but huge reward, weight or context overflowing a sum) is refused with a
        ValueError naming the arm and the statistic, and the policy is left exactly as it
        was (see "checked updates" in this class).
        """
        self._kernel.update(arm, reward, context, weight)

    def update_batch(self, arms: Any, rewards: Any, contexts: Any = None,
                     weights: Any = None) -> None:
        """Learn from n rewards in order, as n calls of update. Every row is checked
        before any is applied: a rejected batch changes nothing (a row whose update would
        make a statistic non-finite too: the ValueError names the row).

        arms: (n,) arm indices of any integer dtype (see ArmIndex for labels); rewards:
        (n,) numbers, float, integer or bool; contexts: (n, d) as in select_batch;
        weights: optional (n,) >= 0. Series and DataFrames are read by position."""
        self._kernel.update_batch(arms, rewards, contexts, weights)

    def action_probabilities(self, contexts: Any = None, masks: Any = None,
                             n: int | None = None, *, draws: int | None = None,
                             n_threads: int = 1, biases: Any = None) -> np.ndarray:
        """The policy's probability of choosing each arm, (n, K), for off-policy evaluation.

        Rows sum to 1 over the eligible arms (0 elsewhere). Exact where
        ``traits.propensity`` is "closed_form" (UCB and LinUCB one-hot, epsilon-greedy,
        softmax, a fixed offer); for Thompson sampling exact by quadrature where the
        config's propensity_method is "quadrature" (BetaTS, LinTS by default) and `draws`
        is None or 0, else estimated from `draws` posterior draws (default: the config's
        propensity_draws) as (wins + 1) / (draws + K_eligible). Without `draws`, this is
        the very distribution the logged propensities come from.
        contexts: (n, d) float64 (contextual policies); masks: optional (n, K) bool;
        n: rows, for non-contextual policies without masks; biases: optional (n, K)
        score adjustments as in select. Changes no state.
        """
        d = getattr(self.config, "propensity_draws", 0) if draws is None else draws
        if draws is None and getattr(self.config, "propensity_method", "draws") == "quadrature":
            d = 0  # the exact distribution, the one the logged propensities come from
        contexts = edge_float(contexts, "contexts")
        masks = edge_bool(masks, "masks")
        biases = edge_float(biases, "biases")
        if self.contextual:
            return self._kernel.action_probabilities(contexts, masks, d, n_threads, biases)
        return self._kernel.action_probabilities(masks, n, d, biases)

    @abstractmethod
    def expectations(self, context: Any = None) -> np.ndarray:
        """Expected reward of every arm (K,), or (n, K) for a batch of contexts."""

    # --- arms ----------------------------------------------------------------------------
    def add_arm(self) -> int:
        """Adds an arm with prior statistics and returns its id."""
        with self._exclusive():
            rows = self._new_arm_rows()
            arrays = dict(self._arrays)
            for name, row in rows.items():
                arrays[name] = np.ascontiguousarray(np.concatenate([arrays[name], row[None]]))
            arrays["counters"][CTR_PROPENSITY_AT] = -1
            self._replace_arrays(arrays)
            return self.n_arms - 1

    def remove_arm(self, arm: int) -> None:
        """Stops selecting `arm`; its statistics stay and late updates still land."""
        from .._validation import check_arm

        with self._exclusive():
            a = check_arm(arm, self.n_arms)
            active = self._arrays["active"]
            if active[a] and active.sum() == 1:
                raise ValueError(f"arm: cannot remove arm {a}, the last active arm")
            active[a] = False
            self._arrays["counters"][CTR_PROPENSITY_AT] = -1

    # --- state is data -------------------------------------------------------------------
    def _identity(self) -> dict[str, Any]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly where this policy is (arrays copied)."""
        with self._exclusive():
            return {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "policy": self.name,
                "config": self.config.to_dict(),
                "n_arms": self.n_arms,
                **self._identity(),
                "arrays": {k: v.copy() for k, v in self._arrays.items()},
            }

    def _check_state_dict(self, state: Any) -> dict[str, np.ndarray]:
        if not isinstance(state, dict):
            raise ValueError(f"state_dict: expected a dict, got {type(state).__name__}")
        if state.get("format") != FORMAT:
            raise ValueError(f"state_dict: format is {state.get('format')!r}, expected {FORMAT!r}")
        if state.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"state_dict: format_version {state.get('format_version')!r} is not "
                             f"supported (this promobandit reads version {FORMAT_VERSION})")
        if state.get("policy") != self.name:
            raise ValueError(f"state_dict: saved from policy {state.get('policy')!r}, "
                             f"cannot load into {self.name!r}")
        if state.get("config") != self.config.to_dict():
            theirs = state.get("config") or {}
            mine = self.config.to_dict()
            diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
            raise ValueError(f"state_dict: config differs from this policy's in {diff}")
        for key, value in self._identity().items():
            if state.get(key) != value:
                raise ValueError(f"state_dict: {key} is {state.get(key)!r}, this policy has {value!r}")
        k = state.get("n_arms")
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"state_dict: n_arms must be a positive integer, got {k!r}")
        arrays = state.get("arrays")
        template = self._new_arrays(k)
        if not isinstance(arrays, dict) or set(arrays) != set(template):
            got = sorted(arrays) if isinstance(arrays, dict) else arrays
            raise ValueError(f"state_dict: arrays must be exactly {sorted(template)}, got {got}")
        out = {}
        for name, t in template.items():
            a = arrays[name]
            if not isinstance(a, np.ndarray) or a.dtype != t.dtype or a.shape != t.shape:
                desc = (f"{a.dtype} {a.shape}" if isinstance(a, np.ndarray) else type(a).__name__)
                raise ValueError(f"state_dict: arrays[{name!r}] must be {t.dtype} {t.shape}, "
                                 f"got {desc}")
            if a.dtype.kind == "f" and not np.isfinite(a).all():
                raise ValueError(f"state_dict: arrays[{name!r}] holds non-finite values")
            out[name] = np.ascontiguousarray(a).copy()
        if not out["active"].any():
            raise ValueError("state_dict: no active arm")
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Replaces this policy's state with a saved one (same policy, config and shape).

        Checked completely first: a rejected state leaves the policy as it was.
        """
        arrays = self._check_state_dict(state)
        with self._exclusive():
            self._replace_arrays(arrays)

    @classmethod
    def from_state_dict(cls, state: dict[str, Any], *, backend: str = "auto") -> Policy:
        """A new policy continuing exactly from a saved state."""
        if not isinstance(state, dict) or not isinstance(state.get("config"), dict):
            raise ValueError("state_dict: expected a dict with a 'config' mapping")
        try:
            config = cls.config_class(**state["config"])
        except TypeError as exc:
            raise ValueError(f"state_dict: config does not fit {cls.config_class.__name__}: "
                             f"{exc}") from exc
        obj = cls._from_identity(state, config, backend)
        obj.load_state_dict(state)
        return obj

    @classmethod
    def _from_identity(cls, state: dict[str, Any], config: PolicyConfig, backend: str) -> Policy:
        return cls(int(state.get("n_arms", 1)), config, backend=backend)


    def __getstate__(self) -> dict[str, Any]:
        return {"state": self.state_dict(), "backend": self._backend_request}

    def __setstate__(self, data: dict[str, Any]) -> None:
        state = data["state"]
        config = self.config_class(**state["config"])
        fresh = self._from_identity(state, config, data.get("backend", "auto"))
        self.__dict__.update(fresh.__dict__)
        self._bound = [None]
        self._bind()  # the checked update's closures belong to this object, not to fresh
        self.load_state_dict(state)

    def merge(self, other: Policy) -> None:
        """Adds the statistics another replica of this policy learnt.

        Statistics are sums, so replicas that learnt from disjoint traffic merge
        exactly. (Replicas forked from a shared snapshot must merge what they
        learnt since, or the snapshot is counted twice.) The other policy must
        have the same class, config and shape; its arms' active flags are ignored.
        """
        if type(other) is not type(self):
            raise ValueError(f"other: cannot merge a {type(other).__name__} into a {self.name}")
        if other is self:
            raise ValueError("other: cannot merge a policy into itself")
        theirs = other.state_dict()
        with self._exclusive():
            if theirs["config"] != self.config.to_dict():
                raise ValueError("other: config differs; only replicas of one policy merge")
            for key, value in self._identity().items():
                if theirs.get(key) != value:
                    raise ValueError(f"other: {key} is {theirs.get(key)!r}, this policy has {value!r}")
            if theirs["n_arms"] != self.n_arms:
                raise ValueError(f"other: has {theirs['n_arms']} arms, this policy has {self.n_arms}")
            self._merge_arrays(theirs["arrays"])
            counters = self._arrays["counters"]
            counters[CTR_UPDATES] += theirs["arrays"]["counters"][CTR_UPDATES]
            counters[CTR_PROPENSITY_AT] = -1
            self._after_merge()
            self._bound[0] = None

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(n_arms={self.n_arms}, config={self.config}, "
                f"seed={self.seed}, backend={self.backend!r})")


class ContextualIdentity:
    """The identity of a contextual policy's state: its number of features (the
    constructor takes (n_arms, n_features, config)). Mixed in before Policy."""

    n_features: int

    def _identity(self) -> dict[str, Any]:
        return {"n_features": self.n_features}

    @classmethod
    def _from_identity(cls, state: dict[str, Any], config: Any, backend: str) -> Policy:
        d = state.get("n_features")
        if isinstance(d, bool) or not isinstance(d, int):
            raise ValueError(f"state_dict: n_features must be an integer, got {d!r}")
        return cls(int(state.get("n_arms", 1)), d, config, backend=backend)  # type: ignore[call-arg]
