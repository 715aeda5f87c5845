"""Disjoint linear bandit kernels (LinUCB, LinTS) in Numba; mirrors ``linear.hpp``,
batch loops included (on one thread).

State: ``A``, ``A_inv`` (K, d, d), ``b``, ``theta`` (K, d), ``n`` (K,),
``since_refresh`` (K,) int64, ``active`` (K,) bool, ``counters`` (N_COUNTERS,)
int64 in the slots of ``codes``.
Scratch (the layout of ``lin_scratch_view``): ``mean``, ``var`` (K,), ``u`` (d,), ``work`` (2 d^2,).
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from .codes import CTR_DECISIONS, CTR_UPDATES, LIN_UCB, METHOD_QUADRATURE
from .linalg import dot, spd_inverse, symv
from .quadrature import normal_propensity
from .rng import (
    PURPOSE_DECISION,
    PURPOSE_EVALUATION,
    PURPOSE_PROPENSITY,
    PURPOSE_TIE,
    no_stream,
    normal,
    stream_new,
    tie_replaces,
)

_JIT = {"nogil": True, "cache": True, "error_model": "numpy"}


@nb.njit(**_JIT)
def refresh_arm(A, A_inv, b, theta, since, a, work):
    d = A.shape[1]
    if not spd_inverse(A[a].reshape(-1), A_inv[a].reshape(-1), d, work):
        raise ValueError("linear bandit: precision matrix lost positive definiteness")
    symv(A_inv[a].reshape(-1), b[a], theta[a], d)
    since[a] = 0


@nb.njit(**_JIT)
def refresh_all(A, A_inv, b, theta, since, work):
    """Mirrors lin_refresh_all."""
    for a in range(A.shape[0]):
        refresh_arm(A, A_inv, b, theta, since, a, work)


@nb.njit(**_JIT)
def moments(A_inv, theta, active, mask, x, mean, var, u):
    """Mirrors lin_moments_block for one context (every arm; ineligible arms' numbers are
    never read): mean = sum_j theta_j x_j, var = max(0, sum_i x_i (Ainv_ii x_i + 2 s_i)),
    s_i = sum_{j > i} Ainv_ij x_j, in that order (i, j ascending)."""
    k = theta.shape[0]
    d = theta.shape[1]
    for a in range(k):
        th = theta[a]
        ai = A_inv[a]
        m = 0.0
        for j in range(d):
            m += th[j] * x[j]
        q = 0.0
        for i in range(d):
            acc = 0.0
            for j in range(i + 1, d):
                acc += ai[i, j] * x[j]
            q += x[i] * (ai[i, i] * x[i] + 2.0 * acc)
        mean[a] = m
        var[a] = q if q > 0.0 else 0.0


@nb.njit(**_JIT)
def ucb_best(exploration, first, seed, t, active, mask, bias, mean, var):
    """Mirrors lin_ucb_best with the tie stream (seed, t, tie): (arm, number tied, top)."""
    best = -1
    best_v = -np.inf
    count = 0
    ties = no_stream()
    for a in range(mean.shape[0]):
        if not (active[a] and mask[a]):
            continue
        score = mean[a] + exploration * math.sqrt(var[a]) + bias[a]
        if best < 0 or score > best_v:
            best = a
            best_v = score
            count = 1
        elif score == best_v:
            count += 1
            if not first:  # random ties (first: the first tied arm stays)
                if ties.shape[0] == 0:
                    ties = stream_new(seed, t, PURPOSE_TIE)
                if tie_replaces(ties, count):
                    best = a
    return best, count, best_v


@nb.njit(**_JIT)
def ts_draw_ties(exploration, first, active, mask, bias, mean, var, st, seed, t, own_ties):
    """Mirrors lin_ts_draw: one Thompson draw of every eligible score, the argmax; exact
    ties from `st` itself when own_ties, else from the tie stream (seed, t, tie)."""
    best = -1
    best_v = -np.inf
    count = 0
    ties = st if own_ties else no_stream()
    for a in range(mean.shape[0]):
        if not (active[a] and mask[a]):
            continue
        score = mean[a] + exploration * math.sqrt(var[a]) * normal(st) + bias[a]
        if best < 0 or score > best_v:
            best = a
            best_v = score
            count = 1
        elif score == best_v:
            count += 1
            if not first:
                if ties.shape[0] == 0:
                    ties = stream_new(seed, t, PURPOSE_TIE)
                if tie_replaces(ties, count):
                    best = a
    return best


@nb.njit(**_JIT)
def ts_draw(exploration, first, active, mask, bias, mean, var, st):
    """lin_ts_draw(..., rs, rs): ties from the drawing stream itself (estimates)."""
    return ts_draw_ties(exploration, first, active, mask, bias, mean, var, st, 0, 0, True)


@nb.njit(**_JIT)
def ts_scores(exploration, active, mask, bias, mean, var):
    """Mirrors LinTsScores: the eligible arms' (m, sd, arm), their count and zero sds."""
    k = mean.shape[0]
    m = np.empty(k)
    sd = np.empty(k)
    arms = np.empty(k, dtype=np.int64)
    n = 0
    n_zero = 0
    for a in range(k):
        if not (active[a] and mask[a]):
            continue
        m[n] = mean[a] + bias[a]
        sd[n] = exploration * math.sqrt(var[a])
        n_zero += 0 if sd[n] > 0.0 else 1
        arms[n] = a
        n += 1
    return m, sd, arms, n, n_zero


