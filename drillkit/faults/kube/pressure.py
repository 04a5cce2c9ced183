"""What memory-pressure and cpu-pressure of pods share: a stress-ng pod on the target's node, or
a load exec'd inside the target container.

Why they live together: both come in the same two modes with the same revert — delete the
stress pod (node mode), or kill the in-container load by the marker on its command line, and
the children it started (container mode) — and differ only in the load itself
(`drillkit.faults.kube.memory` holds memory-pressure; cpu-pressure is here). Node mode pins the
pod with `nodeName` and bounds it with its own timeout and activeDeadlineSeconds, so it ends
even if drillkit dies.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar

from drillkit.errors import Aborted, DrillkitError, PreflightError
from drillkit.faults import Made, RevertContext, Undo
from drillkit.faults.kube.base import STOP_TIMEOUT, Background, KubeFault, Pick, check_selector, note
from drillkit.kube import RUN_LABEL, Conflict, ExecFailed, KubeError, NotFound, Pod
from drillkit.model import Count, Duration, doc

MEMORY_MARKER = "drillkit-memory-pressure"
CPU_MARKER = "drillkit-cpu-pressure"
STRESS_IMAGE = "ghcr.io/colinianking/stress-ng"

_QUANTITY = re.compile(r"\d+(\.\d+)?(Ki|Mi|Gi|Ti|k|M|G|T|m)?")


class Mode(StrEnum):
    """Where pressure is applied: inside the target container, or on the target's node."""

    CONTAINER = "container"
    NODE = "node"


def killer(marker: str, signal: str = "9") -> str:
    """A POSIX script sending `signal` to processes whose command line carries `marker`=1, and
    to their children (the allocator `tail` the memory load runs is a child of the marked shell).

    The marker is spelt in two pieces so the script never matches (or triggers) itself.
    """
    head, tail = marker.rsplit("-", 1)
    return (
        f'm="{head}"; marked=; for p in /proc/[0-9]*; do '
        f'case "$(tr "\\000" " " < "$p/cmdline" 2>/dev/null)" in '
        f'*"$m-{tail}=1"*) marked="$marked ${{p#/proc/}}";; esac; done; '
        "kids=; for p in /proc/[0-9]*; do "
        'pp=$(grep "^PPid:" "$p/status" 2>/dev/null | tr -dc 0-9); '
        'for q in $marked; do if [ "$pp" = "$q" ]; then kids="$kids ${p#/proc/}"; fi; done; done; '
        # the shells first, so none starts another command once its child is gone
        f'for q in $marked $kids; do kill -{signal} "$q" 2>/dev/null; done; true'
    )


def stress_pod(
    name: str,
    ns: str,
    labels: dict[str, str],
    node: str,
    image: str,
    args: list[str],
    requests: dict[str, str],
    deadline: int,
    container: str = "stress",
    limits: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A stress-ng pod pinned to `node` (nodeName: no scheduler), ending itself at `deadline`.

    It passes Pod Security `restricted` (non-root, no privilege escalation, no capabilities,
    RuntimeDefault seccomp: stress-ng's CPU and VM stressors need none of them), and its limits
    are its own, so a namespace's LimitRange default (say 64Mi) cannot turn the load into an
    OOM loop."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {
            "nodeName": node,
            "restartPolicy": "Never",
            "activeDeadlineSeconds": deadline,
            "terminationGracePeriodSeconds": 0,
            "tolerations": [{"operator": "Exists"}],
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 65534,
                "runAsGroup": 65534,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": container,
                    "image": image,
                    "args": args,
                    "resources": {"requests": requests, "limits": limits or {}},
                    "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                }
            ],
        },
    }


@dataclass(frozen=True)
class CgroupState:
    """A container's memory cgroup as seen from inside it: its version (1 or 2) and the kernel's
    count of OOM kills in it (`oom_kill` of v2 `memory.events` / v1 `memory.oom_control`; None
    where the kernel does not count them)."""

    version: int
    oom_kills: int | None


@dataclass(frozen=True)
class Target:
    pod: Pod
    container: str
    cgroup: CgroupState | None = None  # memory-pressure: the cgroup before the load


