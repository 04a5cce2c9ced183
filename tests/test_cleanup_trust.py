"""A journal is evidence, not a command (issue 17, items 1 and 2).

`drillkit cleanup` runs a revert only if its record and the run's `started` event carry this
user's MAC (a key outside any reports folder), and only after its fault's `check` found the record
within what the run's scenario allowed. The hostile journals of tests/data/bad/journals/ (each
states what cleanup must say on its first line) and random records (hypothesis) run through the
real cleanup in `tests/hostile_journals.py`, inside a PID namespace of their own where one exists,
watched by a sentinel process and sentinel files that nothing may touch.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import pytest

from drillkit import hostkey
from drillkit.cleanup import cleanup
from drillkit.errors import DrillkitError
from drillkit.faults import FaultContext, Undo, fault_class
from drillkit.faults.local.latency import LatencyRecord
from drillkit.journal import Journal, read_journal, verify
from drillkit.procs import find_processes
from drillkit.scenario import load_scenario
from drillkit.signals import StopFlag
from tests.helpers import write_scenario

RUNNER = Path(__file__).parent / "hostile_journals.py"
CORPUS = sorted((Path(__file__).parent / "data" / "bad" / "journals").glob("*.jsonl"))
# Journals whose record, on a drillkit that obeyed it, signals every process it can see: only
# ever run where that is the runner's own PID namespace.
NAMESPACE_ONLY = {"issue17-1-root-rce-and-host-kill", "sealed-secret-no-pattern-no-pidfiles"}


@pytest.fixture(autouse=True)
def _state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A journal key of this test's own."""
    state = tmp_path / "state"
    monkeypatch.setenv("DRILLKIT_STATE_DIR", str(state))
    return state


@functools.cache
def _namespace() -> tuple[str, ...] | None:
    """The `unshare` prefix that runs a program as PID 1 of a new PID namespace (as root, or
    through a user namespace), or None where neither is allowed."""
    if not shutil.which("unshare"):
        return None
    base = ("unshare", "--pid", "--fork", "--mount-proc", "--kill-child")
    for prefix in (base, ("unshare", "--user", "--map-root-user", *base[1:])):
        if subprocess.run([*prefix, "true"], capture_output=True, timeout=30).returncode == 0:
            return prefix
    return None


def _hostile(*args: str, namespace_only: bool = False, timeout: float = 240) -> dict[str, object]:
    prefix = _namespace()
    if prefix is None and namespace_only:
        pytest.skip("needs a PID namespace of its own (unshare): its record would signal every process")
    env = {**os.environ, "HOSTILE_BROAD": "1" if prefix else "0"}
    r = subprocess.run(
        [*(prefix or ()), sys.executable, str(RUNNER), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=Path(__file__).parent.parent,
    )
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-6000:]}"
    result: dict[str, object] = json.loads(r.stdout.strip().splitlines()[-1])
    return result


def _headers(path: Path) -> dict[str, str]:
    lines = path.read_text().splitlines()
    assert lines[0].startswith(("# expect: ", "# expect done: ")), f"{path} must start with '# expect: …'"
    return {k.strip(): v.strip() for k, _, v in (line[1:].partition(":") for line in lines if line.startswith("#"))}


@pytest.mark.parametrize("case", CORPUS, ids=lambda p: p.stem)
def test_hostile_journal(case: Path) -> None:
    """Each hostile journal: cleanup says what its first line expects, located, and nothing
    outside the bounds happened (sentinel process and files, setuid bits)."""
    headers = _headers(case)
    result = _hostile("case", str(case), namespace_only=case.stem in NAMESPACE_ONLY)
    lines = "\n".join(map(str, result["lines"]))  # type: ignore[call-overload]
    assert not result["harm"], f"{result['harm']}\ncleanup said:\n{lines}"
    if "expect" in headers:
        failed = [str(x) for x in result["failed"]]  # type: ignore[attr-defined]
        hit = [x for x in failed if headers["expect"] in x]
        assert hit, f"no FAILED line with {headers['expect']!r}:\n{lines}"
        assert all("journal.jsonl:" in x for x in hit), f"not located: {hit}"
        ran = [x for x in result["done"] if " revert " in str(x)]  # type: ignore[attr-defined]
        assert not ran, f"a refused record must run none of it:\n{lines}"
    else:
        done = [str(x) for x in result["done"]]  # type: ignore[attr-defined]
        assert any(headers["expect done"] in x for x in done), f"no done line with {headers['expect done']!r}:\n{lines}"


