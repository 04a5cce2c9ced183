"""A missed detection is explained, per kind, on a real Prometheus: "no series", "condition
never true", "pending N s then dropped", "fired after the target"; the report says which and
its action item follows from it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from drillkit.lab.services import PrometheusSetup, Service, free_port, start_prometheus
from tests.helpers import report_json, run_cli, run_folder, write_scenario

pytestmark = pytest.mark.integration
HERE = Path(__file__).parent


@dataclass
class Miss:
    prom: Service
    flappy: tuple[int, Path]  # an exporter a shell loop restarts 2 s after it dies
    steady: tuple[int, Path]  # an exporter that stays down until the revert restarts it

    def up(self, port: int) -> bool:
        q = f'up{{instance="127.0.0.1:{port}"}} == 1'
        r = requests.get(f"{self.prom.url}/api/v1/query", params={"query": q}, timeout=5)
        return bool(r.json()["data"]["result"])


def exporter(port: int, pidfile: Path) -> list[str]:
    return [sys.executable, str(HERE / "fake_exporter.py"), str(port), str(pidfile)]


@pytest.fixture(scope="module")
def miss(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Miss]:
    work = tmp_path_factory.mktemp("miss")
    flappy, steady = (free_port(), work / "flappy.pid"), (free_port(), work / "steady.pid")
    fl, st = f"127.0.0.1:{flappy[0]}", f"127.0.0.1:{steady[0]}"
    (work / "rules.yml").write_text(
        f"""
groups:
  - name: miss
    interval: 1s
    rules:
      - alert: MissNoSeries
        expr: sum by (job) (rate(miss_requests_failed_total[10s])) > 0
        for: 1s
      - alert: MissNeverTrue
        expr: up{{instance="{st}"}} == 42
        for: 1s
      - alert: MissFlaps
        expr: up{{instance="{fl}"}} == 0
        for: 15s
      - alert: MissSlow
        expr: up{{instance="{st}"}} == 0
        for: 5s
"""
    )
    loop = " ".join(f"'{a}'" for a in exporter(*flappy))
    looped = subprocess.Popen(["sh", "-c", f"while :; do {loop}; sleep 2; done"], start_new_session=True)
    plain = subprocess.Popen(exporter(*steady), start_new_session=True)
    prom = start_prometheus(
        work / "prometheus", PrometheusSetup(scrape={"miss": [fl, st]}, rule_files=[work / "rules.yml"])
    )
    env = Miss(prom, flappy, steady)
    try:
        deadline = time.monotonic() + 30
        while not (env.up(flappy[0]) and env.up(steady[0])):
            assert time.monotonic() < deadline, "the exporters never came up in Prometheus"
            time.sleep(0.3)
        yield env
    finally:
        prom.stop()
        os.killpg(looped.pid, signal.SIGKILL)
        looped.wait()
        plain.kill()
        plain.wait()
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(steady[1].read_text()), signal.SIGKILL)


def drill(env: Miss, tmp_path: Path, alert: str, victim: tuple[int, Path], within: str, back: str) -> dict[str, Any]:
    port, pidfile = victim
    deadline = time.monotonic() + 30
    while not env.up(port):  # the previous drill's victim is back
        assert time.monotonic() < deadline
        time.sleep(0.3)
    data = {
        "name": "miss",
        "title": "Exporter killed",
        "severity": "P2",
        "target": {"local": {}},
        "steady_state": [{"name": "up", "expr": f'up{{instance="127.0.0.1:{port}"}}', "expect": "== 1"}],
        "faults": [
            {"kind": "process-kill", "pidfile": str(pidfile), "restart": exporter(*victim), "back_within": back}
        ],
        "detection": {"alert": alert, "within": within},
        "recovery": {"action": "revert", "within": "30s", "verify_within": "20s"},
    }
    path = write_scenario(tmp_path / "miss.yaml", data)
    reports = tmp_path / "reports"
    r = run_cli("run", str(path), "--prometheus-url", env.prom.url, "--report-dir", str(reports), timeout=120)
    assert r.returncode == 1, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    folder = run_folder(reports)
    md = (folder / "report.md").read_text().replace("\\", "")  # markdown escapes: miss\\_requests
    return {"json": report_json(folder), "md": md, "stderr": r.stderr}


CASES = [
    ("MissNoSeries", "steady", "3s", "0s", "no series", "Why the alert missed: no series: miss_requests_failed_total"),
    ("MissNeverTrue", "steady", "3s", "0s", "condition never true", "Why the alert missed: condition never true"),
    ("MissFlaps", "flappy", "9s", "5s", "pending then dropped", "then dropped (1 episode(s)), short of its for: 15.0s"),
    ("MissSlow", "steady", "3s", "7s", "fired after the target", "Why the alert missed: fired after the target"),
]
ACTIONS = {
    "no series": "No threshold or `for:` change can make it fire",
    "condition never true": "compare its threshold with what the fault did",
    "pending then dropped": "shorten `for:`",
    "fired after the target": "or agree a detection target above",
}


@pytest.mark.parametrize(("alert", "victim", "within", "back", "cause", "said"), CASES, ids=[c[4] for c in CASES])
def test_a_miss_says_why_and_the_action_follows(
    miss: Miss, tmp_path: Path, alert: str, victim: str, within: str, back: str, cause: str, said: str
) -> None:
    out = drill(miss, tmp_path, alert, miss.flappy if victim == "flappy" else miss.steady, within, back)
    events = out["json"]["events"]
    missed = next(e for e in events if e["kind"] == "detection_missed")
    if cause == "fired after the target":
        assert any(e["kind"] == "detected_late" for e in events), [e["kind"] for e in events]
    else:
        assert missed["cause"] == cause, missed
    if cause == "pending then dropped":
        dropped = [e for e in events if e["kind"] == "alert_pending" and e.get("fired") is False]
        assert len(dropped) == 1 and dropped[0]["until"] > dropped[0]["at"], dropped
    assert said in out["md"], f"{said!r} not in the report:\n{out['md']}"
    items = out["md"][out["md"].index("Action") :]
    assert ACTIONS[cause] in items, f"the action item does not follow from {cause}:\n{items}"