@dataclass(frozen=True)
class Pressure:
    """What preflight found: in node mode the node and the stress pod's name, in container mode
    the containers to load (each answered `sh -c true`)."""

    namespace: str
    targets: tuple[Target, ...] = ()  # container mode
    near: Pod | None = None  # node mode: the target pod, whose node gets the load
    node: str | None = None
    stress: str | None = None  # node mode: the stress pod's name


@dataclass(frozen=True)
class LoadedContainer:
    """A container running the load (container mode), with its restart count before it."""

    name: str
    uid: str
    container: str
    restarts: int | None = None


@dataclass(frozen=True)
class PressureRecord:
    """How to undo a pressure fault: delete the stress pod, or kill the load in the containers."""

    mode: Mode
    namespace: str
    pod: str | None = None  # node mode: the stress pod
    pods: tuple[LoadedContainer, ...] = ()  # container mode
    background: str | None = None  # container mode: this process's exec threads (Background token)
    marker: str | None = None  # container mode: the load's marker, if not the fault's own (blind exercise)


class _PressureFault(KubeFault[Any, Pressure, PressureRecord]):
    """Shared by memory- and cpu-pressure: node mode runs a stress pod, container mode execs."""

    marker: ClassVar[str]
    Record: ClassVar[type] = PressureRecord

    def preflight(self) -> Pressure:
        p, ns = self.params, self.namespace
        count = p.count if p.mode is Mode.CONTAINER else Count(1)
        pods = self.resolve_pods(ns, p.selector, p.field_selector, count, p.pick)
        if p.mode is Mode.NODE:
            import secrets  # here: it loads hashlib, which validating a scenario never needs

            node = pods[0].node
            if not node:
                raise PreflightError(f"{self.kind}: pod {pods[0].name} is not scheduled yet")
            stress = self.ctx.naming.name(Made.LOAD, self.ctx.run_id, secrets.token_hex(2))
            found = Pressure(ns, near=pods[0], node=node, stress=stress)
            self.admitted(found)
            return found
        targets = []
        for pod in pods:
            name = self.pod_container(pod, p.container)
            self.check_container(pod, name)
            targets.append(self.probe(pod, name))
        return Pressure(ns, tuple(targets))

    @property
    def load_marker(self) -> str:
        """What marks the in-container load's shell: the fault's own marker, or in a blind
        exercise a platform-like name (journalled in the record, for the revert's killer)."""
        naming = self.ctx.naming
        return naming.name(Made.LOAD, self.ctx.run_id) if naming.blind else self.marker

    @property
    def record_marker(self) -> str | None:
        """The marker the revert record keeps: None for the fault's own (older journals too)."""
        return self.load_marker if self.ctx.naming.blind else None

    def check_container(self, pod: Pod, container: str) -> None:
        """Extra per-container preconditions."""

    def probe(self, pod: Pod, container: str) -> Target:
        """Check the container runs a POSIX shell (`sh -c true`); memory-pressure reads its
        cgroup too."""
        self.shell(pod, container, "true")
        return Target(pod, container)

    def shell(self, pod: Pod, name: str, script: str) -> str:
        """Run `sh -c script` in a target container in preflight: its stdout, or PreflightError."""
        shown = "true" if script == "true" else "a read-only probe"
        try:
            res = self.kube.exec(pod.namespace, pod.name, name, ["sh", "-c", script], timeout=20)
        except (ExecFailed, NotFound) as exc:
            raise PreflightError(
                f"{self.kind}: cannot run `sh -c {shown}` in container {name} of "
                f"{pod.ref}: {exc}. mode: container needs a POSIX shell in "
                "the image; use mode: node for distroless images"
            ) from None
        if res.code != 0:
            raise PreflightError(
                f"{self.kind}: `sh -c {shown}` exited {res.code} in container "
                f"{name} of {pod.ref}: {res.stderr.strip()}; mode: container "
                "needs a POSIX shell"
            )
        return res.stdout

    def check_stop(self) -> None:
        """Raise Aborted when the drill is asked to stop (the registered revert then runs)."""
        stop = self.ctx.stop
        if stop.interrupts():
            raise Aborted(stop.reason or "stop requested", by_signal=True)

    def node_plan(self, found: Pressure) -> list[str]:
        return [
            f"create Pod {found.namespace}/{found.stress} (image {self.params.image}, labelled "
            f"{RUN_LABEL}={self.ctx.run_id}) pinned to node {found.node} (where "
            f"{found.near.ref if found.near else '?'} runs): stress-ng {' '.join(self.stress_args())}",
            "revert: delete that pod",
        ]

    def stress_args(self) -> list[str]:
        raise NotImplementedError

    def stress_requests(self) -> dict[str, str]:
        raise NotImplementedError

    def stress_limits(self) -> dict[str, str]:
        raise NotImplementedError

    def stress_manifest(self, found: Pressure) -> dict[str, Any]:
        p, name, node = self.params, found.stress, found.node
        assert name is not None and node is not None
        args, requests = self.stress_args(), self.stress_requests()
        labels = self.made_labels(Made.LOAD, "drillkit-stress")
        container = "worker" if self.ctx.naming.blind else "stress"
        deadline = int(p.duration) + 30
        return stress_pod(
            name, found.namespace, labels, node, p.image, args, requests, deadline, container, self.stress_limits()
        )

    def admitted(self, found: Pressure) -> None:
        """Ask the apiserver to create the stress pod with dryRun=All (RBAC, Pod Security,
        quotas, admission webhooks), so a refusal is a preflight error before any harm."""
        try:
            self.kube.create_pod(found.namespace, self.stress_manifest(found), dry_run=True)
        except KubeError as exc:
            raise PreflightError(
                f"{self.kind}: the cluster refuses the stress pod {found.namespace}/{found.stress} "
                f"(mode: node; dry run, nothing created): {exc}"
            ) from None

    def inject_node(self, found: Pressure, undo: Undo) -> None:
        ns, p, name, node = found.namespace, self.params, found.stress, found.node
        assert name is not None and node is not None
        undo.register(self, PressureRecord(Mode.NODE, ns, pod=name))
        with contextlib.suppress(Conflict):
            self.kube.create_pod(ns, self.stress_manifest(found))
        started = self.kube.wait_pods(
            ns,
            f"{RUN_LABEL}={self.ctx.run_id}",
            lambda pods: next((x for x in pods if x.name == name and x.containers and x.containers[0].running), None),
            p.wait,
            self.ctx.stop,
        )
        if started is None:
            raise DrillkitError(
                f"{self.kind}: stress pod {ns}/{name} not running within "
                f"{p.wait:g}s (image {p.image} pullable? node {node} full?)"
            )
        self.ctx.harm_started()

    @classmethod
    def revert(cls, ctx: RevertContext, record: PressureRecord) -> dict[str, Any]:
        kube, ns = ctx.kube, record.namespace
        if record.mode is Mode.NODE:
            return {"deleted": kube.delete_pod(ns, record.pod, grace_period=0) if record.pod else False}
        Background.finish(record.background, timeout=0.5)  # no new exec starts from here on

        def kill_all() -> list[str]:
            stopped = []
            for entry in record.pods:
                try:
                    script = killer(record.marker or cls.marker)
                    kube.exec(ns, entry.name, entry.container, ["sh", "-c", script], timeout=20)
                    stopped.append(entry.name)
                except (NotFound, ExecFailed):  # pod gone or container restarted: nothing runs
                    pass
            return stopped

        stopped = kill_all()
        if not Background.finish(record.background, timeout=10.0):  # an exec that began late: kill again
            kill_all()
            if not Background.finish(record.background, STOP_TIMEOUT):
                raise DrillkitError(
                    f"{cls.kind} revert: the in-container load is still running "
                    f"after killing it twice; check the pods in {ns}"
                )
        return {"stopped_in": stopped}


