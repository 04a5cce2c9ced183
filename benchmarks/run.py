"""drillkit benchmarks, one command: `.venv/bin/python benchmarks/run.py` (exit 1 if a target is
missed). Each measures drillkit against a baseline measured in the same run, interleaved where
the two can drift apart, and reports median and spread; the table goes to the terminal and to
benchmarks/results.md. Why each baseline is the fair one: docs/performance.md.

`--quick` skips the lab, the 1,000-pod server and the million-line journal (start-up, loading,
journal, report only).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.harness import Row, line, write_results  # noqa: E402
from drillkit.journal import Journal  # noqa: E402
from drillkit.scenario import load_scenario  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results.md"


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


def bench_loader(tmp: Path, rounds: int = 5) -> tuple[list[float], list[float]]:
    """Seconds to load 1,000 files into typed scenarios vs libyaml composing the same texts (the
    C parser alone, which keeps line numbers too): interleaved rounds after a warm-up."""
    files = scenario_files(tmp / "scenarios")
    texts = [f.read_text() for f in files]
    ours, base = [], []
    for i in range(rounds + 1):
        t = time.perf_counter()
        for f in files:
            load_scenario(f)
        o = time.perf_counter() - t
        t = time.perf_counter()
        for text in texts:
            yaml.compose(text, Loader=yaml.CSafeLoader)
        b = time.perf_counter() - t
        if i:
            ours.append(o)
            base.append(b)
    return ours, base


def bench_journal(tmp: Path) -> tuple[list[float], list[float]]:
    """Per-event cost on an open journal vs an open fd, in alternating rounds (fsync cost drifts)."""
    n, rounds = 100, 7
    journal = Journal(tmp / "ours.jsonl")
    raw = (
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
            ours.append((time.perf_counter() - t) / n * 1e6)
            t = time.perf_counter()
            for _ in range(n):
                os.write(fd, raw)
                os.fsync(fd)
            base.append((time.perf_counter() - t) / n * 1e6)
    finally:
        journal.close()
        os.close(fd)
    return ours, base


def _venv(path: Path, *install: str) -> Path:
    """A venv at `path` (created once) with `install` pip-installed into it; its bin folder."""
    if not (path / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, capture_output=True)
    subprocess.run([path / "bin" / "pip", "install", "-q", *install], check=True, capture_output=True)
    return path / "bin"


def chaostoolkit() -> Path | None:
    """The `chaos` command of a Chaos Toolkit in its own venv, or None (no PyPI)."""
    venv = Path(os.environ.get("DRILLKIT_BENCH_CTK", "/tmp/drillkit-bench-ctk"))
    chaos = venv / "bin" / "chaos"
    if not chaos.exists():
        try:
            _venv(venv, "chaostoolkit")
        except (OSError, subprocess.CalledProcessError):
            return None
    return chaos if chaos.exists() else None


def installed_drillkit() -> Path:
    """drillkit as users get it (`pip install`, not this checkout's editable install, whose
    import hook costs ~10 ms a start), reinstalled from this checkout on every run."""
    venv = Path(os.environ.get("DRILLKIT_BENCH_VENV", "/tmp/drillkit-bench-venv"))
    if not (venv / "bin" / "drillkit").exists():
        _venv(venv, str(ROOT))
    return _venv(venv, "--no-deps", "--force-reinstall", str(ROOT)) / "drillkit"


def bench_startup(rounds: int = 15) -> dict[str, list[float]]:
    """Whole processes, interleaved round by round so drift hits every command alike."""
    ours = str(installed_drillkit())
    checkout = str(ROOT / ".venv" / "bin" / "drillkit")
    chaos = chaostoolkit()
    peer = ROOT / "benchmarks" / "peer" / "outage-experiment.yaml"
    one = str(ROOT / "scenarios" / "lab" / "outage.yaml")
    cmds = {
        "drillkit validate": [ours, "validate", one],
        "drillkit --help": [ours, "--help"],
        "checkout's drillkit validate": [checkout, "validate", one],
        "python -c pass": [sys.executable, "-c", "pass"],
        # the floor under `drillkit validate`: the interpreter, click and PyYAML, nothing of drillkit's
        "python -c 'import click, yaml'": [str(Path(ours).parent / "python"), "-c", "import click, yaml"],
    }
    if chaos is not None:
        cmds["chaos validate"] = [str(chaos), "--no-log-file", "validate", str(peer)]
        cmds["chaos --help"] = [str(chaos), "--help"]
    times: dict[str, list[float]] = {k: [] for k in cmds}
    # as users run them: bytecode cached (a developer's PYTHONDONTWRITEBYTECODE would make the
    # checkout recompile every edited module on every start)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    with tempfile.TemporaryDirectory() as cwd:  # chaos writes chaostoolkit.log into its cwd
        for _ in range(rounds):
            for name, cmd in cmds.items():
                t = time.perf_counter()
                subprocess.run(cmd, capture_output=True, check=True, cwd=cwd, env=env)
                times[name].append((time.perf_counter() - t) * 1000)
    return times


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


RENDER = """
import sys, time
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from drillkit.report import render

def status(key):  # KiB, from the kernel's accounting of this process
    return next(int(x.split()[1]) for x in open("/proc/self/status") if x.startswith(key + ":"))

folder = Path(sys.argv[2])
base = status("VmRSS")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # resets VmHWM to the current RSS: the peak from here on is the render's
times = []
for _ in range(2):
    t = time.perf_counter()
    render(folder, ("md", "html", "json", "junit"))
    times.append(time.perf_counter() - t)
