"""Conversion-model Thompson sampling in Numba; mirrors ``conversion.hpp`` operation for
operation (same loops, same order of floating-point operations, same draws), so that a
seed gives the same decisions as the C++ backend.

The model (see ``promobandit.policies.conversion`` for the maths and the knobs): two
probit heads over the features phi(x, k, c) = [x, c * x, c, e_k] (p = 2 d + 1 + K):
head 1 is P(whole basket | buy, x, k) with c the basket's extra log cut over the lead
line's; head 0 is P(buy | x, offer k) with c the lead line's cut plus head 1's
P(whole basket | buy) times that extra cut (see ``head_cut``). Each
head keeps a Gaussian posterior N(mu, Sigma) updated online by assumed density
filtering (one exact moment match per observation).

State: ``mu`` (2, p), ``Sigma`` (2, p, p), ``n`` (K,), ``active`` (K,) bool, ``counters``.
Quotes of a request: (K, 4) float64 rows (value if the lead line alone is bought, value if
the whole basket is bought, in reward units; log cut of the lead line; log cut of the
basket), the engine's exact pricing of this basket.
"""

from __future__ import annotations

import math
import threading
from typing import Any

import numba as nb
import numpy as np

from .. import _validation as v
from .codes import CTR_DECISIONS, CTR_SEED, CTR_UPDATES, N_COUNTERS
from .kernels import _Guarded
from .rng import PURPOSE_DECISION, PURPOSE_EVALUATION, PURPOSE_PROPENSITY, normal, stream_new

_JIT = {"nogil": True, "cache": True, "error_model": "numpy"}

INV_SQRT2 = 0.7071067811865476
INV_SQRT_2PI = 0.3989422804014327
# Below this the inverse Mills ratio is taken from its asymptotic series (relative error
# under 1e-7 there), since Phi(a) nears underflow.
MILLS_ASYMPTOTIC = -30.0
# The most one observation may shrink the variance along its own direction (a weight
# above 1 could otherwise make Sigma lose positive definiteness).
MAX_SHRINK = 0.999
# Quote columns.
Q_VALUE_LEAD, Q_VALUE_BASKET, Q_CUT_LEAD, Q_CUT_BASKET = 0, 1, 2, 3
N_QUOTE = 4


@nb.njit(**_JIT)
def probit(z):
    """Phi(z), the standard normal CDF: the response probability of a latent score z."""
    return 0.5 * math.erfc(-z * INV_SQRT2)


@nb.njit(**_JIT)
def mills(a):
    """N(a) / Phi(a) (the inverse Mills ratio), stable for very negative a (asymptotic
    series below MILLS_ASYMPTOTIC, where Phi(a) nears underflow)."""
    if a < MILLS_ASYMPTOTIC:
        a2 = a * a
        return -a / (1.0 - 1.0 / a2 + 3.0 / (a2 * a2))
    return INV_SQRT_2PI * math.exp(-0.5 * a * a) / (0.5 * math.erfc(-a * INV_SQRT2))


@nb.njit(**_JIT)
def head_moments(mu, S, x, d, k_arms, sa, sb, out):
    """The parts of every offer's logit mean and variance that do not depend on the
    offer: out = [a'Sa, a'Sb, b'Sb, mu.a, mu.b] with a = [x, 0, 0, 0], b = [0, x, 1, 0];
    sa = S a, sb = S b (p,)."""
    p = 2 * d + 1 + k_arms
    # Row by row (Sigma is exactly symmetric): elementwise loops, the same sums in the
    # same order whether or not the compiler vectorises them.
    for i in range(p):
        sa[i] = 0.0
        sb[i] = 0.0
    for j in range(d):
        xj = x[j]
        for i in range(p):
            sa[i] += S[j, i] * xj
            sb[i] += S[d + j, i] * xj
    for i in range(p):
        sb[i] += S[2 * d, i]
    asa = 0.0
    asb = 0.0
    bsb = 0.0
    ma = 0.0
    mb = 0.0
    for i in range(d):
        asa += x[i] * sa[i]
        asb += x[i] * sb[i]
        bsb += x[i] * sb[d + i]
        ma += mu[i] * x[i]
        mb += mu[d + i] * x[i]
    out[0] = asa
    out[1] = asb
    out[2] = bsb + sb[2 * d]
    out[3] = ma
    out[4] = mb + mu[2 * d]


