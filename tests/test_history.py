"""`drillkit report index|trends`: every run in one table, and per scenario / incident type and
quarter the pass rate and median times with the regressions against the previous quarter.
Synthetic history (journals with fixed times over three quarters) plus the report folders of
real lab drills committed under docs/examples/reports."""

from __future__ import annotations

import json
import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from drillkit.history import find_runs, quarter_of, trends
from tests.browser import open_page
from tests.helpers import run_cli
from tests.test_policy_journal_report import fixed_journal

EXAMPLES = Path(__file__).parent.parent / "docs" / "examples" / "reports"


def synthetic_run(root: Path, name: str, t0: datetime, detect: float, status: str = "passed", **edit: str) -> Path:
    """A run of the demo scenario renamed `name`, detected `detect` s after injection."""
    folder = root / f"{t0:%Y-%m-%dT%H%M%SZ}-{name}-{t0:%H%M%S}ab"
    fixed_journal(folder, t0)
    journal = folder / "journal.jsonl"
    events = [json.loads(line) for line in journal.read_text().splitlines()]
    events[0]["scenario"]["name"] = name
    events[0]["scenario"] |= edit
    for e in events:
        if e["kind"] in ("detected", "acknowledged"):
            e["at"] = (t0 + timedelta(seconds=0.04 + detect)).isoformat().replace("+00:00", "Z")
            e["mono"] = 1000.04 + detect
        if e["kind"] == "finished":
            e["status"] = status
    journal.write_text("".join(json.dumps(e) + "\n" for e in events))
    return folder


@pytest.fixture
def history(tmp_path: Path) -> Path:
    """outage: detection 3 s in Q2 and Q3, 9 s in Q4 (a regression); db: passes, then fails once
    in Q4 (a lower pass rate); a damaged folder; a not-started run (not judged)."""
    root = tmp_path / "reports"
    for day, (month, detect) in enumerate(((5, 3.0), (8, 3.0), (8, 3.4), (11, 9.0)), 1):
        synthetic_run(root, "outage", datetime(2026, month, day, 9, tzinfo=UTC), detect, incident="service-outage")
    for day, (month, status) in enumerate(((8, "passed"), (11, "passed"), (11, "failed"), (11, "not-started")), 10):
        synthetic_run(root, "db", datetime(2026, month, day, 9, tzinfo=UTC), 2.0, status, incident="database")
    (root / "2026-11-20T000000Z-broken-00000000").mkdir()
    (root / "2026-11-20T000000Z-broken-00000000" / "journal.jsonl").write_text("not json\n")
    return root


def test_quarters() -> None:
    assert [quarter_of(datetime(2026, m, 1, tzinfo=UTC)) for m in (1, 3, 4, 9, 10, 12)] == [
        "2026-Q1",
        "2026-Q1",
        "2026-Q2",
        "2026-Q3",
        "2026-Q4",
        "2026-Q4",
    ]


def test_trends_and_regressions(history: Path) -> None:
    runs, problems = find_runs(history)
    assert len(runs) == 8 and len(problems) == 1 and "broken" in problems[0], problems
    t = trends(runs)
    assert t.quarters == ["2026-Q2", "2026-Q3", "2026-Q4"]
    q3 = next(c for c in t.by_scenario["outage"] if c.quarter == "2026-Q3")
    assert q3.runs == 2 and q3.medians["time_to_detect"] == pytest.approx(3.2), q3
    db_q4 = next(c for c in t.by_scenario["db"] if c.quarter == "2026-Q4")
    assert (db_q4.runs, db_q4.judged, db_q4.passed, db_q4.pass_rate) == (3, 2, 1, 0.5), "not-started is not judged"
    assert sorted(r.text() for r in t.regressions) == [
        "incident database: pass rate 100% → 50% (2026-Q3 → 2026-Q4)",
        "incident service-outage: median time to detect 3.2s → 9.0s (2026-Q3 → 2026-Q4)",
        "scenario db: pass rate 100% → 50% (2026-Q3 → 2026-Q4)",
        "scenario outage: median time to detect 3.2s → 9.0s (2026-Q3 → 2026-Q4)",
    ]


