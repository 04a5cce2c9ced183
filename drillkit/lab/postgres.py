"""The lab's PostgreSQL: a private cluster on 127.0.0.1 with a small `max_connections`, the
app's own (non-superuser) role and database, run as the `postgres` OS user when drillkit runs
as root (PostgreSQL refuses root). Every failure is one UnavailableError line naming the log.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from drillkit.errors import UnavailableError
from drillkit.lab.services import binary
from drillkit.lab.state import LabState, Proc, running, stop_proc
from drillkit.procs import alive, read_pid
from drillkit.signals import wait_until

PG_SUPERUSER = "postgres"
APP_USER = "chatbot"  # the app is not a superuser: exhaustion hits it first, like production
APP_DB = "chatbot"
MAX_CONNECTIONS = 20  # small, so the connection-exhaustion drill needs few connections


def os_user() -> str | None:
    """PostgreSQL refuses to run as root: use the `postgres` account then."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(PG_SUPERUSER)
    except KeyError:
        raise UnavailableError(
            "running as root needs the `postgres` OS user: install it with `apt-get install postgresql`"
        ) from None
    return PG_SUPERUSER


def _as_user(user: str | None) -> dict[str, Any]:
    if user is None:
        return {}
    pw = pwd.getpwnam(user)
    return {
        "user": pw.pw_uid,
        "group": pw.pw_gid,
        "extra_groups": [],
        "env": {**os.environ, "HOME": pw.pw_dir, "USER": user},
    }


def _reachable_by(user: str, path: Path) -> bool:
    return (
        subprocess.run(["test", "-w", str(path), "-a", "-x", str(path)], check=False, **_as_user(user)).returncode == 0
    )


def cluster_root(lab_dir: Path, user: str | None) -> Path:
    """Where the cluster lives: `<dir>/postgres`, or a private folder under the system temp
    dir when the `postgres` user cannot reach the lab dir (e.g. a 0700 home or pytest tmp)."""
    root = lab_dir / "postgres"
    root.mkdir(exist_ok=True)
    if user is None:
        return root
    pw = pwd.getpwnam(user)
    os.chown(root, pw.pw_uid, pw.pw_gid)
    if _reachable_by(user, root):
        return root
    digest = hashlib.sha256(str(lab_dir.resolve()).encode()).hexdigest()[:12]
    root = Path(tempfile.gettempdir()) / f"drillkit-lab-pg-{digest}"
    root.mkdir(mode=0o700, exist_ok=True)
    os.chown(root, pw.pw_uid, pw.pw_gid)
    return root


def run_pg(state: LabState, *argv: str, timeout: float = 60, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [binary(argv[0]), *argv[1:]],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=state.pg_root,
            **_as_user(state.pg_user),
            **kwargs,
        )
    except subprocess.TimeoutExpired:
        raise UnavailableError(
            f"`{' '.join(argv[:2])}` did not finish within {timeout:g}s "
            f"(PostgreSQL log: {Path(state.pg_root) / 'postgres.log'})"
        ) from None
    except OSError as exc:
        raise UnavailableError(f"cannot run {argv[0]}: {exc}") from None


def _wait_for_the_dead(data: Path, within: float = 10.0) -> None:
    """A killed postmaster stays a zombie until init reaps it (here up to ~2 s), and its
    `postmaster.pid` then names a process that still exists: the new server refuses to start.
    `lab up` right after a crash waits, bounded, for it to be gone."""
    stale = read_pid(data / "postmaster.pid")
    if stale is not None and not alive(stale):
        wait_until(lambda: not Path(f"/proc/{stale}").exists(), time.monotonic() + within, 0.1)


def start_postgres(state: LabState) -> Proc:
    root = Path(state.pg_root)
    data, log = root / "data", root / "postgres.log"
    if not (data / "PG_VERSION").exists():
        r = run_pg(
            state,
            "initdb",
            "-D",
            str(data),
            "-U",
            PG_SUPERUSER,
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        )
        if r.returncode != 0:
            raise UnavailableError(f"initdb failed: {r.stdout}{r.stderr}")
        with (data / "postgresql.conf").open("a") as conf:
            conf.write("include_if_exists = 'drillkit-lab.conf'\n")
    settings = {  # rewritten at every start, so a new --base-port applies
        "listen_addresses": "'127.0.0.1'",
        "port": str(state.ports.postgres),
        "unix_socket_directories": "''",  # TCP only: no socket path length/permission trouble
        "max_connections": str(MAX_CONNECTIONS),
        "superuser_reserved_connections": "3",
        "shared_buffers": "16MB",
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
    }
    conf_text = "".join(f"{k} = {v}\n" for k, v in settings.items())
    conf_file = data / "drillkit-lab.conf"
    conf_file.write_text(conf_text)
    if state.pg_user:
        pw = pwd.getpwnam(state.pg_user)
        os.chown(conf_file, pw.pw_uid, pw.pw_gid)
    _wait_for_the_dead(data)
    r = run_pg(state, "pg_ctl", "start", "-w", "-t", "30", "-D", str(data), "-l", str(log), start_new_session=True)
    if r.returncode != 0:
        tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
        raise UnavailableError(f"PostgreSQL did not start: {r.stdout}{r.stderr}\n{tail}")
    pid = read_pid(data / "postmaster.pid")
    if pid is None:
        raise UnavailableError(f"PostgreSQL started but {data / 'postmaster.pid'} has no pid")
    bootstrap_db(state)
    return Proc(pid=pid, pgid=os.getpgid(pid), marker=str(data), log=str(log))


def bootstrap_db(state: LabState) -> None:
    """The app's own role and database (idempotent)."""
    import psycopg

    try:
        with psycopg.connect(state.dsn_admin, autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (APP_USER,)).fetchone():
                conn.execute(f"CREATE ROLE {APP_USER} LOGIN")
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (APP_DB,)).fetchone():
                conn.execute(f"CREATE DATABASE {APP_DB} OWNER {APP_USER}")
    except psycopg.Error as exc:
        text = " ".join(str(exc).split())
        raise UnavailableError(
            f"PostgreSQL: cannot create the app's role and database ({state.dsn_admin}): {text}"
        ) from None


def stop_postgres(state: LabState, proc: Proc) -> None:
    if running(proc):
        run_pg(state, "pg_ctl", "stop", "-w", "-t", "20", "-m", "fast", "-D", str(Path(state.pg_root) / "data"))
    stop_proc(proc, signal.SIGINT)  # leftovers (SIGINT = PostgreSQL's fast shutdown)
