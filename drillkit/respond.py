"""Responders' actions and acknowledgement sources: who says "I'm on it", and what they did.

Responders act from other shells (`drillkit ack`, `channel`, `step`, `note`, `handover`,
`hint`, `give-up`; status updates are `drillkit update`'s, see drillkit.updates) or at a
trainee's terminal; every action is appended, with the time it was taken, to the run folder's
`updates.jsonl`, which the report merges into the timeline (a second process never writes
the runner's journal). Nothing is dropped: an action taken early or late is kept with its time
and judged as such by the scorecard; an action against a run that has ended is refused
(`RunEnded`), not silently recorded, and so is text that is not UTF-8 (no report could be
written with it). A run id is checked against the form drillkit makes before it names a folder.

Acknowledgement sources: `auto` acknowledges at detection (unattended CI runs measure detection
only); `command` waits for `drillkit ack RUN_ID`, timed when it was run (an ack sent before the
alert fired counts from the firing, and says how early it was); `prompt` asks the trainee at
the terminal; `alertmanager` waits for a silence matching the alert. The acknowledgement time
is always the acknowledger's, not our poll loop's.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import re
import select
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import IO, Any, Protocol

from drillkit.clock import parse_time, rfc3339, utcnow
from drillkit.errors import InputError, PreflightError
from drillkit.journal import JOURNAL_NAME, iter_journal, printable
from drillkit.model import format_duration
from drillkit.redact import is_text
from drillkit.scenario import Severity
from drillkit.signals import StopFlag, wait_until

ACTIONS_NAME = "updates.jsonl"  # the name the report reads (status updates came first)
# A run id exactly as drillkit.engine.new_run_id makes it (secrets.token_hex(4)): checked before
# it goes into any path, so an id cannot climb out of the reports folder or match as a glob.
RUN_ID = re.compile(r"[0-9a-f]{8}")


@dataclass(frozen=True)
class Ack:
    at: datetime
    by: str
    note: str = ""
    severity: str = ""  # the responder's classification, graded in the report


class AckWaiter(Protocol):
    def wait(self, detected_at: datetime, deadline: float, stop: StopFlag, tick: Callable[[], None]) -> Ack | None:
        """Block until acknowledged (returning when), the monotonic deadline, or stop."""


@dataclass
class AutoAck:
    def wait(self, detected_at: datetime, deadline: float, stop: StopFlag, tick: Callable[[], None]) -> Ack | None:
        return Ack(detected_at, "auto", "acknowledged at detection (unattended run)")


@dataclass
class CommandAck:
    """Waits for `drillkit ack`'s action in the run's report folder."""

    folder: Path

    def wait(self, detected_at: datetime, deadline: float, stop: StopFlag, tick: Callable[[], None]) -> Ack | None:
        def acknowledged() -> Ack | None:
            ack = first_ack(read_actions(self.folder), detected_at)
            if ack is None:
                tick()
            return ack

        return wait_until(acknowledged, deadline, 0.2, stop)


@dataclass
class PromptAck:
    """The trainee presses Enter at the terminal, optionally typing the severity they assign
    (graded against the scenario's) and a note first: `P2 checking the pods`."""

    out: Callable[[str], None]

    def wait(self, detected_at: datetime, deadline: float, stop: StopFlag, tick: Callable[[], None]) -> Ack | None:
        self.out(
            "ALERT FIRING: acknowledge by pressing Enter; type your severity (P1-P4) "
            "and a note first if you like, e.g. `P2 checking the pods`"
        )

        tolerate_bytes(sys.stdin)

        def pressed_enter() -> Ack | None:
            # select() is this loop's pause: it returns the moment a line arrives, so the
            # acknowledgement time is the keypress's, not the next poll's
            ready, _, _ = select.select([sys.stdin], [], [], max(0.0, min(0.2, deadline - time.monotonic())))
            if ready:
                at = utcnow()
                line = sys.stdin.readline().strip()
                m = re.match(r"(?i)(P[1-4])\b\s*(.*)", line)
                severity, note = (m.group(1).upper(), m.group(2)) if m else ("", line)
                return Ack(at, os.environ.get("USER", "trainee"), note, severity)
            tick()
            return None

        return wait_until(pressed_enter, deadline, 0.0, stop)


def tolerate_bytes(stream: IO[str]) -> None:
    """A terminal's bytes that are not UTF-8 are kept as lone surrogates (to be refused or
    mended), instead of an exception in the drill's loop."""
    if isinstance(stream, io.TextIOWrapper):
        stream.reconfigure(errors="surrogateescape")


class ActionKind(StrEnum):
    """What a responder did; the values are the event kinds in the report's timeline."""

    ACK = "ack"
    STATUS_UPDATE = "status_update"
    STATUS_PAGE = "status_page"
    CHANNEL = "channel"
    STEP_DONE = "step_done"
    NOTE = "note"
    HANDOVER = "handover"
    HINT_REQUEST = "hint_request"
    GIVE_UP = "give_up"


class Role(StrEnum):
    """The playbook's response roles."""

    INCIDENT_COMMANDER = "incident-commander"
    TECHNICAL_LEAD = "technical-lead"
    COMMUNICATIONS_LEAD = "communications-lead"
    OPERATIONS_LEAD = "operations-lead"


ROLE_ALIASES = {"ic": Role.INCIDENT_COMMANDER, "tech": Role.TECHNICAL_LEAD, "comms": Role.COMMUNICATIONS_LEAD}
ROLE_ALIASES |= {"ops": Role.OPERATIONS_LEAD}


@dataclass(frozen=True)
class Action:
    """One responder action, as appended to the run folder's actions file. `message` is the
    note, the update's text or the channel name; `step` a runbook step (1-based, initial
    response first, then resolution)."""

    kind: ActionKind
    at: datetime
    by: str
    message: str = ""
    severity: Severity | None = None
    step: int = 0
    role: Role | None = None
    to: str = ""
    state: str = ""  # a status update's state (investigating…), checked by drillkit.updates

    def to_dict(self) -> dict[str, Any]:
        raw: dict[str, Any] = {"kind": self.kind.value, "at": rfc3339(self.at), "by": self.by}
        raw["message"] = self.message
        for key in ("severity", "role"):
            if (value := getattr(self, key)) is not None:
                raw[key] = value.value
        if self.step:
            raw["step"] = self.step
        if self.to:
            raw["to"] = self.to
        if self.state:
            raw["state"] = self.state
        return raw

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Action:
        """The inverse of `to_dict`; raises ValueError/KeyError/TypeError on a damaged line."""

        def opt(enum: Any, key: str) -> Any:
            return enum(raw[key]) if raw.get(key) else None

        return cls(
            ActionKind(raw["kind"]),
            parse_time(str(raw["at"])),
            str(raw.get("by", "")),
            str(raw.get("message", "")),
            opt(Severity, "severity"),
            int(raw.get("step", 0)),
            opt(Role, "role"),
            str(raw.get("to", "")),
            str(raw.get("state", "")),
        )


class RunEnded(InputError):
    """The run has finished: an action now would be recorded but count for nothing."""


def check_run_id(run_id: str) -> str:
    """`run_id` if it is of the form drillkit makes, else bad input: before it names any path."""
    if not RUN_ID.fullmatch(run_id):
        raise InputError(f"{run_id!r} is not a run id (8 lowercase hex digits: see the run's first output line)")
    return run_id


def find_run_folder(report_root: Path, run_id: str) -> Path:
    """The folder of run `run_id` directly under `report_root`: its name ends in `-RUN_ID`
    (compared as text over the listing; the id is never a path or a pattern)."""
    suffix = f"-{check_run_id(run_id)}"
    try:
        matches = sorted(p for p in report_root.iterdir() if p.name.endswith(suffix) and p.is_dir())
    except OSError:
        matches = []
    if not matches:
        raise InputError(f"no run {run_id!r} under {report_root}/ (see the run's first output line)")
    return matches[-1]


def run_folders(root: Path) -> list[Path]:
    """Every run folder (one holding a journal) at any depth below `root`, sorted: the one
    discovery `report index`, `report trends` and `attempts` share, so artifacts unpacked side
    by side are found by each."""
    return sorted(Path(d) for d, _, files in os.walk(root) if JOURNAL_NAME in files)


def ended(folder: Path) -> str:
    """'' while the run is going, else when and how it ended (a damaged line elsewhere in the
    journal does not hide its end)."""
    try:
        end = next((e for e in iter_journal(folder, damage=[]) if e.kind == "finished"), None)
    except InputError:
        return ""  # no journal yet (the runner is creating it): the run is starting
    return f"{rfc3339(end.at)} ({end.data.get('status', '?')})" if end else ""


def typed(what: str, text: str) -> str:
    """`text` as a person typed it, refused (exit 2) if it holds bytes that were not UTF-8: a
    report could not be written with them."""
    if not is_text(text):
        raise InputError(f"{what} {text!a} is not UTF-8 text: nothing recorded (check the terminal's encoding)")
    return text


def record(folder: Path, action: Action) -> Action:
    """Append `action` to the run's actions file (locked, so shells acting at once do not tear
    each other's lines); a run that has ended refuses it, and so does text that is not UTF-8."""
    for name, what in (("by", "--by"), ("message", "the text"), ("to", "the name"), ("state", "the state")):
        typed(what, getattr(action, name))
    if over := ended(folder):
        raise RunEnded(f"run {folder.name.rsplit('-', 1)[-1]} ended at {over}: nothing recorded")
    with open(folder / ACTIONS_NAME, "a", encoding="utf-8") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        fh.write(json.dumps(action.to_dict()) + "\n")
        fh.flush()
    return action


def act(report_root: Path, run_id: str, kind: ActionKind, by: str, **fields: Any) -> Action:
    """Record what a responder did now, for run `run_id` (the responder commands)."""
    return record(find_run_folder(report_root, run_id), Action(kind, utcnow(), by, **fields))


def action_lines(folder: Path) -> Iterator[Any]:
    """The parsed lines of the run's actions file, mended (bytes that are not UTF-8, lone
    surrogate escapes: another process, or a hand, wrote them); a line that is not JSON is
    skipped. What each line means is the reader's to check."""
    try:
        text = (folder / ACTIONS_NAME).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return
    for line in text.split("\n"):  # not splitlines(): a raw U+2028 in a hand's line is no line break
        try:
            yield printable(json.loads(line))
        except ValueError:
            continue


def read_actions(folder: Path) -> list[Action]:
    """Every action recorded for the run, in the order taken; damaged lines are skipped (the
    report does the same)."""
    out = []
    for raw in action_lines(folder):
        try:
            out.append(Action.from_dict(raw))
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
    return sorted(out, key=lambda a: a.at)


def first_ack(actions: list[Action], detected_at: datetime) -> Ack | None:
    """The first acknowledgement; one sent before the alert fired counts from the firing (a
    page cannot be acknowledged before it goes out) and says how early it came."""
    ack = next((a for a in actions if a.kind is ActionKind.ACK), None)
    if ack is None:
        return None
    severity = ack.severity.value if ack.severity else ""
    if ack.at >= detected_at:
        return Ack(ack.at, ack.by, ack.message, severity)
    early = format_duration((detected_at - ack.at).total_seconds())
    note = f"{ack.message} (acknowledged {early} before the alert fired)".strip()
    return Ack(detected_at, ack.by, note, severity)


def write_ack(report_root: Path, run_id: str, by: str, note: str = "", severity: str = "") -> Path:
    """Record an acknowledgement for a running drill (`drillkit ack`)."""
    folder = find_run_folder(report_root, run_id)
    record(folder, Action(ActionKind.ACK, utcnow(), by, note, Severity(severity) if severity else None))
    return folder / ACTIONS_NAME


def check_interactive(source: str) -> None:
    if source == "prompt" and not sys.stdin.isatty():
        raise PreflightError(
            "response.acknowledge is `prompt` but stdin is not a terminal; "
            "use `command` (drillkit ack RUN_ID) or `auto` for unattended runs"
        )