@nb.njit(**_JIT)
def ts_prob(first, m, sd, n, n_zero, i):
    """Mirrors LinTsScores::prob: (ok, probability of the i-th eligible arm)."""
    if n_zero == n:
        top = m[0]
        for j in range(1, n):
            top = m[j] if m[j] > top else top
        tied = 0
        first_j = -1
        for j in range(n):
            if m[j] == top:
                tied += 1
                if first_j < 0:
                    first_j = j
        if m[i] != top:
            return True, 0.0
        if not first:
            return True, 1.0 / float(tied)
        return True, 1.0 if i == first_j else 0.0
    if n_zero > 0:
        return False, 0.0
    return True, normal_propensity(m, sd, n, i)


@nb.njit(**_JIT)
def ts_quadrature(exploration, first, active, mask, bias, mean, var, out):
    """Mirrors lin_ts_quadrature: exact LinTS propensities into out; False when zero
    and positive score sds mix (the caller then counts draws)."""
    m, sd, arms, n, n_zero = ts_scores(exploration, active, mask, bias, mean, var)
    for a in range(mean.shape[0]):
        out[a] = 0.0
    for i in range(n):
        ok, v = ts_prob(first, m, sd, n, n_zero, i)
        if not ok:
            return False
        out[arms[i]] = v
    return True


@nb.njit(**_JIT)
def ts_propensity(exploration, first, draws, method, seed, active, mask, bias, mean, var, t, arm):
    """Mirrors lin_ts_propensity: exact by quadrature (the arm's own integral), else
    (wins + 1) / (draws + K_eligible) of `arm` over `draws` score draws on the stream
    (seed, t, propensity); NaN without draws."""
    if draws <= 0:
        return np.nan
    if method == METHOD_QUADRATURE:
        m, sd, arms, n, n_zero = ts_scores(exploration, active, mask, bias, mean, var)
        for i in range(n):
            if arms[i] == arm:
                ok, v = ts_prob(first, m, sd, n, n_zero, i)
                if ok:
                    return v
    sp = stream_new(seed, t, PURPOSE_PROPENSITY)
    wins = 0
    k_elig = 0
    for a in range(mean.shape[0]):
        if active[a] and mask[a]:
            k_elig += 1
    for _ in range(draws):
        if ts_draw(exploration, first, active, mask, bias, mean, var, sp) == arm:
            wins += 1
    return (float(wins) + 1.0) / (float(draws) + float(k_elig))


