"""An action dated before the run began (a responder's clock skewed, a hand-edited line) must
not become the run's first event: `collect()` read the run id from the first event and failed
with KeyError 'run_id', and `report index`/`trends` skipped the run as unreadable (issue 23)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from drillkit.history import find_runs
from drillkit.report import collect, render
from tests.test_policy_journal_report import fixed_journal

T0 = datetime(2026, 11, 29, 9, 30, tzinfo=UTC)


def test_an_update_dated_before_the_start_sits_at_the_start(tmp_path: Path) -> None:
    folder = tmp_path / "runs" / "run"
    fixed_journal(folder, T0)
    skewed = {"kind": "status_update", "at": "2026-11-29T09:29:00.000000Z", "message": "clock behind", "by": "ana"}
    with open(folder / "updates.jsonl", "a") as fh:
        fh.write(json.dumps(skewed) + "\n")

    data = collect(folder)
    assert data.events[0].kind == "started", [e.kind for e in data.events[:3]]
    assert data.run_id and data.run_id == data.events[0].data["run_id"]
    update = next(e for e in data.events if e.data.get("message") == "clock behind")
    assert update.mono == data.events[0].mono, "the skewed update is not placed at the run's start"

    runs, problems = find_runs(tmp_path / "runs")
    assert problems == [] and [r.run_id for r in runs] == [data.run_id], problems
    render(folder, ("json",))
    assert "clock behind" in (folder / "report.json").read_text()
