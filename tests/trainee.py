"""What the trainee-session tests share (lab and Kubernetes): waiting for the exercise's journal,
reading the scorecard, and the grep that nothing a trainee sees names the fault."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from drillkit.scenario import Scenario


def journal_kinds(journal: Path) -> list[str]:
    try:
        return [json.loads(line)["kind"] for line in journal.read_text().splitlines() if line.strip()]
    except (OSError, ValueError):  # a line being written
        return []


def wait_event(reports: Path, kind: str, timeout: float = 90) -> Path:
    """The run folder under `reports` once its journal has a `kind` event."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        journals = list(reports.glob("*/journal.jsonl")) if reports.exists() else []
        if journals and kind in journal_kinds(journals[0]):
            return journals[0].parent
        time.sleep(0.1)
    raise AssertionError(f"no {kind!r} event under {reports} within {timeout}s")


def scorecard(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "scorecard.json").read_text())


def line(card: dict[str, Any], item: str) -> dict[str, Any]:
    return next(x for x in card["targets"] + card["checks"] if x["item"].startswith(item))


def giveaways(sc: Scenario, *words: str) -> list[str]:
    """What must never reach a blind trainee: the scenario's fault kinds, its name and alert,
    and `words` (the fault's parameters and the words describing it)."""
    return [*(f.kind for f in sc.faults), sc.name, sc.detection.alert, *words]


def named(text: str, secrets: list[str]) -> list[str]:
    """The giveaways `text` contains (case-insensitive)."""
    return [s for s in secrets if s.lower() in text.lower()]
