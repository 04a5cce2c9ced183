"""drillkit benchmarks: each measures drillkit against a baseline measured in the same run and
reports the ratio, so the numbers mean the same on a fast laptop and a loaded CI machine.

Targets (ratio = drillkit / baseline, lower is better):
- scenario loading (located errors, typed dataclasses) vs plain `yaml.safe_load`: <= 4x
- journal append (JSON + flush + fsync per event) vs raw `write + fsync` of the same bytes: <= 3x
- `drillkit validate` start-up (a whole process) vs `python -c "import click, yaml"`: <= 4x
- report rendering of a 2,000-event journal (md+html+json+junit) vs `json.loads` of each line + `json.dumps`
  of the lot: <= 40x (templates are the work; this guards against quadratic blow-ups)
- peak memory rendering that journal: <= 64 MiB above the interpreter's baseline

Run: `.venv/bin/python benchmarks/run.py` (exit 1 if a target is missed).
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from drillkit.journal import Journal  # noqa: E402
from drillkit.report import render  # noqa: E402
from drillkit.scenario import load_scenario  # noqa: E402

SCENARIO = ROOT / "tests" / "data" / "exporter-kill.yaml"


def best(fn: Callable[[], object], repeat: int = 5) -> float:
    """Median of `repeat` timings, after one warm-up run."""
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench_loader() -> tuple[float, float]:
    text = SCENARIO.read_text()
    n = 200
    ours = best(lambda: [load_scenario(SCENARIO) for _ in range(n)])
    base = best(lambda: [yaml.safe_load(text) for _ in range(n)])
    return ours, base


def bench_journal(tmp: Path) -> tuple[float, float]:
    """Per-event cost on an open journal vs an open fd, in alternating rounds (fsync cost drifts)."""
    n, rounds = 100, 7
    journal = Journal(tmp / "ours.jsonl")
    line = (
        json.dumps(
            {
                "kind": "status_update",
                "at": "2026-11-29T09:30:00.000000Z",
                "mono": 1.0,
                "message": "update 100",
                "by": "bench",
            }
        )
        + "\n"
    ).encode()
    fd = os.open(tmp / "base.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    ours, base = [], []
    try:
        for _ in range(rounds):
            t = time.perf_counter()
            for i in range(n):
                journal.append("status_update", message=f"update {i}", by="bench")
            ours.append(time.perf_counter() - t)
            t = time.perf_counter()
            for _ in range(n):
                os.write(fd, line)
                os.fsync(fd)
            base.append(time.perf_counter() - t)
    finally:
        journal.close()
        os.close(fd)
    return statistics.median(ours), statistics.median(base)


def bench_startup() -> tuple[float, float]:
    exe = ROOT / ".venv" / "bin" / "drillkit"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "drillkit.cli"]
    ours = best(lambda: subprocess.run([*cmd, "validate", str(SCENARIO)], capture_output=True, check=True))
    base = best(lambda: subprocess.run([sys.executable, "-c", "import click, yaml"], capture_output=True, check=True))
    return ours, base


def big_journal(folder: Path, events: int) -> None:
    from tests.test_policy_journal_report import fixed_journal

    fixed_journal(folder, datetime(2026, 11, 29, 9, 30, tzinfo=UTC))
    lines = (folder / "journal.jsonl").read_text().splitlines()
    t0 = datetime(2026, 11, 29, 9, 30, tzinfo=UTC)
    extra = []
    for i in range(events):
        at = (t0 + timedelta(seconds=3 + i * 0.001)).isoformat().replace("+00:00", "Z")
        extra.append(
            json.dumps({"kind": "status_update", "at": at, "mono": 1003 + i * 0.001, "message": f"update {i}"})
        )
    (folder / "journal.jsonl").write_text("\n".join([*lines[:-1], *extra, lines[-1]]) + "\n")


def bench_report(tmp: Path) -> tuple[float, float, float]:
    folder = tmp / "run"
    big_journal(folder, 2000)
    text = (folder / "journal.jsonl").read_text()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    ours = best(lambda: render(folder, ("md", "html", "json", "junit")), 3)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    base = best(lambda: json.dumps([json.loads(x) for x in text.splitlines()]), 3)
    return ours, base, peak_kib / 1024


def main() -> int:
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        o, b = bench_loader()
        results.append(("scenario loading vs yaml.safe_load", o, b, 4.0))
        o, b = bench_journal(t)
        results.append(("journal append (fsync) vs raw write+fsync", o, b, 3.0))
        o, b = bench_startup()
        results.append(("`drillkit validate` process vs python + click + yaml import", o, b, 4.0))
        o, b, mib = bench_report(t)
        results.append(("report render (2,000 events) vs json round trip", o, b, 40.0))
    failed = 0
    for name, ours, base, target in results:
        ratio = ours / base
        ok = ratio <= target
        failed += not ok
        print(
            f"{'ok  ' if ok else 'MISS'} {name}: {ours * 1000:.1f} ms vs {base * 1000:.1f} ms = {ratio:.2f}x "
            f"(target <= {target:g}x)"
        )
    mem_ok = mib <= 64
    failed += not mem_ok
    print(f"{'ok  ' if mem_ok else 'MISS'} report render peak memory: +{mib:.1f} MiB (target <= 64 MiB)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
