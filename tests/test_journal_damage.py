"""The journal under damage and contention: torn lines, garbage, a second writer (issue 8)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from drillkit.cleanup import cleanup
from drillkit.journal import Journal, JournalBusy, pending_reverts, read_journal


def _journal(folder: Path, run_id: str = "run1") -> Path:
    j = Journal(folder / "journal.jsonl")
    j.append("started", run_id=run_id, scenario={"target": {"local": {}}}, limits={})
    j.append("revert_registered", id=1, fault="process-kill", data={"pids": [1]})
    j.close()
    return folder / "journal.jsonl"


def test_damaged_lines_are_located_and_complete_events_kept(tmp_path: Path) -> None:
    path = _journal(tmp_path)
    with open(path, "a") as fh:
        fh.write('{"kind": "revert_do\n\x00\x00garbage\n')
    damage: list[str] = []
    events = read_journal(path, damage)
    assert [e.kind for e in events] == ["started", "revert_registered"]
    assert [d.split(": ")[0] for d in damage] == [f"{path}:3", f"{path}:4"], damage
    assert [p.id for p in pending_reverts(path, [])] == [1], "a damaged line must not hide the pending revert"


def test_appends_after_a_torn_line_start_on_a_new_line(tmp_path: Path) -> None:
    path = _journal(tmp_path)
    with open(path, "a") as fh:
        fh.write('{"kind": "dete')
    j = Journal(path)
    j.append("revert_done", id=1, fault="process-kill", result={})
    j.close()
    damage: list[str] = []
    kinds = [e.kind for e in read_journal(path, damage)]
    assert kinds == ["started", "revert_registered", "revert_done"], kinds
    assert len(damage) == 1 and ":3:" in damage[0]
    assert pending_reverts(path, []) == [], "the appended revert_done must count"


def test_a_journal_held_by_a_live_process_is_busy(tmp_path: Path) -> None:
    path = _journal(tmp_path)
    code = (
        "import sys, pathlib, drillkit.journal as j\n"
        "w = j.Journal(pathlib.Path(sys.argv[1]))\n"
        "print('held', flush=True)\n"
        "input()"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(JournalBusy, match="live drillkit process"):
            Journal(path)
    finally:
        holder.kill()
        holder.communicate()
    Journal(path).close()  # the kernel dropped the lock with the process


def test_cleanup_fails_loudly_on_an_unreadable_journal(tmp_path: Path) -> None:
    run = tmp_path / "2026-01-01T000000Z-x-run9"
    run.mkdir()
    (run / "journal.jsonl").write_text('{"kind": "star\x00\x00\n')
    report = cleanup(tmp_path, None, log=lambda _: None)
    assert any("not a drillkit journal" in line and str(run) in line for line in report.failed), report.lines()
    report = cleanup(tmp_path, "run9", log=lambda _: None)
    assert report.failed and not any("no journal of run" in n for n in report.notes), report.lines()


def test_cleanup_skips_a_live_run_and_says_so(tmp_path: Path) -> None:
    run = tmp_path / "2026-01-01T000000Z-x-live1"
    run.mkdir()
    path = _journal(run, "live1")
    live = Journal(path)  # the drill, still running in this process
    try:
        report = cleanup(tmp_path, None, log=lambda _: None)
    finally:
        live.close()
    assert any("live1 is still running" in n for n in report.notes), report.lines()
    assert not report.done and not report.failed, report.lines()
    assert [p.id for p in pending_reverts(path)] == [1]


def test_a_full_disk_keeps_events_in_memory_and_rescues_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path / "rescue"))
    (tmp_path / "rescue").mkdir()
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    full = tmp_path / "journal.jsonl"
    full.symlink_to("/dev/full")  # every write: ENOSPC, as on a full disk
    j = Journal(full)
    j.append("started", run_id="full1", scenario={}, limits={})
    j.append("revert_done", id=1, fault="latency", result={})
    j.close()
    assert j.write_error is not None and j.write_error.errno == 28, j.write_error
    assert [e.kind for e in j.events] == ["started", "revert_done"]
    rescued = j.rescue()
    assert rescued == tmp_path / "rescue" / "drillkit-full1-journal.jsonl"
    assert [e.kind for e in read_journal(rescued)] == ["started", "revert_done"]


def test_cleanup_ends_a_killed_run_as_aborted_and_writes_its_report(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from tests.test_policy_journal_report import fixed_journal

    folder = tmp_path / "2026-11-29T093000Z-exporter-kill-0123abcd"
    fixed_journal(folder, datetime(2026, 11, 29, 9, 30, 0, tzinfo=UTC))
    journal = folder / "journal.jsonl"
    lines = journal.read_text().splitlines()
    killed_at = next(i for i, line in enumerate(lines) if '"kind": "revert_registered"' in line)
    journal.write_text("\n".join(lines[:killed_at]) + "\n")  # SIGKILLed as it began to inject
    report = cleanup(tmp_path, "0123abcd", log=lambda _: None)
    assert any("report written" in line for line in report.done), report.lines()
    data = json.loads((folder / "report.json").read_text())
    assert data["status"] == "aborted" and "process died" in data["reason"], data["reason"]
    assert (folder / "report.html").exists() and (folder / "junit.xml").exists()
    again = cleanup(tmp_path, "0123abcd", log=lambda _: None)
    assert not again.done and not again.failed, again.lines()


@pytest.mark.parametrize(("tail", "loud"), [('{"kind": "revert_upd', False), ("\x00\x00garbage", True)])
def test_cleanup_notes_a_torn_last_line_but_fails_on_garbage(tmp_path: Path, tail: str, loud: bool) -> None:
    """A registration is fsynced before its harm, so a last line cut short (a writer that died
    mid-write) hides no fault: a note. Garbage may have been a record: FAILED."""
    run = tmp_path / "2026-01-01T000000Z-x-torn1"
    run.mkdir()
    j = Journal(run / "journal.jsonl")
    j.append("started", run_id="torn1", scenario={"target": {"local": {}}}, limits={})
    j.close()
    with open(run / "journal.jsonl", "a") as fh:
        fh.write(tail)
    report = cleanup(tmp_path, "torn1", log=lambda _: None)
    lines = report.failed if loud else report.notes
    assert any("journal.jsonl:2:" in line for line in lines), report.lines()
    if not loud:
        assert not any("journal.jsonl:2:" in line for line in report.failed), report.lines()
