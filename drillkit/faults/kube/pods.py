"""pod-kill: delete pods matching a selector, once or repeatedly (the crash-loop incident).

Why it exists apart: it is the only fault whose harm the cluster undoes by itself (the owner
recreates the pods); drillkit watches that recovery, and re-creates only owner-less pods, from
the manifest it journalled before deleting them.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

from drillkit.errors import DrillkitError, PreflightError
from drillkit.faults import RevertContext, RevertHandle, Undo
from drillkit.faults.kube.base import (
    STOP_TIMEOUT,
    Background,
    KubeFault,
    Pick,
    check_selector,
    note,
    private_journal,
)
from drillkit.kube import Conflict, KubeError, Owner, Pod, workload_kind
from drillkit.model import Count, Duration, doc
from drillkit.signals import wait_until


@dataclass(frozen=True)
class PodKillParams:
    selector: str = doc("label selector of the pods, e.g. app=chatbot-api")
    field_selector: str | None = doc("field selector, e.g. spec.nodeName=kind-drillkit-worker", default=None)
    count: Count = doc("how many matching pods to delete (count or %)", default=Count(1))
    pick: Pick = doc("which pods: random or oldest", default=Pick.RANDOM)
    grace_period: Duration | None = doc("seconds the pods get to stop (default: their own)", default=None)
    repeat_every: Duration | None = doc("kill again at this interval (needs duration)", default=None)
    duration: Duration | None = doc("how long to keep killing when repeat_every is set", default=None)
    recovery_timeout: Duration = doc("how long to watch the owner bring replicas back", default=120.0)
    namespace: str | None = doc("namespace (default: the scenario's target namespace)", default=None)

    def __post_init__(self) -> None:
        check_selector("selector", self.selector)
        if (self.repeat_every is None) != (self.duration is None):
            raise ValueError("repeat_every and duration go together: set both or neither")
        if self.repeat_every is not None and self.repeat_every <= 0:
            raise ValueError("repeat_every: expected a positive duration")


@dataclass(frozen=True)
class Victim:
    pod: Pod
    owner: Owner | None  # the controller that recreates it; None: the revert does


@dataclass(frozen=True)
class Victims:
    """What preflight found: the first pods to delete, with their owners."""

    namespace: str
    victims: tuple[Victim, ...]


@dataclass(frozen=True)
class KilledPod:
    """One deleted pod, journalled before the delete."""

    name: str
    uid: str
    owner: str | None = None  # e.g. deployment/chatbot-api
    manifest: dict[str, Any] | None = None  # owner-less pods: what the revert re-creates


@dataclass(frozen=True)
class PodKillRecord:
    """How to undo a pod-kill: re-create owner-less pods, stop the repeat loop and watchers."""

    namespace: str
    recovery_timeout: float
    killed: tuple[KilledPod, ...] = ()
    background: str | None = None  # this process's repeat loop and watchers (Background token)


class PodKill(KubeFault[PodKillParams, Victims, PodKillRecord]):
    """Delete pods matching a selector; their owner (Deployment, StatefulSet) recreates them."""

    kind = "pod-kill"
    Params = PodKillParams
    Record: ClassVar[type] = PodKillRecord
    params: PodKillParams

    def preflight(self) -> Victims:
        p, ns = self.params, self.namespace
        pods = self.resolve_pods(ns, p.selector, p.field_selector, p.count, p.pick)
        victims = tuple(Victim(v, self.kube.owner_of(v)) for v in pods)
        for v in victims:
            if v.owner is None:
                self._recreatable(v.pod)
        return Victims(ns, victims)

    def _recreatable(self, pod: Pod) -> None:
        """Refuse an owner-less pod the revert could not bring back: ask the apiserver (a dry
        run) whether it would admit the pod's manifest as this account, e.g. under drillkit's
        admission policy, which refuses foreign images and ServiceAccounts. The pod exists, so
        an admitted dry run ends in 409 AlreadyExists: admission runs before that check."""
        try:
            self.kube.create_pod(pod.namespace, self.kube.pod_manifest(pod.namespace, pod.name), dry_run=True)
        except Conflict:
            return
        except KubeError as exc:
            if exc.status not in (400, 403, 422):
                raise
            raise PreflightError(
                f"{self.kind}: {pod.ref} has no owner, so the revert would re-create it, but the "
                f"apiserver refuses that ({exc}); it would be lost for good. Target pods with an "
                "owner, or run this drill as an account the policy allows"
            ) from None

    def plan(self, found: Victims) -> list[str]:
        p = self.params
        grace = "" if p.grace_period is None else f", grace period {p.grace_period:g}s"
        lines = []
        for v in found.victims:
            back = f"owner {v.owner} recreates it" if v.owner else "no owner: the revert re-creates it"
            lines.append(f"delete {v.pod.ref} on node {v.pod.node or '?'}{grace}; {back}")
        if p.repeat_every:
            lines.append(f"repeat: {p.count} matching pod(s) every {p.repeat_every:g}s for {p.duration:g}s")
        return lines

    def inject(self, found: Victims, undo: Undo) -> None:
        p, ns = self.params, found.namespace
        bg = Background(self.ctx.stop.child())
        handle = undo.register(self, PodKillRecord(ns, p.recovery_timeout, background=bg.token))
        owners = {v.pod.uid: v.owner for v in found.victims}
        kill = _Killer(self, ns, handle, bg, owners)
        kill([v.pod for v in found.victims])
        names = [v.pod.name for v in found.victims]
        more = f" and {len(names) - 10} more" if len(names) > 10 else ""
        self.ctx.log(f"pod-kill: deleted {len(names)} pod(s): {', '.join(names[:10])}{more}")
        since = time.monotonic()
        for owner in {o for o in owners.values() if o}:
            bg.start(self._watch_owner, ns, owner, set(owners), since, bg)
        if p.repeat_every and p.duration:
            bg.start(self._repeat, ns, kill, bg)

    def _watch_owner(self, ns: str, owner: Owner, killed: set[str], since: float, bg: Background) -> None:
        """Journal how long the owner took to have all its replicas Ready again."""
        if owner.kind not in ("Deployment", "StatefulSet"):
            return
        timeout = self.params.recovery_timeout
        try:
            w = self.kube.get_workload(owner.kind, ns, owner.name)
            if w is None:
                return

            def back(pods: list[Pod]) -> bool:
                ready = [x for x in pods if x.ready and not x.terminating and x.uid not in killed]
                return len(ready) >= w.replicas

            ok = self.kube.wait_pods(ns, w.selector, back, timeout, bg.stop)
        except DrillkitError as exc:
            note(self.ctx, "note", fault=self.kind, text=f"could not watch {owner}: {exc}")
            return
        if ok:
            seconds = round(time.monotonic() - since, 3)
            note(self.ctx, "replicas_restored", fault=self.kind, owner=str(owner), replicas=w.replicas, seconds=seconds)
            self.ctx.log(f"pod-kill: {owner} had {w.replicas} Ready replicas again after {seconds:g}s")
        elif not bg.stop.is_set():
            note(self.ctx, "replicas_not_restored", fault=self.kind, owner=str(owner), within=timeout)

    def _repeat(self, ns: str, kill: _Killer, bg: Background) -> None:
        """Kill again every `repeat_every` s until `duration` has passed or the flag is raised."""
        p = self.params
        assert p.repeat_every is not None and p.duration is not None

        def again() -> bool:
            try:
                pods = self.resolve_pods(ns, p.selector, p.field_selector, p.count, p.pick)
                kill(list(pods))
                note(self.ctx, "note", fault=self.kind, text=f"repeat: deleted {', '.join(x.name for x in pods)}")
            except DrillkitError as exc:
                note(self.ctx, "note", fault=self.kind, text=f"repeat kill skipped: {exc}")
            return False  # never done: the deadline or the stop flag ends the loop

        end = time.monotonic() + p.duration
        if not bg.stop.sleep(p.repeat_every) and time.monotonic() < end:
            wait_until(again, end, p.repeat_every, bg.stop)

    @classmethod
    def revert(cls, ctx: RevertContext, record: PodKillRecord) -> dict[str, Any]:
        # Stop the repeat loop and the watchers for real first: a kill still in progress would
        # delete pods (and journal them) after this revert reports done.
        if not Background.finish(record.background, STOP_TIMEOUT):
            raise DrillkitError(
                f"pod-kill revert: the background kill loop did not stop within "
                f"{STOP_TIMEOUT:g}s; run `drillkit cleanup` once this process ends"
            )
        kube, ns = ctx.kube, record.namespace
        recreated, owners = [], set()
        for entry in record.killed:
            if entry.owner:
                owners.add(entry.owner)
                continue
            if not entry.manifest:
                continue
            pod = kube.get_pod(ns, entry.name)
            if pod is not None and pod.terminating:  # still in its grace period: wait it out
                timeout = min(float(pod.deletion_grace if pod.deletion_grace is not None else 30) + 30, 330.0)
                if not kube.wait_pod_gone(ns, pod.name, pod.uid, timeout, ctx.stop):
                    raise DrillkitError(
                        f"pod-kill revert: pod {ns}/{pod.name} (uid {pod.uid}) still terminating "
                        f"after {timeout:g}s; it is re-created from the journal once it is gone "
                        "(run `drillkit cleanup`)"
                    )
                pod = kube.get_pod(ns, entry.name)
            if pod is None:
                with contextlib.suppress(Conflict):
                    kube.create_pod(ns, entry.manifest)
                recreated.append(entry.name)
        ready = {}
        for owner in sorted(owners):
            kind, _, name = owner.partition("/")
            if kind in ("deployment", "statefulset"):
                ready[owner] = kube.wait_workload_ready(
                    workload_kind(kind), ns, name, min(record.recovery_timeout, 60.0), ctx.stop
                )
        return {"recreated": recreated, "owners_ready": ready}


class _Killer:
    """Journal, then delete: each victim is in the revert record before its delete is sent.

    Victims are journalled a chunk at a time, ahead of their deletes (FIRST_CHUNK, doubling up
    to MAX_CHUNK): the first delete goes out after one small journal line, not after the whole
    batch's (5,000 pods were 0.8 s of journalling before any harm), while the lines stay few.
    Once the revert has raised the background flag nothing more is journalled or deleted; the
    revert waits for a kill in progress before it reports done, so no `revert_updated` can
    follow `revert_done`."""

    FIRST_CHUNK = 16  # what the delete workers take at once (MAX_IN_FLIGHT)
    MAX_CHUNK = 1024

    def __init__(
        self,
        fault: PodKill,
        namespace: str,
        handle: RevertHandle[PodKillRecord],
        bg: Background,
        owners: dict[str, Owner | None],
    ) -> None:
        self.fault, self.namespace, self.handle, self.bg, self.owners = fault, namespace, handle, bg, owners
        self.lock = threading.Lock()

    def __call__(self, pods: list[Pod]) -> None:
        """Delete `pods` a bounded number at a time, each journalled (as the new victims of a
        `revert_updated` event) before its delete is sent: `injected` is stamped when the first
        delete is accepted."""
        kube, p = self.fault.kube, self.fault.params
        grace = None if p.grace_period is None else int(p.grace_period)
        started = threading.Event()

        def delete(victim: KilledPod) -> None:
            kube.delete_pod(self.namespace, victim.name, uid=victim.uid, grace_period=grace)
            if not started.is_set():
                started.set()
                self.fault.ctx.harm_started()

        kube.concurrently(delete, self._journalled(pods), self.bg.stop)

    def _journalled(self, pods: list[Pod]) -> Iterator[KilledPod]:
        """The victims, each yielded only once its chunk is in the journal."""
        size, at = self.FIRST_CHUNK, 0
        while at < len(pods):
            chunk = self._victims(pods[at : at + size])
            with self.lock:
                if self.bg.stop.is_set() or not chunk:
                    return
                self.handle.extend(killed=tuple(chunk))  # journalled before any of its deletes
            yield from chunk
            at, size = at + size, min(size * 2, self.MAX_CHUNK)

    def _victims(self, pods: list[Pod]) -> list[KilledPod]:
        fault, kube, ns = self.fault, self.fault.kube, self.namespace
        out = []
        for pod in pods:
            if self.bg.stop.is_set():
                break
            # once per ReplicaSet (Kube.owner_of caches), not once per pod
            owner = self.owners.get(pod.uid) or (kube.owner_of(pod) if pod.controller else None)
            manifest = None
            if owner is None:  # nobody recreates it: the revert will, from this manifest
                private_journal(fault.ctx)
                manifest = kube.pod_manifest(ns, pod.name)
            out.append(KilledPod(pod.name, pod.uid, str(owner) if owner else None, manifest))
        return out
