"""Ephemeral containers run for real: the kubelet's part KWOK does not play for them.

KWOK accepts an ephemeral container into a pod's spec (the apiserver does that) but runs
nothing and never reports `ephemeralContainerStatuses`. This runner does what a kubelet would:
when an ephemeral container appears in a pod on a KWOK node it runs the container's real
command (`command` + `args`, e.g. drillkit's `sh -c 'tc qdisc add …'`) on this machine, as root
(an ephemeral container holding NET_ADMIN), in the KWOK nodes' network namespace (so `tc` acts
on that namespace's `eth0`, the pods' interface) and memory cgroup, and reports its real state
through the pod's status subresource: `waiting` (ContainerCreating) while its image "pulls"
(`pull_seconds`, 0 by default), `running` once started, `terminated` with the real exit code
when it exits — reason Completed/Error and, with `terminationMessagePolicy:
FallbackToLogsOnError` and a failure, the tail of its output as the message, as the kubelet
does. An ephemeral container never restarts. Its security context is the kubelet's too: the
container's fields over the pod's; `runAsNonRoot` with no user or user 0 (the images drillkit
uses run as root) leaves it waiting in CreateContainerConfigError with the kubelet's words; a
non-root `runAsUser` runs the command as that user (`setpriv`), so added capabilities are not
effective and `tc` meets the kernel's EPERM. A pod deleted has its containers' process groups
stopped (SIGTERM, then SIGKILL after a short grace), as the kubelet stops them.

Nothing here stands in for `tc` or the kernel: whatever the real tools answer is what the pod
status says.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from .cluster import ApiError, RealCluster
from .jobrunner import CONTAINER_PATH

MESSAGE_LINES, MESSAGE_BYTES = 80, 12 * 1024
"""The kubelet's bound on a termination message taken from the log (kubecontainer's
MaxContainerTerminationMessageLogLines / ...LogLength)."""
STOP_GRACE = 2.0
"""Seconds between SIGTERM and SIGKILL when a pod is deleted."""


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Started:
    proc: subprocess.Popen[bytes]
    started: str
    output: bytearray = field(default_factory=bytearray)
    reader: threading.Thread | None = None


class EphemeralRunner:
    """Runs each ephemeral container of each pod for real while started (module docstring)."""

    def __init__(self, cluster: RealCluster, pull_seconds: float = 0.0) -> None:
        assert cluster.plane.node_net is not None and cluster.plane.node_cgroup is not None
        self.cluster = cluster
        self.netns = cluster.plane.node_net.name
        self.cgroup = cluster.plane.node_cgroup
        self.pull_seconds = pull_seconds
        """Seconds an added container waits (ContainerCreating) before it starts: an image pull."""
        self.errors: list[str] = []
        self.ran: list[tuple[str, str, int]] = []
        """(pod, container, exit code) of every container that exited, in order."""
        self._seen: dict[tuple[str, str], float] = {}  # (pod uid, container) -> when first seen
        self._running: dict[tuple[str, str], Started] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="ephemeral-runner", daemon=True)

    def start(self) -> EphemeralRunner:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)
        for key in list(self._running):
            self._kill(key)

    def pids(self) -> set[int]:
        """The process ids of the containers running now."""
        return {s.proc.pid for s in self._running.values() if s.proc.poll() is None}

    # -------------------------------------------------------------------- the loop
    def _loop(self) -> None:
        while not self._stop.wait(0.1):
            try:
                self._tick()
            except Exception as exc:
                self.errors.append(f"{type(exc).__name__}: {exc}")

    def _tick(self) -> None:
        pods = {p["metadata"]["uid"]: p for p in self.cluster.list("pods")}
        for key, run in list(self._running.items()):
            pod = pods.get(key[0])
            if pod is None or pod["metadata"].get("deletionTimestamp"):
                self._kill(key)
            elif run.proc.poll() is not None:
                self._finish(pod, key, self._running.pop(key))
        for uid, pod in pods.items():
            if pod["metadata"].get("deletionTimestamp") or not pod["spec"].get("nodeName"):
                continue
            for c in pod["spec"].get("ephemeralContainers") or []:
                key = (uid, c["name"])
                if key not in self._seen:
                    self._seen[key] = time.monotonic()
                    if self.pull_seconds > 0:
                        self._report(pod, c, {"waiting": {"reason": "ContainerCreating"}})
                if key in self._running or self._seen[key] < 0:
                    continue
                if time.monotonic() - self._seen[key] >= self.pull_seconds:
                    self._seen[key] = -1.0  # started once: an ephemeral container never restarts
                    user, refused = run_as(pod, c)
                    if refused:
                        self._report(pod, c, {"waiting": {"reason": "CreateContainerConfigError", "message": refused}})
                        continue
                    self._running[key] = self._run(c, user)
                    self._report(pod, c, {"running": {"startedAt": self._running[key].started}})

    def _run(self, container: dict[str, Any], user: tuple[int, int] | None = None) -> Started:
        command = [*(container.get("command") or []), *(container.get("args") or [])]
        if user is not None:  # as the kubelet runs a non-root container: no effective capabilities
            command = ["setpriv", f"--reuid={user[0]}", f"--regid={user[1]}", "--clear-groups", *command]
        env = {"PATH": CONTAINER_PATH, "HOME": "/root"}
        env.update({e["name"]: str(e["value"]) for e in container.get("env") or [] if "value" in e})
        cgroup = self.cgroup

        def join() -> None:
            cgroup.join()

        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.netns, *command],
            env=env,
            cwd="/",
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=join,
        )
        run = Started(proc, _now())
        run.reader = threading.Thread(target=_read, args=(proc, run.output), daemon=True)
        run.reader.start()
        return run

    def _finish(self, pod: dict[str, Any], key: tuple[str, str], run: Started) -> None:
        if run.reader is not None:
            run.reader.join(5)
        code = run.proc.returncode
        code = 128 - code if code < 0 else code  # killed by a signal: as the kubelet reports it
        spec = next(c for c in pod["spec"]["ephemeralContainers"] if c["name"] == key[1])
        terminated: dict[str, Any] = {
            "exitCode": code,
            "reason": "Completed" if code == 0 else "Error",
            "startedAt": run.started,
            "finishedAt": _now(),
        }
        if code != 0 and spec.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            tail = bytes(run.output).decode(errors="replace").splitlines()[-MESSAGE_LINES:]
            terminated["message"] = "\n".join(tail)[-MESSAGE_BYTES:]
        self.ran.append((pod["metadata"]["name"], key[1], code))
        self._report(pod, spec, {"terminated": terminated})

    def _report(self, pod: dict[str, Any], container: dict[str, Any], state: dict[str, Any]) -> None:
        """Set the container's entry of `ephemeralContainerStatuses` through /status (a fresh
        read each try: KWOK and controllers write the pod too)."""
        ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        path = self.cluster._path("pods", ns, name)
        entry = {
            "name": container["name"],
            "image": container.get("image", ""),
            "imageID": "",
            "ready": False,
            "restartCount": 0,
            "state": state,
        }
        for _ in range(10):
            try:
                live = self.cluster.call("GET", path)
            except ApiError as exc:
                if exc.status == 404:
                    return
                raise
            if live["metadata"]["uid"] != pod["metadata"]["uid"]:
                return
            status = live.setdefault("status", {})
            others = [s for s in status.get("ephemeralContainerStatuses") or [] if s["name"] != container["name"]]
            status["ephemeralContainerStatuses"] = [*others, entry]
            try:
                self.cluster.call("PUT", path + "/status", live)
                return
            except ApiError as exc:
                if exc.status == 404:
                    return
                if exc.status != 409:
                    raise
        raise AssertionError(f"status of pod {ns}/{name} kept conflicting")

    def _kill(self, key: tuple[str, str]) -> None:
        run = self._running.pop(key, None)
        if run is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run.proc.pid, signal.SIGTERM)
        try:
            run.proc.wait(STOP_GRACE)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(run.proc.pid, signal.SIGKILL)
            run.proc.wait(10)
        if run.reader is not None:
            run.reader.join(5)


def run_as(pod: dict[str, Any], container: dict[str, Any]) -> tuple[tuple[int, int] | None, str]:
    """The kubelet's reading of a container's security context (the container's fields over the
    pod's): (uid, gid) to run as when not root, and the kubelet's refusal when `runAsNonRoot`
    meets a root user (kuberuntime's verifyRunAsNonRoot; the image's user is root here)."""
    pod_sc = pod["spec"].get("securityContext") or {}
    sc = container.get("securityContext") or {}
    uid = sc.get("runAsUser", pod_sc.get("runAsUser"))
    gid = sc.get("runAsGroup", pod_sc.get("runAsGroup"))
    ref = f'"{pod["metadata"]["name"]}_{pod["metadata"]["namespace"]}({pod["metadata"]["uid"]})"'
    if sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")):
        if uid is None:
            return (
                None,
                f"container has runAsNonRoot and image will run as root (pod: {ref}, container: {container['name']})",
            )
        if uid == 0:
            return None, f"container's runAsUser breaks non-root policy (pod: {ref}, container: {container['name']})"
    return ((uid, gid or 0) if uid else None), ""


def _read(proc: subprocess.Popen[bytes], out: bytearray) -> None:
    assert proc.stdout is not None
    for chunk in iter(lambda: proc.stdout.read1(4096) if proc.stdout else b"", b""):
        out += chunk
        del out[: max(0, len(out) - 4 * MESSAGE_BYTES)]
    proc.stdout.close()


# -------------------------------------------------------------------------- the kernel's netem
@functools.cache
def netem_available() -> bool:
    """Whether this kernel has netem: `tc qdisc add dev lo root netem delay 1ms` in a fresh
    network namespace (this one's kernel answers "Specified qdisc kind is unknown")."""
    if shutil.which("unshare") is None or shutil.which("tc") is None:
        return False
    done = subprocess.run(
        ["unshare", "-n", "sh", "-c", "ip link set lo up && tc qdisc add dev lo root netem delay 1ms"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.returncode == 0


def node_qdiscs(cluster: RealCluster, dev: str = "eth0") -> str:
    """`tc qdisc show dev <dev>` in the KWOK nodes' network namespace (the pods' interface)."""
    assert cluster.plane.node_net is not None
    done = subprocess.run(
        ["ip", "netns", "exec", cluster.plane.node_net.name, "tc", "qdisc", "show", "dev", dev],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


# -------------------------------------------------------------------------- fixture
@pytest.fixture
def ephemeral_runner(kube_server: RealCluster) -> Iterator[EphemeralRunner]:
    """Ephemeral containers of pods on KWOK nodes run for real (see the module docstring)."""
    runner = EphemeralRunner(kube_server).start()
    try:
        yield runner
    finally:
        runner.stop()
    assert not runner.errors, f"the ephemeral container runner failed: {runner.errors}"
