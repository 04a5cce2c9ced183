"""memory-pressure: a process in a memory-limited cgroup, pushed until the kernel OOM-kills it
(the playbook's memory-leak incident), on cgroup v1 or v2, whichever this host has."""

from __future__ import annotations

import contextlib
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from drillkit.errors import PreflightError, UnavailableError
from drillkit.faults import Allowed, Fault, Made, OutOfBounds, RevertContext, Undo, run_tags
from drillkit.faults.local import cgroups as cg
from drillkit.faults.local.common import check_stop, host_errors, one_target, validate_target
from drillkit.model import Duration, doc, parse_bytes
from drillkit.procs import alive, brief_cmdline
from drillkit.signals import wait_until


@dataclass(frozen=True)
class MemoryPressureParams:
    limit: str = doc(
        'memory limit of the drill cgroup: a size like "256Mi", or "+64Mi" = 64 MiB above '
        "what the cgroup is charged right after the process moved in"
    )
    pattern: str | None = doc("regex matched against the process command line", default=None)
    pidfile: str | None = doc("file holding the pid", default=None)
    leak_url: str | None = doc(
        "URL POSTed repeatedly to make the process allocate, e.g. the lab app's "
        "http://127.0.0.1:8081/debug/leak?mb=16; without it the limit alone is "
        "the fault",
        default=None,
    )
    leak_every: Duration = doc("pause between leak requests", default=0.2)
    oom_within: Duration = doc("deadline for the kernel to OOM-kill the process", default=60.0)

    def __post_init__(self) -> None:
        validate_target(self.pattern, self.pidfile)
        try:
            size = parse_bytes(self.limit.strip().removeprefix("+"))
        except ValueError as exc:
            raise ValueError(f"limit: {exc}") from None
        if size < 2**20:
            raise ValueError(f"limit: expected at least 1Mi, got {self.limit!r}")
        if self.leak_url is not None and not re.match(r"https?://", self.leak_url):
            raise ValueError(f"leak_url: expected an http:// or https:// URL, got {self.leak_url!r}")

    @property
    def headroom(self) -> bool:
        return self.limit.strip().startswith("+")

    @property
    def limit_bytes(self) -> int:
        return parse_bytes(self.limit.strip().removeprefix("+"))


@dataclass(frozen=True)
class MemoryTarget:
    """What preflight found: the process, and where its drill cgroup can go."""

    pid: int
    hierarchy: cg.Hierarchy
    parent: Path  # the new cgroup's parent
    origin: Path  # the process's own cgroup, where the revert moves it back


@dataclass(frozen=True)
class MemoryPressureRecord:
    """How to undo it: lift the limit, move what is left back to `origin`, remove `cgroup`."""

    version: int
    cgroup: str
    pid: int
    origin: str
    moved: tuple[int, ...] = ()
    limit_bytes: int | None = None
    charged_at_move: int | None = None
    oom_kill: int | None = None  # evidence: the cgroup's OOM-kill counter once the target died
    oom_kill_before: int | None = None
    target_gone: bool = False
    leak_posts: int | None = None


