"""latency: turn on the lab DB proxy's delay (the playbook's "high latency" incident) by
writing its control file; the revert puts the previous file back byte for byte."""

from __future__ import annotations

import base64
import json
import os
import stat
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from drillkit.errors import DrillkitError, PreflightError
from drillkit.faults import Allowed, Fault, RevertContext, Undo, digest
from drillkit.faults.local.common import check_stop, host_errors
from drillkit.faults.local.files import FileId, file_id
from drillkit.files import write_atomically
from drillkit.model import Duration, doc
from drillkit.signals import wait_until

PICKUP_S = 0.25  # the proxy re-reads its control file at least every 200 ms
APPLIED_WITHIN_S = 2.0  # how long to wait for the proxy's report that the delay applies


@dataclass(frozen=True)
class LatencyParams:
    control: str = doc("the lab DB proxy's control file (its --control)")
    delay: Duration = doc("delay added to every forwarded chunk, e.g. 300ms")
    proxy_port: int = doc("TCP port the proxy listens on (checked in preflight)")
    proxy_host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        if self.delay <= 0:
            raise ValueError("delay: expected a positive duration like 300ms")
        if not 0 < self.proxy_port < 65536:
            raise ValueError(f"proxy_port: expected 1-65535, got {self.proxy_port}")


@dataclass(frozen=True)
class ControlFile:
    """What preflight found: the writable control file of a listening proxy."""

    path: Path


@dataclass(frozen=True)
class LatencyRecord:
    """The control file as it was: absent, or its content (a delay setting, not a secret); and,
    if inject made it, the file it made (a revert deletes that file, never another)."""

    control: str
    existed: bool
    previous: str | None = None  # UTF-8 content; None if empty or not UTF-8
    previous_b64: str | None = None  # content that is not UTF-8
    mode: int = 0o644
    created: FileId | None = None

    def content(self) -> bytes:
        if self.previous_b64 is not None:
            return base64.b64decode(self.previous_b64)
        return (self.previous or "").encode()


class Latency(Fault[LatencyParams, ControlFile, LatencyRecord]):
    """Turn on the lab DB proxy's delay (the "high latency" incident).

    The delaying TCP proxy between the app and PostgreSQL is the lab's (`drillkit.lab.proxy`,
    reading `{"delay_ms": N}` from its control file every ≤200 ms); this fault only writes that
    file, after journalling whether one existed and its content (a delay setting, not a secret).
    The revert puts the previous file back byte for byte, or removes it.
    """

    kind = "latency"
    target = "local"
    Params = LatencyParams
    Record: ClassVar[type] = LatencyRecord
    params: LatencyParams

    @property
    def delay_ms(self) -> int:
        return max(1, round(self.params.delay * 1000))

    def preflight(self) -> ControlFile:
        p = self.params
        control = Path(p.control).absolute()  # the record must hold wherever cleanup runs from
        if not control.parent.is_dir():
            raise PreflightError(f"{self.kind}: directory of the control file {control} does not exist")
        if not os.access(control.parent, os.W_OK):
            raise PreflightError(f"{self.kind}: cannot write in {control.parent}")
        import socket  # here: validating a latency drill opens no connection

        try:
            socket.create_connection((p.proxy_host, p.proxy_port), timeout=2).close()
        except OSError as exc:
            raise PreflightError(
                f"{self.kind}: no proxy listening on {p.proxy_host}:{p.proxy_port}: {exc.strerror or exc}"
            ) from None
        return ControlFile(control)

    def plan(self, found: ControlFile) -> list[str]:
        p = self.params
        return [
            f'write {{"delay_ms": {self.delay_ms}}} to {found.path} (proxy {p.proxy_host}:{p.proxy_port})',
            f"revert: restore the previous {found.path.name} or remove it",
        ]

    @host_errors
    def inject(self, found: ControlFile, undo: Undo) -> None:
        control = found.path
        record = LatencyRecord(control=str(control), existed=control.exists())
        if record.existed:
            raw = control.read_bytes()
            try:
                text: str | None = raw.decode() or None
                b64 = None
            except UnicodeDecodeError:
                text, b64 = None, base64.b64encode(raw).decode()
            mode = stat.S_IMODE(control.stat().st_mode)
            record = LatencyRecord(str(control), True, text, b64, mode)
        handle = undo.register(self, record)
        body = json.dumps({"delay_ms": self.delay_ms, "revision": revision(self.ctx.run_id)}).encode()
        written = time.time()
        write_atomically(control, body, record.mode & 0o777)
        if not record.existed:
            handle.update(created=file_id(control))
        applied = wait_until(
            lambda: self._applied(control, written), time.monotonic() + APPLIED_WITHIN_S, 0.01, self.ctx.stop
        )
        check_stop(self.ctx.stop)
        if applied is None:  # a proxy that does not report: assume it picked the delay up by now
            self.ctx.log(f"{self.kind}: the proxy did not report the delay within {APPLIED_WITHIN_S:g}s")
            self.ctx.stop.sleep(max(0.0, written + PICKUP_S - time.time()))
            self.ctx.harm_started()
            return
        self.ctx.harm_started(applied)  # when the proxy applied it: time to detect is exact

    def _applied(self, control: Path, written: float) -> datetime | None:
        """When the proxy reported applying this run's delay (`drillkit.lab.proxy.applied_path`)."""
        from drillkit.lab.proxy import applied_path

        try:
            report = json.loads(applied_path(control).read_text())
            at = float(report["at"])
            ours = report.get("revision") == revision(self.ctx.run_id) and float(report["delay_ms"]) == self.delay_ms
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return datetime.fromtimestamp(at, UTC) if ours and at >= written - 1.0 else None

    @classmethod
    def check(cls, record: LatencyRecord, allowed: Allowed) -> None:
        """The control file must be the one a latency fault of the run's scenario declared."""
        allowed.require(cls.kind, {"control": record.control}, lambda d: {"control": d.path("control")})

    @classmethod
    def revert(cls, ctx: RevertContext, record: LatencyRecord) -> dict[str, Any]:
        control = Path(record.control)
        if not record.existed:
            if not control.exists() and not control.is_symlink():
                return {"removed": False}
            if not _made_by(control, record, ctx.run_id):
                raise DrillkitError(f"{control} is not the file this drill wrote (replaced since): left in place")
            control.unlink()
            return {"removed": True}
        raw = record.content()
        if control.exists() and control.read_bytes() == raw:
            return {"restored": False, "note": "already the previous content"}
        write_atomically(control, raw, record.mode & 0o777)  # never setuid, setgid or sticky
        return {"restored": True}


def revision(run_id: str) -> str:
    """What the control file says of the run that wrote it: a digest, never the run id (the
    file sits in the lab, where a trainee looks), still telling this run's file from another's."""
    return digest("config", run_id, length=10)


def _made_by(control: Path, record: LatencyRecord, run_id: str) -> bool:
    """The control file at that path is the one inject wrote: the same inode, or (inject died
    before journalling it) a regular file holding this run's delay."""
    if record.created is not None:
        return file_id(control) == record.created
    if file_id(control) is None:
        return False
    try:
        return bool(json.loads(control.read_bytes()).get("revision") == revision(run_id))
    except (OSError, ValueError, AttributeError):
        return False
