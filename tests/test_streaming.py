"""A journal of any size is read line by line and kept as a bounded digest (issue 17, item 7):
a long drill's flood (a repeating pod-kill journals its victims and a note every round) is
counted, while every event a report renders or a verdict reads is kept. How fast and how
little memory, at a million lines, is measured in benchmarks/streaming.py, never here."""

from __future__ import annotations

import json
import os
import threading
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from benchmarks.streaming import flood_run
from drillkit.history import find_runs
from drillkit.journal import KEEP_FIRST, KEEP_LAST, digest, iter_journal
from drillkit.report import FORMATS, collect, render

FLOOD = {"note", "revert_updated"}


def report_json(folder: Path) -> dict[str, Any]:
    render(folder, tuple(FORMATS))
    doc: dict[str, Any] = json.loads((folder / "report.json").read_text())
    return doc


def test_a_flooded_journal_reports_every_phase_and_counts_the_flood(tmp_path: Path) -> None:
    """19,998 flood events (9,999 victims and 9,999 notes) between the acknowledgement and the
    revert: the same verdicts, measures and phase events as without them; of each flooding kind
    the first and the latest are kept and the rest counted, with their times, in every format."""
    plain, flooded = report_json(flood_run(tmp_path / "plain", 2)), report_json(flood_run(tmp_path / "big", 20_000))
    for key in ("status", "measures", "verdicts", "post_mortem"):
        assert flooded[key] == plain[key], f"{key} changed with the flood"
    assert [e for e in flooded["events"] if e["kind"] not in FLOOD] == [
        e for e in plain["events"] if e["kind"] not in FLOOD
    ], "a phase event was lost or added"
    notes = [e for e in flooded["events"] if e["kind"] == "note"]
    assert len(notes) == KEEP_FIRST + KEEP_LAST
    assert notes[0]["text"] == "repeat: deleted chat-api-7d9f-000000", "the first ones kept"
    assert notes[-1]["text"] == f"repeat: deleted chat-api-7d9f-{9_998:06x}", "the latest ones kept"
    omitted = {o["kind"]: o for o in flooded["omitted_events"]}
    assert set(omitted) == FLOOD and "omitted_events" not in plain
    assert omitted["note"]["count"] == 9_999 - KEEP_FIRST - KEEP_LAST
    assert omitted["revert_updated"]["count"] == 10_000 - KEEP_FIRST - KEEP_LAST  # the demo's own update too
    assert 2.95 < omitted["note"]["first_offset_seconds"] < omitted["note"]["last_offset_seconds"] < 3.99
    folder = tmp_path / "big"
    assert f"- {9_999 - 250:,} more `note` events, from 2026-11-29 09:30:02." in (folder / "report.md").read_text()
    assert f"<li>{9_999 - 250:,} more <code>note</code> events" in (folder / "report.html").read_text()


def _peak(read: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        read()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("reader", ["digest", "report", "history"])
def test_ten_times_the_flood_takes_no_more_memory(tmp_path: Path, reader: str) -> None:
    """The readers keep bounded state: the peak of Python allocations while reading a journal
    does not grow with its flood (counted by tracemalloc, not timed)."""
    reads: dict[str, Callable[[Path], object]] = {
        "digest": lambda folder: digest(iter_journal(folder)),
        "report": collect,
        "history": lambda folder: find_runs(folder.parent),
    }
    read = reads[reader]
    read(flood_run(tmp_path / "warm" / "run", 600))  # first-use costs (regexes, imports) out of the way
    small, big = (_peak(lambda n=n: read(flood_run(tmp_path / str(n) / "run", n))) for n in (3_000, 30_000))
    assert big < 1.3 * small, f"{reader}: 10x the journal took {big / small:.1f}x the memory ({small} -> {big} B)"


def test_the_journal_is_read_as_it_is_written(tmp_path: Path) -> None:
    """iter_journal yields each event as its line arrives: through a pipe whose writer holds
    the rest back until the first event was read, the first event comes before the end."""
    source = flood_run(tmp_path / "run", 2) / "journal.jsonl"
    lines = source.read_bytes().splitlines(keepends=True)
    fifo = tmp_path / "fifo.jsonl"
    os.mkfifo(fifo)
    first_read = threading.Event()

    def writer() -> None:
        with open(fifo, "wb") as fh:
            fh.write(lines[0])
            fh.flush()
            first_read.wait(10)
            fh.writelines(lines[1:])

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        events = iter_journal(fifo)
        assert next(events).kind == "started" and thread.is_alive(), "the writer had to finish first"
        first_read.set()
        assert [e.kind for e in events][-1] == "finished"
    finally:
        first_read.set()
        thread.join(10)
