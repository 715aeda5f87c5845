"""Configuration of ``promobandit simulate``: validated sections, TOML files, presets.

A configuration file is TOML with these top-level keys and tables (every key optional;
the embedded default is ``default_config()``, ``--quick`` is ``quick_config()``)::

    seed = 0               # the market, the sessions, the policies and the recommender
    days = 14              # simulated days of the run
    step_minutes = 10      # decisions within a step are decided together (decide_batch)
    workers = 2            # processes running policies side by side
    policies = ["fixed", "random", "epsilon_greedy", "thompson", "ucb", "linucb",
                "lints", "lints+pacing", "lints+pacing+fairness", "thompson+pacing"]
    learner_offers = ["none", "pct5", ...]   # offers the learning policies may choose;
                           # default: every offer but coupons (see SimulationConfig)

    [market]           # any MarketConfig field except seed (see simulate.market)
    [recommender]      # RecommenderSettings
    [engine]           # EngineSection
    [budget]           # BudgetSection (used by policies with +pacing)
    [fairness]         # FairnessSection (used by policies with +fairness)
    [report]           # ReportSettings
    [abtest]           # ABTestSection: an A/B test of two policies on split shoppers
    [tradeoff]         # TradeoffSection: profit / conversion / retention sweep and
                       # "who got which offer, and why" (the retention world)
    [catalogue]        # an offer catalogue (promobandit.offers.Catalogue.from_dict schema);
                       # default: promobandit.offers.default_catalogue()
    [policy_settings.<name>]   # config keywords of a policy, e.g. [policy_settings.lints] v = 0.5

Policy names: "fixed" (one run per catalogue offer, no discount included), "fixed:<offer
id>", "none" (no discount), "random" (a uniformly random eligible offer),
"epsilon_greedy", "thompson" (Gaussian Thompson sampling), "ucb" (UCB1), "linucb",
"lints"; a learning policy may carry "+pacing" (the discount budget) and "+fairness"
(the fairness bound). Every error names its key, e.g. ``budget.daily: expected a value
in (0, inf), got -5.0``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

from .._toml import load_toml
from .._validation import check_int, check_range
from ..constraints import BudgetConfig, FairnessConfig
from ..evaluate.abtest import WEIGHT_ATOL
from ..events import SECONDS_PER_DAY
from ..offers import Catalogue, default_catalogue
from ..policies import POLICIES, QUOTED_POLICIES
from .market import MarketConfig
from .run import EngineSettings, PolicySpec

# Learning policies by config name: (policy class name, default settings, label).
LEARNERS: dict[str, tuple[str, dict[str, Any], str]] = {
    "random": ("random", {}, "random offer"),
    "epsilon_greedy": ("EpsilonGreedy", {"epsilon": 0.05}, "epsilon-greedy"),
    "thompson": ("GaussianTS", {"propensity_draws": 100, "propensity_refresh": 20},
                 "Thompson sampling"),
    "ucb": ("UCB1", {"c": 0.5}, "UCB1"),
    "linucb": ("LinUCB", {"alpha": 0.3}, "LinUCB"),
    "lints": ("LinTS", {"v": 0.25, "propensity_draws": 100}, "LinTS"),
    "conversion": ("ConversionTS", {"propensity_draws": 100}, "conversion model"),
}
# Learners with context columns of their own (the rest use `features`). The conversion
# model learns the shopper's response, not the money: the shopper's deal signals, the
# basket's price, margin and threshold, and a running time-limited offer tell it apart;
# the profit-scaled products in DEFAULT_FEATURES (price x margin, ...) are what a profit
# regression needs and only add noise to a purchase model.
#
# The deal signals enter with their products (simulate.context: deal_x_via, ...) and the
# shopper's promo_lift: whether a shopper is a deal-seeker is a nonlinear function of the
# signals (one strong signal is not two weak ones), and the model's price response is
# linear in its features, so without the products it could not tell them apart. Over
# seeds 0-3 of the default run, three policy seeds each, the mean share of the reachable
# headroom went from 49% to 54% (bench/headroom_seeds.py; see CHANGELOG).
LEARNER_FEATURES: dict[str, tuple[str, ...]] = {
    "conversion": ("bias", "deal_share", "discount_share", "via_deals",
                   "pair_over_threshold", "holds_timed", "price", "margin",
                   "deal_x_via", "deal_x_discount", "discount_x_via", "deal_sq",
                   "promo_lift"),
}
MODIFIERS = ("pacing", "fairness")

# Context columns of the contextual policies (simulate.context lists every name): the
# shopper's deal signals (discount_share from promobandit.features), the basket's price
# and margin, and their products. Fewer columns learn faster: every column is a
# parameter per offer to learn, and the full set (about 45) learnt worse in 14 days.
DEFAULT_FEATURES: tuple[str, ...] = (
    "bias", "deal_share", "discount_share", "via_deals", "price", "price_x_margin",
    "deal_x_price", "deal_x_price_x_margin", "via_x_price", "via_x_price_x_margin",
    "pair_over_threshold", "holds_timed")

DEFAULT_POLICIES: tuple[str, ...] = (
    "fixed", "random", "epsilon_greedy", "thompson", "ucb", "linucb", "lints",
    "thompson+pacing", "lints+pacing", "lints+pacing+fairness", "conversion+pacing")


def _prefixed(prefix: str, exc: ValueError) -> ValueError:
    return ValueError(f"{prefix}.{exc}" if prefix else str(exc))


def _table(cls: type, data: Any, prefix: str, *, exclude: tuple[str, ...] = ()) -> Any:
    """An instance of the dataclass `cls` from a TOML table; errors name prefix.key."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{prefix}: expected a table of settings, got {type(data).__name__}")
    known = [f.name for f in dataclasses.fields(cls) if f.name not in exclude]
    for key in data:
        if key not in known:
            raise ValueError(f"{prefix}.{key}: unknown key; expected one of {sorted(known)}")
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    try:
        return cls(**kwargs)
    except ValueError as exc:
        raise _prefixed(prefix, exc) from None
    except TypeError as exc:  # e.g. a table where a number belongs
        raise ValueError(f"{prefix}: {exc}") from None