@nb.njit(**_JIT)
def head_cut(quotes, k, h, basket_mean):
    """The price cut head h sees for offer k: head 1 the basket's extra log cut over the
    lead line's; head 0 the lead line's cut plus P(whole basket | buy) (at head 1's mean
    score basket_mean) times that extra cut (the first-order change of the nested
    choice's inclusive value: what a spend-X-save-Y offer does to buying at all)."""
    extra = quotes[k, Q_CUT_BASKET] - quotes[k, Q_CUT_LEAD]
    if h == 1:
        return extra
    return quotes[k, Q_CUT_LEAD] + probit(basket_mean) * extra


@nb.njit(**_JIT)
def moments(mu, Sigma, active, mask, x, quotes, means, chol, sa, sb, parts, cvec):
    """means (2, K): every offer's score mean under both heads; chol (2, K, K): the lower
    Cholesky factor of the offers' joint score covariance Phi' Sigma Phi (a pivot that is
    not positive gives a zero column: a semi-definite covariance). Head 1 first (head 0's
    cut reads its mean). Every offer is included (the draws do not depend on the mask);
    active and mask are unused here. cvec: (K,) scratch for the cuts."""
    k_arms = quotes.shape[0]
    d = x.shape[0]
    for hh in range(2):
        h = 1 - hh
        S = Sigma[h]
        head_moments(mu[h], S, x, d, k_arms, sa, sb, parts)
        for k in range(k_arms):
            cvec[k] = head_cut(quotes, k, h, means[1, k])
        L = chol[h]
        for k in range(k_arms):
            ck = cvec[k]
            jk = 2 * d + 1 + k
            means[h, k] = parts[3] + ck * parts[4] + mu[h, jk]
            for m in range(k + 1):
                cm = cvec[m]
                jm = 2 * d + 1 + m
                # phi_k' S phi_m with phi = a + c b + e_j (see head_moments)
                L[k, m] = (parts[0] + cm * parts[1] + sa[jm] + ck * parts[1]
                           + ck * cm * parts[2] + ck * sb[jm] + sa[jk] + cm * sb[jk]
                           + S[jk, jm])
        cholesky_lower(L, k_arms)


@nb.njit(**_JIT)
def cholesky_lower(L, n):
    """In place: the lower triangle of L (a covariance) becomes its Cholesky factor."""
    for j in range(n):
        s = L[j, j]
        for m in range(j):
            s -= L[j, m] * L[j, m]
        piv = math.sqrt(s) if s > 0.0 else 0.0
        L[j, j] = piv
        for i in range(j + 1, n):
            t = L[i, j]
            for m in range(j):
                t -= L[i, m] * L[j, m]
            L[i, j] = t / piv if piv > 0.0 else 0.0


@nb.njit(**_JIT)
def expected_value(p_buy, p_basket, quotes, k):
    return p_buy * ((1.0 - p_basket) * quotes[k, Q_VALUE_LEAD]
                    + p_basket * quotes[k, Q_VALUE_BASKET])


@nb.njit(**_JIT)
def draw(exploration, active, mask, bias, quotes, means, chol, z, st):
    """One joint Thompson draw of every offer's logits under both heads (K normals for
    head 0, then K for head 1; logits = mean + v L z), the argmax over eligible offers of
    the expected value plus bias (lowest index on ties)."""
    k_arms = quotes.shape[0]
    for h in range(2):
        for k in range(k_arms):
            z[h, k] = normal(st)
    best = -1
    best_v = -np.inf
    for k in range(k_arms):
        if not (active[k] and mask[k]):
            continue
        z0 = 0.0
        z1 = 0.0
        for m in range(k + 1):
            z0 += chol[0, k, m] * z[0, m]
            z1 += chol[1, k, m] * z[1, m]
        l0 = means[0, k] + exploration * z0
        l1 = means[1, k] + exploration * z1
        score = expected_value(probit(l0), probit(l1), quotes, k) + bias[k]
        if best < 0 or score > best_v:
            best = k
            best_v = score
    return best


