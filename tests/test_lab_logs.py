"""The lab app logs what a real service logs, so the runbook's "review error logs" finds evidence.

Against the real lab (`drillkit lab up`): a rejected login and a rejected token are logged as
401 with the reason; a database that refuses the app's role shows up as 503 lines with the
database's own error; requests slowed by the DB proxy are logged with their duration. Nothing in
those lines names drillkit.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import psycopg
import pytest
import requests

from drillkit.signals import wait_until
from tests.test_lab_e2e import Lab, lab

pytestmark = pytest.mark.integration
__all__ = ["lab"]


def api_log(lab: Lab, name: str = "api-1") -> Path:
    return Path(lab.state.dir) / "logs" / f"{name}.log"


def wait_for_line(path: Path, needle: str, start: int, timeout: float = 20.0) -> str:
    """The first line containing `needle` written after byte `start`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with path.open("rb") as fh:
            fh.seek(start)
            for line in fh.read().decode(errors="replace").splitlines():
                if needle in line:
                    return line
        time.sleep(0.2)
    tail = path.read_text(errors="replace")[start:][-1500:]
    raise AssertionError(f"no line with {needle!r} in {path} within {timeout}s; tail:\n{tail}")


def test_401s_are_logged_with_the_reason(lab: Lab) -> None:
    log = api_log(lab)
    start = log.stat().st_size
    url = lab.state.urls["api-1"]
    r = requests.post(f"{url}/login", json={"user": "mallory", "password": "guess"}, timeout=2)
    assert r.status_code == 401
    line = wait_for_line(log, "401 POST /login user=mallory", start)
    assert "wrong password" in line and "chatbot.api WARNING" in line, line
    r = requests.post(f"{url}/chat", json={"message": "hi"}, headers={"Authorization": "Bearer abc.def.ghi"}, timeout=2)
    assert r.status_code == 401
    line = wait_for_line(log, "401 POST /chat: token rejected", start)
    assert "drillkit" not in line, line
    assert requests.post(f"{url}/chat", json={"message": "hi"}, timeout=2).status_code == 401
    wait_for_line(log, "401 POST /chat: no bearer token", start)


def test_slow_requests_are_logged_with_their_duration(lab: Lab) -> None:
    control = Path(lab.state.latency_file)
    original = control.read_bytes()
    logs = [api_log(lab, name) for name in lab.state.pid_files]
    starts = [p.stat().st_size for p in logs]
    try:
        control.write_text(json.dumps({"delay_ms": 200}))
        time.sleep(1.0)  # the proxy re-reads the control file every 200 ms; traffic does the rest
        lines = []
        for path, start in zip(logs, starts, strict=True):
            try:
                lines.append(wait_for_line(path, "slow request: ", start, timeout=15))
            except AssertionError:
                continue
        assert lines, "no replica logged a slow request while the DB proxy added 200 ms per chunk"
        ms = float(lines[0].rsplit(" took ", 1)[1].split()[0])
        assert ms >= 500, lines[0]
    finally:
        control.write_bytes(original)


def test_database_errors_are_logged(lab: Lab) -> None:
    """The app's role may no longer connect and its backends are terminated: the replicas'
    requests fail with 503, and the log says why, in the database's words."""
    logs = [api_log(lab, name) for name in lab.state.pid_files]
    starts = [p.stat().st_size for p in logs]
    with psycopg.connect(lab.state.dsn_admin, autocommit=True) as admin:
        try:
            admin.execute("ALTER ROLE chatbot CONNECTION LIMIT 0")
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE 'chatbot-%'"
            )
            found = []
            for path, start in zip(logs, starts, strict=True):
                try:
                    found.append(wait_for_line(path, "503 ", start, timeout=15))
                except AssertionError:
                    continue
            assert found, "no replica logged a 503 while the database refused its role"
            assert any("database" in line for line in found), found
            # the database's own words come when a replica next tries to connect (a request may
            # first time out waiting for the pool): wait for them, bounded
            words = ("too many connections for role", "terminating connection")

            def said() -> str:
                text = "".join(p.read_text(errors="replace")[s:] for p, s in zip(logs, starts, strict=True))
                return text if any(w in text for w in words) else ""

            assert wait_until(said, time.monotonic() + 20, 0.25), "no replica logged the database's refusal"
        finally:
            admin.execute("ALTER ROLE chatbot CONNECTION LIMIT -1")
    # and the app recovers once the role may connect again
    deadline = time.monotonic() + 30
    while requests.get(f"{lab.state.urls['api-1']}/readyz", timeout=3).status_code != 200:
        assert time.monotonic() < deadline, "api-1 not ready again after the role was allowed back"
        time.sleep(0.5)
