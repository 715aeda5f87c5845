"""The Open Bandit Dataset: loader and estimators on OBD-format fixtures, the sdist extraction,
BTS's action distribution, and (when fetched) the real sample against on-policy values.

The integration test needs the data: `promobandit datasets fetch obd` (or
`python -m promobandit datasets fetch obd`) once; CI runs it before the tests.
"""

from __future__ import annotations

import io
import json
import math
import subprocess
import tarfile

import numpy as np
import pandas as pd
import pytest

from promobandit.datasets import obd
from promobandit.evaluate import evaluate

K_FIX = 5  # items in the fixture


def _write_log(folder, campaign: str, pscore: np.ndarray, seed: int) -> pd.DataFrame:
    rs = np.random.default_rng(seed)
    n = pscore.size
    start = pd.Timestamp("2019-11-24", tz="UTC")
    ts = start + pd.to_timedelta(rs.permutation(n) * 7.5, unit="s")  # shuffled: loader sorts
    df = pd.DataFrame({
        "timestamp": ts.astype(str),
        "item_id": rs.integers(0, K_FIX, n),
        "position": rs.integers(1, 4, n),
        "click": (rs.random(n) < 0.2).astype(int),
        "propensity_score": pscore,
        "user_feature_0": rs.choice(["a1f3", "9bc0"], n),
        "user_feature_1": rs.choice(["11", "22", "33"], n),
        "user_feature_2": rs.choice(["x"], n),
        "user_feature_3": rs.choice(["p", "q"], n),
        "user-item_affinity_0": rs.random(n),
        "user-item_affinity_1": rs.random(n),
    })
    folder.mkdir(parents=True, exist_ok=True)
    df.to_csv(folder / f"{campaign}.csv")  # with the unnamed index column, like OBD
    items = pd.DataFrame({"item_id": np.arange(K_FIX), "item_feature_0": rs.normal(size=K_FIX),
                          "item_feature_1": [f"h{i % 2}" for i in range(K_FIX)]})
    items.to_csv(folder / "item_context.csv")
    return df


@pytest.fixture
def obd_dir(tmp_path):
    root = tmp_path / "obd"
    raw = {}
    raw["random"] = _write_log(root / "random" / "all", "all", np.full(300, 1 / K_FIX), 1)
    rs = np.random.default_rng(2)
    raw["bts"] = _write_log(root / "bts" / "all", "all", rs.uniform(0.01, 0.9, 300), 3)
    return root, raw


def test_loader_reads_the_obd_layout(obd_dir) -> None:
    root, raw = obd_dir
    data = obd.load_obd("random", "all", root)
    df = raw["random"].assign(_t=pd.to_datetime(raw["random"]["timestamp"]))
    df = df.sort_values("_t", kind="stable").reset_index(drop=True)
    assert len(data) == 300 and data.n_actions == K_FIX and data.len_list == 3
    np.testing.assert_array_equal(data.actions, df["item_id"])
    np.testing.assert_array_equal(data.positions, df["position"] - 1)  # obp: 1..3 -> 0..2
    np.testing.assert_array_equal(data.rewards, df["click"])
    assert (np.diff(data.timestamps) > 0).all()
    assert data.timestamps[0] == pd.Timestamp("2019-11-24", tz="UTC").timestamp()
    # One-hot user features: 2 + 3 + 1 + 2 levels, one 1 per feature per row.
    assert data.contexts.shape == (300, 8)
    assert (data.contexts.sum(axis=1) == 4).all()
    col = data.context_names.index("user_feature_1=22")
    np.testing.assert_array_equal(data.contexts[:, col], df["user_feature_1"].astype(str) == "22")
    with_aff = obd.load_obd("random", "all", root, include_affinity=True)
    assert with_aff.contexts.shape == (300, 10)
    log = data.to_decision_log()
    assert log.contexts.shape == (300, 11)  # + position one-hot
    assert log.n_actions == K_FIX
    mean, se = data.on_policy_value()
    assert mean == pytest.approx(df["click"].mean())
    assert se == pytest.approx(df["click"].std() / math.sqrt(300))


def test_ips_and_snips_on_obd_fixture_match_the_textbook(obd_dir) -> None:
    root, raw = obd_dir
    for policy in ("random", "bts"):
        data = obd.load_obd(policy, "all", root)
        # A position-wise target: position 0 shows item 1 always, the others mix.
        dist = np.zeros((K_FIX, 3))
        dist[1, 0] = 1.0
        dist[:, 1] = [0.1, 0.2, 0.3, 0.2, 0.2]
        dist[:, 2] = [0.0, 0.0, 0.5, 0.5, 0.0]
        rep = evaluate(data.to_decision_log(), obd.per_row_target(dist, data.positions),
                       ["ips", "snips"])
        df = raw[policy]
        pi = dist[df["item_id"].to_numpy(), df["position"].to_numpy() - 1]
        w = pi / df["propensity_score"].to_numpy()
        r = df["click"].to_numpy()
        assert rep["ips"].value == pytest.approx(np.mean(w * r), rel=1e-12)
        assert rep["snips"].value == pytest.approx(np.sum(w * r) / np.sum(w), rel=1e-12)
        assert rep["ips"].stderr == pytest.approx(np.std(w * r, ddof=1) / math.sqrt(len(r)))


