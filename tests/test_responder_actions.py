"""Responders' actions from other shells: every command timed and recorded in the run folder,
none dropped, and none accepted once the run has ended (said, exit 2)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from drillkit.cli import main
from drillkit.respond import ActionKind, Role, read_actions

RUN = "0badc0de"


def started_run(root: Path, finished: bool = False) -> Path:
    folder = root / f"2026-05-04T101500Z-exercise-{RUN}"
    folder.mkdir(parents=True)
    t0 = datetime(2026, 5, 4, 10, 15, tzinfo=UTC)
    lines = [{"kind": "started", "at": t0.isoformat().replace("+00:00", "Z"), "mono": 10.0, "run_id": RUN}]
    if finished:
        end = (t0 + timedelta(seconds=90)).isoformat().replace("+00:00", "Z")
        lines.append({"kind": "finished", "at": end, "mono": 100.0, "status": "passed", "reason": ""})
    (folder / "journal.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return folder


def cli(root: Path, *args: str) -> tuple[int, str]:
    r = CliRunner().invoke(main, [*args[:1], RUN, *args[1:], "--report-dir", str(root), "--by", "alice"])
    return r.exit_code, r.output


@pytest.mark.parametrize(
    ("args", "kind", "expected"),
    [
        (("ack", "--severity", "P2", "--note", "pool looks full"), ActionKind.ACK, {"severity": "P2"}),
        (
            ("channel", "#incident-2026-05-04-db-slots"),
            ActionKind.CHANNEL,
            {"message": "#incident-2026-05-04-db-slots"},
        ),
        (("step", "2"), ActionKind.STEP_DONE, {"step": 2}),
        (("note", "pg_stat_activity: 17 idle"), ActionKind.NOTE, {"message": "pg_stat_activity: 17 idle"}),
        (("handover", "comms", "bob"), ActionKind.HANDOVER, {"role": Role.COMMUNICATIONS_LEAD, "to": "bob"}),
        (("hint",), ActionKind.HINT_REQUEST, {}),
        (("give-up",), ActionKind.GIVE_UP, {}),
    ],
)
def test_each_action_is_recorded_with_its_time_and_author(
    tmp_path: Path, args: tuple[str, ...], kind: ActionKind, expected: dict[str, object]
) -> None:
    folder = started_run(tmp_path)
    before = datetime.now(UTC)
    code, out = cli(tmp_path, *args)
    assert code == 0, out
    assert "UTC (by alice)" in out, out
    (action,) = read_actions(folder)
    assert action.kind is kind and action.by == "alice", action
    assert before <= action.at <= datetime.now(UTC), (before, action.at)
    for key, value in expected.items():
        assert getattr(action, key) == value, (key, action)


def test_several_steps_at_once_and_actions_accumulate(tmp_path: Path) -> None:
    folder = started_run(tmp_path)
    assert cli(tmp_path, "step", "1", "3")[0] == 0
    assert cli(tmp_path, "ack")[0] == 0
    assert cli(tmp_path, "ack", "--severity", "P1")[0] == 0  # a second ack is kept too
    kinds = [(a.kind, a.step) for a in read_actions(folder)]
    assert kinds == [(ActionKind.STEP_DONE, 1), (ActionKind.STEP_DONE, 3), (ActionKind.ACK, 0), (ActionKind.ACK, 0)]


@pytest.mark.parametrize("args", [("ack",), ("note", "late"), ("hint",), ("step", "1"), ("give-up",)])
def test_an_ended_run_refuses_actions_and_says_so(tmp_path: Path, args: tuple[str, ...]) -> None:
    folder = started_run(tmp_path, finished=True)
    code, out = cli(tmp_path, *args)
    assert code == 2, out
    assert f"run {RUN} ended at 2026-05-04T10:16:30" in out and "(passed): nothing recorded" in out, out
    assert read_actions(folder) == []


def test_an_unknown_run_is_bad_input(tmp_path: Path) -> None:
    code, out = cli(tmp_path, "ack")
    assert code == 2 and f"no run {RUN!r}" in out, out


def test_damaged_lines_are_skipped_not_fatal(tmp_path: Path) -> None:
    folder = started_run(tmp_path)
    (folder / "updates.jsonl").write_text('{"kind": "ack"\n{"kind": "nonsense", "at": "x"}\n')
    assert cli(tmp_path, "note", "still here")[0] == 0
    assert [a.message for a in read_actions(folder)] == ["still here"]
