"""cpu-pressure: burn CPU with stress-ng (the playbook's CPU-saturation incident), detached in
its own process group with a time limit, optionally inside the target's own cpu cgroup."""

from __future__ import annotations

import contextlib
import math
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from drillkit.errors import PreflightError, UnavailableError
from drillkit.faults import Allowed, Declared, Fault, RevertContext, Undo
from drillkit.faults.local import cgroups as cg
from drillkit.faults.local.common import check_stop, drill_length, host_errors, one_target, validate_target
from drillkit.faults.local.files import (
    check_scratch,
    disguise,
    helper_files,
    remove_scratch,
    scratch_name,
    state_dir,
)
from drillkit.model import Count, Duration, doc
from drillkit.procs import (
    ProcId,
    alive,
    cmdline,
    detach,
    find_processes,
    group_members,
    own_group,
    proc_id,
    stop_group,
)
from drillkit.signals import wait_until

RUNNING_WITHIN_S = 10.0  # how long inject waits for every stress-ng worker to run


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
    process_name: str | None = doc(
        "a training exercise's name for stress-ng and its workers (and scratch folder), as `ps` "
        "and `top` show them (default: stress-ng, stress-ng-cpu; <tmp>/drillkit-<run id>)",
        default=None,
    )

    def __post_init__(self) -> None:
        validate_target(self.pattern, self.pidfile, required=False)
        if self.load is not None and not 1 <= self.load <= 100:
            raise ValueError(f"load: expected a percentage 1-100, got {self.load}")
        if self.duration is not None and self.duration < 1:
            raise ValueError("duration: expected at least 1s")


@dataclass(frozen=True)
class Stressor:
    """What preflight found: the stress-ng to run, how many workers, and where."""

    binary: str
    workers: int
    procs_file: Path | None  # the target's cgroup.procs, when it runs inside the target's cgroup


@dataclass(frozen=True)
class CpuPressureRecord:
    """How to undo it: stop stress-ng's process group (found by `temp_path` if not journalled)."""

    workers: int
    timeout: int  # stress-ng --timeout, seconds
    temp_path: str  # stress-ng --temp-path: the run's scratch folder, in its command line
    log_file: str | None = None
    pgid: int | None = None
    processes: tuple[int, ...] = ()  # evidence: the workers, once all of them run
    program: str | None = None  # disguised: the link stress-ng runs as (files.disguise)
    leader: ProcId | None = None  # the group's leader (pid = pgid) with its start time


