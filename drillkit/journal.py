"""The run journal: an append-only, fsynced JSONL timeline, the single record of a drill.

Each event has a UTC wall-clock time (`at`, for the timeline) and a monotonic time (`mono`,
for durations). Times that come from elsewhere (Prometheus's firing time, an ack written by
another process) are wall-clock; they are placed on the monotonic axis through the pair of
clocks read when the journal was opened, so every duration is a difference of `mono` values.
The report, `drillkit report` and `drillkit cleanup` read only this file.

The `started` event and every revert record are sealed with this host's journal key
(`drillkit.hostkey`): cleanup runs a revert only if `verify` accepts the lines it came from.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from drillkit import hostkey
from drillkit.clock import parse_time, rfc3339, utcnow
from drillkit.errors import DrillkitError, InputError
from drillkit.redact import redact_data

JOURNAL_NAME = "journal.jsonl"
SEALED = frozenset({"started", "revert_registered", "revert_updated"})  # what cleanup may act on


@dataclass(frozen=True)
class Event:
    kind: str
    at: datetime
    mono: float
    data: dict[str, Any] = field(default_factory=dict)
    line: int = field(default=0, compare=False)  # in the journal file, for located errors

    def to_json(self) -> str:
        return json.dumps(
            {"kind": self.kind, "at": rfc3339(self.at), "mono": self.mono, **self.data}, default=str, sort_keys=False
        )

    @classmethod
    def from_json(cls, line: str, number: int = 0) -> Event:
        raw = json.loads(line)
        kind, at, mono = raw.pop("kind"), parse_time(raw.pop("at")), float(raw.pop("mono"))
        if not isinstance(kind, str):
            raise TypeError(f"kind is {type(kind).__name__}, not a string")
        return cls(kind, at, mono, raw, number)


def held(path: Path) -> bool:
    """A live process holds the journal at `path` open for writing (a drill still running):
    its exclusive lock refuses a shared one."""
    try:
        with open(path, encoding="utf-8") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False


class JournalBusy(DrillkitError):
    """Another live process (the drill itself, or another cleanup) holds this journal."""


class Journal:
    """Append events to `path`, flushing and fsyncing each so a crash loses nothing.

    The writer holds an exclusive lock on the file for as long as it is open: the kernel drops
    it when the process dies, however it dies, so a journal that is locked belongs to a live
    drill (or cleanup) and nobody else may revert its faults."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._ref_wall, self._ref_mono = time.time(), time.monotonic()
        self._resumed = False
        self.events: list[Event] = []
        self._lock = threading.Lock()  # faults' background watchers append too
        self.write_error: OSError | None = None  # the first failed write (disk full…), if any
        self._run_id = ""  # what sealed events are bound to
        self._key: bytes | None = None
        if not path.exists() or not path.stat().st_size:  # a new journal is sealed: no key, no journal
            self._key = hostkey.key()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - kept open for the run
        try:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._fh.close()
            raise JournalBusy(f"{path}: in use by a live drillkit process") from None
        if path.stat().st_size:
            # Appending to another process's journal (`drillkit cleanup`): its monotonic clock
            # is not ours, so place our events on its axis through the wall clock.
            first_event = read_journal(path, damage=[])[0]
            self._ref_wall, self._ref_mono = first_event.at.timestamp(), first_event.mono
            self._run_id = str(first_event.data.get("run_id", ""))
            self._resumed = True
            self._fh.seek(path.stat().st_size - 1)
            if self._fh.read(1) != "\n":  # a torn last line: our events start on a line of their own
                self._write("\n")

    def mono_of(self, at: datetime) -> float:
        """Where a wall-clock instant falls on this process's monotonic axis."""
        return self._ref_mono + (at.timestamp() - self._ref_wall)

    def append(self, kind: str, at: datetime | None = None, **data: Any) -> Event:
        if at is None and not self._resumed:
            mono, at = time.monotonic(), utcnow()
        else:
            at = at or utcnow()
            mono = self.mono_of(at)
        event = Event(kind, at, mono, redact_data(data))
        if kind in SEALED:
            event = self._sealed(event)
        with self._lock:
            self.events.append(event)
            try:
                self._write(event.to_json() + "\n")
            except OSError as exc:  # the drill goes on and reverts: its caller reports the loss
                self.write_error = self.write_error or exc
        return event

    def _sealed(self, event: Event) -> Event:
        """`event` with its MAC under this host's key (made on first use; KeyRefused if it
        cannot be trusted or made: then nothing that needs a revert may happen)."""
        if event.kind == "started":
            self._run_id = str(event.data.get("run_id", ""))
        if self._key is None:
            self._key = hostkey.key()
        mac = hostkey.seal(self._key, self._run_id, event.kind, event.data)
        return Event(event.kind, event.at, event.mono, {**event.data, "mac": mac})

    def rescue(self) -> Path | None:
        """After a failed write, save every event kept in memory to a file beside the temp dir
        (another filesystem, often); returns where, or None if that failed too."""
        import tempfile

        run_id = self.events[0].data.get("run_id", "run") if self.events else "run"
        target = Path(tempfile.gettempdir()) / f"drillkit-{run_id}-{JOURNAL_NAME}"
        try:
            target.write_text("".join(e.to_json() + "\n" for e in self.events), encoding="utf-8")
        except OSError:
            return None
        return target

    def _write(self, text: str) -> None:
        self._fh.write(text)
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        try:
            self._fh.close()
        except OSError as exc:  # buffered data that could not be flushed
            self.write_error = self.write_error or exc


