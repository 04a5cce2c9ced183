"""node-memory-pressure: fill a node's memory until its kubelet reports MemoryPressure and evicts.

Why it exists apart from memory-pressure: that fault stays inside one container's limit; this one
takes a whole node to the kubelet's eviction threshold, which is only safe on a node bounded for
it. So it loads only a node labelled `drillkit.io/memory-drill=true` (kind-config.yaml bounds one
kind worker with `system-reserved` and an explicit `eviction-hard`) unless the scenario opts in
with `allow_unlabelled`, and never more than `max_memory`. The load is the node's allocatable
memory minus what its pods request (plus a little headroom: pods use less than they request),
added in steps (one stress-ng pod each, a small request and
no limit, so the kubelet ranks them first to evict and the kernel first to OOM-kill), and stops
growing as soon as the Node reports MemoryPressure. The revert deletes the stress pods and the
pods the kubelet evicted in the namespace meanwhile (evicted pods stay as Failed objects), then
waits until the Node's MemoryPressure is False again.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from typing import Any, ClassVar

from drillkit.errors import DrillkitError, PreflightError
from drillkit.faults import Made, RevertContext, Undo
from drillkit.faults.kube.base import KubeFault, note
from drillkit.faults.kube.memory import quantity_bytes
from drillkit.faults.kube.pressure import STRESS_IMAGE, stress_pod
from drillkit.kube import Conflict, KubeError, Node, Pod
from drillkit.model import Duration, doc
from drillkit.signals import wait_until

MEMORY_DRILL_LABEL = "drillkit.io/memory-drill"
"""The label (value `true`) of a node bounded for memory drills (kind-config.yaml sets it)."""
STRESS_REQUEST = "16Mi"
"""Each stress pod's memory request: far below its use, so the kubelet evicts it first."""
RELIEF_TIMEOUT = 330.0
"""Seconds a revert waits for MemoryPressure=False: the kubelet keeps the condition for its
eviction-pressure-transition-period after the pressure ends (5 min by default, 30 s on the kind
worker)."""


@dataclass(frozen=True)
class NodeMemoryPressureParams:
    node: str | None = doc(
        f"node to load (default: the node labelled {MEMORY_DRILL_LABEL}=true, the first by name)", default=None
    )
    allow_unlabelled: bool = doc(
        f"also load a node without the label {MEMORY_DRILL_LABEL}=true (still at most max_memory)", default=False
    )
    max_memory: str = doc("refuse a load bigger than this, a Kubernetes quantity", default="4Gi")
    headroom: str = doc(
        "how far the ramp may go past allocatable minus requests (pods use less than they request; "
        "the kubelet's threshold is allocatable), a Kubernetes quantity",
        default="256Mi",
    )
    step: str = doc("memory one ramp step adds (one stress pod), a Kubernetes quantity", default="128Mi")
    step_every: Duration = doc("seconds between steps (the kubelet checks eviction signals every 10 s)", default=5.0)
    wait: Duration = doc("how long to wait for MemoryPressure once the whole load runs", default=120.0)
    duration: Duration = doc("each stress pod's own end (stress-ng --timeout, activeDeadlineSeconds)", default=600.0)
    image: str = doc("stress-ng image", default=STRESS_IMAGE)
    namespace: str | None = doc("namespace of the stress pods (default: the scenario's)", default=None)

    def __post_init__(self) -> None:
        if quantity_bytes(self.step) < 2**20:
            raise ValueError(f"step: expected at least 1Mi, got {self.step!r}")
        if quantity_bytes(self.max_memory) < quantity_bytes(self.step):
            raise ValueError(f"max_memory: expected at least one step ({self.step}), got {self.max_memory!r}")
        if self.duration < 1:
            raise ValueError("duration: expected at least 1s")


@dataclass(frozen=True)
class NodeLoad:
    """What preflight found: the node, how its load was sized, and the stress pods' name prefix."""

    namespace: str
    node: Node
    allocatable: int  # bytes
    requested: int  # bytes the node's pods request
    load: int  # at most this many bytes are added: allocatable - requested + headroom
    steps: int
    prefix: str
    evicted_before: tuple[str, ...]  # uids of pods in the namespace on the node already evicted


@dataclass(frozen=True)
class NodeMemoryRecord:
    """How to undo a node-memory-pressure: the stress pods to delete, and the node whose evicted
    pods (in `namespace`, except those evicted before the drill) go and whose MemoryPressure must
    clear."""

    namespace: str
    node: str
    pods: tuple[str, ...] = ()
    evicted_before: tuple[str, ...] = ()