class CpuPressure(Fault[CpuPressureParams, Stressor, CpuPressureRecord]):
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
    Record: ClassVar[type] = CpuPressureRecord
    params: CpuPressureParams

    def preflight(self) -> Stressor:
        from drillkit.lab.services import binary

        p = self.params
        program = binary("stress-ng")  # PreflightError naming the Debian package
        workers = p.workers.of(os.cpu_count() or 1)
        if not (p.pattern or p.pidfile):
            return Stressor(program, workers, None)
        pid = one_target(self.kind, p.pattern, p.pidfile)
        h = cg.hierarchy("cpu")
        own = cg.cgroup_of(pid, h, "cpu") if h else None
        if h is None or own is None:
            raise PreflightError(f"{self.kind}: no cpu cgroup controller for pid {pid}")
        if not cg.writable(own):
            raise PreflightError(f"{self.kind}: cannot move stress-ng into {own}: not writable")
        return Stressor(program, workers, own / "cgroup.procs")

    def plan(self, found: Stressor) -> list[str]:
        p = self.params
        where = f" inside {found.procs_file.parent}" if found.procs_file else ""
        return [
            f"start stress-ng --cpu {found.workers}{f' --cpu-load {p.load}' if p.load else ''}{where}, "
            f"--timeout {self._timeout()}s, detached in its own process group",
            "revert: stop the process group and verify it is gone",
        ]

    def _timeout(self) -> int:
        return math.ceil(self.params.duration or drill_length(self.ctx))

    @host_errors
    def inject(self, found: Stressor, undo: Undo) -> None:
        p, ctx = self.params, self.ctx
        name = p.process_name
        work = state_dir(ctx.run_id, name)
        # disguised, it runs through a link of that name and its workers keep it (--keep-name)
        program = disguise(work, name, found.binary) if name else None
        # --temp-path (unused by the cpu stressor) puts the run id in the command line
        argv = [
            program or found.binary,
            "--cpu",
            str(found.workers),
            "--timeout",
            f"{self._timeout()}s",
            "--quiet",
            "--temp-path",
            str(work),
        ]
        if p.load:
            argv += ["--cpu-load", str(p.load)]
        if program:
            argv.append("--keep-name")
        if found.procs_file is not None:  # move itself, then exec: its workers are born inside
            argv = ["sh", "-c", 'echo $$ > "$0" && exec "$@"', str(found.procs_file), *argv]
        log_file = work / helper_files(name, "stress-ng")[1]
        handle = undo.register(
            self,
            CpuPressureRecord(
                workers=found.workers,
                timeout=self._timeout(),
                temp_path=str(work),
                log_file=str(log_file),
                program=program,
            ),
        )
        pgid = detach(argv, log_file=log_file)
        handle.update(pgid=pgid, leader=proc_id(pgid))
        ctx.harm_started()  # stress-ng runs (its workers fork within milliseconds)
        running: list[int] = []

        def all_running() -> bool:
            nonlocal running
            running = [q for q in group_members(pgid) if (program or "stress-ng") in cmdline(q)]
            if len(running) < found.workers + 1 and not alive(pgid):
                log = log_file.read_text(errors="replace")[-500:]
                raise UnavailableError(f"{self.kind}: stress-ng exited at once: {log}")
            return len(running) >= found.workers + 1

        ok = wait_until(all_running, time.monotonic() + RUNNING_WITHIN_S, 0.05, ctx.stop)
        check_stop(ctx.stop)
        if not ok:
            raise UnavailableError(f"{self.kind}: only {len(running)} stress-ng processes after {RUNNING_WITHIN_S:g}s")
        handle.update(processes=tuple(running))  # evidence: the workers, once all of them run
        ctx.log(f"{self.kind}: stress-ng group {pgid} running {found.workers} workers")

    @classmethod
    def check(cls, record: CpuPressureRecord, allowed: Allowed) -> None:
        """The scratch folder (named after the run) and the files the revert deletes in it must
        be those a cpu-pressure of the run's scenario made."""
        check_scratch("temp_path", record.temp_path)
        work = Path(record.temp_path)

        def declared(d: Declared) -> dict[str, object]:
            name = d.text("process_name")
            folder = work.parent / scratch_name(allowed.run_id, name)
            return {
                "temp_path": str(folder),
                "log_file": str(folder / helper_files(name, "stress-ng")[1]),
                "program": str(folder / name) if name else None,
            }

        recorded = {"temp_path": record.temp_path, "log_file": record.log_file, "program": record.program}
        allowed.require(cls.kind, recorded, declared)

    @classmethod
    def revert(cls, ctx: RevertContext, record: CpuPressureRecord) -> dict[str, Any]:
        # the recorded group, unless its id now names someone else's
        groups = {record.pgid} if record.pgid and own_group(record.pgid, record.leader) else set()
        # started just before a crash: found by its run's --temp-path
        for pid in find_processes(rf"--temp-path {re.escape(record.temp_path)}(\s|$)", None):
            with contextlib.suppress(ProcessLookupError):
                groups.add(os.getpgid(pid))
        signalled: list[int] = []
        killed_hard = False
        for pgid in sorted(groups):
            stopped = stop_group(pgid, record.program or "stress-ng")
            signalled += stopped["signalled"]
            killed_hard = killed_hard or stopped["killed_hard"]
        remove_scratch(record.log_file, record.program)
        return {"signalled": signalled, "killed_hard": killed_hard}
