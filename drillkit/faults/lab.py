"""Faults for the local lab: the playbook's database, memory-leak, CPU, latency and auth incidents,
done to real processes, a real PostgreSQL, real cgroups and real files on this host.

Every fault here journals its revert before it does harm, learns what it touched through
`RevertHandle.update`, and reverts from that plain data alone, so `drillkit cleanup` can finish
the job in another process after a crash. Harm that could outlive drillkit carries its own
dead-man's switch (stress-ng's `--timeout`, the connection holder's owner watch and time limit).
Nothing secret is journalled: the DSN must not contain a password, and the JWT secret's backup
is a 0600 file next to the original whose *path* alone is recorded.

    python -m drillkit.faults.lab hold-connections --dsn DSN --count all --status FILE ...

is the detached connection holder that `db-connection-exhaustion` starts.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import functools
import http.client
import json
import math
import os
import re
import signal
import socket
import stat
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from drillkit.errors import (
    Aborted,
    DrillkitError,
    PermanentError,
    PreflightError,
    TransientError,
    UnavailableError,
)
from drillkit.faults import Fault, FaultContext, Undo, check_blast_radius
from drillkit.faults import cgroups as cg
from drillkit.model import Count, Duration, doc
from drillkit.procs import alive, cmdline, find_processes, group_members, spawn, stop_group, wait_gone
from drillkit.retry import retrying

if TYPE_CHECKING:
    import psycopg

    from drillkit.signals import StopFlag

# --- shared helpers ---------------------------------------------------------------------------


F = TypeVar("F", bound=Callable[..., None])


def _host_errors(inject: F) -> F:
    """A file, cgroup or process operation that fails mid-inject is the host refusing, not a
    bug: report it as drillkit's UnavailableError (the reverts run either way)."""

    @functools.wraps(inject)
    def wrapper(self: Fault, undo: Undo) -> None:
        try:
            inject(self, undo)
        except OSError as exc:
            raise UnavailableError(f"{self.kind}: {exc}") from exc

    return cast(F, wrapper)


def _check_stop(ctx: FaultContext) -> None:
    if ctx.stop.is_set():
        raise Aborted(ctx.stop.reason, by_signal=True)


def state_dir(run_id: str) -> Path:
    """A private scratch folder of the run (status files, logs of detached helpers)."""
    d = Path(tempfile.gettempdir()) / f"drillkit-{run_id}"
    d.mkdir(mode=0o700, exist_ok=True)
    return d


def _remove_scratch(*files: str | None) -> None:
    """Delete a revert's scratch files, and the run's scratch folder once it is empty."""
    for name in files:
        if name:
            Path(name).unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                Path(name).parent.rmdir()


def _write_atomically(path: Path, content: bytes, mode: int = 0o644, owner: tuple[int, int] | None = None) -> None:
    """Replace `path` with `content` in one rename: readers see the old or the new file, never
    a torn one. The temporary file is created with `mode` already (no window of wider access)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".drillkit-tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        if owner is not None and os.geteuid() == 0:
            os.fchown(fd, *owner)
        with os.fdopen(fd, "wb") as fh:
            fh.write(content)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _one_target(kind: str, pattern: str | None, pidfile: str | None) -> int:
    found = find_processes(pattern, pidfile)
    what = f"pattern {pattern!r}" if pattern else f"pid file {pidfile}"
    if not found:
        raise PreflightError(f"{kind}: no running process matches {what}")
    if len(found) > 1:
        raise PreflightError(
            f"{kind}: {what} matches {len(found)} processes ({', '.join(map(str, found))}); "
            "narrow the pattern or use a pid file"
        )
    return found[0]


def _validate_target(pattern: str | None, pidfile: str | None, required: bool = True) -> None:
    if required and (pattern is None) == (pidfile is None):
        raise ValueError("expected exactly one of `pattern` or `pidfile`")
    if not required and pattern is not None and pidfile is not None:
        raise ValueError("expected at most one of `pattern` or `pidfile`")
    if pattern is not None:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"pattern: not a valid regular expression: {exc}") from None


def _drill_length(ctx: FaultContext) -> float:
    """How long a whole drill may last: detection + recovery windows plus a minute of margin."""
    s = ctx.scenario
    return s.detection.within + s.recovery.within + s.recovery.verify_within + 60.0


# --- db-connection-exhaustion ---------------------------------------------------------------

_REFUSED = ("too many clients", "remaining connection slots are reserved")
_FINAL_DB = (
    "authentication failed",
    "pg_hba.conf",
    "does not exist",
    "no password supplied",
    "permission denied",
    "password",
)


def _db_error(exc: Exception, what: str) -> DrillkitError:
    """Wrap a psycopg error: connection trouble and a full server are transient, the rest final.

    Connection failures carry no SQLSTATE in psycopg, so the server's message decides."""
    import psycopg

    text = str(exc).strip().replace("\n", " ")
    sqlstate = getattr(exc, "sqlstate", None)
    lowered = text.lower()
    transient = isinstance(exc, psycopg.OperationalError) and (
        any(r in lowered for r in _REFUSED)
        or (sqlstate or "").startswith(("08", "53", "57P"))
        or (sqlstate is None and not any(f in lowered for f in _FINAL_DB))
    )
    return (TransientError if transient else PermanentError)(f"database: {what}: {text}")


def _password(password_env: str | None) -> dict[str, Any]:
    if not password_env:
        return {}
    if password_env not in os.environ:
        raise PermanentError(f"database: environment variable {password_env} (password_env) is not set")
    return {"password": os.environ[password_env]}


