"""Status updates and status-page entries (`drillkit update RUN_ID …`): who wrote them, in which
of the playbook's roles, and, for the status page, the incident's state as of then.

They are responders' actions like the others (drillkit.respond: appended with their time to
the run folder's `updates.jsonl`, refused once the run has ended); this module adds the status
page's states and merges every recorded action into the run's events (`read_updates`) for the
report and the verdicts, without letting a hand-edited line pose as one of the runner's events.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from pathlib import Path

from drillkit.clock import parse_time, utcnow
from drillkit.journal import Event
from drillkit.respond import ACTIONS_NAME, Action, ActionKind, Role, action_lines, find_run_folder, record

UPDATES_NAME = ACTIONS_NAME


class PageState(StrEnum):
    """A status page incident's states, in the order an incident normally goes through them."""

    INVESTIGATING = "investigating"
    IDENTIFIED = "identified"
    MONITORING = "monitoring"
    RESOLVED = "resolved"


def write_update(
    report_root: Path,
    run_id: str,
    message: str,
    status_page: bool,
    state: PageState | None = None,
    by: str = "",
    role: Role | None = None,
    at: datetime | None = None,
) -> Path:
    """Record one update for a running drill; the time is now (the writer's)."""
    folder = find_run_folder(report_root, run_id)
    kind = ActionKind.STATUS_PAGE if status_page else ActionKind.STATUS_UPDATE
    record(folder, Action(kind, at or utcnow(), by, message, role=role, state=state.value if state else ""))
    return folder / UPDATES_NAME


def read_updates(folder: Path, start: Event) -> list[Event]:
    """The recorded actions of a run folder as events on the journal's time axis (`start` is
    the journal's first event). Only responders' action kinds are merged (a line claiming to be
    `resolved` or `detected` would forge the verdicts), and a status-page state must be one of
    PageState; a torn or hand-edited line is skipped (and text that is not UTF-8 mended): the
    journal is the record."""
    kinds = {k.value for k in ActionKind}
    events = []
    for raw in action_lines(folder):
        try:
            kind, at = str(raw.pop("kind")), parse_time(str(raw.pop("at")))
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
        if kind not in kinds:
            continue
        if raw.get("state") and raw["state"] not in {s.value for s in PageState}:
            raw.pop("state")
        # one dated before the run began (a hand's, a skewed clock) sits at its start: the
        # journal's `started` stays the first event, which every reader takes for the run's
        after = max(0.0, (at - start.at).total_seconds())
        events.append(Event(kind, at, start.mono + after, raw))
    return events
