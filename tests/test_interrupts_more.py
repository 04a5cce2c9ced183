"""The interrupt cases the interrupt matrix could not reach (issue 17), against one real lab.

A suite (three drills in one `drillkit run`) stopped in the middle:
- SIGTERM while the second drill's fault is in place: it reverts and reports aborted, the third
  never starts, the summary says so, exit 130 (pinned: this already held);
- SIGTERM between two drills: the rest is skipped and the suite exits 130 (it exited 0, the
  first drill's code, as if nothing had been interrupted);
- SIGKILL while the second drill's fault is in place: `drillkit cleanup --all` reverts it, ends
  the run aborted and writes its report; the third never started (pinned).
The lab's own services failing under a drill:
- PostgreSQL killed, or restarted, mid-drill: the drill ends inconclusive (exit 3) at once and
  reverts. It used to run on: the outage drill's abort condition ended it `aborted` (exit 1),
  after a minute spent verifying a steady state that could not come back;
- Prometheus killed mid-drill: inconclusive (exit 3) once the retry policy gives up, reverted,
  with a one-line reason (pinned, but for the line: it carried urllib3's retry dump);
- Prometheus restarted mid-drill (stopped, then started again, as `lab up` starts it): the drill
  rides through on the retry policy and passes. Prometheus is the drill's observer, reached
  over HTTP; a short gap in it delays detection as it would delay a real page, and the time to
  detect stays Prometheus's own record (pinned).
Every signal goes to a pid this test started or read from its own lab's state.json.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from drillkit.journal import pending_reverts
from drillkit.lab.lab import start_prom
from drillkit.lab.postgres import start_postgres, stop_postgres
from drillkit.lab.state import LabState, load_state, stop_proc
from drillkit.procs import alive, status
from tests.helpers import drillkit_cmd, run_cli
from tests.test_lab_e2e import Lab, journal_kinds, lab, scenario_for, wait_steady  # noqa: F401 - the fixture

pytestmark = pytest.mark.integration

SUITE = ("outage", "high-latency", "database-exhaustion")
NAMES = ("lab-service-outage", "lab-high-latency", "lab-database-exhaustion")


def _state(at: Lab) -> LabState:
    state = load_state(at.work / ".drillkit" / "lab")
    assert state is not None
    return state


def _journal(reports: Path, scenario: str) -> Path | None:
    """The journal of the one run of `scenario` under `reports` (folders are <time>-<name>-<id>)."""
    found = [j for j in reports.glob("*/journal.jsonl") if j.parent.name.rsplit("-", 1)[0].endswith(scenario)]
    assert len(found) <= 1, found
    return found[0] if found else None


def _start(at: Lab, *args: str, stderr: Any = subprocess.PIPE) -> subprocess.Popen[str]:
    return subprocess.Popen(
        drillkit_cmd(*args),
        cwd=at.work,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def _when(proc: subprocess.Popen[str], reports: Path, scenario: str, kind: str, timeout: float = 180) -> None:
    """Until the run of `scenario` journals `kind` (the drill must still be running)."""
    deadline = time.monotonic() + timeout
    while kind not in journal_kinds(_journal(reports, scenario) or reports / "none"):
        assert proc.poll() is None, f"ended (exit {proc.returncode}) before {scenario} {kind}: {proc.communicate()}"
        assert time.monotonic() < deadline, f"no {kind!r} of {scenario} within {timeout} s"
        time.sleep(0.02)


def _finish(proc: subprocess.Popen[str], timeout: float = 180) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, out, err


def _report(folder: Path) -> dict[str, Any]:
    return dict(json.loads((folder / "report.json").read_text()))


def _suite(at: Lab) -> Path:
    for name in SUITE:
        scenario_for(at, name)
    path = at.work / "three.suite.yaml"
    path.write_text("drills:\n" + "".join(f"  - scenario: scenarios/{name}.yaml\n" for name in SUITE))
    wait_steady(at, at.work / "scenarios" / "outage.yaml")
    return path


def _delay_ms(at: Lab) -> int:
    return int(json.loads(Path(_state(at).latency_file).read_text())["delay_ms"])


def _cleanup_all(at: Lab, reports: Path) -> subprocess.CompletedProcess[str]:
    return run_cli("cleanup", "--all", "--report-dir", str(reports), cwd=at.work, timeout=180)


# --- a suite interrupted ------------------------------------------------------------------------


def test_sigterm_mid_suite_reverts_the_running_drill_and_skips_the_rest(lab: Lab, tmp_path: Path) -> None:  # noqa: F811
    reports = tmp_path / "reports"
    proc = _start(lab, "run", _suite(lab).name, "--report-dir", str(reports))
    _when(proc, reports, NAMES[1], "injected")
    assert _delay_ms(lab) > 0, "the latency fault is in place"
    proc.send_signal(signal.SIGTERM)
    rc, out, err = _finish(proc)
    assert rc == 130, f"exit {rc}\n{err}"
    assert "Traceback" not in err, err
    summary = json.loads((Path(out.strip().splitlines()[-1]) / "summary.json").read_text())
    assert [d["status"] for d in summary["drills"]] == ["passed", "aborted", "not-run"], summary
    assert summary["exit_code"] == 130 and "interrupted" in summary["drills"][2]["reason"], summary
    second = _journal(reports, NAMES[1])
    assert second is not None and not pending_reverts(second.parent), "the interrupted drill reverted"
    assert _report(second.parent)["status"] == "aborted"
    assert _journal(reports, NAMES[2]) is None, "the drill after it must never start"
    assert _delay_ms(lab) == 0, "latency still injected"
    r = _cleanup_all(lab, reports)
    assert r.returncode == 0 and "FAILED" not in r.stdout, r.stdout + r.stderr


def test_sigterm_between_two_drills_ends_the_suite_130(lab: Lab, tmp_path: Path) -> None:  # noqa: F811
    reports = tmp_path / "reports"
    proc = _start(lab, "run", _suite(lab).name, "--report-dir", str(reports))
    _when(proc, reports, NAMES[0], "finished")  # the first drill is done, writing its report
    proc.send_signal(signal.SIGTERM)
    rc, out, err = _finish(proc)
    assert rc == 130, f"a suite cut short by SIGTERM is interrupted (130), got {rc}:\n{out}\n{err}"
    summary = json.loads((Path(out.strip().splitlines()[-1]) / "summary.json").read_text())
    assert [d["status"] for d in summary["drills"]] == ["passed", "not-run", "not-run"], summary
    assert summary["exit_code"] == 130, summary
    assert _journal(reports, NAMES[1]) is None and _journal(reports, NAMES[2]) is None, "nothing started after it"


def test_sigkill_mid_suite_then_cleanup_all_finishes_the_reverts(lab: Lab, tmp_path: Path) -> None:  # noqa: F811
    reports = tmp_path / "reports"
    proc = _start(lab, "run", _suite(lab).name, "--report-dir", str(reports))
    _when(proc, reports, NAMES[1], "injected")
    proc.send_signal(signal.SIGKILL)
    rc, _, _ = _finish(proc)
    assert rc == -signal.SIGKILL
    second = _journal(reports, NAMES[1])
    assert second is not None and pending_reverts(second.parent), "a killed drill leaves its revert pending"
    assert _delay_ms(lab) > 0, "the harm stays until cleanup"
    r = _cleanup_all(lab, reports)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"run {second.parent.name.rsplit('-', 1)[1]}: revert latency" in r.stdout, r.stdout
    assert _delay_ms(lab) == 0, "cleanup --all did not revert the latency"
    assert not pending_reverts(second.parent)
    report = _report(second.parent)
    assert report["status"] == "aborted" and "process died" in report["reason"], report["reason"]
    first = _journal(reports, NAMES[0])
    assert first is not None and _report(first.parent)["status"] == "passed"
    assert _journal(reports, NAMES[2]) is None, "the drill after it must never start"
    wait_steady(lab, lab.work / "scenarios" / "high-latency.yaml")  # the lab really is restored


# --- the lab's own services failing mid-drill ---------------------------------------------------


def _outage(at: Lab, stderr: Any = subprocess.PIPE) -> tuple[subprocess.Popen[str], Path]:
    """The outage drill, once its faults took effect and it watches the lab."""
    path = scenario_for(at, "outage")
    wait_steady(at, path)
    reports = at.work / "reports" / str(time.monotonic_ns())
    proc = _start(at, "run", str(path), "--report-dir", str(reports), stderr=stderr)
    _when(proc, reports, NAMES[0], "lab_watched")
    return proc, reports


def _replicas_running(at: Lab) -> None:
    states = {name: status(pid) for name, pid in at.replica_pids().items() if pid}
    assert states and "stopped" not in states.values(), f"replicas left frozen: {states}"


@pytest.mark.parametrize("how", ["killed", "restarted"])
def test_postgres_lost_mid_drill_is_inconclusive_and_reverted(lab: Lab, how: str) -> None:  # noqa: F811
    proc, reports = _outage(lab)
    state = _state(lab)
    pg = state.procs["postgres"]
    t0 = time.monotonic()
    if how == "killed":
        os.kill(pg.pid, signal.SIGKILL)  # the postmaster this lab started, by its recorded pid
    else:
        stop_postgres(state, pg)
        state.procs["postgres"] = start_postgres(state)
        state.save()
    rc, _, err = _finish(proc)
    took = time.monotonic() - t0
    try:
        assert rc == 3, f"exit {rc}\n{err}"
        assert took < 20, f"the drill ran on for {took:.0f}s after losing PostgreSQL"
        journal = _journal(reports, NAMES[0])
        assert journal is not None
        report = _report(journal.parent)
        assert report["status"] == "inconclusive", report["status"]
        assert f"the lab's postgres (pid {pg.pid}) stopped during the drill" in report["reason"], report["reason"]
        kinds = journal_kinds(journal)
        assert "aborted" not in kinds and kinds.count("revert_done") == 2, kinds
        watched = next(json.loads(line) for line in journal.read_text().splitlines() if '"lab_watched"' in line)
        assert watched["components"]["postgres"] == pg.pid and "prometheus" not in watched["components"], watched
        assert not pending_reverts(journal.parent)
        _replicas_running(lab)
    finally:
        if how == "killed":
            up = run_cli("lab", "up", cwd=lab.work, timeout=180)
            assert up.returncode == 0 and "postgres" in up.stdout, up.stdout + up.stderr


def test_prometheus_killed_mid_drill_is_inconclusive_and_reverted(lab: Lab) -> None:  # noqa: F811
    proc, reports = _outage(lab)
    prom = _state(lab).procs["prometheus"]
    os.kill(prom.pid, signal.SIGKILL)
    rc, _, err = _finish(proc)
    try:
        assert rc == 3, f"exit {rc}\n{err}"
        journal = _journal(reports, NAMES[0])
        assert journal is not None
        reason = _report(journal.parent)["reason"]
        assert reason.startswith(f"Prometheus at {lab.prom} unreachable: GET /api/v1/"), reason
        assert reason.endswith(": Connection refused") and "HTTPConnectionPool" not in reason, reason
        assert not pending_reverts(journal.parent)
        _replicas_running(lab)
    finally:
        up = run_cli("lab", "up", cwd=lab.work, timeout=180)
        assert up.returncode == 0 and "prometheus" in up.stdout, up.stdout + up.stderr


def test_prometheus_restarted_mid_drill_is_ridden_through(lab: Lab, tmp_path: Path) -> None:  # noqa: F811
    log = tmp_path / "stderr.txt"
    with log.open("w") as stderr:
        proc, reports = _outage(lab, stderr)
        state = _state(lab)
        old = state.procs["prometheus"]
        stop_proc(old)  # stopped by the lab's own record (pid and command line)...
        assert not alive(old.pid)
        deadline = time.monotonic() + 15
        while "attempt 1/5 failed" not in log.read_text():  # ...until the drill finds it gone
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        state.procs["prometheus"] = start_prom(state)  # ...then started again, as `lab up` does
        state.save()
        rc, _, _ = _finish(proc)
    err = log.read_text()
    assert rc == 0, f"a short Prometheus restart must not end the drill: exit {rc}\n{err}"
    journal = _journal(reports, NAMES[0])
    assert journal is not None
    report = _report(journal.parent)
    assert report["status"] == "passed", report["reason"]
    assert 2 <= report["measures"]["time_to_detect"] < 30, report["measures"]
    assert not pending_reverts(journal.parent)
    _replicas_running(lab)
