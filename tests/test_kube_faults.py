"""Each Kubernetes fault run through the engine against the Kubernetes API test server.

Every test asserts the server-side effect of the fault (with the evidence in the message) and
that the revert put the cluster back exactly as it was.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from tests.kube_drill import no_secret_values, report, run_drill, scenario
from tests.kubeserver import KubeServer
from tests.promfixture import PromEnv

pytestmark = [pytest.mark.wire, pytest.mark.integration]
NS = "chatbot"


@pytest.fixture
def kube_server_options() -> dict[str, float]:
    return {"ready_delay": 0.15}


def api_pods(server: KubeServer) -> dict[str, str]:
    """name -> uid of the chatbot-api pods."""
    return {p["metadata"]["name"]: p["metadata"]["uid"]
            for p in server.list("pods", NS, label_selector="app=chatbot-api")}


def ready_count(server: KubeServer, selector: str = "app=chatbot-api") -> int:
    return sum(1 for p in server.list("pods", NS, label_selector=selector)
               if any(c["type"] == "Ready" and c["status"] == "True"
                      for c in p["status"].get("conditions", [])))


def test_pod_kill_deletes_pods_and_owner_restores_them(kube_demo: KubeServer, prom_env: PromEnv,
                                                       tmp_path: Path) -> None:
    before = api_pods(kube_demo)
    run = run_drill(kube_demo, prom_env, tmp_path, scenario(
        [{"kind": "pod-kill", "selector": "app=chatbot-api", "count": 2, "pick": "oldest",
          "grace_period": 0}], guardrails={"max_targets": 2}))
    killed = run.event("revert_registered")  # registered before any delete
    updates = [e.data["data"]["killed"] for e in run.events if e.kind == "revert_updated"]
    victims = {k["name"]: k["uid"] for k in updates[-1]}
    assert len(victims) == 2 and set(victims.items()) <= set(before.items()), (victims, before)
    after = api_pods(kube_demo)
    assert not set(victims.values()) & set(after.values()), (
        f"killed pod UIDs {sorted(victims.values())} still present after pod-kill: {after}")
    assert len(after) == 3 and ready_count(kube_demo) == 3, f"owner did not restore 3 Ready pods: {after}"
    restored = run.event("replicas_restored").data
    assert restored["owner"] == "deployment/chatbot-api" and 0 < restored["seconds"] < 10, restored
    assert all(k["owner"] == "deployment/chatbot-api" and "manifest" not in k for k in updates[-1])
    assert run.kinds().index("revert_registered") < run.kinds().index("injected")
    assert killed.data["data"]["killed"] == []
    assert run.event("leftovers_checked").data["remaining"] == []
    assert run.reverts()[0]["result"]["owners_ready"] == {"deployment/chatbot-api": True}


def test_pod_kill_recreates_an_ownerless_pod(kube_demo: KubeServer, prom_env: PromEnv,
                                              tmp_path: Path) -> None:
    kube_demo.seed({"kind": "Pod", "metadata": {"name": "debug", "namespace": NS,
                                                "labels": {"app": "debug"}},
                    "spec": {"containers": [{"name": "sh", "image": "busybox:1.36"}]}})
    kube_demo.wait_for(lambda: ready_count(kube_demo, "app=debug") == 1, message="debug pod Ready")
    old = kube_demo.get("pods", NS, "debug")
    assert old is not None
    run = run_drill(kube_demo, prom_env, tmp_path, scenario(
        [{"kind": "pod-kill", "selector": "app=debug"}], guardrails={"max_targets": "100%"}))
    new = kube_demo.get("pods", NS, "debug")
    assert new is not None, "revert did not re-create the owner-less pod"
    assert new["metadata"]["uid"] != old["metadata"]["uid"], "pod was never deleted"
    assert new["spec"]["containers"] == old["spec"]["containers"]
    assert new["metadata"]["labels"] == old["metadata"]["labels"]
    assert run.reverts()[0]["result"]["recreated"] == ["debug"]


def test_scale_to_zero_restores_exact_replicas(kube_demo: KubeServer, prom_env: PromEnv,
                                               tmp_path: Path) -> None:
    kube_demo.update("deployments", NS, "chatbot-api", lambda d: d["spec"].__setitem__("replicas", 2))
    kube_demo.wait_for(lambda: len(api_pods(kube_demo)) == 2 and ready_count(kube_demo) == 2)
    run = run_drill(kube_demo, prom_env, tmp_path, scenario(
        [{"kind": "scale-to-zero", "workload": "deployment/chatbot-api"}],
        guardrails={"max_targets": "100%"}))
    data = run.event("revert_registered").data["data"]
    assert data == {"namespace": NS, "kind": "Deployment", "name": "chatbot-api", "replicas": 2}
    scales = [r.body for r in kube_demo.requests
              if r.method == "PATCH" and r.path.endswith("/deployments/chatbot-api/scale")]
    assert [b["spec"]["replicas"] for b in scales] == [0, 2], f"scale PATCH bodies: {scales}"
    d = kube_demo.get("deployments", NS, "chatbot-api")
    assert d is not None and d["spec"]["replicas"] == 2, d and d["spec"]
    assert ready_count(kube_demo) == 2, api_pods(kube_demo)


def test_scale_to_zero_needs_full_blast_radius(kube_demo: KubeServer, prom_env: PromEnv,
                                               tmp_path: Path) -> None:
    run = run_drill(kube_demo, prom_env, tmp_path, scenario(
        [{"kind": "scale-to-zero", "workload": "deployment/chatbot-api"}]))
    assert run.result.status.value == "inconclusive", run.output
    assert "exceed the blast radius" in run.event("error").data["error"]
    assert not [r for r in kube_demo.requests if r.method == "PATCH"], "something was patched"


def test_bad_rollout_restores_previous_template(kube_demo: KubeServer, prom_env: PromEnv,
                                                tmp_path: Path) -> None:
    before = kube_demo.get("deployments", NS, "chatbot-api")
    assert before is not None
    run = run_drill(kube_demo, prom_env, tmp_path, scenario(
        [{"kind": "bad-rollout", "workload": "deployment/chatbot-api", "container": "api"}]))
    run_id = run.result.run_id
    stuck = run.event("rollout_stuck").data
    bad = f"ghcr.io/drillkit/chatbot-api:drillkit-nonexistent-{run_id}"
    assert stuck["image"] == bad, stuck
    patches = [r.body for r in kube_demo.requests
               if r.method == "PATCH" and r.path.endswith("/deployments/chatbot-api")]
    assert patches[0]["spec"]["template"]["spec"]["containers"] == [{"name": "api", "image": bad}]
    after = kube_demo.get("deployments", NS, "chatbot-api")
    assert after is not None
    assert after["spec"]["template"] == before["spec"]["template"], "template not restored exactly"
    images = {p["spec"]["containers"][0]["image"] for p in kube_demo.list("pods", NS, "app=chatbot-api")}
    assert images == {"ghcr.io/drillkit/chatbot-api:0.1.0"}, images
    assert run.event("revert_registered").data["data"]["template"] == before["spec"]["template"]


def test_auth_secret_corruption_restores_and_keeps_secrets_out(kube_demo: KubeServer,
                                                               prom_env: PromEnv,
                                                               tmp_path: Path) -> None:
    original = kube_demo.get("secrets", NS, "chatbot-jwt")
    assert original is not None
    seen: dict[str, str] = {}

    def watch_backup() -> bool:  # capture the corrupted state while the drill runs
        s = kube_demo.get("secrets", NS, "chatbot-jwt")
        backups = [b for b in kube_demo.list("secrets", NS) if b["metadata"]["name"].startswith("drillkit-backup-")]
        if s and s["data"]["jwt-secret"] != original["data"]["jwt-secret"] and backups:
            seen["corrupt"] = s["data"]["jwt-secret"]
            seen["backup"] = backups[0]["metadata"]["name"]
            seen["backup_value"] = backups[0]["data"]["jwt-secret"]
            seen["labels"] = str(backups[0]["metadata"]["labels"])
        return False

    import threading
    stop = threading.Event()
    t = threading.Thread(target=lambda: [watch_backup() for _ in iter(lambda: stop.wait(0.05), True)])
    t.start()
    try:
        run = run_drill(kube_demo, prom_env, tmp_path, scenario(
            [{"kind": "auth-secret-corruption", "secret": "chatbot-jwt", "key": "jwt-secret"}]))
    finally:
        stop.set()
        t.join()
    run_id = run.result.run_id
    assert seen.get("backup") == f"drillkit-backup-chatbot-jwt-{run_id}", seen
    assert seen["backup_value"] == original["data"]["jwt-secret"]
    assert f"'drillkit.io/run-id': '{run_id}'" in seen["labels"]
    after = kube_demo.get("secrets", NS, "chatbot-jwt")
    assert after is not None and after["data"] == original["data"], "secret not restored"
    assert not [b for b in kube_demo.list("secrets", NS) if "drillkit-backup" in b["metadata"]["name"]]
    restarts = [r.body for r in kube_demo.requests
                if r.method == "PATCH" and r.path.endswith("/deployments/chatbot-api")]
    assert len(restarts) == 2 and all("drillkit.io/restartedAt" in str(b) for b in restarts), restarts
    secret_text = base64.b64decode(original["data"]["jwt-secret"]).decode()
    corrupt_text = base64.b64decode(seen["corrupt"]).decode()
    no_secret_values(run.journal_text(), secret_text, corrupt_text)
    no_secret_values(str(report(run)), secret_text, corrupt_text)
    data = run.event("revert_registered").data["data"]
    assert data == {"namespace": NS, "secret": "chatbot-jwt", "key": "jwt-secret",
                    "backup": f"drillkit-backup-chatbot-jwt-{run_id}",
                    "restart": "deployment/chatbot-api"}, data
