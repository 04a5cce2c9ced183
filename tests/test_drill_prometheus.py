"""Integration: real drills against a real Prometheus and a real exporter process."""

from __future__ import annotations

import json
import re
import signal
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.helpers import drill_process, report_json, run_cli, run_folder, wait_for_event, write_scenario
from tests.promfixture import PromEnv

pytestmark = pytest.mark.integration


def scenario(env: PromEnv, alert: str, within: str = "30s", ack: str = "auto") -> dict[str, Any]:
    return {
        "name": "exporter-kill",
        "title": "Demo exporter killed",
        "incident": "service-outage",
        "severity": "P2",
        "description": "The demo exporter process is killed; Prometheus must page.",
        "target": {"local": {}},
        "steady_state": [{"name": "exporter up", "expr": 'up{job="demo"}', "expect": "== 1"}],
        "faults": [
            {"kind": "process-kill", "pidfile": str(env.pidfile), "restart": env.restart_command(), "back_within": "1s"}
        ],
        "detection": {"alert": alert, "within": within},
        "response": {"acknowledge": ack},
        "recovery": {"action": "revert", "within": "60s", "verify_within": "30s"},
    }


def first_firing_sample(env: PromEnv, alert: str, since: float) -> float:
    """Prometheus's own record of when the alert first fired: raw ALERTS samples."""
    q = f'ALERTS{{alertname="{alert}",alertstate="firing"}}[10m]'
    res = requests.get(f"{env.url}/api/v1/query", params={"query": q}, timeout=5).json()["data"]["result"]
    stamps = [float(ts) for r in res for ts, _ in r["values"] if float(ts) >= since]
    assert stamps, f"Prometheus has no firing sample of {alert} after {since}: {res}"
    return min(stamps)


def event(report: dict[str, Any], kind: str) -> dict[str, Any]:
    found = [e for e in report["events"] if e["kind"] == kind]
    assert found, f"no {kind!r} event in {[e['kind'] for e in report['events']]}"
    return found[0]


def ts(rfc: str) -> float:
    return datetime.fromisoformat(rfc.replace("Z", "+00:00")).timestamp()


def test_exporter_kill_detected_with_prometheus_timing(prom_env: PromEnv, tmp_path: Path) -> None:
    prom_env.ensure_exporter()
    prom_env.wait_up()
    old_pid = prom_env.exporter_pid()
    path = write_scenario(tmp_path / "drill.yaml", scenario(prom_env, "DemoExporterDown"))
    reports = tmp_path / "reports"
    r = run_cli("run", str(path), "--prometheus-url", prom_env.url, "--report-dir", str(reports))
    assert r.returncode == 0, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    assert re.search(r"^  met +Time to detect \(DemoExporterDown", r.stderr, re.M), r.stderr  # CI log summary
    folder = run_folder(reports)
    rep = report_json(folder)
    assert rep["status"] == "passed", rep
    injected = ts(event(rep, "injected")["at"])
    reference = first_firing_sample(prom_env, "DemoExporterDown", injected - 0.5)
    expected = reference - injected
    measured = rep["measures"]["time_to_detect"]
    assert abs(measured - expected) < 0.05, (
        f"time_to_detect {measured:.3f}s differs from Prometheus's firing time - injected "
        f"{expected:.3f}s by {abs(measured - expected) * 1000:.0f} ms"
    )
    assert 2.0 <= measured < 6, f"alert has for: 2s at 1 s intervals; measured {measured}"
    # The revert restarted the exporter: a new live pid.
    new_pid = prom_env.exporter_pid()
    assert new_pid != old_pid and Path(f"/proc/{new_pid}").exists(), (old_pid, new_pid)
    done = event(rep, "revert_done")
    assert done["result"]["restarted"] == [new_pid] or new_pid in done["result"]["back"], done
    md = (folder / "report.md").read_text()
    for section in (
        "# Incident Post-Mortem: Demo exporter killed",
        "## Overview",
        "## Timeline",
        "## Root Cause",
        "## Detection",
        "## Resolution",
        "## What Went Well",
        "## What Went Wrong",
        "## Action Items",
        "- Severity: P2",
    ):
        assert section in md, f"report.md lacks {section!r}:\n{md}"
    for name in ("report.html", "junit.xml", "journal.jsonl"):
        assert (folder / name).stat().st_size > 0, name
    verdicts = {v["target"]: v for v in rep["verdicts"]}
    assert verdicts["detect"]["met"] is True
    assert verdicts["detect"]["actual_seconds"] == pytest.approx(measured, abs=1e-5)
    assert rep["measures"]["time_to_resolve"] > rep["measures"]["time_to_detect"]


def test_alert_that_never_fires_fails_and_reverts(prom_env: PromEnv, tmp_path: Path) -> None:
    prom_env.ensure_exporter()
    prom_env.wait_up()
    old_pid = prom_env.exporter_pid()
    path = write_scenario(tmp_path / "drill.yaml", scenario(prom_env, "DemoNeverFires", within="4s"))
    reports = tmp_path / "reports"
    r = run_cli("run", str(path), "--prometheus-url", prom_env.url, "--report-dir", str(reports))
    assert r.returncode == 1, f"exit {r.returncode}\n{r.stderr}"
    rep = report_json(run_folder(reports))
    assert rep["status"] == "failed"
    detect = next(v for v in rep["verdicts"] if v["target"] == "detect")
    assert detect["met"] is False and detect["actual_seconds"] is None, detect
    event(rep, "revert_done")
    new_pid = prom_env.exporter_pid()
    assert new_pid != old_pid and Path(f"/proc/{new_pid}").exists()
    junit = (run_folder(reports) / "junit.xml").read_text()
    assert 'name="detect"' in junit and "<failure" in junit, junit


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_during_detect_reverts_and_exits_130(prom_env: PromEnv, tmp_path: Path, sig: signal.Signals) -> None:
    prom_env.ensure_exporter()
    prom_env.wait_up()
    old_pid = prom_env.exporter_pid()
    path = write_scenario(tmp_path / "drill.yaml", scenario(prom_env, "DemoSlowToFire", within="90s"))
    reports = tmp_path / "reports"
    with drill_process("run", str(path), "--prometheus-url", prom_env.url, "--report-dir", str(reports)) as proc:
        journal = wait_for_event(reports, "injected", 30)
        time.sleep(1.0)  # well inside the detect phase (the alert needs 60 s)
        proc.send_signal(sig)
        _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, f"exit {proc.returncode}\n{err}"
    kinds = [json.loads(line)["kind"] for line in journal.read_text().splitlines()]
    assert "aborted" in kinds and "revert_done" in kinds and kinds[-1] == "finished", kinds
    assert kinds.index("aborted") < kinds.index("revert_done")
    rep = report_json(journal.parent)
    assert rep["status"] == "aborted", rep["status"]
    new_pid = prom_env.exporter_pid()
    assert new_pid != old_pid and Path(f"/proc/{new_pid}").exists(), "exporter not restarted by revert"