def busy_loops(marker: str, workers: int, seconds: int) -> str:
    """Container mode's load: `workers` POSIX busy loops in the container's shell, each ending
    after `seconds` by the clock (no tool beyond `sh` and `date`), the shell marked for the
    revert's killer."""
    loop = 'while [ "$(date +%s)" -lt "$end" ]; do :; done'
    return (
        f": {marker}=1; end=$(( $(date +%s) + {seconds} )); "
        f"i=0; while [ $i -lt {workers} ]; do ( {loop} ) & i=$((i+1)); done; wait"
    )


@dataclass(frozen=True)
class CpuPressureParams:
    selector: str = doc("label selector of the target pods")
    mode: Mode = doc(
        "node: a stress-ng pod on the target's node; container: a busy loop exec'd in the target container",
        default=Mode.NODE,
    )
    workers: int = doc("CPU workers (stress-ng --cpu, or parallel busy loops)", default=1)
    duration: Duration = doc("how long the load runs (stress-ng --timeout / loop bound)", default=300.0)
    cpu: str = doc("node mode: CPU request of the stress pod", default="500m")
    container: str | None = doc("container mode: target container (default: the first)", default=None)
    field_selector: str | None = doc("field selector narrowing the pods", default=None)
    count: Count = doc("container mode: how many matching pods", default=Count(1))
    pick: Pick = doc("which pods: random or oldest", default=Pick.RANDOM)
    image: str = doc("node mode: stress-ng image", default=STRESS_IMAGE)
    wait: Duration = doc("node mode: how long to wait for the stress pod to run", default=120.0)
    namespace: str | None = doc("namespace (default: the scenario's target namespace)", default=None)

    def __post_init__(self) -> None:
        check_selector("selector", self.selector)
        if not 1 <= self.workers <= 64:
            raise ValueError("workers: expected 1..64")
        if not _QUANTITY.fullmatch(self.cpu):
            raise ValueError(f"cpu: expected a quantity like 500m or 2, got {self.cpu!r}")
        if self.duration < 1:
            raise ValueError("duration: expected at least 1s")


