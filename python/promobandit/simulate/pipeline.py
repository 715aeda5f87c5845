"""The whole simulation: market, behaviour history, recommender, policies.

``prepare`` builds what every policy shares (a ``Scenario``): the market, the behaviour
history, the two-tower recommender trained on it, the run's sessions with the lists it
shows and the clicks on them. ``simulate`` then runs every policy through the engine,
then the A/B test of ``[abtest]`` (``simulate.abtest``) on the same scenario, and returns
a ``SimulationResult`` that ``simulate.report`` turns into tables and plots.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ..events import SECONDS_PER_DAY
from ..scoring import topk_softmax
from .abtest import ABTestRun, run_abtest
from .config import SimulationConfig
from .context import ContextBuilder
from .history import BehaviourHistory, behaviour_history
from .market import RUN_START, Market, Sessions
from .run import (
    EngineSettings,
    PolicyRun,
    Scenario,
    make_decisions,
    run_policies,
    step_layout,
)

Progress = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class RecommenderQuality:
    """Clicks on the shown lists over the run's sessions (fractions of sessions).

    ctr: realised share of sessions with a click on the shown (two-tower) list.
    expected_ctr: expected click rate of each list source on the same sessions:
    "two-tower" (shown), "popularity" (most clicked items of the history per category),
    "random" (random items of the category), "oracle" (ranked by the true affinity).
    validation_recall: Recall@k of the two-tower on the history's validation window;
    epochs, train_seconds: the training run.
    """

    ctr: float
    expected_ctr: dict[str, float]
    validation_recall: float | None
    epochs: int
    train_seconds: float


@dataclasses.dataclass
class SimulationResult:
    """Everything a report needs: the config, the shared scenario, each policy's run,
    the recommender's quality, the size of the history, stage timings (seconds) and the
    A/B test (None when [abtest] is off)."""

    config: SimulationConfig
    scenario: Scenario
    runs: list[PolicyRun]
    recommender: RecommenderQuality
    history_events: dict[str, int]
    timings: dict[str, float]
    abtest: ABTestRun | None = None

    def run(self, key: str) -> PolicyRun:
        for r in self.runs:
            if r.spec.key == key:
                return r
        raise KeyError(key)


def train_recommender(market: Market, history: BehaviourHistory, config: SimulationConfig,
                      progress: bool = False) -> tuple[Any, np.ndarray, np.ndarray]:
    """The two-tower on the history: (model, user vectors (U, d), item matrix (N, d))."""
    from ..recommender import TwoTowerConfig, TwoTowerModel

    s = config.recommender
    cut = history.end - s.validation_days * SECONDS_PER_DAY
    train, val = history.log.time_cut(cut)
    if len(train) == 0:
        raise ValueError("market.history_days: the behaviour history is empty; the "
                         "recommender has nothing to train on")
    cfg = TwoTowerConfig(dim=s.dim, id_dim=s.dim, hidden=(s.hidden,) if s.hidden else (),
                         history_length=s.history_length, batch_size=s.batch_size,
                         lr=s.learning_rate, max_epochs=s.epochs, patience=s.patience,
                         max_eval_users=s.max_eval_users, seed=config.seed)
    model = TwoTowerModel.fit(train, val if len(val) else None, cfg, progress=progress)
    users = model.users_from_log(history.log, np.arange(market.config.n_users))
    return model, np.ascontiguousarray(users, dtype=np.float32), model.item_embeddings()


def two_tower_lists(market: Market, users: np.ndarray, categories: np.ndarray,
                    user_vectors: np.ndarray, items: np.ndarray,
                    temperature: float) -> np.ndarray:
    """(n, k) lists of the native top-k scorer over the category's items."""
    k = market.config.items_shown
    out = np.empty((users.shape[0], k), dtype=np.int64)
    for c, cand in enumerate(market.category_items()):
        rows = np.flatnonzero(categories == c)
        if rows.size == 0:
            continue
        e = np.ascontiguousarray(items[cand])
        u = np.ascontiguousarray(user_vectors[users[rows]])
        top = topk_softmax(e, u, k, temperature=temperature, n_threads=1)
        out[rows] = cand[np.asarray(top.ids)]
    return out


def behaviour_features(market: Market, history: BehaviourHistory
                       ) -> tuple[np.ndarray, list[str]]:
    """promobandit.features of every shopper from the history, at the run's start."""
    from ..features import FeatureConfig, features_batch

    fc = FeatureConfig(n_categories=market.config.n_categories,
                       money_unit=market.catalogue.minor_unit)
    users = np.arange(market.config.n_users)
    return features_batch(history.events, users, RUN_START, fc), fc.feature_names()


def scenario_from(market: Market, sessions: Sessions, shown: np.ndarray,
                  clicked_pos: np.ndarray, *, contexts: ContextBuilder,
                  engine: EngineSettings, days: int, step_seconds: float,
                  start: float = RUN_START, seed: int = 0,
                  pre_spend: np.ndarray | None = None) -> Scenario:
    """A scenario from sessions (starting at `start`), the lists shown to them and the
    clicked position per session (-1: no click, no decision). pre_spend: each shopper's
    spend before the run (currency), for the A/B test's CUPED."""
    end = start + days * SECONDS_PER_DAY
    decisions = make_decisions(sessions, shown, clicked_pos, start, step_seconds)
    bounds, times = step_layout(decisions, start, end, step_seconds)
    per_day = np.bincount(sessions.day, minlength=days)[:days]
    return Scenario(market=market, decisions=decisions, contexts=contexts, engine=engine,
                    start=start, end=end, days=days, step_seconds=step_seconds,
                    step_bounds=bounds, step_times=times, n_sessions=len(sessions),
                    sessions_per_day=per_day, seed=seed, pre_spend=pre_spend)