@contextlib.contextmanager
def _db(
    dsn: str, password_env: str | None, what: str, timeout: float = 5.0, attempts: int = 6, max_delay: float = 30.0
) -> Iterator[psycopg.Connection[Any]]:
    """One autocommit connection through the database retry policy."""
    import psycopg

    conn = None
    for attempt in retrying(f"database: {what}", attempts=attempts, max_delay=max_delay):
        with attempt:
            try:
                conn = psycopg.connect(
                    dsn,
                    autocommit=True,
                    connect_timeout=max(1, round(timeout)),
                    application_name="drillkit",
                    **_password(password_env),
                )
            except psycopg.Error as exc:
                raise _db_error(exc, what) from None
    assert conn is not None
    try:
        yield conn
    except psycopg.Error as exc:
        raise _db_error(exc, what) from None
    finally:
        conn.close()


@dataclass(frozen=True)
class ServerSlots:
    max_connections: int
    superuser_reserved: int
    in_use: int  # client backends, not counting the connection that asked
    superuser: bool

    @property
    def free(self) -> int:
        """Slots this role can still take."""
        reserved = 0 if self.superuser else self.superuser_reserved
        return self.max_connections - reserved - self.in_use


@dataclass(frozen=True)
class DbConnectionExhaustionParams:
    dsn: str = doc(
        "libpq URI or key=value string; no password in it (it would be journalled): use password_env or ~/.pgpass"
    )
    connections: str = doc('connections to hold: a number, or "all" = until the server refuses', default="all")
    reserve: int = doc('with "all": slots handed back after the refusal, e.g. 1 for an operator', default=0)
    password_env: str | None = doc("environment variable holding the password", default=None)
    connect_timeout: Duration = doc("per-connection timeout, seconds", default=5.0)
    ready_within: Duration = doc("deadline for holding them all", default=60.0)
    hold_at_most: Duration | None = doc(
        "dead-man's switch: the holder lets go after this long even if never reverted "
        "(default: the scenario's detection + recovery windows + 1 min)",
        default=None,
    )

    def __post_init__(self) -> None:
        from psycopg import conninfo

        try:
            info = conninfo.conninfo_to_dict(self.dsn)
        except Exception as exc:  # psycopg.ProgrammingError: not a connection string
            raise ValueError(f"dsn: not a libpq connection string: {exc}") from None
        if info.get("password"):
            raise ValueError(
                "dsn: must not contain a password (the journal and reports record the dsn); "
                "set password_env or use ~/.pgpass"
            )
        if self.connections != "all" and not (self.connections.isdigit() and int(self.connections) > 0):
            raise ValueError(f'connections: expected a positive integer or "all", got {self.connections!r}')
        if self.reserve < 0:
            raise ValueError(f"reserve: expected 0 or more, got {self.reserve}")
        if self.reserve and self.connections != "all":
            raise ValueError('reserve: only meaningful with connections: "all"')

    @property
    def count(self) -> int | None:
        return None if self.connections == "all" else int(self.connections)