@nb.njit(**_JIT)
def choose(kind, exploration, first, draws, method, seed, A_inv, theta, active, mask, bias, x, t, mean, var, u):
    """Mirrors lin_choose: decision number t for context x, state untouched."""
    moments(A_inv, theta, active, mask, x, mean, var, u)
    prop = 1.0
    if kind == LIN_UCB:
        best, n_tied, _ = ucb_best(exploration, first, seed, t, active, mask, bias, mean, var)
        prop = 1.0 if first else 1.0 / float(n_tied)
    else:
        best = ts_draw_ties(exploration, first, active, mask, bias, mean, var,
                            stream_new(seed, t, PURPOSE_DECISION), seed, t, False)
        prop = ts_propensity(exploration, first, draws, method, seed, active, mask, bias, mean, var, t, best)
    return best, prop


@nb.njit(**_JIT)
def choose_rows(kind, exploration, first, draws, method, seed, A_inv, theta, active, masks, biases, xs, t0,
                mean, var, u, out_arms, out_props):
    """Mirrors lin_choose_rows: row i is decision number t0 + i, state untouched."""
    for i in range(xs.shape[0]):
        arm, prop = choose(kind, exploration, first, draws, method, seed, A_inv, theta, active, masks[i],
                           biases[i], xs[i], t0 + i, mean, var, u)
        out_arms[i] = arm
        out_props[i] = prop


@nb.njit(**_JIT)
def select(kind, exploration, first, draws, method, seed, A_inv, theta, active, counters, mask, bias, x, mean, var,
           u):
    """Mirrors lin_select: one decision with the next decision number."""
    t = counters[CTR_DECISIONS]
    best, prop = choose(kind, exploration, first, draws, method, seed, A_inv, theta, active, mask, bias, x, t,
                        mean, var, u)
    counters[CTR_DECISIONS] = t + 1
    return best, prop


@nb.njit(**_JIT)
def select_batch(kind, exploration, first, draws, method, seed, A_inv, theta, active, counters, masks, biases,
                 xs, mean, var, u, out_arms, out_props):
    """Mirrors lin_select_batch (on one thread)."""
    t0 = counters[CTR_DECISIONS]
    choose_rows(kind, exploration, first, draws, method, seed, A_inv, theta, active, masks, biases, xs, t0,
                mean, var, u, out_arms, out_props)
    counters[CTR_DECISIONS] = t0 + xs.shape[0]


@nb.njit(**_JIT)
def action_probabilities_row(kind, exploration, first, draws, method, seed, A_inv, theta, active, mask, bias, x,
                             stream, mean, var, u, out):
    """Mirrors lin_action_probabilities: LinUCB one-hot; LinTS (wins + 1) /
    (draws + K_eligible) over `draws` draws on the stream (seed, stream, evaluation)."""
    k = theta.shape[0]
    moments(A_inv, theta, active, mask, x, mean, var, u)
    for a in range(k):
        out[a] = 0.0
    if kind == LIN_UCB:
        best, n_tied, top = ucb_best(exploration, first, seed, stream, active, mask, bias, mean,
                                     var)
        for a in range(k):
            if first:
                if a == best:
                    out[a] = 1.0
            elif active[a] and mask[a] and mean[a] + exploration * math.sqrt(var[a]) + bias[a] == top:
                out[a] = 1.0 / float(n_tied)
        return
    if draws == 0 and method == METHOD_QUADRATURE:
        if ts_quadrature(exploration, first, active, mask, bias, mean, var, out):
            return
    if draws == 0:
        draws = 1000
    st = stream_new(seed, stream, PURPOSE_EVALUATION)
    k_elig = 0
    for a in range(k):
        if active[a] and mask[a]:
            k_elig += 1
    for _ in range(draws):
        out[ts_draw(exploration, first, active, mask, bias, mean, var, st)] += 1.0
    denom = float(draws) + float(k_elig)
    for a in range(k):
        if active[a] and mask[a]:
            out[a] = (out[a] + 1.0) / denom


