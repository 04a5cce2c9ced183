"""Faults against processes on this host: the embedded lab and anything run locally.

Processes are found through /proc (by pid file or command-line regex), never by shelling out.
"""

from __future__ import annotations

import os
import re
import signal
import time
from dataclasses import dataclass
from typing import Any

from drillkit.errors import PreflightError
from drillkit.faults import Fault, FaultContext, Undo, check_blast_radius
from drillkit.model import Count, Duration, doc
from drillkit.procs import alive, cmdline, find_processes, spawn

SIGNALS = {"SIGKILL", "SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", "SIGSTOP"}


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
        if (self.pattern is None) == (self.pidfile is None):
            raise ValueError("expected exactly one of `pattern` or `pidfile`")
        if self.signal not in SIGNALS:
            raise ValueError(f"signal: expected one of {', '.join(sorted(SIGNALS))}, got {self.signal!r}")
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"pattern: not a valid regular expression: {exc}") from None


class ProcessKill(Fault):
    """Signal local processes; the revert restarts them if they don't come back by themselves."""

    kind = "process-kill"
    target = "local"
    Params = ProcessKillParams
    params: ProcessKillParams

    def preflight(self) -> None:
        p = self.params
        found = find_processes(p.pattern, p.pidfile)
        what = f"pattern {p.pattern!r}" if p.pattern else f"pid file {p.pidfile}"
        if not found:
            raise PreflightError(f"process-kill: no running process matches {what}")
        n = check_blast_radius(
            self.kind, len(found), p.count, self.ctx.scenario.guardrails.max_targets, f"process(es) matching {what}"
        )
        self.victims = found[:n]

    def plan(self) -> list[str]:
        victims = getattr(self, "victims", [])
        lines = [f"send {self.params.signal} to pid {pid}: {cmdline(pid)[:120]}" for pid in victims]
        if self.params.restart:
            lines.append(
                f"revert: restart with {' '.join(self.params.restart)} unless back within {self.params.back_within:g}s"
            )
        return lines

    def inject(self, undo: Undo) -> None:
        p = self.params
        handle = undo.register(
            self.kind,
            pattern=p.pattern,
            pidfile=p.pidfile,
            restart=list(p.restart),
            restart_cwd=p.restart_cwd,
            restart_log=p.restart_log,
            back_within=p.back_within,
            killed=[],
            count=len(self.victims),
            signal=p.signal,
        )
        killed: list[int] = []
        for pid in self.victims:
            handle.update(killed=[*killed, pid])  # journalled before the signal is sent
            try:
                os.kill(pid, getattr(signal, p.signal))
            except ProcessLookupError:
                continue
            killed.append(pid)
            self.ctx.harm_started()
        _wait_gone(self.victims, 5.0 if p.signal == "SIGKILL" else 0.0)

    @classmethod
    def revert(cls, ctx: FaultContext, data: dict[str, Any]) -> dict[str, Any]:
        killed = set(data.get("killed", []))
        if data.get("signal") == "SIGSTOP":
            for pid in killed:
                if alive(pid):
                    os.kill(pid, signal.SIGCONT)
            return {"continued": sorted(killed)}
        deadline = time.monotonic() + float(data.get("back_within", 0))
        while True:
            # a signalled process that is still there (it ignored the signal, or reloaded on
            # SIGHUP) is back as much as a new one: restarting it would start a duplicate
            found = find_processes(data.get("pattern"), data.get("pidfile"))
            back = [pid for pid in found if pid not in killed]
            survived = [pid for pid in found if pid in killed]
            if len(back) + len(survived) >= int(data.get("count", 1)) or not data.get("restart"):
                return {"back": back, "survived": survived, "restarted": []}
            if time.monotonic() >= deadline:
                break
            time.sleep(0.2)
        restarted = []
        for _ in range(int(data.get("count", 1)) - len(back) - len(survived)):
            restarted.append(spawn(list(data["restart"]), data.get("restart_cwd"), data.get("restart_log")).pid)
        ctx.log(f"process-kill revert: restarted {', '.join(map(str, restarted))}")
        return {"back": back, "survived": survived, "restarted": restarted}


def _wait_gone(pids: list[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.01)


FAULTS: list[type[Fault]] = [ProcessKill]
