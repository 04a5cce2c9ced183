"""deploy/rbac*.yaml applied with the real kubectl to the real apiserver: what they grant is
what the faults need.

Why: the wire suite runs every fault as this ServiceAccount (tests/kube_drill.py), so a verb
missing from the files fails there; these tests pin the checks real Kubernetes makes that the
old documented Role got wrong (exec over a WebSocket GET is `get` on pods/exec, plus `create`
on 1.35) and that the leftover check no longer lists Secrets cluster-wide. A facade reads its
token when it is made: each is made after `enforce_rbac`, so it acts as the ServiceAccount.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
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


@contextmanager
def as_service_account(server: KubeServer, manifest: Path | None = None) -> Iterator[Kube]:
    """A facade acting as deploy/rbac.yaml's ServiceAccount (optionally with another Role file)."""
    if manifest is None:
        server.enforce_rbac()
    else:
        server.enforce_rbac(manifest)
    k = Kube(KubeSettings(CONTEXT, server.kubeconfig_path))
    try:
        yield k
    finally:
        k.close()
        server.rbac = None


@pytest.mark.parametrize("verb", ["get", "create"])
def test_exec_needs_get_and_create_on_pods_exec(kube_demo: KubeServer, tmp_path: Path, verb: str) -> None:
    pod = kube_demo.list("pods", NS, label_selector="app=chatbot-api")[0]["metadata"]["name"]
    with as_service_account(kube_demo) as kube:
        assert kube.exec(NS, pod, "api", ["sh", "-c", "true"], retry=False).code == 0
    assert not kube_demo.denied, kube_demo.denied
    without = manifest_without(tmp_path, "pods/exec", verb)
    with as_service_account(kube_demo, without) as kube, pytest.raises(Forbidden) as err:
        kube.exec(NS, pod, "api", ["sh", "-c", "true"], retry=False)
    assert "create pods/exec" in str(err.value), err.value
    assert kube_demo.denied, "the apiserver refused nothing"
    assert f'pods "{pod}" is forbidden' in kube_demo.denied[-1], kube_demo.denied
    if verb == "get":  # the request's own verb; the 1.35 WebSocket `create` check gives no reason
        assert 'cannot get resource "pods/exec"' in kube_demo.denied[-1], kube_demo.denied
    sa = "--as=system:serviceaccount:drillkit:drillkit"
    answer = kube_demo.kubectl("auth", "can-i", verb, "pods", "--subresource=exec", "-n", NS, sa, check=False).split()
    assert answer[:1] == ["no"], f"can-i {verb} pods/exec: {answer}"


def test_the_role_grants_no_cluster_wide_secret_listing(kube_demo: KubeServer) -> None:
    with as_service_account(kube_demo) as kube:
        with pytest.raises(Forbidden):
            kube.labelled("r1")  # cluster-wide: what cleanup without a journal does
        assert 'cannot list resource "jobs" in API group "batch" at the cluster scope' in kube_demo.denied[-1]
        kube.create_secret(NS, "left", {}, {"drillkit.io/run-id": "r1"}, {})
        assert [x.name for x in kube.leftovers("r1")] == ["left"]


def test_every_rule_is_commented_with_the_fault_needing_it() -> None:
    lines = RBAC_MANIFEST.read_text().splitlines()
    rules = [i for i, line in enumerate(lines) if line.strip().startswith("- apiGroups:")]
    assert rules
    for i in rules:
        assert lines[i - 1].strip().startswith("#"), f"rule at line {i + 1} has no comment naming its fault"
