"""Non-contextual bandit kernels in Numba; mirrors ``multiarmed.hpp``.

State: ``stats`` (K, 3) of (sum w, sum w*r, sum w*r^2), ``active`` (K,) bool,
``counters`` (4,) int64 [decisions, updates, propensity cache stamp, spare],
``prop_cache`` (K,) float64, ``prop_mask`` (K,) bool. ``mask`` is always an
array here (all True when the caller gave none).
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from .rng import PURPOSE_DECISION, PURPOSE_PROPENSITY, beta, gamma, normal, stream_new, uniform

BETA_TS, GAUSSIAN_TS, UCB1, UCB_TUNED, EPSILON_GREEDY, SOFTMAX = 0, 1, 2, 3, 4, 5
CTR_DECISIONS, CTR_UPDATES, CTR_PROPENSITY_AT = 0, 1, 2

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
def ts_propensities(kind, hyper, draws, seed, stats, active, mask, bias, stream, out):
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
        for a in range(k):
            if not (active[a] and mask[a]):
                continue
            v = posterior_draw(kind, hyper, stats, a, st) + bias[a]
            if best < 0 or v > best_v:
                best = a
                best_v = v
        out[best] += 1.0
    denom = float(draws) + float(k_elig)
    for a in range(k):
        if active[a] and mask[a]:
            out[a] = (out[a] + 1.0) / denom


@nb.njit(**_JIT)
def ts_propensity(kind, hyper, draws, refresh, seed, stats, active, counters, cache, pmask, mask,
                  bias, has_bias, arm):
    if draws <= 0:
        return np.nan
    k = stats.shape[0]
    updates = counters[CTR_UPDATES]
    if has_bias:
        tmp = np.empty(k)
        ts_propensities(kind, hyper, draws, seed, stats, active, mask, bias, updates, tmp)
        return tmp[arm]
    at = counters[CTR_PROPENSITY_AT]
    valid = at >= 0 and updates - at < refresh
    if valid:
        for a in range(k):
            if pmask[a] != (active[a] and mask[a]):
                valid = False
                break
    if not valid:
        ts_propensities(kind, hyper, draws, seed, stats, active, mask, bias, updates, cache)
        for a in range(k):
            pmask[a] = active[a] and mask[a]
        counters[CTR_PROPENSITY_AT] = updates
    return cache[arm]


@nb.njit(**_JIT)
def greedy_arm(kind, hyper, stats, active, mask, bias):
    """Mirrors mab_greedy: (highest mean + bias arm, eligible count, its value)."""
    greedy = -1
    greedy_v = -np.inf
    k_elig = 0
    for a in range(stats.shape[0]):
        if not (active[a] and mask[a]):
            continue
        k_elig += 1
        v = expectation(kind, hyper, stats, a) + bias[a]
        if greedy < 0 or v > greedy_v:
            greedy = a
            greedy_v = v
    return greedy, k_elig, greedy_v


@nb.njit(**_JIT)
def select(kind, hyper, draws, refresh, seed, stats, active, counters, cache, pmask, mask, bias,
           has_bias):
    k = stats.shape[0]
    t = counters[CTR_DECISIONS]
    st = stream_new(seed, t, PURPOSE_DECISION)
    best = -1
    prop = 1.0
    if kind == BETA_TS or kind == GAUSSIAN_TS:
        best_v = -np.inf
        for a in range(k):
            if not (active[a] and mask[a]):
                continue
            v = posterior_draw(kind, hyper, stats, a, st) + bias[a]
            if best < 0 or v > best_v:
                best = a
                best_v = v
        prop = ts_propensity(kind, hyper, draws, refresh, seed, stats, active, counters, cache,
                             pmask, mask, bias, has_bias, best)
    elif kind == UCB1 or kind == UCB_TUNED:
        total = 0.0
        for a in range(k):
            if active[a]:
                total += stats[a, 0]
        log_total = math.log(total if total > 1.0 else 1.0)
        best_v = -np.inf
        for a in range(k):
            if not (active[a] and mask[a]):
                continue
            n = stats[a, 0]
            if not (n > 0.0):
                best = a
                break
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
            score = mean + bonus + bias[a]
            if best < 0 or score > best_v:
                best = a
                best_v = score
        prop = 1.0
    elif kind == EPSILON_GREEDY:
        greedy, k_elig, _ = greedy_arm(kind, hyper, stats, active, mask, bias)
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
        prop = eps / float(k_elig) + ((1.0 - eps) if best == greedy else 0.0)
    else:  # SOFTMAX
        tau = hyper[0]
        _, _, vmax = greedy_arm(kind, hyper, stats, active, mask, bias)
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
    counters[CTR_DECISIONS] = t + 1
    return best, prop


@nb.njit(**_JIT)
def action_probabilities(kind, hyper, draws, seed, stats, active, counters, mask, bias, out):
    """Mirrors mab_action_probabilities: the policy's distribution over arms."""
    k = stats.shape[0]
    if kind == BETA_TS or kind == GAUSSIAN_TS:
        ts_propensities(kind, hyper, draws, seed, stats, active, mask, bias, counters[CTR_UPDATES],
                        out)
        return
    for a in range(k):
        out[a] = 0.0
    if kind == UCB1 or kind == UCB_TUNED:
        scratch = counters.copy()  # select() advances the decision counter: keep ours intact
        arm, _ = select(kind, hyper, 0, 1, seed, stats, active, scratch, out.copy(),
                        np.zeros(k, dtype=np.bool_), mask, bias, True)
        out[arm] = 1.0
        return
    greedy, k_elig, vmax = greedy_arm(kind, hyper, stats, active, mask, bias)
    if kind == EPSILON_GREEDY:
        for a in range(k):
            if active[a] and mask[a]:
                out[a] = hyper[0] / float(k_elig)
        out[greedy] += 1.0 - hyper[0]
        return
    z = 0.0
    for a in range(k):
        if active[a] and mask[a]:
            z += math.exp((expectation(kind, hyper, stats, a) + bias[a] - vmax) / hyper[0])
    for a in range(k):
        if active[a] and mask[a]:
            out[a] = math.exp((expectation(kind, hyper, stats, a) + bias[a] - vmax) / hyper[0]) / z


@nb.njit(**_JIT)
def select_batch(kind, hyper, draws, refresh, seed, stats, active, counters, cache, pmask,
                 masks, biases, has_bias, out_arms, out_props):
    for i in range(out_arms.shape[0]):
        arm, prop = select(kind, hyper, draws, refresh, seed, stats, active, counters, cache,
                           pmask, masks[i], biases[i], has_bias)
        out_arms[i] = arm
        out_props[i] = prop


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
