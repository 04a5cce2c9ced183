"""drillkit benchmarks: each measures drillkit against a baseline measured in the same run and
reports the ratio, so the numbers mean the same on a fast laptop and a loaded CI machine.

Targets (ratio = drillkit / baseline, lower is better):
- validating 1,000 scenario files (located errors, variables, typed dataclasses): < 1 s, and
  the ratio to libyaml's plain compose of the same files (the parser alone, no types)
- journal append (JSON + flush + fsync per event) vs raw `write + fsync` of the same bytes: <= 3x
- `drillkit validate one.yaml` and `drillkit --help` (whole processes) vs Chaos Toolkit's
  `chaos validate` of the equivalent experiment (benchmarks/peer/) and `chaos --help`: <= 1/3,
  run interleaved. Chaos Toolkit is installed into its own venv ($DRILLKIT_BENCH_CTK, default
  /tmp/drillkit-bench-ctk), never into drillkit's; without it, `python -c "import click, yaml"`
- pod-kill of 1,000 pods against the Kubernetes API test server (benchmarks/podkill.py): < 5 s
  from inject start to every delete accepted, <= 1.1 requests per pod; ratio to the same
  deletes sent one by one with the plain client
- report rendering of a 2,000-event journal (md+html+json+junit) vs `json.loads` of each line + `json.dumps`
  of the lot: <= 40x (templates are the work; this guards against quadratic blow-ups)
- peak memory rendering that journal: <= 64 MiB above the interpreter's baseline
- `drillkit lab up` (benchmarks/lab.py): < 10 s; ratio to Prometheus alone started and ready
- peak RSS of a real `drillkit run` (the outage drill against that lab): < 50 MB; ratio to a
  bare Python importing click, yaml, requests and jinja2

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


def scenario_files(folder: Path, n: int = 1000) -> list[Path]:
    """`n` copies of the shipped scenarios (lab and Kubernetes, with variables) in `folder`."""
    shipped = sorted((ROOT / "scenarios").rglob("*.yaml"))
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        target = folder / f"s{i:04d}.yaml"
        target.write_bytes(shipped[i % len(shipped)].read_bytes())
        out.append(target)
    return out


def bench_loader(tmp: Path) -> tuple[float, float]:
    files = scenario_files(tmp / "scenarios")
    texts = [f.read_text() for f in files]
    ours = best(lambda: [load_scenario(f) for f in files], 3)
    base = best(lambda: [yaml.compose(t, Loader=yaml.CSafeLoader) for t in texts], 3)
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


def chaostoolkit() -> Path | None:
    """The `chaos` command of a Chaos Toolkit in its own venv (created once), or None."""
    venv = Path(os.environ.get("DRILLKIT_BENCH_CTK", "/tmp/drillkit-bench-ctk"))
    chaos = venv / "bin" / "chaos"
    if not chaos.exists():
        try:
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
            subprocess.run([venv / "bin" / "pip", "install", "-q", "chaostoolkit"], check=True, capture_output=True)
        except (OSError, subprocess.CalledProcessError):
            return None
    return chaos if chaos.exists() else None


def bench_startup(rounds: int = 15) -> dict[str, tuple[float, float, float]]:
    """Median and spread (min, max) of whole processes, run interleaved round by round."""
    exe = ROOT / ".venv" / "bin" / "drillkit"
    ours = [str(exe)] if exe.exists() else [sys.executable, "-m", "drillkit.cli"]
    chaos = chaostoolkit()
    peer = ROOT / "benchmarks" / "peer" / "outage-experiment.yaml"
    cmds = {
        "drillkit validate": [*ours, "validate", str(ROOT / "scenarios" / "lab" / "outage.yaml")],
        "drillkit --help": [*ours, "--help"],
    }
    if chaos is not None:
        cmds["chaos validate"] = [str(chaos), "--no-log-file", "validate", str(peer)]
        cmds["chaos --help"] = [str(chaos), "--help"]
    else:
        cmds["python + click + yaml"] = [sys.executable, "-c", "import click, yaml"]
    times: dict[str, list[float]] = {k: [] for k in cmds}
    with tempfile.TemporaryDirectory() as cwd:  # chaos writes chaostoolkit.log into its cwd
        for _ in range(rounds):
            for name, cmd in cmds.items():
                t = time.perf_counter()
                subprocess.run(cmd, capture_output=True, check=True, cwd=cwd)
                times[name].append(time.perf_counter() - t)
    return {k: (statistics.median(v), min(v), max(v)) for k, v in times.items()}


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
    from benchmarks.lab import bench_lab
    from benchmarks.podkill import bench_pod_kill

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        o, b = bench_loader(t)
        loader_s = o
        results.append(("validating 1,000 scenario files vs libyaml's compose of them", o, b, None))
        o, b = bench_journal(t)
        results.append(("journal append (fsync) vs raw write+fsync", o, b, 3.0))
        startup = bench_startup()
        for cmd, peer in (("validate", "chaos validate"), ("--help", "chaos --help")):
            base = startup.get(peer) or startup["python + click + yaml"]
            name = peer if peer in startup else "python + click + yaml"
            results.append((f"`drillkit {cmd}` process vs `{name}`", startup[f"drillkit {cmd}"][0], base[0], 1 / 3))
        o, b, mib = bench_report(t)
        results.append(("report render (2,000 events) vs json round trip", o, b, 40.0))
    pods = bench_pod_kill()
    results.append(("pod-kill of 1,000 pods vs the same deletes one by one", pods["ours"], pods["base"], None))
    lab = bench_lab()
    results.append(("`drillkit lab up` vs Prometheus alone", lab["lab_up"], lab["prometheus_alone"], None))
    results.append(
        ("`drillkit run` peak RSS vs bare python + its libraries", lab["drill_rss_mib"], lab["bare_rss_mib"], None)
    )
    failed = 0
    for name, ours, base, target in results:
        ratio = ours / base
        ok = target is None or ratio <= target
        failed += not ok
        goal = f"(target <= {target:.2f}x)" if target else ""
        print(f"{'ok  ' if ok else 'MISS'} {name}: {ours * 1000:.1f} ms vs {base * 1000:.1f} ms = {ratio:.2f}x {goal}")
    rss, bare = lab["drill_rss_mib"], lab["bare_rss_mib"]
    print(f"     `drillkit run` peak RSS vs bare python + libraries: {rss:.0f} vs {bare:.0f} MiB = {rss / bare:.2f}x")
    for name, (median, low, high) in startup.items():
        print(f"     {name}: median {median * 1000:.0f} ms (min {low * 1000:.0f}, max {high * 1000:.0f})")
    absolute = [
        ("validating 1,000 scenario files", loader_s, "s", 1.0),
        ("pod-kill of 1,000 pods, inject start to every delete accepted", pods["ours"], "s", 5.0),
        ("pod-kill API requests per pod", pods["requests_per_pod"], "", 1.1),
        ("pod-kill first delete accepted (`injected`) after inject start", pods["first_harm"], "s", 1.0),
        ("pod-kill journal bytes per pod", pods["journal_bytes"] / 1000, "B", 250.0),
        ("report render peak memory above the interpreter's", mib, "MiB", 64.0),
        ("`drillkit lab up`", lab["lab_up"], "s", 10.0),
        ("`drillkit run` (outage drill) peak RSS", lab["drill_rss_mib"] * 1.048576, "MB", 50.0),
    ]
    for name, value, unit, limit in absolute:
        ok = value < limit
        failed += not ok
        print(f"{'ok  ' if ok else 'MISS'} {name}: {value:.3g} {unit} (target < {limit:g} {unit})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
