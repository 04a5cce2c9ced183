"""Local processes, read from /proc: the one place for finding, starting and stopping them.

Used by the local faults and by the lab. Zombies count as gone: where pid 1 does not reap
orphans (containers), a killed process lingers as a zombie forever.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from drillkit.errors import DrillkitError

_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat after the command name: [state, ppid, pgrp, session, ...]."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def alive(pid: int) -> bool:
    """True for a live (non-zombie) process."""
    fields = stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def group_members(pgid: int) -> list[int]:
    """Live processes of process group `pgid`."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            f = stat_fields(int(entry.name))
            if f and f[0] != "Z" and int(f[2]) == pgid:
                out.append(int(entry.name))
    return sorted(out)


def find_processes(pattern: str | None, pidfile: str | None) -> list[int]:
    """Live pids matching the pid file or the command-line regex (never drillkit itself)."""
    me = {os.getpid(), os.getppid()}
    if pidfile:
        found = read_pid(Path(pidfile))
        return [found] if found and alive(found) and found not in me else []
    regex = re.compile(pattern or "")
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (pid := int(entry.name)) not in me:
            line = cmdline(pid)
            if line and regex.search(line) and "drillkit" not in line.split(" ")[0] and alive(pid):
                pids.append(pid)
    return sorted(pids)


def spawn(argv: list[str], cwd: str | None = None, log_file: str | Path | None = None,
          env: dict[str, str] | None = None) -> int:
    """Start `argv` in its own session (its pid is its process group id), so it outlives a
    crashed drillkit and can be stopped as a group. Kept here only to be reaped."""
    out = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115
    try:
        proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, env=env)
    finally:
        if log_file:
            out.close()  # type: ignore[union-attr]
    _CHILDREN[proc.pid] = proc
    return proc.pid


def reap() -> None:
    for pid, proc in list(_CHILDREN.items()):
        if proc.poll() is not None:
            del _CHILDREN[pid]


def wait_gone(pids: list[int], timeout: float) -> list[int]:
    """Wait until none of `pids` is alive; returns those still alive at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        reap()
        left = [pid for pid in pids if alive(pid)]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.02)


def stop_group(pgid: int, expect: str, timeout: float = 5.0,
               sig: signal.Signals = signal.SIGTERM) -> dict[str, Any]:
    """`sig` (SIGTERM), then SIGKILL, the members of process group `pgid` whose command line contains
    `expect` (a reused group id of some unrelated process is left alone); verifies they are gone."""
    if pgid in (os.getpgid(0), 0, 1):
        raise DrillkitError(f"refusing to signal process group {pgid}")
    ours = [pid for pid in group_members(pgid) if expect in cmdline(pid)]
    if not ours:
        reap()
        return {"signalled": [], "killed_hard": False}

    def send(sig: signal.Signals, pids: list[int]) -> None:
        if len(pids) == len(group_members(pgid)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, sig)  # atomic for the group: no fork escapes
                if sig != signal.SIGKILL:
                    os.killpg(pgid, signal.SIGCONT)  # a stopped process must see the signal
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
                if sig != signal.SIGKILL:
                    os.kill(pid, signal.SIGCONT)

    send(sig, ours)
    left = wait_gone(ours, timeout)
    hard = bool(left)
    if left:
        send(signal.SIGKILL, left)
        left = wait_gone(left, 5.0)
    if left:
        raise DrillkitError(f"processes {left} of group {pgid} survived SIGKILL")
    return {"signalled": ours, "killed_hard": hard}
