"""drillkit benchmarks, one command: `.venv/bin/python benchmarks/run.py` (exit 1 if a target is
missed). Each measures drillkit against a baseline measured in the same run, interleaved where
the two can drift apart, and reports median and spread; the table goes to the terminal and to
benchmarks/results.md. Why each baseline is the fair one: docs/performance.md.

`--quick` skips the lab, the pod-kill and cleanup control planes and the million-line journal
(start-up, loading, journal, report only). `--only startup,history,cleanup,podkill` runs just
those groups and replaces their rows in results.md (the others keep the last full run's).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.harness import Row, line, update_results, write_results  # noqa: E402
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


def cpu_seconds(cmd: list[str], cwd: str, env: dict[str, str]) -> float:
    """CPU time (user + system) of one whole process, its own (`wait4`): on this shared 2-core
    machine wall time mostly measures the other processes."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=cwd, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status):
        raise RuntimeError(f"{cmd}: exit {os.waitstatus_to_exitcode(status)}: {proc.stderr.read().decode()}")
    return usage.ru_utime + usage.ru_stime


def bench_startup(rounds: int = 15) -> dict[str, list[float]]:
    """Whole processes, interleaved round by round so drift hits every command alike; CPU
    milliseconds of each (see cpu_seconds)."""
    ours = str(installed_drillkit())
    checkout = str(ROOT / ".venv" / "bin" / "drillkit")
    chaos = chaostoolkit()
    peer = ROOT / "benchmarks" / "peer" / "outage-experiment.yaml"
    one = str(ROOT / "scenarios" / "lab" / "outage.yaml")
    cmds = {
        "drillkit validate": [ours, "validate", one],
        "drillkit validate k8s": [ours, "validate", str(ROOT / "scenarios" / "k8s" / "pod-kill.yaml")],
        "drillkit validate scenarios/": [ours, "validate", str(ROOT / "scenarios")],
        "drillkit schema": [ours, "schema"],
        "drillkit --help": [ours, "--help"],
        "python -c pass": [sys.executable, "-c", "pass"],
        # the floor under `drillkit validate`: the interpreter, click and PyYAML, nothing of drillkit's
        "python -c 'import click, yaml'": [str(Path(ours).parent / "python"), "-c", "import click, yaml"],
    }
    if Path(checkout).exists():  # a worktree may have no venv of its own
        cmds["checkout's drillkit validate"] = [checkout, "validate", one]
    if chaos is not None:
        cmds["chaos validate"] = [str(chaos), "--no-log-file", "validate", str(peer)]
        cmds["chaos --help"] = [str(chaos), "--help"]
    times: dict[str, list[float]] = {k: [] for k in cmds}
    # as users run them: bytecode cached (a developer's PYTHONDONTWRITEBYTECODE would make the
    # checkout recompile every edited module on every start)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    with tempfile.TemporaryDirectory() as cwd:  # chaos writes chaostoolkit.log into its cwd
        from tests.test_policy_journal_report import fixed_journal

        run = Path(cwd) / "run"  # the demo run of the golden files: 19 events, impact series
        fixed_journal(run, datetime(2026, 11, 29, 9, 30, tzinfo=UTC), enrich=True)
        cmds["drillkit report"] = [ours, "report", str(run)]
        times["drillkit report"] = []
        for cmd in cmds.values():  # a first run each: bytecode and compiled templates cached
            cpu_seconds(cmd, cwd, env)
        for _ in range(rounds):
            for name, cmd in cmds.items():
                times[name].append(cpu_seconds(cmd, cwd, env) * 1000)
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


CV = "chaos validate"
STARTUP = (  # row, command, peer, target (a ratio to the peer's CPU time)
    ("`drillkit validate` of one local scenario, CPU", "drillkit validate", CV, 0.45),
    ("`drillkit validate` of one Kubernetes scenario (pod-kill), CPU", "drillkit validate k8s", CV, 0.5),
    (
        "`drillkit validate scenarios/` (every shipped scenario), CPU",
        "drillkit validate scenarios/",
        "chaos validate",
        0.6,
    ),
    ("`drillkit schema`, CPU", "drillkit schema", CV, 0.6),
    ("`drillkit report` of a small run (19 events, every format), CPU", "drillkit report", CV, 0.8),
    ("`drillkit --help`, CPU", "drillkit --help", "chaos --help", 1 / 3),
)


def startup_rows(add: Any, notes: list[str]) -> None:
    times = bench_startup()
    for name, cmd, peer, target in STARTUP:
        if peer in times:
            add(Row(name, times[cmd], "ms", f"`{peer}`", times[peer], target))
        else:
            notes.append(f"Chaos Toolkit could not be installed: `{cmd}` has no peer yardstick.")
    add(
        Row(
            "the floor: python importing click and yaml, CPU",
            times["python -c 'import click, yaml'"],
            "ms",
            "`chaos validate`",
            times.get("chaos validate", []),
        )
    )
    if "checkout's drillkit validate" in times:
        add(
            Row(
                "`drillkit validate`, this checkout's editable install, CPU",
                times["checkout's drillkit validate"],
                "ms",
                "`python -c pass`",
                times["python -c pass"],
            )
        )