def test_random_and_hostile_records_never_act_outside_their_bounds() -> None:
    """Hypothesis: runs of random records of every local fault, sealed with this host's key or
    not (raw, another run's, another key's), their fields drawn from the bounds and from what
    lies outside them (the sentinel's pid, pid file and process group, files outside the lab,
    commands nobody declared, setuid modes, patterns that match everything): cleanup never
    signals the sentinel, never writes, creates or deletes a file outside the bounds, never runs
    a command the scenario did not declare, never leaves a setuid/setgid/sticky file."""
    result = _hostile("property", "40", timeout=280)
    assert result == {"property": "held"}, result


# --- the key ---------------------------------------------------------------------------------


def test_the_key_is_made_once_private_and_the_same_for_drills_racing_to_make_it(_state_dir: Path) -> None:
    code = "from drillkit import hostkey; print(hostkey.key().hex())"
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(6)]
    keys = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert len(keys) == 1 and len(keys.pop()) == 64, "racing drills must end up with one key"
    key = _state_dir / "journal.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and stat.S_IMODE(_state_dir.stat().st_mode) == 0o700
    assert [p.name for p in _state_dir.iterdir()] == ["journal.key"], "a temporary file was left behind"


def _loosen(path: Path) -> None:
    path.chmod(0o644)


def _group_readable(path: Path) -> None:
    path.chmod(0o640)


def _linked(path: Path) -> None:
    target = path.with_name("elsewhere.key")
    path.rename(target)
    path.symlink_to(target)


