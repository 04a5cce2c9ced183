"""node-drain: cordon a node and evict its pods, as `kubectl drain` does (the lost-node incident).

Why it exists apart: it is the one fault acting on a cluster-scoped object. Evictions go through
policy/v1 so PodDisruptionBudgets are respected; they run in parallel, each retried until its
own `evict_timeout`, then reported. An eviction is a graceful delete, so the evicted pods are
waited for until they are gone from the node (as `kubectl drain` waits). Like `kubectl drain`,
it refuses pods no controller brings back and pods with emptyDir data unless the scenario says
`force: true` (both are lost for good), and it leaves alone the namespaces a scenario protects
(`protect_namespaces`: the monitoring the drill's own detection needs). The node is marked
`drillkit.io/cordoned-by` so cleanup finds it without a journal, and only a node drillkit
cordoned is ever uncordoned: not if on-call cordoned it again during the drill (another field
manager then owns `spec.unschedulable`).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, ClassVar

from drillkit.errors import PreflightError
from drillkit.faults import RevertContext, Undo
from drillkit.faults.kube.base import KubeFault, check_selector, note
from drillkit.kube import PROTECTED_NAMESPACES, Node, Pod
from drillkit.model import Duration, doc
from drillkit.signals import wait_until


@dataclass(frozen=True)
class NodeDrainParams:
    node: str | None = doc("node to drain", default=None)
    pod_selector: str | None = doc("drain the node running a pod matching this label selector", default=None)
    evict_timeout: Duration = doc(
        "how long each eviction blocked by a PodDisruptionBudget is retried (seconds, per pod)", default=120.0
    )
    force: bool = doc(
        "also evict pods no controller recreates and pods with emptyDir data (both lost for good), "
        "like `kubectl drain --force --delete-emptydir-data`",
        default=False,
    )
    protect_namespaces: tuple[str, ...] = doc(
        "namespaces whose pods are never evicted, e.g. the monitoring the drill's detection needs", default=()
    )
    parallel: int = doc("evictions in flight at once", default=8)
    namespace: str | None = doc("namespace of pod_selector (default: the scenario's)", default=None)

    def __post_init__(self) -> None:
        if (self.node is None) == (self.pod_selector is None):
            raise ValueError("expected exactly one of `node` or `pod_selector`")
        check_selector("pod_selector", self.pod_selector)
        if not 1 <= self.parallel <= 64:
            raise ValueError("parallel: expected 1..64")


@dataclass(frozen=True)
class Skipped:
    pod: Pod
    why: str  # mirror pod, DaemonSet, finished, terminating, protected namespace


@dataclass(frozen=True)
class Drain:
    """What preflight found: the node, the pods to evict and those a drain leaves alone."""

    node: Node
    evict: tuple[Pod, ...]
    skipped: tuple[Skipped, ...]


@dataclass(frozen=True)
class DrainRecord:
    """How to undo a node-drain: the node to uncordon (evicted pods stay where they went)."""

    node: str


class NodeDrain(KubeFault[NodeDrainParams, Drain, DrainRecord]):
    """Cordon a node and evict its pods (PodDisruptionBudgets respected); revert uncordons."""

    kind = "node-drain"
    Params = NodeDrainParams
    Record: ClassVar[type] = DrainRecord
    params: NodeDrainParams

    def preflight(self) -> Drain:
        p, kube = self.params, self.kube
        name = p.node
        if p.pod_selector:
            ns = self.namespace
            self.guard_namespace(ns)
            pods = sorted(
                (x for x in kube.list_pods(ns, p.pod_selector) if x.node and not x.terminating), key=lambda x: x.name
            )
            if not pods:
                raise PreflightError(f"{self.kind}: no scheduled pod in {ns} matches {p.pod_selector!r}")
            name = pods[0].node
        nodes = kube.list_nodes()
        node = next((n for n in nodes if n.name == name), None)
        if node is None:
            raise PreflightError(f"{self.kind}: node {name!r} not found")
        if node.unschedulable:
            raise PreflightError(
                f"{self.kind}: node {node.name} is already cordoned; uncordon it first "
                "(drillkit only uncordons what it cordoned)"
            )
        self.check_blast("nodes", 1, len(nodes))
        evict, skipped, lost = [], [], []
        for pod in kube.list_pods(None, field_selector=f"spec.nodeName={node.name}"):
            why = self._skip(pod)
            if why:
                skipped.append(Skipped(pod, why))
                continue
            evict.append(pod)
            if pod.controller is None:
                lost.append(f"{pod.ref} (no controller recreates it)")
            elif pod.empty_dirs:
                lost.append(f"{pod.ref} (emptyDir {', '.join(pod.empty_dirs)})")
        if lost and not p.force:
            raise PreflightError(
                f"{self.kind}: draining {node.name} would lose for good: {'; '.join(lost)}. "
                "Set `force: true` to evict them anyway (like kubectl drain --force "
                "--delete-emptydir-data), or drain another node"
            )
        return Drain(node, tuple(evict), tuple(skipped))

    def _skip(self, pod: Pod) -> str:
        """Why a drain leaves `pod` alone ("" if it evicts it)."""
        if pod.mirror:
            return "mirror pod"
        if pod.controller and pod.controller.kind == "DaemonSet":
            return "DaemonSet"
        if pod.phase in ("Succeeded", "Failed"):
            return "finished"
        if pod.terminating:
            return "terminating"
        allowed = self.ctx.scenario.guardrails.allow_namespaces
        if pod.namespace in PROTECTED_NAMESPACES and pod.namespace not in allowed:
            return "protected namespace"
        if pod.namespace in self.params.protect_namespaces:
            return "namespace protected by the scenario (protect_namespaces)"
        return ""

    def plan(self, found: Drain) -> list[str]:
        return [
            f"cordon {found.node.ref}",
            *(
                f"evict {p.ref} (policy/v1 Eviction, PodDisruptionBudgets respected)"
                + (" - no controller recreates it: lost" if p.controller is None else "")
                + (f" - emptyDir data lost: {', '.join(p.empty_dirs)}" if p.empty_dirs else "")
                for p in found.evict
            ),
            *(f"skip {s.pod.ref}: {s.why}" for s in found.skipped),
            f"revert: uncordon {found.node.name} (evicted pods stay where they were rescheduled)",
        ]

    def inject(self, found: Drain, undo: Undo) -> None:
        node, kube, stop = found.node, self.kube, self.ctx.stop
        undo.register(self, DrainRecord(node.name))
        kube.cordon(node.name, self.ctx.run_id)
        timeout, harm = self.params.evict_timeout, threading.Lock()

        def evict(p: Pod) -> str:  # each pod gets its own deadline; a stop ends them all
            if stop.is_set():
                return "not evicted: the drill is stopping"
            outcome = kube.evict(p.namespace, p.name, time.monotonic() + timeout, stop)
            if outcome == "evicted":
                with harm:
                    self.ctx.harm_started()
            return outcome

        from concurrent.futures import ThreadPoolExecutor  # here: validating never needs threads

        with ThreadPoolExecutor(max_workers=min(self.params.parallel, max(1, len(found.evict)))) as pool:
            outcomes = list(pool.map(evict, found.evict))
        results = {f"{p.namespace}/{p.name}": r for p, r in zip(found.evict, outcomes, strict=True)}
        blocked = {k: v for k, v in results.items() if v not in ("evicted", "gone")}
        evicted = {p.uid for p, r in zip(found.evict, outcomes, strict=True) if r == "evicted"}
        terminating = self._wait_gone(node.name, evicted) if evicted and not stop.is_set() else []
        extra: dict[str, Any] = {"stopped": True} if stop.is_set() else {}
        if terminating:
            extra["terminating"] = terminating
            self.ctx.log(f"node-drain: evicted pod(s) still terminating on {node.name}: {', '.join(terminating)}")
        note(
            self.ctx,
            "drain_result",
            fault=self.kind,
            node=node.name,
            evicted=sorted(k for k, v in results.items() if v == "evicted"),
            blocked=blocked,
            **extra,
        )
        if blocked:
            self.ctx.log(
                f"node-drain: {len(blocked)} pod(s) could not be evicted within "
                f"{self.params.evict_timeout:g}s: {'; '.join(f'{k}: {v}' for k, v in blocked.items())}"
            )

    def _wait_gone(self, node: str, uids: set[str]) -> list[str]:
        """The evicted pods (`uids`) still on `node` after waiting. A policy/v1 eviction is a
        graceful delete: the pod stays, Terminating, for its grace period. Like `kubectl drain`,
        wait until they are gone (their grace period + 30 s, at most 330 s), so the drill goes
        on, and the revert uncordons, only once their replacements were placed elsewhere (a
        StatefulSet recreates its pod only when the old one is gone)."""
        start, left = time.monotonic(), list[str]()

        def gone() -> bool:
            pods = [p for p in self.kube.list_pods(None, field_selector=f"spec.nodeName={node}") if p.uid in uids]
            grace = max((30 if p.deletion_grace is None else p.deletion_grace for p in pods), default=0)
            left[:] = sorted(f"{p.namespace}/{p.name}" for p in pods)
            return not pods or time.monotonic() - start > min(grace + 30, 330)

        wait_until(gone, start + 330, 0.5, self.ctx.stop)
        return left

    @classmethod
    def revert(cls, ctx: RevertContext, record: DrainRecord) -> dict[str, Any]:
        other = ctx.kube.cordoned_by_other(record.node)
        if other is not None:  # on-call uncordoned it and cordoned it again: theirs wins
            ctx.kube.uncordon(record.node, keep_cordoned=True)
            return {
                "uncordoned": False,
                "changed during the drill": f"node {record.node} was cordoned again by {other}; left cordoned",
            }
        return {"uncordoned": ctx.kube.uncordon(record.node)}
