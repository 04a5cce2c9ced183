"""Faults against a Kubernetes cluster, one per incident of the playbook.

Why one module: they share target resolution (label/field selectors, owners), the guardrails
(blast radius, protected namespaces) and the revert discipline: every fault registers its
revert with the journal *before* it changes anything, records what the revert needs (names,
previous replica counts, previous pod templates, backup object names — never secret values),
and reverts idempotently from that data alone (404 = already reverted), so `drillkit cleanup`
in another process can finish the job after a crash. Every object a fault creates carries
`drillkit.io/run-id=<run id>`. All cluster access goes through `drillkit.kube.Kube`.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import random
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar

from drillkit.errors import Aborted, DrillkitError, PreflightError
from drillkit.faults import Fault, FaultContext, Undo
from drillkit.kube import (
    BACKUP_OF,
    MODIFIED_BY,
    PROTECTED_NAMESPACES,
    REQUEST_TIMEOUT,
    RESTART,
    REVERT_FAULT,
    REVERT_OF,
    RUN_LABEL,
    Conflict,
    ExecFailed,
    Forbidden,
    Kube,
    KubeError,
    NotFound,
    Owner,
    Pod,
    StopFlag,
    Workload,
    workload_kind,
)
from drillkit.model import Count, Duration, doc

BACKUP_KEY = "drillkit.io/backup-key"
MEMORY_MARKER = "drillkit-memory-pressure"
CPU_MARKER = "drillkit-cpu-pressure"
STRESS_IMAGE = "ghcr.io/colinianking/stress-ng"
NETEM_IMAGE = "ghcr.io/nicolaka/netshoot:v0.13"

# Allocates 1 MiB at a time in a shell variable until the container's memory limit makes the
# kernel OOM-kill it: needs only a POSIX shell, `head` and `tr` (busybox has both).
MEMORY_COMMAND = "drillkit-memory-pressure=1; x=; while :; do x=\"$x$(head -c 1048576 /dev/zero | tr '\\0' x)\"; done"


def _killer(marker: str) -> str:
    """A POSIX script killing processes whose command line carries `marker`=1.

    The marker is spelt in two pieces so the script never matches (or triggers) itself.
    """
    head, tail = marker.rsplit("-", 1)
    return (
        f'm="{head}"; for p in /proc/[0-9]*; do '
        f'case "$(tr "\\000" " " < "$p/cmdline" 2>/dev/null)" in '
        f'*"$m-{tail}=1"*) kill -9 "${{p#/proc/}}" 2>/dev/null;; esac; done; true'
    )


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Pick(StrEnum):
    """Which matching pods a fault picks."""

    RANDOM = "random"
    OLDEST = "oldest"


class Mode(StrEnum):
    """Where pressure is applied: inside the target container, or on the target's node."""

    CONTAINER = "container"
    NODE = "node"


class DbEngine(StrEnum):
    POSTGRESQL = "postgresql"
    MYSQL = "mysql"


_QUANTITY = re.compile(r"\d+(\.\d+)?(Ki|Mi|Gi|Ti|k|M|G|T|m)?")
_SELECTOR = re.compile(r"[^\s,][^,]*(,[^\s,][^,]*)*")


def _check_selector(name: str, value: str | None) -> None:
    if value is not None and not _SELECTOR.fullmatch(value.strip()):
        raise ValueError(f"{name}: expected a selector like app=chatbot-api, got {value!r}")


def _parse_workload(text: str) -> tuple[str, str]:
    kind, sep, name = text.partition("/")
    if not sep or not name:
        raise ValueError(f"workload: expected deployment/NAME or statefulset/NAME, got {text!r}")
    return workload_kind(kind), name


# --- shared machinery -------------------------------------------------------------------------


READY_TIMEOUT = 60.0
"""How long a revert waits for a restored workload to be Ready again."""
STOP_TIMEOUT = REQUEST_TIMEOUT[0] + REQUEST_TIMEOUT[1] + 5.0
"""How long a revert waits for a fault's background threads to stop: long enough for the one
API call (a kill's delete, a watch chunk) each may be in the middle of."""


class _Background:
    """Threads a fault leaves running after inject (repeat kills, watchers, long execs).

    The revert stops and joins them; they live in this process only (a cleanup process has
    none, and needs none: everything they did is in the journal)."""

    registry: ClassVar[dict[str, _Background]] = {}

    def __init__(self) -> None:
        self.token = secrets.token_hex(6)
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        _Background.registry[self.token] = self

    def start(self, target: Any, *args: Any) -> None:
        t = threading.Thread(target=target, args=args, daemon=True, name=f"drillkit-{self.token}")
        self.threads.append(t)
        t.start()

    @classmethod
    def finish(cls, token: str | None, timeout: float = STOP_TIMEOUT) -> bool:
        """Tell the threads of `token` to stop and wait up to `timeout` s until they have.

        True once none is running (or this process never had any: a cleanup process). The
        entry stays registered until its threads are gone, so a later call waits again."""
        bg = cls.registry.get(token or "")
        if bg is None:
            return True
        bg.stop.set()
        deadline = time.monotonic() + timeout
        for t in bg.threads:
            t.join(max(0.0, deadline - time.monotonic()))
        if any(t.is_alive() for t in bg.threads):
            return False
        cls.registry.pop(token or "", None)
        return True


class _RevertStop:
    """The stop flag as waits inside a revert should see it.

    After SIGINT/SIGTERM the drill's flag is set for good (that is why it reverts), and the
    engine protects its reverts: a wait a revert needs in order to finish gives up only when a
    stop is requested outside that protection (`StopFlag.interrupts()`)."""

    def __init__(self, stop: Any) -> None:
        self.stop = stop

    def is_set(self) -> bool:
        interrupts = getattr(self.stop, "interrupts", None)
        return bool(interrupts()) if callable(interrupts) else bool(self.stop.is_set())


def _private_journal(ctx: FaultContext) -> None:
    """Make the journal readable by its owner only (mode 0600) before it records a pod
    template or manifest, which may hold inline `env[].value` credentials."""
    path = getattr(ctx.journal, "path", None)
    if path is None:
        return
    try:
        os.chmod(path, 0o600)
    except OSError as exc:
        ctx.log(f"warning: cannot make the journal {path} private (chmod 600): {exc}")


def _journal(ctx: FaultContext, kind: str, **data: Any) -> None:
    """Append from any thread; a journal closed under a late watcher is not an error."""
    with contextlib.suppress(ValueError):
        ctx.journal.append(kind, **data)


