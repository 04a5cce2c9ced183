"""The official Kubernetes schemas (1.29-1.31, strict) against what drillkit writes and ships.

Why: the real 1.35 apiserver accepts an object with a misspelt field (it warns and drops the
field) and cannot say what an older cluster rejects. Every wire test's writes are checked by
the `kube_server` fixture (tests/kubecluster/schemas.py: the apiserver's unknown-field warnings,
and created objects against the 1.29-1.31 schemas); these tests prove that check bites, that a
drill's writes reach it (most kinds drillkit creates or patches), and check deploy/ (the kind
platform under drillkit/lab/kind is checked by the lab's own tests).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.kube_drill import run_drill, scenario
from tests.kubecluster import KubeServer
from tests.kubecluster.controlplane import ADMIN_TOKEN
from tests.kubecluster.schemas import VERSIONS, check_requests, problems, typed
from tests.promfixture import PromEnv

ROOT = Path(__file__).parents[1]
MANIFESTS = sorted((ROOT / "deploy").glob("*.yaml"))  # the kind platform: tests/test_lab_kind*.py
NS = "chatbot"


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_shipped_manifests_match_the_official_schemas(path: Path) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert docs, path
    # admissionregistration.k8s.io/v1 ValidatingAdmissionPolicy is GA from 1.30 (its header says so)
    versions = tuple(v for v in VERSIONS if v != "1.29") if path.name == "admission-policy.yaml" else VERSIONS
    bad = [f"{d['kind']} {d['metadata']['name']}: {p}" for d in docs for p in problems(d, versions)]
    assert not bad, f"{path} is rejected by Kubernetes {', '.join(versions)}:\n" + "\n".join(bad)


def resource_of(path: str) -> str:
    """`/apis/apps/v1/namespaces/NS/statefulsets/NAME/scale` -> `statefulsets/scale`."""
    parts = path.strip("/").split("/")
    rest = parts[parts.index("namespaces") + 2 :] if "namespaces" in parts else parts[2:]
    return rest[0] + (f"/{rest[2]}" if len(rest) > 2 else "")


@pytest.mark.wire
def test_the_check_catches_unknown_fields_and_what_older_versions_reject(kube_demo: KubeServer) -> None:
    import requests  # not the kubernetes client: it refuses unknown fields itself, drillkit sends JSON

    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    pods = f"{kube_demo.url}/api/v1/namespaces/{NS}/pods"
    typo = {"metadata": {"name": "typo"}, "spec": {"containers": [{"name": "c", "image": "b", "securityContex": {}}]}}
    ca = str(kube_demo.plane.ca)
    r = requests.post(pods, json=typo, headers=auth, timeout=10, verify=ca)
    assert r.status_code == 201, r.text
    warning = r.headers.get("Warning", "")
    assert warning.startswith("299 ") and "unknown field" in warning and "securityContex" in warning, r.headers
    # pod-level resources: beta (on) since 1.34, unknown to 1.29-1.31, which would refuse the pod
    newer = {
        "metadata": {"name": "newer"},
        "spec": {"resources": {"limits": {"cpu": "1"}}, "containers": [{"name": "c", "image": "b"}]},
    }
    r = requests.post(pods, json=newer, headers=auth, timeout=10, verify=ca)
    assert r.status_code == 201 and "Warning" not in r.headers, (r.status_code, r.headers, r.text)
    # a wrongly typed value the apiserver refuses itself (no check needed for that)
    r = requests.patch(
        f"{kube_demo.url}/apis/apps/v1/namespaces/{NS}/deployments/chatbot-api",
        data='{"metadata": {"labels": {"tier": 3}}}',
        headers={**auth, "Content-Type": "application/merge-patch+json"},
        timeout=10,
        verify=ca,
    )
    assert r.status_code in (400, 422), r.text
    found = check_requests(kube_demo.requests)
    kube_demo.proxy.reset()  # (the fixture would fail this test for them)
    assert any("Pod typo" not in f and 'unknown field "spec.containers[0].securityContex"' in f for f in found), found
    assert any("Pod typo" in f and "'securityContex' was unexpected" in f for f in found), found
    newer_found = [f for f in found if "Pod newer" in f]
    assert newer_found and all("spec: Additional properties" in f or "resources" in f for f in newer_found), found
    assert {f.split(": ")[2] for f in newer_found} == set(VERSIONS), f"not checked against every version: {found}"


@pytest.mark.wire
@pytest.mark.integration
def test_a_drills_writes_reach_the_check(kube_demo: KubeServer, prom_env: PromEnv, tmp_path: Path) -> None:
    """One drill writing most kinds drillkit writes: no unknown field, no object 1.29-1.31 reject."""
    faults: list[dict[str, Any]] = [
        {"kind": "scale-to-zero", "workload": "statefulset/chatbot-db", "wait": 0},
        {"kind": "auth-secret-corruption", "secret": "chatbot-jwt", "key": "jwt-secret"},
        {"kind": "memory-pressure", "mode": "node", "selector": "app=chatbot-api", "duration": "5s"},
    ]
    run = run_drill(kube_demo, prom_env, tmp_path, scenario(faults, guardrails={"max_targets": "100%"}))
    assert run.event("leftovers_checked").data["remaining"] == [], run.output
    writes = [r for r in kube_demo.requests if r.method in ("POST", "PUT", "PATCH")]
    kinds = {(r.method, resource_of(r.path)) for r in writes if r.status < 300}
    for expected in (
        ("POST", "leases"),
        ("POST", "secrets"),
        ("POST", "pods"),
        ("PATCH", "statefulsets/scale"),
        ("PATCH", "secrets"),
        ("PATCH", "statefulsets"),
        ("PATCH", "deployments"),
    ):
        assert expected in kinds, f"{expected} never written: {sorted(kinds)}"
    created = [r for r in writes if r.method == "POST" and isinstance(r.body, dict)]
    assert all(typed(r.path, r.body) for r in created), [r.path for r in created if not typed(r.path, r.body)]
    assert check_requests(kube_demo.requests) == []
