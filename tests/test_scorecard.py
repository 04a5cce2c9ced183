"""The scorecard, judged from a run folder with fixed times, against golden files.

The run: a P2 database drill; the alert fired at +3 s, the trainee acknowledged at +50 s (the
scenario's response target is 30 s: 17 s late) assigning P3 (wrong), declared a well-formed
channel, posted a status page update and a status update, marked two runbook steps done,
used one hint, handed the comms role over, and mitigated at +70 s."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from drillkit.respond import Action, ActionKind, Role, record
from drillkit.scenario import Severity
from drillkit.scorecard import build_scorecard, write_attempts, write_scorecard

GOLDEN = Path(__file__).parent / "golden"
T0 = datetime(2026, 5, 4, 10, 15, tzinfo=UTC)


def _at(offset: float) -> str:
    return (T0 + timedelta(seconds=offset)).isoformat(timespec="microseconds").replace("+00:00", "Z")


def exercise_folder(root: Path, run_id: str = "5c0reca4", trainee: str = "alice") -> Path:
    folder = root / f"2026-05-04T101500Z-lab-database-exhaustion-{run_id}"
    folder.mkdir(parents=True)
    scenario = {
        "name": "lab-database-exhaustion",
        "title": "PostgreSQL connection slots exhausted",
        "incident": "database",
        "severity": "P2",
        "description": "Something holds every connection slot.",
        "alert": "ChatbotDatabaseConnectionsExhausted",
        "faults": [{"kind": "db-connection-exhaustion", "params": {}}],
        "steady_state": [],
        "runbook": {"initial_response": ["Check database metrics", "Review slow query logs"], "resolution": ["Kill"]},
    }
    limits = {"detect": 60.0, "acknowledge": 30.0, "mitigate": 120.0, "resolve": 28800.0}
    limits |= {"status_update_every": 1800.0, "status_page_within": 600.0}

    def ev(kind: str, offset: float, **data: object) -> str:
        return json.dumps({"kind": kind, "at": _at(offset), "mono": 100 + offset, **data})

    lines = [
        ev("started", 0, run_id=run_id, scenario=scenario, limits=limits),
        ev("injected", 1, fault="db-connection-exhaustion"),
        ev("exercise_started", 1.01, trainee=trainee, symptom="...", hints=3),
        ev("detected", 4, alert="ChatbotDatabaseConnectionsExhausted"),
        ev("hint_shown", 20, number=1, text="initial response: Check database metrics", reason="request", by=trainee),
        ev("acknowledged", 51, by=trainee, note="", source="command", severity="P3"),
        ev("mitigated", 71),
        ev("reverted", 72),
        ev("resolved", 73),
        ev("finished", 74, status="failed", reason=""),
    ]
    (folder / "journal.jsonl").write_text("\n".join(lines) + "\n")

    def a(offset: float, kind: ActionKind, **kw: object) -> None:
        record(folder, Action(kind, T0 + timedelta(seconds=offset), kw.pop("by", trainee), **kw))  # type: ignore[arg-type]

    # recorded while the run is going: the journal's `finished` line is added after
    (folder / "journal.jsonl").write_text("\n".join(lines[:-1]) + "\n")
    a(19, ActionKind.HINT_REQUEST)
    a(51, ActionKind.ACK, severity=Severity.P3, message="db errors")
    a(55, ActionKind.CHANNEL, message="#incident-2026-05-04-db-connections")
    a(60, ActionKind.STATUS_PAGE, message="Investigating failed messages", state="investigating")
    a(62, ActionKind.STEP_DONE, step=1)
    a(65, ActionKind.HANDOVER, role=Role.COMMUNICATIONS_LEAD, to="bob")
    a(68, ActionKind.STEP_DONE, step=3, by="bob")
    a(69, ActionKind.STATUS_UPDATE, message="Connections released", state="monitoring", by="bob")
    (folder / "journal.jsonl").write_text("\n".join(lines) + "\n")
    return folder


@pytest.mark.parametrize("name", ["scorecard.md", "scorecard.json"])
def test_scorecard_golden(tmp_path: Path, name: str) -> None:
    folder = exercise_folder(tmp_path)
    write_scorecard(folder)
    text = (folder / name).read_text()
    golden = GOLDEN / name
    if os.environ.get("DRILLKIT_UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text(), f"{name} differs from {golden}; DRILLKIT_UPDATE_GOLDEN=1 to accept"


def test_what_the_scorecard_judges(tmp_path: Path) -> None:
    card = build_scorecard(exercise_folder(tmp_path))
    by_item = {x.item.split(" (")[0]: x for x in card.targets + card.checks}
    assert by_item["Time to acknowledge"].outcome == "missed"
    assert "acknowledged 17.0s after the target" in by_item["Time to acknowledge"].detail
    assert by_item["Severity assigned"].outcome == "wrong"
    assert by_item["Incident channel"].outcome == "right"
    assert [s.number for s in card.steps if s.done] == [1, 3]
    assert card.people["bob"][0].endswith("runbook step 3 done")


def test_attempts_page_lists_every_trainee(tmp_path: Path) -> None:
    for run_id, who in (("aaaa0001", "alice"), ("bbbb0002", "bob")):
        write_scorecard(exercise_folder(tmp_path, run_id, who))
    md, html = write_attempts(tmp_path)
    text = md.read_text()
    assert "### `lab-database-exhaustion`" in text and "| alice |" in text and "| bob |" in text, text
    assert "aaaa0001/scorecard.md" in text and "bbbb0002/scorecard.html" in html.read_text()
    # a table per trainee, with the times of each attempt (the synthetic run: acknowledged 47 s
    # after the page, restored 70 s after the injection)
    per = text.split("## Per drill")[0]
    assert "### alice" in per and "### bob" in per, per
    alice = per.split("### alice")[1].split("###")[0]
    assert "| `lab-database-exhaustion` |" in alice and "| 47.0s | 1m10s |" in alice, alice


@pytest.mark.parametrize(
    ("name", "said"),
    [
        ("db-broken", "starts with `#`"),
        ("#db-broken", "prefix should be `#incident-`"),
        ("#incident-db", "the date (YYYY-MM-DD)"),
        ("#incident-2026-05-04", "short description is missing"),
        ("#incident-2026-05-04-DB-Pool", "should be lowercase"),
        ("#incident-2026-05-04-db_pool", "single dashes only"),
        ("#incident-2026-05-03-db-pool", "the date should be the incident's, 2026-05-04"),
        ("#incident-2026-05-04-db-pool", ""),
    ],
)
def test_a_channel_name_is_told_which_part_of_the_convention_it_breaks(name: str, said: str) -> None:
    from drillkit.scorecard import channel_note

    note = channel_note(name, "2026-05-04")
    assert (said in note) if said else note == "", f"{name}: {note!r}"
