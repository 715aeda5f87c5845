"""The Open Bandit Dataset (OBD): real logged bandit feedback from ZOZOTOWN.

OBD (Saito et al. 2021, "Open Bandit Dataset and Pipeline", CC BY 4.0) logs item
recommendations in a fashion e-commerce site: in each impression one of K items
is shown at one of three positions and a click (0/1) is recorded, together with
the logging policy's propensity. Two logging policies ran on the same traffic:
uniform random ("random") and Bernoulli Thompson sampling ("bts"), in three
campaigns ("all", "men", "women"). The random logs can evaluate the BTS policy
off-policy and the BTS logs give its on-policy value: a real test of OPE.

``fetch_obd`` takes the small sample (10,000 rows per log) that ships inside the
source distribution of the ``obp`` package (Apache-2.0) from PyPI with pip, and
extracts the CSVs and BTS prior into a cache folder; nothing else of obp is used
or imported. Afterwards everything works offline.

CSV columns: timestamp, item_id, position (1..3), click, propensity_score,
user_feature_0..3 (hashed categories), user-item_affinity_0..K-1; item_context.csv
holds item features. Data folder layout: <dir>/{random,bts}/{all,men,women}/
{campaign}.csv and item_context.csv, <dir>/prior_bts.json, <dir>/MANIFEST.json.

Where this module follows obp's behaviour (position numbering, sorting by
timestamp, BernoulliTS's action distribution under the production prior), it
reimplements it in NumPy; obp is Copyright (c) Yuta Saito, Yusuke Narita, and
ZOZO Technologies, Inc., Apache License 2.0.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .._extras import require
from .._validation import check_int, check_seed

BEHAVIOR_POLICIES = ("random", "bts")
CAMPAIGNS = ("all", "men", "women")
OBP_VERSION = "0.5.7"
ENV_DATA = "PROMOBANDIT_DATA"
FETCH_COMMAND = "promobandit datasets fetch obd"
LEN_LIST = 3  # positions per impression list in ZOZOTOWN's recommendation widget

_CSV = re.compile(r"^[^/]+/obp/dataset/obd/(random|bts)/(all|men|women)/"
                  r"(all\.csv|men\.csv|women\.csv|item_context\.csv)$")
_PRIOR = re.compile(r"^[^/]+/obp/policy/conf/prior_bts\.yaml$")
_LICENSE = re.compile(r"^[^/]+/LICENSE$")


class DatasetNotFoundError(FileNotFoundError):
    """The dataset has not been fetched into the data folder."""


def obd_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The OBD folder: `data_dir` if given, else $PROMOBANDIT_DATA/obd, else
    ~/.cache/promobandit/obd."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    root = os.environ.get(ENV_DATA)
    if root:
        return Path(root).expanduser() / "obd"
    return Path.home() / ".cache" / "promobandit" / "obd"


def _expected_files() -> list[str]:
    out = []
    for policy in BEHAVIOR_POLICIES:
        for campaign in CAMPAIGNS:
            out += [f"{policy}/{campaign}/{campaign}.csv", f"{policy}/{campaign}/item_context.csv"]
    return [*out, "prior_bts.json"]


def is_fetched(data_dir: str | os.PathLike[str] | None = None) -> bool:
    """Whether every OBD sample file is in the data folder."""
    d = obd_data_dir(data_dir)
    return (d / "MANIFEST.json").exists() and all((d / f).exists() for f in _expected_files())


def parse_prior_yaml(text: str) -> dict[str, dict[str, list[float]]]:
    """obp's prior_bts.yaml (campaign -> alpha/beta -> list of numbers), without a YAML library.

    The file is a two-level mapping of number lists; anything else raises ValueError.
    """
    out: dict[str, dict[str, list[float]]] = {}
    campaign = key = None
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip(" "))
        body = line.strip()
        if indent == 0 and body.endswith(":"):
            campaign = body[:-1].strip()
            out[campaign] = {}
            key = None
        elif body.endswith(":") and campaign is not None:
            key = body[:-1].strip()
            out[campaign][key] = []
        elif body.startswith("- ") and campaign is not None and key is not None:
            try:
                out[campaign][key].append(float(body[2:]))
            except ValueError as exc:
                raise ValueError(f"prior_bts.yaml line {lineno}: not a number: {body!r}") from exc
        else:
            raise ValueError(f"prior_bts.yaml line {lineno}: unexpected {raw!r}")
    return out


def extract_obd_from_sdist(sdist: str | os.PathLike[str],
                           dest: str | os.PathLike[str]) -> Path:
    """Extracts the OBD sample CSVs and the BTS prior from an obp source archive into `dest`.

    Only the expected members are read (by name; nothing is written outside `dest`).
    The folder is built under a temporary name and renamed, so it is complete or absent.
    Returns `dest`. Raises RuntimeError when the archive lacks an expected file.
    """
    dest = Path(dest)
    sdist = Path(sdist)
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".obd-", dir=dest.parent))
    try:
        files: dict[str, str] = {}
        prior = None
        with tarfile.open(sdist, "r:gz") as tar:
            for member in tar.getmembers():
                if not member.isfile():
                    continue
                m = _CSV.match(member.name)
                if m:
                    rel = f"{m.group(1)}/{m.group(2)}/{m.group(3)}"
                elif _PRIOR.match(member.name):
                    rel = "prior_bts.yaml"
                elif _LICENSE.match(member.name):
                    rel = "LICENSE-obp"
                else:
                    continue
                fh = tar.extractfile(member)
                if fh is None:  # pragma: no cover - isfile() members always have data
                    continue
                data = fh.read()
                if rel == "prior_bts.yaml":
                    prior = parse_prior_yaml(data.decode())
                    data = json.dumps(prior, indent=1).encode()
                    rel = "prior_bts.json"
                target = work / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
                files[rel] = hashlib.sha256(data).hexdigest()
        missing = [f for f in _expected_files() if f not in files]
        if missing:
            raise RuntimeError(f"{sdist.name} does not hold the OBD sample where expected "
                               f"(missing {missing[:3]}{'...' if len(missing) > 3 else ''}); "
                               "the obp sdist layout may have changed")
        assert prior is not None
        for campaign in CAMPAIGNS:
            k = _count_rows(work / f"random/{campaign}/item_context.csv")
            for ab in ("alpha", "beta"):
                if len(prior.get(campaign, {}).get(ab, [])) != k:
                    raise RuntimeError(f"prior_bts.yaml: {campaign}.{ab} does not have one "
                                       f"value per item ({k})")
        manifest = {
            "dataset": "Open Bandit Dataset, small sample (Saito et al. 2021), CC BY 4.0",
            "source": f"{sdist.name} from PyPI (obp, Apache-2.0)",
            "sdist_sha256": hashlib.sha256(sdist.read_bytes()).hexdigest(),
            "files": files,
        }
        (work / "MANIFEST.json").write_text(json.dumps(manifest, indent=1))
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(work, dest)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return dest


def _count_rows(csv: Path) -> int:
    with csv.open() as fh:
        return sum(1 for line in fh if line.strip()) - 1


def fetch_obd(cache_dir: str | os.PathLike[str] | None = None, *, force: bool = False,
              version: str = OBP_VERSION, timeout: float = 300.0) -> Path:
    """Downloads obp's source distribution with pip and extracts the OBD sample into the cache.

    cache_dir: the OBD folder (default: see obd_data_dir: $PROMOBANDIT_DATA/obd or
        ~/.cache/promobandit/obd).
    force: fetch again even when the folder is complete.
    version: the obp release whose sdist holds the sample (0.5.7 is the one checked).
    timeout: seconds pip may take.
    Returns the folder. Runs ``python -m pip download obp==<version> --no-deps
    --no-binary :all: --ignore-requires-python`` (the sdist only: nothing is installed).
    """
    dest = obd_data_dir(cache_dir)
    if is_fetched(dest) and not force:
        return dest
    with tempfile.TemporaryDirectory(prefix="promobandit-obd-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", f"obp=={version}", "--no-deps",
               "--no-binary", ":all:", "--ignore-requires-python", "--disable-pip-version-check",
               "-d", tmp]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                                  check=False)
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"pip download of obp=={version} took over {timeout:g} s") from exc
        if done.returncode != 0:
            tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-5:])
            raise RuntimeError(f"pip download of obp=={version} failed "
                               f"(exit {done.returncode}):\n{tail}")
        archives = sorted(Path(tmp).glob("obp-*.tar.gz"))
        if not archives:
            raise RuntimeError(f"pip download of obp=={version} gave no .tar.gz sdist "
                               f"(got {[p.name for p in Path(tmp).iterdir()]})")
        return extract_obd_from_sdist(archives[0], dest)


def _not_found(d: Path) -> DatasetNotFoundError:
    return DatasetNotFoundError(
        f"the Open Bandit Dataset is not in {d}; run `{FETCH_COMMAND}` once (or "
        "promobandit.datasets.fetch_obd()), which downloads obp's source package "
        f"from PyPI with pip, or set {ENV_DATA} to the folder holding obd/")


# --------------------------------------------------------------------------- loading
@dataclasses.dataclass(frozen=True, eq=False)
class OBDData:
    """One OBD log (n impressions), as arrays.

    actions: (n,) int64 item id in [0, K). positions: (n,) int64 in [0, len_list)
    (obp's numbering: the CSV's 1..3 minus one). rewards: (n,) float64 click (0/1).
    pscore: (n,) float64 the logging policy's probability of this item at this position.
    contexts: (n, d) float64 one-hot user features (every level of user_feature_0..3,
    plus the user-item affinities when asked for); context_names their names.
    n_actions: K (the rows of item_context.csv). item_context: the item features
    (a DataFrame). timestamps: (n,) float64 unix seconds. Rows are sorted by time.
    """

    behavior_policy: str
    campaign: str
    actions: np.ndarray
    positions: np.ndarray
    rewards: np.ndarray
    pscore: np.ndarray
    contexts: np.ndarray
    context_names: tuple[str, ...]
    n_actions: int
    len_list: int
    item_context: Any
    timestamps: np.ndarray

    def __len__(self) -> int:
        return int(self.actions.shape[0])

    def on_policy_value(self) -> tuple[float, float]:
        """(mean click rate, its standard error): the logging policy's own value."""
        r = self.rewards
        return float(r.mean()), float(r.std(ddof=1) / np.sqrt(r.size))

    def position_one_hot(self) -> np.ndarray:
        """(n, len_list) float64 one-hot of the position."""
        out = np.zeros((len(self), self.len_list))
        out[np.arange(len(self)), self.positions] = 1.0
        return out

    def to_decision_log(self, *, position_in_context: bool = True) -> Any:
        """The log as a promobandit DecisionLog (offer = item, propensity = pscore,
        reward = click). position_in_context: append the position one-hot to the
        contexts, so reward models can learn position effects."""
        from ..evaluate.log import DecisionLog

        ctx = np.hstack([self.contexts, self.position_one_hot()]) if position_in_context \
            else self.contexts
        return DecisionLog.from_arrays(self.actions, self.pscore, self.rewards,
                                       n_actions=self.n_actions, contexts=ctx,
                                       extra={"position": self.positions,
                                              "ts": self.timestamps})