class KubeFault(Fault):
    """Shared parts: namespace, guardrails, pod targeting."""

    target = "kubernetes"

    @property
    def kube(self) -> Kube:
        return self.ctx.kube

    @property
    def namespace(self) -> str:
        own = getattr(self.params, "namespace", None)
        target = self.ctx.scenario.target.kubernetes
        ns = own or (target.namespace if target else None)
        if not ns:
            raise PreflightError(f"{self.kind}: no namespace: set target.kubernetes.namespace")
        return ns

    def guard_namespace(self, ns: str) -> None:
        """Protected namespaces are refused unless the scenario lists them explicitly."""
        if ns in PROTECTED_NAMESPACES and ns not in self.ctx.scenario.guardrails.allow_namespaces:
            raise PreflightError(
                f"{self.kind}: namespace {ns!r} is protected ({', '.join(PROTECTED_NAMESPACES)}); "
                f"list it in guardrails.allow_namespaces if this drill really targets it"
            )
        if not self.kube.namespace_exists(ns):
            raise PreflightError(f"{self.kind}: namespace {ns!r} does not exist (context {self.kube.context})")

    def check_blast(self, what: str, n: int, total: int) -> None:
        limit = self.ctx.scenario.guardrails.max_targets
        if n > limit.of(total):
            raise PreflightError(
                f"{self.kind}: {n} of {total} {what} exceed the blast radius "
                f"guardrails.max_targets = {limit} (at most {limit.of(total)}); "
                "narrow the selector, lower the count, or raise max_targets"
            )

    def resolve_pods(self, ns: str, selector: str, field_selector: str | None, count: Count, pick: Pick) -> list[Pod]:
        """The pods a fault will touch: a non-empty match, within the blast radius."""
        self.guard_namespace(ns)
        pods = [p for p in self.kube.list_pods(ns, selector, field_selector) if not p.terminating]
        where = f"selector {selector!r}" + (f" and field selector {field_selector!r}" if field_selector else "")
        if not pods:
            raise PreflightError(f"{self.kind}: no pod in namespace {ns} matches {where}")
        n = count.of(len(pods))
        if n > len(pods):
            raise PreflightError(f"{self.kind}: count {count} but only {len(pods)} pod(s) match {where}")
        self.check_blast(f"pods matching {where}", n, len(pods))
        if pick is Pick.OLDEST:
            return sorted(pods, key=lambda p: (p.created, p.name))[:n]
        return random.sample(pods, n)

    def pod_container(self, pod: Pod, name: str | None) -> str:
        c = pod.container(name)
        if c is None:
            raise PreflightError(
                f"{self.kind}: pod {pod.namespace}/{pod.name} has no container "
                f"{name!r} (containers: {', '.join(x.name for x in pod.containers)})"
            )
        return c.name

    def resolve_workload(self, ref: tuple[str, str]) -> Workload:
        ns = self.namespace
        self.guard_namespace(ns)
        w = self.kube.get_workload(ref[0], ns, ref[1])
        if w is None:
            raise PreflightError(f"{self.kind}: {ref[0]} {ns}/{ref[1]} not found (context {self.kube.context})")
        self.claimable(w)
        return w

    def claimable(self, w: Workload) -> None:
        """Refuse a workload another run changed and has not restored yet: a second drill would
        save the broken state as the one to restore. Checked in preflight and again at inject."""
        other = w.labels.get(MODIFIED_BY)
        if other and other != self.ctx.run_id:
            raise PreflightError(
                f"{self.kind}: {w.kind} {w.namespace}/{w.name} still awaits the revert "
                f"of run {other} (label {MODIFIED_BY}): run "
                f"`drillkit cleanup --run-id {other}` first"
            )

    def record(self, w: Workload, data: dict[str, Any]) -> None:
        """Keep this fault's revert data in the cluster too, for a cleanup that has lost the
        journal: a run-labelled Secret next to the workload (see `record_name`). An existing
        record is kept: it holds the state from before this run's first change."""
        body = json.dumps({"namespace": w.namespace, "kind": w.kind, "name": w.name, **data})
        try:
            self.kube.create_secret(
                w.namespace,
                record_name(self.ctx.run_id, w.kind, w.name, self.kind),
                {REVERT_KEY: base64.b64encode(body.encode()).decode()},
                labels={RUN_LABEL: self.ctx.run_id},
                annotations={REVERT_OF: f"{w.kind}/{w.name}", REVERT_FAULT: self.kind},
            )
        except Conflict:
            self.ctx.log(f"{self.kind}: {w.ref} already has a revert record of this run; kept")

    def pod_lines(self, pods: list[Pod]) -> list[str]:
        return [f"  - {p.ref} on node {p.node or '?'}" for p in pods]


# --- pod-kill ---------------------------------------------------------------------------------


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
        _check_selector("selector", self.selector)
        if (self.repeat_every is None) != (self.duration is None):
            raise ValueError("repeat_every and duration go together: set both or neither")
        if self.repeat_every is not None and self.repeat_every <= 0:
            raise ValueError("repeat_every: expected a positive duration")


class PodKill(KubeFault):
    """Delete pods matching a selector; their owner (Deployment, StatefulSet) recreates them."""

    kind = "pod-kill"
    Params = PodKillParams
    params: PodKillParams

    def preflight(self) -> None:
        p = self.params
        self.victims = self.resolve_pods(self.namespace, p.selector, p.field_selector, p.count, p.pick)
        self.owners = {v.uid: self.kube.owner_of(v) for v in self.victims}

    def plan(self) -> list[str]:
        grace = "" if self.params.grace_period is None else f", grace period {self.params.grace_period:g}s"
        lines = []
        for v in getattr(self, "victims", []):
            owner = self.owners.get(v.uid)
            back = f"owner {owner} recreates it" if owner else "no owner: the revert re-creates it"
            lines.append(f"delete {v.ref} on node {v.node or '?'}{grace}; {back}")
        if self.params.repeat_every:
            lines.append(
                f"repeat: {self.params.count} matching pod(s) every "
                f"{self.params.repeat_every:g}s for {self.params.duration:g}s"
            )
        return lines

    def inject(self, undo: Undo) -> None:
        p, ns = self.params, self.namespace
        bg = _Background()
        handle = undo.register(
            self.kind, namespace=ns, killed=[], background=bg.token, recovery_timeout=p.recovery_timeout
        )
        killed: list[dict[str, Any]] = []
        lock = threading.Lock()

        def kill(pods: list[Pod]) -> None:
            """Journal, then delete. Once the revert has set `bg.stop` nothing more is journalled
            or deleted; the revert waits for a kill in progress before it reports done, so no
            `revert_updated` can follow `revert_done`."""
            for pod in pods:
                if bg.stop.is_set():
                    return
                owner = self.owners.get(pod.uid) or (self.kube.owner_of(pod) if pod.controller else None)
                entry: dict[str, Any] = {"name": pod.name, "uid": pod.uid, "owner": str(owner) if owner else None}
                if owner is None:  # nobody recreates it: the revert will, from this manifest
                    _private_journal(self.ctx)
                    entry["manifest"] = self.kube.pod_manifest(ns, pod.name)
                with lock:
                    if bg.stop.is_set():
                        return
                    killed.append(entry)
                    handle.update(killed=list(killed))  # journalled before the delete
                grace = None if p.grace_period is None else int(p.grace_period)
                self.kube.delete_pod(ns, pod.name, uid=pod.uid, grace_period=grace)
                self.ctx.harm_started()

        kill(self.victims)
        self.ctx.log(f"pod-kill: deleted {', '.join(v.name for v in self.victims)}")
        for owner in {o for o in self.owners.values() if o}:
            bg.start(self._watch_owner, owner, {v.uid for v in self.victims}, time.monotonic(), bg)
        if p.repeat_every and p.duration:
            bg.start(self._repeat, kill, bg)

    def _watch_owner(self, owner: Owner, killed: set[str], since: float, bg: _Background) -> None:
        """Journal how long the owner took to have all its replicas Ready again."""
        ns = self.namespace
        if owner.kind not in ("Deployment", "StatefulSet"):
            return
        try:
            w = self.kube.get_workload(owner.kind, ns, owner.name)
            if w is None:
                return

            def back(pods: list[Pod]) -> bool:
                ready = [x for x in pods if x.ready and not x.terminating and x.uid not in killed]
                return len(ready) >= w.replicas

            ok = self.kube.wait_pods(ns, w.selector, back, self.params.recovery_timeout, _EventStop(bg.stop, self.ctx))
        except DrillkitError as exc:
            _journal(self.ctx, "note", fault=self.kind, text=f"could not watch {owner}: {exc}")
            return
        if ok:
            seconds = round(time.monotonic() - since, 3)
            _journal(
                self.ctx, "replicas_restored", fault=self.kind, owner=str(owner), replicas=w.replicas, seconds=seconds
            )
            self.ctx.log(f"pod-kill: {owner} had {w.replicas} Ready replicas again after {seconds:g}s")
        elif not bg.stop.is_set():
            _journal(
                self.ctx,
                "replicas_not_restored",
                fault=self.kind,
                owner=str(owner),
                within=self.params.recovery_timeout,
            )

    def _repeat(self, kill: Any, bg: _Background) -> None:
        p = self.params
        assert p.repeat_every is not None and p.duration is not None
        end = time.monotonic() + p.duration
        while not bg.stop.wait(p.repeat_every) and time.monotonic() < end and not self.ctx.stop.is_set():
            try:
                pods = self.resolve_pods(self.namespace, p.selector, p.field_selector, p.count, p.pick)
                kill(pods)
                _journal(self.ctx, "note", fault=self.kind, text=f"repeat: deleted {', '.join(x.name for x in pods)}")
            except DrillkitError as exc:
                _journal(self.ctx, "note", fault=self.kind, text=f"repeat kill skipped: {exc}")

    @classmethod
    def revert(cls, ctx: FaultContext, data: dict[str, Any]) -> dict[str, Any]:
        # Stop the repeat loop and the watchers for real first: a kill still in progress would
        # delete pods (and journal them) after this revert reports done.
        if not _Background.finish(data.get("background"), STOP_TIMEOUT):
            raise DrillkitError(
                f"pod-kill revert: the background kill loop did not stop within "
                f"{STOP_TIMEOUT:g}s; run `drillkit cleanup` once this process ends"
            )
        kube, ns = ctx.kube, data["namespace"]
        recreated, owners = [], set()
        for entry in data.get("killed", []):
            if entry.get("owner"):
                owners.add(entry["owner"])
                continue
            if not entry.get("manifest"):
                continue
            pod = kube.get_pod(ns, entry["name"])
            if pod is not None and pod.terminating:  # still in its grace period: wait it out
                timeout = min(float(pod.deletion_grace if pod.deletion_grace is not None else 30) + 30, 330.0)
                if not kube.wait_pod_gone(ns, pod.name, pod.uid, timeout, _RevertStop(ctx.stop)):
                    raise DrillkitError(
                        f"pod-kill revert: pod {ns}/{pod.name} (uid {pod.uid}) still terminating "
                        f"after {timeout:g}s; it is re-created from the journal once it is gone "
                        "(run `drillkit cleanup`)"
                    )
                pod = kube.get_pod(ns, entry["name"])
            if pod is None:
                with contextlib.suppress(Conflict):
                    kube.create_pod(ns, entry["manifest"])
                recreated.append(entry["name"])
        ready = {}
        for owner in sorted(owners):
            kind, _, name = owner.partition("/")
            if kind in ("deployment", "statefulset"):
                ready[owner] = kube.wait_workload_ready(
                    workload_kind(kind), ns, name, min(float(data.get("recovery_timeout", 60)), 60.0), ctx.stop
                )
        return {"recreated": recreated, "owners_ready": ready}


