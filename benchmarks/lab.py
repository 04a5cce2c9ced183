"""The lab benchmarks of issue 12: `drillkit lab up` time, and the peak RSS of a real
`drillkit run` (the outage drill) against it, each with a baseline measured in the same run:
Prometheus alone started and ready (the slowest component of the lab), and a bare Python
process importing the libraries drillkit's CLI loads (click, yaml, requests, jinja2).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASE_PORT = 24090  # below the ephemeral range, away from the default lab and the tests' blocks
PEAK = (
    "import resource, subprocess, sys\n"
    "subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"  # KiB, of the one child
)


def _peak_kib(argv: list[str], env: dict[str, str], cwd: Path) -> int:
    out = subprocess.run([sys.executable, "-c", PEAK, *argv], env=env, cwd=cwd, capture_output=True, text=True)
    return int(out.stdout.strip())


def _prometheus_alone(tmp: Path) -> float:
    """Seconds from starting Prometheus (the lab's config shape, 1 s intervals) to /-/ready."""
    from drillkit.lab.services import PrometheusSetup, start_prometheus

    t = time.perf_counter()
    service = start_prometheus(tmp / "prom-alone", PrometheusSetup(), BASE_PORT + 50)
    try:
        return time.perf_counter() - t
    finally:
        service.stop()


def bench_lab() -> dict[str, float]:
    drillkit = str(ROOT / ".venv" / "bin" / "drillkit")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        env = {**os.environ, "DRILLKIT_LAB_DIR": str(work / "lab")}
        t = time.perf_counter()
        subprocess.run(
            [drillkit, "lab", "up", "--base-port", str(BASE_PORT)], env=env, cwd=work, check=True, capture_output=True
        )
        up = time.perf_counter() - t
        try:
            time.sleep(5)  # let rate() windows fill so the drill's steady state holds
            scenario = str(ROOT / "scenarios" / "lab" / "outage.yaml")
            drill = _peak_kib([drillkit, "run", scenario, "--report-dir", str(work / "reports")], env, work)
            bare = _peak_kib([sys.executable, "-c", "import click, yaml, requests, jinja2"], env, work)
        finally:
            subprocess.run([drillkit, "lab", "down", "--purge"], env=env, cwd=work, capture_output=True)
        alone = _prometheus_alone(work)
    return {"lab_up": up, "prometheus_alone": alone, "drill_rss_mib": drill / 1024, "bare_rss_mib": bare / 1024}
