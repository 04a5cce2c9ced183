"""End to end: every playbook incident drilled against the real lab, through the real CLI.

One lab (PostgreSQL, exporter, DB proxy, supervised API replicas, traffic, Alertmanager,
Prometheus) serves all five drills, run from a working directory holding `.drillkit/lab` — the
shipped `scenarios/lab/*.yaml` as they are: their `${lab.dir}` / `${lab.port.…}` variables find
this lab's ports (a free block, never the default one).
For each drill: the real alert fires and drillkit's `time_to_detect` equals Prometheus's own
record (the first raw `ALERTS{alertstate="firing"}` sample) within 5 ms; the system really was
harmed (evidence from the kernel, PostgreSQL, the processes and Prometheus) and really was
restored; the report carries the verdicts. `drillkit run` finds the lab's Prometheus and
Alertmanager from `.drillkit/lab/state.json` (no URL options given).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
import yaml

from drillkit.lab.layout import DEFAULT_BASE_PORT
from drillkit.lab.state import LabState, load_state
from drillkit.procs import alive
from drillkit.scenario import load_scenario
from tests.helpers import drillkit_cmd, run_cli
from tests.test_lab_up import free_block

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "scenarios" / "lab"


@dataclass
class Lab:
    work: Path  # the drills' working directory: holds .drillkit/lab, scenarios/, reports/
    state: LabState

    @property
    def prom(self) -> str:
        return self.state.urls["prometheus"]

    def replica_pids(self) -> dict[str, int | None]:
        return self.state.replica_pids()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    work = tmp_path_factory.mktemp("e2e")
    base = free_block()
    r = run_cli("lab", "up", "--base-port", str(base), cwd=work, timeout=180)
    state = load_state(work / ".drillkit" / "lab")
    try:
        assert r.returncode == 0 and state is not None, f"lab up failed:\n{r.stdout}\n{r.stderr}"
        yield Lab(work, state)
    finally:
        pids = [p.pid for p in state.procs.values()] if state else []
        pids += [p for p in state.replica_pids().values() if p] if state else []
        down = run_cli("lab", "down", "--purge", cwd=work, timeout=120)
        assert down.returncode == 0, down.stderr
        assert not [p for p in pids if alive(p)], "lab processes left behind"


# --- helpers ----------------------------------------------------------------------------------


def scenario_for(lab: Lab, name: str, **overrides: Any) -> Path:
    """The shipped scenario as it is (its `${lab.…}` variables find this lab's ports, which are
    not the default ones), with `overrides` applied."""
    text = (SCENARIOS / f"{name}.yaml").read_text()
    assert lab.state.base_port != DEFAULT_BASE_PORT, "the variables would go untested"
    data = yaml.safe_load(text)
    for dotted, value in overrides.items():
        *parents, key = dotted.split(".")
        node = data
        for p in parents:
            node = node.setdefault(p, {})
        node[key] = value
    path = lab.work / "scenarios" / f"{name}.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def query(lab: Lab, expr: str) -> list[dict[str, Any]]:
    r = requests.get(f"{lab.prom}/api/v1/query", params={"query": expr}, timeout=5)
    r.raise_for_status()
    return list(r.json()["data"]["result"])


def raw_samples(lab: Lab, selector: str, seconds: int = 300) -> list[tuple[dict[str, str], float, float]]:
    """(labels, timestamp, value) of every raw sample of `selector` in the last `seconds`."""
    res = query(lab, f"{selector}[{seconds}s]")
    return [(r["metric"], float(ts), float(v)) for r in res for ts, v in r["values"]]


def first_firing_sample(lab: Lab, alert: str, since: float) -> float:
    """Prometheus's own record of when the alert first fired: raw ALERTS samples."""
    stamps = [
        ts for _, ts, _ in raw_samples(lab, f'ALERTS{{alertname="{alert}",alertstate="firing"}}', 600) if ts >= since
    ]
    assert stamps, f"Prometheus has no firing sample of {alert} after {since}"
    return min(stamps)


