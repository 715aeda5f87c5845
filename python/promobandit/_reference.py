"""Plain Python/NumPy versions of every kernel: the test oracle.

Written for clarity, not speed, and independently of the C++ and Numba code
(dense linear algebra with numpy.linalg instead of rank-one updates), so that
agreement with them means something. Nothing in the package calls this module.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._ziggurat_tables import FN, KN, TAIL, WN

# ======================================================================================
# Random numbers: Philox4x32-10 streams (cpp/include/promobandit/rng.hpp)
# ======================================================================================

_M0, _M1, _W0, _W1 = 0xD2511F53, 0xCD9E8D57, 0x9E3779B9, 0xBB67AE85
_MASK = 0xFFFFFFFF


def philox4x32_10(counter: tuple[int, int, int, int], key: tuple[int, int]) -> list[int]:
    """One Philox4x32-10 block with Python integers."""
    c0, c1, c2, c3 = counter
    k0, k1 = key
    for _ in range(10):
        p0 = _M0 * c0
        p1 = _M1 * c2
        c0, c1, c2, c3 = (
            ((p1 >> 32) ^ c1 ^ k0) & _MASK,
            p1 & _MASK,
            ((p0 >> 32) ^ c3 ^ k1) & _MASK,
            p0 & _MASK,
        )
        k0 = (k0 + _W0) & _MASK
        k1 = (k1 + _W1) & _MASK
    return [c0, c1, c2, c3]


class Stream:
    """The stream (seed, stream, purpose): counter (block, purpose, stream lo, stream hi)."""

    def __init__(self, seed: int, stream: int, purpose: int = 0) -> None:
        self.key = (seed & _MASK, (seed >> 32) & _MASK)
        self.purpose = purpose
        self.stream = stream
        self.block = 0
        self.buf: list[int] = []

    def u32(self) -> int:
        if not self.buf:
            ctr = (self.block, self.purpose, self.stream & _MASK, (self.stream >> 32) & _MASK)
            self.buf = philox4x32_10(ctr, self.key)
            self.block += 1
        return self.buf.pop(0)

    def uniform(self) -> float:
        a = self.u32() >> 5
        b = self.u32() >> 6
        return (a * 67108864.0 + b + 0.5) * (1.0 / 9007199254740992.0)

    def uniform32(self) -> float:
        return (self.u32() + 0.5) * (1.0 / 4294967296.0)

    def normal(self) -> float:
        """Ziggurat: layer from bits 0-6, signed value from bits 7-31."""
        while True:
            w = self.u32()
            iz = w & 127
            j = (w - (1 << 32) if w >= 1 << 31 else w) >> 7
            x = j * float(WN[iz])
            if abs(j) < KN[iz]:
                return x
            if iz == 0:
                while True:
                    xt = -math.log(self.uniform32()) / TAIL
                    y = -math.log(self.uniform32())
                    if not y + y < xt * xt:
                        return TAIL + xt if j > 0 else -TAIL - xt
            if FN[iz] + self.uniform32() * (FN[iz - 1] - FN[iz]) < math.exp(-0.5 * x * x):
                return x

    def gamma(self, shape: float) -> float:
        if shape < 1.0:
            g = self.gamma(shape + 1.0)
            u = self.uniform()
            return g * u ** (1.0 / shape)
        d = shape - 1.0 / 3.0
        c = 1.0 / math.sqrt(9.0 * d)
        while True:
            x = self.normal()
            v = 1.0 + c * x
            while v <= 0.0:
                x = self.normal()
                v = 1.0 + c * x
            v = v * v * v
            u = self.uniform32()
            x2 = x * x
            if u < 1.0 - 0.0331 * (x2 * x2):
                return d * v
            if math.log(u) < 0.5 * x2 + d * (1.0 - v + math.log(v)):
                return d * v

    def beta(self, a: float, b: float) -> float:
        x = self.gamma(a)
        y = self.gamma(b)
        s = x + y
        return a / (a + b) if not s > 0.0 else x / s


# ======================================================================================
# Bandit policies (cpp/include/promobandit/multiarmed.hpp, linear.hpp)
# ======================================================================================

PURPOSE_TIE = 4


class TieArgmax:
    """rng.hpp's TieArgmax: values offered in arm order; the m-th arm tying the best so
    far replaces it when uniform32 * m < 1, drawn from `ties` (a Stream, or a function
    returning one, called at the first tie)."""

    def __init__(self, ties: Any) -> None:
        self.ties = ties
        self.best = -1
        self.value = 0.0
        self.count = 0

    def offer(self, a: int, v: float) -> None:
        if self.best < 0 or v > self.value:
            self.best, self.value, self.count = a, v, 1
        elif v == self.value:
            self.count += 1
            if not isinstance(self.ties, Stream):
                self.ties = self.ties()
            if self.ties.uniform32() * self.count < 1.0:
                self.best = a

# Kind codes: state.hpp's, through the Numba backend's copy (which imports nothing).
from ._numba.codes import BETA_TS, EPSILON_GREEDY, GAUSSIAN_TS, SOFTMAX, UCB1, UCB_TUNED  # noqa: E402


class MultiArmed:
    """Non-contextual policies from the (n, sum r, sum r^2) table, with the kernels'
    draw order: decision t draws from Stream(seed, t, 0) over eligible arms in id order."""

    def __init__(self, kind: int, n_arms: int, hyper: list[float], *, decay: float = 1.0,
                 seed: int = 0, propensity_draws: int = 0) -> None:
        self.kind = kind
        self.hyper = list(hyper) + [0.0] * (4 - len(hyper))
        self.decay = decay
        self.seed = seed
        self.draws = propensity_draws
        self.stats = np.zeros((n_arms, 3))
        self.active = np.ones(n_arms, dtype=bool)
        self.t = 0
        self.updates = 0

    def expectation(self, a: int) -> float:
        n, s1, _ = self.stats[a]
        h = self.hyper
        if self.kind == BETA_TS:
            alpha, beta = h[0] + s1, h[1] + (n - s1)
            return alpha / (alpha + beta)
        if self.kind == GAUSSIAN_TS:
            return (h[1] * h[0] + s1) / (h[1] + n)
        if self.kind in (EPSILON_GREEDY, SOFTMAX):
            return s1 / n if n > 0 else h[1]
        return s1 / n if n > 0 else 0.0

    def expectations(self) -> np.ndarray:
        return np.array([self.expectation(a) for a in range(len(self.stats))])

    def nig_posterior(self, a: int) -> tuple[float, float, float, float]:
        """(mu_n, kappa_n, a_n, b_n) of the Normal-Inverse-Gamma posterior of arm a."""
        n, s1, s2 = self.stats[a]
        mu0, k0, a0, b0 = self.hyper
        kn = k0 + n
        bn = b0
        if n > 0:
            mean = s1 / n
            ss = max(s2 - s1 * mean, 0.0)
            bn = b0 + 0.5 * ss + 0.5 * (k0 * n / kn) * (mean - mu0) ** 2
        return (k0 * mu0 + s1) / kn, kn, a0 + 0.5 * n, bn

    def draw(self, a: int, rs: Stream) -> float:
        n, s1, _ = self.stats[a]
        if self.kind == BETA_TS:
            return rs.beta(self.hyper[0] + s1, self.hyper[1] + (n - s1))
        mun, kn, an, bn = self.nig_posterior(a)
        var = bn / rs.gamma(an)
        return mun + math.sqrt(var / kn) * rs.normal()

    def ucb_scores(self, eligible: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
        """UCB score (+ bias) per eligible arm (inf for arms never updated), -inf elsewhere."""
        total = float(self.stats[self.active, 0].sum())
        log_total = math.log(max(total, 1.0))
        out = np.full(len(self.stats), -np.inf)
        for a in np.flatnonzero(eligible):
            n, s1, s2 = self.stats[a]
            if not n > 0:
                out[a] = np.inf
                continue
            mean = s1 / n
            if self.kind == UCB1:
                bonus = self.hyper[0] * math.sqrt(2.0 * log_total / n)
            else:
                v = min(max(s2 / n - mean * mean, 0.0) + math.sqrt(2.0 * log_total / n), 0.25)
                bonus = self.hyper[0] * math.sqrt(log_total / n * v)
            out[a] = mean + bonus + (0.0 if bias is None else bias[a])
        return out

    def action_probabilities(self, eligible: np.ndarray,
                             bias: np.ndarray | None = None) -> np.ndarray | None:
        """Exact choice probabilities over arms, where closed-form (None for TS)."""
        k = len(self.stats)
        b = np.zeros(k) if bias is None else bias
        p = np.zeros(k)
        idx = np.flatnonzero(eligible)
        if self.kind in (UCB1, UCB_TUNED):  # tied maxima share the choice
            scores = self.ucb_scores(eligible, b)
            top = scores[idx].max()
            p[idx[scores[idx] == top]] = 1.0 / int((scores[idx] == top).sum())
            return p
        means = np.array([self.expectation(a) + b[a] for a in idx])
        if self.kind == EPSILON_GREEDY:
            eps = self.hyper[0]
            p[idx] = eps / len(idx)
            tied = means == means.max()
            p[idx[tied]] += (1.0 - eps) / int(tied.sum())
            return p
        if self.kind == SOFTMAX:
            w = np.exp((means - means.max()) / self.hyper[0])
            p[idx] = w / w.sum()
            return p
        return None

    def select(self, mask: np.ndarray | None = None,
               bias: np.ndarray | None = None) -> tuple[int, float]:
        b = np.zeros(len(self.stats)) if bias is None else bias
        eligible = self.active & (True if mask is None else mask)
        if not eligible.any():
            raise ValueError("mask: no eligible arm")
        idx = np.flatnonzero(eligible)
        rs = Stream(self.seed, self.t, 0)
        t = self.t
        self.t += 1
        am = TieArgmax(lambda: Stream(self.seed, t, PURPOSE_TIE))
        if self.kind in (BETA_TS, GAUSSIAN_TS):
            for a in idx:
                am.offer(int(a), self.draw(int(a), rs) + b[a])
            arm = am.best
            return arm, self.ts_propensities(eligible, b)[arm] if self.draws else math.nan
        p = self.action_probabilities(eligible, b)
        assert p is not None
        if self.kind in (UCB1, UCB_TUNED):
            scores = self.ucb_scores(eligible, b)
            for a in idx:
                am.offer(int(a), float(scores[a]))
            return am.best, float(p[am.best])
        if self.kind == EPSILON_GREEDY:
            u_explore, u_arm = rs.uniform(), rs.uniform()
            for a in idx:
                am.offer(int(a), self.expectation(int(a)) + b[a])
            greedy = am.best
            if u_explore < self.hyper[0]:
                arm = int(idx[min(int(u_arm * len(idx)), len(idx) - 1)])
            else:
                arm = greedy
            return arm, float(p[arm])
        u = rs.uniform()
        cum = np.cumsum(p[idx])
        j = int(np.searchsorted(cum, u * cum[-1], side="right"))
        arm = int(idx[min(j, len(idx) - 1)])
        return arm, float(p[arm])

    def ts_propensities(self, eligible: np.ndarray,
                        bias: np.ndarray | None = None) -> np.ndarray:
        """Monte Carlo estimate with the kernels' stream and add-one smoothing."""
        b = np.zeros(len(self.stats)) if bias is None else bias
        idx = np.flatnonzero(eligible)
        wins = np.zeros(len(self.stats))
        rp = Stream(self.seed, self.updates, 1)
        for _ in range(self.draws):
            am = TieArgmax(rp)  # ties from the drawing stream, interleaved with the draws
            for a in idx:
                am.offer(int(a), self.draw(int(a), rp) + b[a])
            wins[am.best] += 1
        out = np.zeros(len(self.stats))
        out[idx] = (wins[idx] + 1) / (self.draws + len(idx))
        return out

    def update(self, arm: int, reward: float, weight: float = 1.0) -> None:
        self.stats *= self.decay
        self.stats[arm] += (weight, weight * reward, weight * reward * reward)
        self.updates += 1