class _EventStop:
    """A StopFlag-like view: set when the drill stops or the fault's revert starts."""

    def __init__(self, event: threading.Event, ctx: FaultContext) -> None:
        self.event, self.ctx = event, ctx

    def is_set(self) -> bool:
        return self.event.is_set() or self.ctx.stop.is_set()


# --- scale-to-zero ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ScaleToZeroParams:
    workload: str = doc("deployment/NAME or statefulset/NAME")
    wait: Duration = doc("how long to wait for the pods to be gone (0: don't wait)", default=60.0)
    namespace: str | None = doc("namespace (default: the scenario's target namespace)", default=None)

    def __post_init__(self) -> None:
        _parse_workload(self.workload)

    @property
    def ref(self) -> tuple[str, str]:
        return _parse_workload(self.workload)


class ScaleToZero(KubeFault):
    """Scale a Deployment/StatefulSet to 0 replicas; the revert restores the exact count."""

    kind = "scale-to-zero"
    Params = ScaleToZeroParams
    params: ScaleToZeroParams

    def preflight(self) -> None:
        w = self.resolve_workload(self.params.ref)
        if w.replicas == 0:
            raise PreflightError(f"{self.kind}: {w.ref} already has 0 replicas")
        self.check_blast(
            f"replicas of {w.kind} {w.namespace}/{w.name} (scale-to-zero takes them all: set max_targets: 100%)",
            w.replicas,
            w.replicas,
        )
        self.workload = w
        self.pods = [p for p in self.kube.list_pods(w.namespace, w.selector) if not p.terminating]

    def plan(self) -> list[str]:
        w = getattr(self, "workload", None)
        if w is None:
            return []
        return [
            f"record the replica count in Secret {record_name(self.ctx.run_id, w.kind, w.name, self.kind)}"
            f" and label {w.ref} {MODIFIED_BY}={self.ctx.run_id}",
            f"scale {w.ref} from {w.replicas} to 0 replicas, deleting:",
            *self.pod_lines(self.pods),
            f"revert: scale back to {w.replicas}, delete the record and the label",
        ]

    def inject(self, undo: Undo) -> None:
        w = self.kube.get_workload(self.workload.kind, self.workload.namespace, self.workload.name)
        if w is None:
            raise PreflightError(f"{self.kind}: {self.workload.ref} disappeared")
        self.claimable(w)
        replicas = self.kube.get_replicas(w.kind, w.namespace, w.name)
        undo.register(self.kind, namespace=w.namespace, kind=w.kind, name=w.name, replicas=replicas)
        self.record(w, {"replicas": replicas})
        self.kube.label_workload(w.kind, w.namespace, w.name, {MODIFIED_BY: self.ctx.run_id})
        self.kube.scale(w.kind, w.namespace, w.name, 0)
        self.ctx.harm_started()
        if self.params.wait > 0:
            gone = self.kube.wait_pods(
                w.namespace,
                w.selector,
                lambda pods: not [p for p in pods if not p.terminating],
                self.params.wait,
                self.ctx.stop,
            )
            if not gone:
                self.ctx.log(f"scale-to-zero: pods of {w.ref} still running after {self.params.wait:g}s")

    @classmethod
    def revert(cls, ctx: FaultContext, data: dict[str, Any]) -> dict[str, Any]:
        return cls.restore(ctx.kube, data, ctx.stop, ctx.run_id)

    @classmethod
    def restore(cls, kube: Kube, data: dict[str, Any], stop: StopFlag | None, run_id: str) -> dict[str, Any]:
        """Scale back to the recorded count, then drop the in-cluster record."""
        ns, kind, name, replicas = data["namespace"], data["kind"], data["name"], int(data["replicas"])
        try:
            kube.scale(kind, ns, name, replicas)
        except NotFound:
            drop_record(kube, ns, kind, name, cls.kind, run_id)
            return {"gone": True}
        drop_record(kube, ns, kind, name, cls.kind, run_id)
        ready = kube.wait_workload_ready(kind, ns, name, 60.0, stop)
        return {"replicas": replicas, "ready": ready}


# --- bad-rollout ------------------------------------------------------------------------------


@dataclass(frozen=True)
class BadRolloutParams:
    workload: str = doc("deployment/NAME or statefulset/NAME")
    container: str | None = doc("container whose image is broken (default: the first)", default=None)
    tag: str | None = doc("image tag to roll out (default: drillkit-nonexistent-<run id>)", default=None)
    wait: Duration = doc("how long to wait for a new pod stuck pulling (0: don't wait)", default=60.0)
    namespace: str | None = doc("namespace (default: the scenario's target namespace)", default=None)

    def __post_init__(self) -> None:
        _parse_workload(self.workload)
        if self.tag is not None and not re.fullmatch(r"[\w][\w.-]{0,127}", self.tag):
            raise ValueError(f"tag: expected an image tag like broken-1, got {self.tag!r}")

    @property
    def ref(self) -> tuple[str, str]:
        return _parse_workload(self.workload)


def retag(image: str, tag: str) -> str:
    """`registry:5000/repo:1.2@sha256:...` -> `registry:5000/repo:<tag>`."""
    base = image.split("@", 1)[0]
    slash = base.rfind("/")
    colon = base.rfind(":")
    if colon > slash:
        base = base[:colon]
    return f"{base}:{tag}"


