"""node-memory-pressure against the real control plane, with the test playing the node's kubelet.

Why: KWOK's nodes feel no memory, so the part of the kubelet this fault depends on is played here
through the API, as the kubelet does it: once enough stress pods run, `Kubelet` sets the Node's
MemoryPressure condition (status subresource) and evicts pods the way the eviction manager does
(phase Failed, reason Evicted, a DisruptionTarget condition; the pod object stays); once the stress
pods are gone, it clears the condition. Everything else is real: the apiserver, RBAC (the fault
runs as the ServiceAccount with deploy/rbac-node-memory.yaml) and deploy/admission-policy.yaml.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from drillkit.errors import PreflightError
from drillkit.faults.kube.memory import quantity_bytes
from drillkit.faults.kube.nodememory import MEMORY_DRILL_LABEL, NodeLoad
from tests.kube_drill import direct_fault, run_drill, scenario
from tests.kubecluster import KubeServer
from tests.promfixture import PromEnv

pytestmark = [pytest.mark.wire, pytest.mark.integration]
NS = "chatbot"
ALLOCATABLE = "2Gi"
RUN_LABEL = "drillkit.io/run-id"
CONTROL = "kind-drillkit-control-plane"


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def set_pressure(server: KubeServer, node: str, on: bool) -> None:
    def change(n: dict[str, Any]) -> None:
        conditions = [c for c in n["status"].get("conditions") or [] if c["type"] != "MemoryPressure"]
        reason = "KubeletHasInsufficientMemory" if on else "KubeletHasSufficientMemory"
        status = "True" if on else "False"
        conditions.append(
            {"type": "MemoryPressure", "status": status, "reason": reason, "message": "played by the test",
             "lastHeartbeatTime": now(), "lastTransitionTime": now()}
        )  # fmt: skip
        n["status"]["conditions"] = conditions

    server.update("nodes", None, node, change)


def pressure(server: KubeServer, node: str) -> bool:
    n = server.get("nodes", None, node) or {}
    return any(
        c["type"] == "MemoryPressure" and c["status"] == "True" for c in (n.get("status") or {}).get("conditions") or []
    )


def evict(server: KubeServer, ns: str, name: str) -> None:
    """What the kubelet's eviction manager does to a pod: Failed, Evicted, DisruptionTarget."""

    def change(p: dict[str, Any]) -> None:
        p["status"]["phase"] = "Failed"
        p["status"]["reason"] = "Evicted"
        p["status"]["message"] = "The node was low on resource: memory."
        p["status"].setdefault("conditions", []).append(
            {
                "type": "DisruptionTarget",
                "status": "True",
                "reason": "TerminationByKubelet",
                "lastTransitionTime": now(),
            }
        )

    server.update("pods", ns, name, change)


def stress_pods(server: KubeServer, node: str) -> list[dict[str, Any]]:
    return [p for p in server.list("pods", NS, label_selector=RUN_LABEL) if p["spec"].get("nodeName") == node]


class Kubelet:
    """The node's kubelet, as far as memory goes: MemoryPressure once `threshold` stress pods run
    (evicting one of them and one chatbot pod on the node), cleared once no stress pod is left."""

    def __init__(self, server: KubeServer, node: str, threshold: int, evict_also: str | None = None) -> None:
        self.server, self.node, self.threshold, self.evict_also = server, node, threshold, evict_also
        self.done = threading.Event()
        self.pressured_at_count: int | None = None
        self.relieved = False
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.done.wait(0.1):
            pods = stress_pods(self.server, self.node)
            if self.pressured_at_count is None and len(pods) >= self.threshold:
                set_pressure(self.server, self.node, True)
                # the stress pods there are once the condition is set (more may have come meanwhile)
                self.pressured_at_count = len(stress_pods(self.server, self.node))
                evict(self.server, NS, pods[0]["metadata"]["name"])
                if self.evict_also:
                    evict(self.server, NS, self.evict_also)
            elif self.pressured_at_count is not None and not pods and not self.relieved:
                time.sleep(1.0)  # the kubelet notices on its next housekeeping
                set_pressure(self.server, self.node, False)
                self.relieved = True

    def __enter__(self) -> Kubelet:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join(10)


@pytest.fixture
def node(kube_demo: KubeServer) -> str:
    """The worker running the first chatbot-api pod (where the scheduler put it)."""
    api = sorted(kube_demo.list("pods", NS, label_selector="app=chatbot-api"), key=lambda p: p["metadata"]["name"])
    return str(api[0]["spec"]["nodeName"])


