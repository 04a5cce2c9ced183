"""Linux control groups, v1 and v2, found at runtime: which hierarchy has a controller, where a
process sits in it, and the memory files whose names differ between the two versions.

Hosts differ: most current distributions mount only the unified v2 hierarchy
(`/sys/fs/cgroup/<path>/memory.max`, `memory.events`), while older or hybrid hosts bind the memory
controller to a v1 hierarchy (`/sys/fs/cgroup/memory/<path>/memory.limit_in_bytes`,
`memory.oom_control`). A controller bound to a v1 hierarchy is unavailable in the v2 one, so the
v1 mount is looked for first. Only /proc and cgroupfs are read; nothing here shells out.
"""

from __future__ import annotations

import errno
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from drillkit.signals import wait_until

if TYPE_CHECKING:
    from drillkit.signals import StopFlag


@dataclass(frozen=True)
class Hierarchy:
    """One mounted cgroup hierarchy that offers a controller."""

    version: int  # 1 or 2
    mountpoint: Path
    root: str  # the hierarchy path mounted there ("/" unless a namespace or bind mount)

    def dir_of(self, cgroup_path: str) -> Path:
        """The directory of a cgroup path as /proc/<pid>/cgroup prints it."""
        rel = cgroup_path
        if self.root != "/" and rel.startswith(self.root):
            rel = rel[len(self.root) :]
        return self.mountpoint / rel.lstrip("/")


def _mounts() -> list[tuple[str, Path, str, set[str]]]:
    """(fstype, mountpoint, mount root, super options) of every cgroup mount."""
    out = []
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields, rfields = left.split(), right.split()
        if len(fields) < 5 or len(rfields) < 3 or rfields[0] not in ("cgroup", "cgroup2"):
            continue
        root, mountpoint = fields[3].replace("\\040", " "), Path(fields[4].replace("\\040", " "))
        out.append((rfields[0], mountpoint, root, set(rfields[2].split(","))))
    return out


def mountpoints() -> list[Path]:
    """Where cgroup hierarchies are mounted (what a revert record's cgroup paths must lie under)."""
    return [mountpoint for _, mountpoint, _, _ in _mounts()]


def hierarchy(controller: str) -> Hierarchy | None:
    """The hierarchy where `controller` (e.g. "memory", "cpu") can be used, or None."""
    mounts = _mounts()
    for fstype, mountpoint, root, options in mounts:
        if fstype == "cgroup" and controller in options:
            return Hierarchy(1, mountpoint, root)
    for fstype, mountpoint, root, _ in mounts:
        if fstype == "cgroup2":
            try:
                available = (mountpoint / "cgroup.controllers").read_text().split()
            except OSError:
                continue
            if controller in available:
                return Hierarchy(2, mountpoint, root)
    return None


def cgroup_of(pid: int, h: Hierarchy, controller: str) -> Path | None:
    """The cgroup directory of `pid` in hierarchy `h`, or None if the process is gone."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        hid, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if h.version == 1 and controller in controllers.split(","):
            return h.dir_of(path)
        if h.version == 2 and hid == "0" and controllers == "":
            return h.dir_of(path)
    return None


def writable(directory: Path) -> bool:
    return os.access(directory, os.W_OK | os.X_OK) and os.access(directory / "cgroup.procs", os.W_OK)


def parent_for_new(pid: int, h: Hierarchy, controller: str) -> tuple[Path | None, str]:
    """Where a new cgroup with `controller` for `pid` can be created, or (None, why not).

    v1 has no "no internal processes" rule, so the new group nests inside the process's own
    cgroup (its existing limits keep applying, hierarchically). In v2 a cgroup that enables a
    controller for its children may not hold processes itself (the root excepted), so the new
    group goes to the nearest ancestor, starting at the process's own cgroup, that has the
    controller in `cgroup.subtree_control` and is writable.
    """
    own = cgroup_of(pid, h, controller)
    if own is None:
        return None, f"pid {pid} is gone"
    if h.version == 1:
        if writable(own):
            return own, ""
        return None, f"{own} is not writable (run as root, or delegate it to this user)"
    tried = []
    d = own
    while True:
        try:
            enabled = (d / "cgroup.subtree_control").read_text().split()
        except OSError:
            enabled = []
        if controller in enabled and writable(d):
            return d, ""
        tried.append(f"{d} ({'not writable' if controller in enabled else f'no +{controller} in subtree_control'})")
        if d == h.mountpoint or h.mountpoint not in d.parents:
            break
        d = d.parent
    return None, "no usable parent cgroup: " + "; ".join(tried)


def procs(directory: Path) -> list[int]:
    """Pids in a cgroup (empty if it is gone)."""
    try:
        return [int(x) for x in (directory / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


def move(pid: int, directory: Path) -> None:
    """Move a process (all its threads) into the cgroup at `directory`."""
    (directory / "cgroup.procs").write_text(str(pid))


def remove(directory: Path, timeout: float = 5.0, stop: StopFlag | None = None) -> bool:
    """rmdir an empty cgroup; True when it is gone. Retries briefly: a process that was just
    killed or moved can keep the group busy for a moment (EBUSY)."""

    def removed() -> bool:
        try:
            directory.rmdir()
        except FileNotFoundError:
            pass
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                raise
            return False
        return True

    if not wait_until(removed, time.monotonic() + timeout, 0.05, stop):
        directory.rmdir()  # still busy: raise the kernel's error
    return True


# --- memory files (names differ by version) ------------------------------------------------

UNLIMITED = {1: "-1", 2: "max"}


def limit_file(version: int) -> str:
    return "memory.limit_in_bytes" if version == 1 else "memory.max"


def usage_file(version: int) -> str:
    return "memory.usage_in_bytes" if version == 1 else "memory.current"


def oom_kills(directory: Path, version: int) -> int | None:
    """The cgroup's OOM-kill counter: v2 `memory.events`, v1 `memory.oom_control` (`oom_kill`).

    None when the file or the line is missing (a v1 kernel older than 4.13 has no counter)."""
    name = "memory.oom_control" if version == 1 else "memory.events"
    try:
        lines = (directory / name).read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        key, _, value = line.partition(" ")
        if key == "oom_kill":
            return int(value)
    return None


def read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if text == "max":
        return None
    return int(text)
