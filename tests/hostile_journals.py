"""Hostile journals against the real `drillkit cleanup`, watched by sentinels (issue 17).

Run as a program (`python tests/hostile_journals.py case FILE` or `… property`), normally
inside a PID namespace of its own (tests/test_cleanup_trust.py starts it with `unshare`): there
it is PID 1, and a cleanup that signalled every process, as the journal of issue 17 made it do,
can reach only what this program started. It sets up a bench in a temporary folder:

- `lab/`: what the run's scenario declares (a control file, a secret, a pid file, and the
  restart command's output file): the bounds a revert may act in;
- `out/`: sentinel files (a victim, a backup-like file, a pid file) outside every bound;
- a sentinel process, started here in a session of its own, that logs every signal it can catch;

writes each hostile journal beside a genuine `started` line (sealed with the bench's own journal
key), runs cleanup in this process, and checks that the sentinel got no signal and was neither
stopped nor killed, that nothing under `out/` or elsewhere outside the bounds was written,
created or deleted, and that no file anywhere on the bench is setuid, setgid or sticky.
It prints one JSON line: cleanup's lines, and the sentinel's findings (empty when nothing
happened). Self-contained (drillkit and hypothesis only), so it runs against any checkout.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SENTINEL = """
import os, signal, sys, time
log = open(sys.argv[1], "a")
def note(signum, frame):
    log.write(f"{signum}\\n"); log.flush()
for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCONT, signal.SIGQUIT, signal.SIGUSR1):
    signal.signal(s, note)
with open(sys.argv[2] + ".tmp", "w") as fh:
    fh.write(str(os.getpid()))
os.rename(sys.argv[2] + ".tmp", sys.argv[2])
while True:
    time.sleep(1)
"""
AT = "2026-01-01T00:00:00Z"


@dataclass
class Bench:
    """The folders, the sentinel process and what was there before cleanup ran."""

    base: Path
    sentinel: subprocess.Popen[bytes]
    marker: str  # in the sentinel's command line, for patterns that name it

    @property
    def lab(self) -> Path:
        return self.base / "lab"

    @property
    def out(self) -> Path:
        return self.base / "out"

    @property
    def reports(self) -> Path:
        return self.base / "reports"

    @property
    def scratch(self) -> Path:
        return self.base / "scratch"

    @property
    def pid(self) -> int:
        return self.sentinel.pid

    def restart(self) -> list[str]:
        """The restart command the scenario declares (it writes only inside lab/)."""
        return ["/bin/sh", "-c", f"echo restarted >> {self.lab}/restarted"]

    def rce(self) -> list[str]:
        """A command no scenario declares: it writes outside the bounds and signals the sentinel."""
        return ["/bin/sh", "-c", f"id > {self.out}/RCE; kill -USR1 {self.pid}"]

    def declared(self) -> list[dict[str, Any]]:
        """The run's scenario faults, as the engine journals them in `started`."""
        lab, restart = self.lab, self.restart()
        common = {"restart": restart, "restart_cwd": None, "restart_log": None, "back_within": 0.2}
        return [
            {
                "kind": "process-kill",
                "params": {"pattern": None, "pidfile": f"{lab}/api.pid", "signal": "SIGSTOP", "count": "1", **common},
            },
            {
                "kind": "process-kill",
                "params": {"pattern": None, "pidfile": f"{lab}/api.pid", "signal": "SIGKILL", "count": "1", **common},
            },
            {
                "kind": "auth-secret-corruption",
                "params": {"secret_file": f"{lab}/secret", "pattern": None, "pidfiles": [f"{lab}/api.pid"], **common},
            },
            {"kind": "latency", "params": {"control": f"{lab}/latency.json", "delay": 0.3, "proxy_port": 9}},
            {"kind": "cpu-pressure", "params": {"workers": "1", "process_name": None, "pattern": None}},
            {"kind": "memory-pressure", "params": {"limit": "64Mi", "pidfile": f"{lab}/api.pid", "pattern": None}},
        ]

    def reset(self) -> None:
        """Fresh lab and reports folders (what a revert may legitimately have changed)."""
        for folder in (self.lab, self.reports, self.scratch):
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(mode=0o700)
        (self.lab / "secret").write_bytes(b"the-original-secret")
        (self.lab / "latency.json").write_text('{"delay_ms": 300, "revision": "someone-else"}')