def load_obd(behavior_policy: str, campaign: str,
             data_dir: str | os.PathLike[str] | None = None, *,
             include_affinity: bool = False) -> OBDData:
    """Loads one OBD log from the data folder (fetched with ``fetch_obd``, or any folder in the
    OBD layout, e.g. the full dataset).

    behavior_policy: "random" or "bts". campaign: "all", "men" or "women".
    include_affinity: append the user-item affinity columns to the contexts.
    Raises DatasetNotFoundError (telling how to fetch) when the data is not there,
    ValueError on bad arguments or malformed files.
    """
    if behavior_policy not in BEHAVIOR_POLICIES:
        raise ValueError(f"behavior_policy: expected one of {BEHAVIOR_POLICIES}, got "
                         f"{behavior_policy!r}")
    if campaign not in CAMPAIGNS:
        raise ValueError(f"campaign: expected one of {CAMPAIGNS}, got {campaign!r}")
    folder = obd_data_dir(data_dir) / behavior_policy / campaign
    if not ((folder / f"{campaign}.csv").exists() and (folder / "item_context.csv").exists()):
        raise _not_found(obd_data_dir(data_dir))
    return read_obd_csv(folder / f"{campaign}.csv", folder / "item_context.csv",
                        behavior_policy=behavior_policy, campaign=campaign,
                        include_affinity=include_affinity)