@dataclasses.dataclass(frozen=True)
class RecommenderSettings:
    """The two-tower recommender trained on the behaviour history (see
    promobandit.recommender.TwoTowerConfig for the model).

    epochs: most training epochs (early stopping on the validation window);
    patience: epochs without better validation recall before stopping.
    dim: embedding dimension; hidden: hidden width of each tower (0: linear towers).
    history_length: recent events per user feeding the user tower.
    batch_size: examples per step. learning_rate: Adam's step size.
    validation_days: the last days of the history held out for early stopping.
    max_eval_users: users sampled for the validation recall.
    """

    epochs: int = 3
    patience: int = 1
    dim: int = 16
    hidden: int = 32
    history_length: int = 20
    batch_size: int = 512
    learning_rate: float = 3e-3
    validation_days: float = 4.0
    max_eval_users: int = 2000

    def __post_init__(self) -> None:
        for name in ("epochs", "patience", "dim", "history_length", "batch_size",
                     "max_eval_users"):
            check_int(name, getattr(self, name), 1)
        check_int("hidden", self.hidden, 0)
        check_range("learning_rate", self.learning_rate, 0.0, lo_open=True)
        check_range("validation_days", self.validation_days, 0.0)


@dataclasses.dataclass(frozen=True)
class EngineSection:
    """Engine settings of every run.

    reward_scale: currency per unit of policy reward (profit / reward_scale is learnt).
    feedback_wait_minutes: how long a decision waits for its purchase.
    max_offers_per_day: discounted offers a shopper may get per day (the engine's cap).
    """

    reward_scale: float = 20.0
    feedback_wait_minutes: float = 30.0
    max_offers_per_day: int = 3

    def __post_init__(self) -> None:
        check_range("reward_scale", self.reward_scale, 0.0, lo_open=True)
        check_range("feedback_wait_minutes", self.feedback_wait_minutes, 0.0, lo_open=True)
        check_int("max_offers_per_day", self.max_offers_per_day, 0)