def wait_steady(lab: Lab, path: Path, timeout: float = 120) -> None:
    """Until the scenario's probes hold and its alert is neither pending nor firing, so the
    drill is not refused for the previous drill's after-effects."""
    sc = load_scenario(path)
    deadline = time.monotonic() + timeout
    why = ""
    while time.monotonic() < deadline:
        why = ""
        for probe in sc.steady_state:
            res = query(lab, probe.expr)
            if not res or not all(probe.expect.holds(float(r["value"][1])) for r in res):
                why = f"{probe.name}: {res}"
                break
        if not why and query(lab, f'ALERTS{{alertname="{sc.detection.alert}"}}'):
            why = f"{sc.detection.alert} still active"
        if not why:
            return
        time.sleep(0.5)
    raise AssertionError(f"steady state of {path.name} not back within {timeout}s: {why}")


@dataclass
class Drill:
    rc: int
    stderr: str
    folder: Path
    report: dict[str, Any]

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.report["events"] if e["kind"] == kind]

    def event(self, kind: str) -> dict[str, Any]:
        found = self.events(kind)
        assert found, f"no {kind!r} event in {[e['kind'] for e in self.report['events']]}"
        return found[0]

    def at(self, kind: str) -> float:
        return ts(self.event(kind)["at"])

    def journal(self, kind: str) -> list[dict[str, Any]]:
        """Journal events (revert data lives only there, not in the shared report)."""
        lines = (self.folder / "journal.jsonl").read_text().splitlines()
        return [e for e in map(json.loads, filter(None, lines)) if e["kind"] == kind]


def ts(rfc: str) -> float:
    return datetime.fromisoformat(rfc.replace("Z", "+00:00")).timestamp()


def journal_kinds(journal: Path) -> list[str]:
    try:
        return [json.loads(line)["kind"] for line in journal.read_text().splitlines() if line.strip()]
    except (OSError, ValueError):
        return []


