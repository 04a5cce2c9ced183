"""A journal of 1,000,000 lines and a history of 10,000 runs, read by `drillkit report` and
`drillkit report index` as whole processes (this checkout's code): CPU time against a baseline
measured in the same run, and the peak RSS of each process (its own, from `wait4`).

The big journal is what a long drill journals in practice: a pod-kill that repeats every few
seconds writes, per round, the new victims (`revert_updated` with `append`) and a `note`; a
week of it is about a million lines. Memory must not grow with it: the report keeps the
events it renders and counts the flood.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.harness import Row  # noqa: E402

DRILLKIT = [sys.executable, "-m", "drillkit.cli"]  # this checkout's drillkit (PYTHONPATH below)
T0 = datetime(2026, 11, 29, 9, 30, tzinfo=UTC)
NOTE = '{"kind": "note", "at": "%s", "mono": %.6f, "fault": "pod-kill", "text": "repeat: deleted chat-api-7d9f-%06x"}'
KILLED = (
    '{"kind": "revert_updated", "at": "%s", "mono": %.6f, "id": 2, "fault": "pod-kill", "append": {"killed": '
    '[{"name": "chat-api-7d9f-%06x", "uid": "1b4e28ba-2fa1-11d2-883f-%012x", "owner": "replicaset/chat-api-7d9f", '
    '"manifest": null}]}}'
)
BASELINE = "import json, sys\nfor line in open(sys.argv[1], 'rb'):\n    json.loads(line)\n"


def _at(offset: float) -> str:
    return (T0 + timedelta(seconds=offset)).isoformat(timespec="microseconds").replace("+00:00", "Z")


def flood_run(folder: Path, lines: int) -> Path:
    """The demo run (tests' fixed journal) with a repeating pod-kill's `lines` events journalled
    between the acknowledgement (+2.9 s) and the revert (+4 s): half victims, half notes."""
    from tests.test_policy_journal_report import fixed_journal

    fixed_journal(folder, T0)
    path = folder / "journal.jsonl"
    head = path.read_text().splitlines()
    cut = next(i for i, line in enumerate(head) if '"kind": "revert_done"' in line)
    step = 1.0 / (lines + 2)
    with open(path, "w") as fh:
        fh.write("\n".join(head[:cut]) + "\n")
        registered = {"kind": "revert_registered", "id": 2, "fault": "pod-kill", "data": {"killed": []}}
        fh.write(json.dumps({**registered, "at": _at(2.95), "mono": 1002.95}) + "\n")
        for i in range(lines - 2):
            offset = 2.95 + (i + 1) * step
            template = KILLED if i % 2 == 0 else NOTE
            args = (_at(offset), 1000 + offset, i // 2) + ((i // 2,) if template is KILLED else ())
            fh.write(template % args + "\n")
        done = {"kind": "revert_done", "id": 2, "fault": "pod-kill", "result": {"recreated": []}}
        fh.write(json.dumps({**done, "at": _at(3.99), "mono": 1003.99}) + "\n")
        fh.write("\n".join(head[cut:]) + "\n")
    return folder


def history(root: Path, runs: int, flood_every: int = 1000, flood_lines: int = 100_000) -> Path:
    """`runs` run folders of the demo run, an hour apart, with a report.html each (the index
    links it), under `root`; one in `flood_every` is a repeating pod-kill's run whose journal
    has `flood_lines` lines (see flood_run)."""
    from tests.test_policy_journal_report import fixed_journal

    fixed_journal(root / "template", T0)
    events = [json.loads(line) for line in (root / "template" / "journal.jsonl").read_text().splitlines()]
    if flood_every:
        flood_run(root / "flood-template", flood_lines)
    for i in range(runs):
        if flood_every and i % flood_every == flood_every // 2:
            folder = root / f"{T0 + timedelta(hours=i):%Y-%m-%dT%H%M%SZ}-pod-kill-repeat-{i:08x}"
            folder.mkdir(parents=True)
            os.link(root / "flood-template" / "journal.jsonl", folder / "journal.jsonl")  # one file on disk
            (folder / "report.html").write_text("<!doctype html>\n")
            continue
        shift = timedelta(hours=i)
        run_id = f"{i:08x}"
        folder = root / f"{T0 + shift:%Y-%m-%dT%H%M%SZ}-exporter-kill-{run_id}"
        folder.mkdir(parents=True)
        out = []
        for e in events:
            at = datetime.fromisoformat(e["at"].replace("Z", "+00:00")) + shift
            e = {**e, "at": at.isoformat(timespec="microseconds").replace("+00:00", "Z")}
            if e["kind"] == "started":
                e["run_id"] = run_id
            out.append(json.dumps(e))
        (folder / "journal.jsonl").write_text("\n".join(out) + "\n")
        (folder / "report.html").write_text("<!doctype html>\n")
    for template in ("template", "flood-template"):
        if (root / template).exists():
            (root / template / "journal.jsonl").unlink()
            (root / template).rmdir()
    return root


LAUNCH = """import os, sys
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as fh:
    fh.write(f"{usage.ru_utime + usage.ru_stime} {usage.ru_maxrss} {os.waitstatus_to_exitcode(status)}")
"""
"""Runs the measured command as a child of a small process (`python -S`, about 8 MiB). Linux
keeps a process's peak RSS across exec, and a subprocess started from this benchmark (vfork)
would report the benchmark's own peak (the 10,000 run folders it built, say) as the command's:
every figure read the same until issue 23."""


def measure(cmd: list[str]) -> tuple[float, float]:
    """CPU seconds (user + system) and peak RSS (MiB) of one command, both the process's own
    (`wait4`, in a small launcher: see LAUNCH): on a shared 2-core machine wall time mostly
    measures the other processes."""
    import tempfile

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with tempfile.NamedTemporaryFile("r", suffix=".usage") as out:
        proc = subprocess.run(
            [sys.executable, "-S", "-c", LAUNCH, out.name, *cmd],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
        )
        cpu, maxrss, code = out.read().split()
    if int(code) or proc.returncode:
        raise RuntimeError(f"{cmd}: exit {code}: {proc.stderr.decode()}")
    return float(cpu), int(maxrss) / 1024


def bench_big_journal(tmp: Path, rounds: int = 3, lines: int = 1_000_000) -> dict[str, list[float]]:
    """`drillkit report` (every format) of the flood run against one pass of `json.loads` over
    the same lines (the least any reader of the journal does), and against the same command on
    the 14-line run: the journal's size must add time linearly and memory not at all."""
    big, small = flood_run(tmp / "big", lines), flood_run(tmp / "small", 2)
    journal = big / "journal.jsonl"
    report = [*DRILLKIT, "report", "--format", "md,html,json,junit"]
    out: dict[str, list[float]] = {"report_s": [], "parse_s": [], "report_mib": [], "small_mib": [], "added_mib": []}
    for _ in range(rounds):
        seconds, mib = measure([*report, str(big)])
        out["report_s"].append(seconds)
        out["report_mib"].append(mib)
        out["parse_s"].append(measure([sys.executable, "-c", BASELINE, str(journal)])[0])
        small_mib = measure([*report, str(small)])[1]
        out["small_mib"].append(small_mib)
        out["added_mib"].append(mib - small_mib)
    out["journal_mb"] = [journal.stat().st_size / 1e6]
    return out


def bench_index(tmp: Path, rounds: int = 3, runs: int = 10_000) -> dict[str, list[float]]:
    """`drillkit report index` of `runs` run folders (one in a thousand with a 100,000-line
    journal) against the same command on a tenth of them (linear growth is 10x), and its peak
    RSS."""
    many, few = history(tmp / "many", runs), history(tmp / "few", runs // 10)
    out: dict[str, list[float]] = {"many_s": [], "few_s": [], "many_mib": [], "few_mib": []}
    for _ in range(rounds):
        seconds, mib = measure([*DRILLKIT, "report", "index", str(many)])
        out["many_s"].append(seconds)
        out["many_mib"].append(mib)
        seconds, mib = measure([*DRILLKIT, "report", "index", str(few)])
        out["few_s"].append(seconds)
        out["few_mib"].append(mib)
    return out


def bench_streaming(rounds: int = 3) -> tuple[list[Row], list[str]]:
    """The rows and notes of both benchmarks, for benchmarks/run.py and for this file run alone."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        big = bench_big_journal(Path(tmp), rounds)
    with tempfile.TemporaryDirectory() as tmp:
        index = bench_index(Path(tmp), rounds)
    rows = [
        Row(
            f"`drillkit report` of a 1,000,000-line journal ({big['journal_mb'][0]:.0f} MB, a repeating pod-kill), CPU",
            big["report_s"],
            "s",
            "one `json.loads` pass over its lines",
            big["parse_s"],
            ratio_max=3.0,
        ),
        Row(
            "`drillkit report` of 1,000,000 lines: peak RSS added by the journal's size",
            big["added_mib"],
            "MiB",
            limit=64.0,
            worst=True,
        ),
        Row(
            "`drillkit report index` of 10,000 runs (10 with 100,000-line journals), CPU",
            index["many_s"],
            "s",
            "1,000 of them",
            index["few_s"],
            ratio_max=12.0,
        ),
        Row("`drillkit report index` of 10,000 runs: peak RSS", index["many_mib"], "MiB", limit=100.0, worst=True),
    ]
    notes = [
        f"`drillkit report` peak RSS: {max(big['report_mib']):.1f} MiB on the 1,000,000-line journal, "
        f"{max(big['small_mib']):.1f} MiB on the same run's 14 lines (the added figure is their difference, "
        "round by round); `report index` of 1,000 runs peaks at "
        f"{max(index['few_mib']):.1f} MiB."
    ]
    return rows, notes


if __name__ == "__main__":
    from benchmarks.harness import line, update_results

    rows, notes = bench_streaming(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
    for row in rows:
        print(line(row), flush=True)
    update_results(rows, notes, ROOT / "benchmarks" / "results.md", "benchmarks/streaming.py")
    sys.exit(0 if all(r.met for r in rows) else 1)
