"""Issue 11, item 9: configuration from the environment, the warning about a missing API
key on a non-loopback address, and the app factory for ``uvicorn --factory``."""

from __future__ import annotations

import logging
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from promobandit.service.app import warn_if_unauthenticated
from promobandit.service.config import from_dict, is_loopback, load
from tests.test_service_support import PRIVACY_KEY, basket

ENV = {"PROMOBANDIT_PRIVACY_KEY": PRIVACY_KEY}


def test_every_key_can_come_from_the_environment(tmp_path: Path) -> None:
    env = {**ENV,
           "PROMOBANDIT_SERVER__PORT": "9123",
           "PROMOBANDIT_SERVER__API_KEY": "from-env-key",
           "PROMOBANDIT_LIMITS__MAX_ABS_FEATURE": "50.5",
           "PROMOBANDIT_STORAGE__DIR": "/data/state",
           "PROMOBANDIT_STORAGE__FSYNC": "false",
           "PROMOBANDIT_ENGINE__BUDGET__AMOUNT": "5000",
           "PROMOBANDIT_ENGINE__CONVERSION_PRIOR": "[2.0, 8.0]",
           "PROMOBANDIT_POLICY__SETTINGS__PROPENSITY_DRAWS": "40",
           "UNRELATED__THING": "x"}
    cfg = from_dict({"server": {"port": 8000}, "storage": {"fsync": True}}, environ=env)
    assert cfg.server.port == 9123 and cfg.server.api_key == "from-env-key"
    assert cfg.limits.max_abs_feature == 50.5
    assert cfg.storage.dir == "/data/state" and cfg.storage.fsync is False
    assert cfg.engine.budget is not None and cfg.engine.budget.amount == 5000.0
    assert tuple(cfg.engine.conversion_prior) == (2.0, 8.0)
    assert cfg.policy.settings["propensity_draws"] == 40


@pytest.mark.parametrize(("name", "value", "message"), [
    ("PROMOBANDIT_SERVER__PORTT", "1", r"^server\.portt: unknown key"),
    ("PROMOBANDIT_SERVER__PORT", "99999", r"^server\.port: expected a value in"),
    ("PROMOBANDIT_STORAGE__FSYNC", "maybe", r"^storage\.fsync: expected true or false"),
    ("PROMOBANDIT_SERVER____PORT", "1", r"^PROMOBANDIT_SERVER____PORT: expected"),
    ("PROMOBANDIT_SERVER__PORT__X", "1", r"^server\.port: expected an integer"),
])
def test_a_bad_environment_key_or_value_is_named(name: str, value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        from_dict({}, environ={**ENV, name: value})


def test_the_file_is_overridden_by_the_environment(tmp_path: Path) -> None:
    f = tmp_path / "service.toml"
    f.write_text('[server]\nport = 7000\n[storage]\ndir = "here"\n')
    assert load(f, environ=ENV).server.port == 7000
    cfg = load(f, environ={**ENV, "PROMOBANDIT_SERVER__PORT": "7001"})
    assert cfg.server.port == 7001 and cfg.storage.dir == str(tmp_path / "here")


def test_no_api_key_on_a_non_loopback_address_is_warned(caplog: pytest.LogCaptureFixture) -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3")
    with caplog.at_level(logging.WARNING, logger="promobandit.service"):
        assert not warn_if_unauthenticated("", "127.0.0.1")
        assert not warn_if_unauthenticated("a-key", "0.0.0.0")
        assert caplog.records == []
        assert warn_if_unauthenticated("", "0.0.0.0")
    assert "no API key is set" in caplog.records[0].getMessage()
    assert "0.0.0.0" in caplog.records[0].getMessage()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_uvicorn_runs_the_app_factory_from_the_environment(tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, **ENV, "PROMOBANDIT_STORAGE__DIR": str(tmp_path / "state"),
           "PROMOBANDIT_SERVER__API_KEY": "factory-key",
           "PROMOBANDIT_SERVER__LOG_LEVEL": "warning"}
    env.pop("PROMOBANDIT_CONFIG", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "promobandit.service.app:app_factory",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(url + "/readyz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "did not start"
            time.sleep(0.1)
        h = {"X-API-Key": "factory-key"}
        assert httpx.post(url + "/v1/decide", json={"user": "u", "basket": basket()}
                          ).status_code == 401  # the key from the environment is required
        d = httpx.post(url + "/v1/decide", json={"user": "u", "basket": basket()}, headers=h)
        assert d.status_code == 200 and re.fullmatch(r"[0-9a-f]{32}", d.json()["decision_id"])
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=60)
    # uvicorn re-raises the SIGTERM it handled once it has shut down gracefully.
    assert proc.returncode in (0, -15), err[-2000:]
    # The lifespan stopped the service cleanly: a final snapshot covers the decision.
    assert list((tmp_path / "state").glob("snapshot-*.snap"))