def history_rows(add: Any) -> None:
    """A 100,000-event report and the index of 10,000 runs, whole processes (CPU, peak RSS)."""
    from benchmarks.streaming import DRILLKIT, history, measure

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "big"
        big_journal(folder, 100_000)
        runs = history(Path(tmp) / "runs", 10_000, flood_every=0)
        out: dict[str, list[float]] = {"report_s": [], "report_mib": [], "index_s": [], "index_mib": []}
        for _ in range(3):
            seconds, mib = measure([*DRILLKIT, "report", "--format", "md,html,json,junit", str(folder)])
            out["report_s"].append(seconds)
            out["report_mib"].append(mib)
            seconds, mib = measure([*DRILLKIT, "report", "index", str(runs)])
            out["index_s"].append(seconds)
            out["index_mib"].append(mib)
    add(Row("`drillkit report` of 100,000 events (every format), CPU", out["report_s"], "s", limit=3.0))
    add(Row("`drillkit report` of 100,000 events: peak RSS", out["report_mib"], "MiB", limit=150.0, worst=True))
    add(Row("`drillkit report index` of 10,000 runs (the demo run's journal), CPU", out["index_s"], "s", limit=2.5))
    add(Row("`drillkit report index` of 10,000 runs: peak RSS", out["index_mib"], "MiB", limit=64.0, worst=True))


def cleanup_rows(add: Any) -> None:
    from benchmarks.cleanup import bench_cleanup

    c = bench_cleanup()
    add(
        Row(
            "`drillkit cleanup --all` over 10,000 finished Kubernetes runs (real apiserver), CPU",
            c["many_s"],
            "s",
            "over 10 of them",
            c["few_s"],
            limit=5.0,
        )
    )
    add(Row("`drillkit cleanup --all`: CPU per run beyond the listing", c["per_run_ms"], "ms", limit=0.3, worst=True))
    add(
        Row(
            "`drillkit cleanup --all` over 10,000 runs: API requests",
            c["many_requests"],
            "",
            "over 10 runs",
            c["few_requests"],
            ratio_max=1.0,
            worst=True,
        )
    )


def podkill_rows(add: Any) -> None:
    from benchmarks.podkill import bench_pod_kill

    for pods, rounds, baseline in ((1000, 3, True), (5000, 2, False)):
        n = f"{pods:,}"
        out = bench_pod_kill(rounds, pods, baseline)
        if baseline:
            add(
                Row(
                    f"pod-kill of {n} pods (real apiserver, KWOK nodes): inject start to every delete accepted",
                    out["ours"],
                    "s",
                    "the same deletes one by one",
                    out["base"],
                    ratio_max=1.0,
                )
            )
        else:
            add(
                Row(
                    f"pod-kill of {n} pods (real apiserver, KWOK nodes): inject start to every delete accepted",
                    out["ours"],
                    "s",
                )
            )
        add(Row(f"pod-kill of {n} pods: API requests per pod", out["requests_per_pod"], "", limit=1.1, worst=True))
        add(
            Row(
                f"pod-kill of {n} pods: first delete accepted (`injected`) after inject start",
                out["first_harm"],
                "s",
                limit=0.1,
                worst=True,
            )
        )
        add(
            Row(
                f"pod-kill of {n} pods: journal bytes per pod",
                out["journal_bytes_per_pod"],
                "B",
                limit=250.0,
                worst=True,
            )
        )


def main() -> int:
    args = sys.argv[1:]
    quick = "--quick" in args
    only = set(args[args.index("--only") + 1].split(",")) if "--only" in args else None
    rows: list[Row] = []
    notes: list[str] = []

    def add(row: Row) -> None:
        rows.append(row)
        print(line(row), flush=True)

    if only is not None:
        for group, bench in (
            ("startup", lambda: startup_rows(add, notes)),
            ("history", lambda: history_rows(add)),
            ("cleanup", lambda: cleanup_rows(add)),
            ("podkill", lambda: podkill_rows(add)),
        ):
            if group in only:
                bench()
        update_results(rows, notes, RESULTS, f"benchmarks/run.py --only {','.join(sorted(only))}")
        print(f"updated: {RESULTS.relative_to(ROOT)}")
        return 0 if all(r.met for r in rows) else 1
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        ours, base = bench_loader(t)
        add(Row("validating 1,000 scenario files", ours, "s", "libyaml compose", base, limit=1.0))
        ours, base = bench_journal(t)
        add(Row("journal append (JSON + fsync), per event", ours, "µs", "raw write + fsync", base, ratio_max=3.0))
        startup_rows(add, notes)
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
        from benchmarks.streaming import bench_streaming

        streaming, more = bench_streaming()
        for row in streaming:
            add(row)
        notes += more

        history_rows(add)
        cleanup_rows(add)
        podkill_rows(add)
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