class BadRollout(KubeFault):
    """Roll out an image tag that does not exist; the revert restores the previous pod template."""

    kind = "bad-rollout"
    Params = BadRolloutParams
    params: BadRolloutParams

    def preflight(self) -> None:
        w = self.resolve_workload(self.params.ref)
        names = [c.name for c in w.containers]
        name = self.params.container or (names[0] if names else None)
        if name not in names:
            raise PreflightError(f"{self.kind}: {w.ref} has no container {name!r} (containers: {', '.join(names)})")
        self.workload, self.container = w, name
        image = next(c.image for c in w.containers if c.name == name)
        self.image_before = image
        self.image_after = retag(image, self.params.tag or f"drillkit-nonexistent-{self.ctx.run_id}")
        self.pods = [p for p in self.kube.list_pods(w.namespace, w.selector) if not p.terminating]

    def plan(self) -> list[str]:
        w = getattr(self, "workload", None)
        if w is None:
            return []
        return [
            f"record the pod template in Secret {record_name(self.ctx.run_id, w.kind, w.name, self.kind)}",
            f"set image of container {self.container} in {w.ref}: {self.image_before} -> "
            f"{self.image_after}, label it {MODIFIED_BY}={self.ctx.run_id}; pods to be replaced:",
            *self.pod_lines(self.pods),
            "revert: restore the previous pod template exactly, delete the record and the label",
        ]

    def inject(self, undo: Undo) -> None:
        w = self.kube.get_workload(self.workload.kind, self.workload.namespace, self.workload.name)
        if w is None:
            raise PreflightError(f"{self.kind}: {self.workload.ref} disappeared")
        self.claimable(w)
        _private_journal(self.ctx)  # the saved template may carry inline env values
        undo.register(
            self.kind,
            namespace=w.namespace,
            kind=w.kind,
            name=w.name,
            template=w.template,
            container=self.container,
            image=self.image_before,
        )
        self.record(w, {"template": w.template})  # a Secret: the template may hold inline credentials
        self.kube.patch_workload(
            w.kind,
            w.namespace,
            w.name,
            {  # one patch: the harm and its label
                "metadata": {"labels": {MODIFIED_BY: self.ctx.run_id}},
                "spec": {"template": {"spec": {"containers": [{"name": self.container, "image": self.image_after}]}}},
            },
        )
        self.ctx.harm_started()
        if self.params.wait > 0:

            def stuck(pods: list[Pod]) -> Pod | None:
                return next(
                    (p for p in pods for c in p.containers if c.image == self.image_after and not c.running), None
                )

            pod = self.kube.wait_pods(w.namespace, w.selector, stuck, self.params.wait, self.ctx.stop)
            if pod:
                _journal(self.ctx, "rollout_stuck", fault=self.kind, pod=pod.name, image=self.image_after)

    @classmethod
    def revert(cls, ctx: FaultContext, data: dict[str, Any]) -> dict[str, Any]:
        return cls.restore(ctx.kube, data, ctx.stop, ctx.run_id)

    @classmethod
    def restore(cls, kube: Kube, data: dict[str, Any], stop: StopFlag | None, run_id: str) -> dict[str, Any]:
        """Put the recorded template back exactly, drop the in-cluster record, wait for Ready."""
        ns, kind, name = data["namespace"], data["kind"], data["name"]
        timeout = float(data.get("ready_timeout", READY_TIMEOUT))  # not journalled: a test knob
        current = kube.get_workload(kind, ns, name)
        if current is None:
            drop_record(kube, ns, kind, name, cls.kind, run_id)
            return {"gone": True}
        if current.template != data["template"]:
            kube.replace_template(kind, ns, name, data["template"])
        drop_record(kube, ns, kind, name, cls.kind, run_id)
        if kind != "StatefulSet":
            ready = kube.wait_workload_ready(kind, ns, name, timeout, stop)
            return {"restored": True, "ready": ready}
        # A StatefulSet (OrderedReady) never replaces a pod stuck on the broken image by itself
        # once the template is back: delete the stuck pods so the controller recreates them.
        images = _template_images(data["template"])
        deleted = cls._delete_stuck(kube, ns, name, current.selector, images)
        if not kube.wait_workload_ready(kind, ns, name, timeout, _RevertStop(stop), images):
            raise DrillkitError(
                f"bad-rollout revert: template of StatefulSet {ns}/{name} restored, but it was "
                f"not Ready within {timeout:g}s (stuck pods deleted: {', '.join(deleted) or 'none'})"
            )
        return {"restored": True, "ready": True, "stuck_pods_deleted": deleted}

    @staticmethod
    def _delete_stuck(kube: Kube, ns: str, name: str, selector: str, images: dict[str, str]) -> list[str]:
        """Delete the StatefulSet's not-Ready pods running other images than the template's."""
        deleted = []
        for pod in kube.list_pods(ns, selector):
            ctrl = pod.controller
            if ctrl is None or ctrl.kind != "StatefulSet" or ctrl.name != name:
                continue
            if pod.ready or pod.terminating:
                continue
            broken = any(c.name in images and c.image != images[c.name] for c in pod.containers)
            if broken and kube.delete_pod(ns, pod.name, uid=pod.uid):
                deleted.append(pod.name)
        return deleted


# --- auth-secret-corruption ---------------------------------------------------------------------


@dataclass(frozen=True)
class AuthSecretParams:
    secret: str = doc("Secret holding the credential, e.g. chatbot-jwt")
    key: str = doc("key in the Secret to corrupt, e.g. jwt-secret")
    restart: tuple[str, ...] = doc(
        "workloads to restart (deployment/NAME); default: every Deployment/StatefulSet using it", default=()
    )
    namespace: str | None = doc("namespace (default: the scenario's target namespace)", default=None)

    def __post_init__(self) -> None:
        for w in self.restart:
            _parse_workload(w)


def _template_images(template: dict[str, Any]) -> dict[str, str]:
    """Container name -> image of a pod template."""
    return {
        str(c.get("name")): str(c.get("image"))
        for c in (template.get("spec") or {}).get("containers") or []
        if c.get("name")
    }


def backup_name(secret: str, run_id: str) -> str:
    return f"drillkit-backup-{secret}-{run_id}"[:253]


def restore_from_backup(kube: Kube, ns: str, backup: str, now: str) -> dict[str, Any]:
    """Put the backed-up key back into its Secret, restart its users, delete the backup.

    The order makes it safe to repeat after a crash at any point. Used by the revert and by
    `drillkit cleanup` (which finds backups by label without a journal).
    """
    ann = kube.secret_annotations(ns, backup)
    if ann is None:
        return {"restored": False, "reason": f"backup {ns}/{backup} not found (already restored)"}
    data = kube.secret_data(ns, backup) or {}
    secret, key = ann.get(BACKUP_OF), ann.get(BACKUP_KEY)
    if not secret or not key or key not in data:
        raise DrillkitError(
            f"backup Secret {ns}/{backup} lacks its {BACKUP_OF}/{BACKUP_KEY} annotations or data; restore by hand"
        )
    kube.set_secret_key(ns, secret, key, data[key])
    restarted = []
    for w in filter(None, (ann.get(RESTART) or "").split(",")):
        kind, name = _parse_workload(w)
        try:
            kube.restart_workload(kind, ns, name, now)
            restarted.append(w)
        except NotFound:
            pass
    kube.delete_secret(ns, backup)
    return {"restored": True, "secret": secret, "key": key, "restarted": restarted}


REVERT_KEY = "revert"
"""Data key of a revert-record Secret: the revert data as JSON."""
RECORDING_FAULTS = ("bad-rollout", "scale-to-zero")
"""Faults that change a workload in place and keep a revert record; cleanup restores in this
order (the template first: scaling a broken template back up would wait on stuck pods)."""


def record_name(run_id: str, kind: str, name: str, fault: str) -> str:
    """The revert-record Secret of `fault` on workload `kind/name` in this run (a fixed-length,
    valid name whatever the workload's name)."""
    digest = hashlib.sha256(f"{kind}/{name}/{fault}".encode()).hexdigest()[:10]
    return f"drillkit-revert-{run_id}-{digest}"


def drop_record(kube: Kube, ns: str, kind: str, name: str, fault: str, run_id: str) -> None:
    """After a restore: delete the fault's record, and the workload's label with the run's last
    record on it. Safe to repeat."""
    kube.delete_secret(ns, record_name(run_id, kind, name, fault))
    release_workload(kube, ns, kind, name, run_id)


def release_workload(kube: Kube, ns: str, kind: str, name: str, run_id: str) -> bool:
    """Remove the run's `drillkit.io/modified-by` label unless one of its records remains;
    whether the workload is free of it now."""
    if any(kube.secret_annotations(ns, record_name(run_id, kind, name, f)) is not None for f in RECORDING_FAULTS):
        return False
    w = kube.get_workload(kind, ns, name)
    if w is not None and w.labels.get(MODIFIED_BY) == run_id:
        kube.label_workload(kind, ns, name, {MODIFIED_BY: None})
    return True


def restore_recorded(kube: Kube, ns: str, record: str, run_id: str, stop: StopFlag | None) -> dict[str, Any]:
    """Restore a workload from its revert-record Secret (`drillkit cleanup` without a journal);
    the restore deletes the record."""
    ann = kube.secret_annotations(ns, record)
    if ann is None:
        return {"restored": False, "reason": f"record {ns}/{record} already gone"}
    fault = ann.get(REVERT_FAULT, "")
    try:
        data = json.loads(base64.b64decode((kube.secret_data(ns, record) or {})[REVERT_KEY]))
        restorers: dict[str, Callable[..., dict[str, Any]]] = {
            "scale-to-zero": ScaleToZero.restore,
            "bad-rollout": BadRollout.restore,
        }
        return {"workload": ann.get(REVERT_OF), **restorers[fault](kube, data, stop, run_id)}
    except (KeyError, ValueError, TypeError) as exc:
        raise DrillkitError(
            f"revert record Secret {ns}/{record} ({fault or 'no fault'}) is unreadable "
            f"({type(exc).__name__}: {exc}); restore {ann.get(REVERT_OF)} by hand"
        ) from None