class Linear:
    """Disjoint ridge regression per arm, solved densely (no rank-one updates)."""

    def __init__(self, n_arms: int, dim: int, *, ridge: float = 1.0, decay: float = 1.0) -> None:
        self.ridge = ridge
        self.decay = decay
        self.A = np.repeat(ridge * np.eye(dim)[None], n_arms, axis=0)
        self.b = np.zeros((n_arms, dim))
        self.n = np.zeros(n_arms)

    def update(self, arm: int, reward: float, x: np.ndarray, weight: float = 1.0) -> None:
        d = self.A.shape[1]
        g = self.decay
        self.A = g * self.A + (1.0 - g) * self.ridge * np.eye(d)[None]
        self.b *= g
        self.n *= g
        self.A[arm] += weight * np.outer(x, x)
        self.b[arm] += weight * reward * x
        self.n[arm] += weight

    def theta(self) -> np.ndarray:
        return np.stack([np.linalg.solve(A, b) for A, b in zip(self.A, self.b, strict=True)])

    def moments(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(theta_a . x, x' A_a^-1 x) for every arm."""
        mean = self.theta() @ x
        var = np.array([x @ np.linalg.solve(A, x) for A in self.A])
        return mean, np.maximum(var, 0.0)

    def ucb_scores(self, x: np.ndarray, alpha: float,
                   bias: np.ndarray | None = None) -> np.ndarray:
        mean, var = self.moments(x)
        return mean + alpha * np.sqrt(var) + (0.0 if bias is None else bias)


# ======================================================================================
# Top-k softmax scoring (cpp/include/promobandit/topk.hpp, promobandit/scoring.py)
# ======================================================================================


def bfloat16_bits_to_float32(bits: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (uint16) as the float32 values they stand for, exactly."""
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << np.uint32(16)).view(np.float32)


def topk_softmax_reference(
    items: np.ndarray,
    users: np.ndarray,
    k: int,
    *,
    temperature: float = 1.0,
    mask: np.ndarray | None = None,
    exclude: np.ndarray | None = None,
    bias: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Dense oracle of ``scoring.topk_softmax``: every score, then a stable sort.

    ``items`` (N, d) float32 or float16, or uint16 holding bfloat16 bits; ``users``
    (d,) or (B, d). Scores ``E @ u + bias`` are computed in float64 from the exact
    widened values, rounded to float32 (the precision the kernels return), and
    sorted by (-score, id), so ties go to the lowest id. Probabilities and the
    normaliser are float64 from the float64 scores, over eligible items only
    (``mask`` True and not in ``exclude``; a 1-D ``exclude`` applies to every
    user, a 2-D one per user with -1 as padding).

    Returns ``(ids, scores, probs_topk, probs_full, log_normalizer)`` with shapes
    (k,) and () for a 1-D ``users``, (B, k) and (B,) otherwise.
    """
    e = np.asarray(items)
    e64 = bfloat16_bits_to_float32(e) if e.dtype == np.uint16 else e
    e64 = np.asarray(e64, dtype=np.float64)
    u = np.asarray(users, dtype=np.float64)
    single = u.ndim == 1
    u2 = u[None, :] if single else u
    n_users, n_items = u2.shape[0], e64.shape[0]
    s64 = u2 @ e64.T
    if bias is not None:
        s64 = s64 + np.asarray(bias, dtype=np.float64)[None, :]
    eligible = np.ones((n_users, n_items), dtype=bool)
    if mask is not None:
        eligible &= np.broadcast_to(np.asarray(mask, dtype=bool), (n_users, n_items))
    if exclude is not None:
        ex = np.asarray(exclude, dtype=np.int64)
        rows = np.broadcast_to(ex, (n_users, ex.shape[0])) if ex.ndim == 1 else ex
        for r in range(n_users):
            ids = rows[r][rows[r] >= 0]
            eligible[r, ids] = False
    if (eligible.sum(axis=1) < k).any():
        raise ValueError("mask/exclude: fewer than k eligible items")
    s32 = s64.astype(np.float32)
    out_ids = np.empty((n_users, k), dtype=np.int64)
    out_s = np.empty((n_users, k), dtype=np.float32)
    out_pt = np.empty((n_users, k))
    out_pf = np.empty((n_users, k))
    out_ln = np.empty(n_users)
    for r in range(n_users):
        cand = np.flatnonzero(eligible[r])
        order = cand[np.lexsort((cand, -s32[r, cand]))][:k]
        z = s64[r, cand] / temperature
        zmax = z.max()
        log_norm = zmax + math.log(np.exp(z - zmax).sum())
        zk = s64[r, order] / temperature
        pk = np.exp(zk - zk.max())
        out_ids[r] = order
        out_s[r] = s32[r, order]
        out_pt[r] = pk / pk.sum()
        out_pf[r] = np.exp(zk - log_norm)
        out_ln[r] = log_norm
    if single:
        return out_ids[0], out_s[0], out_pt[0], out_pf[0], out_ln.reshape(())
    return out_ids, out_s, out_pt, out_pf, out_ln