@dataclasses.dataclass(frozen=True)
class BudgetSection:
    """The daily discount budget of policies with pacing (money in currency).

    daily: discount budget per day (> 0); spend never exceeds it except through coupons
        and time-limited offers redeemed later, which are booked when they happen.
    plan: "traffic" paces spend along the market's hourly traffic profile, "even" evenly.
    step_size, update_every, lambda_max: the pacer's multiplier step, decisions between
        steps and cap (see promobandit.constraints.BudgetConfig).
    """

    daily: float = 3000.0
    plan: str = "traffic"
    step_size: float = 0.5
    update_every: int = 25
    lambda_max: float = 20.0

    def __post_init__(self) -> None:
        check_range("daily", self.daily, 0.0, lo_open=True)
        if self.plan not in ("traffic", "even"):
            raise ValueError(f"plan: expected 'traffic' or 'even', got {self.plan!r}")
        check_range("step_size", self.step_size, 0.0)
        check_int("update_every", self.update_every, 1)
        check_range("lambda_max", self.lambda_max, 0.0)


@dataclasses.dataclass(frozen=True)
class FairnessSection:
    """The fairness bound of policies with +fairness.

    max_gap: largest allowed gap between groups' average discount depth (a fraction).
    group: the label the bound is enforced on, "region" or "tenure" (new / returning).
    metric, halflife, step_size: see promobandit.constraints.FairnessConfig.
    """

    max_gap: float = 0.02
    group: str = "region"
    metric: str = "discount_rate"
    halflife: float = 500.0
    step_size: float = 0.05

    def __post_init__(self) -> None:
        check_range("max_gap", self.max_gap, 0.0, 1.0)
        if self.group not in ("region", "tenure"):
            raise ValueError(f"group: expected 'region' or 'tenure', got {self.group!r}")
        if self.metric not in ("discount_rate", "offer_rate"):
            raise ValueError(f"metric: expected 'discount_rate' or 'offer_rate', got "
                             f"{self.metric!r}")
        check_range("halflife", self.halflife, 0.0, lo_open=True)
        check_range("step_size", self.step_size, 0.0)


@dataclasses.dataclass(frozen=True)
class ReportSettings:
    """confidence: level of the intervals (a fraction); bootstrap: resamples of the
    bootstrap over days; top_policies: policies drawn in the curves besides the
    baselines (the best learners by profit)."""

    confidence: float = 0.95
    bootstrap: int = 2000
    top_policies: int = 6

    def __post_init__(self) -> None:
        check_range("confidence", self.confidence, 0.5, 1.0, hi_open=True)
        check_int("bootstrap", self.bootstrap, 100)
        check_int("top_policies", self.top_policies, 1)


# The control of "best_fixed": the fixed offer with the most profit in this run's
# fixed-offer runs (hindsight).
BEST_FIXED = "best_fixed"


