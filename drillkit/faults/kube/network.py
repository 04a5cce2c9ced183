"""network-latency: delay a pod's traffic with `tc netem` from an ephemeral container.

Why it exists apart: ephemeral containers cannot be removed, so the revert execs a script in
the one drillkit added that deletes drillkit's own qdisc (root handle `d1c:`: the kernel refuses
to delete a root qdisc with another handle, so another drill's or the pod's own qdisc is never
touched) and then stops the container's script, so nothing holding NET_ADMIN keeps running.
The container's script is also the dead man's switch: it removes the delay when it is stopped
or after `duration`. The target pod is labelled `drillkit.io/netem-by=<run id>` before the
container is added, so `drillkit cleanup` finds it without a journal. Preflight dry-runs the
container, so a cluster refusing NET_ADMIN (RBAC or Pod Security) is refused before anything is
touched. An ephemeral container never restarts: once it has exited, its terminated state (exit
code, reason, the tail of its output) is what inject reports and what the revert goes by.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from drillkit.errors import Aborted, DrillkitError, PreflightError
from drillkit.faults import Made, RevertContext, Undo
from drillkit.faults.kube.base import KubeFault, Pick, check_selector, note
from drillkit.faults.kube.pressure import killer
from drillkit.kube import (
    NETEM_BY,
    NETEM_CONTAINER,
    Ended,
    ExecFailed,
    Forbidden,
    KubeError,
    KubeTransient,
    NotFound,
    Pod,
)
from drillkit.model import Count, Duration, doc
from drillkit.signals import StopFlag, wait_until

if TYPE_CHECKING:
    from drillkit.kube import Kube

NETEM_IMAGE = "ghcr.io/nicolaka/netshoot:v0.13"
HANDLE = "d1c:"
"""drillkit's root qdisc handle: `tc qdisc del ... root handle d1c:` fails ("Invalid handle")
unless the root qdisc is drillkit's."""
SHOW_TIMEOUT = 15.0
"""Seconds inject looks for the netem qdisc once the container runs (its script adds it)."""
START_TIMEOUT = 120.0
"""Seconds a revert waits for an ephemeral container still starting (pulling its image): once
started it adds the delay, so the revert must see it run (or exit) first."""


def netem_script(dev: str, delay: str, duration: int, marker: str) -> str:
    """The ephemeral container's script: add the delay, hold it for `duration` s (or until
    SIGTERM), remove it. `: marker=1` puts the marker on the shell's command line for the
    revert's `killer` without running anything."""
    delete = f"tc qdisc del dev {dev} root handle {HANDLE} 2>/dev/null"
    return (
        f": {marker}=1; tc qdisc add dev {dev} root handle {HANDLE} netem delay {delay} || exit 1; "
        f"s=; trap '{delete}; [ -n \"$s\" ] && kill $s 2>/dev/null; exit 0' TERM INT; "
        f"sleep {duration} & s=$!; wait $s; {delete}; exit 0"
    )