@nb.njit(**_JIT)
def propensity(exploration, draws, seed, active, mask, bias, quotes, means, chol, z, t, arm):
    if draws <= 0:
        return np.nan
    sp = stream_new(seed, t, PURPOSE_PROPENSITY)
    wins = 0
    k_elig = 0
    for k in range(active.shape[0]):
        if active[k] and mask[k]:
            k_elig += 1
    for _ in range(draws):
        if draw(exploration, active, mask, bias, quotes, means, chol, z, sp) == arm:
            wins += 1
    return (float(wins) + 1.0) / (float(draws) + float(k_elig))


@nb.njit(**_JIT)
def choose(exploration, draws, seed, mu, Sigma, active, mask, bias, x, quotes, t, means, chol,
           z, sa, sb, parts, cvec):
    moments(mu, Sigma, active, mask, x, quotes, means, chol, sa, sb, parts, cvec)
    best = draw(exploration, active, mask, bias, quotes, means, chol, z,
                stream_new(seed, t, PURPOSE_DECISION))
    prop = propensity(exploration, draws, seed, active, mask, bias, quotes, means, chol, z, t,
                      best)
    return best, prop


@nb.njit(**_JIT)
def select_batch(exploration, draws, seed, mu, Sigma, active, counters, masks, biases, xs,
                 quotes, means, chol, z, sa, sb, parts, cvec, out_arms, out_props):
    t0 = counters[CTR_DECISIONS]
    for i in range(xs.shape[0]):
        arm, prop = choose(exploration, draws, seed, mu, Sigma, active, masks[i], biases[i],
                           xs[i], quotes[i], t0 + i, means, chol, z, sa, sb, parts, cvec)
        out_arms[i] = arm
        out_props[i] = prop
    counters[CTR_DECISIONS] = t0 + xs.shape[0]


@nb.njit(**_JIT)
def action_probabilities(exploration, draws, seed, mu, Sigma, active, masks, biases, xs,
                         quotes, means, chol, z, sa, sb, parts, cvec, out):
    """Row i: (wins + 1) / (draws + K_eligible) over draws on stream (seed, i, evaluation)."""
    k_arms = active.shape[0]
    for i in range(xs.shape[0]):
        moments(mu, Sigma, active, masks[i], xs[i], quotes[i], means, chol, sa, sb, parts, cvec)
        for k in range(k_arms):
            out[i, k] = 0.0
        st = stream_new(seed, i, PURPOSE_EVALUATION)
        k_elig = 0
        for k in range(k_arms):
            if active[k] and masks[i, k]:
                k_elig += 1
        for _ in range(draws):
            out[i, draw(exploration, active, masks[i], biases[i], quotes[i], means, chol, z,
                        st)] += 1.0
        denom = float(draws) + float(k_elig)
        for k in range(k_arms):
            if active[k] and masks[i, k]:
                out[i, k] = (out[i, k] + 1.0) / denom


@nb.njit(**_JIT)
def head_step(mu, S, phi, y, weight, u):
    """One assumed-density-filtering step of a probit head on feature vector phi (the
    exact moment match of the Gaussian posterior times the new likelihood term):
    u = Sigma phi, s = phi'u, m = mu . phi, sd = sqrt(1 + s), t = +-1 (y), a = t m / sd,
    v = N(a) / Phi(a), w = v (v + a); mu <- mu + weight t v / sd u,
    Sigma <- Sigma - r u u' with r = weight w / sd^2 (capped so Sigma stays positive)."""
    p = phi.shape[0]
    s = 0.0
    m = 0.0
    for i in range(p):
        u[i] = 0.0
    for j in range(p):  # phi is sparse (2 d + 2 nonzeros); Sigma is exactly symmetric
        f = phi[j]
        if f != 0.0:
            for i in range(p):
                u[i] += S[j, i] * f
    for i in range(p):
        s += phi[i] * u[i]
        m += mu[i] * phi[i]
    t = 1.0 if y > 0.5 else -1.0
    var = 1.0 + s
    sd = math.sqrt(var)
    a = t * m / sd
    v = mills(a)
    w = v * (v + a)
    step = weight * t * v / sd
    r = weight * w / var
    if r * s > MAX_SHRINK:
        r = MAX_SHRINK / s
    for i in range(p):
        ui = u[i]
        for j in range(p):
            S[i, j] -= r * (ui * u[j])  # u_i u_j = u_j u_i exactly: Sigma stays symmetric
        mu[i] += step * ui


