"""Non-contextual bandit kernels in Numba; mirrors ``multiarmed.hpp``, batch loops included.

State: ``stats`` (K, 3) of (sum w, sum w*r, sum w*r^2), ``active`` (K,) bool,
``counters`` (N_COUNTERS,) int64 in the slots of ``codes``, ``prop_cache`` (K,)
float64, ``prop_mask`` (K,) bool, ``prop_post`` (K, POST_COLS) float64 (``post``), ``quad_grid``
(K, 2) float64 (``grid``; (0, 2) when absent: no node grid, see beta_grid.py). ``hyper`` holds
the kind's 4 hyperparameters, then first_on_ties, matching (1.0: Beta TS by probability
matching) and propensity_tolerance. ``mask`` is always an array here (all True when
the caller gave none), ``bias`` too (zeros, with ``has_bias`` False).
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from .beta_grid import grid_propensities
from .beta_matching import beta_drift, beta_snapshot, match_draw
from .codes import (  # METHOD_*: state.hpp's PropensityMethod codes
    BETA_TS,
    CTR_DECISIONS,
    CTR_PROPENSITY_AT,
    CTR_UPDATES,
    EPSILON_GREEDY,
    GAUSSIAN_TS,
    METHOD_QUADRATURE,
    SOFTMAX,
    UCB1,
    UCB_TUNED,
)
from .quadrature import FAMILY_BETA, max_propensities
from .rng import (
    PURPOSE_DECISION,
    PURPOSE_PROPENSITY,
    PURPOSE_TIE,
    beta,
    gamma,
    no_stream,
    normal,
    stream_new,
    tie_replaces,
    uniform,
)

_JIT = {"nogil": True, "cache": True, "error_model": "numpy"}


@nb.njit(**_JIT)
def expectation(kind, hyper, stats, a):
    n = stats[a, 0]
    s1 = stats[a, 1]
    if kind == BETA_TS:
        alpha = hyper[0] + s1
        bb = hyper[1] + (n - s1)
        return alpha / (alpha + bb)
    if kind == GAUSSIAN_TS:
        return (hyper[1] * hyper[0] + s1) / (hyper[1] + n)
    if kind == EPSILON_GREEDY or kind == SOFTMAX:
        return s1 / n if n > 0.0 else hyper[1]
    return s1 / n if n > 0.0 else 0.0


@nb.njit(**_JIT)
def posterior_draw(kind, hyper, stats, a, st):
    n = stats[a, 0]
    s1 = stats[a, 1]
    if kind == BETA_TS:
        return beta(st, hyper[0] + s1, hyper[1] + (n - s1))
    s2 = stats[a, 2]
    mu0 = hyper[0]
    k0 = hyper[1]
    a0 = hyper[2]
    b0 = hyper[3]
    kn = k0 + n
    mun = (k0 * mu0 + s1) / kn
    an = a0 + 0.5 * n
    bn = b0
    if n > 0.0:
        mean = s1 / n
        ss = s2 - s1 * mean
        if ss < 0.0:
            ss = 0.0
        dm = mean - mu0
        bn = b0 + 0.5 * ss + 0.5 * (k0 * n / kn) * (dm * dm)
    var = bn / gamma(st, an)
    return mun + math.sqrt(var / kn) * normal(st)


@nb.njit(**_JIT)
def beta_quadrature(hyper, stats, active, mask, bias, out):
    """Mirrors mab_beta_quadrature: exact Beta TS propensities of the eligible arms."""
    k = stats.shape[0]
    a = np.empty(k)
    b = np.empty(k)
    c = np.empty(k)
    arms = np.empty(k, dtype=np.int64)
    n = 0
    for j in range(k):
        out[j] = 0.0
        if not (active[j] and mask[j]):
            continue
        cnt = stats[j, 0]
        s1 = stats[j, 1]
        a[n] = hyper[0] + s1
        b[n] = hyper[1] + (cnt - s1)
        c[n] = bias[j]
        arms[n] = j
        n += 1
    max_propensities(FAMILY_BETA, a, b, c, arms, n, out)


@nb.njit(**_JIT)
def ts_propensities(kind, hyper, draws, method, seed, stats, active, mask, bias, stream, out):
    if method == METHOD_QUADRATURE and kind == BETA_TS:
        beta_quadrature(hyper, stats, active, mask, bias, out)
        return
    k = stats.shape[0]
    k_elig = 0
    for a in range(k):
        out[a] = 0.0
        if active[a] and mask[a]:
            k_elig += 1
    st = stream_new(seed, stream, PURPOSE_PROPENSITY)
    for _ in range(draws):
        best = -1
        best_v = -np.inf
        count = 0
        for a in range(k):
            if not (active[a] and mask[a]):
                continue
            v = posterior_draw(kind, hyper, stats, a, st) + bias[a]
            if best < 0 or v > best_v:
                best = a
                best_v = v
                count = 1
            elif v == best_v:
                count += 1
                if hyper[4] == 0.0 and tie_replaces(st, count):
                    best = a
        out[best] += 1.0
    denom = float(draws) + float(k_elig)
    for a in range(k):
        if active[a] and mask[a]:
            out[a] = (out[a] + 1.0) / denom


@nb.njit(**_JIT)
def beta_grid(hyper, stats, active, mask, grid, out):
    """Mirrors mab_beta_grid: the eligible arms' win probabilities on grid's node grid."""
    k = stats.shape[0]
    ab = np.empty((k, 2))
    elig = np.empty(k, dtype=np.bool_)
    for a in range(k):
        cnt = stats[a, 0]
        s1 = stats[a, 1]
        ab[a, 0] = hyper[0] + s1
        ab[a, 1] = hyper[1] + (cnt - s1)
        elig[a] = active[a] and mask[a]
    grid_propensities(ab, elig, grid, out)


@nb.njit(**_JIT)
def beta_within_tolerance(kind, hyper, method, stats, active, post, mask):
    """Mirrors mab_beta_within_tolerance."""
    tol = hyper[6]
    if not (tol > 0.0) or kind != BETA_TS or method != METHOD_QUADRATURE:
        return False
    e = 0.0
    for a in range(stats.shape[0]):
        if not (active[a] and mask[a]):
            continue
        cnt = stats[a, 0]
        s1 = stats[a, 1]
        e += beta_drift(post[a], hyper[0] + s1, hyper[1] + (cnt - s1))
    return e <= tol


@nb.njit(**_JIT)
def ts_cached(kind, hyper, draws, method, refresh, seed, stats, active, counters, cache, pmask, post, grid,
              mask, bias):
    """Mirrors mab_ts_cached: the one-entry cache of every arm's propensity for `mask`."""
    k = stats.shape[0]
    updates = counters[CTR_UPDATES]
    at = counters[CTR_PROPENSITY_AT]
    valid = at >= 0
    if valid:
        for a in range(k):
            if pmask[a] != (active[a] and mask[a]):
                valid = False
                break
    if valid and updates - at >= refresh:
        valid = beta_within_tolerance(kind, hyper, method, stats, active, post, mask)
    if not valid:
        if kind == BETA_TS and method == METHOD_QUADRATURE and grid.shape[0] == k:
            beta_grid(hyper, stats, active, mask, grid, cache)
        else:
            ts_propensities(kind, hyper, draws, method, seed, stats, active, mask, bias, updates, cache)
        for a in range(k):
            pmask[a] = active[a] and mask[a]
        counters[CTR_PROPENSITY_AT] = updates
        if kind == BETA_TS:
            for a in range(k):
                cnt = stats[a, 0]
                s1 = stats[a, 1]
                beta_snapshot(hyper[0] + s1, hyper[1] + (cnt - s1), cache[a], post[a])
    return cache


