"""process-kill: signal local processes (the outage incident), the lab's replicas or anything
run on this host; the revert resumes what was stopped and restarts what does not come back."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from drillkit.errors import PreflightError
from drillkit.faults import Allowed, Declared, Fault, OutOfBounds, RevertContext, Undo, check_blast_radius
from drillkit.faults.local.common import restart, validate_target
from drillkit.model import Count, Duration, doc
from drillkit.procs import ProcId, brief_cmdline, find_processes, proc_id, same, wait_gone
from drillkit.signals import wait_until

SIGNALS = {"SIGKILL", "SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", "SIGSTOP"}
GONE_WITHIN_S = 5.0  # how long inject waits for SIGKILLed processes to disappear


@dataclass(frozen=True)
class ProcessKillParams:
    pattern: str | None = doc("regex matched against the process command line", default=None)
    pidfile: str | None = doc("file holding the pid", default=None)
    signal: str = doc("signal to send", default="SIGKILL")
    count: Count = doc("how many matching processes to kill (count or %)", default=Count(1))
    restart: tuple[str, ...] = doc("command (argv) the revert runs if the process is not back", default=())
    restart_cwd: str | None = None
    restart_log: str | None = doc("file the restarted process's output is appended to", default=None)
    back_within: Duration = doc("how long the revert waits for the process to return on its own", default=5.0)

    def __post_init__(self) -> None:
        validate_target(self.pattern, self.pidfile)
        if self.signal not in SIGNALS:
            raise ValueError(f"signal: expected one of {', '.join(sorted(SIGNALS))}, got {self.signal!r}")


@dataclass(frozen=True)
class Victims:
    """What preflight found: the processes to signal, inside the blast radius."""

    pids: tuple[int, ...]


@dataclass(frozen=True)
class ProcessKillRecord:
    """How to undo a process-kill: find the processes again, resume or restart them. Only the
    processes in `killed_ids` (pid and start time) are ever signalled again."""

    signal: str
    count: int
    pattern: str | None = None
    pidfile: str | None = None
    restart: tuple[str, ...] = ()
    restart_cwd: str | None = None
    restart_log: str | None = None
    back_within: float = 0.0
    killed: tuple[int, ...] = ()  # journalled before each signal is sent
    killed_ids: tuple[ProcId, ...] = ()  # the same processes with their start times


class ProcessKill(Fault[ProcessKillParams, Victims, ProcessKillRecord]):
    """Signal local processes; the revert restarts them if they don't come back by themselves."""

    kind = "process-kill"
    target = "local"
    Params = ProcessKillParams
    Record: ClassVar[type] = ProcessKillRecord
    params: ProcessKillParams

    def preflight(self) -> Victims:
        p = self.params
        found = find_processes(p.pattern, p.pidfile)
        what = f"pattern {p.pattern!r}" if p.pattern else f"pid file {p.pidfile}"
        if not found:
            raise PreflightError(f"process-kill: no running process matches {what}")
        n = check_blast_radius(
            self.kind, len(found), p.count, self.ctx.scenario.guardrails.max_targets, f"process(es) matching {what}"
        )
        return Victims(tuple(found[:n]))

    def plan(self, found: Victims) -> list[str]:
        p = self.params
        lines = [f"send {p.signal} to pid {pid}: {brief_cmdline(pid, 120)}" for pid in found.pids]
        if p.restart:
            lines.append(f"revert: restart with {' '.join(p.restart)} unless back within {p.back_within:g}s")
        return lines

    def inject(self, found: Victims, undo: Undo) -> None:
        p = self.params
        handle = undo.register(
            self,
            ProcessKillRecord(
                signal=p.signal,
                count=len(found.pids),
                pattern=p.pattern,
                # paths as absolute: `drillkit cleanup` may run from another directory
                pidfile=_absolute(p.pidfile),
                restart=p.restart,
                restart_cwd=_absolute(p.restart_cwd) or os.getcwd(),
                restart_log=_absolute(p.restart_log),
                back_within=p.back_within,
            ),
        )
        killed: list[int] = []
        ids: list[ProcId] = []
        for pid in found.pids:
            if (ident := proc_id(pid)) is None:
                continue  # gone already
            handle.update(killed=(*killed, pid), killed_ids=(*ids, ident))  # journalled before the signal
            try:
                os.kill(pid, getattr(signal, p.signal))
            except ProcessLookupError:
                continue
            killed.append(pid)
            ids.append(ident)
            self.ctx.harm_started()
        wait_gone(list(found.pids), GONE_WITHIN_S if p.signal == "SIGKILL" else 0.0, self.ctx.stop)

    @classmethod
    def check(cls, record: ProcessKillRecord, allowed: Allowed) -> None:
        """The signal, the processes' pattern or pid file and the restart command (argv, folder,
        log) must be those of a process-kill the run's scenario declared."""
        try:
            validate_target(record.pattern, record.pidfile)
        except ValueError as exc:
            raise OutOfBounds("pattern", str(exc)) from None

        def declared(d: Declared) -> dict[str, object]:
            return {
                "signal": d.text("signal") or "SIGKILL",
                "pattern": d.text("pattern"),
                "pidfile": d.path("pidfile"),
                "restart": d.argv("restart"),
                "restart_cwd": d.path("restart_cwd") or allowed.cwd,
                "restart_log": d.path("restart_log"),
                "back_within": d.params.get("back_within"),
            }

        recorded = {name: getattr(record, name) for name in declared(Declared({}, None))}
        allowed.require(cls.kind, recorded, declared)

    @classmethod
    def revert(cls, ctx: RevertContext, record: ProcessKillRecord) -> dict[str, Any]:
        killed = {p.pid for p in record.killed_ids if same(p)}  # still the processes it signalled
        if record.signal == "SIGSTOP":
            for pid in killed:
                os.kill(pid, signal.SIGCONT)
            return {"continued": sorted(killed)}
        back: list[int] = []
        survived: list[int] = []

        def enough() -> bool:
            # a signalled process that is still there (it ignored the signal, or reloaded on
            # SIGHUP) is back as much as a new one: restarting it would start a duplicate
            nonlocal back, survived
            found = find_processes(record.pattern, record.pidfile)
            back = [pid for pid in found if pid not in killed]
            survived = [pid for pid in found if pid in killed]
            return len(back) + len(survived) >= record.count or not record.restart

        if wait_until(enough, time.monotonic() + record.back_within, 0.2, ctx.stop):
            return {"back": back, "survived": survived, "restarted": []}
        # only as many as it signalled, whatever `count` says
        missing = min(record.count, len(record.killed)) - len(back) - len(survived)
        restarted = restart(record.restart, record.restart_cwd, record.restart_log, missing)
        ctx.log(f"process-kill revert: restarted {', '.join(map(str, restarted))}")
        return {"back": back, "survived": survived, "restarted": restarted}


def _absolute(path: str | None) -> str | None:
    return str(Path(path).absolute()) if path else None
