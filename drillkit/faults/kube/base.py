"""What every Kubernetes fault shares: namespace and guardrails, pod targeting, background work.

Why it exists: the Kubernetes faults differ in their harm, not in how they pick targets. Here live
the blast-radius and protected-namespace checks (refused in preflight, before anything is
touched), the selector and workload-reference parsing their parameters use, and `Background`:
threads a fault leaves running after inject (repeat kills, watchers, long execs), stopped
through a child of the drill's stop flag and joined by the fault's revert.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

from drillkit.errors import Aborted, PreflightError
from drillkit.faults import Fault, Made, RevertContext, check_max_targets
from drillkit.kube import MODIFIED_BY, PROTECTED_NAMESPACES, REQUEST_TIMEOUT, RUN_LABEL, Pod, Workload, workload_kind
from drillkit.model import Count
from drillkit.signals import StopFlag

if TYPE_CHECKING:
    from drillkit.kube import Kube

READY_TIMEOUT = 60.0
"""Seconds a revert waits for a restored workload to be Ready again."""
STOP_TIMEOUT = REQUEST_TIMEOUT[0] + REQUEST_TIMEOUT[1] + 5.0
"""Seconds a revert waits for a fault's background threads to stop: long enough for the one
API call (a kill's delete, a watch chunk) each may be in the middle of."""

_SELECTOR = re.compile(r"[^\s,][^,]*(,[^\s,][^,]*)*")


class Pick(StrEnum):
    """Which matching pods a fault picks."""

    RANDOM = "random"
    OLDEST = "oldest"


def check_selector(name: str, value: str | None) -> None:
    """ValueError (a located scenario error) unless `value` looks like a label selector."""
    if value is not None and not _SELECTOR.fullmatch(value.strip()):
        raise ValueError(f"{name}: expected a selector like app=chatbot-api, got {value!r}")


def parse_workload(text: str) -> tuple[str, str]:
    """`deployment/NAME` -> ("Deployment", NAME); ValueError for anything else."""
    kind, sep, name = text.partition("/")
    if not sep or not name:
        raise ValueError(f"workload: expected deployment/NAME or statefulset/NAME, got {text!r}")
    return workload_kind(kind), name


def now() -> str:
    """The current UTC time as the API writes it (for `kubectl rollout restart`-style marks)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Background:
    """Threads a fault leaves running after inject (repeat kills, watchers, long execs).

    Their flag is a child of the drill's stop flag: it is raised when the drill stops, or when
    the fault's revert calls `finish`, which then joins them. They live in this process only
    (a cleanup process has none, and needs none: everything they did is in the journal), so
    the revert record holds only the `token` naming them."""

    registry: ClassVar[dict[str, Background]] = {}

    def __init__(self, stop: StopFlag) -> None:
        import secrets  # here: it loads hashlib, which validating a scenario never needs

        self.token = secrets.token_hex(6)
        self.stop = stop
        self.threads: list[threading.Thread] = []
        Background.registry[self.token] = self

    def start(self, target: Callable[..., None], *args: Any) -> None:
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
        bg.stop.set("the fault is being reverted")
        deadline = time.monotonic() + timeout
        for t in bg.threads:
            t.join(max(0.0, deadline - time.monotonic()))
        if any(t.is_alive() for t in bg.threads):
            return False
        cls.registry.pop(token or "", None)
        return True


def private_journal(ctx: RevertContext) -> None:
    """Make the journal readable by its owner only (mode 0600) before it records a pod
    template or manifest, which may hold inline `env[].value` credentials."""
    path = ctx.journal.path
    try:
        os.chmod(path, 0o600)
    except OSError as exc:
        ctx.log(f"warning: cannot make the journal {path} private (chmod 600): {exc}")


def note(ctx: RevertContext, kind: str, **data: Any) -> None:
    """Journal an event from any thread; a journal closed under a late watcher is not an error."""
    with contextlib.suppress(ValueError):
        ctx.journal.append(kind, **data)


class Namespaced(Protocol):
    """Parameters of every Kubernetes fault: an optional namespace of their own."""

    @property
    def namespace(self) -> str | None: ...


P = TypeVar("P", bound=Namespaced)
F = TypeVar("F")
R = TypeVar("R")


class KubeFault(Fault[P, F, R]):
    """Shared parts: namespace, guardrails, pod and workload targeting."""

    target = "kubernetes"

    @property
    def kube(self) -> Kube:
        return self.ctx.kube

    @property
    def namespace(self) -> str:
        target = self.ctx.scenario.target.kubernetes
        ns = self.params.namespace or (target.namespace if target else None)
        if not ns:
            raise PreflightError(f"{self.kind}: no namespace: set target.kubernetes.namespace")
        return ns

    def check_stop(self) -> None:
        """Raise Aborted when the drill is asked to stop (the registered revert then runs)."""
        if self.ctx.stop.interrupts():
            raise Aborted(self.ctx.stop.reason or "stop requested", by_signal=True)

    def made_labels(self, made: Made, app: str) -> dict[str, str]:
        """The labels of an object this fault creates: the run id always (cleanup and the
        leftover check find it by that), plus what it is: `app` managed by drillkit, or in a
        blind exercise the platform's own name for it (`ctx.naming`)."""
        naming, run = self.ctx.naming, self.ctx.run_id
        if naming.platform is None:
            return {RUN_LABEL: run, "app.kubernetes.io/managed-by": "drillkit", "app.kubernetes.io/name": app}
        head = naming.head(made)
        return {RUN_LABEL: run, "app.kubernetes.io/name": head, "app.kubernetes.io/part-of": naming.platform}

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
        check_max_targets(self.kind, n, total, self.ctx.scenario.guardrails.max_targets, what)

    def resolve_pods(
        self, ns: str, selector: str, field_selector: str | None, count: Count, pick: Pick
    ) -> tuple[Pod, ...]:
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
            return tuple(sorted(pods, key=lambda p: (p.created, p.name))[:n])
        import random

        return tuple(random.sample(pods, n))

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

    @staticmethod
    def pod_lines(pods: tuple[Pod, ...]) -> list[str]:
        return [f"  - {p.ref} on node {p.node or '?'}" for p in pods]
