"""node-drain against the real apiserver (policy/v1 evictions of pods on KWOK nodes): what
`kubectl drain` refuses, parallel evictions with a deadline per pod, and the namespaces a
scenario protects.

Why: the old drain evicted owner-less pods for good and emptyDir data silently, ran evictions
one after another against one shared deadline, and evicted the monitoring the drill's own
detection needs.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from drillkit.errors import PreflightError
from drillkit.faults import Undo
from tests.kube_drill import direct_fault
from tests.kubecluster import KubeServer
from tests.kubecluster.cluster import pod_ready

pytestmark = [pytest.mark.wire]
NS = "chatbot"
POD = {"terminationGracePeriodSeconds": 1}  # an evicted pod stays Terminating this long


def db_node(server: KubeServer) -> str:
    db = server.get("pods", NS, "chatbot-db-0")
    assert db is not None
    return str(db["spec"]["nodeName"])


def bare_pod(server: KubeServer, name: str, node: str, ns: str = NS, **spec: Any) -> None:
    server.seed(
        {
            "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}], **POD, **spec},
        }
    )


def replicaset_pod(server: KubeServer, name: str, node: str, **spec: Any) -> str:
    """A ReplicaSet `name` whose one pod runs on `node` (a controller recreates it): the pod's name."""
    labels = {"app": name}
    pod_spec = {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}], **POD, **spec}
    server.seed(
        {
            "kind": "ReplicaSet",
            "apiVersion": "apps/v1",
            "metadata": {"name": name, "namespace": NS, "labels": labels},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": pod_spec},
            },
        }
    )
    pods = server.wait_for(
        lambda: [p for p in server.list("pods", NS, f"app={name}") if pod_ready(p)], 30, f"ReplicaSet {name}'s pod"
    )
    return str(pods[0]["metadata"]["name"])


def drain(server: KubeServer, tmp_path: Path, run_id: str = "deadbeef", **params: Any) -> list[dict[str, Any]]:
    d = direct_fault(server, tmp_path, {"kind": "node-drain", "pod_selector": "app=chatbot-db", **params}, run_id)
    found = d.fault.preflight()
    with ExitStack() as stack:
        d.fault.inject(found, Undo(stack, d.ctx))
    d.journal.close()
    return [e.data for e in d.events() if e.kind == "drain_result"]


@pytest.mark.parametrize(
    ("extra", "why"),
    [({}, "no controller recreates it"), ({"volumes": [{"name": "scratch", "emptyDir": {}}]}, "emptyDir scratch")],
)
def test_drain_refuses_what_would_be_lost_unless_forced(
    kube_demo: KubeServer, tmp_path: Path, extra: dict[str, Any], why: str
) -> None:
    node = db_node(kube_demo)
    if extra:  # a ReplicaSet's pod: only its emptyDir is in question
        lonely = replicaset_pod(kube_demo, "lonely", node, **extra)
    else:
        lonely = "lonely"
        bare_pod(kube_demo, lonely, node)
    d = direct_fault(kube_demo, tmp_path, {"kind": "node-drain", "pod_selector": "app=chatbot-db"})
    with pytest.raises(PreflightError, match=why):
        d.fault.preflight()
    d.journal.close()
    assert kube_demo.get("pods", NS, lonely) is not None
    assert not (kube_demo.get("nodes", None, node) or {})["spec"].get("unschedulable")
    results = drain(kube_demo, tmp_path, "forced", force=True)
    assert f"{NS}/{lonely}" in results[0]["evicted"], results


def test_drain_leaves_protected_namespaces_alone(kube_demo: KubeServer, tmp_path: Path) -> None:
    node = db_node(kube_demo)
    kube_demo.seed({"kind": "Namespace", "metadata": {"name": "monitoring"}})
    bare_pod(kube_demo, "prometheus-0", node, ns="monitoring")
    results = drain(kube_demo, tmp_path, protect_namespaces=["monitoring"])
    assert kube_demo.get("pods", "monitoring", "prometheus-0") is not None, "monitoring pod evicted"
    assert "monitoring/prometheus-0" not in results[0]["evicted"], results


def test_drain_evicts_in_parallel_with_a_deadline_per_pod(kube_demo: KubeServer, tmp_path: Path) -> None:
    """Each eviction answered after 3 s: in parallel the drain takes 3 s and the pods' 1 s grace
    period (it waits for the evicted pods to be gone), one after another it would take 3 s per pod."""
    node = db_node(kube_demo)
    on_node = {p["metadata"]["uid"] for p in kube_demo.list("pods", field_selector=f"spec.nodeName={node}")}
    assert len(on_node) >= 2, "the demo node holds too few pods for this test"
    d = direct_fault(
        kube_demo, tmp_path, {"kind": "node-drain", "pod_selector": "app=chatbot-db", "evict_timeout": "30s"}
    )
    found = d.fault.preflight()
    kube_demo.inject_error(method="POST", path_contains="/eviction", status=None, delay=3.0, times=len(on_node))
    start = time.monotonic()
    with ExitStack() as stack:
        d.fault.inject(found, Undo(stack, d.ctx))
        took = time.monotonic() - start
        still = {p["metadata"]["uid"] for p in kube_demo.list("pods", field_selector=f"spec.nodeName={node}")} & on_node
    d.journal.close()
    results = [e.data for e in d.events() if e.kind == "drain_result"]
    assert len(results[0]["evicted"]) == len(on_node) and "terminating" not in results[0], results
    assert not still, f"the drain returned with evicted pods still on {node}: {still}"
    assert took < 3.0 * len(on_node) - 0.5, f"{len(on_node)} evictions of 3 s each took {took:.1f}s: not parallel"


@pytest.mark.parametrize("recordoned", [False, True], ids=["drillkits-cordon", "on-call-cordoned-again"])
def test_revert_uncordons_only_drillkits_cordon(kube_demo: KubeServer, tmp_path: Path, recordoned: bool) -> None:
    """On-call uncordons the drained node and cordons it again with the real kubectl during the
    drill: the revert leaves their cordon (and removes drillkit's mark); otherwise it uncordons."""
    node = db_node(kube_demo)
    d = direct_fault(kube_demo, tmp_path, {"kind": "node-drain", "pod_selector": "app=chatbot-db", "force": True})
    found = d.fault.preflight()
    with ExitStack() as stack:
        d.fault.inject(found, Undo(stack, d.ctx))
        assert (kube_demo.get("nodes", None, node) or {})["spec"].get("unschedulable") is True
        if recordoned:
            kube_demo.kubectl("uncordon", node)
            kube_demo.kubectl("cordon", node)
    d.journal.close()
    (done,) = [e.data["result"] for e in d.events() if e.kind == "revert_done"]
    after = kube_demo.get("nodes", None, node)
    assert after is not None and "drillkit.io/cordoned-by" not in (after["metadata"].get("annotations") or {})
    managers = [(m["manager"], m.get("fieldsV1", {}).get("f:spec")) for m in after["metadata"]["managedFields"]]
    if recordoned:
        assert after["spec"].get("unschedulable") is True, f"on-call's cordon undone: {done}; {managers}"
        assert done["uncordoned"] is False and "cordoned again by kubectl;" in done["changed during the drill"]
    else:
        assert not after["spec"].get("unschedulable"), f"drillkit's cordon left: {done}; {managers}"
        assert done == {"uncordoned": True}, done