class DbConnectionExhaustion(Fault):
    """Hold PostgreSQL connections until the server refuses new ones (the "database" incident).

    The connections are opened and held by a small detached holder process
    (`python -m drillkit.faults.lab hold-connections`), not by a thread of the runner:
    - its pid (= its process group) is journalled, so `drillkit cleanup` in another process can
      stop it after a crash, exactly like stress-ng; a thread would be unreachable from there;
    - it watches the runner's pid and lets go as soon as the runner is gone, so a SIGKILLed
      drillkit releases the connections within half a second (what a thread would give for
      free), and it has a time limit (`hold_at_most`) as a last dead-man's switch;
    - the runner's signal handling and waits stay free of blocking libpq connects.
    Each held connection carries `application_name=drillkit-<run id>-hold`; the revert stops the
    holder, then checks `pg_stat_activity` through the DSN until none of them is left, using
    `pg_terminate_backend` on stragglers.
    """

    kind = "db-connection-exhaustion"
    target = "local"
    Params = DbConnectionExhaustionParams
    params: DbConnectionExhaustionParams

    def preflight(self) -> None:
        p = self.params
        try:
            with _db(p.dsn, p.password_env, "preflight", p.connect_timeout, attempts=3, max_delay=10) as conn:
                row = conn.execute(
                    "SELECT current_setting('max_connections')::int,"
                    " current_setting('superuser_reserved_connections')::int,"
                    " (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
                    "  AND pid <> pg_backend_pid())::int,"
                    " (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)"
                ).fetchone()
        except DrillkitError as exc:
            raise PreflightError(f"{self.kind}: cannot use the database: {exc}") from None
        assert row is not None
        self.slots = ServerSlots(row[0], row[1], row[2], bool(row[3]))
        free = self.slots.free
        if p.count is not None and p.count > free:
            raise PreflightError(
                f"{self.kind}: {p.count} connections requested but only {free} of "
                f"max_connections {self.slots.max_connections} are free for this role"
            )
        if p.count is None and free - p.reserve <= 0:
            raise PreflightError(f"{self.kind}: no connection slot to take ({free} free, reserve {p.reserve})")

    def plan(self) -> list[str]:
        p, slots = self.params, getattr(self, "slots", None)
        n = p.count if p.count is not None else (f"all ~{slots.free - p.reserve}" if slots else "all")
        where = (
            (
                f" (max_connections {slots.max_connections}, {slots.in_use} in use, "
                f"{'superuser' if slots.superuser else 'ordinary role'})"
            )
            if slots
            else ""
        )
        lines = [
            f"open and hold {n} connections to {p.dsn}{where} in a detached holder process "
            f"(application_name {self._tag()})"
        ]
        if p.count is None and p.reserve:
            lines.append(f"then hand back {p.reserve} so that many slots stay free")
        lines.append(
            "revert: stop the holder, verify in pg_stat_activity that its backends are gone "
            "(pg_terminate_backend stragglers)"
        )
        return lines

    def _tag(self) -> str:
        return f"drillkit-{self.ctx.run_id}-hold"

    @_host_errors
    def inject(self, undo: Undo) -> None:
        p, ctx = self.params, self.ctx
        tag, work = self._tag(), state_dir(ctx.run_id)
        status, log_file = work / "hold-connections.json", work / "hold-connections.log"
        status.unlink(missing_ok=True)
        handle = undo.register(
            self.kind,
            dsn=p.dsn,
            password_env=p.password_env,
            application_name=tag,
            holder_pid=None,
            backend_pids=[],
            status_file=str(status),
            log_file=str(log_file),
        )
        env = {**os.environ, **({"PGPASSWORD": _password(p.password_env)["password"]} if p.password_env else {})}
        # one more than the server should ever accept, so its refusal is seen (a pooler in front
        # of it would accept forever)
        cap = self.slots.max_connections + 1 if hasattr(self, "slots") else 10000
        argv = [
            sys.executable,
            "-m",
            "drillkit.faults.lab",
            "hold-connections",
            "--dsn",
            p.dsn,
            "--count",
            p.connections,
            "--reserve",
            str(p.reserve),
            "--cap",
            str(cap),
            "--status",
            str(status),
            "--owner-pid",
            str(os.getpid()),
            "--max-hold",
            f"{p.hold_at_most or _drill_length(ctx):g}",
            "--application-name",
            tag,
            "--connect-timeout",
            f"{p.connect_timeout:g}",
        ]
        pid = spawn(argv, log_file=log_file, env=env).pid
        handle.update(holder_pid=pid)
        deadline = time.monotonic() + p.ready_within
        while True:
            state = _read_status(status)
            if state.get("state") == "holding":
                break
            if state.get("state") == "error" or not alive(pid):
                log = log_file.read_text(errors="replace")[-800:]
                raise UnavailableError(
                    f"{self.kind}: the holder could not take the connections: "
                    f"{state.get('error') or log or 'it exited'}"
                )
            if time.monotonic() >= deadline:
                raise UnavailableError(f"{self.kind}: connections not all held within {p.ready_within:g}s")
            _check_stop(ctx)
            ctx.stop.wait(0.05)
        pids = [int(x) for x in state["backend_pids"]]
        handle.update(backend_pids=pids, held=len(pids), refused=state.get("refused"))
        ctx.harm_started()  # after journalling what the revert and the evidence need
        ctx.log(
            f"{self.kind}: holding {len(pids)} connections; "
            + (
                f"server refused more: {state['refused']}"
                if state.get("refused")
                else "the server never refused (a connection pooler in front of it?)"
            )
        )

    @classmethod
    def revert(cls, ctx: FaultContext, data: dict[str, Any]) -> dict[str, Any]:
        tag = str(data["application_name"])
        stopped: list[int] = []
        holders = {int(data["holder_pid"])} if data.get("holder_pid") else set()
        # a holder started just before a crash may not be journalled yet: find it by its tag
        holders |= set(find_processes(rf"hold-connections .*--application-name {re.escape(tag)}\b", None))
        for pid in sorted(holders):
            stopped += stop_group(pid, "hold-connections")["signalled"]
        journalled = [int(x) for x in data.get("backend_pids", [])]
        terminated: list[int] = []
        with _db(str(data["dsn"]), data.get("password_env"), "verify connections released") as conn:
            deadline, terminate_after = time.monotonic() + 15.0, time.monotonic() + 3.0
            while True:
                rows = conn.execute(
                    "SELECT pid, application_name FROM pg_stat_activity"
                    " WHERE (pid = ANY(%s) OR application_name = %s) AND pid <> pg_backend_pid()",
                    (journalled, tag),
                ).fetchall()
                left = sorted(pid for pid, app in rows if app == tag)
                if not left:
                    break
                if time.monotonic() >= terminate_after:
                    for pid in left:
                        if conn.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,):
                            terminated.append(pid)
                if time.monotonic() >= deadline:
                    raise DrillkitError(f"backends {left} ({tag}) still in pg_stat_activity after terminating them")
                time.sleep(0.1)
        reused = sorted(pid for pid, app in rows if app != tag)
        _remove_scratch(data.get("status_file"), data.get("log_file"))
        return {
            "holder_stopped": stopped,
            "terminated": sorted(set(terminated)),
            "remaining": [],
            "pids_reused_by_others": reused,
        }