def requested_bytes(pod: Pod) -> int:
    """The memory a pod's containers request (0 for a container without a request)."""
    return sum(quantity_bytes(c.memory_request) for c in pod.containers if c.memory_request)


class NodeMemoryPressure(KubeFault[NodeMemoryPressureParams, NodeLoad, NodeMemoryRecord]):
    """Ramp stress pods on a bounded node until the kubelet reports MemoryPressure (and evicts)."""

    kind = "node-memory-pressure"
    Params = NodeMemoryPressureParams
    Record: ClassVar[type] = NodeMemoryRecord
    params: NodeMemoryPressureParams

    def preflight(self) -> NodeLoad:
        p, ns, kube = self.params, self.namespace, self.kube
        self.guard_namespace(ns)
        nodes = kube.list_nodes()
        node = self._node(nodes)
        self.check_blast("nodes", 1, len(nodes))
        if node.memory_pressure:
            raise PreflightError(f"{self.kind}: node {node.name} already reports MemoryPressure")
        if not node.allocatable_memory:
            raise PreflightError(f"{self.kind}: node {node.name} reports no allocatable memory")
        allocatable = quantity_bytes(node.allocatable_memory)
        pods = [
            x
            for x in kube.list_pods(None, field_selector=f"spec.nodeName={node.name}")
            if x.phase not in ("Succeeded", "Failed")
        ]
        requested = sum(requested_bytes(x) for x in pods)
        load = allocatable - requested
        if load <= 0:
            raise PreflightError(
                f"{self.kind}: node {node.name}'s pods already request {_mi(requested)} of its "
                f"{_mi(allocatable)} allocatable memory: nothing left to fill"
            )
        load += quantity_bytes(p.headroom)
        cap = quantity_bytes(p.max_memory)
        if load > cap:
            raise PreflightError(
                f"{self.kind}: node {node.name} would take {_mi(load)} (allocatable {_mi(allocatable)} minus "
                f"{_mi(requested)} requested, plus headroom {p.headroom}), more than max_memory "
                f"{p.max_memory}; bound the node (system-reserved) or raise max_memory"
            )
        evicted = tuple(x.uid for x in kube.list_pods(ns, field_selector=f"spec.nodeName={node.name}") if _evicted(x))
        import secrets  # here: `drillkit validate` never needs it

        prefix = self.ctx.naming.name(Made.LOAD, self.ctx.run_id, secrets.token_hex(2))
        found = NodeLoad(
            ns, node, allocatable, requested, load, math.ceil(load / quantity_bytes(p.step)), prefix, evicted
        )
        try:
            admitted = self.kube.create_pod(ns, self.manifest(found, 0), dry_run=True)
        except KubeError as exc:
            raise PreflightError(
                f"{self.kind}: the cluster refuses the stress pod {ns}/{prefix}-0 (dry run, nothing created): {exc}"
            ) from None
        limit = next((c.memory_limit for c in admitted.containers if c.memory_limit), None)
        if limit:  # admission (a LimitRange default) gave it one
            raise PreflightError(
                f"{self.kind}: namespace {ns} gives the stress pods a memory limit of {limit} (a LimitRange "
                "default?): each would be OOM-killed in its own cgroup and never press on the node; drill "
                "from a namespace without a default memory limit"
            )
        return found

    def _node(self, nodes: list[Node]) -> Node:
        """The node to load: `node`, else the first labelled one; unlabelled only if opted in."""
        p = self.params
        if p.node is not None:
            node = next((n for n in nodes if n.name == p.node), None)
            if node is None:
                raise PreflightError(f"{self.kind}: node {p.node!r} not found")
        else:
            labelled = sorted((n for n in nodes if n.labels.get(MEMORY_DRILL_LABEL) == "true"), key=lambda n: n.name)
            if not labelled:
                raise PreflightError(
                    f"{self.kind}: no node is labelled {MEMORY_DRILL_LABEL}=true; bound one for memory drills "
                    "(kind-config.yaml does) or name `node` with `allow_unlabelled: true`"
                )
            node = labelled[0]
        if node.labels.get(MEMORY_DRILL_LABEL) != "true" and not p.allow_unlabelled:
            raise PreflightError(
                f"{self.kind}: node {node.name} is not labelled {MEMORY_DRILL_LABEL}=true, so nothing bounds "
                "what the pressure may take from it; set `allow_unlabelled: true` (the load stays under "
                "max_memory) or load a labelled node"
            )
        return node

    def manifest(self, found: NodeLoad, i: int) -> dict[str, Any]:
        """Step `i`'s stress pod: `step` bytes held by stress-ng, a small request and no limit."""
        p = self.params
        size = min(quantity_bytes(p.step), found.load - i * quantity_bytes(p.step))
        args = ["--vm", "1", "--vm-bytes", str(size), "--vm-keep", "--timeout", f"{int(p.duration)}s"]
        labels = self.made_labels(Made.LOAD, "drillkit-node-memory")
        requests = {"memory": STRESS_REQUEST, "cpu": "10m"}
        container = "worker" if self.ctx.naming.blind else "stress"  # as cpu-pressure names it
        return stress_pod(f"{found.prefix}-{i}", found.namespace, labels, found.node.name, p.image, args, requests,
                          int(p.duration) + 30, container)  # fmt: skip

    def plan(self, found: NodeLoad) -> list[str]:
        p = self.params
        return [
            f"load {found.node.ref}: up to {_mi(found.load)} = allocatable {_mi(found.allocatable)} minus "
            f"{_mi(found.requested)} requested by its pods, plus headroom {p.headroom}",
            f"create up to {found.steps} stress pods {found.namespace}/{found.prefix}-N (image {p.image}, "
            f"{p.step} each, request {STRESS_REQUEST}, no limit), one every {p.step_every:g}s, stopping "
            "as soon as the node reports MemoryPressure",
            f"revert: delete the stress pods and the pods evicted in {found.namespace} on {found.node.name}, "
            "then wait for MemoryPressure=False",
        ]

    def inject(self, found: NodeLoad, undo: Undo) -> None:
        p, kube, stop, ns = self.params, self.kube, self.ctx.stop, found.namespace
        handle = undo.register(self, NodeMemoryRecord(ns, found.node.name, evicted_before=found.evicted_before))
        made, pressure = 0, False
        for i in range(found.steps):
            node = kube.get_node(found.node.name)
            pressure = node is not None and node.memory_pressure
            if pressure or stop.interrupts():
                break
            name = f"{found.prefix}-{i}"
            handle.extend(pods=(name,))
            with contextlib.suppress(Conflict):  # a retried create that had succeeded
                kube.create_pod(ns, self.manifest(found, i))
            made += 1
            if made == 1:
                self.ctx.harm_started()
            if stop.sleep(p.step_every):
                break
        self.check_stop()
        if not pressure:
            pressure = bool(
                wait_until(
                    lambda: (n := kube.get_node(found.node.name)) is not None and n.memory_pressure,
                    time.monotonic() + p.wait,
                    1.0,
                    stop,
                )
            )
            self.check_stop()
        step = quantity_bytes(p.step)
        held = min(found.load, made * step)
        if not pressure:
            raise DrillkitError(
                f"{self.kind}: node {found.node.name} reported no MemoryPressure within {p.wait:g}s of "
                f"{made} stress pod(s) holding {_mi(held)}; its eviction threshold may be lower than the load"
            )
        note(self.ctx, "memory_pressure", fault=self.kind, node=found.node.name, stress_pods=made, bytes=held)
        self.ctx.log(f"node-memory-pressure: {found.node.name} reports MemoryPressure after {made} stress pod(s)")

    @classmethod
    def revert(cls, ctx: RevertContext, record: NodeMemoryRecord) -> dict[str, Any]:
        kube, ns = ctx.kube, record.namespace
        deleted = [name for name in record.pods if kube.delete_pod(ns, name, grace_period=0)]
        stress = set(record.pods)
        evicted = [
            x.name
            for x in kube.list_pods(ns, field_selector=f"spec.nodeName={record.node}")
            if _evicted(x) and x.uid not in record.evicted_before and x.name not in stress
        ]
        for name in evicted:
            kube.delete_pod(ns, name)
        relieved = wait_until(
            lambda: (n := kube.get_node(record.node)) is None or not n.memory_pressure,
            time.monotonic() + RELIEF_TIMEOUT,
            2.0,
            ctx.stop,
        )
        if not relieved:
            raise DrillkitError(
                f"node-memory-pressure revert: node {record.node} still reports MemoryPressure "
                f"{RELIEF_TIMEOUT:g}s after its stress pods were deleted"
            )
        return {"deleted": deleted, "evicted_deleted": evicted, "memory_pressure": False}


def _evicted(pod: Pod) -> bool:
    return pod.phase == "Failed" and pod.reason == "Evicted"


def _mi(n: int) -> str:
    return f"{n / 2**20:.0f}Mi"
