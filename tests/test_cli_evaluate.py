"""`promobandit evaluate`, `abtest` and `datasets` on files the engine and a test wrote."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from promobandit.cli import main
from promobandit.engine import Engine, EngineConfig
from promobandit.offers import Basket, Catalogue, NoDiscount, PercentOff
from promobandit.policies import make_policy

T0 = 1_700_000_000.0


def write_log(folder: Path, n: int = 600) -> None:
    cat = Catalogue(offers=(NoDiscount(id="none"), PercentOff(id="p10", fraction=0.1),
                            PercentOff(id="p20", fraction=0.2)))
    pol = make_policy("EpsilonGreedy", 3, seed=1, epsilon=0.5)
    eng = Engine(cat, pol, EngineConfig(caps=None, feedback_wait_seconds=10.0),
                 privacy_key=b"cli-test-key-0123456789", log_dir=str(folder))
    rs = np.random.default_rng(0)
    b = Basket.from_lines([(1, 0, 50.0, 30.0, 1)])
    for i in range(n):
        d = eng.decide(f"u{i}", basket=b, now=T0 + i)
        if rs.random() < 0.2 + 0.2 * d.offer:
            eng.feedback(d.id, f"e{i}", purchased=True, now=T0 + i + 1)
    eng.close(now=T0 + n + 100)


def test_evaluate_command_prints_and_writes_estimates(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    write_log(tmp_path / "log")
    policy = tmp_path / "fixed.json"
    policy.write_text(json.dumps({"policy": "fixed", "offer": 2}))
    out = tmp_path / "eval.json"
    assert main(["evaluate", "--log", str(tmp_path / "log"), "--policy", str(policy),
                 "--estimators", "ips,snips,dr", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "ips" in printed and "dr" in printed
    rows = json.loads(out.read_text())
    ips = next(r for r in rows if r["estimator"] == "ips")
    # offer 2 (20% off) earns 50*0.8-30 = 10 per purchase with purchase rate 0.6
    assert abs(ips["value"] - 6.0) < 1.5


def test_abtest_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rs = np.random.default_rng(3)
    n = 4000
    variant = np.where(rs.random(n) < 0.5, "control", "treatment")
    conv = rs.random(n) < np.where(variant == "treatment", 0.12, 0.10)
    rev = np.where(conv, rs.gamma(2.0, 20.0, n), 0.0)
    frame = pd.DataFrame({"user": [f"u{i}" for i in range(n)], "variant": variant,
                          "converted": conv.astype(int), "revenue": rev, "profit": rev * 0.3})
    path = tmp_path / "exp.csv"
    frame.to_csv(path, index=False)
    assert main(["abtest", "--log", str(path), "--bootstrap", "200",
                 "--out", str(tmp_path / "ab.html")]) == 0
    assert "treatment" in capsys.readouterr().out
    assert "<table" in (tmp_path / "ab.html").read_text()


def test_bad_arguments_exit_non_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["datasets", "fetch", "nope"]) == 2
    assert "name" in capsys.readouterr().err
    write_log(tmp_path / "log", 50)
    policy = tmp_path / "p.json"
    policy.write_text(json.dumps({"policy": "fixed", "offer": 2}))
    assert main(["evaluate", "--log", str(tmp_path / "log"), "--policy", str(policy),
                 "--out", str(tmp_path / "x.txt")]) == 2