class MemoryPressure(Fault[MemoryPressureParams, MemoryTarget, MemoryPressureRecord]):
    """Put a process in a memory-limited cgroup and push it until the kernel OOM-kills it.

    The cgroup `drillkit-<run id>` (in a blind exercise `chatbot-app-<digest of the run id>`: `ctx.naming`) is
    created where this host allows: on cgroup v1 inside the process's own memory cgroup
    (`memory.limit_in_bytes`, OOM kills counted in `memory.oom_control`), on v2 under the nearest
    ancestor with `+memory` in `cgroup.subtree_control` (`memory.max`, `memory.events`). Pages
    the process had before the move stay charged to its old cgroup on both versions, so the limit
    bounds what it allocates afterwards; swap is capped too so the process is killed rather than swapped out. The revert
    lifts the limit, moves whatever is left back to its original cgroup and removes the group.
    """

    kind = "memory-pressure"
    target = "local"
    Params = MemoryPressureParams
    Record: ClassVar[type] = MemoryPressureRecord
    params: MemoryPressureParams

    def preflight(self) -> MemoryTarget:
        p = self.params
        pid = one_target(self.kind, p.pattern, p.pidfile)
        h = cg.hierarchy("memory")
        if h is None:
            raise PreflightError(
                f"{self.kind}: this host has no memory cgroup controller mounted "
                "(neither cgroup v1 `memory` nor cgroup v2 with `memory` in cgroup.controllers)"
            )
        parent, why = cg.parent_for_new(pid, h, "memory")
        if parent is None:
            raise PreflightError(f"{self.kind}: no writable memory cgroup (cgroup v{h.version}): {why}")
        origin = cg.cgroup_of(pid, h, "memory")
        if origin is None:
            raise PreflightError(f"{self.kind}: pid {pid} is gone")
        return MemoryTarget(pid, h, parent, origin)

    def _group(self, found: MemoryTarget) -> Path:
        return found.parent / self.ctx.naming.name(Made.CGROUP, self.ctx.naming.tag(self.ctx.run_id))

    def plan(self, found: MemoryTarget) -> list[str]:
        p, version = self.params, found.hierarchy.version
        limit = f"its charge after the move {p.limit}" if p.headroom else p.limit
        lines = [
            f"create cgroup v{version} {self._group(found)} with {cg.limit_file(version)} = {limit}",
            f"move pid {found.pid} ({brief_cmdline(found.pid, 80)}) into it from {found.origin}",
        ]
        if p.leak_url:
            lines.append(
                f"POST {p.leak_url} every {p.leak_every:g}s until the kernel OOM-kills it (deadline {p.oom_within:g}s)"
            )
        lines.append(f"revert: lift the limit, move remaining processes back to {found.origin}, rmdir the cgroup")
        return lines

    @host_errors
    def inject(self, found: MemoryTarget, undo: Undo) -> None:
        p, ctx, version, pid = self.params, self.ctx, found.hierarchy.version, found.pid
        group = self._group(found)
        handle = undo.register(
            self, MemoryPressureRecord(version=version, cgroup=str(group), pid=pid, origin=str(found.origin))
        )
        group.mkdir()
        handle.update(moved=(pid,))
        try:
            cg.move(pid, group)
        except OSError as exc:
            raise UnavailableError(f"{self.kind}: cannot move pid {pid} into {group}: {exc}") from None
        charged = cg.read_int(group / cg.usage_file(version)) or 0
        limit = charged + p.limit_bytes if p.headroom else p.limit_bytes
        (group / cg.limit_file(version)).write_text(str(limit))
        _cap_swap(group, version, limit)
        before = cg.oom_kills(group, version) or 0
        handle.update(limit_bytes=limit, charged_at_move=charged)
        ctx.log(f"{self.kind}: pid {pid} in {group}, limit {limit} bytes ({charged} charged)")
        if not p.leak_url:
            return
        url, posts = p.leak_url, 0

        def gone_after_a_leak() -> bool:
            nonlocal posts
            if not alive(pid):
                return True
            if _post(url):
                posts += 1
                ctx.harm_started()  # the leak began: what the memory alert watches
            return False

        gone = wait_until(gone_after_a_leak, time.monotonic() + p.oom_within, p.leak_every, ctx.stop)
        check_stop(ctx.stop)
        if not gone:
            raise UnavailableError(
                f"{self.kind}: pid {pid} not OOM-killed within {p.oom_within:g}s "
                f"({posts} leak requests; is {p.leak_url} allocating?)"
            )
        kills = cg.oom_kills(group, version)
        handle.update(oom_kill=kills, oom_kill_before=before, target_gone=True, leak_posts=posts)
        ctx.log(f"{self.kind}: pid {pid} gone after {posts} leak requests; oom_kill counter {kills}")

    @classmethod
    def check(cls, record: MemoryPressureRecord, allowed: Allowed) -> None:
        """The drill cgroup is one named after the run, and both it and the origin lie inside a
        mounted cgroup hierarchy: the revert writes, moves processes and removes there only."""
        if record.version not in (1, 2):
            raise OutOfBounds("version", f"expected cgroup version 1 or 2, got {record.version}")
        if not allowed.declared(cls.kind):
            raise OutOfBounds("cgroup", "the run's scenario declares no memory-pressure fault")
        mounts = cg.mountpoints()
        for name in ("cgroup", "origin"):  # the drill's group below a hierarchy's root, its origin anywhere in it
            path = Path(getattr(record, name))
            inside = any(path.is_relative_to(m) and (name == "origin" or path != m) for m in mounts)
            if not path.is_absolute() or ".." in path.parts or not inside:
                raise OutOfBounds(name, f"{path} is not a cgroup in a mounted cgroup hierarchy")
        if not any(Path(record.cgroup).name.endswith(f"-{tag}") for tag in run_tags(allowed.run_id)):
            raise OutOfBounds("cgroup", f"{record.cgroup} is not a cgroup this run names (…-{allowed.run_id})")

    @classmethod
    def revert(cls, ctx: RevertContext, record: MemoryPressureRecord) -> dict[str, Any]:
        group, version = Path(record.cgroup), record.version
        if not group.exists():
            return {"removed": False, "note": "cgroup already gone"}
        with contextlib.suppress(OSError):
            (group / cg.limit_file(version)).write_text(cg.UNLIMITED[version])
        origin = Path(record.origin)
        home = origin if (origin / "cgroup.procs").exists() else group.parent
        moved_back = []
        for _ in range(3):  # a process may fork while we move its siblings
            left = cg.procs(group)
            if not left:
                break
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    cg.move(pid, home)
                    moved_back.append(pid)
        kills = cg.oom_kills(group, version)
        cg.remove(group, stop=ctx.stop)
        return {"removed": True, "moved_back": moved_back, "to": str(home), "oom_kill": kills}


def _cap_swap(group: Path, version: int, limit: int) -> None:
    """Swap would let the process page out instead of dying; v1 memsw needs >= the limit."""
    with contextlib.suppress(OSError):
        if version == 2:
            (group / "memory.swap.max").write_text("0")
        elif (group / "memory.memsw.limit_in_bytes").exists():
            (group / "memory.memsw.limit_in_bytes").write_text(str(limit))


def _post(url: str) -> bool:
    import http.client  # here, not at the top: validating a scenario needs no HTTP client
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=b"", method="POST"), timeout=5) as r:
            r.read()
            return True
    except (OSError, http.client.HTTPException, urllib.error.URLError):
        return False  # the request that tips it over dies with the process
