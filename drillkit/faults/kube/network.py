"""network-latency: delay a pod's traffic with `tc netem` from an ephemeral container.

Why it exists apart: ephemeral containers cannot be removed, so the revert runs `tc qdisc del`
in the one drillkit added, and the container's own script is the dead man's switch: it removes
the delay when it is stopped or after `duration`. Preflight dry-runs the container, so a
cluster refusing NET_ADMIN (RBAC or Pod Security) is refused before anything is touched.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from drillkit.errors import DrillkitError, PreflightError
from drillkit.faults import RevertContext, Undo
from drillkit.faults.kube.base import KubeFault, Pick, check_selector, note
from drillkit.kube import ExecFailed, Forbidden, KubeError, NotFound, Pod
from drillkit.model import Count, Duration, doc

NETEM_IMAGE = "ghcr.io/nicolaka/netshoot:v0.13"


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
        check_selector("selector", self.selector)
        if not 0 < self.latency <= 60:
            raise ValueError("latency: expected more than 0 and at most 60s")
        if not re.fullmatch(r"[a-zA-Z0-9_.@-]{1,15}", self.interface):
            raise ValueError(f"interface: not a network interface name: {self.interface!r}")


def _ms(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms"


@dataclass(frozen=True)
class Delayed:
    """What preflight found: the pods whose traffic is delayed (the dry run passed for each)."""

    namespace: str
    targets: tuple[Pod, ...]


@dataclass(frozen=True)
class DelayedPod:
    name: str
    uid: str


@dataclass(frozen=True)
class NetemRecord:
    """How to undo a network-latency: the container and interface to run `tc qdisc del` in."""

    namespace: str
    container: str
    interface: str
    pods: tuple[DelayedPod, ...]


class NetworkLatency(KubeFault[NetworkLatencyParams, Delayed, NetemRecord]):
    """Delay a pod's traffic with `tc netem` from an ephemeral container holding NET_ADMIN."""

    kind = "network-latency"
    Params = NetworkLatencyParams
    Record: ClassVar[type] = NetemRecord
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

    def preflight(self) -> Delayed:
        p, ns = self.params, self.namespace
        targets = self.resolve_pods(ns, p.selector, p.field_selector, p.count, p.pick)
        for pod in targets:
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
        return Delayed(ns, targets)

    def plan(self, found: Delayed) -> list[str]:
        p = self.params
        delay = _ms(p.latency) + (f" ± {_ms(p.jitter)}" if p.jitter else "")
        return [
            f"add ephemeral container {self.container_name} (image {p.image}, NET_ADMIN) to "
            f"{t.ref}: tc netem delay {delay} on {p.interface} for at most {p.duration:g}s"
            for t in found.targets
        ] + ["revert: `tc qdisc del` in that container (ephemeral containers cannot be removed; it exits)"]

    def inject(self, found: Delayed, undo: Undo) -> None:
        ns, p, kube, name = found.namespace, self.params, self.kube, self.container_name
        pods = tuple(DelayedPod(t.name, t.uid) for t in found.targets)
        undo.register(self, NetemRecord(ns, name, p.interface, pods))
        for t in found.targets:
            kube.add_ephemeral_container(ns, t.name, self.spec())
            self.ctx.harm_started()

        def running_in(uid: str) -> Callable[[list[Pod]], Pod | None]:
            def check(pods: list[Pod]) -> Pod | None:
                return next((x for x in pods if x.uid == uid and (c := x.container(name)) and c.running), None)

            return check

        for t in found.targets:
            running = kube.wait_pods(
                ns, None, running_in(t.uid), p.wait, self.ctx.stop, field_selector=f"metadata.name={t.name}"
            )
            if running is None:
                raise DrillkitError(
                    f"{self.kind}: ephemeral container {name} in {t.ref} not running within {p.wait:g}s"
                )
            shown = kube.exec(ns, t.name, name, ["tc", "qdisc", "show", "dev", p.interface], timeout=20)
            if "netem" not in shown.stdout:
                raise DrillkitError(
                    f"{self.kind}: no netem qdisc on {p.interface} in {t.ref} "
                    f"after adding it: {shown.stdout.strip() or shown.stderr.strip()}"
                )
            note(self.ctx, "note", fault=self.kind, text=f"{t.ref}: {shown.stdout.strip().splitlines()[0]}")

    @classmethod
    def revert(cls, ctx: RevertContext, record: NetemRecord) -> dict[str, Any]:
        kube, ns, dev = ctx.kube, record.namespace, record.interface
        result: dict[str, str] = {}
        for entry in record.pods:
            pod = kube.get_pod(ns, entry.name)
            if pod is None or pod.uid != entry.uid:
                result[entry.name] = "pod gone"
                continue
            try:
                res = kube.exec(
                    ns, entry.name, record.container, ["tc", "qdisc", "del", "dev", dev, "root"], timeout=20
                )
            except NotFound:
                result[entry.name] = "pod gone"
                continue
            except ExecFailed as exc:
                result[entry.name] = f"container not running (it removes the delay as it exits): {exc}"
                continue
            if res.code == 0:
                result[entry.name] = "delay removed"
            elif "No such file" in res.stderr or "Cannot delete qdisc" in res.stderr:
                result[entry.name] = "no delay left"
            else:
                raise DrillkitError(
                    f"network-latency revert: `tc qdisc del dev {dev} root` in "
                    f"{ns}/{entry.name} exited {res.code}: {res.stderr.strip()}"
                )
        return result
