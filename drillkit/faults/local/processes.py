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
from drillkit.faults import Fault, RevertContext, Undo, check_blast_radius
from drillkit.faults.local.common import restart, validate_target
from drillkit.model import Count, Duration, doc
from drillkit.procs import alive, brief_cmdline, find_processes, wait_gone
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
    """How to undo a process-kill: find the processes again, resume or restart them."""

    signal: str
    count: int
    pattern: str | None = None
    pidfile: str | None = None
    restart: tuple[str, ...] = ()
    restart_cwd: str | None = None
    restart_log: str | None = None
    back_within: float = 0.0
    killed: tuple[int, ...] = ()  # journalled before each signal is sent


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
        for pid in found.pids:
            handle.update(killed=(*killed, pid))  # journalled before the signal is sent
            try:
                os.kill(pid, getattr(signal, p.signal))
            except ProcessLookupError:
                continue
            killed.append(pid)
            self.ctx.harm_started()
        wait_gone(list(found.pids), GONE_WITHIN_S if p.signal == "SIGKILL" else 0.0, self.ctx.stop)

    @classmethod
    def revert(cls, ctx: RevertContext, record: ProcessKillRecord) -> dict[str, Any]:
        killed = set(record.killed)
        if record.signal == "SIGSTOP":
            for pid in killed:
                if alive(pid):
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
        missing = record.count - len(back) - len(survived)
        restarted = restart(record.restart, record.restart_cwd, record.restart_log, missing)
        ctx.log(f"process-kill revert: restarted {', '.join(map(str, restarted))}")
        return {"back": back, "survived": survived, "restarted": restarted}


def _absolute(path: str | None) -> str | None:
    return str(Path(path).absolute()) if path else None