def test_small_slowdowns_are_not_regressions(tmp_path: Path) -> None:
    root = tmp_path / "reports"
    synthetic_run(root, "fast", datetime(2026, 8, 1, tzinfo=UTC), 0.4)
    synthetic_run(root, "fast", datetime(2026, 11, 1, tzinfo=UTC), 0.9)  # +125%, but only 0.5 s
    assert trends(find_runs(root)[0]).regressions == []


def test_index_and_trends_commands(history: Path, tmp_path: Path) -> None:
    r = run_cli("report", "index", str(history))
    assert r.returncode == 0, r.stderr
    index = json.loads((history / "index.json").read_text())
    assert [run["started_at"][:7] for run in index["runs"]][:2] == ["2026-11", "2026-11"], "newest first"
    html = (history / "index.html").read_text()
    assert html.count("<tr><td>2026-") == 8 and "report.html" not in html, "no report rendered yet"
    r = run_cli("report", "trends", str(history), "--fail-on-regression")
    assert r.returncode == 1 and r.stderr.count("regression: ") == 4, (r.returncode, r.stderr)
    assert run_cli("report", "trends", str(history)).returncode == 0, "regressions fail only when asked"
    md = (history / "trends.md").read_text()
    assert "- scenario outage: median time to detect 3.2s → 9.0s (2026-Q3 → 2026-Q4)" in md
    assert "| `db` | 2026-Q4 | 3 | 50% (1/2) |" in md, md
    page = (history / "trends.html").read_text()
    assert page.count("<svg") == 3, "a pass-rate chart and one chart per scenario"
    shown = open_page(history / "trends.html", tmp_path / "browser")
    assert shown.dom.count("<svg") == 3 and not shown.requests, shown.requests


def test_index_links_each_rendered_report(tmp_path: Path) -> None:
    root = tmp_path / "reports"
    folder = synthetic_run(root / "ci" / "2026-Q4", "outage", datetime(2026, 11, 3, tzinfo=UTC), 3.0)
    assert run_cli("report", str(folder), "--format", "html").returncode == 0, "`drillkit report FOLDER` still renders"
    assert run_cli("report", "index", str(root)).returncode == 0
    rel = folder.relative_to(root).as_posix()
    assert f'<a href="{rel}/report.html">report</a>' in (root / "index.html").read_text()
    assert f"[report]({rel}/report.html)" in (root / "index.md").read_text()
    empty = tmp_path / "empty"
    empty.mkdir()
    bad = run_cli("report", "trends", str(empty))
    assert bad.returncode == 2 and "no run folders" in bad.stderr, bad.stderr


def test_history_over_real_lab_drills_and_synthetic_quarters(tmp_path: Path) -> None:
    """The report folders of real lab drills (docs/examples, made by scripts/examples.sh), plus a
    synthetic quarter before them: every real run is read, grouped and compared."""
    real = sorted(p.parent for p in EXAMPLES.rglob("journal.jsonl"))
    assert len(real) >= 4, f"docs/examples/reports holds too few real runs: {real}"
    root = tmp_path / "reports"
    for folder in real:
        shutil.copytree(folder, root / folder.name)
    runs, problems = find_runs(root)
    assert not problems and len(runs) == len(real), problems
    scenarios = {r.scenario for r in runs}
    earlier = min(r.started for r in runs) - timedelta(days=92)
    for name in scenarios:
        synthetic_run(root, name, earlier, 0.5, incident=next(r.incident for r in runs if r.scenario == name))
    t = trends(find_runs(root)[0])
    assert len(t.quarters) >= 2 and set(t.by_scenario) == scenarios
    assert all(re.fullmatch(r"(scenario|incident) \S+: .*", r.text()) for r in t.regressions)
    real_cells = [c for cells in t.by_scenario.values() for c in cells if c.quarter == t.quarters[-1]]
    assert all(c.medians["time_to_detect"] is not None for c in real_cells if c.passed), real_cells