def read_obd_csv(log_csv: str | os.PathLike[str], item_context_csv: str | os.PathLike[str], *,
                 behavior_policy: str = "", campaign: str = "",
                 include_affinity: bool = False) -> OBDData:
    """Reads one log CSV and its item_context.csv in the OBD format (see the module doc)."""
    pd = require("pandas", "evaluate", "the Open Bandit Dataset")

    log_csv, item_context_csv = Path(log_csv), Path(item_context_csv)
    for p in (log_csv, item_context_csv):
        if not p.exists():
            raise _not_found(p.parent)
    df = pd.read_csv(log_csv, index_col=0)
    items = pd.read_csv(item_context_csv, index_col=0)
    need = ["timestamp", "item_id", "position", "click", "propensity_score"]
    for col in need:
        if col not in df.columns:
            raise ValueError(f"{col}: missing column in {log_csv.name}")
    user_cols = sorted((c for c in df.columns if c.startswith("user_feature_")),
                       key=lambda c: int(c.rsplit("_", 1)[1]))
    aff_cols = sorted((c for c in df.columns if c.startswith("user-item_affinity_")),
                      key=lambda c: int(c.rsplit("_", 1)[1]))
    if not user_cols:
        raise ValueError(f"user_feature_0: no user feature columns in {log_csv.name}")
    df["_t"] = pd.to_datetime(df["timestamp"], utc=True)
    df = df.sort_values("_t", kind="stable").reset_index(drop=True)
    k = len(items)
    actions = df["item_id"].to_numpy()
    if actions.dtype.kind not in "iu" or actions.min() < 0 or actions.max() >= k:
        raise ValueError(f"item_id: expected integers in [0, {k}) (the rows of "
                         f"{item_context_csv.name})")
    pos_raw = df["position"].to_numpy()
    levels = np.unique(pos_raw)
    positions = np.searchsorted(levels, pos_raw).astype(np.int64)  # obp: dense rank - 1
    rewards = df["click"].to_numpy(dtype=np.float64)
    if not np.isin(rewards, (0.0, 1.0)).all():
        raise ValueError("click: expected 0/1")
    pscore = df["propensity_score"].to_numpy(dtype=np.float64)
    if not ((pscore > 0) & (pscore <= 1)).all():
        raise ValueError("propensity_score: expected values in (0, 1]")
    blocks, names = [], []
    for col in user_cols:
        values = df[col].astype(str).to_numpy()
        cats, codes = np.unique(values, return_inverse=True)
        onehot = np.zeros((len(df), cats.size))
        onehot[np.arange(len(df)), codes] = 1.0
        blocks.append(onehot)
        names += [f"{col}={c}" for c in cats]
    if include_affinity:
        blocks.append(df[aff_cols].to_numpy(dtype=np.float64))
        names += aff_cols
    contexts = np.ascontiguousarray(np.hstack(blocks))
    ts = (df["_t"] - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy(dtype=np.float64)
    return OBDData(behavior_policy, campaign, actions.astype(np.int64), positions, rewards,
                   pscore, contexts, tuple(names), k, int(levels.size), items, ts)


# --------------------------------------------------------------------------- BTS policy
def production_bts_prior(campaign: str, data_dir: str | os.PathLike[str] | None = None
                         ) -> tuple[np.ndarray, np.ndarray]:
    """The (alpha, beta) Beta prior per item that ZOZOTOWN's BTS policy started the data
    collection with (obp's prior_bts.yaml), as two (K,) float64 arrays."""
    if campaign not in CAMPAIGNS:
        raise ValueError(f"campaign: expected one of {CAMPAIGNS}, got {campaign!r}")
    path = obd_data_dir(data_dir) / "prior_bts.json"
    if not path.exists():
        raise _not_found(obd_data_dir(data_dir))
    prior = json.loads(path.read_text())
    return (np.asarray(prior[campaign]["alpha"], dtype=np.float64),
            np.asarray(prior[campaign]["beta"], dtype=np.float64))


def bts_action_dist(alpha: Any, beta: Any, len_list: int = LEN_LIST, *,
                    method: str = "quadrature", n_sim: int = 100_000, seed: int = 0,
                    n_nodes: int = 512) -> np.ndarray:
    """P(item a is shown at position l) under Bernoulli Thompson sampling: draw
    theta_a ~ Beta(alpha_a, beta_a) for every item, show the len_list largest in order.

    Returns (K, len_list) float64; each column sums to 1.
    method: "quadrature" (default; deterministic): P(a at rank r) is the integral
        over a's draw x of f_a(x) times the probability that exactly r other items
        beat x, a product of Beta CDFs expanded as a polynomial; Gauss-Legendre with
        `n_nodes` nodes in a's quantile scale. "monte_carlo": obp's method
        (BernoulliTS.compute_batch_action_dist with is_zozotown_prior=True), n_sim
        simulated rankings with a NumPy generator seeded by `seed`.
    """
    a = np.asarray(alpha, dtype=np.float64)
    b = np.asarray(beta, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape or a.size < 2:
        raise ValueError("alpha: expected two (K,) arrays of the same length, K >= 2")
    if not (np.isfinite(a).all() and np.isfinite(b).all() and (a > 0).all() and (b > 0).all()):
        raise ValueError("alpha: Beta parameters must be positive and finite")
    k = a.size
    len_list = check_int("len_list", len_list, 1)
    if len_list > k:
        raise ValueError(f"len_list: {len_list} positions need at least as many items, got {k}")
    if method == "monte_carlo":
        n_sim = check_int("n_sim", n_sim, 1)
        rs = np.random.default_rng(check_seed(seed))
        counts = np.zeros((k, len_list))
        batch = 10_000  # simulations per batch: bounds memory at batch x K draws
        for lo in range(0, n_sim, batch):
            m = min(batch, n_sim - lo)
            theta = rs.beta(a, b, size=(m, k))
            top = np.argsort(-theta, axis=1, kind="stable")[:, :len_list]
            for pos in range(len_list):
                counts[:, pos] += np.bincount(top[:, pos], minlength=k)
        return counts / n_sim
    if method != "quadrature":
        raise ValueError(f"method: expected 'quadrature' or 'monte_carlo', got {method!r}")
    _special = require("scipy.special", "evaluate", "the Open Bandit Dataset")
    betainc, betaincinv = _special.betainc, _special.betaincinv

    n_nodes = check_int("n_nodes", n_nodes, 2)
    u, wq = np.polynomial.legendre.leggauss(n_nodes)
    u = 0.5 * (u + 1.0)
    wq = 0.5 * wq
    # x[i, j]: the u_j quantile of item i's Beta; f[i, j, c]: item c's CDF there.
    x = betaincinv(a[:, None], b[:, None], u[None, :])
    f = betainc(a[None, None, :], b[None, None, :], x[:, :, None])
    f[np.arange(k), :, np.arange(k)] = 1.0  # an item never beats its own draw
    # coef[i, j, r] = P(exactly r of the other items beat x[i, j]), truncated at len_list - 1:
    # the coefficients of prod_c (F_c + t (1 - F_c)), one factor at a time.
    coef = np.zeros((k, n_nodes, len_list))
    coef[:, :, 0] = 1.0
    for c in range(k):
        fc = f[:, :, c, None]
        shifted = np.zeros_like(coef)
        shifted[:, :, 1:] = coef[:, :, :-1]
        coef = coef * fc + shifted * (1.0 - fc)
    out = np.einsum("j,ijr->ir", wq, coef)
    # The rule's error (~1e-7 at 512 nodes) leaves columns a hair off 1; they are distributions.
    return out / out.sum(axis=0, keepdims=True)


def per_row_target(dist: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """(n, K) target probabilities from a (K, len_list) position-wise distribution:
    row i is the distribution over items at row i's position (obp's convention of
    evaluating each position's marginal)."""
    return np.ascontiguousarray(np.asarray(dist, dtype=np.float64).T[positions])


# --------------------------------------------------------------------------- the OPE check
OBD_POLICIES = ("bts (production prior)", "bts (empirical)", "random", "most popular")


def obd_target_policies(random_log: OBDData, bts_log: OBDData,
                        data_dir: str | os.PathLike[str] | None = None, *,
                        bts_method: str = "quadrature") -> dict[str, np.ndarray]:
    """(K, len_list) position-wise distributions of the policies compared on OBD.

    "bts (production prior)": ZOZOTOWN's Bernoulli TS under the prior it started the
        data collection with (obp's BernoulliTS(is_zozotown_prior=True)).
    "bts (empirical)": how often the BTS log actually showed each item at each position
        (the BTS policy averaged over its posterior updates during the collection).
    "random": uniform over items (the random log's own policy).
    "most popular": deterministic; the items with the most clicks in the BTS log (ties:
        more impressions, then lower id), the r-th most popular at position r. Learnt
        on the BTS log so that the random log it is evaluated on stays unseen.
    """
    k, length = random_log.n_actions, random_log.len_list
    alpha, beta = production_bts_prior(random_log.campaign, data_dir)
    out = {"bts (production prior)": bts_action_dist(alpha, beta, length, method=bts_method)}
    emp = np.zeros((k, length))
    np.add.at(emp, (bts_log.actions, bts_log.positions), 1.0)
    out["bts (empirical)"] = emp / emp.sum(axis=0, keepdims=True)
    out["random"] = np.full((k, length), 1.0 / k)
    clicks = np.bincount(bts_log.actions, weights=bts_log.rewards, minlength=k)
    shows = np.bincount(bts_log.actions, minlength=k)
    order = np.lexsort((np.arange(k), -shows, -clicks))[:length]
    top = np.zeros((k, length))
    top[order, np.arange(length)] = 1.0
    out["most popular"] = top
    return out


def obd_reward_model(seed: int = 0) -> Any:
    """The reward model used for DM/DR on OBD: logistic regression of click on
    [user one-hot, position one-hot, item one-hot] (additive log-odds; clicks are too
    rare, ~0.4%, for per-item interactions), 5-fold cross-fitted."""
    linear_model = require("sklearn.linear_model", "evaluate", "the Open Bandit Dataset")

    from ..evaluate.reward_model import RewardModel

    # max_iter: lbfgs needs a few hundred iterations on ~100 sparse one-hot columns.
    return RewardModel(linear_model.LogisticRegression(max_iter=2000), n_folds=5,
                       encoding="concat", sparse=True, seed=seed)


@dataclasses.dataclass(frozen=True)
class OBDComparison:
    """Off-policy estimates on OBD's random logs beside on-policy values.

    rows: one dict per (campaign, policy, estimator) with value, stderr, ci_low,
    ci_high, boot_low, boot_high, ess, and where an on-policy log of that policy
    exists (BTS: the bts log; random: the random log) on_policy and on_policy_se
    (mean click of that log) and rel_error = value / on_policy - 1.
    """

    rows: list[dict[str, Any]]

    def to_frame(self) -> Any:
        pd = require("pandas", "evaluate", "the Open Bandit Dataset")

        return pd.DataFrame(self.rows)

    def ranking(self, estimator: str = "dr") -> Any:
        """Policies ranked by the estimator's value within each campaign (1 = best)."""
        df = self.to_frame()
        df = df[df["estimator"] == estimator].copy()
        df["rank"] = df.groupby("campaign")["value"].rank(ascending=False, method="min")
        return df.sort_values(["campaign", "rank"])[["campaign", "policy", "value", "ci_low",
                                                     "ci_high", "rank"]]


def compare_obd_policies(campaigns: Any = CAMPAIGNS,
                         data_dir: str | os.PathLike[str] | None = None, *,
                         estimators: Any = ("ips", "snips", "dm", "dr"), n_bootstrap: int = 0,
                         seed: int = 0, bts_method: str = "quadrature",
                         reward_model: Any = None, **evaluate_kwargs: Any) -> OBDComparison:
    """Evaluates the OBD_POLICIES on each campaign's random log and puts the BTS policies
    beside the BTS log's on-policy click rate (the published OBD check of OPE).

    campaigns: campaign names; estimators, n_bootstrap, seed, evaluate_kwargs: as in
    promobandit.evaluate.evaluate; reward_model: default obd_reward_model(seed).
    Target probabilities are position-wise: row i is the policy's distribution over
    items at row i's position. Raises DatasetNotFoundError when OBD is not fetched.
    """
    from ..evaluate.ope import evaluate_policies

    campaigns = [campaigns] if isinstance(campaigns, str) else list(campaigns)
    rows: list[dict[str, Any]] = []
    for campaign in campaigns:
        rnd = load_obd("random", campaign, data_dir)
        bts = load_obd("bts", campaign, data_dir)
        on_policy = {"bts (production prior)": bts.on_policy_value(),
                     "bts (empirical)": bts.on_policy_value(),
                     "random": rnd.on_policy_value()}
        targets = {name: per_row_target(dist, rnd.positions) for name, dist in
                   obd_target_policies(rnd, bts, data_dir, bts_method=bts_method).items()}
        model = reward_model if reward_model is not None else obd_reward_model(seed)
        reports = evaluate_policies(rnd.to_decision_log(), targets, estimators,
                                    n_bootstrap=n_bootstrap, seed=seed, reward_model=model,
                                    **evaluate_kwargs)
        for name, report in reports.items():
            truth, truth_se = on_policy.get(name, (np.nan, np.nan))
            for est in report.estimates.values():
                rows.append({"campaign": campaign, "policy": name, "estimator": est.estimator,
                             "value": est.value, "stderr": est.stderr, "ci_low": est.ci_low,
                             "ci_high": est.ci_high, "boot_low": est.boot_low,
                             "boot_high": est.boot_high, "ess": est.ess,
                             "on_policy": truth, "on_policy_se": truth_se,
                             "rel_error": est.value / truth - 1.0 if truth > 0 else np.nan})
    return OBDComparison(rows)
