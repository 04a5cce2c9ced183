"""One drill per namespace (issue 8, case 1, on Kubernetes): the Lease `drillkit-drill-lock`.

Why: two drills on one namespace corrupt each other's "state to restore". The lock lives in
the cluster, is taken and released as deploy/rbac.yaml's ServiceAccount (the real apiserver's
RBAC enforces it), names the drill holding it, and expires when a killed drill stops renewing it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from drillkit.engine import Status
from drillkit.kube import Kube, resolve_settings
from drillkit.kube.lease import LEASE_NAME, micro_time
from drillkit.scenario import load_scenario
from drillkit.targetlock import TargetBusy, hold_target
from tests.helpers import write_scenario
from tests.kube_drill import run_drill, scenario
from tests.kubecluster import CONTEXT, KubeServer
from tests.promfixture import PromEnv

pytestmark = [pytest.mark.wire]
NS = "chatbot"


@pytest.fixture
def kubes(kube_demo: KubeServer) -> Iterator[list[Kube]]:
    """Two facades (two runners), as the ServiceAccount of deploy/rbac.yaml."""
    kube_demo.enforce_rbac()
    made = [Kube(resolve_settings(None, CONTEXT, (), kube_demo.kubeconfig_path)) for _ in range(2)]
    try:
        yield made
    finally:
        for k in made:
            k.close()
        kube_demo.rbac = None
    assert not kube_demo.denied, f"RBAC (deploy/rbac.yaml) refused: {kube_demo.denied}"


def lease(server: KubeServer) -> dict | None:
    return server.get("leases", NS, LEASE_NAME)


def test_second_run_is_refused_naming_the_first(kube_demo: KubeServer, kubes: list[Kube]) -> None:
    first, second = kubes
    assert first.acquire_lease(NS, "run1111", "chatbot-outage") is None
    held = lease(kube_demo)
    assert held is not None, "no Lease was created"
    assert held["spec"]["holderIdentity"] == "run1111"
    assert held["metadata"]["labels"]["drillkit.io/run-id"] == "run1111"
    assert held["spec"]["leaseDurationSeconds"] == 60 and held["spec"]["renewTime"]

    holder = second.acquire_lease(NS, "run2222", "db-exhaustion")
    assert holder is not None and holder.startswith("chatbot-outage (run run1111, since "), holder
    after = lease(kube_demo)
    assert after is not None and after["spec"]["holderIdentity"] == "run1111", "the refused run took the lock"

    assert first.acquire_lease(NS, "run1111", "chatbot-outage") is None, "the holder could not renew"
    assert second.acquire_lease(NS, "run2222", "db-exhaustion", force=True) is None, "--force was refused"
    forced = lease(kube_demo)
    assert forced is not None and forced["spec"]["holderIdentity"] == "run1111", "--force took the holder's lock"


def test_hold_target_raises_target_busy_and_releases(kube_demo: KubeServer, kubes: list[Kube], tmp_path: Path) -> None:
    sc = load_scenario(write_scenario(tmp_path / "s.yaml", scenario([{"kind": "pod-kill", "selector": "app=x"}])))
    settings = resolve_settings(None, CONTEXT, (), kube_demo.kubeconfig_path)
    with hold_target(sc, "runaaaa", lambda: Kube(settings)):
        assert (lease(kube_demo) or {}).get("spec", {}).get("holderIdentity") == "runaaaa"
        busy = r"drill kube-wire-drill \(run runaaaa, since .*\) is running on namespace chatbot"
        with pytest.raises(TargetBusy, match=busy), hold_target(sc, "runbbbb", lambda: Kube(settings)):
            pass
    assert lease(kube_demo) is None, "the lock was not released"


def test_expired_lease_is_taken_over(kube_demo: KubeServer, kubes: list[Kube]) -> None:
    """A killed drill never releases its lease; once unrenewed for its duration, it is free."""
    stale = datetime.now(UTC) - timedelta(seconds=61)
    kube_demo.seed(
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": LEASE_NAME, "namespace": NS, "labels": {"drillkit.io/run-id": "deadrun"}},
            "spec": {
                "holderIdentity": "deadrun",
                "leaseDurationSeconds": 60,
                "acquireTime": micro_time(stale),
                "renewTime": micro_time(stale),
            },
        }
    )
    assert kubes[0].acquire_lease(NS, "run3333", "chatbot-outage") is None
    taken = lease(kube_demo)
    assert taken is not None and taken["spec"]["holderIdentity"] == "run3333", taken
    assert taken["spec"]["leaseTransitions"] == 1
    assert taken["metadata"]["labels"]["drillkit.io/run-id"] == "run3333"


def test_release_deletes_only_our_lease(kube_demo: KubeServer, kubes: list[Kube]) -> None:
    first, second = kubes
    assert first.acquire_lease(NS, "run4444", "a") is None
    assert second.release_lease(NS, "run5555") is False, "another run released the holder's lock"
    assert lease(kube_demo) is not None
    assert first.release_lease(NS, "run4444") is True
    assert lease(kube_demo) is None
    assert first.release_lease(NS, "run4444") is False, "releasing twice must be harmless"
    assert second.acquire_lease(NS, "run5555", "b") is None, "a released lock is free at once"


def test_held_lease_is_renewed_and_stops_when_released(kube_demo: KubeServer, kubes: list[Kube]) -> None:
    k = kubes[0]
    k.lease_seconds = 1.5  # renewed every 0.5 s; expires 2 s (rounded up) after the last renewal
    assert k.acquire_lease(NS, "run6666", "a") is None
    first = (lease(kube_demo) or {})["spec"]["renewTime"]
    time.sleep(3.0)  # longer than the lease: only renewals keep it
    now = (lease(kube_demo) or {})["spec"]["renewTime"]
    assert now > first, f"renewTime did not move in 3 s: {first} -> {now}"
    assert kubes[1].acquire_lease(NS, "run7777", "b") is not None, "a renewed lease was taken over"
    k.release_lease(NS, "run6666")
    puts = len([r for r in kube_demo.requests if r.method == "PUT" and "/leases/" in r.path])
    time.sleep(1.2)
    later = len([r for r in kube_demo.requests if r.method == "PUT" and "/leases/" in r.path])
    assert later == puts, "the lease is still renewed after its release"


def test_a_drill_holds_the_lock_and_releases_it_after_the_leftover_check(
    kube_demo: KubeServer, prom_env: PromEnv, tmp_path: Path
) -> None:
    """The Lease is the lock, not harm: the leftover check (which lists run-labelled Jobs,
    Pods, Secrets, workloads) does not count it, and the lock is released after that check,
    so no other drill starts before the namespace is verified clean."""
    run = run_drill(
        kube_demo, prom_env, tmp_path, scenario([{"kind": "pod-kill", "selector": "app=chatbot-api", "count": 1}])
    )
    assert run.event("leftovers_checked").data["remaining"] == [], run.output
    assert "left in the cluster" not in "\n".join(run.output)
    run_id = run.result.run_id
    created = [
        r.body
        for r in kube_demo.requests
        if r.method == "POST" and r.path == f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases" and r.status == 201
    ]
    assert created and created[0]["spec"]["holderIdentity"] == run_id, f"the drill took no lock: {created}"
    assert lease(kube_demo) is None, "the drill did not release its lock"
    paths = [(r.method, r.path) for r in kube_demo.requests]
    delete = paths.index(("DELETE", f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/{LEASE_NAME}"))
    listed = max(i for i, (m, p) in enumerate(paths) if m == "GET" and p == f"/api/v1/namespaces/{NS}/secrets")
    assert listed < delete, "the lock was released before the leftover check"


def test_a_drill_on_a_locked_namespace_is_not_started(
    kube_demo: KubeServer, kubes: list[Kube], prom_env: PromEnv, tmp_path: Path
) -> None:
    assert kubes[0].acquire_lease(NS, "run8888", "chatbot-outage") is None
    before = [p["metadata"]["uid"] for p in kube_demo.list("pods", NS)]
    run = run_drill(
        kube_demo, prom_env, tmp_path, scenario([{"kind": "pod-kill", "selector": "app=chatbot-api", "count": 1}])
    )
    assert run.result.status is Status.NOT_STARTED, run.output
    assert "chatbot-outage (run run8888" in "\n".join(run.output), run.output
    assert [p["metadata"]["uid"] for p in kube_demo.list("pods", NS)] == before, "a refused drill killed a pod"
    assert (lease(kube_demo) or {})["spec"]["holderIdentity"] == "run8888"


def test_every_namespace_the_drill_names_is_locked(kube_demo: KubeServer, tmp_path: Path) -> None:
    """A fault may name its own namespace: the drill locks it too (protected ones excepted)."""
    kube_demo.seed({"kind": "Namespace", "metadata": {"name": "payments"}})
    faults = [
        {"kind": "pod-kill", "selector": "app=x"},
        {"kind": "pod-kill", "selector": "app=y", "namespace": "payments"},
        {"kind": "pod-kill", "selector": "app=z", "namespace": "kube-system"},
    ]
    sc = load_scenario(write_scenario(tmp_path / "s.yaml", scenario(faults)))
    settings = resolve_settings(None, CONTEXT, (), kube_demo.kubeconfig_path)
    with hold_target(sc, "runcccc", lambda: Kube(settings)):
        held = {(o["metadata"]["namespace"], o["spec"]["holderIdentity"]) for o in drill_locks(kube_demo)}
        assert held == {(NS, "runcccc"), ("payments", "runcccc")}, held
    assert drill_locks(kube_demo) == [], "the locks were not released"


def drill_locks(server: KubeServer) -> list[dict]:
    """drillkit's Leases in every namespace (not the control plane's own, e.g. kube-node-lease)."""
    return server.list("leases", field_selector=f"metadata.name={LEASE_NAME}")