@nb.njit(**_JIT)
def action_probabilities(kind, exploration, first, draws, method, seed, A_inv, theta, active, masks, biases, xs,
                         mean, var, u, out):
    """Mirrors lin_action_probabilities_rows (on one thread): row i on stream i."""
    for i in range(xs.shape[0]):
        action_probabilities_row(kind, exploration, first, draws, method, seed, A_inv, theta, active, masks[i],
                                 biases[i], xs[i], i, mean, var, u, out[i])


@nb.njit(**_JIT)
def update_stats(decay, ridge, refresh_every, A, A_inv, b, theta, n, since, counters, arm, reward,
                 x, weight, u, work):
    """Mirrors lin_update_stats: A, b, n, A^-1 of one update; theta is the caller's."""
    k = A.shape[0]
    d = A.shape[1]
    if decay < 1.0:
        g = decay
        shrink = (1.0 - g) * ridge
        for a in range(k):
            for i in range(d):
                for j in range(d):
                    A[a, i, j] *= g
            for i in range(d):
                A[a, i, i] += shrink
            for i in range(d):
                b[a, i] *= g
            n[a] *= g
    for i in range(d):
        wx = weight * x[i]
        for j in range(d):
            A[arm, i, j] += wx * x[j]
        b[arm, i] += wx * reward
    n[arm] += weight
    if decay < 1.0:
        for a in range(k):
            refresh_arm(A, A_inv, b, theta, since, a, work)
    else:
        since[arm] += 1
        if since[arm] >= refresh_every:
            refresh_arm(A, A_inv, b, theta, since, arm, work)
        else:
            Ai = A_inv[arm]
            symv(Ai.reshape(-1), x, u, d)
            c = weight / (1.0 + weight * dot(x, u, d))
            for i in range(d):
                cu = c * u[i]
                for j in range(d):
                    Ai[i, j] -= cu * u[j]
    counters[CTR_UPDATES] += 1


@nb.njit(**_JIT)
def update(decay, ridge, refresh_every, A, A_inv, b, theta, n, since, counters, arm, reward, x,
           weight, u, work):
    """Mirrors lin_update: one update, then theta of the arm."""
    update_stats(decay, ridge, refresh_every, A, A_inv, b, theta, n, since, counters, arm, reward,
                 x, weight, u, work)
    if decay >= 1.0:
        d = A.shape[1]
        symv(A_inv[arm].reshape(-1), b[arm], theta[arm], d)


@nb.njit(**_JIT)
def update_batch(decay, ridge, refresh_every, A, A_inv, b, theta, n, since, counters, arms,
                 rewards, xs, weights, u, work):
    """Mirrors lin_update_rows: the updates in row order, theta once per touched arm."""
    k = A.shape[0]
    d = A.shape[1]
    touched = np.zeros(k, dtype=np.bool_)
    for i in range(arms.shape[0]):
        update_stats(decay, ridge, refresh_every, A, A_inv, b, theta, n, since, counters,
                     arms[i], rewards[i], xs[i], weights[i], u, work)
        touched[arms[i]] = True
    if decay < 1.0:
        return
    for a in range(k):
        if touched[a]:
            symv(A_inv[a].reshape(-1), b[a], theta[a], d)


@nb.njit(**_JIT)
def _all_finite(v):
    for i in range(v.shape[0]):
        if not math.isfinite(v[i]):
            return False
    return True