def run_drill(lab: Lab, path: Path, during: Callable[[Path], None] | None = None, timeout: float = 240) -> Drill:
    """`drillkit run` with no URL options, from the lab's working directory. `during(folder)`
    runs once the fault is injected, while the drill is still going."""
    reports = lab.work / "reports" / path.stem
    proc = subprocess.Popen(
        drillkit_cmd("run", str(path.relative_to(lab.work)), "--report-dir", str(reports.relative_to(lab.work))),
        cwd=lab.work,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        if during is not None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and proc.poll() is None:
                folders = list(reports.glob("*/journal.jsonl")) if reports.exists() else []
                if folders and "injected" in journal_kinds(folders[0]):
                    during(folders[0].parent)
                    break
                time.sleep(0.05)
            else:
                raise AssertionError(f"drill never reached injection: {proc.poll()}")
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    folder = reports / out.strip().splitlines()[-1].split("/")[-1] if out.strip() else None
    assert folder and (folder / "report.json").exists(), f"no report (exit {proc.returncode}):\n{err}"
    return Drill(proc.returncode, err, folder, json.loads((folder / "report.json").read_text()))


def check_drill(lab: Lab, name: str, d: Drill, alert: str) -> None:
    """The common contract: passed, Prometheus-timed detection, ack, recovery, revert, verify."""
    assert d.rc == 0 and d.report["status"] == "passed", f"exit {d.rc}, {d.report['status']}:\n{d.stderr}"
    injected = d.at("injected")
    reference = first_firing_sample(lab, alert, injected - 0.5) - injected
    measured = d.report["measures"]["time_to_detect"]
    assert abs(measured - reference) < 0.005, (
        f"{name}: time_to_detect {measured:.3f}s vs Prometheus's first firing sample - injected "
        f"{reference:.3f}s: off by {abs(measured - reference) * 1000:.0f} ms"
    )
    within = load_scenario(lab.work / "scenarios" / f"{name}.yaml").detection.within
    assert 0 < measured <= within, f"{name}: time_to_detect {measured:.2f}s outside (0, {within:g}s]"
    print(f"{name}: time_to_detect {measured:.2f}s (Prometheus: {reference:.2f}s, target {within:g}s)")
    assert d.event("detected")["alert"] == alert
    assert d.at("acknowledged") >= d.at("detected") - 0.001
    for kind in ("mitigated", "revert_done", "reverted", "resolved"):
        d.event(kind)
    assert not d.events("revert_failed"), d.events("revert_failed")
    verdicts = {v["target"]: v["met"] for v in d.report["verdicts"]}
    assert all(verdicts[t] is True for t in ("detect", "acknowledge", "mitigate", "resolve")), verdicts
    md = (d.folder / "report.md").read_text()
    assert "## Timeline" in md and f"`{alert}`" in md and "| met |" in md


# --- the five incidents -------------------------------------------------------------------------


def test_outage_all_replicas_hang(lab: Lab) -> None:
    path = scenario_for(lab, "outage")
    wait_steady(lab, path)
    before = lab.replica_pids()
    d = run_drill(lab, path)
    check_drill(lab, "outage", d, "ChatbotServiceDown")
    # harmed: Prometheus saw every replica down between injection and the revert
    window = (d.at("injected"), d.at("reverted"))
    down = {
        s[0]["instance"]
        for s in raw_samples(lab, 'up{job="chatbot-api"}')
        if window[0] <= s[1] <= window[1] and s[2] == 0
    }
    assert down == {f"127.0.0.1:{p}" for p in lab.state.ports.api}, f"instances seen down: {down}"
    continued = next(e for e in d.events("revert_done") if e["fault"] == "process-kill")["result"]
    assert continued["continued"], continued
    # restored: the same processes (resumed, not restarted), running again
    assert lab.replica_pids() == before, (before, lab.replica_pids())
    for pid in before.values():
        assert pid and Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in "RS"
    for name in lab.state.pid_files:
        assert requests.get(f"{lab.state.urls[name]}/healthz", timeout=2).status_code == 200


def test_high_latency(lab: Lab) -> None:
    path = scenario_for(lab, "high-latency")
    wait_steady(lab, path)
    control = Path(lab.state.latency_file)
    original = control.read_bytes()
    d = run_drill(lab, path)
    check_drill(lab, "high-latency", d, "ChatbotHighLatency")
    # harmed: the proxy really delayed, and users really waited (p95 from the app's histogram)
    window = (d.at("injected"), d.at("reverted"))
    delays = {v for _, t, v in raw_samples(lab, "chatbot_db_proxy_delay_ms") if window[0] <= t <= window[1]}
    assert 300 in delays, delays
    p95 = query(
        lab,
        "max_over_time(histogram_quantile(0.95, sum by (le) (rate("
        'chatbot_http_request_duration_seconds_bucket{job="chatbot-api",route="/chat"}[15s])))[2m:1s])',
    )
    assert float(p95[0]["value"][1]) > 0.5, p95
    # restored: control file as before, and a query through the proxy is fast again
    assert control.read_bytes() == original
    time.sleep(0.3)
    with psycopg.connect(lab.state.dsn) as conn:
        trips = []
        for _ in range(3):
            t0 = time.perf_counter()
            conn.execute("SELECT 1").fetchone()
            trips.append(time.perf_counter() - t0)
        assert min(trips) < 0.25, f"still slow after the revert (300 ms each way during it): {trips}"


def test_database_exhaustion_acknowledged_from_a_second_process(lab: Lab) -> None:
    path = scenario_for(lab, "database-exhaustion", **{"response.acknowledge": "command"})
    wait_steady(lab, path)
    seen: dict[str, Any] = {}

    def harm_then_ack(folder: Path) -> None:
        journal = folder / "journal.jsonl"
        deadline = time.monotonic() + 60
        while "detected" not in journal_kinds(journal):
            assert time.monotonic() < deadline, "not detected"
            time.sleep(0.05)
        # the app's role really cannot connect, and the slots really are all taken
        with pytest.raises(psycopg.OperationalError) as refused:
            psycopg.connect(lab.state.dsn_direct, connect_timeout=2).close()
        seen["refused"] = str(refused.value)
        with psycopg.connect(lab.state.dsn_admin) as conn:
            row = conn.execute(
                "SELECT count(*) FILTER (WHERE backend_type = 'client backend'),"
                " count(*) FILTER (WHERE application_name LIKE 'drillkit-%-hold'),"
                " current_setting('max_connections')::int - current_setting('superuser_reserved_connections')::int"
                " FROM pg_stat_activity"
            ).fetchone()
        seen["clients"], seen["held"], seen["limit"] = row
        run_id = folder.name.rsplit("-", 1)[1]
        ack = run_cli(
            "ack",
            run_id,
            "--by",
            "trainee",
            "--note",
            "pool exhausted",
            "--report-dir",
            str(folder.parent),
            cwd=lab.work,
        )
        assert ack.returncode == 0, ack.stderr
        seen["acked_at"] = time.time()

    d = run_drill(lab, path, during=harm_then_ack)
    check_drill(lab, "database-exhaustion", d, "ChatbotDatabaseConnectionsExhausted")
    assert "remaining connection slots are reserved" in seen["refused"], seen
    assert seen["clients"] >= seen["limit"] and seen["held"] > 0, seen
    ack = d.event("acknowledged")
    assert ack["by"] == "trainee" and ack["source"] == "command", ack
    assert d.at("acknowledged") <= seen["acked_at"] + 0.01
    assert d.report["measures"]["time_to_acknowledge"] > 0
    # restored: the holder's connections are gone, and the app's role can connect again
    with psycopg.connect(lab.state.dsn_admin) as conn:
        held = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'drillkit-%-hold'"
        ).fetchone()
    assert held == (0,), held
    psycopg.connect(lab.state.dsn_direct, connect_timeout=2).close()


