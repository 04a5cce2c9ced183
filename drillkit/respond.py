"""Acknowledgement sources: who says "I'm on it", and when.

`auto` acknowledges at detection (unattended CI runs measure detection only); `command` waits
for `drillkit ack RUN_ID` from another shell, which records the time it was run; `prompt` asks
the trainee at the terminal; `alertmanager` waits for a silence matching the alert.
The acknowledgement time is always the acknowledger's, not our poll loop's.
"""

from __future__ import annotations

import json
import os
import re
import select
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from drillkit.clock import parse_time, rfc3339, utcnow
from drillkit.errors import InputError, PreflightError
from drillkit.files import write_atomically
from drillkit.signals import StopFlag, wait_until

ACK_FILE = "ack.json"


@dataclass(frozen=True)
class Ack:
    at: datetime
    by: str
    note: str = ""
    severity: str = ""  # the responder's classification (trainee mode), graded in the report


class AckWaiter(Protocol):
    def wait(self, detected_at: datetime, deadline: float, stop: StopFlag, tick: Callable[[], None]) -> Ack | None:
        """Block until acknowledged (returning when), the monotonic deadline, or stop."""


@dataclass
class AutoAck:
    def wait(self, detected_at: datetime, deadline: float, stop: StopFlag, tick: Callable[[], None]) -> Ack | None:
        return Ack(detected_at, "auto", "acknowledged at detection (unattended run)")


@dataclass
class CommandAck:
    """Waits for the file `drillkit ack` writes into the run's report folder."""

    folder: Path

    def wait(self, detected_at: datetime, deadline: float, stop: StopFlag, tick: Callable[[], None]) -> Ack | None:
        path = self.folder / ACK_FILE

        def acknowledged() -> Ack | None:
            if path.exists():
                raw = json.loads(path.read_text(encoding="utf-8"))
                at = parse_time(raw["at"])
                if at >= detected_at:  # an ack from before the alert fired acknowledges nothing
                    return Ack(at, raw.get("by", ""), raw.get("note", ""))
            tick()
            return None

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


def write_ack(report_root: Path, run_id: str, by: str, note: str = "") -> Path:
    """Record an acknowledgement for a running drill (`drillkit ack`)."""
    folder = find_run_folder(report_root, run_id)
    path = folder / ACK_FILE
    write_atomically(path, json.dumps({"at": rfc3339(utcnow()), "by": by, "note": note}), durable=False)
    return path


def find_run_folder(report_root: Path, run_id: str) -> Path:
    matches = sorted(report_root.glob(f"*-{run_id}"))
    if not matches:
        raise InputError(f"no run {run_id!r} under {report_root}/ (see the run's first output line)")
    return matches[-1]


def check_interactive(source: str) -> None:
    if source == "prompt" and not sys.stdin.isatty():
        raise PreflightError(
            "response.acknowledge is `prompt` but stdin is not a terminal; "
            "use `command` (drillkit ack RUN_ID) or `auto` for unattended runs"
        )


def write_update(report_root: Path, run_id: str, message: str, status_page: bool) -> Path:
    """Append a status update to the run folder's updates file (read by the report)."""
    folder = find_run_folder(report_root, run_id)
    path = folder / "updates.jsonl"
    kind = "status_page" if status_page else "status_update"
    line = json.dumps({"kind": kind, "at": rfc3339(utcnow()), "message": message})
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line + "\n")
    return path