def revert_script(dev: str, marker: str) -> str:
    """Run in the ephemeral container by the revert: delete drillkit's qdisc (its exit status
    and stderr are the script's), then stop the container's script and its `sleep` (SIGTERM: its
    trap removes the delay too, and ends the container)."""
    return f"tc qdisc del dev {dev} root handle {HANDLE}; r=$?; {killer(marker, 'TERM')}; exit $r"


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
        return self.ctx.naming.name(Made.NETEM, self.ctx.run_id)

    def spec(self) -> dict[str, Any]:
        p = self.params
        delay = _ms(p.latency) + (f" {_ms(p.jitter)}" if p.jitter else "")
        script = netem_script(p.interface, delay, int(p.duration), self.container_name)
        return {
            "name": self.container_name,
            "image": p.image,
            "command": ["sh", "-c", script],
            # root, whatever the pod says: the image runs as root (a pod's runAsNonRoot would
            # have the kubelet refuse it), and a non-root user's added capabilities are not
            # effective, so `tc` would meet EPERM
            "securityContext": {
                "runAsUser": 0,
                "runAsGroup": 0,
                "runAsNonRoot": False,
                "capabilities": {"add": ["NET_ADMIN"]},
            },
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
        ] + [
            f"label each pod {NETEM_BY}={self.ctx.run_id} (so cleanup finds it without a journal)",
            f"revert: delete qdisc {HANDLE} and stop that container's script (ephemeral containers "
            "cannot be removed; it exits), then remove the label",
        ]

    def inject(self, found: Delayed, undo: Undo) -> None:
        ns, p, kube, name = found.namespace, self.params, self.kube, self.container_name
        pods = tuple(DelayedPod(t.name, t.uid) for t in found.targets)
        undo.register(self, NetemRecord(ns, name, p.interface, pods))
        for t in found.targets:
            kube.mark_pod(ns, t.name, {NETEM_BY: self.ctx.run_id}, {NETEM_CONTAINER: f"{name}/{p.interface}"})
            kube.add_ephemeral_container(ns, t.name, self.spec())
            self.ctx.harm_started()

        for t in found.targets:
            pod = kube.wait_pods(
                ns, None, started_in(t.uid, name), p.wait, self.ctx.stop, field_selector=f"metadata.name={t.name}"
            )
            if pod is None:
                if self.ctx.stop.interrupts():
                    raise Aborted(self.ctx.stop.reason or "stop requested", by_signal=True)
                now = kube.get_pod(ns, t.name)
                c = now.container(name) if now else None
                waiting = f" (waiting: {c.waiting})" if c and c.waiting else ""
                raise DrillkitError(
                    f"{self.kind}: ephemeral container {name} in {t.ref} not running within {p.wait:g}s{waiting}"
                )
            shown = self._confirm(ns, t)
            note(self.ctx, "note", fault=self.kind, text=f"{t.ref}: {shown.strip().splitlines()[0]}")

    def _confirm(self, ns: str, t: Pod) -> str:
        """`tc qdisc show` exec'd in the running container until it shows the netem qdisc (its
        script may not have added it yet), at most `SHOW_TIMEOUT` s. A container that has
        exited ends this at once with why (exit code, reason, the tail of its output); no exec
        goes into it, as the kubelet answers an exec into an exited container with a 500."""
        kube, name, dev = self.kube, self.container_name, self.params.interface
        last = ""

        def shows_netem() -> str | None:
            nonlocal last
            ended = _ended(kube.get_pod(ns, t.name), name)
            if ended is not None:  # it never restarts: say why at once
                raise DrillkitError(f"{self.kind}: ephemeral container {name} in {t.ref} {ended}; no delay in place")
            try:
                res = kube.exec(ns, t.name, name, ["tc", "qdisc", "show", "dev", dev], timeout=20, retry=False)
            except (ExecFailed, KubeTransient) as exc:  # exited meanwhile: the next look says why
                last = str(exc)
                return None
            last = res.stdout.strip() or res.stderr.strip()
            return res.stdout if "netem" in res.stdout else None

        shown = wait_until(shows_netem, time.monotonic() + SHOW_TIMEOUT, 0.5, self.ctx.stop)
        if not shown:
            if self.ctx.stop.interrupts():
                raise Aborted(self.ctx.stop.reason or "stop requested", by_signal=True)
            raise DrillkitError(
                f"{self.kind}: no netem qdisc on {dev} in {t.ref} within {SHOW_TIMEOUT:g}s of adding it: {last}"
            )
        return shown

    @classmethod
    def revert(cls, ctx: RevertContext, record: NetemRecord) -> dict[str, Any]:
        result: dict[str, str] = {}
        for entry in record.pods:
            result[entry.name] = clear_netem(
                ctx.kube, record.namespace, entry.name, entry.uid, record.container, record.interface, ctx.stop
            )
        return result


def started_in(uid: str, container: str) -> Callable[[list[Pod]], Pod | None]:
    """`wait_pods` check: the pod `uid` once its container `container` runs or has exited."""

    def check(pods: list[Pod]) -> Pod | None:
        return next(
            (x for x in pods if x.uid == uid and (c := x.container(container)) and (c.running or c.ended)), None
        )

    return check


def _ended(pod: Pod | None, container: str) -> Ended | None:
    c = pod.container(container) if pod else None
    return c.ended if c else None


