"""memory-pressure of pods: allocate inside the target container until its memory limit gets
it OOM-killed, or run a stress-ng pod on the target's node.

Why it is a module of its own: the OOM kill has to be *proved*, and what proves it depends on
the node. On cgroup v2 (kubelet sets `memory.oom.group`) the whole container is killed and
restarted, which the pod status shows. On cgroup v1 the kernel kills only the biggest process
in the cgroup — the allocator, not the container's PID 1 — so no restart happens and the only
evidence is the cgroup's own `oom_kill` counter. Preflight therefore reads the container's
cgroup version and counter, and inject accepts either a restart or a higher counter.

The allocator is `tail /dev/zero`: `/dev/zero` never yields a newline, so `tail` keeps one
ever-growing line in memory, in linear time (a shell string re-copied on every append was
quadratic: minutes for a 1-2 GiB limit). Node mode converts the Kubernetes quantity to bytes
for stress-ng, which reads `1G` as 2^30 and rejects `Gi`.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from typing import Any

from drillkit.errors import DrillkitError, PreflightError
from drillkit.faults import Undo
from drillkit.faults.kube.base import Pick, check_selector, note
from drillkit.faults.kube.pressure import (
    MEMORY_MARKER,
    STRESS_IMAGE,
    CgroupState,
    LoadedContainer,
    Mode,
    Pressure,
    PressureRecord,
    Target,
    _PressureFault,
)
from drillkit.kube import ExecFailed, KubeError, NotFound, Pod
from drillkit.model import Count, Duration, doc, parse_bytes
from drillkit.signals import wait_until


def memory_command(marker: str = MEMORY_MARKER) -> str:
    """The in-container load. `:` is the no-op builtin: the marker is on the shell's command
    line (where the revert's killer finds it) without running anything; `tail` is its child."""
    said = "drillkit: allocator exited" if marker == MEMORY_MARKER else "exited"
    return f': {marker}=1; tail /dev/zero; echo "{said} $?"'


MEMORY_COMMAND = memory_command()

CGROUP_ROOT = "/sys/fs/cgroup"


def cgroup_probe(root: str = CGROUP_ROOT) -> str:
    """A read-only POSIX script printing `cgroup v2` / `cgroup v1` / `cgroup unknown` and then the
    file holding the OOM-kill counter of the container's memory cgroup (`root`: where cgroupfs
    is mounted in the container; tests point it at a real cgroup of this machine)."""
    return (
        f'if [ -f "{root}/memory.events" ]; then echo "cgroup v2"; cat "{root}/memory.events"; '
        f'elif [ -f "{root}/memory/memory.oom_control" ]; then echo "cgroup v1"; '
        f'cat "{root}/memory/memory.oom_control"; else echo "cgroup unknown"; fi'
    )


def parse_probe(text: str) -> CgroupState | None:
    """What `cgroup_probe` printed, or None for an unknown cgroup layout."""
    version = re.search(r"^cgroup v([12])$", text, re.M)
    if version is None:
        return None
    kills = re.search(r"^oom_kill (\d+)$", text, re.M)
    return CgroupState(int(version[1]), int(kills[1]) if kills else None)


def quantity_bytes(text: str) -> int:
    """A Kubernetes memory quantity in bytes (see model.parse_bytes). ValueError otherwise."""
    try:
        if text != "".join(text.split()):  # Kubernetes quantities have no spaces ("1 Gi")
            raise ValueError(text)
        return parse_bytes(text)
    except ValueError:
        raise ValueError(f"memory: expected a quantity like 512Mi or 1Gi, got {text!r}") from None


@dataclass(frozen=True)
class MemoryPressureParams:
    selector: str = doc("label selector of the target pods")
    mode: Mode = doc(
        "container: allocate inside the container until its own limit OOM-kills it; "
        "node: a stress-ng pod on the target's node",
        default=Mode.CONTAINER,
    )
    container: str | None = doc("target container (default: the first)", default=None)
    field_selector: str | None = doc("field selector narrowing the pods", default=None)
    count: Count = doc("how many matching pods (container mode)", default=Count(1))
    pick: Pick = doc("which pods: random or oldest", default=Pick.RANDOM)
    timeout: Duration = doc("container mode: how long to wait for the OOM kill", default=120.0)
    memory: str = doc(
        "node mode: memory stress-ng allocates (and requests), a Kubernetes quantity (1G = 10^9 bytes, 1Gi = 2^30)",
        default="1Gi",
    )
    image: str = doc("node mode: stress-ng image", default=STRESS_IMAGE)
    duration: Duration = doc("node mode: stress-ng --timeout (its own dead-man's switch)", default=600.0)
    wait: Duration = doc("node mode: how long to wait for the stress pod to run", default=120.0)
    namespace: str | None = doc("namespace (default: the scenario's target namespace)", default=None)

    def __post_init__(self) -> None:
        check_selector("selector", self.selector)
        if quantity_bytes(self.memory) < 2**20:
            raise ValueError(f"memory: expected at least 1Mi, got {self.memory!r}")


class MemoryPressure(_PressureFault):
    """Exhaust memory: inside the target container up to its limit (OOM-killed: restarted on
    cgroup v2, the allocator killed on v1), or on its node with a stress-ng pod."""

    kind = "memory-pressure"
    Params = MemoryPressureParams
    params: MemoryPressureParams
    marker = MEMORY_MARKER

    def check_container(self, pod: Pod, container: str) -> None:
        c = pod.container(container)
        if c is None or not c.memory_limit:
            raise PreflightError(
                f"{self.kind}: container {container} of {pod.ref} has no memory limit, so the "
                "allocation would only stop at the node's memory; set resources.limits.memory "
                "or use mode: node"
            )

    def probe(self, pod: Pod, container: str) -> Target:
        state = parse_probe(self.shell(pod, container, cgroup_probe()))
        if state is None:
            raise PreflightError(
                f"{self.kind}: cannot read the memory cgroup of container {container} in "
                f"{pod.ref} (neither {CGROUP_ROOT}/memory.events nor "
                f"{CGROUP_ROOT}/memory/memory.oom_control), so an OOM kill could not be "
                "proved; use mode: node"
            )
        return Target(pod, container, state)

    def stress_args(self) -> list[str]:
        p, size = self.params, str(quantity_bytes(self.params.memory))
        return ["--vm", "1", "--vm-bytes", size, "--vm-keep", "--timeout", f"{int(p.duration)}s"]

    def stress_requests(self) -> dict[str, str]:
        return {"memory": self.params.memory, "cpu": "100m"}

    def stress_limits(self) -> dict[str, str]:
        """What stress-ng allocates plus 64 MiB for the process itself: the pod holds its load,
        and a namespace's LimitRange default cannot OOM-kill it in a loop."""
        return {"memory": str(quantity_bytes(self.params.memory) + (64 << 20))}

    def plan(self, found: Pressure) -> list[str]:
        if self.params.mode is Mode.NODE:
            return self.node_plan(found)
        return [
            f"exec in container {t.container} of {t.pod.ref} (memory limit {_limit(t)}, "
            f"cgroup v{t.cgroup.version if t.cgroup else '?'}): `tail /dev/zero` until OOM-killed"
            for t in found.targets
        ] + ["revert: nothing to undo (the kernel killed the allocator); stray allocators are killed"]

    def inject(self, found: Pressure, undo: Undo) -> None:
        if self.params.mode is Mode.NODE:
            return self.inject_node(found, undo)
        ns, p = found.namespace, self.params
        entries = tuple(LoadedContainer(t.pod.name, t.pod.uid, t.container, _restarts(t)) for t in found.targets)
        undo.register(self, PressureRecord(Mode.CONTAINER, ns, pods=entries, marker=self.record_marker))
        command = memory_command(self.load_marker)
        errors: dict[str, str] = {}

        def allocate(entry: LoadedContainer) -> None:
            try:
                self.kube.exec(ns, entry.name, entry.container, ["sh", "-c", command], timeout=p.timeout, retry=False)
            except DrillkitError as exc:  # KubeError included: the stream dies with the container
                errors[entry.name] = str(exc)

        threads = [threading.Thread(target=allocate, args=(e,), daemon=True) for e in entries]
        for t in threads:
            t.start()
        self.ctx.harm_started()
        # the execs end with the allocator (v1) or the container (v2); a stop ends the wait at once
        wait_until(lambda: not any(t.is_alive() for t in threads), time.monotonic() + p.timeout + 5, 0.2, self.ctx.stop)
        self.check_stop()
        for entry, target in zip(entries, found.targets, strict=True):
            evidence = self._oom_evidence(ns, entry, target.cgroup, p.timeout)
            if evidence is None:
                self.check_stop()
                raise DrillkitError(
                    f"{self.kind}: container {entry.container} of pod "
                    f"{ns}/{entry.name} was not OOM-killed within {p.timeout:g}s"
                    + (f" ({errors[entry.name]})" if entry.name in errors else "")
                )
            note(self.ctx, "oom_killed", fault=self.kind, pod=entry.name, container=entry.container, **evidence)
            self.ctx.log(
                f"memory-pressure: {ns}/{entry.name} {entry.container}: "
                f"{evidence['reason']}, restarts {entry.restarts} -> {evidence['restarts']}"
            )

    def _oom_evidence(
        self, ns: str, entry: LoadedContainer, cgroup: CgroupState | None, timeout: float
    ) -> dict[str, Any] | None:
        """A restart of the container (cgroup v2, or v1 where PID 1 was the victim), else a
        higher `oom_kill` count in its cgroup (v1: only the allocator died)."""
        before = entry.restarts or 0

        def restarted(pod: Pod | None) -> dict[str, Any] | None:
            c = pod.container(entry.container) if pod and pod.uid == entry.uid else None
            if c and (c.restart_count > before or c.last_terminated_reason == "OOMKilled"):
                return {"restarts": c.restart_count, "reason": c.last_terminated_reason or "restarted"}
            return None

        pod = self.kube.get_pod(ns, entry.name)
        if found := restarted(pod):
            return found
        if cgroup is not None and cgroup.oom_kills is not None and pod is not None:
            try:
                res = self.kube.exec(ns, entry.name, entry.container, ["sh", "-c", cgroup_probe()], timeout=20)
                now = parse_probe(res.stdout)
            except (ExecFailed, NotFound, KubeError):  # the container is restarting: watch for it
                now = None
            if now is not None and now.oom_kills is not None and now.oom_kills > cgroup.oom_kills:
                c = pod.container(entry.container)
                return {
                    "restarts": c.restart_count if c else before,
                    "reason": f"cgroup v{now.version} oom_kill {cgroup.oom_kills} -> {now.oom_kills}",
                }
        return self.kube.wait_pods(
            ns,
            None,
            lambda pods: restarted(next((x for x in pods if x.uid == entry.uid), None)),
            timeout,
            self.ctx.stop,
            field_selector=f"metadata.name={entry.name}",
        )


def _limit(t: Target) -> str | None:
    c = t.pod.container(t.container)
    return c.memory_limit if c else None


def _restarts(t: Target) -> int:
    c = t.pod.container(t.container)
    return c.restart_count if c else 0