def _read_status(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


def _write_status(path: Path, **data: Any) -> None:
    _write_atomically(path, json.dumps(data).encode(), 0o600)


def hold_connections(
    dsn: str,
    count: int | None,
    reserve: int,
    cap: int,
    status: Path,
    owner_pid: int,
    max_hold: float,
    application_name: str,
    connect_timeout: float,
) -> int:
    """The holder: open connections, report their backend pids, hold them until told to stop,
    the owner is gone, or `max_hold` seconds pass; then close them all."""
    import psycopg

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    conns: list[psycopg.Connection[Any]] = []
    refused = None
    try:
        while (count is None and len(conns) < cap) or (count is not None and len(conns) < count):
            if stop.is_set():
                return 0
            try:
                conns.append(
                    psycopg.connect(
                        dsn,
                        autocommit=True,
                        application_name=application_name,
                        connect_timeout=max(1, round(connect_timeout)),
                    )
                )
            except psycopg.OperationalError as exc:
                text = str(exc).strip().replace("\n", " ")
                if any(r in text for r in _REFUSED):
                    refused = text
                    break
                _write_status(status, state="error", error=text, held=len(conns))
                return 1
        if count is not None and len(conns) < count:
            _write_status(
                status,
                state="error",
                held=len(conns),
                error=f"server refused after {len(conns)} of {count} connections: {refused}",
            )
            return 1
        for _ in range(min(reserve, len(conns))):
            conns.pop().close()
        pids = [int(c.execute("SELECT pg_backend_pid()").fetchone()[0]) for c in conns]  # type: ignore[index]
        _write_status(status, state="holding", backend_pids=pids, refused=refused, holder_pid=os.getpid())
        deadline = time.monotonic() + max_hold
        while not stop.wait(0.5):
            if not alive(owner_pid) or time.monotonic() >= deadline:
                break
        return 0
    finally:
        for c in conns:
            with contextlib.suppress(Exception):
                c.close()


# --- memory-pressure ------------------------------------------------------------------------

_BYTES_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(Ki|Mi|Gi|Ti|K|M|G|T|B)?")
_BYTE_UNITS = {
    None: 1,
    "B": 1,
    "K": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


def parse_bytes(text: str) -> int:
    """Bytes from `256Mi`, `1Gi`, `500M` or a bare number."""
    m = _BYTES_RE.fullmatch(text.strip())
    if not m:
        raise ValueError(f"expected a size like 256Mi, 1Gi or 500M, got {text!r}")
    return int(float(m.group(1)) * _BYTE_UNITS[m.group(2)])


@dataclass(frozen=True)
class MemoryPressureParams:
    limit: str = doc(
        'memory limit of the drill cgroup: a size like "256Mi", or "+64Mi" = 64 MiB above '
        "what the cgroup is charged right after the process moved in"
    )
    pattern: str | None = doc("regex matched against the process command line", default=None)
    pidfile: str | None = doc("file holding the pid", default=None)
    leak_url: str | None = doc(
        "URL POSTed repeatedly to make the process allocate, e.g. the lab app's "
        "http://127.0.0.1:8081/debug/leak?mb=16; without it the limit alone is "
        "the fault",
        default=None,
    )
    leak_every: Duration = doc("pause between leak requests", default=0.2)
    oom_within: Duration = doc("deadline for the kernel to OOM-kill the process", default=60.0)

    def __post_init__(self) -> None:
        _validate_target(self.pattern, self.pidfile)
        try:
            size = parse_bytes(self.limit.strip().removeprefix("+"))
        except ValueError as exc:
            raise ValueError(f"limit: {exc}") from None
        if size < 2**20:
            raise ValueError(f"limit: expected at least 1Mi, got {self.limit!r}")
        if self.leak_url is not None and not re.match(r"https?://", self.leak_url):
            raise ValueError(f"leak_url: expected an http:// or https:// URL, got {self.leak_url!r}")

    @property
    def headroom(self) -> bool:
        return self.limit.strip().startswith("+")

    @property
    def limit_bytes(self) -> int:
        return parse_bytes(self.limit.strip().removeprefix("+"))


class MemoryPressure(Fault):
    """Put a process in a memory-limited cgroup and push it until the kernel OOM-kills it.

    The cgroup `drillkit-<run id>` is created where this host allows: on cgroup v1 inside the
    process's own memory cgroup (`memory.limit_in_bytes`, OOM kills counted in
    `memory.oom_control`), on v2 under the nearest ancestor with `+memory` in
    `cgroup.subtree_control` (`memory.max`, `memory.events`). Pages the process had before the
    move stay charged to its old cgroup on both versions, so the limit bounds what it allocates
    afterwards; swap is capped too so the process is killed rather than swapped out. The revert
    lifts the limit, moves whatever is left back to its original cgroup and removes the group.
    """

    kind = "memory-pressure"
    target = "local"
    Params = MemoryPressureParams
    params: MemoryPressureParams

    def preflight(self) -> None:
        p = self.params
        self.pid = _one_target(self.kind, p.pattern, p.pidfile)
        h = cg.hierarchy("memory")
        if h is None:
            raise PreflightError(
                f"{self.kind}: this host has no memory cgroup controller mounted "
                "(neither cgroup v1 `memory` nor cgroup v2 with `memory` in cgroup.controllers)"
            )
        parent, why = cg.parent_for_new(self.pid, h, "memory")
        if parent is None:
            raise PreflightError(f"{self.kind}: no writable memory cgroup (cgroup v{h.version}): {why}")
        origin = cg.cgroup_of(self.pid, h, "memory")
        if origin is None:
            raise PreflightError(f"{self.kind}: pid {self.pid} is gone")
        self.hierarchy, self.parent, self.origin = h, parent, origin

    def plan(self) -> list[str]:
        if not hasattr(self, "parent"):
            return [f"limit the target's memory to {self.params.limit} in a new cgroup"]
        p, h = self.params, self.hierarchy
        group = self.parent / f"drillkit-{self.ctx.run_id}"
        limit = f"its charge after the move {p.limit}" if p.headroom else p.limit
        lines = [
            f"create cgroup v{h.version} {group} with {cg.limit_file(h.version)} = {limit}",
            f"move pid {self.pid} ({cmdline(self.pid)[:80]}) into it from {self.origin}",
        ]
        if p.leak_url:
            lines.append(
                f"POST {p.leak_url} every {p.leak_every:g}s until the kernel OOM-kills it (deadline {p.oom_within:g}s)"
            )
        lines.append(f"revert: lift the limit, move remaining processes back to {self.origin}, rmdir the cgroup")
        return lines

    @_host_errors
    def inject(self, undo: Undo) -> None:
        p, ctx, h = self.params, self.ctx, self.hierarchy
        group = self.parent / f"drillkit-{ctx.run_id}"
        handle = undo.register(
            self.kind, version=h.version, cgroup=str(group), pid=self.pid, origin=str(self.origin), moved=[]
        )
        group.mkdir()
        handle.update(moved=[self.pid])
        try:
            cg.move(self.pid, group)
        except OSError as exc:
            raise UnavailableError(f"{self.kind}: cannot move pid {self.pid} into {group}: {exc}") from None
        charged = cg.read_int(group / cg.usage_file(h.version)) or 0
        limit = charged + p.limit_bytes if p.headroom else p.limit_bytes
        (group / cg.limit_file(h.version)).write_text(str(limit))
        _cap_swap(group, h.version, limit)
        before = cg.oom_kills(group, h.version) or 0
        handle.update(limit_bytes=limit, charged_at_move=charged)
        ctx.log(f"{self.kind}: pid {self.pid} in {group}, limit {limit} bytes ({charged} charged)")
        if not p.leak_url:
            return
        posts, errors, deadline = 0, 0, time.monotonic() + p.oom_within
        while alive(self.pid):
            _check_stop(ctx)
            if time.monotonic() >= deadline:
                raise UnavailableError(
                    f"{self.kind}: pid {self.pid} not OOM-killed within {p.oom_within:g}s "
                    f"({posts} leak requests; is {p.leak_url} allocating?)"
                )
            if _post(p.leak_url):
                posts += 1
                ctx.harm_started()  # the leak began: what the memory alert watches
            else:
                errors += 1
            ctx.stop.wait(p.leak_every)
        kills = cg.oom_kills(group, h.version)
        handle.update(oom_kill=kills, oom_kill_before=before, target_gone=True, leak_posts=posts)
        ctx.log(f"{self.kind}: pid {self.pid} gone after {posts} leak requests; oom_kill counter {kills}")

    @classmethod
    def revert(cls, ctx: FaultContext, data: dict[str, Any]) -> dict[str, Any]:
        group, version = Path(data["cgroup"]), int(data["version"])
        if not group.exists():
            return {"removed": False, "note": "cgroup already gone"}
        with contextlib.suppress(OSError):
            (group / cg.limit_file(version)).write_text(cg.UNLIMITED[version])
        origin = Path(data["origin"])
        home = origin if (origin / "cgroup.procs").exists() else group.parent
        moved_back = []
        for _ in range(3):  # a process may fork while we move its siblings
            left = cg.procs(group)
            if not left:
                break
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    cg.move(pid, home)
                    moved_back.append(pid)
        kills = cg.oom_kills(group, version)
        cg.remove(group)
        return {"removed": True, "moved_back": moved_back, "to": str(home), "oom_kill": kills}


def _cap_swap(group: Path, version: int, limit: int) -> None:
    """Swap would let the process page out instead of dying; v1 memsw needs >= the limit."""
    with contextlib.suppress(OSError):
        if version == 2:
            (group / "memory.swap.max").write_text("0")
        elif (group / "memory.memsw.limit_in_bytes").exists():
            (group / "memory.memsw.limit_in_bytes").write_text(str(limit))


def _post(url: str) -> bool:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=b"", method="POST"), timeout=5) as r:
            r.read()
            return True
    except (OSError, http.client.HTTPException, urllib.error.URLError):
        return False  # the request that tips it over dies with the process


