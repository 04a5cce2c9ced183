"""Two drills, or a drill and a cleanup, on one lab at once (issue 8, cases 1 and 2).

The second drill is refused, naming the first, and never journals the first's fault as the
original state; `drillkit cleanup --all` leaves a live drill alone (and says so); the live
drill then finishes as if nothing happened; two cleanups at once report no spurious failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import drillkit_cmd, run_cli
from tests.test_lab_e2e import Lab, journal_kinds, lab, scenario_for, wait_steady  # noqa: F401 - the fixture

pytestmark = pytest.mark.integration


def _start(at: Lab, path: Path, reports: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        drillkit_cmd("run", str(path), "--report-dir", str(reports)),
        cwd=at.work,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def _wait_for(reports: Path, kind: str, proc: subprocess.Popen[str]) -> Path:
    deadline = time.monotonic() + 120
    while True:
        journal = next(reports.glob("*/journal.jsonl"), None)
        if journal is not None and kind in journal_kinds(journal):
            return journal.parent
        assert proc.poll() is None, f"drill ended before {kind}: {proc.communicate()}"
        assert time.monotonic() < deadline, f"no {kind!r} within 120 s"
        time.sleep(0.05)


def test_a_second_drill_and_a_cleanup_leave_a_live_drill_alone(lab: Lab, tmp_path: Path) -> None:  # noqa: F811
    latency = scenario_for(lab, "high-latency")
    outage = scenario_for(lab, "outage")
    wait_steady(lab, latency)
    wait_steady(lab, outage)
    first_reports = tmp_path / "first"
    first = _start(lab, latency, first_reports)
    try:
        folder = _wait_for(first_reports, "injected", first)
        run_id = folder.name.rsplit("-", 1)[1]

        second = run_cli("run", str(outage), "--report-dir", str(tmp_path / "second"), cwd=lab.work, timeout=120)
        assert second.returncode != 0, second.stderr
        assert f"drill lab-high-latency (run {run_id}," in second.stderr, second.stderr
        (second_folder,) = (tmp_path / "second").iterdir()
        kinds = journal_kinds(second_folder / "journal.jsonl")
        assert "revert_registered" not in kinds and "injected" not in kinds, kinds

        cleanups = [
            subprocess.Popen(
                drillkit_cmd("cleanup", "--all", "--report-dir", str(first_reports)),
                cwd=lab.work,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        for c in cleanups:
            out, err = c.communicate(timeout=120)
            assert c.returncode == 0, out + err
            assert f"run {run_id} is still running" in out + err, out + err
            assert "FAILED" not in out + err, out + err
        out, err = first.communicate(timeout=240)
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
    report = json.loads((folder / "report.json").read_text())
    assert first.returncode == 0 and report["status"] == "passed", f"{report['status']}: {report['reason']}\n{err}"


def test_a_full_disk_mid_drill_still_reverts_and_says_so(lab: Lab, tmp_path: Path) -> None:  # noqa: F811
    """Issue 8, case 5: the journal cannot grow past 4 KB (RLIMIT_FSIZE: writes fail with EFBIG,
    as on a full disk) once the fault is in place. The drill still reverts, names the revert in
    one clear message, exits 4, and the lab is restored; no traceback."""
    import resource
    import signal

    path = scenario_for(lab, "high-latency")
    wait_steady(lab, path)

    def small_disk() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of death, like ENOSPC
        resource.setrlimit(resource.RLIMIT_FSIZE, (4000, 4000))

    r = subprocess.run(
        drillkit_cmd("run", str(path), "--report-dir", str(tmp_path / "reports")),
        cwd=lab.work,
        capture_output=True,
        text=True,
        timeout=240,
        preexec_fn=small_disk,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "TMPDIR": str(tmp_path)},
    )
    assert r.returncode == 4, f"exit {r.returncode}:\n{r.stderr}"
    assert "Traceback" not in r.stderr, r.stderr
    assert "could not be written" in r.stderr and "revert done: latency" in r.stderr, r.stderr
    wait_steady(lab, path, timeout=60)  # the delay is gone
    (folder,) = (tmp_path / "reports").iterdir()
    again = run_cli("cleanup", "--all", "--report-dir", str(tmp_path / "reports"), cwd=lab.work, timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr  # a torn journal's revert runs again, harmlessly
    assert (folder / "report.json").exists(), "cleanup writes the report the full disk prevented"
    wait_steady(lab, path, timeout=60)
