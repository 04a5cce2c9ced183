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


def _own_pids() -> set[int]:
    """drillkit itself and the chain of processes that started it (a shell running
    `drillkit run …` can carry the fault's pattern in its own command line): never targets."""
    own, pid = set(), os.getpid()
    while pid > 1 and pid not in own:
        own.add(pid)
        fields = stat_fields(pid)
        pid = int(fields[1]) if fields else 0
    return own


def find_processes(pattern: str | None, pidfile: str | None) -> list[int]:
    """Live pids matching the pid file or the command-line regex, never drillkit's own
    processes (by pid: a user's program run from a folder named drillkit is a fair target)."""
    me = _own_pids()
    if pidfile:
        found = read_pid(Path(pidfile))
        return [found] if found and alive(found) and found not in me else []
    regex = re.compile(pattern or "")
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (pid := int(entry.name)) not in me:
            line = cmdline(pid)
            if line and regex.search(line) and alive(pid):
                pids.append(pid)
    return sorted(pids)


def spawn(
    argv: list[str], cwd: str | None = None, log_file: str | Path | None = None, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start `argv` in its own session (its pid is its process group id), so it outlives a
    crashed drillkit and can be stopped as a group; stdout and stderr are appended to
    `log_file`. Also kept here, to be reaped."""
    out = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115
    try:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
    finally:
        if log_file:
            out.close()  # type: ignore[union-attr]
    _CHILDREN[proc.pid] = proc
    return proc


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


def _refuse_own_group(pgid: int) -> None:
    if pgid in (os.getpgid(0), 0, 1):
        raise DrillkitError(f"refusing to signal process group {pgid}")


def stop_group(pgid: int, expect: str, timeout: float = 5.0, sig: signal.Signals = signal.SIGTERM) -> dict[str, Any]:
    """`sig` (SIGTERM), then SIGKILL, the members of process group `pgid` whose command line contains
    `expect` (a reused group id of some unrelated process is left alone); verifies they are gone.

    For groups recorded long ago (a fault's helper, found again by `drillkit cleanup`), whose
    id may since name someone else's group. A group drillkit started and owns as a whole,
    children included, is stopped with `stop_own_group`."""
    _refuse_own_group(pgid)
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


def is_ours(pid: int, marker: str) -> bool:
    """`pid` is alive and still the process started with `marker` in its command line."""
    return alive(pid) and marker in cmdline(pid)


def stop_own_group(
    pid: int, pgid: int, marker: str, sig: signal.Signals = signal.SIGTERM, grace: float = 10.0
) -> dict[str, Any]:
    """Stop a process group drillkit started and owns as a whole (a lab component): `sig` to its
    leader `pid` only, if it is still ours (`marker` in its command line), so it can stop its
    own children (a supervisor its replicas, PostgreSQL its backends); after up to `grace`
    seconds, SIGKILL to the whole group — children the leader left behind or never stopped
    included — unless the group id is someone else's now. Returns what is left (normally
    nothing) after waiting up to 5 s for the SIGKILL."""
    _refuse_own_group(pgid)
    signalled = is_ours(pid, marker)
    if signalled:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
            os.kill(pid, signal.SIGCONT)  # a SIGSTOPped leader must see the signal
        wait_gone([pid], grace)
    # Linux never reuses a pid while it names a live process group, so a group without a
    # live leader is still ours; a live leader must be the process we started.
    ours = (pgid == pid and is_ours(pid, marker)) if alive(pgid) else True
    if not ours:
        return {"signalled": [], "killed_hard": False, "left": []}
    hard = bool(group_members(pgid))
    if hard:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while (left := group_members(pgid)) and time.monotonic() < deadline:
        reap()
        time.sleep(0.02)
    return {"signalled": [pid] if signalled else [], "killed_hard": hard, "left": left}