@dataclasses.dataclass(frozen=True)
class ABTestSection:
    """An A/B test inside the run (see promobandit.simulate.abtest).

    enabled: run it (true by default; `--abtest/--no-abtest` overrides).
    control, treatment: the variants' policies, by the names of `policies`, one policy
        each ("fixed" alone names every offer: use "fixed:<offer id>" or "none"). The
        control may also be "best_fixed": the fixed offer with the most profit in this
        run's fixed-offer runs (hindsight; the run must include them).
    weights: shares of shoppers (control, treatment), each in (0, 1), summing to 1.
    salt: the experiment's name in the keyed assignment hash; another salt gives an
        independent split of the same shoppers.
    bootstrap: Poisson-bootstrap resamples of the per-shopper intervals (0: none).
    srm_alpha: significance level of the sample-ratio-mismatch check (a fraction; the
        customary 0.001, since a false alarm halts an experiment).
    The level of the intervals and tests is report.confidence.
    """

    enabled: bool = True
    control: str = "none"
    treatment: str = "lints+pacing"
    weights: tuple[float, ...] = (0.5, 0.5)
    salt: str = "simulate-abtest"
    bootstrap: int = 2000
    srm_alpha: float = 0.001

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise ValueError(f"enabled: expected true or false, got {self.enabled!r}")
        for name in ("control", "treatment", "salt"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"{name}: expected a non-empty string, got {value!r}")
        w = self.weights
        if isinstance(w, (str, bytes)) or not isinstance(w, (tuple, list)) or len(w) != 2:
            raise ValueError(f"weights: expected two shares (control, treatment), got {w!r}")
        shares = tuple(check_range(f"weights[{i}]", v, 0.0, 1.0, lo_open=True, hi_open=True)
                       for i, v in enumerate(w))
        if abs(sum(shares) - 1.0) > WEIGHT_ATOL:
            raise ValueError(f"weights: expected shares summing to 1, got {list(shares)}")
        object.__setattr__(self, "weights", shares)
        check_int("bootstrap", self.bootstrap, 0)
        check_range("srm_alpha", self.srm_alpha, 0.0, 1.0, lo_open=True, hi_open=True)


@dataclasses.dataclass(frozen=True)
class TradeoffSection:
    """The report's trade-off between profit, conversion and retention, and its "who got
    which offer, and why", run in the retention world (promobandit.simulate.retention,
    pareto, explain_report) with the run's seed.

    enabled: run it (true by default).
    retention_weights: EUR per returning shopper of each retention run (0: profit alone).
    conversion_weights: EUR per purchase of each conversion run.
    n_shoppers, days: the retention world's size. bootstrap: resamples of each point's
    intervals (percentile bootstrap over shoppers, 95%).
    """

    enabled: bool = True
    retention_weights: tuple[float, ...] = (0.0, 10.0, 20.0, 40.0, 80.0)
    conversion_weights: tuple[float, ...] = (10.0, 20.0, 40.0)
    n_shoppers: int = 600
    days: float = 42.0
    bootstrap: int = 200

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise ValueError(f"enabled: expected true or false, got {self.enabled!r}")
        for name in ("retention_weights", "conversion_weights"):
            ws = getattr(self, name)
            if isinstance(ws, (str, bytes)) or not isinstance(ws, (tuple, list)):
                raise ValueError(f"{name}: expected a list of weights, got {ws!r}")
            object.__setattr__(self, name, tuple(
                check_range(f"{name}[{i}]", w, 0.0) for i, w in enumerate(ws)))
        if not self.retention_weights:
            raise ValueError("retention_weights: expected at least one weight")
        check_int("n_shoppers", self.n_shoppers, 1)
        check_range("days", self.days, 0.0, lo_open=True)
        check_int("bootstrap", self.bootstrap, 1)


