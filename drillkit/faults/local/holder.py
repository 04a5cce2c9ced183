"""The detached connection holder that `db-connection-exhaustion` starts:

    python -m drillkit.faults.local.holder hold-connections --dsn DSN --count all --status FILE ...

A process of its own, not a thread of the runner, so its pid (= its process group) can be
journalled and stopped by `drillkit cleanup` after a crash, and so the runner's waits stay free
of blocking libpq connects. It lets go when told to (SIGTERM/SIGINT/SIGHUP), when its owner (the
runner) is gone, or after `--max-hold` seconds: the dead-man's switch. It reports through a JSON
status file: `{"state": "holding", "backend_pids": [...], "refused": "..."}` or an error.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drillkit.files import write_atomically
from drillkit.procs import alive
from drillkit.signals import StopFlag, wait_until

if TYPE_CHECKING:
    import psycopg

REFUSED = ("too many clients", "remaining connection slots are reserved")
"""What PostgreSQL says when every slot this role may use is taken."""
OWNER_CHECK_S = 0.5  # how often the holder looks for its owner, seconds


def read_status(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


def write_status(path: Path, **data: Any) -> None:
    write_atomically(path, json.dumps(data).encode(), 0o600)


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
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: stop.set(signal.Signals(signum).name))
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