class AuthSecretCorruption(KubeFault):
    """Replace a credential in a Secret and restart its users; the original waits in a backup
    Secret inside the cluster (never on disk, never in the journal)."""

    kind = "auth-secret-corruption"
    Params = AuthSecretParams
    params: AuthSecretParams

    def preflight(self) -> None:
        p, ns = self.params, self.namespace
        self.guard_namespace(ns)
        secret = self.kube.secret_keys(ns, p.secret)
        if secret is None:
            raise PreflightError(f"{self.kind}: Secret {ns}/{p.secret} not found")
        self.secret_ref, keys = secret
        if p.key not in keys:
            raise PreflightError(f"{self.kind}: Secret {ns}/{p.secret} has no key {p.key!r} (keys: {', '.join(keys)})")
        if p.restart:
            users = []
            for ref in map(_parse_workload, p.restart):
                w = self.kube.get_workload(ref[0], ns, ref[1])
                if w is None:
                    raise PreflightError(f"{self.kind}: {ref[0]} {ns}/{ref[1]} not found")
                users.append(w)
        else:
            users = [
                w
                for kind in ("Deployment", "StatefulSet")
                for w in self.kube.list_workloads(kind, ns)
                if w.mounts_secret(p.secret)
            ]
        self.users = users
        self.backup = backup_name(p.secret, self.ctx.run_id)

    def plan(self) -> list[str]:
        p, ns = self.params, self.namespace
        users = getattr(self, "users", [])
        lines = [
            f"copy key {p.key} of {getattr(self, 'secret_ref', p.secret)} into backup Secret "
            f"{ns}/{getattr(self, 'backup', '?')} (labelled {RUN_LABEL}={self.ctx.run_id})",
            f"replace key {p.key} of Secret {ns}/{p.secret} with a random value",
        ]
        lines += [f"restart {w.ref}" for w in users] or ["restart: no workload uses this Secret"]
        lines.append("revert: restore the key from the backup, restart again, delete the backup")
        return lines

    def inject(self, undo: Undo) -> None:
        p, ns, kube = self.params, self.namespace, self.kube
        restart = ",".join(f"{w.kind.lower()}/{w.name}" for w in self.users)
        undo.register(self.kind, namespace=ns, secret=p.secret, key=p.key, backup=self.backup, restart=restart)
        original = (kube.secret_data(ns, p.secret) or {}).get(p.key)
        if original is None:
            raise PreflightError(f"{self.kind}: key {p.key} vanished from Secret {ns}/{p.secret}")
        try:
            kube.create_secret(
                ns,
                self.backup,
                {p.key: original},
                labels={RUN_LABEL: self.ctx.run_id, "app.kubernetes.io/managed-by": "drillkit"},
                annotations={BACKUP_OF: p.secret, BACKUP_KEY: p.key, RESTART: restart},
            )
        except Conflict:  # a retried create that had succeeded: only fine if it is ours
            if (kube.secret_data(ns, self.backup) or {}).get(p.key) != original:
                raise
        corrupt = f"drillkit-corrupted-{secrets.token_hex(16)}"
        kube.set_secret_key(ns, p.secret, p.key, base64.b64encode(corrupt.encode()).decode())
        now = _now()
        for w in self.users:
            kube.restart_workload(w.kind, ns, w.name, now)
        self.ctx.harm_started()  # the restart that picks up the bad secret has begun
        self.ctx.log(f"auth-secret-corruption: {ns}/{p.secret}[{p.key}] replaced; restarted {restart or 'nothing'}")

    @classmethod
    def revert(cls, ctx: FaultContext, data: dict[str, Any]) -> dict[str, Any]:
        return restore_from_backup(ctx.kube, data["namespace"], data["backup"], _now())


# --- db-connection-exhaustion -------------------------------------------------------------------


@dataclass(frozen=True)
class DbConnectionParams:
    service: str = doc("Service of the database, e.g. chatbot-db")
    secret: str = doc("Secret with the database credentials (referenced, never read by drillkit)")
    engine: DbEngine = doc("postgresql or mysql", default=DbEngine.POSTGRESQL)
    port: int | None = doc("database port (default: the Service's first port)", default=None)
    connections: int = doc("idle connections to open and hold", default=100)
    user_key: str = doc("key of the user name in the Secret", default="username")
    password_key: str = doc("key of the password in the Secret", default="password")
    database: str | None = doc("database name (default: the client's default)", default=None)
    image: str | None = doc("client image (default: postgres:16 or mysql:8)", default=None)
    deadline: Duration | None = doc(
        "dead-man's switch: activeDeadlineSeconds of the Job (default: recovery.within + 2m)", default=None
    )
    wait: Duration = doc("how long to wait for the Job's pod to run (0: don't wait)", default=120.0)
    namespace: str | None = doc("namespace (default: the scenario's target namespace)", default=None)

    def __post_init__(self) -> None:
        if not 1 <= self.connections <= 10_000:
            raise ValueError("connections: expected 1..10000")
        if self.port is not None and not 0 < self.port < 65536:
            raise ValueError("port: expected 1..65535")


_PG_SCRIPT = (
    'n=0; while [ "$n" -lt "$DRILLKIT_CONNECTIONS" ]; do '
    '(sleep "$DRILLKIT_HOLD" | psql -q -v ON_ERROR_STOP=1 >/dev/null '
    '|| echo "drillkit: connection $n failed") & n=$((n+1)); done; '
    'echo "drillkit: $DRILLKIT_CONNECTIONS connections requested"; wait'
)
_MYSQL_SCRIPT = (
    'n=0; while [ "$n" -lt "$DRILLKIT_CONNECTIONS" ]; do '
    '(sleep "$DRILLKIT_HOLD" | mysql -h "$DRILLKIT_HOST" -P "$DRILLKIT_PORT" '
    '-u "$DRILLKIT_USER" ${DRILLKIT_DATABASE:+"$DRILLKIT_DATABASE"} >/dev/null '
    '|| echo "drillkit: connection $n failed") & n=$((n+1)); done; '
    'echo "drillkit: $DRILLKIT_CONNECTIONS connections requested"; wait'
)


