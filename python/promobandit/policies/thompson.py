"""Thompson sampling without context: Beta-Bernoulli and Normal-Inverse-Gamma."""

from __future__ import annotations

import dataclasses

from .._validation import check_range
from . import _codes
from ._multiarmed import MultiArmedPolicy
from .base import ThompsonConfig, check_method
from .traits import PolicyTraits

# BetaTSConfig.sampler: the arm from K posterior draws, or by probability matching.
SAMPLERS = ("posterior", "matching")


@dataclasses.dataclass(frozen=True)
class BetaTSConfig(ThompsonConfig):
    """Beta-Bernoulli Thompson sampling.

    alpha0, beta0: Beta prior pseudo-counts of successes and failures (> 0).
    Rewards must lie in [0, 1]; a fractional reward r counts as r of a success
    and 1 - r of a failure.

    propensity_method: "quadrature" (the default): every propensity is exact, the
        probability that the arm's Beta posterior draw (plus bias) is the largest,
        integrated numerically (composite 6-point Gauss-Legendre over panels of at most
        2 posterior standard deviations, each posterior cut at +- 12 sds; see
        cpp/include/promobandit/quadrature.hpp): no draws, a few microseconds for 10
        arms, within 0.003 of a 10^6-draw Monte Carlo estimate in the tests with priors
        >= 1, and never below 1e-12 for an eligible arm. With alpha0 or beta0 < 1 a
        posterior with under one success (or failure) has a density that is infinite at
        0 (or 1), which the fixed panels resolve less well: 0.02 off in the one such
        state measured. The win probabilities are computed on a node grid kept between
        updates while it resolves every arm that can win (panels cut at 2 posterior
        sds; a new grid when an arm's panels exceed 3 of its current sds within mean
        +- 6 sds, or its range, mean +- 8 sds, leaves the grid), so an update
        recomputes one arm's column only (cpp/include/promobandit/beta_grid.hpp; the
        grid's snapshot is the state's quad_grid); action_probabilities reads the same
        grid. "draws": the (wins + 1) / (draws + K) estimate from propensity_draws
        posterior draws. propensity_draws = 0 switches propensities off (NaN) under
        either method, except under sampler="matching".
    sampler: how the arm is chosen. "posterior" (the default): one Beta posterior draw
        per eligible arm, the largest (+ bias) wins. "matching": probability matching,
        the same distribution of choices by another route: the arm is drawn by inverse
        CDF, with one uniform from the decision's stream, from the exact win
        probabilities p (the quadrature above), so the logged propensity is exactly the
        probability with which the arm was drawn (always given, even with
        propensity_draws = 0) and a decision costs one uniform once p is known; p is
        computed once per batch (per distinct mask; per row with biases) and, between
        updates, reused under propensity_tolerance. Needs propensity_method="quadrature".
        See cpp/include/promobandit/beta_matching.hpp. Not the default (yet): it is
        about 10x faster batched and learns the same (bench/README.md), but it changes
        every seeded Beta TS decision sequence.
    propensity_tolerance: with propensity_method="quadrature", an absolute probability:
        the win probabilities are reused after updates (for the same eligible arms)
        until a first-order bound on how far any of them has moved since it was computed
        exceeds this (each arm's posterior mean and sd shift, in units of its sd then,
        weighted by how much a shift of that arm can move a win probability; see
        cpp/include/promobandit/beta_matching.hpp); 0 recomputes them after every update.
        Under "posterior" the logged propensity is then that of a slightly older
        posterior; under "matching" it stays exactly the probability of the decision
        made, which is Thompson sampling on that slightly older posterior (as every row
        of a batch is). The default 0.005 leaves room under the 0.01 error bound for the
        quadrature's own (~0.003): tests/test_beta_matching.py holds the reused
        probabilities within 0.01 of a 10^6-draw Monte Carlo estimate on the current
        posterior while learning. action_probabilities always integrates the current
        posterior, so it can differ from the logged propensities by up to about this.
    """

    alpha0: float = 1.0
    beta0: float = 1.0
    propensity_method: str = "quadrature"
    sampler: str = "posterior"
    propensity_tolerance: float = 0.005

    def validate(self) -> None:
        super().validate()
        check_range("alpha0", self.alpha0, 0.0, lo_open=True)
        check_range("beta0", self.beta0, 0.0, lo_open=True)
        check_method(self.propensity_method)
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler: expected one of {list(SAMPLERS)}, got {self.sampler!r}")
        if self.sampler == "matching" and self.propensity_method != "quadrature":
            raise ValueError("sampler: \"matching\" draws from the exact win probabilities; "
                             "it needs propensity_method=\"quadrature\", got "
                             f"{self.propensity_method!r}")
        check_range("propensity_tolerance", self.propensity_tolerance, 0.0)


@dataclasses.dataclass(frozen=True)
class GaussianTSConfig(ThompsonConfig):
    """Gaussian Thompson sampling with unknown mean and variance (Normal-Inverse-Gamma).

    Continuous rewards such as revenue or profit, in the catalogue's currency.
    Prior: sigma^2 ~ InvGamma(a0, b0), mean | sigma^2 ~ N(mu0, sigma^2 / kappa0).
    mu0: prior mean reward. kappa0 (> 0): prior pseudo-observations behind mu0.
    a0 (> 0): prior shape; b0 (> 0): prior rate, in squared reward units.
    """

    mu0: float = 0.0
    kappa0: float = 1.0
    a0: float = 1.0
    b0: float = 1.0

    def validate(self) -> None:
        super().validate()
        check_range("mu0", self.mu0)
        check_range("kappa0", self.kappa0, 0.0, lo_open=True)
        check_range("a0", self.a0, 0.0, lo_open=True)
        check_range("b0", self.b0, 0.0, lo_open=True)


class BetaTS(MultiArmedPolicy):
    """Beta-Bernoulli Thompson sampling for binary (or [0, 1]) rewards such as clicks
    and conversions. Settings: BetaTSConfig."""

    traits = PolicyTraits(deterministic=False, propensity="estimated", reward_range=(0.0, 1.0))
    name = "BetaTS"
    config_class = BetaTSConfig
    _kind = _codes.BETA_TS
    config: BetaTSConfig

    def _hyper(self) -> list[float]:
        return [self.config.alpha0, self.config.beta0]


class GaussianTS(MultiArmedPolicy):
    """Normal-Inverse-Gamma Thompson sampling for continuous rewards (revenue, profit).
    Settings: GaussianTSConfig."""

    traits = PolicyTraits(deterministic=False, propensity="estimated")
    name = "GaussianTS"
    config_class = GaussianTSConfig
    _kind = _codes.GAUSSIAN_TS
    config: GaussianTSConfig

    def _hyper(self) -> list[float]:
        c = self.config
        return [c.mu0, c.kappa0, c.a0, c.b0]