@nb.njit(**_JIT)
def ts_propensity(kind, hyper, draws, method, refresh, seed, stats, active, counters, cache, pmask, post, grid,
                  mask, bias, has_bias, arm):
    if draws <= 0:
        return np.nan
    k = stats.shape[0]
    updates = counters[CTR_UPDATES]
    if has_bias:
        tmp = np.empty(k)
        ts_propensities(kind, hyper, draws, method, seed, stats, active, mask, bias, updates, tmp)
        return tmp[arm]
    return ts_cached(kind, hyper, draws, method, refresh, seed, stats, active, counters, cache, pmask,
                     post, grid, mask, bias)[arm]


@nb.njit(**_JIT)
def is_matching(kind, hyper, method):
    return hyper[5] != 0.0 and kind == BETA_TS and method == METHOD_QUADRATURE


@nb.njit(**_JIT)
def match(seed, probs, t):
    """Mirrors mab_match: decision number t by probability matching from probs."""
    st = stream_new(seed, t, PURPOSE_DECISION)
    return match_draw(probs, uniform(st))


@nb.njit(**_JIT)
def match_select(kind, hyper, draws, method, refresh, seed, stats, active, counters, cache, pmask, post, grid,
                 mask, bias, has_bias, t):
    """Mirrors mab_match_select."""
    if not has_bias:
        return match(seed, ts_cached(kind, hyper, draws, method, refresh, seed, stats, active, counters,
                                     cache, pmask, post, grid, mask, bias), t)
    probs = np.empty(stats.shape[0])
    beta_quadrature(hyper, stats, active, mask, bias, probs)
    return match(seed, probs, t)


