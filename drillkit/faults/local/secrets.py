"""auth-secret-corruption: replace the JWT secret file with random bytes and restart the
replicas onto it (the playbook's "authentication failures" incident).

Nothing secret is journalled: the original is copied to a 0600 backup in a private folder, and only the
backup's *path* is recorded.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from drillkit.errors import DrillkitError, PreflightError
from drillkit.faults import (
    Allowed,
    Declared,
    Fault,
    Made,
    Naming,
    OutOfBounds,
    RevertContext,
    Undo,
    check_blast_radius,
    digest,
    run_tags,
)
from drillkit.faults.local.common import check_stop, host_errors, restart, validate_target
from drillkit.faults.local.files import FileId, file_id
from drillkit.files import fsync_dir, write_atomically
from drillkit.model import Count, Duration, doc
from drillkit.procs import Moment, ProcId, brief_cmdline, find_processes, now, proc_id, same, wait_gone
from drillkit.signals import wait_until

if TYPE_CHECKING:
    from drillkit.signals import StopFlag

TERM_GRACE_S = 10.0  # SIGTERM, then SIGKILL after this long
KILL_GRACE_S = 5.0


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
        validate_target(self.pattern, None, required=False)


@dataclass(frozen=True)
class Replicas:
    """What preflight found: every running replica, and those inside the blast radius."""

    all: tuple[int, ...]
    victims: tuple[int, ...]
    backup: Path


@dataclass(frozen=True)
class AuthSecretCorruptionRecord:
    """How to undo it: the backup's path (never the secret), how to find and restart replicas.
    The revert signals only replicas started after `since` and those in `killed_ids`, and
    deletes the backup only if it is still the file `backup_id` names."""

    secret_file: str
    backup: str
    mode: int
    uid: int
    gid: int
    pattern: str | None = None
    pidfiles: tuple[str, ...] = ()
    restart: tuple[str, ...] = ()
    restart_cwd: str | None = None
    restart_log: str | None = None
    back_within: float = 0.0
    replicas_before: tuple[int, ...] = ()
    backup_complete: bool = False
    corrupted: bool = False
    killed: tuple[int, ...] = ()  # journalled before each SIGTERM
    restarted: tuple[int, ...] = ()
    back: tuple[int, ...] = ()
    since: Moment | None = None  # when inject began: a replica started later read the bad secret
    backup_id: FileId | None = None  # the backup as inject created it, before writing it
    killed_ids: tuple[ProcId, ...] = ()  # `killed` with start times


def backup_of(secret: Path, run_id: str, naming: Naming | None = None) -> Path:
    """Where the original goes: a private folder (0700) outside the secret's own folder, so
    nobody listing the lab finds a copy, named `drillkit-backup-<run id>` or blind
    `<platform>-config-<digest of the run id>`, the file named by a digest of the secret's path."""
    import tempfile  # here: it pulls in random and hashlib, which `drillkit validate` never needs

    naming = naming or Naming()
    folder = f"{naming.head(Made.BACKUP)}-{naming.tag(run_id)}"
    return Path(tempfile.gettempdir()) / folder / digest(str(secret), length=12)


def _is_backup_of(backup: Path, secret: Path, run_id: str) -> bool:
    """`backup` is where `backup_of` puts this run's copy of `secret`, under either naming."""
    import tempfile

    folder = backup.parent.name
    return (
        backup.parent.parent == Path(tempfile.gettempdir())
        and backup.name == digest(str(secret), length=12)
        and re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", folder) is not None
        and any(folder.endswith(f"-{tag}") for tag in run_tags(run_id))
    )


def _fresh(record: AuthSecretCorruptionRecord) -> list[int]:
    """Replicas started since inject began (they read the bad secret): never more of them than
    there were replicas, and none without a recorded start of the drill."""
    since = record.since
    if since is None:
        return []
    before = set(record.replicas_before)
    fresh = []
    for pid in _replicas(record.pattern, record.pidfiles):
        ident = proc_id(pid)
        if pid not in before and ident and ident.started.boot == since.boot and ident.started.ticks >= since.ticks:
            fresh.append(pid)
    if len(fresh) > max(1, len(record.replicas_before)):
        raise DrillkitError(
            f"{len(fresh)} processes match the replicas' {record.pattern or 'pid files'} since the drill began, "
            f"more than the {len(record.replicas_before)} replicas there were: none signalled; restart them by hand"
        )
    return fresh


def _replicas(pattern: str | None, pidfiles: tuple[str, ...]) -> list[int]:
    if pidfiles:
        return sorted({pid for pf in pidfiles for pid in find_processes(None, pf)})
    return find_processes(pattern, None)


