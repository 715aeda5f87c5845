"""`promobandit simulate`: the command, its files, bad configuration, and the report in a
real headless browser (Debian's chromium, driven over the DevTools protocol)."""

from __future__ import annotations

import base64
import io
import json
import os
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from promobandit.cli import main
from promobandit.engine.decision_log import DecisionLogWriter

CHROMIUM = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser"))
                 if p), None)


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One `promobandit simulate --quick` run: its output folder and what it printed."""
    out = tmp_path_factory.mktemp("report")
    buf = io.StringIO()
    old = sys.stdout
    sys.stdout = buf
    try:
        code = main(["simulate", "--quick", "--out", str(out), "--no-progress"])
    finally:
        sys.stdout = old
    assert code == 0
    return out, buf.getvalue()


def test_quick_run_prints_the_table_and_writes_the_report(quick_report) -> None:
    out, printed = quick_report
    for text in ("no discount", "LinTS + pacing", "Thompson sampling", "UCB1", "LinUCB",
                 "epsilon-greedy", "random offer", "best fixed offer in hindsight",
                 "report:", "95% CI"):
        assert text in printed, text
    page = (out / "index.html").read_text(encoding="utf-8")
    assert page.count("<svg") >= 7
    for anchor in ("id='plot-profit'", "id='plot-regret'", "id='plot-regret_daily'",
                   "id='plot-budget'",
                   "id='plot-mix'", "id='plot-fairness'", "id='plot-recommend'",
                   'id="verdict"', 'id="summary"',
                   "id='plot-tradeoff'", "id='tradeoff'", "id='who-segments'",
                   "id='who-sample'"):
        assert anchor in page, anchor
    # Self-contained: nothing is fetched from anywhere (namespace URIs are names only).
    for ref in ('src="http', "src='http", 'href="http', "href='http", "url(http", "@import",
                "<script", "<link", "<iframe"):
        assert ref not in page, ref
    summary = json.loads((out / "summary.json").read_text())
    keys = [p["key"] for p in summary["policies"]]
    assert "lints+pacing" in keys and "fixed:none" in keys
    assert summary["verdict"] and summary["headline"] == "lints+pacing"
    for p in summary["policies"]:
        assert p["profit"]["lo"] <= p["profit"]["value"] <= p["profit"]["hi"]
    csv = (out / "summary.csv").read_text().splitlines()
    assert len(csv) == len(keys) + 1


def test_decision_logs_are_parquet_with_one_row_per_decision(quick_report) -> None:
    out, _ = quick_report
    summary = json.loads((out / "summary.json").read_text())
    decisions = summary["decisions"]
    for folder in ("fixed_none", "lints_pacing", "thompson"):
        table = DecisionLogWriter.read(out / "logs" / folder)
        assert table.num_rows == decisions, folder
        props = np.asarray(table.column("propensity").to_pylist())
        assert ((props > 0) & (props <= 1)).all()
    lints = DecisionLogWriter.read(out / "logs" / "lints_pacing")
    assert set(lints.column("policy").to_pylist()) == {"LinTS"}
    assert len(lints.column("context").to_pylist()[0]) == 12  # the default features


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["simulate", "--no-progress", *args])
    return code, capsys.readouterr().err.strip()


@pytest.mark.parametrize(("toml", "flags", "key"), [
    ("[market]\nn_userz = 10\n", [], "market.n_userz: unknown key"),
    ("colour = 'red'\n", [], "colour: unknown key"),
    ("", ["--budget", "-5"], "budget.daily: expected a value in (0, inf"),
    ("[budget]\ndaily = -1.0\n", [], "budget.daily:"),
    ("[catalogue]\ncurrency = 'EUR'\n[[catalogue.offers]]\nid = 'none'\ntype = 'none'\n"
     "[[catalogue.offers]]\nid = 'all'\ntype = 'percent_off'\nfraction = 1.5\n", [],
     "catalogue.offers[1].fraction: expected a value in (0, 1)"),
    ("[market]\nhistory_promo_fractions = [0.1, 1.2]\n", [], "market.history_promo_fractions"),
    ("", ["--policies", "fixed,lints+turbo"], "policies[1]: unknown or repeated modifier"),
    ("[fairness]\nmax_gap = 2.0\n", [], "fairness.max_gap:"),
    ("days = 0\n", [], "days:"),
])
def test_broken_configuration_exits_non_zero_with_one_line_naming_the_key(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], toml: str, flags: list[str],
        key: str) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(toml)
    code, err = _run(["--config", str(cfg), "--out", str(tmp_path / "out"), *flags], capsys)
    assert code != 0
    assert len(err.splitlines()) == 1, err
    assert key in err, err
    assert not (tmp_path / "out" / "index.html").exists()


def test_a_broken_configuration_fails_the_process(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[engine]\nreward_scale = -3\n")
    proc = subprocess.run([sys.executable, "-m", "promobandit", "simulate", "--config",
                           str(cfg), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [
        "promobandit simulate: engine.reward_scale: expected a value in (0, inf], got -3"]


# --- the report in a real browser --------------------------------------------------------

class DevTools:
    """A minimal Chrome DevTools protocol client over --remote-debugging-pipe (fds 3/4)."""

    def __init__(self, binary: str, profile: Path) -> None:
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def fds() -> None:  # runs in the child: the protocol pipes become fds 3 and 4
            os.dup2(to_chrome_r, 3)
            os.dup2(from_chrome_w, 4)

        self.proc = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--hide-scrollbars",
             f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"],
            pass_fds=(3, 4), preexec_fn=fds, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buf = b""
        self._next = 0
        self.events: list[dict[str, Any]] = []

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_chrome], [], [], left)[0]:
                raise TimeoutError("chromium did not answer in time")
            chunk = os.read(self._from_chrome, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method: str, session: str | None = None, timeout: float = 30.0,
             **params: Any) -> dict[str, Any]:
        self._next += 1
        msg: dict[str, Any] = {"id": self._next, "method": method, "params": params}
        if session is not None:
            msg["sessionId"] = session
        os.write(self._to_chrome, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 30.0) -> dict[str, Any]:
        for i, ev in enumerate(self.events):
            if ev.get("method") == method:
                return self.events.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            ev = self._read(deadline)
            if ev.get("method") == method:
                return ev
            self.events.append(ev)

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=5.0)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        os.close(self._to_chrome)
        os.close(self._from_chrome)


def console_errors(events: list[dict[str, Any]]) -> list[str]:
    errors = []
    for ev in events:
        m, p = ev.get("method"), ev.get("params", {})
        if m == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            errors.append(f"{d.get('text', '')} {d.get('exception', {}).get('description', '')}"
                          [:300])
        elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            errors.append(json.dumps(p.get("args", []))[:300])
        elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            errors.append(p["entry"].get("text", "")[:300])
    return errors


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian: apt-get "
                    "install -y chromium); CI installs it, so this runs there")
def test_report_loads_in_a_headless_browser_without_errors_and_plots_render(
        quick_report, tmp_path: Path) -> None:
    out, _ = quick_report
    assert CHROMIUM is not None
    browser = DevTools(CHROMIUM, tmp_path / "profile")
    try:
        target = browser.call("Target.createTarget", url="about:blank")["targetId"]
        session = browser.call("Target.attachToTarget", targetId=target,
                               flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            browser.call(f"{domain}.enable", session)
        browser.call("Emulation.setDeviceMetricsOverride", session, width=1200, height=900,
                     deviceScaleFactor=1, mobile=False)
        browser.call("Page.navigate", session, url=(out / "index.html").resolve().as_uri())
        browser.wait_for("Page.loadEventFired", timeout=60.0)
        probe = ("JSON.stringify({svgs: [...document.querySelectorAll('.plot svg')].map(e => {"
                 "const r = e.getBoundingClientRect(); return [e.closest('.plot').id, "
                 "r.width, r.height, e.querySelectorAll('path, use, rect, text').length];}),"
                 "rows: document.querySelectorAll('#summary tr').length,"
                 "verdict: document.getElementById('verdict').innerText})")
        value = browser.call("Runtime.evaluate", session, expression=probe,
                             returnByValue=True)["result"]["value"]
        shot = browser.call("Page.captureScreenshot", session, format="png")["data"]
        errors = console_errors(browser.events)
    finally:
        browser.close()
    assert errors == [], errors
    found = json.loads(value)
    plots = {name: (w, h, marks) for name, w, h, marks in found["svgs"]}
    assert set(plots) == {"plot-profit", "plot-regret", "plot-regret_daily", "plot-budget",
                          "plot-mix", "plot-fairness", "plot-recommend",
                          "plot-tradeoff"}  # the profit / conversion / retention sweep
    for name, (w, h, marks) in plots.items():
        assert w > 200 and h > 100, (name, w, h)
        assert marks > 10, (name, marks)  # lines, bars and labels were drawn
    assert found["rows"] >= 10
    assert "best fixed offer" in found["verdict"]
    import matplotlib.image as mpimg

    img = mpimg.imread(io.BytesIO(base64.b64decode(shot)), format="png")
    assert img.shape[0] >= 800 and img.shape[1] >= 1100
    grey = img[..., :3].mean(axis=2)
    assert grey.std() > 0.05  # not a blank page
    assert (grey < 0.5).mean() > 0.01  # text and lines in dark ink


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian: apt-get "
                    "install -y chromium); CI installs it, so this runs there")
def test_the_browser_check_catches_errors_and_empty_plots(tmp_path: Path) -> None:
    """The harness above is only worth its pass if it can fail: a page with a script
    error, a console error and a plot of zero size must be caught."""
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><body><div class='plot' id='plot-x'>"
                    "<svg width='0' height='0'></svg></div>"
                    "<script>console.error('boom'); throw new Error('bang');</script>"
                    "</body></html>")
    assert CHROMIUM is not None
    browser = DevTools(CHROMIUM, tmp_path / "profile")
    try:
        target = browser.call("Target.createTarget", url="about:blank")["targetId"]
        session = browser.call("Target.attachToTarget", targetId=target,
                               flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            browser.call(f"{domain}.enable", session)
        browser.call("Page.navigate", session, url=page.as_uri())
        browser.wait_for("Page.loadEventFired", timeout=60.0)
        value = browser.call("Runtime.evaluate", session, returnByValue=True, expression=(
            "JSON.stringify([...document.querySelectorAll('.plot svg')].map(e => "
            "e.getBoundingClientRect().width))"))["result"]["value"]
        errors = console_errors(browser.events)
    finally:
        browser.close()
    assert any("boom" in e for e in errors), errors
    assert any("bang" in e for e in errors), errors
    assert json.loads(value) == [0]


# --- the A/B test in the quick run ---------------------------------------------------------

def test_quick_run_reports_the_ab_test(quick_report) -> None:
    out, printed = quick_report
    line = next(ln for ln in printed.splitlines() if ln.startswith("A/B test ("))
    assert "Treatment (LinTS + pacing)" in line and "against control (no discount)" in line
    assert "SRM check passed" in line
    page = (out / "index.html").read_text(encoding="utf-8")
    for anchor in ("<h2>A/B test</h2>", 'id="abtest-verdict"', 'id="abtest-assignment"',
                   'id="abtest-metrics"'):
        assert anchor in page, anchor
    ab = json.loads((out / "summary.json").read_text())["abtest"]
    assert ab["srm_mismatch"] is False and ab["srm_p_value"] > ab["srm_alpha"]
    assert [m["metric"] for m in ab["metrics"]] == ["converted", "revenue", "profit"]
    # The per-shopper table repeats the analysis (`promobandit abtest --log abtest.csv`).
    from promobandit.evaluate.abtest import analyse_experiment

    rep = analyse_experiment(out / "abtest.csv", n_bootstrap=0)
    assert rep.n_users == sum(ab["shoppers"])
    profit = next(m for m in rep.metrics if m.metric == "profit" and not m.cuped)
    assert profit.p_value == pytest.approx(ab["metrics"][2]["p_value"], rel=1e-9)
    assert profit.lift == pytest.approx(ab["metrics"][2]["lift"]["value"], rel=1e-9)
    # Each variant's engine logged its own decisions, and together every decision.
    rows = [DecisionLogWriter.read(out / "logs" / f).num_rows
            for f in ("abtest_control", "abtest_treatment")]
    assert rows == ab["decisions"]
    assert sum(rows) == json.loads((out / "summary.json").read_text())["decisions"]


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian: apt-get "
                    "install -y chromium); CI installs it, so this runs there")
def test_the_ab_section_renders_in_a_headless_browser(quick_report, tmp_path: Path) -> None:
    out, _ = quick_report
    assert CHROMIUM is not None
    browser = DevTools(CHROMIUM, tmp_path / "profile")
    try:
        target = browser.call("Target.createTarget", url="about:blank")["targetId"]
        session = browser.call("Target.attachToTarget", targetId=target,
                               flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            browser.call(f"{domain}.enable", session)
        browser.call("Page.navigate", session, url=(out / "index.html").resolve().as_uri())
        browser.wait_for("Page.loadEventFired", timeout=60.0)
        probe = ("JSON.stringify({rows: document.querySelectorAll('#abtest-metrics tr').length,"
                 "assigned: document.querySelectorAll('#abtest-assignment tr').length,"
                 "box: (r => [r.width, r.height])(document.getElementById('abtest-metrics')"
                 ".getBoundingClientRect()),"
                 "verdict: document.getElementById('abtest-verdict').innerText})")
        value = browser.call("Runtime.evaluate", session, expression=probe,
                             returnByValue=True)["result"]["value"]
        errors = console_errors(browser.events)
    finally:
        browser.close()
    assert errors == [], errors
    found = json.loads(value)
    assert found["rows"] == 4 and found["assigned"] == 3  # heads + 3 metrics / 2 variants
    assert found["box"][0] > 500 and found["box"][1] > 60
    assert found["verdict"].startswith("Treatment (LinTS + pacing)")
