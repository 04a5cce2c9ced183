"""The program that reaches PostgreSQL for `db-connection-exhaustion`, so the runner never
imports psycopg (about 11 MiB of a drill's memory) and its signal handling and waits stay free
of blocking libpq connects. Three subcommands:

    python -m drillkit.faults.local.holder hold-connections --dsn DSN --count all --status FILE ...
    python -m drillkit.faults.local.holder slots --dsn DSN
    python -m drillkit.faults.local.holder release --dsn DSN --application-name TAG ...

`hold-connections` is the detached connection holder: a process of its own, not a thread of the
runner, so its pid (= its process group) can be journalled and stopped by `drillkit cleanup`
after a crash. It lets go when told to (SIGTERM/SIGINT/SIGHUP), when its owner (the runner) is
gone, or after `--max-hold` seconds: the dead-man's switch. It reports through a JSON status
file: `{"state": "holding", "backend_pids": [...], "refused": "..."}` or an error.

`slots` (preflight: the server's connection slots) and `release` (the revert: wait until the
holder's backends are gone from pg_stat_activity, `pg_terminate_backend` on stragglers) are
short-lived: each makes one connection attempt and prints one JSON object on stdout, its
result or `{"error": "...", "transient": true|false}` (exit status 1) — psycopg errors are
classified here, where psycopg is, and the runner retries the transient ones. The password
comes from PGPASSWORD (set from `password_env` by the runner), never from the command line.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drillkit.files import write_atomically
from drillkit.procs import alive
from drillkit.signals import StopFlag, on_signals, wait_until

if TYPE_CHECKING:
    import psycopg

REFUSED = ("too many clients", "remaining connection slots are reserved")
"""What PostgreSQL says when every slot this role may use is taken."""
OWNER_CHECK_S = 0.5  # how often the holder looks for its owner, seconds
_FINAL = (
    "authentication failed",
    "pg_hba.conf",
    "does not exist",
    "no password supplied",
    "permission denied",
    "password",
)
"""Connection failures that no retry mends (psycopg gives them no SQLSTATE)."""
SLOTS_QUERY = (
    "SELECT current_setting('max_connections')::int,"
    " current_setting('superuser_reserved_connections')::int,"
    " (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
    "  AND pid <> pg_backend_pid())::int,"
    " (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)"
)


def read_status(path: Path) -> dict[str, Any]:
    import json  # here, not at the top: validating a scenario imports the faults, not json

    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


def write_status(path: Path, **data: Any) -> None:
    import json

    write_atomically(path, json.dumps(data).encode(), 0o600)


def transient(exc: Exception) -> bool:
    """Connection trouble and a full server are transient, the rest final. Connection failures
    carry no SQLSTATE in psycopg, so the server's message decides."""
    import psycopg

    text = str(exc).lower()
    sqlstate = getattr(exc, "sqlstate", None)
    return isinstance(exc, psycopg.OperationalError) and (
        any(r in text for r in REFUSED)
        or (sqlstate or "").startswith(("08", "53", "57P"))
        or (sqlstate is None and not any(f in text for f in _FINAL))
    )


def _say(**result: Any) -> None:
    import json

    print(json.dumps(result), flush=True)


@contextlib.contextmanager
def _reported() -> Iterator[None]:
    """A psycopg error in the block becomes the one JSON line `{"error", "transient"}` and exit
    status 1 (SystemExit), for the runner to wrap into drillkit's error tree."""
    import psycopg

    try:
        yield
    except psycopg.Error as exc:
        _say(error=str(exc).strip().replace("\n", " "), transient=transient(exc))
        raise SystemExit(1) from None


def _connect(dsn: str, application_name: str, connect_timeout: float) -> psycopg.Connection[Any]:
    import psycopg

    return psycopg.connect(
        dsn, autocommit=True, application_name=application_name, connect_timeout=max(1, round(connect_timeout))
    )


def slots(dsn: str, application_name: str, connect_timeout: float) -> int:
    """Print the server's connection slots as this role sees them (`ServerSlots`'s fields)."""
    with _reported(), _connect(dsn, application_name, connect_timeout) as conn:
        row = conn.execute(SLOTS_QUERY).fetchone()
    assert row is not None
    _say(max_connections=row[0], superuser_reserved=row[1], in_use=row[2], superuser=bool(row[3]))
    return 0