def _bounce(
    victims: tuple[int, ...] | list[int],
    record: AuthSecretCorruptionRecord,
    on_signal: Callable[[int], None] | None = None,
    stop: StopFlag | None = None,
) -> dict[str, Any]:
    """SIGTERM `victims`, wait for as many new replicas (their supervisor's restarts), and start
    `restart` for each one not back within `back_within`.

    With `stop` (while injecting), every wait ends as soon as the drill is asked to stop, and
    nothing more is done: the revert deals with what is left. A revert passes none: its waits
    must not be cut short."""

    def stopped() -> bool:
        return stop is not None and stop.interrupts()

    victims = list(victims)
    before = set(_replicas(record.pattern, record.pidfiles))
    for pid in victims:
        if on_signal:
            on_signal(pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    if (left := wait_gone(victims, TERM_GRACE_S, stop)) and not stopped():
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        wait_gone(left, KILL_GRACE_S, stop)
    back: list[int] = []

    def all_back() -> bool:
        nonlocal back
        back = [pid for pid in _replicas(record.pattern, record.pidfiles) if pid not in before]
        return len(back) >= len(victims)

    wait_until(all_back, time.monotonic() + record.back_within, 0.1, stop)
    restarted: list[int] = []
    if record.restart and not stopped():
        restarted = restart(record.restart, record.restart_cwd, record.restart_log, len(victims) - len(back))
    return {"signalled": victims, "back": back, "restarted": restarted}


class AuthSecretCorruption(Fault[AuthSecretCorruptionParams, Replicas, AuthSecretCorruptionRecord]):
    """Replace the JWT secret file with random bytes and restart replicas onto it (the
    "authentication failures" incident): tokens issued before no longer verify.

    The original is first copied to a private folder outside the lab (`backup_of`), mode 0600;
    the journal records that path, never the secret. Replicas are restarted with SIGTERM (the lab
    supervisor brings them back; otherwise `restart` is started for each missing one). The revert
    writes the backup's content back (atomic rename, original mode and owner), restarts the
    replicas that started on the bad secret, and only then deletes the backup, so an interrupted
    revert can be run again.
    """

    kind = "auth-secret-corruption"
    target = "local"
    Params = AuthSecretCorruptionParams
    Record: ClassVar[type] = AuthSecretCorruptionRecord
    params: AuthSecretCorruptionParams

    def preflight(self) -> Replicas:
        p = self.params
        secret = Path(p.secret_file).absolute()  # the record must hold wherever cleanup runs from
        backup = backup_of(secret, self.ctx.run_id, self.ctx.naming)
        if not secret.is_file():
            raise PreflightError(f"{self.kind}: secret file {secret} does not exist or is not a file")
        if secret.is_symlink():  # replacing it would replace the link, not what it points to
            raise PreflightError(
                f"{self.kind}: {secret} is a symbolic link; name the file it points to ({secret.resolve()})"
            )
        if not os.access(secret, os.R_OK) or not os.access(secret.parent, os.W_OK):
            raise PreflightError(f"{self.kind}: need read access to {secret} and write access to {secret.parent}")
        if backup.exists():
            raise PreflightError(f"{self.kind}: backup {backup} already exists")
        found = _replicas(p.pattern, p.pidfiles)
        what = f"pattern {p.pattern!r}" if p.pattern else f"pid files {', '.join(p.pidfiles)}"
        if not found:
            raise PreflightError(f"{self.kind}: no running replica matches {what}")
        n = check_blast_radius(
            self.kind, len(found), p.count, self.ctx.scenario.guardrails.max_targets, f"replica(s) matching {what}"
        )
        return Replicas(tuple(found), tuple(found[:n]), backup)

    def plan(self, found: Replicas) -> list[str]:
        p = self.params
        return [
            f"copy {p.secret_file} to {found.backup} (mode 0600)",
            f"replace {p.secret_file} with random bytes (atomic rename)",
            *[f"restart replica pid {pid} with SIGTERM: {brief_cmdline(pid, 100)}" for pid in found.victims],
            "revert: restore the secret from the backup, restart those replicas again, delete the backup",
        ]

    @host_errors
    def inject(self, found: Replicas, undo: Undo) -> None:
        p, ctx = self.params, self.ctx
        secret, backup = Path(p.secret_file).absolute(), found.backup
        st = secret.stat()
        record = AuthSecretCorruptionRecord(
            secret_file=str(secret),
            backup=str(backup),
            mode=stat.S_IMODE(st.st_mode),
            uid=st.st_uid,
            gid=st.st_gid,
            pattern=p.pattern,
            pidfiles=p.pidfiles,
            restart=p.restart,
            restart_cwd=p.restart_cwd,
            restart_log=p.restart_log,
            back_within=p.back_within,
            replicas_before=found.all,
            since=now(),
        )
        handle = undo.register(self, record)
        original = secret.read_bytes()
        backup.parent.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(backup, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        made = os.fstat(fd)
        handle.update(backup_id=FileId(made.st_dev, made.st_ino))  # before a byte of it is written
        with os.fdopen(fd, "wb") as fh:
            fh.write(original)
            fh.flush()
            os.fsync(fh.fileno())
        fsync_dir(backup.parent)
        handle.update(backup_complete=True)
        junk = original
        while junk.strip() == original.strip():  # random, and long enough to be accepted as a key
            junk = os.urandom(max(48, len(original)))
        write_atomically(secret, junk, record.mode, (st.st_uid, st.st_gid))
        handle.update(corrupted=True)
        check_stop(ctx.stop)
        killed: list[int] = []
        ids: list[ProcId] = []

        def journal_first(pid: int) -> None:
            killed.append(pid)
            if (ident := proc_id(pid)) is not None:
                ids.append(ident)
            handle.update(killed=tuple(killed), killed_ids=tuple(ids))

        result = _bounce(found.victims, record, journal_first, ctx.stop)
        handle.update(restarted=tuple(result["restarted"]), back=tuple(result["back"]))
        ctx.harm_started()  # the replicas now run with the bad secret
        check_stop(ctx.stop)
        ctx.log(f"{self.kind}: secret replaced; restarted {len(found.victims)} replica(s): {result}")

    @classmethod
    def check(cls, record: AuthSecretCorruptionRecord, allowed: Allowed) -> None:
        """The secret file, how replicas are found and the restart command must be those of an
        auth-secret-corruption the run's scenario declared; the backup is the one its name
        gives; no more replicas signalled than there were."""
        if record.pattern is None and not record.pidfiles:
            raise OutOfBounds("pattern", "neither a pattern nor pid files: that would name every process")
        try:
            validate_target(record.pattern, None, required=False)
        except ValueError as exc:
            raise OutOfBounds("pattern", str(exc)) from None
        if len(record.killed) > len(record.replicas_before):
            raise OutOfBounds("killed", "more replicas signalled than there were")

        def declared(d: Declared) -> dict[str, object]:
            return {
                "secret_file": d.path("secret_file"),
                "pattern": d.text("pattern"),
                "pidfiles": d.argv("pidfiles"),
                "restart": d.argv("restart"),
                "restart_cwd": d.text("restart_cwd"),
                "restart_log": d.text("restart_log"),
                "back_within": d.params.get("back_within"),
            }

        recorded = {name: getattr(record, name) for name in declared(Declared({}, None))}
        allowed.require(cls.kind, recorded, declared)
        if not _is_backup_of(Path(record.backup), Path(record.secret_file), allowed.run_id):
            raise OutOfBounds("backup", f"{record.backup!r} is not this run's backup of {record.secret_file}")

    @classmethod
    def revert(cls, ctx: RevertContext, record: AuthSecretCorruptionRecord) -> dict[str, Any]:
        secret, backup = Path(record.secret_file), Path(record.backup)
        if not backup.exists():
            return {"restored": False, "note": "no backup: already reverted, or the secret was never touched"}
        if record.backup_id is None or file_id(backup) != record.backup_id:
            raise DrillkitError(
                f"{backup} is not the backup this drill made (another file is there now): left alone; "
                f"check {secret} by hand"
            )
        if not record.backup_complete:  # crashed while writing the backup: secret untouched
            backup.unlink()
            _remove_folder(backup)
            return {"restored": False, "removed_partial_backup": True}
        try:  # the secret keeps its owner (inject replaced it with the same one)
            st = secret.lstat()
            owner = (st.st_uid, st.st_gid)
        except FileNotFoundError:
            owner = (record.uid, record.gid)
        write_atomically(secret, backup.read_bytes(), record.mode & 0o777, owner)
        # replicas that started after the corruption began read the bad secret: restart them
        fresh = _fresh(record)
        result = _bounce(fresh, record) if (fresh or record.killed) else {"signalled": []}
        # a replica that outlived its SIGTERM (an inject stopped before SIGKILL) is still there
        replicas = set(_replicas(record.pattern, record.pidfiles))
        survived = [p.pid for p in record.killed_ids if p.pid in replicas and same(p)]
        # each fresh replica was just replaced (by its supervisor or `restart`): it counts once
        missing = len(record.killed) - len(survived) - len(fresh)
        if missing > 0 and record.restart:
            more = restart(record.restart, record.restart_cwd, record.restart_log, missing)
            result["restarted"] = [*result.get("restarted", []), *more]
        result["survived"] = survived
        backup.unlink()
        fsync_dir(backup.parent)
        _remove_folder(backup)
        return {"restored": True, **result}


def _remove_folder(backup: Path) -> None:
    """The backup's private folder, once empty."""
    with contextlib.suppress(OSError):
        backup.parent.rmdir()