@nb.njit(**_JIT)
def fill_phi(phi, x, c, k, d):
    p = phi.shape[0]
    for i in range(p):
        phi[i] = 0.0
    for i in range(d):
        phi[i] = x[i]
        phi[d + i] = c * x[i]
    phi[2 * d] = c
    phi[2 * d + 1 + k] = 1.0


@nb.njit(**_JIT)
def update(decay, mu, Sigma, n, counters, arm, outcome, x, cut_lead, cut_basket, weight, phi, u):
    d = x.shape[0]
    p = phi.shape[0]
    if decay < 1.0:
        inv = 1.0 / decay
        for h in range(2):
            for i in range(p):
                for j in range(p):
                    Sigma[h, i, j] *= inv
    extra = cut_basket - cut_lead
    # head 0's cut reads P(whole basket | buy) at head 1's mean before this update
    fill_phi(phi, x, extra, arm, d)
    m1 = 0.0
    for i in range(p):
        m1 += mu[1, i] * phi[i]
    fill_phi(phi, x, cut_lead + probit(m1) * extra, arm, d)
    head_step(mu[0], Sigma[0], phi, 1.0 if outcome > 0 else 0.0, weight, u)
    if outcome > 0:
        fill_phi(phi, x, extra, arm, d)
        head_step(mu[1], Sigma[1], phi, 1.0 if outcome == 2 else 0.0, weight, u)
    n[arm] += weight
    counters[CTR_UPDATES] += 1


@nb.njit(**_JIT)
def update_batch(decay, mu, Sigma, n, counters, arms, outcomes, xs, cuts, weights, phi, u):
    for i in range(arms.shape[0]):
        update(decay, mu, Sigma, n, counters, arms[i], outcomes[i], xs[i], cuts[i, 0],
               cuts[i, 1], weights[i], phi, u)


@nb.njit(**_JIT)
def expectations(mu, Sigma, active, xs, quotes, means, chol, sa, sb, parts, cvec, out):
    """Expected value of every offer at the posterior mean of both heads."""
    k_arms = active.shape[0]
    for i in range(xs.shape[0]):
        moments(mu, Sigma, active, active, xs[i], quotes[i], means, chol, sa, sb, parts, cvec)
        for k in range(k_arms):
            out[i, k] = expected_value(probit(means[0, k]), probit(means[1, k]), quotes[i], k)


# --- the kernel object: the interface of _core.ConvKernel ------------------------------

def check_quotes(quotes: Any, n: int, k: int, field: str = "quotes") -> np.ndarray:
    """(n, K, 4) float64 quotes, finite, cuts >= 0 (ValueError naming the field)."""
    q = v.checked_array(quotes, field, "float64", 3, (n, k, N_QUOTE))
    bad = ~np.isfinite(q)
    if bad.any():
        i = np.argwhere(bad)[0]
        raise ValueError(f"{field}: expected finite values, got {q[tuple(i)]} at "
                         f"{tuple(int(j) for j in i)}")
    neg = q[:, :, Q_CUT_LEAD:] < 0.0
    if neg.any():
        i = np.argwhere(neg)[0]
        raise ValueError(f"{field}: expected log price cuts >= 0 (columns 2 and 3: the price "
                         f"paid never exceeds the list price), got {q[i[0], i[1], 2 + i[2]]} "
                         f"at row {int(i[0])}, offer {int(i[1])}")
    return q


def check_outcomes(outcomes: Any, n: int) -> np.ndarray:
    o = v.checked_array(outcomes, "outcomes", "int64", 1, (n,))
    bad = (o < 0) | (o > 2)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"outcomes: expected 0 (no purchase), 1 (lead line) or 2 (whole "
                         f"basket), got {int(o[i])} at row {i}")
    return o