def _oom_kills() -> int:
    for line in Path("/proc/vmstat").read_text().splitlines():
        if line.startswith("oom_kill "):
            return int(line.split()[1])
    raise AssertionError("no oom_kill counter in /proc/vmstat")


def test_memory_leak_oom_killed_and_restarted(lab: Lab) -> None:
    path = scenario_for(lab, "memory-leak")
    wait_steady(lab, path)
    victim = lab.replica_pids()["api-1"]
    kills_before = _oom_kills()
    d = run_drill(lab, path)
    check_drill(lab, "memory-leak", d, "ChatbotMemoryLeak")
    # harmed: the kernel OOM-killed exactly our replica inside the drill's cgroup
    data = [e["data"] for e in d.journal("revert_updated") if e["fault"] == "memory-pressure"][-1]
    assert data["pid"] == victim and data["oom_kill"] >= 1 and data["target_gone"], data
    assert _oom_kills() > kills_before, "kernel oom_kill counter did not move"
    log = (Path(lab.state.dir) / "logs" / "supervisor.log").read_text()
    assert f"api-1 (pid {victim}) killed by SIGKILL" in log, log[-600:]
    # restored: a new api-1 serves, and the drill's cgroup is gone
    new = lab.replica_pids()["api-1"]
    assert new and new != victim and alive(new)
    assert requests.get(f"{lab.state.urls['api-1']}/healthz", timeout=2).status_code == 200
    assert not Path(data["cgroup"]).exists(), data["cgroup"]


def _traffic(lab: Lab, outcome: str) -> float:
    body = requests.get(lab.state.urls["traffic_metrics"], timeout=2).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in body.splitlines()
        if line.startswith("chatbot_traffic_requests_total{") and f'outcome="{outcome}"' in line
    )


def test_auth_failures(lab: Lab) -> None:
    path = scenario_for(lab, "auth-failures")
    wait_steady(lab, path)
    secret = Path(lab.state.jwt_secret_file)
    digest = hashlib.sha256(secret.read_bytes()).hexdigest()
    rejected_before = _traffic(lab, "unauthorized")
    d = run_drill(lab, path)
    check_drill(lab, "auth-failures", d, "ChatbotAuthFailures")
    # harmed: users really got 401s
    rejected = _traffic(lab, "unauthorized") - rejected_before
    assert rejected >= 10, f"only {rejected} requests were rejected with 401"
    # restored: the very same secret, no backup left, and a token from one replica works on all
    assert hashlib.sha256(secret.read_bytes()).hexdigest() == digest
    assert not list(secret.parent.glob(f".{secret.name}.drillkit-backup-*"))
    urls = [lab.state.urls[name] for name in lab.state.pid_files]
    login = requests.post(f"{urls[0]}/login", json={"user": "e2e", "password": "drill"}, timeout=2)
    assert login.status_code == 200, login.text
    for url in urls:
        r = requests.post(
            f"{url}/chat",
            json={"message": "hi"},
            timeout=2,
            headers={"Authorization": f"Bearer {login.json()['token']}"},
        )
        assert r.status_code == 200, (url, r.status_code, r.text)