def _foreign(path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("changing a file's owner needs root")
    os.chown(path, 65534, 65534)


@pytest.mark.parametrize("spoil", [_loosen, _group_readable, _linked, _foreign], ids=lambda f: f.__name__[1:])
def test_a_key_others_could_read_or_write_is_refused(tmp_path: Path, _state_dir: Path, spoil: object) -> None:
    """Neither a drill (no record is sealed, so no harm is done) nor cleanup (nothing runs)
    uses a key with loose permissions, another owner, or behind a link."""
    reports = tmp_path / "reports"
    folder = _run_with_record(reports, "k1")
    spoil(_state_dir / "journal.key")  # type: ignore[operator]
    with pytest.raises(hostkey.KeyRefused):  # a drill stops before its journal exists
        Journal(tmp_path / "other" / "journal.jsonl")
    assert not (tmp_path / "other" / "journal.jsonl").exists()
    report = cleanup(reports, None, log=lambda _: None)
    assert report.failed and all("the journal key is refused" in x for x in report.failed), report.lines()
    assert not report.done and (folder / "control").read_text() == "ours", report.lines()


def test_a_key_inside_the_reports_folder_is_not_trusted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reports = tmp_path / "reports"
    monkeypatch.setenv("DRILLKIT_STATE_DIR", str(reports / "state"))
    folder = _run_with_record(reports, "k3")
    report = cleanup(reports, None, log=lambda _: None)
    assert any("lies inside the reports folder" in x for x in report.failed), report.lines()
    assert (folder / "control").read_text() == "ours"


def _run_with_record(reports: Path, run_id: str) -> Path:
    """A genuine run folder whose latency revert would delete `control` (declared, ours)."""
    folder = reports / f"2026-01-01T000000Z-x-{run_id}"
    control = folder / "control"
    j = Journal(folder / "journal.jsonl")
    scenario = {"target": {"local": {}}, "faults": [{"kind": "latency", "params": {"control": str(control)}}]}
    j.append("started", run_id=run_id, scenario=scenario, limits={}, cwd="/")
    control.write_text("ours")
    made = {"dev": control.stat().st_dev, "ino": control.stat().st_ino}  # trusted, its revert deletes it
    j.append(
        "revert_registered", id=1, fault="latency", data={"control": str(control), "existed": False, "created": made}
    )
    j.close()
    return folder


# --- sealing ----------------------------------------------------------------------------------


def test_a_journal_verifies_as_written_and_not_once_changed_or_moved(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    j = Journal(path)
    j.append("started", run_id="r1", scenario={"faults": []}, limits={})
    j.append("revert_registered", id=1, fault="pod-kill", data={"namespace": "ns", "killed": []})
    j.append("revert_updated", id=1, fault="pod-kill", append={"killed": [{"name": "a", "uid": "1"}]})
    j.append("detected", alert="X")  # not sealed: cleanup never acts on it
    j.close()
    key = hostkey.existing()
    events = read_journal(path)
    assert [verify(e, "r1", key) for e in events if e.kind != "detected"] == [None, None, None]
    assert "mac" not in events[3].data
    assert "MAC does not match" in str(verify(events[1], "r2", key)), "a record must not verify in another run"
    edited = path.read_text().replace('"namespace": "ns"', '"namespace": "kube-system"')
    path.write_text(edited)
    assert "MAC does not match" in str(verify(read_journal(path)[1], "r1", key))
    assert "no journal key" in str(verify(events[0], "r1", None))


def test_an_old_journal_is_reported_with_what_to_do_and_not_run(tmp_path: Path) -> None:
    """A journal written before journal authentication (no MAC anywhere): its SIGSTOP revert
    would resume a process it names (here a stopped child of this test); reported instead."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        child.send_signal(signal.SIGSTOP)
        deadline = time.monotonic() + 20
        while _state(child.pid) != "T":  # stopped for sure before cleanup looks
            assert time.monotonic() < deadline, f"pid {child.pid} did not stop"
            time.sleep(0.02)
        folder = tmp_path / "reports" / "2026-01-01T000000Z-old-o1"
        folder.mkdir(parents=True)
        lines = [
            {"kind": "started", "at": "2026-01-01T00:00:00Z", "mono": 1, "run_id": "o1", "scenario": {}, "limits": {}},
            {
                "kind": "revert_registered",
                "at": "2026-01-01T00:00:01Z",
                "mono": 2,
                "id": 1,
                "fault": "process-kill",
                "data": {"signal": "SIGSTOP", "count": 1, "pidfile": "/nonexistent.pid", "killed": [child.pid]},
            },
        ]
        (folder / "journal.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
        report = cleanup(tmp_path / "reports", None, log=lambda _: None)
        time.sleep(0.2)  # a SIGCONT sent at the very end has taken effect by now
        state = _state(child.pid)
        assert state == "T", f"the old journal's revert resumed pid {child.pid} (state {state})"
        line = " ".join(report.failed)
        assert "journal.jsonl:2: revert #1 (process-kill) not executed" in line, report.lines()
        assert "older than journal authentication" in line and "by hand" in line, report.lines()
        kinds = [e.kind for e in read_journal(folder)]
        assert kinds == ["started", "revert_registered"], f"cleanup must not write into it: {kinds}"
    finally:
        child.kill()
        child.wait()


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


# --- bounds, in the engine too ----------------------------------------------------------------


def test_find_processes_never_names_every_process() -> None:
    """`find_processes(None, None)` matched every process on the host (issue 17)."""
    for pattern in (None, "", ".*", "[a-z]"):
        with pytest.raises(DrillkitError, match="every process"):
            find_processes(pattern, None)


def test_the_engine_holds_its_own_records_to_the_scenario_too(tmp_path: Path) -> None:
    """The same check runs in the drill's own revert: a record naming a file the scenario did
    not declare (as a bug could make one) is refused, and that file is left alone."""
    declared, other = tmp_path / "declared.json", tmp_path / "other.json"
    other.write_text("not drillkit's")
    fault = {"kind": "latency", "control": str(declared), "delay": "300ms", "proxy_port": 9}
    scenario = write_scenario(
        tmp_path / "s.yaml",
        {
            "name": "engine-bounds",
            "title": "t",
            "severity": "P3",
            "target": {"local": {}},
            "steady_state": [{"name": "up", "expr": "up", "expect": "== 1"}],
            "faults": [fault],
            "detection": {"alert": "A", "within": "90s"},
        },
    )
    journal = Journal(tmp_path / "run" / "journal.jsonl")
    journal.append("started", run_id="e1")
    ctx = FaultContext(run_id="e1", scenario=load_scenario(scenario), journal=journal, stop=StopFlag(), log=print)
    cls = fault_class("latency", "local")
    with ExitStack() as stack:
        undo = Undo(stack, ctx)
        undo.register(cls(load_scenario(scenario).faults[0].params, ctx), LatencyRecord(str(other), existed=False))
    journal.close()
    assert other.read_text() == "not drillkit's", "the revert deleted a file its scenario never named"
    assert undo.failures and "data.control" in undo.failures[0], undo.failures