class CpuPressure(_PressureFault):
    """Burn CPU on the target's node (stress-ng pod) or inside the target container."""

    kind = "cpu-pressure"
    Params = CpuPressureParams
    params: CpuPressureParams
    marker = CPU_MARKER

    def stress_args(self) -> list[str]:
        p = self.params
        return ["--cpu", str(p.workers), "--timeout", f"{int(p.duration)}s"]

    def stress_requests(self) -> dict[str, str]:
        return {"cpu": self.params.cpu, "memory": "32Mi"}

    def stress_limits(self) -> dict[str, str]:
        """Memory only (a CPU limit would cap the contention): stress-ng's CPU workers need a
        few MiB each."""
        return {"memory": f"{64 + 4 * self.params.workers}Mi"}

    def command(self) -> str:
        return busy_loops(self.load_marker, self.params.workers, int(self.params.duration))

    def plan(self, found: Pressure) -> list[str]:
        if self.params.mode is Mode.NODE:
            return self.node_plan(found)
        return [
            f"exec in container {t.container} of {t.pod.ref}: {self.params.workers} busy "
            f"loop(s) for {self.params.duration:g}s"
            for t in found.targets
        ] + ["revert: kill the loops"]

    def inject(self, found: Pressure, undo: Undo) -> None:
        if self.params.mode is Mode.NODE:
            return self.inject_node(found, undo)
        ns = found.namespace
        bg = Background(self.ctx.stop.child())
        entries = tuple(LoadedContainer(t.pod.name, t.pod.uid, t.container) for t in found.targets)
        record = PressureRecord(Mode.CONTAINER, ns, pods=entries, background=bg.token, marker=self.record_marker)
        undo.register(self, record)
        for entry in entries:
            bg.start(self._burn, ns, entry, bg)
        self.ctx.harm_started()

    def _burn(self, ns: str, entry: LoadedContainer, bg: Background) -> None:
        if bg.stop.is_set():  # reverted before this thread got going
            return
        try:
            self.kube.exec(
                ns,
                entry.name,
                entry.container,
                ["sh", "-c", self.command()],
                timeout=self.params.duration + 10,
                retry=False,
            )
        except DrillkitError as exc:
            note(self.ctx, "note", fault=self.kind, text=f"busy loop in {entry.name} ended: {exc}")