class DbConnectionExhaustion(KubeFault):
    """A Job running the database's own client image holds N idle connections (credentials by
    secretKeyRef); activeDeadlineSeconds ends it even if drillkit dies."""

    kind = "db-connection-exhaustion"
    Params = DbConnectionParams
    params: DbConnectionParams

    def preflight(self) -> None:
        p, ns = self.params, self.namespace
        self.guard_namespace(ns)
        service = self.kube.service(ns, p.service)
        if service is None:
            raise PreflightError(f"{self.kind}: Service {ns}/{p.service} not found")
        self.service_ref, ports = service
        if p.port is None and not ports:
            raise PreflightError(f"{self.kind}: Service {ns}/{p.service} has no ports; set `port`")
        self.port = p.port or ports[0]
        secret = self.kube.secret_keys(ns, p.secret)
        if secret is None:
            raise PreflightError(f"{self.kind}: Secret {ns}/{p.secret} not found")
        self.secret_ref, keys = secret
        missing = [k for k in (p.user_key, p.password_key) if k not in keys]
        if missing:
            raise PreflightError(
                f"{self.kind}: Secret {ns}/{p.secret} has no key {', '.join(missing)} (keys: {', '.join(keys)})"
            )
        self.deadline = int(p.deadline if p.deadline is not None else self.ctx.scenario.recovery.within + 120)
        self.job = f"drillkit-dbconn-{self.ctx.run_id}-{secrets.token_hex(2)}"
        self.image = p.image or ("postgres:16" if p.engine is DbEngine.POSTGRESQL else "mysql:8")

    def plan(self) -> list[str]:
        p, ns = self.params, self.namespace
        return [
            f"create Job {ns}/{getattr(self, 'job', '?')} (image {getattr(self, 'image', '?')}, "
            f"labelled {RUN_LABEL}={self.ctx.run_id}) holding {p.connections} idle {p.engine} "
            f"connections to {getattr(self, 'service_ref', p.service)} port "
            f"{getattr(self, 'port', '?')}",
            f"credentials by reference: {getattr(self, 'secret_ref', p.secret)} keys "
            f"{p.user_key}/{p.password_key} (secretKeyRef; drillkit never reads the values)",
            f"dead-man's switch: activeDeadlineSeconds {getattr(self, 'deadline', '?')}",
            "revert: delete the Job and its pods (propagation Background)",
        ]

    def manifest(self) -> dict[str, Any]:
        p, ns, run = self.params, self.namespace, self.ctx.run_id
        labels = {
            RUN_LABEL: run,
            "app.kubernetes.io/managed-by": "drillkit",
            "app.kubernetes.io/name": "drillkit-db-connections",
        }

        def ref(name: str, key: str) -> dict[str, Any]:
            return {"name": name, "valueFrom": {"secretKeyRef": {"name": p.secret, "key": key}}}

        common = [
            {"name": "DRILLKIT_CONNECTIONS", "value": str(p.connections)},
            {"name": "DRILLKIT_HOLD", "value": str(self.deadline)},
        ]
        if p.engine is DbEngine.POSTGRESQL:
            env = [
                *common,
                {"name": "PGHOST", "value": p.service},
                {"name": "PGPORT", "value": str(self.port)},
                {"name": "PGCONNECT_TIMEOUT", "value": "10"},
                {"name": "PGAPPNAME", "value": "drillkit-connection-exhaustion"},
                ref("PGUSER", p.user_key),
                ref("PGPASSWORD", p.password_key),
            ]
            if p.database:
                env.append({"name": "PGDATABASE", "value": p.database})
            script = _PG_SCRIPT
        else:
            env = [
                *common,
                {"name": "DRILLKIT_HOST", "value": p.service},
                {"name": "DRILLKIT_PORT", "value": str(self.port)},
                ref("DRILLKIT_USER", p.user_key),
                ref("MYSQL_PWD", p.password_key),
            ]
            if p.database:
                env.append({"name": "DRILLKIT_DATABASE", "value": p.database})
            script = _MYSQL_SCRIPT
        return {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": self.job, "namespace": ns, "labels": labels},
            "spec": {
                "backoffLimit": 0,
                "activeDeadlineSeconds": self.deadline,
                "ttlSecondsAfterFinished": 300,
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "restartPolicy": "Never",
                        "terminationGracePeriodSeconds": 0,
                        "containers": [
                            {
                                "name": "connections",
                                "image": self.image,
                                "command": ["sh", "-c", script],
                                "env": env,
                                "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}},
                            }
                        ],
                    },
                },
            },
        }

    def inject(self, undo: Undo) -> None:
        ns = self.namespace
        undo.register(self.kind, namespace=ns, job=self.job)
        with contextlib.suppress(Conflict):  # a retried create that had succeeded
            self.kube.create_job(ns, self.manifest())
        if self.params.wait > 0:
            running = self.kube.wait_pods(
                ns,
                f"job-name={self.job}",
                lambda pods: next((p for p in pods if p.containers and p.containers[0].running), None),
                self.params.wait,
                self.ctx.stop,
            )
            if running is None:
                raise DrillkitError(
                    f"{self.kind}: the pod of Job {ns}/{self.job} did not start "
                    f"within {self.params.wait:g}s (image {self.image} pulled?)"
                )
            _journal(
                self.ctx,
                "note",
                fault=self.kind,
                text=f"Job {ns}/{self.job} pod {running.name} running on {running.node}",
            )
        self.ctx.harm_started()  # the client pod holds the connections from here

    @classmethod
    def revert(cls, ctx: FaultContext, data: dict[str, Any]) -> dict[str, Any]:
        kube, ns, job = ctx.kube, data["namespace"], data["job"]
        deleted = kube.delete_job(ns, job)
        pods = 0
        for pod in kube.list_pods(ns, f"job-name={job}"):  # don't wait for the GC
            pods += kube.delete_pod(ns, pod.name, grace_period=0)
        return {"deleted": deleted, "pods_deleted": pods}


# --- node-drain ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeDrainParams:
    node: str | None = doc("node to drain", default=None)
    pod_selector: str | None = doc("drain the node running a pod matching this label selector", default=None)
    evict_timeout: Duration = doc("how long evictions blocked by PodDisruptionBudgets are retried", default=120.0)
    namespace: str | None = doc("namespace of pod_selector (default: the scenario's)", default=None)

    def __post_init__(self) -> None:
        if (self.node is None) == (self.pod_selector is None):
            raise ValueError("expected exactly one of `node` or `pod_selector`")
        _check_selector("pod_selector", self.pod_selector)


class NodeDrain(KubeFault):
    """Cordon a node and evict its pods (PodDisruptionBudgets respected); revert uncordons."""

    kind = "node-drain"
    Params = NodeDrainParams
    params: NodeDrainParams

    def preflight(self) -> None:
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
        assert name is not None
        nodes = kube.list_nodes()
        node = next((n for n in nodes if n.name == name), None)
        if node is None:
            raise PreflightError(f"{self.kind}: node {name!r} not found")
        if node.unschedulable:
            raise PreflightError(
                f"{self.kind}: node {name} is already cordoned; uncordon it first "
                "(drillkit only uncordons what it cordoned)"
            )
        self.check_blast("nodes", 1, len(nodes))
        self.node = node
        self.evict: list[Pod] = []
        self.skipped: list[tuple[Pod, str]] = []
        allowed = self.ctx.scenario.guardrails.allow_namespaces
        for pod in kube.list_pods(None, field_selector=f"spec.nodeName={name}"):
            why = (
                "mirror pod"
                if pod.mirror
                else "DaemonSet"
                if pod.controller and pod.controller.kind == "DaemonSet"
                else "finished"
                if pod.phase in ("Succeeded", "Failed")
                else "terminating"
                if pod.terminating
                else "protected namespace"
                if pod.namespace in PROTECTED_NAMESPACES and pod.namespace not in allowed
                else ""
            )
            if why:
                self.skipped.append((pod, why))
            else:
                self.evict.append(pod)

    def plan(self) -> list[str]:
        node = getattr(self, "node", None)
        if node is None:
            return []
        return [
            f"cordon {node.ref}",
            *(f"evict {p.ref} (policy/v1 Eviction, PodDisruptionBudgets respected)" for p in self.evict),
            *(f"skip {p.ref}: {why}" for p, why in self.skipped),
            f"revert: uncordon {node.name} (evicted pods stay where they were rescheduled)",
        ]

    def inject(self, undo: Undo) -> None:
        node, kube = self.node, self.kube
        undo.register(self.kind, node=node.name)
        kube.cordon(node.name, self.ctx.run_id)
        deadline = time.monotonic() + self.params.evict_timeout
        results: dict[str, str] = {}
        for p in self.evict:  # a stop (SIGINT/SIGTERM) ends the evictions at once
            if self.ctx.stop.is_set():
                break
            results[f"{p.namespace}/{p.name}"] = kube.evict(p.namespace, p.name, deadline, self.ctx.stop)
            if results[f"{p.namespace}/{p.name}"] == "evicted":
                self.ctx.harm_started()
        blocked = {k: v for k, v in results.items() if v not in ("evicted", "gone")}
        extra = {"stopped": True} if self.ctx.stop.is_set() else {}
        _journal(
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

    @classmethod
    def revert(cls, ctx: FaultContext, data: dict[str, Any]) -> dict[str, Any]:
        return {"uncordoned": ctx.kube.uncordon(data["node"])}


# --- pressure: stress pods and in-container execs --------------------------------------------------


def stress_pod(
    name: str, ns: str, run_id: str, node: str, image: str, args: list[str], requests: dict[str, str], deadline: int
) -> dict[str, Any]:
    """A stress-ng pod pinned to `node` (nodeName: no scheduler), ending itself at `deadline`."""
    labels = {
        RUN_LABEL: run_id,
        "app.kubernetes.io/managed-by": "drillkit",
        "app.kubernetes.io/name": "drillkit-stress",
    }
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
            "containers": [{"name": "stress", "image": image, "args": args, "resources": {"requests": requests}}],
        },
    }