def check_cuts(cuts: Any, n: int) -> np.ndarray:
    c = v.checked_array(cuts, "cuts", "float64", 2, (n, 2))
    if not np.isfinite(c).all() or (c < 0.0).any():
        i = int(np.argwhere(~np.isfinite(c) | (c < 0.0))[0][0])
        raise ValueError(f"cuts: expected finite log price cuts >= 0 (lead, basket), got "
                         f"{c[i].tolist()} at row {i}")
    return c


class ConvKernel(_Guarded):
    """The Numba kernel object of ConversionTS (the interface of _core.ConvKernel)."""

    def __init__(self, decay: float, exploration: float, propensity_draws: int,
                 arrays: dict[str, np.ndarray]) -> None:
        self.decay = float(decay)
        self.exploration = float(exploration)
        self.draws = int(propensity_draws)
        self._lock = threading.RLock()
        self._set_arrays(arrays)

    def _set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.active = v.checked_array(arrays["active"], "active", "bool", 1, (-1,))
        k = self.active.shape[0]
        self.mu = v.checked_array(arrays["mu"], "mu", "float64", 2, (2, -1))
        p = self.mu.shape[1]
        d = (p - 1 - k) // 2
        if d < 1 or 2 * d + 1 + k != p:
            raise ValueError(f"mu: expected (2, 2 d + 1 + K) with K={k}, got {self.mu.shape}")
        self.Sigma = v.checked_array(arrays["Sigma"], "Sigma", "float64", 3, (2, p, p))
        self.n = v.checked_array(arrays["n"], "n", "float64", 1, (k,))
        self.counters = v.checked_array(arrays["counters"], "counters", "int64", 1,
                                        (N_COUNTERS,))
        self.seed = self.counters[CTR_SEED:CTR_SEED + 1].view(np.uint64)[0]
        self._d = d
        self._all = np.ones(k, dtype=np.bool_)
        self._zeros = np.zeros(k)
        self._means = np.zeros((2, k))
        self._chol = np.zeros((2, k, k))
        self._cvec = np.zeros(k)
        self._z = np.zeros((2, k))
        self._sa = np.zeros(p)
        self._sb = np.zeros(p)
        self._parts = np.zeros(5)
        self._phi = np.zeros(p)
        self._u = np.zeros(p)

    @property
    def n_arms(self) -> int:
        return int(self.active.shape[0])

    @property
    def dim(self) -> int:
        return self._d

    def select(self, context: Any = None, mask: Any = None, bias: Any = None,
               quotes: Any = None) -> tuple[int, float]:
        if quotes is None:
            raise ValueError("quotes: required, the (K, 4) exact pricing of this request")
        x = v.check_context(context, self._d)
        k = self.n_arms
        q = check_quotes(np.asarray(quotes)[None] if isinstance(quotes, np.ndarray)
                         and quotes.ndim == 2 else quotes, 1, k)
        with self._lock:
            m = v.check_mask(mask, self.active)
            b = v.check_bias(bias, k)
            arms = np.empty(1, np.int64)
            props = np.empty(1)
            select_batch(self.exploration, self.draws, self.seed, self.mu, self.Sigma,
                         self.active, self.counters,
                         (self._all if m is None else m)[None],
                         (self._zeros if b is None else b)[None], x[None], q, self._means,
                         self._chol, self._z, self._sa, self._sb, self._parts, self._cvec, arms, props)
            return int(arms[0]), float(props[0])

    def _request_inputs(self, n: int, masks: Any, biases: Any,
                        quotes: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The checked (n, K, 4) quotes, (n, K) masks and (n, K) biases of n requests
        (masks default to the active arms, biases to zero)."""
        k = self.n_arms
        if quotes is None:
            raise ValueError("quotes: required, the (n, K, 4) exact pricing of the requests")
        q = check_quotes(quotes, n, k)
        m = v.check_masks(masks, n, self.active)
        if m is None:
            m = np.broadcast_to(self._all, (n, k))
        b = v.check_biases(biases, n, k)
        if b is None:
            b = np.broadcast_to(self._zeros, (n, k))
        return q, m, b

    def select_batch(self, contexts: Any = None, masks: Any = None, n: int | None = None,
                     out_arms: Any = None, out_props: Any = None, n_threads: int = 1,
                     biases: Any = None, quotes: Any = None) -> tuple[np.ndarray, np.ndarray]:
        v.check_threads(n_threads)
        with self._lock:
            xs = v.check_contexts(contexts, self._d)
            if n is not None and n != xs.shape[0]:
                raise ValueError("n: disagrees with the number of contexts")
            n = xs.shape[0]
            q, m, b = self._request_inputs(n, masks, biases, quotes)
            arms = v.check_out(out_arms, n, "out_arms", "int64")
            props = v.check_out(out_props, n, "out_props", "float64")
            select_batch(self.exploration, self.draws, self.seed, self.mu, self.Sigma,
                         self.active, self.counters, m, b, xs, q, self._means, self._chol,
                         self._z, self._sa, self._sb, self._parts, self._cvec, arms, props)
            return arms, props

    def update(self, arm: int, outcome: int, context: Any = None, cuts: Any = None,
               weight: float = 1.0) -> None:
        a = v.check_arm(arm, self.n_arms)
        o = check_outcomes(np.array([outcome], dtype=np.int64)
                           if isinstance(outcome, (int, np.integer)) and not isinstance(
                               outcome, bool) else outcome, 1)
        x = v.check_context(context, self._d)
        if cuts is None:
            raise ValueError("cuts: required, (cut_lead, cut_basket) of the chosen offer")
        c = check_cuts(np.asarray(cuts, dtype=np.float64).reshape(1, -1)
                       if np.ndim(cuts) == 1 else cuts, 1)
        w = v.check_weight(weight)
        with self._lock:
            update(self.decay, self.mu, self.Sigma, self.n, self.counters, a, int(o[0]), x,
                   c[0, 0], c[0, 1], w, self._phi, self._u)

    def update_batch(self, arms: Any, outcomes: Any, contexts: Any = None, cuts: Any = None,
                     weights: Any = None) -> None:
        with self._lock:
            a = v.checked_array(arms, "arms", "int64", 1, (-1,))
            n = a.shape[0]
            bad = (a < 0) | (a >= self.n_arms)
            if bad.any():
                i = int(np.argmax(bad))
                raise IndexError(f"arms: arm {int(a[i])} at row {i} is out of range "
                                 f"[0, {self.n_arms})")
            o = check_outcomes(outcomes, n)
            xs = v.check_contexts(contexts, self._d, n)
            if cuts is None:
                raise ValueError("cuts: required, (n, 2) log price cuts of the chosen offers")
            c = check_cuts(cuts, n)
            if weights is None:
                w = np.ones(n)
            else:
                w = v.checked_array(weights, "weights", "float64", 1, (n,))
                if not np.isfinite(w).all() or (w < 0).any():
                    raise ValueError("weights: expected finite weights >= 0")
            update_batch(self.decay, self.mu, self.Sigma, self.n, self.counters, a, o, xs, c,
                         w, self._phi, self._u)

    def expectations(self, contexts: Any, quotes: Any) -> np.ndarray:
        with self._lock:
            xs = v.check_contexts(contexts, self._d)
            q = check_quotes(quotes, xs.shape[0], self.n_arms)
            out = np.empty((xs.shape[0], self.n_arms))
            expectations(self.mu, self.Sigma, self.active, xs, q, self._means, self._chol,
                         self._sa, self._sb, self._parts, self._cvec, out)
            return out

    def action_probabilities(self, contexts: Any, masks: Any = None, draws: int = 1000,
                             n_threads: int = 1, biases: Any = None,
                             quotes: Any = None) -> np.ndarray:
        v.check_threads(n_threads)
        with self._lock:
            xs = v.check_contexts(contexts, self._d)
            n, k = xs.shape[0], self.n_arms
            q, m, b = self._request_inputs(n, masks, biases, quotes)
            draws = v.check_draws(draws, True)
            out = np.empty((n, k))
            action_probabilities(self.exploration, draws, self.seed, self.mu, self.Sigma,
                                 self.active, m, b, xs, q, self._means, self._chol, self._z,
                                 self._sa, self._sb, self._parts, self._cvec, out)
            return out