# --- cpu-pressure ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CpuPressureParams:
    workers: Count = doc(
        "stress-ng --cpu workers: a number, or a percentage of this host's CPUs", default=Count(100, True)
    )
    load: int | None = doc("percent load per worker (stress-ng --cpu-load); default full", default=None)
    duration: Duration | None = doc(
        "stress-ng --timeout, the dead-man's switch if drillkit dies "
        "(default: the scenario's detection + recovery windows + 1 min)",
        default=None,
    )
    pattern: str | None = doc("optional: run stress-ng inside this process's cpu cgroup", default=None)
    pidfile: str | None = doc("optional: run stress-ng inside the cpu cgroup of the pid in this file", default=None)

    def __post_init__(self) -> None:
        _validate_target(self.pattern, self.pidfile, required=False)
        if self.load is not None and not 1 <= self.load <= 100:
            raise ValueError(f"load: expected a percentage 1-100, got {self.load}")
        if self.duration is not None and self.duration < 1:
            raise ValueError("duration: expected at least 1s")


class CpuPressure(Fault):
    """Burn CPU with stress-ng, optionally inside the target's own cpu cgroup (so it competes
    for the target's CPU quota and shares).

    stress-ng runs detached in its own process group (group id journalled), with `--timeout`
    as the dead-man's switch. Its `--temp-path` is the run's scratch folder, which names the run
    id: the revert also finds a stress-ng started just before a crash, when its group id was not
    journalled yet. The revert stops the whole group and verifies it is gone.
    """

    kind = "cpu-pressure"
    target = "local"
    Params = CpuPressureParams
    params: CpuPressureParams

    def preflight(self) -> None:
        from drillkit.lab.services import binary

        p = self.params
        self.binary = binary("stress-ng")  # PreflightError naming the Debian package
        self.n = p.workers.of(os.cpu_count() or 1)
        self.procs_file: Path | None = None
        if p.pattern or p.pidfile:
            pid = _one_target(self.kind, p.pattern, p.pidfile)
            h = cg.hierarchy("cpu")
            own = cg.cgroup_of(pid, h, "cpu") if h else None
            if h is None or own is None:
                raise PreflightError(f"{self.kind}: no cpu cgroup controller for pid {pid}")
            if not cg.writable(own):
                raise PreflightError(f"{self.kind}: cannot move stress-ng into {own}: not writable")
            self.target_pid, self.procs_file = pid, own / "cgroup.procs"

    def plan(self) -> list[str]:
        p, n = self.params, getattr(self, "n", "?")
        procs_file: Path | None = getattr(self, "procs_file", None)
        where = f" inside {procs_file.parent}" if procs_file else ""
        return [
            f"start stress-ng --cpu {n}{f' --cpu-load {p.load}' if p.load else ''}{where}, "
            f"--timeout {self._timeout()}s, detached in its own process group",
            "revert: stop the process group and verify it is gone",
        ]

    def _timeout(self) -> int:
        return math.ceil(self.params.duration or _drill_length(self.ctx))

    @_host_errors
    def inject(self, undo: Undo) -> None:
        p, ctx = self.params, self.ctx
        work = state_dir(ctx.run_id)
        # --temp-path (unused by the cpu stressor) puts the run id in the command line
        argv = [
            self.binary,
            "--cpu",
            str(self.n),
            "--timeout",
            f"{self._timeout()}s",
            "--quiet",
            "--temp-path",
            str(work),
        ]
        if p.load:
            argv += ["--cpu-load", str(p.load)]
        if self.procs_file is not None:  # move itself, then exec: its workers are born inside
            argv = ["sh", "-c", 'echo $$ > "$0" && exec "$@"', str(self.procs_file), *argv]
        log_file = work / "stress-ng.log"
        handle = undo.register(
            self.kind, pgid=None, workers=self.n, timeout=self._timeout(), log_file=str(log_file), temp_path=str(work)
        )
        pgid = spawn(argv, log_file=log_file).pid
        handle.update(pgid=pgid)
        self.ctx.harm_started()  # stress-ng runs (its workers fork within milliseconds)
        deadline = time.monotonic() + 10
        while len(running := [q for q in group_members(pgid) if "stress-ng" in cmdline(q)]) < self.n + 1:
            if not alive(pgid):
                log = log_file.read_text(errors="replace")[-500:]
                raise UnavailableError(f"{self.kind}: stress-ng exited at once: {log}")
            if time.monotonic() >= deadline:
                raise UnavailableError(f"{self.kind}: only {len(running)} stress-ng processes after 10s")
            _check_stop(ctx)
            ctx.stop.wait(0.05)
        handle.update(processes=running)  # evidence: the workers, once all of them run
        ctx.log(f"{self.kind}: stress-ng group {pgid} running {self.n} workers")

    @classmethod
    def revert(cls, ctx: FaultContext, data: dict[str, Any]) -> dict[str, Any]:
        groups = {int(data["pgid"])} if data.get("pgid") else set()
        if data.get("temp_path"):  # started just before a crash: found by its run's --temp-path
            for pid in find_processes(rf"stress-ng .*--temp-path {re.escape(data['temp_path'])}(\s|$)", None):
                with contextlib.suppress(ProcessLookupError):
                    groups.add(os.getpgid(pid))
        result: dict[str, Any] = {"signalled": [], "killed_hard": False}
        for pgid in sorted(groups):
            stopped = stop_group(pgid, "stress-ng")
            result = {
                "signalled": result["signalled"] + stopped["signalled"],
                "killed_hard": result["killed_hard"] or stopped["killed_hard"],
            }
        _remove_scratch(data.get("log_file"))
        return result