class _PressureFault(KubeFault):
    """Shared by memory- and cpu-pressure: node mode runs a stress pod, container mode execs."""

    marker: ClassVar[str]

    def preflight(self) -> None:
        p = self.params
        self.targets = self.resolve_pods(
            self.namespace, p.selector, p.field_selector, p.count if p.mode is Mode.CONTAINER else Count(1), p.pick
        )
        if p.mode is Mode.NODE:
            node = self.targets[0].node
            if not node:
                raise PreflightError(f"{self.kind}: pod {self.targets[0].name} is not scheduled yet")
            self.node = node
            self.stress = f"drillkit-stress-{self.ctx.run_id}-{secrets.token_hex(2)}"
            return
        self.containers = {}
        for pod in self.targets:
            name = self.pod_container(pod, p.container)
            self.check_container(pod, name)
            try:
                res = self.kube.exec(pod.namespace, pod.name, name, ["sh", "-c", "true"], timeout=20)
            except (ExecFailed, NotFound) as exc:
                raise PreflightError(
                    f"{self.kind}: cannot run `sh -c true` in container {name} of "
                    f"{pod.ref}: {exc}. mode: container needs a POSIX shell in "
                    "the image; use mode: node for distroless images"
                ) from None
            if res.code != 0:
                raise PreflightError(
                    f"{self.kind}: `sh -c true` exited {res.code} in container "
                    f"{name} of {pod.ref}: {res.stderr.strip()}; mode: container "
                    "needs a POSIX shell"
                )
            self.containers[pod.uid] = name

    def check_container(self, pod: Pod, container: str) -> None:
        """Extra per-container preconditions."""

    def _check_stop(self) -> None:
        """Raise Aborted when the drill is asked to stop (the registered revert then runs)."""
        if self.ctx.stop.is_set():
            raise Aborted(getattr(self.ctx.stop, "reason", "") or "stop requested", by_signal=True)

    def node_plan(self) -> list[str]:
        return [
            f"create Pod {self.namespace}/{self.stress} (image {self.params.image}, labelled "
            f"{RUN_LABEL}={self.ctx.run_id}) pinned to node {self.node} (where "
            f"{self.targets[0].ref} runs): stress-ng {' '.join(self.stress_args())}",
            "revert: delete that pod",
        ]

    def stress_args(self) -> list[str]:
        raise NotImplementedError

    def stress_requests(self) -> dict[str, str]:
        raise NotImplementedError

    def inject_node(self, undo: Undo) -> None:
        ns, p = self.namespace, self.params
        undo.register(self.kind, mode=Mode.NODE.value, namespace=ns, pod=self.stress)
        manifest = stress_pod(
            self.stress,
            ns,
            self.ctx.run_id,
            self.node,
            p.image,
            self.stress_args(),
            self.stress_requests(),
            int(p.duration) + 30,
        )
        with contextlib.suppress(Conflict):
            self.kube.create_pod(ns, manifest)
        started = self.kube.wait_pods(
            ns,
            f"{RUN_LABEL}={self.ctx.run_id}",
            lambda pods: next(
                (x for x in pods if x.name == self.stress and x.containers and x.containers[0].running), None
            ),
            p.wait,
            self.ctx.stop,
        )
        if started is None:
            raise DrillkitError(
                f"{self.kind}: stress pod {ns}/{self.stress} not running within "
                f"{p.wait:g}s (image {p.image} pullable? node {self.node} full?)"
            )
        self.ctx.harm_started()

    @classmethod
    def revert(cls, ctx: FaultContext, data: dict[str, Any]) -> dict[str, Any]:
        kube, ns = ctx.kube, data["namespace"]
        if data.get("mode") == Mode.NODE.value:
            return {"deleted": kube.delete_pod(ns, data["pod"], grace_period=0)}
        token = data.get("background")
        _Background.finish(token, timeout=0.5)  # no new exec starts from here on

        def kill_all() -> list[str]:
            stopped = []
            for entry in data.get("pods", []):
                try:
                    kube.exec(ns, entry["name"], entry["container"], ["sh", "-c", _killer(cls.marker)], timeout=20)
                    stopped.append(entry["name"])
                except (NotFound, ExecFailed):  # pod gone or container restarted: nothing runs
                    pass
            return stopped

        stopped = kill_all()
        if not _Background.finish(token, timeout=10.0):  # an exec that began late: kill again
            kill_all()
            if not _Background.finish(token, STOP_TIMEOUT):
                raise DrillkitError(
                    f"{cls.kind} revert: the in-container load is still running "
                    f"after killing it twice; check the pods in {ns}"
                )
        return {"stopped_in": stopped}


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
    memory: str = doc("node mode: memory stress-ng allocates (and requests)", default="1Gi")
    image: str = doc("node mode: stress-ng image", default=STRESS_IMAGE)
    duration: Duration = doc("node mode: stress-ng --timeout (its own dead-man's switch)", default=600.0)
    wait: Duration = doc("node mode: how long to wait for the stress pod to run", default=120.0)
    namespace: str | None = doc("namespace (default: the scenario's target namespace)", default=None)

    def __post_init__(self) -> None:
        _check_selector("selector", self.selector)
        if not _QUANTITY.fullmatch(self.memory):
            raise ValueError(f"memory: expected a quantity like 512Mi or 1Gi, got {self.memory!r}")