def iter_journal(path: Path, damage: list[str] | None = None, max_line: int | None = None) -> Iterator[Event]:
    """Events of a journal file (or of the journal in a report folder), one at a time as its
    lines are read: the memory it takes is one line's, whatever the journal's size.

    A line cut short by a writer that died mid-write is skipped (listed in `damage`, if given,
    as a "torn line"). Any other line that is not an event (garbage from a bad disk, bytes that
    are not UTF-8, a line longer than `max_line` bytes) is an error naming its line; with a
    `damage` list, every complete event is kept and the line is listed there instead. A journal
    without its `started` event first is an error."""
    if path.is_dir():
        path = path / JOURNAL_NAME
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed below, when the generator ends or is dropped
    except OSError as exc:
        raise InputError(f"{path}: cannot read journal: {exc.strerror}") from None
    started = False
    with fh:
        for n, raw in enumerate(_lines(fh, path, max_line), 1):
            if raw is None or not raw.strip():
                if raw is None:
                    _damaged(f"{path}:{n}: journal line longer than {max_line} bytes", damage)
                continue
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                bad = f"byte 0x{raw[exc.start]:02x} at column {exc.start + 1}"
                _damaged(f"{path}:{n}: journal line is not UTF-8 text ({bad})", damage)
                continue
            try:
                event = Event.from_json(line, n)
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                if line.startswith('{"kind": "') and not line.rstrip().endswith("}"):
                    # cut short by a writer that died mid-write (a later writer goes on below it):
                    # no revert is lost: a record is fsynced before its harm (a torn update leaves it as registered)
                    if damage is not None:
                        damage.append(f"{path}:{n}: torn line (its writer died mid-write), skipped: {exc}")
                    continue
                _damaged(f"{path}:{n}: journal line is not a drillkit event: {exc}", damage)
                continue
            if not started and event.kind != "started":
                break
            started = True
            yield event
    if not started:
        raise InputError(f"{path}:1: not a drillkit journal (no `started` event first)")