def release(
    dsn: str,
    application_name: str,
    tag: str,
    backend_pids: list[int],
    connect_timeout: float,
    within: float,
    terminate_after: float,
) -> int:
    """Wait up to `within` seconds until no backend carries `tag` (the holder's connections),
    `pg_terminate_backend` those still there after `terminate_after` seconds; print what was
    found: `released`, `left`, `terminated`, and `reused` (journalled backend pids now serving
    someone else). A SIGTERM (the runner asked to stop) cuts the wait short."""
    stop = StopFlag()
    rows: list[tuple[int, str]] = []
    left: list[int] = []
    terminated: set[int] = set()
    with on_signals(stop.set, (signal.SIGTERM,)), _reported(), _connect(dsn, application_name, connect_timeout) as conn:
        started = time.monotonic()

        def released() -> bool:
            nonlocal rows, left
            rows = conn.execute(
                "SELECT pid, application_name FROM pg_stat_activity"
                " WHERE (pid = ANY(%s) OR application_name = %s) AND pid <> pg_backend_pid()",
                (backend_pids, tag),
            ).fetchall()
            left = sorted(pid for pid, app in rows if app == tag)
            if left and time.monotonic() >= started + terminate_after:
                for pid in left:
                    if conn.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,):
                        terminated.add(pid)
            return not left

        done = wait_until(released, started + within, 0.1, stop)
    _say(
        released=bool(done),
        left=left,
        terminated=sorted(terminated),
        reused=sorted(pid for pid, app in rows if app != tag),
    )
    return 0


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

    stop = StopFlag()
    with on_signals(stop.set, (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)):
        conns: list[psycopg.Connection[Any]] = []
        refused = None
        try:
            while len(conns) < (cap if count is None else count):
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
                    if any(r in text for r in REFUSED):
                        refused = text
                        break
                    write_status(status, state="error", error=text, held=len(conns))
                    return 1
            if count is not None and len(conns) < count:
                write_status(
                    status,
                    state="error",
                    held=len(conns),
                    error=f"server refused after {len(conns)} of {count} connections: {refused}",
                )
                return 1
            for _ in range(min(reserve, len(conns))):
                conns.pop().close()
            pids = [int(c.execute("SELECT pg_backend_pid()").fetchone()[0]) for c in conns]  # type: ignore[index]
            write_status(status, state="holding", backend_pids=pids, refused=refused, holder_pid=os.getpid())
            wait_until(lambda: not alive(owner_pid), time.monotonic() + max_hold, OWNER_CHECK_S, stop)
            return 0
        finally:
            for c in conns:
                with contextlib.suppress(Exception):
                    c.close()


def main(argv: list[str] | None = None) -> int:
    import argparse  # here: the runner imports this module for read_status only

    parser = argparse.ArgumentParser(
        prog="python -m drillkit.faults.local.holder", description="Helpers that drillkit's local faults run detached."
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
    s = sub.add_parser("slots", help="print the server's connection slots as JSON")
    r = sub.add_parser("release", help="wait until a tag's backends are gone (terminating stragglers)")
    for p in (s, r):
        p.add_argument("--dsn", required=True, help="libpq connection string (password via PGPASSWORD)")
        p.add_argument("--application-name", default="drillkit", help="this check's own connection's")
        p.add_argument("--connect-timeout", type=float, default=5.0)
    r.add_argument("--tag", required=True, help="the application_name of the connections to see gone")
    r.add_argument("--backend-pids", default="", help="comma-separated journalled backend pids")
    r.add_argument("--within", type=float, required=True, help="give up after this many seconds")
    r.add_argument("--terminate-after", type=float, required=True, help="pg_terminate_backend after this many")
    args = parser.parse_args(argv)
    if args.command == "slots":
        return slots(args.dsn, args.application_name, args.connect_timeout)
    if args.command == "release":
        pids = [int(p) for p in args.backend_pids.split(",") if p]
        return release(
            args.dsn,
            args.application_name,
            args.tag,
            pids,
            args.connect_timeout,
            args.within,
            args.terminate_after,
        )
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
