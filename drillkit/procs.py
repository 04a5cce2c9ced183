"""Local processes, read through psutil: the one place for finding, starting and stopping them.

Used by the local faults and by the lab. Zombies count as gone: where pid 1 does not reap
orphans (containers), a killed process lingers as a zombie forever.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drillkit.errors import DrillkitError
from drillkit.signals import wait_until

if TYPE_CHECKING:
    import subprocess

    from drillkit.signals import StopFlag

_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def _gone() -> tuple[type[Exception], ...]:
    """psutil's "that process is not there (for us)" errors. psutil is imported by the functions
    that use it, not with this module: validating a scenario imports the faults, not psutil."""
    import psutil

    return (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied)


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def cmdline(pid: int) -> str:
    """The command line, arguments joined by spaces ("" if the process is gone or a kernel thread)."""
    import psutil

    try:
        return " ".join(psutil.Process(pid).cmdline()).strip()
    except _gone():
        return ""


def brief_cmdline(pid: int, limit: int = 120) -> str:
    """The command line for a plan or report line: whole arguments only, so a DSN or path is
    never cut in the middle; arguments past `limit` characters become " …"."""
    args = cmdline(pid).split(" ")
    kept: list[str] = []
    for arg in args:
        if kept and len(" ".join([*kept, arg])) > limit:
            return " ".join(kept) + " …"
        kept.append(arg)
    return " ".join(kept)


def status(pid: int) -> str | None:
    """psutil's status of the process ("running", "sleeping", "stopped", "zombie", ...), or None."""
    import psutil

    try:
        return str(psutil.Process(pid).status())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def alive(pid: int) -> bool:
    """True for a live (non-zombie) process."""
    import psutil

    state = status(pid)
    return state is not None and state != psutil.STATUS_ZOMBIE


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def group_members(pgid: int) -> list[int]:
    """Live processes of process group `pgid`."""
    import psutil

    return sorted(
        p.pid
        for p in psutil.process_iter(["status"])
        if p.info["status"] != psutil.STATUS_ZOMBIE and _pgid(p.pid) == pgid
    )


def _own_pids() -> set[int]:
    """drillkit itself and the chain of processes that started it (a shell running
    `drillkit run …` can carry the fault's pattern in its own command line): never targets."""
    import psutil

    me = psutil.Process()
    try:
        return {me.pid, *(p.pid for p in me.parents() if p.pid > 1)}
    except _gone():  # an ancestor exited while we walked up
        return {me.pid, os.getppid()}


@dataclass(frozen=True)
class Moment:
    """An instant on this boot's clock, in clock ticks since boot: how /proc/<pid>/stat dates a
    process's start, so "started after" compares like with like."""

    boot: str  # /proc/sys/kernel/random/boot_id: ticks of another boot mean nothing here
    ticks: int


@dataclass(frozen=True)
class ProcId:
    """A process named so that a reused pid never stands for it: its pid and when it started.
    What revert records journal of a process they may signal again."""

    pid: int
    started: Moment


@functools.cache
def boot_id() -> str:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()


def now() -> Moment:
    """This instant on the clock processes' start times are read on (CLOCK_BOOTTIME)."""
    ticks = time.clock_gettime(time.CLOCK_BOOTTIME) * os.sysconf("SC_CLK_TCK")
    return Moment(boot_id(), int(ticks))