@dataclasses.dataclass(frozen=True)
class SimulationConfig:
    """Everything `promobandit simulate` runs (see the module for the file format).

    learner_offers: offer ids the learning policies (not the fixed ones) may choose; None
    means every offer except coupons. Why coupons are left out by default: the engine
    learns from a decision's own session, where a coupon costs nothing; its cost comes
    with a later order and reaches only the budget, so to a learner a coupon looks like
    no discount and it issues them freely. The fixed coupon run shows what they cost.
    """

    seed: int = 0
    days: float = 14.0
    step_minutes: float = 10.0
    workers: int = 2
    policies: tuple[str, ...] = DEFAULT_POLICIES
    market: MarketConfig = dataclasses.field(default_factory=MarketConfig)
    recommender: RecommenderSettings = dataclasses.field(default_factory=RecommenderSettings)
    engine: EngineSection = dataclasses.field(default_factory=EngineSection)
    budget: BudgetSection = dataclasses.field(default_factory=BudgetSection)
    fairness: FairnessSection = dataclasses.field(default_factory=FairnessSection)
    report: ReportSettings = dataclasses.field(default_factory=ReportSettings)
    catalogue: Catalogue = dataclasses.field(default_factory=default_catalogue)
    policy_settings: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = ()
    learner_offers: tuple[str, ...] | None = None
    features: tuple[str, ...] | None = DEFAULT_FEATURES
    abtest: ABTestSection = dataclasses.field(default_factory=ABTestSection)
    tradeoff: TradeoffSection = dataclasses.field(default_factory=TradeoffSection)

    def __post_init__(self) -> None:
        check_int("seed", self.seed, 0)
        check_range("days", self.days, 0.0, lo_open=True)
        if self.days != int(self.days):
            raise ValueError(f"days: expected a whole number of days, got {self.days!r}")
        check_range("step_minutes", self.step_minutes, 0.0, 24 * 60.0, lo_open=True)
        check_int("workers", self.workers, 1)
        if isinstance(self.policies, str) or not isinstance(self.policies, (tuple, list)):
            raise ValueError(f"policies: expected a list of policy names, got {self.policies!r}")
        if not self.policies:
            raise ValueError("policies: expected at least one policy")
        object.__setattr__(self, "policies", tuple(self.policies))
        if self.features is not None:
            if isinstance(self.features, str) or not isinstance(self.features, (tuple, list)):
                raise ValueError(f"features: expected a list of feature names, got "
                                 f"{self.features!r}")
            object.__setattr__(self, "features", tuple(self.features))
        if self.learner_offers is not None:
            if isinstance(self.learner_offers, str) or not isinstance(
                    self.learner_offers, (tuple, list)):
                raise ValueError(f"learner_offers: expected a list of offer ids, got "
                                 f"{self.learner_offers!r}")
            object.__setattr__(self, "learner_offers", tuple(self.learner_offers))
            for i, oid in enumerate(self.learner_offers):
                if oid not in self.catalogue.ids:
                    raise ValueError(f"learner_offers[{i}]: unknown offer id {oid!r}; known: "
                                     f"{list(self.catalogue.ids)}")
            if not any(self.catalogue.offers[self.catalogue.ids.index(o)].kind == "none"
                       for o in self.learner_offers):
                raise ValueError("learner_offers: must include the no-discount offer (the "
                                 "engine falls back to it)")
        if self.market.seed != self.seed:
            object.__setattr__(self, "market", dataclasses.replace(self.market, seed=self.seed))
        specs = self.specs()  # validates the names and settings
        self.abtest_spec("treatment")
        if self.abtest_spec("control") is None and self.abtest.enabled and not any(
                s.policy == "fixed" for s in specs):
            raise ValueError(f"abtest.control: {BEST_FIXED!r} needs fixed-offer runs among "
                             "policies (e.g. 'fixed')")

    def settings_of(self, name: str) -> dict[str, Any]:
        return dict(dict(self.policy_settings).get(name, ()))

    def specs(self) -> list[PolicySpec]:
        """The policies to run, fixed offers expanded (errors name `policies`)."""
        out: list[PolicySpec] = []
        for i, raw in enumerate(self.policies):
            out += self.parse_policy(raw, f"policies[{i}]")
        keys = [s.key for s in out]
        dup = sorted({k for k in keys if keys.count(k) > 1})
        if dup:
            raise ValueError(f"policies: {dup[0]!r} appears more than once")
        return out

    def parse_policy(self, raw: Any, where: str) -> list[PolicySpec]:
        """The runs of one policy name ("fixed" expands to one per offer); errors name
        `where`, e.g. "policies[2]" or "abtest.treatment"."""
        ids = self.catalogue.ids
        names = {o.id: (o.name or o.id) for o in self.catalogue.offers}
        none_id = next(o.id for o in self.catalogue.offers if o.kind == "none") if any(
            o.kind == "none" for o in self.catalogue.offers) else None
        if none_id is None:
            raise ValueError("catalogue.offers: expected a no-discount offer (type 'none'); "
                             "the engine falls back to it")
        if not isinstance(raw, str) or not raw:
            raise ValueError(f"{where}: expected a policy name, got {raw!r}")
        base, *mods = raw.split("+")
        if base in ("fixed", "none") or base.startswith("fixed:"):
            if mods:
                raise ValueError(f"{where}: fixed offers take no modifiers, got {raw!r}")
            offers = ([none_id] if base == "none" else list(ids) if base == "fixed"
                      else [base.split(":", 1)[1]])
            out: list[PolicySpec] = []
            for oid in offers:
                if oid not in ids:
                    raise ValueError(f"{where}: unknown offer id {oid!r}; known: {list(ids)}")
                label = "no discount" if oid == none_id else f"fixed {names[oid]}"
                out.append(PolicySpec(key=f"fixed:{oid}", label=label, policy="fixed",
                                      offer=oid))
            return out
        if base not in LEARNERS:
            raise ValueError(f"{where}: unknown policy {base!r}; expected 'fixed', "
                             f"'fixed:<offer id>', 'none' or one of {sorted(LEARNERS)}")
        bad = [m for m in mods if m not in MODIFIERS]
        if bad or len(set(mods)) != len(mods):
            raise ValueError(f"{where}: unknown or repeated modifier in {raw!r}; expected "
                             f"any of {list(MODIFIERS)}")
        cls_name, defaults, label = LEARNERS[base]
        settings = {**defaults, **self.settings_of(base)}
        if cls_name != "random":
            cfg_cls = {**POLICIES, **QUOTED_POLICIES}[cls_name].config_class
            fields = {f.name for f in dataclasses.fields(cfg_cls)}
            for key in settings:
                if key not in fields:
                    raise ValueError(f"policy_settings.{base}.{key}: unknown key; "
                                     f"expected one of {sorted(fields)}")
            try:
                cfg_cls(**settings)
            except ValueError as exc:
                raise _prefixed(f"policy_settings.{base}", exc) from None
        mod_label = "".join(f" + {m}" for m in mods)
        return [PolicySpec(key=raw, label=label + mod_label, policy=cls_name,
                           settings=tuple(sorted(settings.items())),
                           pacing="pacing" in mods, fairness="fairness" in mods,
                           offers=self.learner_offer_ids(),
                           features=LEARNER_FEATURES.get(base))]

    def abtest_spec(self, variant: str) -> PolicySpec | None:
        """The policy of an A/B variant ("control" or "treatment"); None for a control
        of "best_fixed", which the run resolves from its fixed-offer runs."""
        raw = getattr(self.abtest, variant)
        where = f"abtest.{variant}"
        if variant == "control" and raw == BEST_FIXED:
            return None
        specs = self.parse_policy(raw, where)
        if len(specs) != 1:
            raise ValueError(f"{where}: {raw!r} names {len(specs)} policies; an A/B variant "
                             f"runs one, e.g. 'none', 'fixed:<offer id>'"
                             + (" or 'best_fixed'" if variant == "control" else ""))
        return specs[0]

    def learner_offer_ids(self) -> tuple[str, ...]:
        """The offers learning policies may choose (see learner_offers)."""
        if self.learner_offers is not None:
            return self.learner_offers
        return tuple(o.id for o in self.catalogue.offers if o.kind != "coupon")

    def engine_settings(self) -> EngineSettings:
        """The engine settings of every run (budget and fairness for the runs that use them)."""
        b, f = self.budget, self.fairness
        plan = self.market.hourly_visits if b.plan == "traffic" else ()
        budget = BudgetConfig(amount=b.daily, period_seconds=SECONDS_PER_DAY, start=_run_start(),
                              plan=tuple(plan), step_size=b.step_size,
                              update_every=b.update_every, lambda_max=b.lambda_max)
        fair = FairnessConfig(max_gap=f.max_gap, metric=f.metric, halflife=f.halflife,
                              step_size=f.step_size)
        return EngineSettings(reward_scale=self.engine.reward_scale,
                              feedback_wait_seconds=60.0 * self.engine.feedback_wait_minutes,
                              max_offers_per_day=self.engine.max_offers_per_day,
                              budget=budget, fairness=fair, fairness_group=f.group)

    @classmethod
    def from_dict(cls, data: Any, base: SimulationConfig | None = None) -> SimulationConfig:
        """A configuration from plain data (a parsed TOML file) over `base` (default the
        embedded default): keys given replace the base's, tables merge key by key."""
        base = default_config() if base is None else base
        if not isinstance(data, Mapping):
            raise ValueError(f"config: expected a table of settings, got {type(data).__name__}")
        sections = {"market": MarketConfig, "recommender": RecommenderSettings,
                    "engine": EngineSection, "budget": BudgetSection,
                    "fairness": FairnessSection, "report": ReportSettings,
                    "abtest": ABTestSection, "tradeoff": TradeoffSection}
        scalars = ("seed", "days", "step_minutes", "workers", "policies", "learner_offers",
                   "features")
        known = sorted([*scalars, *sections, "catalogue", "policy_settings"])
        for key in data:
            if key not in known:
                raise ValueError(f"{key}: unknown key; expected one of {known}")
        kw: dict[str, Any] = {}
        for name, section_cls in sections.items():
            if name in data:
                table = data[name]
                if name == "market" and isinstance(table, Mapping) and "seed" in table:
                    raise ValueError("market.seed: set the top-level seed instead")
                merged = {**_as_dict(getattr(base, name)), **(
                    dict(table) if isinstance(table, Mapping) else {})}
                if not isinstance(table, Mapping):
                    raise ValueError(f"{name}: expected a table of settings, got "
                                     f"{type(table).__name__}")
                kw[name] = _table(section_cls, merged, name)
        if "catalogue" in data:
            try:
                kw["catalogue"] = Catalogue.from_dict(data["catalogue"])
            except ValueError as exc:
                raise _prefixed("catalogue", exc) from None
        if "policy_settings" in data:
            ps = data["policy_settings"]
            if not isinstance(ps, Mapping):
                raise ValueError("policy_settings: expected a table of policy tables")
            merged_ps = dict(base.policy_settings)
            for name, table in ps.items():
                if name not in LEARNERS or name == "random":
                    raise ValueError(f"policy_settings.{name}: unknown policy; expected one of "
                                     f"{sorted(k for k in LEARNERS if k != 'random')}")
                if not isinstance(table, Mapping):
                    raise ValueError(f"policy_settings.{name}: expected a table of settings")
                merged_ps[name] = tuple(sorted({**dict(merged_ps.get(name, ())),
                                                **dict(table)}.items()))
            kw["policy_settings"] = tuple(sorted(merged_ps.items()))
        for key in scalars:
            if key in data:
                kw[key] = tuple(data[key]) if isinstance(data[key], list) else data[key]
        if "seed" not in kw:
            kw["seed"] = base.seed
        return dataclasses.replace(base, **kw)

    @classmethod
    def load(cls, path: str | os.PathLike[str], base: SimulationConfig | None = None
             ) -> SimulationConfig:
        """Reads a TOML configuration file over `base` (see from_dict)."""
        return cls.from_dict(load_toml(path, "config"), base)


def _as_dict(obj: Any) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}


def _run_start() -> float:
    from .market import RUN_START

    return RUN_START


def default_config() -> SimulationConfig:
    """The embedded default: 20,000 shoppers over 14 days (about 2 minutes on 2 cores)."""
    return SimulationConfig()


def quick_config() -> SimulationConfig:
    """A first look in seconds: 2,500 shoppers over 7 days, a one-epoch recommender."""
    base = SimulationConfig()
    return dataclasses.replace(
        base, days=7.0, step_minutes=30.0,
        market=dataclasses.replace(base.market, n_users=2500, n_items=240, history_days=14.0),
        recommender=dataclasses.replace(base.recommender, epochs=1, max_eval_users=500,
                                        validation_days=2.0),
        budget=dataclasses.replace(base.budget, daily=400.0),
        tradeoff=dataclasses.replace(base.tradeoff, n_shoppers=300, days=28.0,
                                     retention_weights=(0.0, 20.0, 40.0),
                                     conversion_weights=(20.0,)))
