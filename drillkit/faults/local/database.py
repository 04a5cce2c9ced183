"""db-connection-exhaustion: hold PostgreSQL connections until the server refuses new ones
(the playbook's "database" incident).

The runner never imports psycopg (about 11 MiB of a drill's memory, and blocking libpq
connects in its waits): every connection is made by the holder program (`holder.py`) — the
detached connection holder, and the short-lived `slots` (preflight) and `release` (the revert's
check) runs, whose one JSON line is read back into this module's dataclasses and drillkit's
error tree (transient or final, as the holder classified the psycopg error), retried by the
database policy. The DSN is checked when the scenario is loaded by `conninfo`, a reading of
libpq's syntax that needs no libpq. Nothing secret is journalled or put on a command line: the
DSN must not contain a password; `password_env` names the variable the helpers get it from.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from drillkit.errors import (
    Aborted,
    DrillkitError,
    PermanentError,
    PreflightError,
    TransientError,
    UnavailableError,
)
from drillkit.faults import Allowed, Declared, Fault, RevertContext, Undo
from drillkit.faults.local import conninfo
from drillkit.faults.local.common import check_stop, drill_length, host_errors
from drillkit.faults.local.files import (
    check_scratch,
    disguise,
    helper_files,
    remove_scratch,
    scratch_name,
    state_dir,
)
from drillkit.faults.local.holder import read_status
from drillkit.model import Duration, doc
from drillkit.procs import ProcId, alive, detach, find_processes, own_group, proc_id, run_briefly, stop_group
from drillkit.signals import wait_until

if TYPE_CHECKING:
    from drillkit.signals import StopFlag

# A disguised holder's script: the runner's import path (the link is not a virtualenv's
# python, so the interpreter would not find drillkit by itself), its arguments, the holder.
LAUNCHER = """import runpy, sys
sys.path[:0] = {path!r}
sys.argv[1:] = {args!r}
runpy.run_module("drillkit.faults.local.holder", run_name="__main__")
"""
RELEASE_WITHIN_S = 15.0  # how long the revert waits for the holder's backends to go
TERMINATE_AFTER_S = 3.0  # then pg_terminate_backend those still there
HELPER_START_S = 10.0  # a short-lived helper's allowance beyond its own waits: python, psycopg


def _env(password_env: str | None) -> dict[str, str]:
    """The helpers' environment: the runner's, with the password (if any) as PGPASSWORD."""
    if not password_env:
        return dict(os.environ)
    if password_env not in os.environ:
        raise PermanentError(f"database: environment variable {password_env} (password_env) is not set")
    return {**os.environ, "PGPASSWORD": os.environ[password_env]}


def _launcher(program: Path, script: str, args: list[str]) -> list[str]:
    """The command line of the holder program run as `program` (a link named like the
    platform's own: files.disguise), its arguments in `script`: `ps` shows `program script`."""
    package_root = str(Path(__file__).resolve().parents[3])  # an editable install is no path entry
    path = program.parent / script
    path.write_text(LAUNCHER.format(path=[package_root, *sys.path], args=args))
    path.chmod(0o600)
    return [str(program), str(path)]


@contextlib.contextmanager
def _helper_argv(args: list[str], program: Path | None) -> Iterator[list[str]]:
    """The command line of a short-lived holder subcommand: `python -m …`, or in a blind
    exercise the disguised program (made again if a crash came before it), for as long as the
    block runs."""
    if program is None:
        yield [sys.executable, "-m", "drillkit.faults.local.holder", *args]
        return
    program.parent.mkdir(mode=0o700, exist_ok=True)
    if not program.is_symlink():
        disguise(program.parent, program.name, sys.executable)
    try:
        yield _launcher(program, "task.py", args)
    finally:
        (program.parent / "task.py").unlink(missing_ok=True)


def _ask(
    what: str,
    args: list[str],
    password_env: str | None,
    stop: StopFlag,
    wait_s: float,
    program: Path | None = None,
    attempts: int = 6,
    max_delay: float = 30.0,
) -> dict[str, Any]:
    """Run a holder subcommand through the database retry policy and return its JSON result.
    Its `{"error", "transient"}` answer becomes TransientError (retried) or PermanentError, both
    `database: <what>: <the server's message>`; a stop request ends the wait (Aborted)."""
    import json  # here, not at the top: validating a scenario imports the faults, not json

    from drillkit.retry import retrying  # as json

    env = _env(password_env)
    result: dict[str, Any] = {}
    for attempt in retrying(f"database: {what}", stop, attempts=attempts, max_delay=max_delay):
        with attempt:
            with _helper_argv(args, program) as argv:
                done = run_briefly(argv, wait_s + HELPER_START_S, stop, env)
            check_stop(stop)
            if done is None:
                raise TransientError(f"database: {what}: no answer within {wait_s + HELPER_START_S:g}s")
            lines = done.stdout.strip().splitlines()
            try:
                result = dict(json.loads(lines[-1]))
            except (IndexError, ValueError):
                tail = (done.stderr.strip() or done.stdout.strip())[-800:]
                raise PermanentError(
                    f"database: {what}: the helper failed (exit status {done.returncode}): {tail or 'no output'}"
                ) from None
            if "error" in result:
                raise (TransientError if result.get("transient") else PermanentError)(
                    f"database: {what}: {result['error']}"
                )
    return result


@dataclass(frozen=True)
class ServerSlots:
    """What preflight found: the server's connection slots as this role sees them."""

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
    application_name: str | None = doc(
        "the held connections' application_name (default drillkit-<run id>-hold); a training "
        "exercise names them like the platform's own",
        default=None,
    )
    process_name: str | None = doc(
        "a training exercise's name for the holder process and its scratch folder, as `ps` shows "
        "them (default: python -m drillkit.faults.local.holder … in <tmp>/drillkit-<run id>)",
        default=None,
    )
    hold_at_most: Duration | None = doc(
        "dead-man's switch: the holder lets go after this long even if never reverted "
        "(default: the scenario's detection + recovery windows + 1 min)",
        default=None,
    )

    def __post_init__(self) -> None:
        from drillkit.redact import redact

        try:
            info = conninfo.parse(self.dsn)
        except ValueError as exc:
            raise ValueError(f"dsn: not a libpq connection string: {redact(str(exc))}") from None
        # libpq lets a later `password=` (even an empty one) override the URI's userinfo, so ask
        # the scrubber, which sees every form, as well as the parsed values
        if any(info.get(k) for k in conninfo.SECRETS) or redact(self.dsn) != self.dsn:
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


@dataclass(frozen=True)
class DbConnectionExhaustionRecord:
    """How to undo it: stop the holder, then make sure its backends are gone."""

    dsn: str
    application_name: str  # every held connection's, so stragglers are found by it
    password_env: str | None = None
    holder_pid: int | None = None
    backend_pids: tuple[int, ...] = ()
    status_file: str | None = None
    log_file: str | None = None
    held: int | None = None
    refused: str | None = None  # the server's refusal, the evidence of exhaustion
    launcher: str | None = None  # a disguised holder's script: in its command line, found by it
    program: str | None = None  # a disguised holder's program link (files.disguise)
    holder: ProcId | None = None  # `holder_pid` with its start time


class DbConnectionExhaustion(Fault[DbConnectionExhaustionParams, ServerSlots, DbConnectionExhaustionRecord]):
    """Hold PostgreSQL connections until the server refuses new ones (the "database" incident).

    The connections are opened and held by a small detached holder process
    (`python -m drillkit.faults.local.holder hold-connections`), not by a thread of the runner:
    - its pid (= its process group) is journalled, so `drillkit cleanup` in another process can
      stop it after a crash, exactly like stress-ng; a thread would be unreachable from there;
    - it watches the runner's pid and lets go as soon as the runner is gone, so a SIGKILLed
      drillkit releases the connections within half a second (what a thread would give for
      free), and it has a time limit (`hold_at_most`) as a last dead-man's switch;
    - the runner's signal handling and waits stay free of blocking libpq connects, and the
      runner free of psycopg: preflight's slot count (`holder slots`) and the revert's check
      (`holder release`) run the same program, briefly, in a session of their own; a stop
      request ends the runner's wait for them (outside the reverts) and kills them.
    Each held connection carries `application_name=drillkit-<run id>-hold`; the revert stops the
    holder, then has `holder release` check `pg_stat_activity` through the DSN until none of
    them is left, using `pg_terminate_backend` on stragglers. In a blind exercise every one of
    these processes runs under the platform's name (`process_name`), arguments in a script.
    """

    kind = "db-connection-exhaustion"
    target = "local"
    Params = DbConnectionExhaustionParams
    Record: ClassVar[type] = DbConnectionExhaustionRecord
    params: DbConnectionExhaustionParams

    def preflight(self) -> ServerSlots:
        p = self.params
        program = state_dir(self.ctx.run_id, p.process_name) / p.process_name if p.process_name else None
        args = ["slots", "--dsn", p.dsn, "--connect-timeout", f"{p.connect_timeout:g}"]
        args += ["--application-name", p.process_name or "drillkit"]
        try:
            found = _ask("preflight", args, p.password_env, self.ctx.stop, p.connect_timeout, program, 3, 10)
        except Aborted:
            raise
        except DrillkitError as exc:
            raise PreflightError(f"{self.kind}: cannot use the database: {exc}") from None
        finally:
            if program:
                remove_scratch(str(program))
        slots = ServerSlots(
            int(found["max_connections"]),
            int(found["superuser_reserved"]),
            int(found["in_use"]),
            bool(found["superuser"]),
        )
        if p.count is not None and p.count > slots.free:
            raise PreflightError(
                f"{self.kind}: {p.count} connections requested but only {slots.free} of "
                f"max_connections {slots.max_connections} are free for this role"
            )
        if p.count is None and slots.free - p.reserve <= 0:
            raise PreflightError(f"{self.kind}: no connection slot to take ({slots.free} free, reserve {p.reserve})")
        return slots

    def plan(self, found: ServerSlots) -> list[str]:
        p = self.params
        n = p.count if p.count is not None else f"all ~{found.free - p.reserve}"
        where = (
            f" (max_connections {found.max_connections}, {found.in_use} in use, "
            f"{'superuser' if found.superuser else 'ordinary role'})"
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
        return self.params.application_name or f"drillkit-{self.ctx.run_id}-hold"

    @host_errors
    def inject(self, found: ServerSlots, undo: Undo) -> None:
        p, ctx = self.params, self.ctx
        tag, name = self._tag(), p.process_name
        work = state_dir(ctx.run_id, name)
        status_name, log_name = helper_files(name, "hold-connections")
        status, log_file = work / status_name, work / log_name
        launcher, program = (work / "job.py", work / name) if name else (None, None)
        status.unlink(missing_ok=True)
        handle = undo.register(
            self,
            DbConnectionExhaustionRecord(
                dsn=p.dsn,
                application_name=tag,
                password_env=p.password_env,
                status_file=str(status),
                log_file=str(log_file),
                launcher=str(launcher) if launcher else None,
                program=str(program) if program else None,
            ),
        )
        env = _env(p.password_env)
        # one more than the server should ever accept, so its refusal is seen (a pooler in front
        # of it would accept forever)
        cap = found.max_connections + 1
        args = [
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
            f"{p.hold_at_most or drill_length(ctx):g}",
            "--application-name",
            tag,
            "--connect-timeout",
            f"{p.connect_timeout:g}",
        ]
        argv = [sys.executable, "-m", "drillkit.faults.local.holder", *args]
        if name and program:
            # `ps` shows `<work>/<name> <work>/job.py`: the arguments live in the script, and the
            # interpreter runs under the name (a link named like the platform's own)
            disguise(work, name, sys.executable)
            argv = _launcher(program, "job.py", args)
        pid = detach(argv, log_file=log_file, env=env)
        handle.update(holder_pid=pid, holder=proc_id(pid))

        def settled() -> dict[str, Any] | None:
            state = read_status(status)
            if state.get("state") == "error" or (state.get("state") != "holding" and not alive(pid)):
                log = log_file.read_text(errors="replace")[-800:]
                raise UnavailableError(
                    f"{self.kind}: the holder could not take the connections: "
                    f"{state.get('error') or log or 'it exited'}"
                )
            return state if state.get("state") == "holding" else None

        state = wait_until(settled, time.monotonic() + p.ready_within, 0.05, ctx.stop)
        check_stop(ctx.stop)
        if state is None:
            raise UnavailableError(f"{self.kind}: connections not all held within {p.ready_within:g}s")
        pids = tuple(int(x) for x in state["backend_pids"])
        handle.update(backend_pids=pids, held=len(pids), refused=state.get("refused") or None)
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
    def check(cls, record: DbConnectionExhaustionRecord, allowed: Allowed) -> None:
        """The database, password variable and connections' tag must be those of a
        db-connection-exhaustion the run's scenario declared (the revert terminates backends
        carrying that tag), and the scratch files those it made in the run's folder."""
        work = Path(record.status_file).parent if record.status_file else None
        check_scratch("status_file", str(work) if work else None)

        def declared(d: Declared) -> dict[str, object]:
            name = d.text("process_name")
            folder = work.parent / scratch_name(allowed.run_id, name) if work else None
            return {
                "dsn": d.text("dsn"),
                "password_env": d.text("password_env"),
                "application_name": d.text("application_name") or f"drillkit-{allowed.run_id}-hold",
                "status_file": str(folder / helper_files(name, "hold-connections")[0]) if folder else None,
                "log_file": str(folder / helper_files(name, "hold-connections")[1]) if folder else None,
                "launcher": str(folder / "job.py") if folder and name else None,
                "program": str(folder / name) if folder and name else None,
            }

        recorded = {name: getattr(record, name) for name in declared(Declared({}, None))}
        allowed.require(cls.kind, recorded, declared)

    @classmethod
    def revert(cls, ctx: RevertContext, record: DbConnectionExhaustionRecord) -> dict[str, Any]:
        tag = record.application_name
        stopped: list[int] = []
        # the recorded holder's group, unless its id now names someone else's
        holders = {record.holder_pid} if record.holder_pid and own_group(record.holder_pid, record.holder) else set()
        # a holder started just before a crash may not be journalled yet: find it by its tag
        pattern = (
            re.escape(record.launcher)
            if record.launcher
            else rf"hold-connections .*--application-name {re.escape(tag)}\b"
        )
        holders |= set(find_processes(pattern, None))
        for pid in sorted(holders):
            stopped += stop_group(pid, record.launcher or "hold-connections")["signalled"]
        program = Path(record.program) if record.program else None
        args = ["release", "--dsn", record.dsn, "--tag", tag]
        args += ["--backend-pids", ",".join(map(str, record.backend_pids))]
        args += ["--within", f"{RELEASE_WITHIN_S:g}", "--terminate-after", f"{TERMINATE_AFTER_S:g}"]
        args += ["--application-name", program.name if program else "drillkit"]
        found = _ask("verify connections released", args, record.password_env, ctx.stop, RELEASE_WITHIN_S + 5, program)
        if not found["released"]:
            raise DrillkitError(f"backends {found['left']} ({tag}) still in pg_stat_activity after terminating them")
        remove_scratch(record.status_file, record.log_file, record.launcher, record.program)
        return {
            "holder_stopped": stopped,
            "terminated": found["terminated"],
            "remaining": [],
            "pids_reused_by_others": found["reused"],
        }