def clear_netem(
    kube: Kube, ns: str, pod_name: str, uid: str | None, container: str, dev: str, stop: StopFlag | None = None
) -> str:
    """Remove drillkit's delay from a pod and stop its ephemeral container's script, then drop
    the pod's netem label (the revert, and `drillkit cleanup` finding the label). Idempotent.

    The container's state decides how: still starting (pulling its image), it is waited for
    (`START_TIMEOUT`), as it adds the delay once it starts; running, the revert script is exec'd
    in it; exited, nothing can be exec'd (the kubelet answers "container not found") and its exit
    says what is left: 0, its script removed the delay; 1, `tc qdisc add` failed, no delay was
    added; anything else (killed), the qdisc lives on in the pod's network namespace: an error
    says so and the label stays, so cleanup finds the pod again."""
    pod = kube.get_pod(ns, pod_name)
    if pod is None or (uid and pod.uid != uid):
        return "pod gone"
    c = pod.container(container)
    if c is not None and not c.running and c.ended is None:
        started = kube.wait_pods(
            ns, None, started_in(pod.uid, container), START_TIMEOUT, stop, field_selector=f"metadata.name={pod_name}"
        )
        if started is None:
            now = kube.get_pod(ns, pod_name)
            if now is None or now.uid != pod.uid:
                return "pod gone"
            raise DrillkitError(
                f"network-latency revert: ephemeral container {container} in {ns}/{pod_name} did not start "
                f"within {START_TIMEOUT:g}s ({c.waiting or 'waiting'}); once it starts it delays {dev} until "
                f"its dead man's switch: the pod keeps its {NETEM_BY} label, run `drillkit cleanup` again"
            )
        c = started.container(container)
    if c is None:
        outcome = "no ephemeral container was added"
    elif c.ended is not None:
        outcome = _after_exit(ns, pod_name, container, dev, c.ended)
    else:
        outcome = _exec_revert(kube, ns, pod_name, container, dev)
    kube.mark_pod(ns, pod_name, {NETEM_BY: None}, {NETEM_CONTAINER: None})
    return outcome


def _after_exit(ns: str, pod_name: str, container: str, dev: str, ended: Ended) -> str:
    """What an exited netem container left, from its exit (see `netem_script`)."""
    if ended.exit_code == 0:
        return f"container had ended ({ended}): its script removed the delay"
    if ended.exit_code == 1:
        return f"no delay was added: the container {ended}"
    raise DrillkitError(
        f"network-latency revert: ephemeral container {container} in {ns}/{pod_name} {ended} before its "
        f"script removed qdisc {HANDLE} on {dev}: the delay may still be in place (it lives in the pod's "
        "network namespace, and an exited ephemeral container cannot be exec'd into or restarted); "
        f"remove it with `kubectl debug -n {ns} {pod_name} --profile=netadmin --image={NETEM_IMAGE} -- "
        f"tc qdisc del dev {dev} root handle {HANDLE}`, then `drillkit cleanup` again"
    )


def _exec_revert(kube: Kube, ns: str, pod_name: str, container: str, dev: str) -> str:
    """Exec the revert script in the running container. A container that exited meanwhile
    (its state lags) gets a 500 from the kubelet: its exit then decides, without the retry
    policy's ~20 s of retries into a container that will never run again."""
    command = ["sh", "-c", revert_script(dev, container)]
    try:
        try:
            res = kube.exec(ns, pod_name, container, command, timeout=20, retry=False)
        except KubeTransient:
            if (ended := _ended(kube.get_pod(ns, pod_name), container)) is not None:
                return _after_exit(ns, pod_name, container, dev, ended)
            res = kube.exec(ns, pod_name, container, command, timeout=20)
    except NotFound:
        return "pod gone"
    except ExecFailed as exc:
        if (ended := _ended(kube.get_pod(ns, pod_name), container)) is not None:
            return _after_exit(ns, pod_name, container, dev, ended)
        return f"container not running (it removes the delay as it exits): {exc}"
    if res.code == 0:
        return "delay removed"
    if any(w in res.stderr for w in ("Invalid handle", "No such file", "Cannot delete qdisc")):
        return "no delay left"
    raise DrillkitError(
        f"network-latency revert: `tc qdisc del dev {dev} root handle {HANDLE}` in "
        f"{ns}/{pod_name} exited {res.code}: {res.stderr.strip()}"
    )