@pytest.fixture
def bounded(kube_demo: KubeServer, node: str) -> KubeServer:
    """That worker labelled for memory drills with 2Gi allocatable (as kind-config.yaml bounds one)."""

    def change(n: dict[str, Any]) -> None:
        n["metadata"].setdefault("labels", {})[MEMORY_DRILL_LABEL] = "true"
        n["status"].setdefault("allocatable", {})["memory"] = ALLOCATABLE
        n["status"].setdefault("capacity", {})["memory"] = "3Gi"

    for other in kube_demo.list("nodes", label_selector=MEMORY_DRILL_LABEL):  # demo.yaml labels worker2
        if other["metadata"]["name"] != node:
            kube_demo.update(
                "nodes", None, other["metadata"]["name"], lambda n: n["metadata"]["labels"].pop(MEMORY_DRILL_LABEL)
            )
    kube_demo.update("nodes", None, node, change)
    got = kube_demo.get("nodes", None, node) or {}
    assert got["status"]["allocatable"]["memory"] == ALLOCATABLE, got["status"]
    return kube_demo


def requested_on(server: KubeServer, node: str) -> int:
    """What the pods on `node` request, read as the admin (the scheduler's view)."""
    total = 0
    for pod in server.list("pods", None, field_selector=f"spec.nodeName={node}"):
        if pod["status"].get("phase") in ("Succeeded", "Failed"):
            continue
        for c in pod["spec"]["containers"]:
            total += quantity_bytes(((c.get("resources") or {}).get("requests") or {}).get("memory") or "0")
    return total


FAULT = {"kind": "node-memory-pressure", "step": "64Mi", "step_every": "500ms", "wait": "20s", "headroom": "0"}