print(*times, base, status("VmHWM"))
"""


def bench_report(tmp: Path, rounds: int = 3) -> dict[str, list[float]]:
    """Rendering journals of 2,000 and 20,000 events (md, html, json, junit), each in a fresh
    process: the first render (templates compiled, what a drill pays), the second (the steady
    cost, whose growth with the events shows any quadratic blow-up), and the peak RSS while
    rendering against the RSS just before (the kernel's peak reset there, so neither imports nor
    earlier benchmarks count)."""
    out: dict[str, list[float]] = {"cold": [], "warm2k": [], "warm20k": [], "added_mib": []}
    for n in (2000, 20000):
        big_journal(tmp / f"run{n}", n)
    for _ in range(rounds):
        for n in (2000, 20000):
            r = subprocess.run(
                [sys.executable, "-c", RENDER, str(ROOT), str(tmp / f"run{n}")], capture_output=True, text=True
            )
            if r.returncode:
                raise RuntimeError(r.stderr)
            cold, warm, base, peak = map(float, r.stdout.split())
            out[f"warm{n // 1000}k"].append(warm)
            if n == 2000:
                out["cold"].append(cold)
                out["added_mib"].append((peak - base) / 1024)
    return out


def main() -> int:
    quick = "--quick" in sys.argv[1:]
    rows: list[Row] = []
    notes: list[str] = []

    def add(row: Row) -> None:
        rows.append(row)
        print(line(row), flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        ours, base = bench_loader(t)
        add(Row("validating 1,000 scenario files", ours, "s", "libyaml compose", base, limit=1.0))
        ours, base = bench_journal(t)
        add(Row("journal append (JSON + fsync), per event", ours, "µs", "raw write + fsync", base, ratio_max=3.0))
        times = bench_startup()
        for cmd, peer in (("validate", "chaos validate"), ("--help", "chaos --help")):
            if peer in times:
                add(Row(f"`drillkit {cmd}` process", times[f"drillkit {cmd}"], "ms", f"`{peer}`", times[peer], 1 / 3))
            else:
                notes.append(f"Chaos Toolkit could not be installed: `drillkit {cmd}` has no peer yardstick.")
        add(
            Row(
                "the floor: python importing click and yaml",
                times["python -c 'import click, yaml'"],
                "ms",
                "`chaos validate`",
                times.get("chaos validate", []),
            )
        )
        add(
            Row(
                "`drillkit validate`, this checkout's editable install",
                times["checkout's drillkit validate"],
                "ms",
                "`python -c pass`",
                times["python -c pass"],
            )
        )
        if "chaos validate" in times:
            floor = statistics.median(times["python -c 'import click, yaml'"])
            ours, peer = statistics.median(times["drillkit validate"]), statistics.median(times["chaos validate"])
            notes.append(
                f"`drillkit validate` start-up: {ours:.0f} ms, of which {floor:.0f} ms is the floor of Python, "
                f"click and PyYAML imported, {floor / peer:.2f}× of `chaos validate` ({peer:.0f} ms) before "
                "drillkit's first line runs. The rest (profile in docs/performance.md) is mostly defining the "
                "scenario's frozen dataclasses (~0.5 ms each on Python 3.11) and the click commands."
            )
        rep = bench_report(t)
        add(
            Row(
                "report render of 20,000 events (linear: 10× of 2,000)",
                rep["warm20k"],
                "s",
                "2,000 events",
                rep["warm2k"],
                ratio_max=12.0,
            )
        )
        add(Row("report render of 2,000 events, first in a fresh process", rep["cold"], "s", limit=2.0))
        add(
            Row(
                "report render (2,000 events): peak RSS added to the process",
                rep["added_mib"],
                "MiB",
                limit=64.0,
                worst=True,
            )
        )
    if not quick:
        from benchmarks.lab import bench_lab
        from benchmarks.podkill import bench_pod_kill
        from benchmarks.streaming import bench_streaming

        streaming, more = bench_streaming()
        for row in streaming:
            add(row)
        notes += more

        pods = bench_pod_kill()
        add(
            Row(
                "pod-kill of 1,000 pods (real apiserver, KWOK nodes): inject start to every delete accepted",
                pods["ours"],
                "s",
                "the same deletes one by one",
                pods["base"],
                ratio_max=1.0,
            )
        )
        add(Row("pod-kill API requests per pod", pods["requests_per_pod"], "", limit=1.1, worst=True))
        add(
            Row(
                "pod-kill first delete accepted (`injected`) after inject start",
                pods["first_harm"],
                "s",
                limit=1.0,
                worst=True,
            )
        )
        add(Row("pod-kill journal bytes per pod", pods["journal_bytes_per_pod"], "B", limit=250.0, worst=True))
        lab = bench_lab()
        add(
            Row(
                "`drillkit lab up`",
                lab["lab_up"],
                "s",
                "PostgreSQL alone: initdb + start",
                lab["postgres_alone"],
                limit=10.0,
            )
        )
        add(
            Row(
                "`drillkit run` peak RSS, the five lab drills",
                lab["drill_mb"],
                "MB",
                "python importing click, yaml, requests, jinja2",
                lab["bare_mb"],
                limit=50.0,
                worst=True,
            )
        )
        add(Row("largest process of a lab drill's tree (its helpers included)", lab["tree_mb"], "MB", worst=True))
        add(
            Row(
                "Prometheus requests per second, the five lab drills",
                lab["requests_per_s"],
                "/s",
                limit=2.0,
                worst=True,
            )
        )
        add(
            Row(
                "time to detect vs Prometheus's first raw firing sample, the five lab drills",
                lab["detect_error_ms"],
                "ms",
                limit=5.0,
                worst=True,
            )
        )
        notes += lab["notes"]
    write_results(rows, notes, RESULTS)
    print(f"written: {RESULTS.relative_to(ROOT)}")
    return 0 if all(r.met for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
