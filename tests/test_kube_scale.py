"""pod-kill at scale, over the wire: 1,000 pods of one Deployment (KWOK pods) on the real
control plane, counted where the requests arrive (the recording proxy). (Its speed is measured in benchmarks/, not
here: this pins what makes it fast and what must not change.)"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from drillkit.faults import Undo, fault_class, load_record
from drillkit.faults.kube.pods import _Killer
from drillkit.journal import pending_reverts
from drillkit.kube.api import MAX_IN_FLIGHT
from drillkit.model import Where
from tests.kube_drill import direct_fault
from tests.kubecluster import KubeServer
from tests.kubecluster.cluster import pod_ready

pytestmark = [pytest.mark.wire]
NS = "chatbot"
PODS = 1000
NODES = ("swarm-node-1", "swarm-node-2")


def swarm(server: KubeServer, replicas: int, timeout: float = 300) -> dict[str, str]:
    """A Deployment of `replicas` pods on two KWOK nodes, all Ready; name -> uid."""
    for node in NODES:
        if server.get("nodes", None, node) is None:
            server.seed({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}})
    server.seed(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "swarm", "namespace": NS, "labels": {"app": "swarm"}},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "swarm"}},
                "template": {
                    "metadata": {"labels": {"app": "swarm"}},
                    "spec": {
                        "terminationGracePeriodSeconds": 0,
                        "containers": [{"name": "bee", "image": "ghcr.io/drillkit/bee:1"}],
                    },
                },
            },
        }
    )

    def pods() -> dict[str, str]:
        found = server.list("pods", NS, label_selector="app=swarm")
        return {p["metadata"]["name"]: p["metadata"]["uid"] for p in found if pod_ready(p)}

    server.wait_for(lambda: len(pods()) == replicas, timeout, f"{replicas} swarm pods Ready")
    return pods()


@pytest.mark.timeout(900)  # the real control plane brings 1,000 pods up twice: minutes on 2 busy cores
def test_pod_kill_of_1000_pods_costs_one_request_per_pod_and_a_linear_journal(
    kube_server: KubeServer, tmp_path: Path
) -> None:
    kube_server.ensure_namespace(NS)
    before = swarm(kube_server, PODS)
    d = direct_fault(
        kube_server,
        tmp_path,
        {"kind": "pod-kill", "selector": "app=swarm", "count": PODS, "grace_period": 0, "recovery_timeout": "300s"},
        guardrails={"max_targets": "100%"},
    )
    deletes_at_harm: list[int] = []

    def deletes() -> int:
        return sum(1 for r in kube_server.requests[start:] if r.method == "DELETE")

    d.ctx.on_harm = lambda _at: deletes_at_harm.append(deletes())
    start = len(kube_server.requests)
    try:
        with ExitStack() as stack:
            undo = Undo(stack, d.ctx)
            d.fault.inject(d.fault.preflight(), undo)
            sent = kube_server.requests[start:]
            record = pending_reverts(d.folder)[0]
        events = d.events()
    finally:
        d.journal.close()

    by_kind: dict[str, int] = {}
    for r in sent:
        key = f"{r.method} {r.path.rsplit('/', 2)[-2] if r.method != 'DELETE' else 'pods/*'}"
        by_kind[key] = by_kind.get(key, 0) + 1
    assert len(sent) <= 1.1 * PODS, f"{len(sent)} API requests for {PODS} pods: {by_kind}"
    deleted = {r.path.rsplit("/", 1)[-1] for r in sent if r.method == "DELETE"}
    assert deleted == set(before), f"deleted {len(deleted)} of {len(before)} pods: {by_kind}"
    rs_gets = [r.path for r in sent if r.method == "GET" and "/replicasets/" in r.path]
    assert len(rs_gets) == 1, f"the ReplicaSet's owner looked up {len(rs_gets)} times"

    # `injected` is the first delete accepted, not the last
    assert deletes_at_harm and deletes_at_harm[0] <= 2 * MAX_IN_FLIGHT, deletes_at_harm

    # the victims journalled a chunk at a time, ahead of their deletes (a first small chunk, so
    # the first delete never waits for the whole batch's line), each victim once: linear in pods
    updates = [e for e in events if e.kind == "revert_updated"]
    chunks = [len(e.data["append"]["killed"]) for e in updates]
    assert chunks[0] == _Killer.FIRST_CHUNK and sum(chunks) == PODS and len(chunks) <= 8, chunks
    journalled = {k["name"]: e.mono for e in updates for k in e.data["append"]["killed"]}
    early = [r.path for r in sent if r.method == "DELETE" and r.at < journalled[r.path.rsplit("/", 1)[-1]]]
    assert not early, f"{len(early)} deletes arrived before their victim was journalled: {early[:3]}"
    journal_bytes = (d.folder / "journal.jsonl").stat().st_size
    assert journal_bytes < 250 * PODS, f"journal of {journal_bytes} bytes for {PODS} pods"

    assert [e.data["result"]["owners_ready"] for e in events if e.kind == "revert_done"] == [{"deployment/swarm": True}]
    # and `drillkit cleanup` rebuilds the typed record from the appended victims
    assert record.fault == "pod-kill" and len(record.data["killed"]) == PODS
    typed: Any = load_record(fault_class("pod-kill", "kubernetes"), record.data, Where(str(record.journal), 1, "data"))
    assert {k.uid for k in typed.killed} == set(before.values())
    assert {k.owner for k in typed.killed} == {"deployment/swarm"}


@pytest.mark.timeout(600)
def test_a_429_with_retry_after_holds_every_delete_worker(kube_server: KubeServer, tmp_path: Path) -> None:
    """API Priority and Fairness sheds load with 429 and Retry-After: the worker that got it
    retries after that time, and the other workers send nothing meanwhile either (they would
    only collect 429s of their own). The 429 is the recording proxy's, on the wire."""
    kube_server.ensure_namespace(NS)
    pods = 200
    before = swarm(kube_server, pods)
    d = direct_fault(
        kube_server,
        tmp_path,
        {"kind": "pod-kill", "selector": "app=swarm", "count": pods, "grace_period": 0, "recovery_timeout": "300s"},
        guardrails={"max_targets": "100%"},
    )
    found = d.fault.preflight()
    start = len(kube_server.requests)
    # the first delete: the other workers' first deletes are already on their way
    kube_server.inject_error("DELETE", f"/namespaces/{NS}/pods/", status=429, retry_after=1, times=1)
    try:
        with ExitStack() as stack:
            d.fault.inject(found, Undo(stack, d.ctx))
            sent = [r for r in kube_server.requests[start:] if r.method == "DELETE"]
            stack.pop_all()  # the Deployment brings the pods back
    finally:
        d.ctx.stop.set("measured")
        d.journal.close()
    shed = [r for r in sent if r.status == 429]
    assert len(shed) == 1, [r.status for r in sent]
    ok = {r.path.rsplit("/", 1)[-1] for r in sent if r.status == 200}
    assert ok == set(before), f"{len(ok)} of {pods} pods deleted"
    at = shed[0].at
    # requests already on their way when the 429 was answered may still arrive just after it
    held = [round(r.at - at, 3) for r in sent if at + 0.3 < r.at < at + 0.95]
    assert not held, f"deletes sent during the Retry-After second (seconds after the 429): {held}"
    assert max(r.at for r in sent) >= at + 1.0, "the refused delete was not retried after Retry-After"


def test_appended_victims_of_repeated_kills_are_rebuilt_in_order(tmp_path: Path) -> None:
    """Each batch appends; a later full `data` (older journals) replaces; done pops."""
    from drillkit.journal import Journal

    j = Journal(tmp_path / "journal.jsonl")
    j.append("started", run_id="r1", scenario={})
    j.append("revert_registered", id=1, fault="pod-kill", data={"namespace": NS, "recovery_timeout": 1, "killed": []})
    for batch in (["a", "b"], ["c"], ["d", "e"]):
        j.append("revert_updated", id=1, fault="pod-kill", append={"killed": [{"name": n, "uid": n} for n in batch]})
    j.close()
    (pending,) = pending_reverts(tmp_path)
    assert [k["name"] for k in pending.data["killed"]] == ["a", "b", "c", "d", "e"]
    typed: Any = load_record(fault_class("pod-kill", "kubernetes"), pending.data, Where("j", pending.line, "data"))
    assert [k.name for k in typed.killed] == ["a", "b", "c", "d", "e"]