def test_sized_from_allocatable_minus_requests(bounded: KubeServer, node: str, tmp_path: Path) -> None:
    d = direct_fault(bounded, tmp_path, FAULT)
    try:
        found = d.fault.preflight()
    finally:
        d.journal.close()
    assert isinstance(found, NodeLoad) and found.node.name == node
    requested = requested_on(bounded, node)
    assert requested > 0, "no pod of the demo platform requests memory on the node"
    assert (found.allocatable, found.requested) == (2 * 2**30, requested), found
    assert found.load == 2 * 2**30 - requested and found.steps == -(-found.load // 2**26), found


def test_refuses_unlabelled_nodes_and_loads_over_the_cap(bounded: KubeServer, node: str, tmp_path: Path) -> None:
    other = next(n["metadata"]["name"] for n in bounded.list("nodes") if n["metadata"]["name"] not in (node, CONTROL))
    cases = [
        ({"node": other}, "is not labelled drillkit.io/memory-drill=true"),
        ({"max_memory": "1Gi"}, "more than max_memory 1Gi"),
        ({"node": other, "allow_unlabelled": True, "max_memory": "2Gi"}, "more than max_memory 2Gi"),
        ({"node": "nope"}, "node 'nope' not found"),
    ]
    for i, (params, said) in enumerate(cases):
        d = direct_fault(bounded, tmp_path, {**FAULT, **params}, run_id=f"r{i}")
        try:
            with pytest.raises(PreflightError) as err:
                d.fault.preflight()
        finally:
            d.journal.close()
        assert said in str(err.value), (params, str(err.value))
    # opted in: an unlabelled node of a big machine is still refused (the cap), a small one is loaded
    bounded.update("nodes", None, other, lambda n: n["status"]["allocatable"].update(memory="64Gi"))
    d = direct_fault(bounded, tmp_path, {**FAULT, "node": other, "allow_unlabelled": True}, "r9")
    try:
        with pytest.raises(PreflightError, match="more than max_memory 4Gi"):
            d.fault.preflight()
        bounded.update("nodes", None, other, lambda n: n["status"]["allocatable"].update(memory="1Gi"))
        assert d.fault.preflight().node.name == other
    finally:
        d.journal.close()
    # a LimitRange's default limit would OOM-kill each stress pod in its own cgroup, far from the node's threshold
    bounded.seed(
        {
            "kind": "LimitRange",
            "metadata": {"name": "defaults", "namespace": NS},
            "spec": {"limits": [{"type": "Container", "default": {"memory": "64Mi"}}]},
        }
    )
    d = direct_fault(bounded, tmp_path, FAULT, run_id="r11")
    try:
        with pytest.raises(PreflightError, match="gives the stress pods a memory limit of 64Mi"):
            d.fault.preflight()
    finally:
        d.journal.close()
    bounded.delete("limitranges", NS, "defaults")
    # without any labelled node
    bounded.update("nodes", None, node, lambda n: n["metadata"]["labels"].pop(MEMORY_DRILL_LABEL))
    d = direct_fault(bounded, tmp_path, FAULT, run_id="r10")
    try:
        with pytest.raises(PreflightError, match="no node is labelled"):
            d.fault.preflight()
    finally:
        d.journal.close()
    assert not bounded.list("pods", NS, label_selector=RUN_LABEL), "preflight created something"


def test_ramps_until_memory_pressure_then_reverts(
    bounded: KubeServer, node: str, prom_env: PromEnv, tmp_path: Path
) -> None:
    api_on_node = [
        p["metadata"]["name"]
        for p in bounded.list("pods", NS, label_selector="app=chatbot-api")
        if p["spec"].get("nodeName") == node
    ]
    assert api_on_node, "the demo has no chatbot-api pod on the node"
    # a pod evicted before the drill: not the drill's to delete
    bounded.seed(
        {
            "kind": "Pod",
            "metadata": {"name": "evicted-earlier", "namespace": NS},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox:1.36"}]},
        }
    )
    bounded.wait_for(lambda: (bounded.get("pods", NS, "evicted-earlier") or {}).get("status", {}).get("podIP"))
    evict(bounded, NS, "evicted-earlier")
    with Kubelet(bounded, node, threshold=3, evict_also=api_on_node[0]) as kubelet:
        run = run_drill(bounded, prom_env, tmp_path, scenario([FAULT]))
    out = "\n".join(run.output)
    reached = run.event("memory_pressure").data
    assert kubelet.pressured_at_count is not None, out
    # it stopped growing at the condition: at most one create (its Node read already done) followed it
    posts = [r for r in bounded.requests if r.method == "POST" and r.path == f"/api/v1/namespaces/{NS}/pods"]
    made = [r.body for r in posts if "dryRun" not in r.query]
    assert kubelet.pressured_at_count <= len(made) <= kubelet.pressured_at_count + 1, (len(made), out)
    assert reached["stress_pods"] == len(made) and reached["node"] == node, reached
    assert len(made) < -(-(2 * 2**30 - requested_on(bounded, node)) // 2**26), "it never stopped at the pressure"
    for body in made:
        spec = body["spec"]
        assert body["metadata"]["labels"][RUN_LABEL] == run.result.run_id, body["metadata"]
        assert spec["nodeName"] == node, spec
        (c,) = spec["containers"]
        assert c["resources"]["requests"] == {"memory": "16Mi", "cpu": "10m"}, "a small request"
        assert not c["resources"].get("limits"), f"no limit: {c['resources']}"
        assert c["args"][:4] == ["--vm", "1", "--vm-bytes", str(2**26)], c["args"]
    # the revert: stress pods and the pod evicted during the drill deleted, the earlier one kept
    result = run.reverts()[0]["result"]
    assert result["memory_pressure"] is False and kubelet.relieved, result
    assert sorted(result["deleted"]) == sorted(b["metadata"]["name"] for b in made), result
    assert result["evicted_deleted"] == [api_on_node[0]], result
    assert not stress_pods(bounded, node)
    gone = bounded.get("pods", NS, api_on_node[0])
    assert gone is None or gone["metadata"].get("deletionTimestamp"), "the evicted chatbot pod was left"
    assert bounded.get("pods", NS, "evicted-earlier") is not None, "a pod evicted before the drill was deleted"
    assert not pressure(bounded, node)
    assert run.event("leftovers_checked").data["remaining"] == []


def test_fails_clearly_when_the_node_never_reports_pressure(
    bounded: KubeServer, node: str, prom_env: PromEnv, tmp_path: Path
) -> None:
    bounded.update("nodes", None, node, lambda n: n["status"]["allocatable"].update(memory="1Gi"))
    fault = {**FAULT, "step": "256Mi", "step_every": "200ms", "wait": "2s"}
    run = run_drill(bounded, prom_env, tmp_path, scenario([fault]))
    error = run.event("error").data["error"]
    assert f"node {node} reported no MemoryPressure within 2s" in error, error
    assert run.reverts() and run.reverts()[0]["result"]["memory_pressure"] is False
    assert not stress_pods(bounded, node), "the revert left stress pods"