@nb.njit(**_JIT)
def greedy_arm(kind, hyper, seed, stats, active, mask, bias, t):
    """Mirrors mab_greedy with the tie stream (seed, t, tie): (highest mean + bias arm,
    eligible count, its value, number of arms tied at it)."""
    greedy = -1
    greedy_v = -np.inf
    k_elig = 0
    count = 0
    ties = no_stream()
    for a in range(stats.shape[0]):
        if not (active[a] and mask[a]):
            continue
        k_elig += 1
        v = expectation(kind, hyper, stats, a) + bias[a]
        if greedy < 0 or v > greedy_v:
            greedy = a
            greedy_v = v
            count = 1
        elif v == greedy_v:
            count += 1
            if hyper[4] == 0.0:  # random ties (1.0: the first tied arm stays)
                if ties.shape[0] == 0:
                    ties = stream_new(seed, t, PURPOSE_TIE)
                if tie_replaces(ties, count):
                    greedy = a
    return greedy, k_elig, greedy_v, count


@nb.njit(**_JIT)
def ucb_log_total(stats, active):
    """Mirrors mab_ucb_log_total."""
    total = 0.0
    for a in range(stats.shape[0]):
        if active[a]:
            total += stats[a, 0]
    return math.log(total if total > 1.0 else 1.0)


@nb.njit(**_JIT)
def ucb_score(kind, hyper, stats, bias, a, log_total):
    """Mirrors mab_ucb_score: +inf for an arm never updated."""
    n = stats[a, 0]
    if not (n > 0.0):
        return np.inf
    mean = stats[a, 1] / n
    if kind == UCB1:
        bonus = hyper[0] * math.sqrt(2.0 * log_total / n)
    else:
        var = stats[a, 2] / n - mean * mean
        if var < 0.0:
            var = 0.0
        v = var + math.sqrt(2.0 * log_total / n)
        if v > 0.25:
            v = 0.25
        bonus = hyper[0] * math.sqrt(log_total / n * v)
    return mean + bonus + bias[a]


@nb.njit(**_JIT)
def is_thompson(kind):
    return kind == BETA_TS or kind == GAUSSIAN_TS


@nb.njit(**_JIT)
def choose(kind, hyper, seed, stats, active, mask, bias, t):
    """Mirrors mab_choose: decision number t without touching state (NaN propensity
    for Thompson sampling, which select and select_batch fill in)."""
    k = stats.shape[0]
    st = stream_new(seed, t, PURPOSE_DECISION)
    ties = no_stream()  # the tie stream (seed, t, tie), made at the first tie
    best = -1
    prop = 1.0
    if kind == BETA_TS or kind == GAUSSIAN_TS or kind == UCB1 or kind == UCB_TUNED:
        thompson = kind == BETA_TS or kind == GAUSSIAN_TS
        log_total = 0.0 if thompson else ucb_log_total(stats, active)
        best_v = -np.inf
        count = 0
        for a in range(k):
            if not (active[a] and mask[a]):
                continue
            if thompson:
                v = posterior_draw(kind, hyper, stats, a, st) + bias[a]
            else:
                v = ucb_score(kind, hyper, stats, bias, a, log_total)
            if best < 0 or v > best_v:
                best = a
                best_v = v
                count = 1
            elif v == best_v:
                count += 1
                if hyper[4] == 0.0:  # random ties (1.0: the first tied arm stays)
                    if ties.shape[0] == 0:
                        ties = stream_new(seed, t, PURPOSE_TIE)
                    if tie_replaces(ties, count):
                        best = a
        prop = np.nan if thompson else (1.0 if hyper[4] != 0.0 else 1.0 / float(count))
    elif kind == EPSILON_GREEDY:
        greedy, k_elig, greedy_v, n_tied = greedy_arm(kind, hyper, seed, stats, active, mask,
                                                      bias, t)
        eps = hyper[0]
        u_explore = uniform(st)
        u_arm = uniform(st)
        if u_explore < eps:
            j = np.int64(u_arm * float(k_elig))
            if j >= k_elig:
                j = k_elig - 1
            for a in range(k):
                if not (active[a] and mask[a]):
                    continue
                if j == 0:
                    best = a
                    break
                j -= 1
        else:
            best = greedy
        if hyper[4] != 0.0:
            tied = best == greedy
            share = 1.0
        else:
            tied = expectation(kind, hyper, stats, best) + bias[best] == greedy_v
            share = 1.0 / float(n_tied)
        prop = eps / float(k_elig) + ((1.0 - eps) * share if tied else 0.0)
    else:  # SOFTMAX
        tau = hyper[0]
        _, _, vmax, _ = greedy_arm(kind, hyper, seed, stats, active, mask, bias, t)
        z = 0.0
        for a in range(k):
            if not (active[a] and mask[a]):
                continue
            z += math.exp((expectation(kind, hyper, stats, a) + bias[a] - vmax) / tau)
        u = uniform(st) * z
        cum = 0.0
        last = -1
        for a in range(k):
            if not (active[a] and mask[a]):
                continue
            last = a
            w = math.exp((expectation(kind, hyper, stats, a) + bias[a] - vmax) / tau)
            cum += w
            if u < cum:
                best = a
                prop = w / z
                break
        if best < 0:
            best = last
            prop = math.exp((expectation(kind, hyper, stats, best) + bias[best] - vmax) / tau) / z
    return best, prop


