"""deploy/rbac.yaml against the API test server's RBAC: what it grants is what the faults need.

Why: the wire suite runs every fault as this ServiceAccount (tests/kube_drill.py), so a verb
missing from the file fails there; these tests pin the checks real Kubernetes makes that the
old documented Role got wrong (exec over a WebSocket GET is `get` on pods/exec, plus `create`
on 1.30+) and that the leftover check no longer lists Secrets cluster-wide.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from drillkit.kube import Forbidden, Kube, KubeSettings
from tests.kubecluster import CONTEXT, KubeServer
from tests.kubecluster.cluster import RBAC_NAMESPACE as RBAC_MANIFEST

pytestmark = [pytest.mark.wire]
NS = "chatbot"


def manifest_without(tmp_path: Path, resource: str, verb: str) -> Path:
    docs = [d for d in yaml.safe_load_all(RBAC_MANIFEST.read_text()) if d]
    for d in docs:
        for rule in d.get("rules") or []:
            if resource in rule["resources"]:
                rule["verbs"] = [v for v in rule["verbs"] if v != verb]
    path = tmp_path / "rbac.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    return path


@pytest.fixture
def kube(kube_demo: KubeServer):
    k = Kube(KubeSettings(CONTEXT, kube_demo.kubeconfig_path))
    yield k
    k.close()


@pytest.mark.parametrize("verb", ["get", "create"])
def test_exec_needs_get_and_create_on_pods_exec(kube_demo: KubeServer, kube: Kube, tmp_path: Path, verb: str) -> None:
    pod = kube_demo.list("pods", NS, label_selector="app=chatbot-api")[0]["metadata"]["name"]
    kube_demo.enforce_rbac()
    assert kube.exec(NS, pod, "api", ["sh", "-c", "true"], retry=False).code == 0
    kube_demo.enforce_rbac(manifest_without(tmp_path, "pods/exec", verb))
    with pytest.raises(Forbidden):
        kube.exec(NS, pod, "api", ["sh", "-c", "true"], retry=False)
    assert f'cannot {verb} resource "pods/exec"' in kube_demo.denied[-1], kube_demo.denied


def test_the_role_grants_no_cluster_wide_secret_listing(kube_demo: KubeServer, kube: Kube) -> None:
    kube_demo.enforce_rbac()
    with pytest.raises(Forbidden):
        kube.labelled("r1")  # cluster-wide: what cleanup without a journal does
    kube.create_secret(NS, "left", {}, {"drillkit.io/run-id": "r1"}, {})
    assert [x.name for x in kube.leftovers("r1")] == ["left"]


def test_every_rule_is_commented_with_the_fault_needing_it() -> None:
    lines = RBAC_MANIFEST.read_text().splitlines()
    rules = [i for i, line in enumerate(lines) if line.strip().startswith("- apiGroups:")]
    assert rules
    for i in rules:
        assert lines[i - 1].strip().startswith("#"), f"rule at line {i + 1} has no comment naming its fault"