def start_bench(base: Path) -> Bench:
    base.mkdir(parents=True, exist_ok=True)
    out = base / "out"
    out.mkdir(mode=0o755)
    (out / "victim").write_text("an unrelated file\n")
    (out / "secret").write_text("an unrelated secret\n")
    (out / "bk").write_text("an unrelated backup\n")
    (out / "signals.log").write_text("")
    os.environ["DRILLKIT_STATE_DIR"] = str(base / "state")
    tempfile.tempdir = str(base / "scratch")  # backups and helpers' folders: inside the bench
    try:  # this host has run drills: it has a key (a drillkit older than journal keys has none)
        from drillkit import hostkey

        hostkey.key()
    except ImportError:
        pass
    marker = f"drillkit-sentinel-{secrets.token_hex(4)}"
    proc = subprocess.Popen(
        [sys.executable, "-c", SENTINEL, str(out / "signals.log"), str(out / "sentinel.pid"), marker],
        start_new_session=True,
    )
    deadline = time.monotonic() + 20
    while not (out / "sentinel.pid").exists():
        if time.monotonic() > deadline:
            raise RuntimeError("the sentinel did not start")
        time.sleep(0.02)
    bench = Bench(base, proc, marker)
    bench.reset()
    return bench


def cgroup_mounts() -> list[Path]:
    """Mounted cgroup hierarchies (v1: one per controller set; v2: one)."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        if right.split()[:1] in (["cgroup"], ["cgroup2"]):
            found.append(Path(left.split()[4]))
    return found


def snapshot(bench: Bench) -> dict[str, tuple[int, int, int, str]]:
    """Every path on the bench outside the bounds (lab, reports, scratch, the key's folder):
    inode, mode, size and content digest."""
    found: dict[str, tuple[int, int, int, str]] = {}
    skip = {bench.lab, bench.reports, bench.scratch, bench.base / "state"}
    for root, dirs, files in os.walk(bench.base):
        dirs[:] = [d for d in dirs if Path(root) / d not in skip]
        for name in [*dirs, *files]:
            path = Path(root) / name
            st = path.lstat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if stat.S_ISREG(st.st_mode) else ""
            found[str(path)] = (st.st_ino, st.st_mode, st.st_size, digest)
    return found


def special_modes(base: Path) -> list[str]:
    """Files anywhere on the bench that are setuid, setgid or sticky."""
    bad = []
    for root, dirs, files in os.walk(base):
        for name in [*dirs, *files]:
            path = Path(root) / name
            mode = path.lstat().st_mode
            if not stat.S_ISLNK(mode) and mode & 0o7000:
                bad.append(f"{path} {stat.filemode(mode)}")
    return bad


def sentinel_state(bench: Bench) -> list[str]:
    """What happened to the sentinel process: empty if nothing."""
    problems = []
    if bench.sentinel.poll() is not None:
        problems.append(f"sentinel {bench.pid} died (exit {bench.sentinel.returncode})")
    else:
        state = Path(f"/proc/{bench.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state in ("T", "t"):
            problems.append(f"sentinel {bench.pid} was stopped")
    if logged := (bench.out / "signals.log").read_text().split():
        problems.append(f"sentinel {bench.pid} received signals {logged}")
    status = Path(f"/proc/{bench.pid}/status").read_text() if bench.sentinel.poll() is None else ""
    pending = [line for line in status.splitlines() if line.startswith(("SigPnd:", "ShdPnd:")) and int(line[7:], 16)]
    if pending:  # sent, not handled yet: a busy host has not scheduled the sentinel since
        problems.append(f"sentinel {bench.pid} has signals pending: {pending}")
    return problems


# --- writing journals ------------------------------------------------------------------------


def _line(kind: str, data: dict[str, Any], mono: float) -> dict[str, Any]:
    return {"kind": kind, "at": AT, "mono": mono, **data}


def started_data(bench: Bench) -> dict[str, Any]:
    """A real scenario's `started` data (the report cleanup writes needs it), with the bench's
    local target and declared faults."""
    from drillkit.evidence import scenario_record
    from drillkit.policy import Policy, limits_for
    from drillkit.scenario import load_scenario

    scenario = load_scenario(Path(__file__).parent / "data" / "exporter-kill.yaml")
    record = scenario_record(scenario)
    record.update(target={"kubernetes": None, "local": {"lab_dir": str(bench.lab)}}, faults=bench.declared())
    return {"scenario": record, "limits": limits_for(scenario, Policy()).to_dict()}


def write_run(bench: Bench, run_id: str, started: str, lines: list[tuple[str, dict[str, Any]]]) -> Path:
    """A run folder: a `started` event (`sealed` by the real Journal, `unsealed`, or sealed
    with `other-key`), then each (how, event) line: `raw`, `sealed` (this run, this key),
    `other-run` (this key, another run id) or `other-key`."""
    from drillkit import hostkey
    from drillkit.journal import Journal

    folder = bench.reports / f"2026-01-01T000000Z-hostile-{run_id}"
    folder.mkdir()
    path = folder / "journal.jsonl"
    start = {"run_id": run_id, **started_data(bench), "cwd": str(bench.base)}
    other = secrets.token_bytes(32)
    if started == "sealed":
        journal = Journal(path)
        journal.append("started", **start)
        journal.close()
    else:
        data = dict(start)
        if started == "other-key":
            data["mac"] = hostkey.seal(other, run_id, "started", data)
        path.write_text(json.dumps(_line("started", data, 1.0)) + "\n")
    mono = float(json.loads(path.read_text().splitlines()[0])["mono"])  # later lines come after it
    with open(path, "a", encoding="utf-8") as fh:
        for n, (how, event) in enumerate(lines, 2):
            kind, data = event["kind"], {k: v for k, v in event.items() if k != "kind"}
            if how == "sealed":
                data["mac"] = hostkey.seal(hostkey.key(), run_id, kind, data)
            elif how == "other-run":
                data["mac"] = hostkey.seal(hostkey.key(), run_id + "x", kind, data)
            elif how == "other-key":
                data["mac"] = hostkey.seal(other, run_id, kind, data)
            fh.write(json.dumps(_line(kind, data, mono + n)) + "\n")
    return path


def run_cleanup(bench: Bench) -> dict[str, Any]:
    """The real cleanup over every run on the bench, and what it did to the sentinels."""
    from drillkit.cleanup import cleanup

    before = snapshot(bench)
    report = cleanup(bench.reports, None, log=lambda _: None)
    time.sleep(0.05)  # a signal sent at the very end: logged by now, or still pending (sentinel_state)
    after = snapshot(bench)
    changed = sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))
    return {
        "lines": report.lines(),
        "done": report.done,
        "failed": report.failed,
        "harm": sentinel_state(bench)
        + [f"changed outside the bounds: {p}" for p in changed]
        + special_modes(bench.base),
    }


# --- the corpus: tests/data/bad/journals/ ----------------------------------------------------


def run_backup(bench: Bench, run_id: str) -> Path:
    """The run's own backup of lab/secret, where auth-secret-corruption's inject leaves it."""
    from drillkit.faults.local.secrets import backup_of

    backup = backup_of(bench.lab / "secret", run_id)
    backup.parent.mkdir(mode=0o700, exist_ok=True)
    backup.write_bytes(b"the-original-secret")
    return backup


def substitute(text: str, bench: Bench, run_id: str) -> str:
    path = run_backup(bench, run_id) if not (bk := _backup_path(bench, run_id)).exists() else bk
    backup = path.stat()
    for name, value in (
        ("$BACKUP_PATH", str(path)),
        ("$BACKUP_DEV", str(backup.st_dev)),
        ("$BACKUP_INO", str(backup.st_ino)),
        ("$BASE", str(bench.base)),
        ("$LAB", str(bench.lab)),
        ("$OUT", str(bench.out)),
        ("$SCRATCH", str(bench.scratch)),
        ("$RUN", run_id),
        ("$SENTINEL_PID", str(bench.pid)),
        ("$SENTINEL_MARKER", bench.marker),
        ("$BOOT", Path("/proc/sys/kernel/random/boot_id").read_text().strip()),
    ):
        text = text.replace(name, value)
    return text


def parse_case(path: Path) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """Headers (`# name: value` lines) and body lines (`how: {json}` or a bare `{json}`)."""
    headers: dict[str, str] = {}
    body: list[tuple[str, str]] = []
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            name, _, value = line[1:].partition(":")
            headers.setdefault(name.strip(), value.strip())
        elif line.strip():
            how, sep, rest = line.partition(": {")
            body.append((how, "{" + rest) if sep and not how.startswith("{") else ("raw", line))
    return headers, body


def _backup_path(bench: Bench, run_id: str) -> Path:
    from drillkit.faults.local.secrets import backup_of

    return backup_of(bench.lab / "secret", run_id)


def run_case(bench: Bench, path: Path) -> dict[str, Any]:
    headers, body = parse_case(path)
    run_id = secrets.token_hex(4)
    backup = run_backup(bench, run_id)
    lines = [(how, json.loads(substitute(text, bench, run_id))) for how, text in body]
    write_run(bench, run_id, headers.get("started", "sealed"), lines)
    try:
        result = run_cleanup(bench)
    finally:
        shutil.rmtree(backup.parent, ignore_errors=True)
    result["headers"] = headers
    return result


# --- the property ----------------------------------------------------------------------------


def property_test(bench: Bench, examples: int, broad: bool) -> None:
    """Random and hostile records, sealed or not, never harm anything outside the bounds.
    `broad`: include patterns that match every process (only inside a PID namespace)."""
    from hypothesis import HealthCheck, given, settings, target
    from hypothesis import strategies as st

    boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    dead = subprocess.Popen(["true"])
    dead.wait()
    ticks = int(Path(f"/proc/{bench.pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    lab, out, pid = bench.lab, bench.out, bench.pid
    memory = next((m for m in cgroup_mounts() if "memory" in m.name), None)
    cgroups = memory or Path("/sys/fs/cgroup")  # where a memory drill's cgroup (never made here) would be

    def proc_ids(true_ones: bool) -> st.SearchStrategy[dict[str, Any]]:
        starts = [ticks + 1, ticks - 1, 0] + ([ticks] if true_ones else [])
        return st.builds(
            lambda p, t, b: {"pid": p, "started": {"boot": b, "ticks": t}},
            st.sampled_from([pid, dead.pid, 999_999]),
            st.sampled_from(starts),
            st.sampled_from([boot, "0-other-boot"]),
        )

    # Outside a PID namespace only patterns that name what this program started: a cleanup that
    # ignored its bounds must not be able to reach anything else.
    patterns = [bench.marker, "nothing-matches-this-7f3a"]
    if broad:
        patterns += ["", ".*", ".", "a*", "[a-z]", "python"]
    paths = [str(out / "victim"), str(out / "evil.sh"), str(out), "relative/x", str(lab / "latency.json")]
    pids = st.sampled_from([pid, dead.pid, 999_999, 0])
    modes = st.sampled_from([0o644, 0o4755, 0o6777, 2541, 0o7777, 0o1777])
    junk = st.one_of(st.none(), st.integers(-3, 3), st.text(max_size=5), st.lists(st.integers(0, 3), max_size=2))

    def pick(good: object, *bad: object) -> st.SearchStrategy[Any]:
        """Mostly the value the run's scenario allows, else one from outside the bounds: a record
        whose every field is in bounds (and so runs) must come up often."""
        return st.sampled_from([good] * (2 * len(bad) + 2) + list(bad))

    def fields(kind: str, run_id: str, true_ids: bool) -> st.SearchStrategy[dict[str, Any]]:
        declared, rce = bench.restart(), bench.rce()
        ids = st.lists(proc_ids(true_ids), max_size=3)
        ints = st.lists(pids, max_size=3)
        scratch = str(bench.scratch / f"drillkit-{run_id}")
        backup = run_backup(bench, run_id)  # the run's own backup, as inject leaves it
        made = os.stat(backup)
        file_ids = [{"dev": made.st_dev, "ino": made.st_ino}, None, {"dev": 0, "ino": 0}]
        if true_ids:  # the real ids of files outside the bounds: only a record nobody sealed may name them
            file_ids += [{"dev": s.st_dev, "ino": s.st_ino} for s in (os.stat(out / "victim"), os.stat(out / "bk"))]
        # outside a namespace, no record without pid files: an old drillkit then looked for every process
        no_pidfiles = [[]] if broad else []
        by_kind: dict[str, dict[str, st.SearchStrategy[Any]]] = {
            "process-kill": {
                "signal": st.sampled_from(["SIGSTOP", "SIGKILL", "SIGTERM"]),
                "count": st.sampled_from([0, 1, 3, 1000]),
                "pattern": pick(None, *patterns),
                "pidfile": pick(str(lab / "api.pid"), None, str(out / "sentinel.pid")),
                "restart": pick(declared, rce, []),
                "restart_cwd": pick(str(bench.base), None, str(out)),
                "restart_log": pick(None, str(out / "victim")),
                "back_within": pick(0.2, 0.0),
                "killed": ints,
                "killed_ids": ids,
            },
            "auth-secret-corruption": {
                "secret_file": pick(str(lab / "secret"), str(out / "secret"), str(out / "victim")),
                "backup": pick(str(backup), str(out / "bk")),
                "mode": modes,
                "uid": st.sampled_from([0, 1, 65534]),
                "gid": st.sampled_from([0, 1, 65534]),
                "pattern": pick(None, *patterns),
                "pidfiles": pick([str(lab / "api.pid")], [str(out / "sentinel.pid")], *no_pidfiles),
                "restart": pick(declared, rce, []),
                "restart_log": pick(None, str(out / "victim")),
                "back_within": pick(0.2, 0.0),
                "replicas_before": st.lists(pids, max_size=4),
                "backup_complete": st.booleans(),
                "corrupted": st.booleans(),
                "killed": ints,
                "killed_ids": ids,
                "since": st.sampled_from([None, {"boot": boot, "ticks": 0}, {"boot": "0-other", "ticks": 0}]),
                "backup_id": pick(*file_ids),
            },
            "latency": {
                "control": pick(str(lab / "latency.json"), *paths),
                "existed": st.booleans(),
                "previous": st.sampled_from([None, f"#!/bin/sh\nkill {pid}\n", '{"delay_ms": 0}']),
                "previous_b64": st.sampled_from([None, None, base64.b64encode(b"\x00junk").decode()]),
                "mode": modes,
                "created": st.sampled_from(file_ids),
            },
            "cpu-pressure": {
                "workers": st.just(1),
                "timeout": st.just(10),
                "temp_path": pick(scratch, str(out), "relative", str(bench.scratch / "drillkit-other")),
                "log_file": pick(f"{scratch}/stress-ng.log", str(out / "victim"), None),
                "pgid": st.sampled_from([None, pid, dead.pid]),
                "program": pick(None, str(out / "victim"), "python", sys.executable, bench.marker),
                "leader": st.one_of(st.none(), proc_ids(true_ids)),
            },
            "memory-pressure": {
                "version": pick(2, 1, 3),
                "cgroup": pick(f"{cgroups}/drillkit-gone-{run_id}", str(out), str(lab), "/sys/fs/cgroup/x"),
                "pid": pids,
                "origin": pick(str(cgroups), str(out)),
            },
            "db-connection-exhaustion": {  # the scenario declares none: never in bounds
                "dsn": st.just("postgresql://x@127.0.0.1:1/x"),
                "application_name": st.sampled_from([f"drillkit-{run_id}-hold", "chatbot"]),
                "holder_pid": st.sampled_from([None, pid]),
                "holder": st.one_of(st.none(), proc_ids(true_ids)),
                "status_file": st.sampled_from([str(out / "victim"), f"{scratch}/hold-connections.json"]),
                "launcher": st.sampled_from([None, bench.marker, str(out / "victim")]),
            },
        }
        whole = st.fixed_dictionaries(by_kind[kind])
        spoilt = st.builds(lambda d, k, v: {**d, k: v}, whole, st.sampled_from(list(by_kind[kind])), junk)
        return st.one_of(whole, whole, whole, spoilt)  # now and then a field is junk (a load error, located)

    kinds = ["process-kill", "auth-secret-corruption", "latency", "cpu-pressure", "memory-pressure"]
    kinds.append("db-connection-exhaustion")

    @st.composite
    def run(draw: st.DrawFn) -> tuple[str, str, list[tuple[str, dict[str, Any]]]]:
        run_id = secrets.token_hex(4)
        started = draw(st.sampled_from(["sealed"] * 6 + ["unsealed", "other-key"]))
        lines = []
        for rid in range(1, draw(st.integers(1, 3)) + 1):
            how = draw(st.sampled_from(["sealed"] * 4 + ["raw", "other-run", "other-key"]))
            kind = draw(st.sampled_from(kinds))
            data = draw(fields(kind, run_id, true_ids=how != "sealed"))
            lines.append((how, {"kind": "revert_registered", "id": rid, "fault": kind, "data": data}))
        return run_id, started, lines

    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(runs=st.lists(run(), min_size=1, max_size=3))
    def never_outside_the_bounds(runs: list[tuple[str, str, list[tuple[str, dict[str, Any]]]]]) -> None:
        try:
            for run_id, started, lines in runs:
                write_run(bench, run_id, started, lines)
            result = run_cleanup(bench)
        finally:
            bench.reset()  # lab and reports as they were: the next example's draws write into lab/
        assert not result["harm"], f"{result['harm']}\ncleanup said:\n" + "\n".join(result["lines"])
        for kind in kinds:  # steer towards records that pass every check and run: where harm could happen
            target(float(sum(f" revert {kind} #" in line for line in result["done"])), label=kind)

    never_outside_the_bounds()


def main() -> None:
    mode, arg = sys.argv[1], sys.argv[2]
    with tempfile.TemporaryDirectory(prefix="drillkit-hostile-") as tmp:
        bench = start_bench(Path(tmp) / "bench")
        try:
            if mode == "case":
                print(json.dumps(run_case(bench, Path(arg))))
            else:
                property_test(bench, int(arg), broad=os.environ.get("HOSTILE_BROAD") == "1")
                print(json.dumps({"property": "held"}))
        finally:
            bench.sentinel.send_signal(signal.SIGKILL)
            bench.sentinel.wait()


if __name__ == "__main__":
    main()