# --- latency --------------------------------------------------------------------------------


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


class Latency(Fault):
    """Turn on the lab DB proxy's delay (the "high latency" incident).

    The delaying TCP proxy between the app and PostgreSQL is the lab's (`drillkit.lab.proxy`,
    reading `{"delay_ms": N}` from its control file every ≤200 ms); this fault only writes that
    file, after journalling whether one existed and its content (a delay setting, not a secret).
    The revert puts the previous file back byte for byte, or removes it.
    """

    kind = "latency"
    target = "local"
    Params = LatencyParams
    params: LatencyParams
    PICKUP_S = 0.25  # the proxy re-reads its control file at least every 200 ms

    @property
    def delay_ms(self) -> int:
        return max(1, round(self.params.delay * 1000))

    def preflight(self) -> None:
        p = self.params
        control = Path(p.control)
        if not control.parent.is_dir():
            raise PreflightError(f"{self.kind}: directory of the control file {control} does not exist")
        if not os.access(control.parent, os.W_OK):
            raise PreflightError(f"{self.kind}: cannot write in {control.parent}")
        try:
            socket.create_connection((p.proxy_host, p.proxy_port), timeout=2).close()
        except OSError as exc:
            raise PreflightError(
                f"{self.kind}: no proxy listening on {p.proxy_host}:{p.proxy_port}: {exc.strerror or exc}"
            ) from None

    def plan(self) -> list[str]:
        p = self.params
        return [
            f'write {{"delay_ms": {self.delay_ms}}} to {p.control} (proxy {p.proxy_host}:{p.proxy_port})',
            f"revert: restore the previous {Path(p.control).name} or remove it",
        ]

    @_host_errors
    def inject(self, undo: Undo) -> None:
        control = Path(self.params.control)
        previous: dict[str, Any] = {"existed": control.exists()}
        if previous["existed"]:
            raw = control.read_bytes()
            try:
                previous["previous"] = raw.decode()
            except UnicodeDecodeError:
                previous["previous_b64"] = base64.b64encode(raw).decode()
            previous["mode"] = stat.S_IMODE(control.stat().st_mode)
        undo.register(self.kind, control=str(control), **previous)
        body = json.dumps({"delay_ms": self.delay_ms, "run_id": self.ctx.run_id}).encode()
        _write_atomically(control, body, previous.get("mode", 0o644))
        self.ctx.stop.wait(self.PICKUP_S)
        self.ctx.harm_started()  # the proxy has picked the delay up

    @classmethod
    def revert(cls, ctx: FaultContext, data: dict[str, Any]) -> dict[str, Any]:
        control = Path(data["control"])
        if not data.get("existed"):
            existed = control.exists()
            control.unlink(missing_ok=True)
            return {"removed": existed}
        raw = (
            base64.b64decode(data["previous_b64"]) if "previous_b64" in data else str(data.get("previous", "")).encode()
        )
        if control.exists() and control.read_bytes() == raw:
            return {"restored": False, "note": "already the previous content"}
        _write_atomically(control, raw, int(data.get("mode", 0o644)))
        return {"restored": True}


