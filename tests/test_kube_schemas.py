"""The official Kubernetes schemas (1.29-1.31, strict) against what drillkit writes and ships.

Why: the test server would accept a misspelt field or a wrongly typed value that a real
apiserver rejects. Every wire test's writes are checked by the `kube_server` fixture
(tests/kubeserver/schemas.py); these tests prove that check bites, that a drill's writes reach
it (most kinds drillkit creates or patches), and check deploy/ (the kind platform under
drillkit/lab/kind is checked by the lab's own tests).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.kube_drill import run_drill, scenario
from tests.kubecluster import KubeServer
from tests.kubecluster.schemas import VERSIONS, check_written, problems
from tests.promfixture import PromEnv

ROOT = Path(__file__).parents[1]
MANIFESTS = sorted((ROOT / "deploy").glob("*.yaml"))  # the kind platform: tests/test_lab_kind*.py
NS = "chatbot"


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_shipped_manifests_match_the_official_schemas(path: Path) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert docs, path
    bad = [f"{d['kind']} {d['metadata']['name']}: {p}" for d in docs for p in problems(d)]
    assert not bad, f"{path} is rejected by Kubernetes {', '.join(VERSIONS)}:\n" + "\n".join(bad)


@pytest.mark.wire
def test_the_check_catches_what_a_real_apiserver_rejects(kube_demo: KubeServer) -> None:
    import requests  # not the kubernetes client: it refuses unknown fields itself, drillkit sends JSON

    auth = {"Authorization": "Bearer kind-drillkit-test-token"}
    pod = {"metadata": {"name": "typo"}, "spec": {"containers": [{"name": "c", "image": "b", "securityContex": {}}]}}
    r = requests.post(f"{kube_demo.url}/api/v1/namespaces/{NS}/pods", json=pod, headers=auth, timeout=5)
    assert r.status_code == 201, r.text
    r = requests.patch(
        f"{kube_demo.url}/apis/apps/v1/namespaces/{NS}/deployments/chatbot-api",
        data='{"metadata": {"labels": {"tier": 3}}}',
        headers={**auth, "Content-Type": "application/merge-patch+json"},
        timeout=5,
    )
    assert r.status_code == 200, r.text
    found = check_written(kube_demo.written)
    kube_demo.written.clear()  # (the fixture would fail this test for them)
    assert any("Pod typo" in f and "'securityContex' was unexpected" in f for f in found), found
    assert any("Deployment chatbot-api" in f and "metadata/labels/tier" in f for f in found), found
    assert {f.split(": ")[2] for f in found} >= set(VERSIONS), "not checked against every version"


@pytest.mark.wire
@pytest.mark.integration
def test_a_drills_writes_reach_the_check(kube_demo: KubeServer, prom_env: PromEnv, tmp_path: Path) -> None:
    """One drill writing most kinds drillkit writes; the fixture validates them at teardown."""
    faults: list[dict[str, Any]] = [
        {"kind": "scale-to-zero", "workload": "statefulset/chatbot-db", "wait": 0},
        {"kind": "auth-secret-corruption", "secret": "chatbot-jwt", "key": "jwt-secret"},
        {"kind": "memory-pressure", "mode": "node", "selector": "app=chatbot-api", "duration": "5s"},
    ]
    run = run_drill(kube_demo, prom_env, tmp_path, scenario(faults, guardrails={"max_targets": "100%"}))
    assert run.event("leftovers_checked").data["remaining"] == [], run.output
    kinds = {(what.split()[0], obj["kind"]) for what, obj in kube_demo.written}
    for expected in (
        ("POST", "Lease"),
        ("POST", "Secret"),
        ("POST", "Pod"),
        ("PATCH", "Scale"),
        ("PATCH", "Secret"),
        ("PATCH", "StatefulSet"),
        ("PATCH", "Deployment"),
    ):
        assert expected in kinds, f"{expected} never written: {sorted(kinds)}"