def proc_id(pid: int) -> ProcId | None:
    """`pid` with its start time (field 22 of /proc/<pid>/stat), or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return ProcId(pid, Moment(boot_id(), int(stat[stat.rindex(")") + 2 :].split()[19])))
    except (OSError, ValueError, IndexError):
        return None


def identify(pids: list[int] | tuple[int, ...]) -> tuple[ProcId, ...]:
    """The ids of those of `pids` still there."""
    return tuple(i for i in map(proc_id, pids) if i is not None)


def same(process: ProcId) -> bool:
    """The process is alive and still the one recorded (its pid was not reused)."""
    return alive(process.pid) and proc_id(process.pid) == process


def own_group(pgid: int | None, leader: ProcId | None) -> bool:
    """Whether a recorded process group is still the one drillkit started: its leader is the
    process recorded, or gone (Linux does not reuse a pid while a group of that id has members,
    and stop_group finds members by command line)."""
    return bool(pgid) and leader is not None and leader.pid == pgid and (same(leader) or not alive(pgid or 0))


def matches_everything(pattern: str) -> bool:
    """A command-line regex that would pick every process (it matches the empty string, or
    command lines with nothing in common): never a way to name targets."""
    regex = re.compile(pattern)
    probes = ("/sbin/init", "sshd: root@pts/0", "[kworker/0:1]", "x")
    return regex.search("") is not None or all(regex.search(p) for p in probes)


def find_processes(pattern: str | None, pidfile: str | None) -> list[int]:
    """Live pids matching the pid file or the command-line regex, never drillkit's own
    processes (by pid: a user's program run from a folder named drillkit is a fair target).
    Without either, or with a regex that matches every command line, it refuses (DrillkitError):
    an empty pattern once named every process on the host."""
    me = _own_pids()
    if pidfile:
        found = read_pid(Path(pidfile))
        return [found] if found and alive(found) and found not in me else []
    if not pattern or matches_everything(pattern):
        raise DrillkitError(f"refusing to look for processes by {pattern!r}: it would match every process")
    import psutil

    regex = re.compile(pattern)
    pids = []
    for p in psutil.process_iter(["cmdline", "status"]):
        line = " ".join(p.info["cmdline"] or ()).strip()
        if p.pid not in me and line and p.info["status"] != psutil.STATUS_ZOMBIE and regex.search(line):
            pids.append(p.pid)
    return sorted(pids)


def spawn(
    argv: list[str], cwd: str | None = None, log_file: str | Path | None = None, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start `argv` in its own session (its pid is its process group id), so it outlives a
    crashed drillkit and can be stopped as a group; stdout and stderr are appended to
    `log_file`. Also kept here, to be reaped."""
    import subprocess  # here, not at the top: validating a scenario imports the faults, not this

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


# The go-between of `detach`: reads what to start on stdin (so nothing of it shows in `ps`),
# starts it in a session of its own, prints its pid and exits, leaving it to be re-parented.
_DETACH = (
    "import json,subprocess,sys;s=json.load(sys.stdin);"
    "o=open(s['log'],'ab') if s['log'] else subprocess.DEVNULL;"
    "print(subprocess.Popen(s['argv'],cwd=s['cwd'],env=s['env'],stdin=subprocess.DEVNULL,stdout=o,"
    "stderr=subprocess.STDOUT,start_new_session=True).pid)"
)
DETACH_WITHIN_S = 10.0  # python start-up of the go-between, on a loaded machine


def detach(
    argv: list[str], cwd: str | None = None, log_file: str | Path | None = None, env: dict[str, str] | None = None
) -> int:
    """Start `argv` as a helper nobody traces back to drillkit: in its own session (its pid is
    its process group id, so it outlives a crashed drillkit and is stopped as a group) and not
    drillkit's child (a go-between starts it and exits, so its parent is pid 1 or the nearest
    subreaper: `ps` shows no PPID pointing at the runner). Output is appended to `log_file`.
    Its pid; zombies it leaves are pid 1's to reap, and count as gone here."""
    import json
    import subprocess
    import sys

    spec = {"argv": argv, "cwd": cwd, "log": str(log_file) if log_file else None, "env": env or dict(os.environ)}
    done = subprocess.run(
        [sys.executable, "-c", _DETACH],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        timeout=DETACH_WITHIN_S,
        start_new_session=True,
        check=False,
    )
    if done.returncode != 0 or not done.stdout.strip().isdigit():
        raise DrillkitError(f"could not start {argv[0]}: {done.stderr.strip()[-300:] or 'no pid reported'}")
    return int(done.stdout)


@dataclass(frozen=True)
class Finished:
    """How a short-lived helper ended: its exit status and what it printed."""

    returncode: int
    stdout: str
    stderr: str


def run_briefly(
    argv: list[str], timeout: float, stop: StopFlag | None = None, env: dict[str, str] | None = None
) -> Finished | None:
    """Run a short-lived helper in its own session (a Ctrl-C at the terminal is the runner's to
    handle, not the helper's) and collect its output; None if it did not finish within
    `timeout` s or `stop` interrupted the wait (it is killed then, with its group)."""
    import subprocess

    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        env=env,
        text=True,
    )
    output: list[tuple[str, str]] = []

    def finished() -> bool:
        try:  # reads the pipes while it waits, so a chatty helper never blocks on a full one
            output.append(proc.communicate(timeout=0.05))
        except subprocess.TimeoutExpired:
            return False
        return True

    try:
        wait_until(finished, time.monotonic() + timeout, 0.01, stop)
    finally:
        if not output:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    if not output:
        return None
    return Finished(proc.returncode, *output[0])


def reap() -> None:
    for pid, proc in list(_CHILDREN.items()):
        if proc.poll() is not None:
            del _CHILDREN[pid]


def wait_gone(pids: list[int], timeout: float, stop: StopFlag | None = None, every: float = 0.02) -> list[int]:
    """The one "wait for exit": until none of `pids` is alive, `timeout` s pass or `stop`
    interrupts; returns those still alive. (Not psutil.wait_procs: a zombie nobody reaps
    exists forever, and must count as gone.)"""

    def left() -> list[int]:
        reap()
        return [pid for pid in pids if alive(pid)]

    still: list[int] = []

    def none_left() -> bool:
        nonlocal still
        still = left()
        return not still

    wait_until(none_left, time.monotonic() + timeout, every, stop)
    return still


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

    def group_gone() -> bool:
        reap()
        return not group_members(pgid)

    wait_until(group_gone, time.monotonic() + 5, 0.02)
    left = group_members(pgid)
    return {"signalled": [pid] if signalled else [], "killed_hard": hard, "left": left}