# --- auth-secret-corruption -----------------------------------------------------------------


@dataclass(frozen=True)
class AuthSecretCorruptionParams:
    secret_file: str = doc("the JWT secret file the replicas read at startup")
    pattern: str | None = doc("regex matched against the replicas' command lines", default=None)
    pidfiles: tuple[str, ...] = doc("pid files of the replicas", default=())
    count: Count = doc("how many replicas to restart onto the bad secret (count or %)", default=Count(100, True))
    restart: tuple[str, ...] = doc("command (argv) started for each replica not back within back_within", default=())
    restart_cwd: str | None = None
    restart_log: str | None = doc("file the restarted processes' output is appended to", default=None)
    back_within: Duration = doc("how long to wait for the supervisor to bring replicas back", default=10.0)

    def __post_init__(self) -> None:
        if (self.pattern is None) == (not self.pidfiles):
            raise ValueError("expected exactly one of `pattern` or `pidfiles`")
        _validate_target(self.pattern, None, required=False)


def _replicas(pattern: str | None, pidfiles: list[str] | tuple[str, ...]) -> list[int]:
    if pidfiles:
        return sorted({pid for pf in pidfiles for pid in find_processes(None, pf)})
    return find_processes(pattern, None)


def _bounce(
    victims: list[int],
    data: dict[str, Any],
    on_signal: Callable[[int], None] | None = None,
    stop: StopFlag | None = None,
) -> dict[str, Any]:
    """SIGTERM `victims`, wait for as many new replicas (their supervisor's restarts), and start
    `restart` for each one not back within `back_within`.

    With `stop` (while injecting), every wait ends as soon as the drill is asked to stop, and
    nothing more is done: the revert deals with what is left. A revert passes none: its waits
    must not be cut short."""
    pattern, pidfiles = data.get("pattern"), data.get("pidfiles") or []

    def pause(seconds: float) -> bool:
        """Sleep; True when the drill is being stopped."""
        if stop is None:
            time.sleep(seconds)
            return False
        return stop.wait(seconds)

    def wait_gone_or_stop(pids: list[int], timeout: float) -> list[int]:
        deadline = time.monotonic() + timeout
        while (left := wait_gone(pids, 0)) and time.monotonic() < deadline and not pause(0.02):
            pass
        return left

    before = set(_replicas(pattern, pidfiles))
    for pid in victims:
        if on_signal:
            on_signal(pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    if (left := wait_gone_or_stop(victims, 10.0)) and not (stop and stop.is_set()):
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        wait_gone_or_stop(left, 5.0)
    deadline = time.monotonic() + float(data.get("back_within", 0))
    while True:
        back = [pid for pid in _replicas(pattern, pidfiles) if pid not in before]
        if len(back) >= len(victims) or time.monotonic() >= deadline or pause(0.1):
            break
    restarted = []
    if data.get("restart") and not (stop and stop.is_set()):
        for _ in range(len(victims) - len(back)):
            restarted.append(spawn(list(data["restart"]), data.get("restart_cwd"), data.get("restart_log")).pid)
    return {"signalled": victims, "back": back, "restarted": restarted}


class AuthSecretCorruption(Fault):
    """Replace the JWT secret file with random bytes and restart replicas onto it (the
    "authentication failures" incident): tokens issued before no longer verify.

    The original is first copied to `.<name>.drillkit-backup-<run id>` next to it, mode 0600;
    the journal records that path, never the secret. Replicas are restarted with SIGTERM (the lab
    supervisor brings them back; otherwise `restart` is started for each missing one). The revert
    writes the backup's content back (atomic rename, original mode and owner), restarts the
    replicas that started on the bad secret, and only then deletes the backup, so an interrupted
    revert can be run again.
    """

    kind = "auth-secret-corruption"
    target = "local"
    Params = AuthSecretCorruptionParams
    params: AuthSecretCorruptionParams

    def _backup(self) -> Path:
        secret = Path(self.params.secret_file)
        return secret.with_name(f".{secret.name}.drillkit-backup-{self.ctx.run_id}")

    def preflight(self) -> None:
        p = self.params
        secret = Path(p.secret_file)
        if not secret.is_file():
            raise PreflightError(f"{self.kind}: secret file {secret} does not exist or is not a file")
        if secret.is_symlink():  # replacing it would replace the link, not what it points to
            raise PreflightError(
                f"{self.kind}: {secret} is a symbolic link; name the file it points to ({secret.resolve()})"
            )
        if not os.access(secret, os.R_OK) or not os.access(secret.parent, os.W_OK):
            raise PreflightError(f"{self.kind}: need read access to {secret} and write access to {secret.parent}")
        if self._backup().exists():
            raise PreflightError(f"{self.kind}: backup {self._backup()} already exists")
        found = _replicas(p.pattern, p.pidfiles)
        what = f"pattern {p.pattern!r}" if p.pattern else f"pid files {', '.join(p.pidfiles)}"
        if not found:
            raise PreflightError(f"{self.kind}: no running replica matches {what}")
        n = check_blast_radius(
            self.kind, len(found), p.count, self.ctx.scenario.guardrails.max_targets, f"replica(s) matching {what}"
        )
        self.replicas, self.victims = found, found[:n]

    def plan(self) -> list[str]:
        p = self.params
        victims = getattr(self, "victims", [])
        return [
            f"copy {p.secret_file} to {self._backup()} (mode 0600)",
            f"replace {p.secret_file} with random bytes (atomic rename)",
            *[f"restart replica pid {pid} with SIGTERM: {cmdline(pid)[:100]}" for pid in victims],
            "revert: restore the secret from the backup, restart those replicas again, delete the backup",
        ]

    @_host_errors
    def inject(self, undo: Undo) -> None:
        p, ctx = self.params, self.ctx
        secret, backup = Path(p.secret_file), self._backup()
        st = secret.stat()
        data: dict[str, Any] = dict(
            secret_file=str(secret),
            backup=str(backup),
            backup_complete=False,
            corrupted=False,
            mode=stat.S_IMODE(st.st_mode),
            uid=st.st_uid,
            gid=st.st_gid,
            pattern=p.pattern,
            pidfiles=list(p.pidfiles),
            restart=list(p.restart),
            restart_cwd=p.restart_cwd,
            restart_log=p.restart_log,
            back_within=p.back_within,
            replicas_before=self.replicas,
            killed=[],
        )
        handle = undo.register(self.kind, **data)
        original = secret.read_bytes()
        fd = os.open(backup, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(original)
            fh.flush()
            os.fsync(fh.fileno())
        _fsync_dir(backup.parent)
        handle.update(backup_complete=True)
        junk = original
        while junk.strip() == original.strip():  # random, and long enough to be accepted as a key
            junk = os.urandom(max(48, len(original)))
        _write_atomically(secret, junk, data["mode"], (st.st_uid, st.st_gid))
        handle.update(corrupted=True)
        _check_stop(ctx)
        killed: list[int] = []

        def journal_first(pid: int) -> None:
            killed.append(pid)
            handle.update(killed=list(killed))

        result = _bounce(self.victims, data, journal_first, ctx.stop)
        handle.update(restarted=result["restarted"], back=result["back"])
        ctx.harm_started()  # the replicas now run with the bad secret
        _check_stop(ctx)
        ctx.log(f"{self.kind}: secret replaced; restarted {len(self.victims)} replica(s): {result}")

    @classmethod
    def revert(cls, ctx: FaultContext, data: dict[str, Any]) -> dict[str, Any]:
        secret, backup = Path(data["secret_file"]), Path(data["backup"])
        if not backup.exists():
            return {"restored": False, "note": "no backup: already reverted, or the secret was never touched"}
        if not data.get("backup_complete"):  # crashed while writing the backup: secret untouched
            backup.unlink()
            return {"restored": False, "removed_partial_backup": True}
        _write_atomically(secret, backup.read_bytes(), int(data["mode"]), (int(data["uid"]), int(data["gid"])))
        # replicas that started after the corruption began read the bad secret: restart them
        before = {int(x) for x in data.get("replicas_before", [])}
        fresh = [pid for pid in _replicas(data.get("pattern"), data.get("pidfiles") or []) if pid not in before]
        result = _bounce(fresh, data) if (fresh or data.get("killed")) else {"signalled": []}
        # a replica that outlived its SIGTERM (an inject stopped before SIGKILL) is still there
        replicas = set(_replicas(data.get("pattern"), data.get("pidfiles") or []))
        survived = [pid for pid in data.get("killed", []) if pid in replicas]
        # each fresh replica was just replaced (by its supervisor or `restart`): it counts once
        missing = len(data.get("killed", [])) - len(survived) - len(fresh)
        if missing > 0 and data.get("restart"):
            result["restarted"] = [
                *result.get("restarted", []),
                *(
                    spawn(list(data["restart"]), data.get("restart_cwd"), data.get("restart_log")).pid
                    for _ in range(missing)
                ),
            ]
        result["survived"] = survived
        backup.unlink()
        _fsync_dir(backup.parent)
        return {"restored": True, **result}


FAULTS: list[type[Fault]] = [DbConnectionExhaustion, MemoryPressure, CpuPressure, Latency, AuthSecretCorruption]


# --- the connection holder's command line ---------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m drillkit.faults.lab", description="Helpers that drillkit's lab faults run detached."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    h = sub.add_parser("hold-connections", help="open and hold PostgreSQL connections")
    h.add_argument("--dsn", required=True, help="libpq connection string (password via PGPASSWORD)")
    h.add_argument("--count", default="all", help='a number, or "all" (until the server refuses)')
    h.add_argument("--reserve", type=int, default=0, help='with "all": connections handed back')
    h.add_argument("--cap", type=int, default=10000, help='with "all": never open more than this')
    h.add_argument("--status", type=Path, required=True, help="JSON status file written when holding")
    h.add_argument("--owner-pid", type=int, required=True, help="let go when this process is gone")
    h.add_argument("--max-hold", type=float, required=True, help="let go after this many seconds")
    h.add_argument("--application-name", required=True)
    h.add_argument("--connect-timeout", type=float, default=5.0)
    args = parser.parse_args(argv)
    count = None if args.count == "all" else int(args.count)
    return hold_connections(
        args.dsn,
        count,
        args.reserve,
        args.cap,
        args.status,
        args.owner_pid,
        args.max_hold,
        args.application_name,
        args.connect_timeout,
    )


if __name__ == "__main__":
    raise SystemExit(main())