def test_bad_obd_files_and_arguments(obd_dir, tmp_path) -> None:
    root, raw = obd_dir
    with pytest.raises(ValueError, match=r"^behavior_policy"):
        obd.load_obd("greedy", "all", root)
    with pytest.raises(ValueError, match=r"^campaign"):
        obd.load_obd("random", "kids", root)
    bad = raw["random"].assign(propensity_score=0.0)
    bad.to_csv(root / "random" / "all" / "all.csv")
    with pytest.raises(ValueError, match=r"^propensity_score"):
        obd.load_obd("random", "all", root)
    bad = raw["random"].assign(item_id=K_FIX)
    bad.to_csv(root / "random" / "all" / "all.csv")
    with pytest.raises(ValueError, match=r"^item_id"):
        obd.load_obd("random", "all", root)


def test_missing_data_says_how_to_fetch(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(obd.ENV_DATA, str(tmp_path / "data"))
    assert obd.obd_data_dir() == tmp_path / "data" / "obd"
    assert not obd.is_fetched()
    with pytest.raises(obd.DatasetNotFoundError, match="promobandit datasets fetch obd"):
        obd.load_obd("bts", "men")
    with pytest.raises(FileNotFoundError, match="promobandit datasets fetch obd"):
        obd.production_bts_prior("men")
    monkeypatch.delenv(obd.ENV_DATA)
    assert obd.obd_data_dir().parts[-3:] == (".cache", "promobandit", "obd")


PRIOR_YAML = """all:
  alpha:
    - 2.0
    - 3.0
  beta:
    - 10.0
    - 20.0
men:
  alpha:
    - 1.0
  beta:
    - 5.0
women:
  alpha:
    - 1.0
  beta:
    - 5.0
"""


def _fake_sdist(path, *, drop: str | None = None, extra: dict[str, bytes] | None = None) -> None:
    """An archive in obp 0.5.7's layout with tiny files (2 items in 'all', 1 elsewhere)."""
    members: dict[str, bytes] = {"obp-0.5.7/LICENSE": b"Apache License 2.0",
                                 "obp-0.5.7/obp/policy/conf/prior_bts.yaml": PRIOR_YAML.encode(),
                                 "obp-0.5.7/obp/ope/estimators.py": b"# not extracted"}
    for policy in ("random", "bts"):
        for campaign, k in (("all", 2), ("men", 1), ("women", 1)):
            base = f"obp-0.5.7/obp/dataset/obd/{policy}/{campaign}/"
            members[base + f"{campaign}.csv"] = b",timestamp,item_id\n0,2019,0\n"
            items = ",item_id\n" + "".join(f"{i},{i}\n" for i in range(k))
            members[base + "item_context.csv"] = items.encode()
    if drop:
        members.pop(drop)
    members.update(extra or {})
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_extract_from_sdist_takes_only_the_sample(tmp_path) -> None:
    sdist = tmp_path / "obp-0.5.7.tar.gz"
    _fake_sdist(sdist, extra={"obp-0.5.7/../../escape.csv": b"x",
                              "/abs/obp/dataset/obd/random/all/all.csv": b"y"})
    dest = obd.extract_obd_from_sdist(sdist, tmp_path / "cache" / "obd")
    assert obd.is_fetched(dest)
    files = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert len(files) == 12 + 3  # 12 CSVs, prior, manifest, licence
    assert not (tmp_path / "escape.csv").exists() and not any("escape" in f for f in files)
    prior = json.loads((dest / "prior_bts.json").read_text())
    assert prior["all"] == {"alpha": [2.0, 3.0], "beta": [10.0, 20.0]}
    a, _ = obd.production_bts_prior("all", dest)
    np.testing.assert_array_equal(a, [2.0, 3.0])
    manifest = json.loads((dest / "MANIFEST.json").read_text())
    assert set(manifest["files"]) == set(files) - {"MANIFEST.json"}
    assert (dest / "random" / "all" / "all.csv").read_text().startswith(",timestamp")
    broken = tmp_path / "broken.tar.gz"
    _fake_sdist(broken, drop="obp-0.5.7/obp/dataset/obd/bts/men/men.csv")
    with pytest.raises(RuntimeError, match=r"bts/men/men\.csv"):
        obd.extract_obd_from_sdist(broken, tmp_path / "other" / "obd")
    assert not (tmp_path / "other" / "obd").exists()  # all or nothing
    with pytest.raises(ValueError, match="line 2"):
        obd.parse_prior_yaml("all:\n  - 1.0\n  alpha\n")


def test_fetch_runs_pip_download_of_the_sdist(tmp_path, monkeypatch) -> None:
    calls = []

    def fake_run(cmd, **kwargs):
        calls.append(cmd)
        dest = cmd[cmd.index("-d") + 1]
        _fake_sdist(f"{dest}/obp-0.5.7.tar.gz")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(obd.subprocess, "run", fake_run)
    out = obd.fetch_obd(tmp_path / "obd")
    assert obd.is_fetched(out)
    cmd = calls[0]
    assert cmd[1:5] == ["-m", "pip", "download", "obp==0.5.7"]
    for flag in ("--no-deps", "--ignore-requires-python"):
        assert flag in cmd
    assert cmd[cmd.index("--no-binary") + 1] == ":all:"
    obd.fetch_obd(tmp_path / "obd")  # already there: pip is not run again
    assert len(calls) == 1
    obd.fetch_obd(tmp_path / "obd", force=True)
    assert len(calls) == 2

    def failing_run(cmd, **kwargs):
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution")

    monkeypatch.setattr(obd.subprocess, "run", failing_run)
    with pytest.raises(RuntimeError, match="No matching distribution"):
        obd.fetch_obd(tmp_path / "again")
    from promobandit.cli import main

    assert main(["datasets", "fetch", "obd", "--cache-dir", str(tmp_path / "again")]) == 2


def test_bts_action_distribution() -> None:
    # Two items: P(Beta(1,1) draw > Beta(2,1) draw) = integral of 2v (1 - v) dv = 1/3.
    d = obd.bts_action_dist([1.0, 2.0], [1.0, 1.0], len_list=2)
    np.testing.assert_allclose(d, [[1 / 3, 2 / 3], [2 / 3, 1 / 3]], atol=1e-9)
    # Identical priors: every item equally likely at every position.
    np.testing.assert_allclose(obd.bts_action_dist(np.full(7, 3.0), np.full(7, 50.0)), 1 / 7,
                               atol=1e-9)
    # A realistic, peaked prior: quadrature agrees with obp's Monte Carlo method.
    rs = np.random.default_rng(0)
    alpha = rs.integers(2, 300, 12).astype(float)
    beta = alpha * rs.uniform(80, 300, 12)
    q = obd.bts_action_dist(alpha, beta)
    mc = obd.bts_action_dist(alpha, beta, method="monte_carlo", n_sim=100_000, seed=1)
    np.testing.assert_allclose(q.sum(axis=0), 1.0, atol=1e-12)
    assert (q.sum(axis=1) <= 1 + 1e-12).all()
    assert np.abs(q - mc).max() < 0.008  # MC sd <= 0.0016 per entry at n_sim = 1e5
    with pytest.raises(ValueError, match=r"^len_list"):
        obd.bts_action_dist([1.0, 1.0], [1.0, 1.0], len_list=3)
    with pytest.raises(ValueError, match=r"^method"):
        obd.bts_action_dist([1.0, 1.0], [1.0, 1.0], len_list=1, method="exact")


@pytest.mark.skipif(not obd.is_fetched(),
                    reason="the Open Bandit Dataset sample is not fetched: run "
                           "`promobandit datasets fetch obd` (CI does)")
def test_real_obd_estimates_agree_with_the_on_policy_bts_value() -> None:
    """On each campaign, every estimator's value of the BTS policy from the random log lies
    within 3 combined standard errors of the BTS log's mean click; the random policy's IPS
    equals the random log's mean exactly (its weights are all 1)."""
    from promobandit.evaluate import OPEWarning

    with pytest.warns(OPEWarning) as record:
        comp = obd.compare_obd_policies(estimators=("ips", "snips", "dm", "dr", "clipped-dr"))
    # The deterministic most-popular target agrees with few clicked impressions (~0-2 of
    # 10,000): the evaluation must say so. The BTS targets have enough events (no warning).
    assert any(str(w.message).startswith("most popular: only") for w in record)
    assert not any(str(w.message).startswith("bts") for w in record)
    df = comp.to_frame()
    assert set(df["campaign"]) == set(obd.CAMPAIGNS)
    assert set(df["policy"]) == set(obd.OBD_POLICIES)
    for _, row in df[df["policy"].str.startswith("bts")].iterrows():
        se = row["stderr"] if np.isfinite(row["stderr"]) else 0.0
        tol = 3 * math.hypot(se, row["on_policy_se"]) + (0.25 * row["on_policy"]
                                                         if row["estimator"] == "dm" else 0)
        assert abs(row["value"] - row["on_policy"]) < tol, row.to_dict()
        assert 0 < row["value"] < 0.05  # click rates of about half a percent
    rnd = df[(df["policy"] == "random") & (df["estimator"] == "ips")]
    np.testing.assert_allclose(rnd["value"], rnd["on_policy"], rtol=1e-12)
    ranking = comp.ranking("dr")
    assert (ranking.groupby("campaign").size() == len(obd.OBD_POLICIES)).all()
