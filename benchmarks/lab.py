"""The lab benchmarks of issue 12, each with a baseline measured in the same run:
- `drillkit lab up` time vs PostgreSQL alone created (`initdb`) and started (the lab's slowest
  component), interleaved round by round;
- the five playbook drills (scenarios/lab/, shipped files) run for real against that lab, each
  through a request-counting proxy in front of its Prometheus and under a parent that reads the
  drill's peak RSS (and the largest in its process tree, the faults' helper processes included):
  peak RSS vs a bare Python importing the libraries drillkit's CLI loads,
  Prometheus requests per second of the drill, and time to detect vs Prometheus's own record
  (the first raw `ALERTS{alertstate="firing"}` sample after the `injected` stamp).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BASE_PORT = 24090  # below the ephemeral range, away from the default lab and the tests' blocks
DRILLS = ("outage", "high-latency", "database-exhaustion", "memory-leak", "auth-failures")
# Runs argv; prints (KiB) the command's own peak RSS (its VmHWM, read every 10 ms until it exits)
# and the largest peak in its whole process tree (helpers it started included).
PEAK = """
import resource, subprocess, sys, time
p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
own = 0
while p.poll() is None:
    try:
        with open(f"/proc/{p.pid}/status") as f:
            own = max([own] + [int(x.split()[1]) for x in f if x.startswith("VmHWM:")])
    except OSError:
        pass
    time.sleep(0.01)
print(own, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""
MB = 1000 * 1000 / 1024  # KiB per MB


def _peak_kib(argv: list[str], cwd: Path) -> tuple[int, int]:
    """(the process's own peak RSS, the largest in its process tree), KiB."""
    out = subprocess.run([sys.executable, "-c", PEAK, *argv], cwd=cwd, capture_output=True, text=True, check=True)
    own, tree = out.stdout.split()
    return int(own), int(tree)


def _postgres_alone(folder: Path) -> float:
    """Seconds to `initdb` and start PostgreSQL to accepting connections: the lab's slowest
    component (Prometheus alone is ready in ~0.1 s), which `lab up` cannot beat."""
    from tests.pgutil import start_postgres

    folder.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    pg = start_postgres(folder, BASE_PORT + 50)
    try:
        return time.perf_counter() - t
    finally:
        pg.stop()
        pg.destroy()


def _lab(work: Path, *args: str) -> None:
    drillkit = str(ROOT / ".venv" / "bin" / "drillkit")
    subprocess.run([drillkit, "lab", *args], cwd=work, check=True, capture_output=True, timeout=300)


def _drill(lab: Any, name: str, reports: Path) -> dict[str, float]:
    """One shipped drill, for real: its peak RSS (MB), Prometheus requests per second, and
    detection error (ms) against Prometheus's raw samples."""
    from tests.test_lab_e2e import first_firing_sample, scenario_for, ts, wait_steady
    from tests.test_prometheus_load import counting_proxy

    path = scenario_for(lab, name)
    wait_steady(lab, path, timeout=180)
    folder = reports / name
    with counting_proxy(lab.prom) as (url, seen):
        argv = [str(ROOT / ".venv" / "bin" / "drillkit"), "run", str(path), "--prometheus-url", url]
        own, tree = _peak_kib([*argv, "--report-dir", str(folder)], lab.work)
        requests = len(seen)
    (run,) = folder.iterdir()
    report = json.loads((run / "report.json").read_text())
    if report["status"] != "passed":
        raise RuntimeError(f"{name}: the drill {report['status']}: see {run}")
    events = {e["kind"]: e for e in reversed(report["events"])}
    injected = ts(events["injected"]["at"])
    reference = first_firing_sample(lab, events["detected"]["alert"], injected - 0.5) - injected
    return {
        "drill_mb": own / MB,
        "tree_mb": tree / MB,
        "requests_per_s": requests / (ts(events["finished"]["at"]) - ts(report["started_at"])),
        "detect_error_ms": abs(report["measures"]["time_to_detect"] - reference) * 1000,
    }


def bench_lab(rounds: int = 3) -> dict[str, Any]:
    from drillkit.lab.state import load_state
    from tests.test_lab_e2e import Lab

    out: dict[str, Any] = {
        k: [] for k in ("lab_up", "postgres_alone", "drill_mb", "tree_mb", "requests_per_s", "bare_mb")
    }
    out["detect_error_ms"] = []
    out["notes"] = []
    with TemporaryDirectory() as tmp:
        work = Path(tmp)
        for r in range(rounds):
            out["postgres_alone"].append(_postgres_alone(work / f"pg-alone-{r}"))
            t = time.perf_counter()
            _lab(work, "up", "--base-port", str(BASE_PORT))
            out["lab_up"].append(time.perf_counter() - t)
            if r < rounds - 1:
                _lab(work, "down", "--purge")
        state = load_state(work / ".drillkit" / "lab")
        assert state is not None
        try:
            lab = Lab(work, state)
            for name in DRILLS:
                d = _drill(lab, name, work / "reports")
                for key, value in d.items():
                    out[key].append(value)
                out["notes"].append(
                    f"{name}: peak RSS {d['drill_mb']:.1f} MB (largest process of the drill's tree, its "
                    f"helpers included: {d['tree_mb']:.1f} MB), {d['requests_per_s']:.2f} Prometheus requests/s, "
                    f"time to detect off Prometheus's record by {d['detect_error_ms']:.2f} ms"
                )
                bare = [sys.executable, "-c", "import click, yaml, requests, jinja2"]
                out["bare_mb"].append(_peak_kib(bare, work)[0] / MB)
        finally:
            _lab(work, "down", "--purge")
    return out
