"""Throw-away PostgreSQL servers for tests: real ``initdb`` + ``pg_ctl``, no mocks.

Several test modules need a disposable database (the lab app, connection-exhaustion faults,
the postgres exporter), so the start/stop dance lives here once. PostgreSQL refuses to run as
root, so when the tests run as root the cluster is owned by and started as the ``postgres``
user; its directory must then be reachable by that user (pytest's own temp dirs are 0700 and
root-owned, so a private directory under the system temp dir is used instead).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

PG_BIN = Path(os.environ.get("DRILLKIT_PG_BIN", "/usr/lib/postgresql/15/bin"))
SUPERUSER = "postgres"


def free_port() -> int:
    """An unused TCP port on 127.0.0.1 (racy by nature, good enough for tests)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Postgres:
    """A running (or stopped) cluster; ``stop``/``start`` keep data and settings."""

    root: Path
    port: int
    run_as: str | None
    owns_root: bool
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    @property
    def logfile(self) -> Path:
        return self.root / "postgres.log"

    def dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}?connect_timeout=2"

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(PG_BIN / args[0]), *args[1:]],
            user=self.run_as,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def _checked(self, *args: str) -> None:
        proc = self._run(*args)
        if proc.returncode != 0:
            log = self.logfile.read_text() if self.logfile.exists() else ""
            raise RuntimeError(f"{args[0]} failed: {proc.stdout}{proc.stderr}\n{log}")

    def start(self, timeout: float = 30) -> None:
        """Start the postmaster as our own child (so it is reaped) and wait until it accepts."""
        if self._proc is not None and self._proc.poll() is not None:
            self._proc = None  # stopped behind our back (e.g. `pg_ctl stop` by a fault)
        with self.logfile.open("ab") as log:
            self._proc = subprocess.Popen(
                [str(PG_BIN / "postgres"), "-D", str(self.datadir)],
                user=self.run_as,
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while self._run("pg_isready", "-q", "-h", "127.0.0.1", "-p", str(self.port)).returncode:
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop("immediate")
                raise RuntimeError(f"postgres did not start:\n{self.logfile.read_text()}")
            time.sleep(0.05)

    def stop(self, mode: str = "fast") -> None:
        """Stop if running (idempotent); ``mode`` is pg_ctl's: smart, fast or immediate."""
        if self.running():
            self._checked("pg_ctl", "stop", "-w", "-t", "30", "-m", mode, "-D", str(self.datadir))
        if self._proc is not None:
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None

    def running(self) -> bool:
        return self._run("pg_ctl", "status", "-D", str(self.datadir)).returncode == 0

    def create_database(self, name: str) -> None:
        import psycopg  # local: keeps this helper importable without the driver

        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')

    def destroy(self) -> None:
        """Stop and remove the files when the directory was created here."""
        self.stop("immediate")
        if self.owns_root:
            shutil.rmtree(self.root, ignore_errors=True)


def _usable_by(user: str, path: Path) -> bool:
    probe = subprocess.run(["test", "-w", str(path), "-a", "-x", str(path)], user=user, check=False)
    return probe.returncode == 0


def start_postgres(tmpdir: Path | str, port: int, max_connections: int = 20) -> Postgres:
    """initdb (trust auth) + start on 127.0.0.1:``port``; sockets live in the cluster dir."""
    root, owns_root = Path(tmpdir) / "pg", False
    run_as = SUPERUSER if os.geteuid() == 0 else None
    root.mkdir(parents=True, exist_ok=True)
    pw = pwd.getpwnam(run_as) if run_as is not None else None
    if pw is not None:
        os.chown(root, pw.pw_uid, pw.pw_gid)
    # Unix socket paths are limited to ~107 bytes; root must also be reachable by run_as.
    if len(str(root)) > 80 or (run_as is not None and not _usable_by(run_as, root)):
        root.rmdir()
        root, owns_root = Path(tempfile.mkdtemp(prefix="drillkit-pg-")), True
        if pw is not None:
            os.chown(root, pw.pw_uid, pw.pw_gid)
    pg = Postgres(root=root, port=port, run_as=run_as, owns_root=owns_root)
    pg._checked(
        "initdb", "-D", str(pg.datadir), "-U", SUPERUSER, "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C"
    )
    settings = {
        "listen_addresses": "'127.0.0.1'",
        "port": str(port),
        "max_connections": str(max_connections),
        "unix_socket_directories": f"'{root}'",
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "shared_buffers": "16MB",
    }
    with (pg.datadir / "postgresql.conf").open("a") as conf:
        conf.writelines(f"{k} = {v}\n" for k, v in settings.items())
    pg.start()
    return pg