@nb.njit(**_JIT)
def select(kind, hyper, draws, method, refresh, seed, stats, active, counters, cache, pmask, post, grid, mask,
           bias, has_bias):
    """Mirrors mab_select: choose with the next decision number, the Thompson propensity."""
    t = counters[CTR_DECISIONS]
    if is_matching(kind, hyper, method):
        best, prop = match_select(kind, hyper, draws, method, refresh, seed, stats, active, counters,
                                  cache, pmask, post, grid, mask, bias, has_bias, t)
    else:
        best, prop = choose(kind, hyper, seed, stats, active, mask, bias, t)
        if is_thompson(kind):
            prop = ts_propensity(kind, hyper, draws, method, refresh, seed, stats, active, counters,
                                 cache, pmask, post, grid, mask, bias, has_bias, best)
    counters[CTR_DECISIONS] = t + 1
    return best, prop


@nb.njit(**_JIT)
def action_probabilities(kind, hyper, draws, method, seed, stats, active, counters, mask, bias, out):
    """Mirrors mab_action_probabilities: the policy's distribution over arms."""
    k = stats.shape[0]
    if is_thompson(kind):
        ts_propensities(kind, hyper, draws, method, seed, stats, active, mask, bias, counters[CTR_UPDATES],
                        out)
        return
    for a in range(k):
        out[a] = 0.0
    if kind == UCB1 or kind == UCB_TUNED:
        log_total = ucb_log_total(stats, active)
        top = -np.inf
        count = 0
        first = -1
        for a in range(k):
            if active[a] and mask[a]:
                v = ucb_score(kind, hyper, stats, bias, a, log_total)
                if count == 0 or v > top:
                    top = v
                    count = 1
                    first = a
                elif v == top:
                    count += 1
        for a in range(k):
            if hyper[4] != 0.0:
                if a == first:
                    out[a] = 1.0
            elif active[a] and mask[a] and ucb_score(kind, hyper, stats, bias, a, log_total) == top:
                out[a] = 1.0 / float(count)
        return
    greedy, k_elig, vmax, n_tied = greedy_arm(kind, hyper, seed, stats, active, mask, bias, 0)
    if kind == EPSILON_GREEDY:
        for a in range(k):
            if active[a] and mask[a]:
                out[a] = hyper[0] / float(k_elig)
                if hyper[4] != 0.0:
                    if a == greedy:
                        out[a] += (1.0 - hyper[0]) * 1.0
                elif expectation(kind, hyper, stats, a) + bias[a] == vmax:
                    out[a] += (1.0 - hyper[0]) * (1.0 / float(n_tied))
        return
    z = 0.0
    for a in range(k):
        if active[a] and mask[a]:
            z += math.exp((expectation(kind, hyper, stats, a) + bias[a] - vmax) / hyper[0])
    for a in range(k):
        if active[a] and mask[a]:
            out[a] = math.exp((expectation(kind, hyper, stats, a) + bias[a] - vmax) / hyper[0]) / z


@nb.njit(**_JIT)
def choose_rows(kind, hyper, seed, stats, active, masks, biases, t0, out_arms, out_props):
    """Mirrors mab_choose_rows: row i is decision number t0 + i, state untouched."""
    for i in range(out_arms.shape[0]):
        arm, prop = choose(kind, hyper, seed, stats, active, masks[i], biases[i], t0 + i)
        out_arms[i] = arm
        out_props[i] = prop