def _lines(fh: BinaryIO, path: Path, limit: int | None) -> Iterator[bytes | None]:
    """The raw lines of `fh`; None for a line longer than `limit` bytes (read past, never held)."""
    n = 0
    try:
        while raw := fh.readline(limit + 1 if limit else -1):
            n += 1
            if limit and len(raw) > limit and not raw.endswith(b"\n"):
                while (more := fh.readline(limit)) and not more.endswith(b"\n"):
                    pass
                yield None
            else:
                yield raw
    except OSError as exc:
        raise InputError(f"{path}:{n + 1}: cannot read journal: {exc.strerror}") from None


def _damaged(problem: str, damage: list[str] | None) -> None:
    """A line that is not an event: listed in `damage` if the caller keeps going, else fatal."""
    if damage is None:
        raise InputError(problem)
    damage.append(problem)


def read_journal(path: Path, damage: list[str] | None = None) -> list[Event]:
    """Every event of a journal, in a list (see iter_journal): for callers that need them all,
    such as cleanup. A report keeps a bounded digest instead."""
    return list(iter_journal(path, damage))


KEEP_FIRST, KEEP_LAST = 200, 50  # events of one kind a digest keeps: the first ones and the latest
KEEP_KINDS = 100  # kinds kept apart in a digest; events of any further kind share one allowance
MAX_LINE = 8 * 2**20  # bytes: beyond any Kubernetes object a record may hold (etcd takes 1.5 MiB)


@dataclass(frozen=True)
class Omitted:
    """Events of one kind that a digest read but did not keep: the middle of a flood (a repeating
    fault's victims and notes), counted and dated so the report can say what it left out."""

    kind: str  # "*" for kinds beyond KEEP_KINDS
    count: int
    first_at: datetime
    first_mono: float
    last_at: datetime
    last_mono: float


@dataclass(frozen=True)
class Digest:
    """What a report needs from a journal of any size. The events it renders are a bounded few
    (phases, faults, reverts, alerts, acknowledgements), while a flood is many events of one
    kind: of each kind the first KEEP_FIRST and the last KEEP_LAST are kept, the rest counted."""

    events: list[Event]  # in journal order
    omitted: list[Omitted]


class _Kind:
    """One kind's events while a digest reads: the first ones, a window of the latest, and a
    count of those that left the window."""

    def __init__(self, keep_last: int) -> None:
        self.first: list[Event] = []
        self.latest: deque[Event] = deque(maxlen=keep_last)
        self.dropped = 0
        self.first_dropped: Event | None = None
        self.last_dropped: Event | None = None

    def add(self, event: Event, keep_first: int) -> None:
        if len(self.first) < keep_first:
            self.first.append(event)
            return
        if len(self.latest) == self.latest.maxlen:
            gone = self.latest[0]  # pushed out by the append below
            self.dropped += 1
            self.first_dropped = self.first_dropped or gone
            self.last_dropped = gone
        self.latest.append(event)


def digest(events: Iterable[Event], keep_first: int = KEEP_FIRST, keep_last: int = KEEP_LAST) -> Digest:
    """A bounded digest of `events` (read lazily, e.g. from iter_journal): the first event of
    each kind (of the first KEEP_KINDS kinds: drillkit writes about 40), every one a verdict
    reads, is kept; memory stays bounded by the allowances."""
    kinds: dict[str, _Kind] = {}
    for e in events:
        key = e.kind if e.kind in kinds or len(kinds) < KEEP_KINDS else "*"
        if (kind := kinds.get(key)) is None:
            kind = kinds[key] = _Kind(max(1, keep_last))
        kind.add(e, keep_first)
    kept = sorted((e for k in kinds.values() for e in (*k.first, *k.latest)), key=lambda e: e.line)
    omitted = [
        Omitted(key, k.dropped, k.first_dropped.at, k.first_dropped.mono, k.last_dropped.at, k.last_dropped.mono)
        for key, k in kinds.items()
        if k.first_dropped is not None and k.last_dropped is not None
    ]
    return Digest(kept, omitted)


_SURROGATE = re.compile("[\ud800-\udfff]")


