"""Bytes already on disk that are not UTF-8 text (issue 17): a journal line with invalid bytes
is a located damaged line (a FAILED line for cleanup, an error naming it for `drillkit report`,
a skipped run for the index), never a traceback; a lone surrogate escape (how JSON keeps an
undecodable byte) stays exact in the journal, for cleanup, and is shown as U+FFFD in reports."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

from drillkit.journal import iter_journal, read_journal
from drillkit.report import FORMATS, render
from tests.helpers import run_cli
from tests.test_policy_journal_report import fixed_journal

T0 = datetime(2026, 11, 29, 9, 30, tzinfo=UTC)
NOTE = b'{"kind": "note", "at": "2026-11-29T09:30:03.000000Z", "mono": 1003.0, "text": "caf\xe9 \xff"}\n'


def run_with_line(root: Path, line: bytes, at: int = 5) -> Path:
    """The demo run with `line` inserted as line `at` of its journal."""
    folder = root / "2026-11-29T093000Z-exporter-kill-0123abcd"
    fixed_journal(folder, T0)
    path = folder / "journal.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join([*lines[: at - 1], line, *lines[at - 1 :]]))
    return folder


def test_invalid_bytes_are_a_located_damaged_line(tmp_path: Path) -> None:
    folder = run_with_line(tmp_path / "reports", NOTE)
    path = folder / "journal.jsonl"
    damage: list[str] = []
    kinds = [e.kind for e in read_journal(path, damage)]
    assert "note" not in kinds and kinds[0] == "started" and kinds[-1] == "finished", kinds
    assert damage == [f"{path}:5: journal line is not UTF-8 text (byte 0xe9 at column 83)"], damage
    r = run_cli("report", str(folder))
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    located = "journal.jsonl:5: journal line is not UTF-8 text (byte 0xe9 at column 83)"
    assert r.stderr.strip().endswith(located), r.stderr
    r = run_cli("report", "index", str(tmp_path / "reports"))
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    problems = json.loads((tmp_path / "reports" / "index.json").read_text())["problems"]
    assert len(problems) == 1 and "journal.jsonl:5: journal line is not UTF-8 text" in problems[0], problems


def test_a_kind_that_is_not_text_is_a_damaged_line(tmp_path: Path) -> None:
    folder = run_with_line(tmp_path, b'{"kind": 5, "at": "2026-11-29T09:30:03Z", "mono": 1003.0}\n')
    damage: list[str] = []
    assert 5 not in [e.kind for e in read_journal(folder, damage)]
    assert len(damage) == 1 and ":5: journal line is not a drillkit event: kind is int" in damage[0], damage
    r = run_cli("report", str(folder))
    assert r.returncode == 2 and "Traceback" not in r.stderr and "journal.jsonl:5:" in r.stderr, r.stderr


def test_a_line_longer_than_the_limit_is_read_past_not_held(tmp_path: Path) -> None:
    long = b'{"kind": "note", "at": "2026-11-29T09:30:03Z", "mono": 1003.0, "text": "' + b"x" * 20_000 + b'"}\n'
    folder = run_with_line(tmp_path, long)
    damage: list[str] = []
    kinds = [e.kind for e in iter_journal(folder, damage, max_line=4096)]
    assert "note" not in kinds and kinds[-1] == "finished", kinds
    assert damage == [f"{folder / 'journal.jsonl'}:5: journal line longer than 4096 bytes"], damage
    assert "note" in [e.kind for e in iter_journal(folder)], "no limit unless asked (cleanup reads every record)"


def test_lone_surrogates_stay_exact_in_the_journal_and_render_as_replacement_characters(tmp_path: Path) -> None:
    """`\\udcff` escapes in the scenario's title, a reason, a status update and a series label:
    every format renders (no UnicodeEncodeError) with U+FFFD, while the journal's reader keeps
    the exact string for cleanup."""
    folder = tmp_path / "run"
    fixed_journal(folder, T0, enrich=True)
    path = folder / "journal.jsonl"
    events = [json.loads(line) for line in path.read_text().splitlines()]
    events[0]["scenario"]["title"] = "caf\udcc3\udca9 \udcff"
    events[-1]["reason"] = "pid 42 (\udcfe) gone"
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    updates = folder / "updates.jsonl"
    update = {"kind": "status_update", "at": "2026-11-29T09:30:03.3Z", "message": "bad \udcff", "by": "al\udcffice"}
    updates.write_text(updates.read_text() + json.dumps(update) + "\n")
    series = json.loads((folder / "series.json").read_text())
    series["queries"][1]["series"][0]["labels"] = {"job": "x\udcff"}
    (folder / "series.json").write_text(json.dumps(series))
    assert read_journal(path)[0].data["scenario"]["title"] == "caf\udcc3\udca9 \udcff", "the reader changed the data"
    r = run_cli("report", str(folder))
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    for name in FORMATS.values():
        text = (folder / name).read_text(encoding="utf-8")
        assert not re.search(r"[\ud800-\udfff]|\\ud[89a-f]", text, re.I), f"{name} carries a lone surrogate"
    assert "caf\ufffd\ufffd \ufffd" in (folder / "report.md").read_text()
    assert "bad \ufffd" in (folder / "report.html").read_text()
    render(folder, ("html",))  # in process too