@nb.njit(**_JIT)
def ts_propensity_rows(kind, hyper, draws, method, refresh, seed, stats, active, counters, cache, pmask,
                       post, grid, masks, biases, has_bias, arms, out_props):
    """Mirrors mab_ts_propensity_rows: the chosen arms' propensities in row order
    through the one-entry cache, as n single selects fill and reuse it."""
    for i in range(arms.shape[0]):
        out_props[i] = ts_propensity(kind, hyper, draws, method, refresh, seed, stats, active, counters,
                                     cache, pmask, post, grid, masks[i], biases[i], has_bias, arms[i])


@nb.njit(**_JIT)
def match_rows(kind, hyper, draws, method, refresh, seed, stats, active, counters, cache, pmask, post, grid,
               masks, biases, has_bias, t0, out_arms, out_props):
    """Mirrors mab_match_rows on one thread: rows in order through the cache (fresh
    probabilities per row with biases), which is what every split gives."""
    for i in range(out_arms.shape[0]):
        arm, prop = match_select(kind, hyper, draws, method, refresh, seed, stats, active, counters,
                                 cache, pmask, post, grid, masks[i], biases[i], has_bias, t0 + i)
        out_arms[i] = arm
        out_props[i] = prop


@nb.njit(**_JIT)
def select_batch(kind, hyper, draws, method, refresh, seed, stats, active, counters, cache, pmask,
                 post, grid, masks, biases, has_bias, out_arms, out_props):
    """Mirrors mab_select_batch (on one thread): the choices, then the Thompson
    propensities in row order, then the decision counter."""
    t0 = counters[CTR_DECISIONS]
    if is_matching(kind, hyper, method):
        match_rows(kind, hyper, draws, method, refresh, seed, stats, active, counters, cache, pmask,
                   post, grid, masks, biases, has_bias, t0, out_arms, out_props)
    else:
        choose_rows(kind, hyper, seed, stats, active, masks, biases, t0, out_arms, out_props)
        if is_thompson(kind):
            ts_propensity_rows(kind, hyper, draws, method, refresh, seed, stats, active, counters,
                               cache, pmask, post, grid, masks, biases, has_bias, out_arms, out_props)
    counters[CTR_DECISIONS] = t0 + out_arms.shape[0]


@nb.njit(**_JIT)
def action_probabilities_rows(kind, hyper, draws, method, seed, stats, active, counters, grid, masks,
                              biases, has_bias, out):
    """Mirrors mab_action_probabilities_rows: without a bias a row's distribution is
    computed once per distinct mask row (for Beta TS by quadrature on the node grid of
    ``grid``, as the logged propensities are) and copied to the others (rows found by a
    hash of the mask, confirmed by comparing the rows)."""
    n = out.shape[0]
    k = out.shape[1]
    seen = nb.typed.Dict.empty(key_type=nb.types.int64, value_type=nb.types.int64)
    for i in range(n):
        mask = masks[i]
        if has_bias:
            action_probabilities(kind, hyper, draws, method, seed, stats, active, counters, mask,
                                 biases[i], out[i])
            continue
        h = np.int64(k)
        for a in range(k):
            h = h * np.int64(1000003) + np.int64(1 if mask[a] else 0)
        j = seen[h] if h in seen else np.int64(-1)
        if j >= 0:
            same = True
            for a in range(k):
                if masks[j, a] != mask[a]:
                    same = False
                    break
            if same:
                for a in range(k):
                    out[i, a] = out[j, a]
                continue
        if kind == BETA_TS and method == METHOD_QUADRATURE and grid.shape[0] == k:
            # as mab_action_probabilities: the node grid of the logged probabilities (a
            # copy of the snapshot: this reads the state only)
            beta_grid(hyper, stats, active, mask, grid.copy(), out[i])
        else:
            action_probabilities(kind, hyper, draws, method, seed, stats, active, counters, mask,
                                 biases[i], out[i])
        if j < 0:
            seen[h] = i


@nb.njit(**_JIT)
def update(decay, stats, counters, arm, reward, weight):
    if decay < 1.0:
        k = stats.shape[0]
        for a in range(k):
            for j in range(3):
                stats[a, j] *= decay
    stats[arm, 0] += weight
    stats[arm, 1] += weight * reward
    stats[arm, 2] += weight * (reward * reward)
    counters[CTR_UPDATES] += 1


@nb.njit(**_JIT)
def update_batch(decay, stats, counters, arms, rewards, weights):
    for i in range(arms.shape[0]):
        update(decay, stats, counters, arms[i], rewards[i], weights[i])


@nb.njit(**_JIT)
def expectations(kind, hyper, stats):
    k = stats.shape[0]
    out = np.empty(k, dtype=np.float64)
    for a in range(k):
        out[a] = expectation(kind, hyper, stats, a)
    return out