def printable(value: Any) -> Any:
    """`value` with each lone surrogate in its text made U+FFFD. A journal may hold them (a JSON
    `\\udcff` escape of an undecodable byte, kept as data so cleanup acts on the exact name), but
    text written out as UTF-8 (a report) cannot carry them."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {printable(k): printable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [printable(v) for v in value]
    return value


def verify(event: Event, run_id: str, key: bytes | None) -> str | None:
    """None if `event` carries this host's MAC for run `run_id`; else why it does not (a
    journal from an older drillkit, another host or user, another run, or edited by hand)."""
    if "mac" not in event.data:
        return "not authenticated (no MAC: written by a drillkit older than journal authentication, or not by drillkit)"
    if key is None:
        return f"not authenticated (no journal key at {hostkey.key_path()}: not written as this user on this host)"
    if not hostkey.sealed(key, run_id, event.kind, event.data):
        return "not authenticated (its MAC does not match: edited, copied from another run, or another host's)"
    return None


def first(events: list[Event], kind: str) -> Event | None:
    return next((e for e in events if e.kind == kind), None)


@dataclass(frozen=True)
class Measures:
    """The derived durations, in seconds; None where the end event never happened."""

    time_to_detect: float | None
    time_to_acknowledge: float | None
    time_to_mitigate: float | None
    time_to_resolve: float | None

    def to_dict(self) -> dict[str, float | None]:
        return {k: (round(v, 6) if v is not None else None) for k, v in self.__dict__.items()}


def _between(a: Event | None, b: Event | None) -> float | None:
    return b.mono - a.mono if a and b else None


def measures(events: list[Event]) -> Measures:
    injected, detected = first(events, "injected"), first(events, "detected")
    return Measures(
        time_to_detect=_between(injected, detected),
        time_to_acknowledge=_between(detected, first(events, "acknowledged")),
        time_to_mitigate=_between(injected, first(events, "mitigated")),
        time_to_resolve=_between(injected, first(events, "resolved")),
    )


@dataclass(frozen=True)
class PendingRevert:
    run_id: str
    id: int
    fault: str
    data: dict[str, Any]
    journal: Path
    line: int  # of the event that last set `data`


def pending_reverts(path: Path, damage: list[str] | None = None) -> list[PendingRevert]:
    """Reverts registered but neither done nor superseded, newest first (undo order). With a
    `damage` list, damaged lines are skipped and listed there (see read_journal)."""
    run_id: str | None = None
    registered: dict[int, tuple[str, dict[str, Any], int]] = {}
    for e in iter_journal(path, damage):
        if run_id is None:  # the first event: `started`
            run_id = str(e.data.get("run_id", ""))
        if e.kind == "revert_updated" and "append" in e.data and int(e.data["id"]) in registered:
            fault, data, _ = registered[int(e.data["id"])]  # RevertHandle.extend: new items only
            appended = e.data["append"] if isinstance(e.data["append"], dict) else {}
            for name, more in appended.items():
                old = data.get(name)
                if isinstance(old, list) and isinstance(more, list):
                    old.extend(more)  # our own copy (below): linear in the appends, not quadratic
                else:
                    data[name] = list(more) if isinstance(more, list) else more
            registered[int(e.data["id"])] = (fault, data, e.line)
        elif e.kind in ("revert_registered", "revert_updated"):
            copied = {k: list(v) if isinstance(v, list) else v for k, v in dict(e.data.get("data", {})).items()}
            registered[int(e.data["id"])] = (str(e.data["fault"]), copied, e.line)
        elif e.kind == "revert_done":
            registered.pop(int(e.data["id"]), None)
    journal = path / JOURNAL_NAME if path.is_dir() else path
    return [
        PendingRevert(run_id or "", rid, f, d, journal, line)
        for rid, (f, d, line) in sorted(registered.items(), reverse=True)
    ]