def prepare(config: SimulationConfig, *, progress: Progress | None = None,
            train_progress: bool = False) -> tuple[Scenario, RecommenderQuality,
                                                   dict[str, int], dict[str, float]]:
    """The shared scenario of a simulation, the recommender's quality, the history's
    event counts and the timings of the stages (seconds)."""
    say = progress or (lambda _msg: None)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    market = Market(config.market, config.catalogue)
    say("behaviour history")
    history = behaviour_history(market)
    timings["history"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    say("two-tower recommender")
    model, user_vecs, item_vecs = train_recommender(market, history, config, train_progress)
    train_seconds = time.perf_counter() - t0
    timings["recommender"] = train_seconds

    t0 = time.perf_counter()
    say("sessions and lists")
    days = int(config.days)
    sessions = market.sessions(days, origin=RUN_START)
    shown = two_tower_lists(market, sessions.user, sessions.category, user_vecs, item_vecs,
                            model.temperature)
    pos, p_click = market.clicks(sessions, shown)
    popularity = np.bincount(history.log.item_ids[history.log.events == 1],
                             minlength=market.config.n_items).astype(float)
    expected_ctr = {"two-tower": float(p_click.mean()) if len(sessions) else 0.0}
    for name, lists in (("popularity", market.popularity_lists(sessions, popularity)),
                        ("random", market.random_lists(sessions, stream=2)),
                        ("oracle", market.oracle_lists(sessions))):
        expected_ctr[name] = float(market.clicks(sessions, lists)[1].mean()) if len(sessions) \
            else 0.0
    behaviour, names = behaviour_features(market, history)
    contexts = ContextBuilder(market, history.summary, config.market.history_days,
                              features=config.features, behaviour=behaviour,
                              behaviour_names=names)
    scenario = scenario_from(market, sessions, shown, pos, contexts=contexts,
                             engine=config.engine_settings(), days=days,
                             step_seconds=60.0 * config.step_minutes, seed=config.seed,
                             pre_spend=history.summary.spend)
    recall = None
    if model.training_log:
        best = model.training_log[max(model.best_epoch, 0)] if model.best_epoch >= 0 \
            else model.training_log[-1]
        recall = next((float(v) for key, v in best.items() if key.startswith("validation_")),
                      None)
    quality = RecommenderQuality(
        ctr=float((pos >= 0).mean()) if len(sessions) else 0.0, expected_ctr=expected_ctr,
        validation_recall=recall, epochs=len(model.training_log), train_seconds=train_seconds)
    timings["sessions"] = time.perf_counter() - t0
    return scenario, quality, history.log.event_counts(), timings


def simulate(config: SimulationConfig, *, log_root: str | None = None,
             progress: Progress | None = None, train_progress: bool = False,
             on_run: Callable[[PolicyRun], None] | None = None) -> SimulationResult:
    """Prepares the scenario, runs every configured policy and then, when [abtest] is
    on, the A/B test on the same scenario (see the module)."""
    scenario, quality, events, timings = prepare(config, progress=progress,
                                                 train_progress=train_progress)
    if progress is not None:
        progress("policies")
    t0 = time.perf_counter()
    runs = run_policies(config.specs(), scenario, workers=config.workers, log_root=log_root,
                        on_done=on_run)
    timings["policies"] = time.perf_counter() - t0
    ab = None
    if config.abtest.enabled:
        if progress is not None:
            progress("A/B test")
        t0 = time.perf_counter()
        ab = abtest(config, scenario, runs, log_root=log_root)
        timings["abtest"] = time.perf_counter() - t0
    return SimulationResult(config=config, scenario=scenario, runs=runs, recommender=quality,
                            history_events=events, timings=timings, abtest=ab)


def abtest(config: SimulationConfig, scenario: Scenario, runs: list[PolicyRun], *,
           log_root: str | None = None) -> ABTestRun:
    """The configured A/B test over the scenario; a "best_fixed" control is the fixed
    offer with the most profit among `runs` (the run's full-traffic fixed offers)."""
    s = config.abtest
    control = config.abtest_spec("control")
    if control is None:
        fixed = [r for r in runs if r.spec.policy == "fixed"]
        if not fixed:
            raise ValueError("abtest.control: 'best_fixed' needs fixed-offer runs among "
                             "policies (e.g. 'fixed')")
        control = max(fixed, key=lambda r: float(r.profit.sum())).spec
    treatment = config.abtest_spec("treatment")
    assert treatment is not None  # only a control may be resolved from the runs
    return run_abtest(control, treatment, scenario, weights=s.weights, salt=s.salt,
                      level=config.report.confidence, bootstrap=s.bootstrap,
                      srm_alpha=s.srm_alpha, seed=config.seed, log_root=log_root)