@nb.njit(**_JIT)
def accumulate_rows(decay, ridge, A, A_inv, b, theta, n, since, counters, arms, rewards, xs,
                    weights, work):
    """Mirrors lin_accumulate_rows (the batch-update mode "accumulate"): every touched arm
    gets the batch's sums on A (upper triangle, mirrored) and b in row order, then A^-1
    and theta exactly once; with decay < 1 every arm is scaled by gamma^n first and row i
    weighs gamma^(n-1-i). Built beside the state and written only when every arm's new
    statistics are finite and A positive definite: returns -1, or the first arm that
    failed (nothing written)."""
    nrows = arms.shape[0]
    if nrows == 0:
        return -1
    k = A.shape[0]
    d = A.shape[1]
    decays = decay < 1.0
    start = np.zeros(k + 1, dtype=np.int64)
    for i in range(nrows):
        start[arms[i] + 1] += 1
    for a in range(k):
        start[a + 1] += start[a]
    order = np.empty(nrows, dtype=np.int64)
    pos = start[:k].copy()
    for i in range(nrows):
        order[pos[arms[i]]] = i
        pos[arms[i]] += 1
    gn = 1.0
    gk = np.ones(nrows)
    if decays:
        for i in range(nrows - 2, -1, -1):
            gk[i] = gk[i + 1] * decay
        gn = gk[0] * decay
    tarms = np.empty(k, dtype=np.int64)
    nt = 0
    for a in range(k):
        if decays or start[a + 1] > start[a]:
            tarms[nt] = a
            nt += 1
    nA = np.empty((nt, d, d))
    nAi = np.empty((nt, d, d))
    nb = np.empty((nt, d))
    nth = np.empty((nt, d))
    nn = np.empty(nt)
    for t in range(nt):
        a = tarms[t]
        if decays:
            for i in range(d):
                for j in range(d):
                    nA[t, i, j] = gn * A[a, i, j]
            shrink = (1.0 - gn) * ridge
            for i in range(d):
                nA[t, i, i] += shrink
            for i in range(d):
                nb[t, i] = gn * b[a, i]
            nn[t] = gn * n[a]
        else:
            for i in range(d):
                for j in range(d):
                    nA[t, i, j] = A[a, i, j]
            for i in range(d):
                nb[t, i] = b[a, i]
            nn[t] = n[a]
        lo = start[a]
        m = start[a + 1] - lo
        if m > 0:
            xa = np.empty((m, d))
            wxt = np.empty((d, m))
            rw = np.empty(m)
            na = nn[t]
            for r in range(m):
                row = order[lo + r]
                w = weights[row]
                if decays:
                    w *= gk[row]
                for i in range(d):
                    xa[r, i] = xs[row, i]
                    wxt[i, r] = w * xs[row, i]
                rw[r] = rewards[row]
                na += w
            nn[t] = na
            for i in range(d):
                for j in range(i, d):
                    acc = nA[t, i, j]
                    for r in range(m):
                        acc += wxt[i, r] * xa[r, j]
                    nA[t, i, j] = acc
            for i in range(d):
                bi = nb[t, i]
                for r in range(m):
                    bi += wxt[i, r] * rw[r]
                nb[t, i] = bi
        for i in range(1, d):
            for j in range(i):
                nA[t, i, j] = nA[t, j, i]
        flat_a = nA[t].reshape(-1)
        flat_ai = nAi[t].reshape(-1)
        ok = (_all_finite(flat_a) and _all_finite(nb[t]) and math.isfinite(nn[t])
              and spd_inverse(flat_a, flat_ai, d, work))
        if ok:
            symv(flat_ai, nb[t], nth[t], d)
        if not ok or not _all_finite(flat_ai) or not _all_finite(nth[t]):
            return a
    for t in range(nt):
        a = tarms[t]
        A[a] = nA[t]
        A_inv[a] = nAi[t]
        b[a] = nb[t]
        theta[a] = nth[t]
        n[a] = nn[t]
        since[a] = 0
    counters[CTR_UPDATES] += nrows
    return -1


@nb.njit(**_JIT)
def expectations(theta, xs):
    n = xs.shape[0]
    k = theta.shape[0]
    d = theta.shape[1]
    out = np.empty((n, k), dtype=np.float64)
    for i in range(n):
        for a in range(k):
            m = 0.0
            for j in range(d):
                m += theta[a, j] * xs[i, j]
            out[i, a] = m
    return out