class MemoryPressure(_PressureFault):
    """Exhaust memory: inside the target container up to its limit (OOMKilled, restarted), or
    on its node with a stress-ng pod."""

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

    def stress_args(self) -> list[str]:
        p = self.params
        return ["--vm", "1", "--vm-bytes", p.memory, "--vm-keep", "--timeout", f"{int(p.duration)}s"]

    def stress_requests(self) -> dict[str, str]:
        return {"memory": self.params.memory, "cpu": "100m"}

    def plan(self) -> list[str]:
        if self.params.mode is Mode.NODE:
            return self.node_plan() if hasattr(self, "node") else []
        return [
            f"exec in container {self.containers[p.uid]} of {p.ref} (memory limit "
            f"{p.container(self.containers[p.uid]).memory_limit}): allocate until OOM-killed"  # type: ignore[union-attr]
            for p in getattr(self, "targets", [])
        ] + ["revert: nothing to undo (the kubelet restarts the container); stray allocators are killed"]

    def inject(self, undo: Undo) -> None:
        if self.params.mode is Mode.NODE:
            return self.inject_node(undo)
        ns, p = self.namespace, self.params
        entries = [
            {
                "name": t.name,
                "uid": t.uid,
                "container": self.containers[t.uid],
                "restarts": t.container(self.containers[t.uid]).restart_count,
            }  # type: ignore[union-attr]
            for t in self.targets
        ]
        undo.register(self.kind, mode=Mode.CONTAINER.value, namespace=ns, pods=entries)
        errors: dict[str, str] = {}

        def allocate(entry: dict[str, Any]) -> None:
            try:
                self.kube.exec(
                    ns, entry["name"], entry["container"], ["sh", "-c", MEMORY_COMMAND], timeout=p.timeout, retry=False
                )
            except KubeError as exc:  # the stream dies with the container: expected
                errors[entry["name"]] = str(exc)
            except DrillkitError as exc:
                errors[entry["name"]] = str(exc)

        threads = [threading.Thread(target=allocate, args=(e,), daemon=True) for e in entries]
        for t in threads:
            t.start()
        self.ctx.harm_started()
        deadline = time.monotonic() + p.timeout + 5
        for t in threads:  # the execs end with their containers; a stop ends the wait at once
            while t.is_alive() and time.monotonic() < deadline:
                self._check_stop()
                t.join(min(0.2, max(0.0, deadline - time.monotonic())))
        for entry in entries:
            evidence = self._oom_evidence(ns, entry, p.timeout)
            if evidence is None:
                self._check_stop()
                raise DrillkitError(
                    f"{self.kind}: container {entry['container']} of pod "
                    f"{ns}/{entry['name']} was not OOM-killed within {p.timeout:g}s"
                    + (f" ({errors[entry['name']]})" if entry["name"] in errors else "")
                )
            _journal(
                self.ctx, "oom_killed", fault=self.kind, pod=entry["name"], container=entry["container"], **evidence
            )
            self.ctx.log(
                f"memory-pressure: {ns}/{entry['name']} {entry['container']}: "
                f"{evidence['reason']}, restarts {entry['restarts']} -> {evidence['restarts']}"
            )

    def _oom_evidence(self, ns: str, entry: dict[str, Any], timeout: float) -> dict[str, Any] | None:
        def killed(pods: list[Pod]) -> dict[str, Any] | None:
            pod = next((x for x in pods if x.uid == entry["uid"]), None)
            c = pod.container(entry["container"]) if pod else None
            if c and (c.restart_count > entry["restarts"] or c.last_terminated_reason == "OOMKilled"):
                return {"restarts": c.restart_count, "reason": c.last_terminated_reason or "restarted"}
            return None

        return self.kube.wait_pods(
            ns, None, killed, timeout, self.ctx.stop, field_selector=f"metadata.name={entry['name']}"
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
        _check_selector("selector", self.selector)
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

    def command(self) -> str:
        p = self.params
        loop = 'while [ "$(date +%s)" -lt "$end" ]; do :; done'
        return (
            f"{CPU_MARKER}=1; end=$(( $(date +%s) + {int(p.duration)} )); "
            f"i=0; while [ $i -lt {p.workers} ]; do ( {loop} ) & i=$((i+1)); done; wait"
        )

    def plan(self) -> list[str]:
        if self.params.mode is Mode.NODE:
            return self.node_plan() if hasattr(self, "node") else []
        return [
            f"exec in container {self.containers[t.uid]} of {t.ref}: {self.params.workers} busy "
            f"loop(s) for {self.params.duration:g}s"
            for t in getattr(self, "targets", [])
        ] + ["revert: kill the loops"]

    def inject(self, undo: Undo) -> None:
        if self.params.mode is Mode.NODE:
            return self.inject_node(undo)
        ns, _p = self.namespace, self.params
        bg = _Background()
        entries = [{"name": t.name, "uid": t.uid, "container": self.containers[t.uid]} for t in self.targets]
        undo.register(self.kind, mode=Mode.CONTAINER.value, namespace=ns, pods=entries, background=bg.token)
        for entry in entries:
            bg.start(self._burn, ns, entry, bg)
        self.ctx.harm_started()

    def _burn(self, ns: str, entry: dict[str, Any], bg: _Background) -> None:
        if bg.stop.is_set():  # reverted before this thread got going
            return
        try:
            self.kube.exec(
                ns,
                entry["name"],
                entry["container"],
                ["sh", "-c", self.command()],
                timeout=self.params.duration + 10,
                retry=False,
            )
        except DrillkitError as exc:
            _journal(self.ctx, "note", fault=self.kind, text=f"busy loop in {entry['name']} ended: {exc}")


# --- network-latency ------------------------------------------------------------------------------


@dataclass(frozen=True)
class NetworkLatencyParams:
    selector: str = doc("label selector of the target pods")
    latency: Duration = doc("added delay per packet, e.g. 200ms")
    jitter: Duration = doc("delay variation, e.g. 20ms", default=0.0)
    interface: str = doc("network interface in the pod", default="eth0")
    field_selector: str | None = doc("field selector narrowing the pods", default=None)
    count: Count = doc("how many matching pods", default=Count(1))
    pick: Pick = doc("which pods: random or oldest", default=Pick.RANDOM)
    image: str = doc("image with `tc` (iproute2) for the ephemeral container", default=NETEM_IMAGE)
    duration: Duration = doc("dead-man's switch: the container removes the delay after this", default=900.0)
    wait: Duration = doc("how long to wait for the ephemeral container to run", default=120.0)
    namespace: str | None = doc("namespace (default: the scenario's target namespace)", default=None)

    def __post_init__(self) -> None:
        _check_selector("selector", self.selector)
        if not 0 < self.latency <= 60:
            raise ValueError("latency: expected more than 0 and at most 60s")
        if not re.fullmatch(r"[a-zA-Z0-9_.@-]{1,15}", self.interface):
            raise ValueError(f"interface: not a network interface name: {self.interface!r}")


def _ms(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms"


class NetworkLatency(KubeFault):
    """Delay a pod's traffic with `tc netem` from an ephemeral container holding NET_ADMIN."""

    kind = "network-latency"
    Params = NetworkLatencyParams
    params: NetworkLatencyParams

    @property
    def container_name(self) -> str:
        return f"drillkit-netem-{self.ctx.run_id}"

    def spec(self) -> dict[str, Any]:
        p, dev = self.params, self.params.interface
        netem = f"tc qdisc add dev {dev} root netem delay {_ms(p.latency)}"
        if p.jitter:
            netem += f" {_ms(p.jitter)}"
        script = (
            f"{netem} || exit 1; trap 'tc qdisc del dev {dev} root; exit 0' TERM INT; "
            f"sleep {int(p.duration)} & wait; tc qdisc del dev {dev} root"
        )
        return {
            "name": self.container_name,
            "image": p.image,
            "command": ["sh", "-c", script],
            "securityContext": {"capabilities": {"add": ["NET_ADMIN"]}},
            "terminationMessagePolicy": "FallbackToLogsOnError",
        }

    def preflight(self) -> None:
        p = self.params
        self.targets = self.resolve_pods(self.namespace, p.selector, p.field_selector, p.count, p.pick)
        for pod in self.targets:
            try:
                self.kube.add_ephemeral_container(pod.namespace, pod.name, self.spec(), dry_run=True)
            except Forbidden as exc:
                raise PreflightError(
                    f"{self.kind}: ephemeral containers are forbidden for {pod.ref}: {exc}. "
                    "network-latency needs `patch pods/ephemeralcontainers` and a cluster "
                    "(Pod Security level) permitting NET_ADMIN"
                ) from None
            except KubeError as exc:
                raise PreflightError(
                    f"{self.kind}: the cluster refused an ephemeral container with NET_ADMIN in {pod.ref}: {exc}"
                ) from None

    def plan(self) -> list[str]:
        p = self.params
        delay = _ms(p.latency) + (f" ± {_ms(p.jitter)}" if p.jitter else "")
        return [
            f"add ephemeral container {self.container_name} (image {p.image}, NET_ADMIN) to "
            f"{t.ref}: tc netem delay {delay} on {p.interface} for at most {p.duration:g}s"
            for t in getattr(self, "targets", [])
        ] + ["revert: `tc qdisc del` in that container (ephemeral containers cannot be removed; it exits)"]

    def inject(self, undo: Undo) -> None:
        ns, p, kube = self.namespace, self.params, self.kube
        entries = [{"name": t.name, "uid": t.uid} for t in self.targets]
        undo.register(self.kind, namespace=ns, container=self.container_name, interface=p.interface, pods=entries)
        for t in self.targets:
            kube.add_ephemeral_container(ns, t.name, self.spec())
            self.ctx.harm_started()
        name = self.container_name

        def running_in(uid: str) -> Callable[[list[Pod]], Pod | None]:
            def check(pods: list[Pod]) -> Pod | None:
                return next((x for x in pods if x.uid == uid and (c := x.container(name)) and c.running), None)

            return check

        for t in self.targets:
            running = kube.wait_pods(
                ns, None, running_in(t.uid), p.wait, self.ctx.stop, field_selector=f"metadata.name={t.name}"
            )
            if running is None:
                raise DrillkitError(
                    f"{self.kind}: ephemeral container {self.container_name} in {t.ref} not running within {p.wait:g}s"
                )
            shown = kube.exec(ns, t.name, self.container_name, ["tc", "qdisc", "show", "dev", p.interface], timeout=20)
            if "netem" not in shown.stdout:
                raise DrillkitError(
                    f"{self.kind}: no netem qdisc on {p.interface} in {t.ref} "
                    f"after adding it: {shown.stdout.strip() or shown.stderr.strip()}"
                )
            _journal(self.ctx, "note", fault=self.kind, text=f"{t.ref}: {shown.stdout.strip().splitlines()[0]}")

    @classmethod
    def revert(cls, ctx: FaultContext, data: dict[str, Any]) -> dict[str, Any]:
        kube, ns, dev = ctx.kube, data["namespace"], data.get("interface", "eth0")
        result: dict[str, str] = {}
        for entry in data.get("pods", []):
            pod = kube.get_pod(ns, entry["name"])
            if pod is None or pod.uid != entry["uid"]:
                result[entry["name"]] = "pod gone"
                continue
            try:
                res = kube.exec(
                    ns, entry["name"], data["container"], ["tc", "qdisc", "del", "dev", dev, "root"], timeout=20
                )
            except NotFound:
                result[entry["name"]] = "pod gone"
                continue
            except ExecFailed as exc:
                result[entry["name"]] = f"container not running (it removes the delay as it exits): {exc}"
                continue
            if res.code == 0:
                result[entry["name"]] = "delay removed"
            elif "No such file" in res.stderr or "Cannot delete qdisc" in res.stderr:
                result[entry["name"]] = "no delay left"
            else:
                raise DrillkitError(
                    f"network-latency revert: `tc qdisc del dev {dev} root` in "
                    f"{ns}/{entry['name']} exited {res.code}: {res.stderr.strip()}"
                )
        return result


FAULTS: list[type[Fault]] = [
    PodKill,
    ScaleToZero,
    BadRollout,
    AuthSecretCorruption,
    DbConnectionExhaustion,
    NodeDrain,
    MemoryPressure,
    CpuPressure,
    NetworkLatency,
]
