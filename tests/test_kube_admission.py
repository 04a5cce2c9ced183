"""deploy/admission-policy.yaml applied with the real kubectl to the real apiserver: what drillkit's
ServiceAccount may create.

Why: the Role lets the account create pods and Jobs, so without the policy it could run any image as
any ServiceAccount of a target namespace. Each refused case is created with the account's own token
(through drillkit's facade, as a fault would); the same object passes once the one offending field is
put right, so each refusal is the rule's and not another's. The drills of every fault run under the
policy too: `enforce_rbac` (tests/kube_drill.py's `run_drill`) applies it.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from drillkit.faults.kube.memory import STRESS_IMAGE
from drillkit.faults.kube.network import NETEM_IMAGE
from drillkit.kube import Forbidden, Kube, KubeSettings
from drillkit.lab import kindlab
from tests.kube_drill import run_drill, scenario
from tests.kubecluster import CONTEXT, KubeServer
from tests.kubecluster.cluster import ADMISSION_POLICY
from tests.promfixture import PromEnv

pytestmark = [pytest.mark.wire]
NS = "chatbot"
RUN = {"drillkit.io/run-id": "r1"}


def stress_pod(**changes: Any) -> dict[str, Any]:
    """A pod shaped like drillkit's stress pod (which the policy admits)."""
    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "drillkit-stress-r1", "namespace": NS, "labels": dict(RUN)},
        "spec": {
            "nodeName": "kind-drillkit-worker",
            "restartPolicy": "Never",
            "containers": [{"name": "stress", "image": STRESS_IMAGE, "args": ["--vm", "1"]}],
        },
    }
    for path, value in changes.items():
        *head, last = path.split("__")
        at = pod
        for key in head:
            at = at[key]
        if value is None:
            at.pop(last, None)
        else:
            at[last] = value
    return pod


@pytest.fixture
def as_drillkit(kube_demo: KubeServer) -> Iterator[Kube]:
    """A facade acting as the ServiceAccount, under the RBAC and the admission policy."""
    kube_demo.enforce_rbac()
    k = Kube(KubeSettings(CONTEXT, kube_demo.kubeconfig_path))
    try:
        yield k
    finally:
        k.close()
        kube_demo.rbac = None


BAD_PODS = {
    "no run label": (stress_pod(metadata__labels={"app": "x"}), "drillkit.io/run-id"),
    "another image": (
        stress_pod(spec__containers=[{"name": "stress", "image": "busybox:1.36"}]),
        "image busybox:1.36 is not one of the images drillkit faults use",
    ),
    "an allowed image under another tag": (
        stress_pod(spec__containers=[{"name": "stress", "image": "postgres:17"}]),
        "image postgres:17 is not one",
    ),
    "an init container with another image": (
        stress_pod(spec__initContainers=[{"name": "init", "image": "alpine:3.20"}]),
        "image alpine:3.20 is not one",
    ),
    "a serviceAccountName": (stress_pod(spec__serviceAccountName="chatbot-admin"), "default ServiceAccount"),
    "a foreign secret volume": (
        stress_pod(spec__volumes=[{"name": "creds", "secret": {"secretName": "chatbot-db-credentials"}}]),
        "no Secret volume",
    ),
    "a secret in a projected volume": (
        stress_pod(spec__volumes=[{"name": "p", "projected": {"sources": [{"secret": {"name": "chatbot-jwt"}}]}}]),
        "no Secret volume",
    ),
}


@pytest.mark.parametrize("case", list(BAD_PODS), ids=list(BAD_PODS))
def test_a_pod_breaking_one_rule_is_refused_with_drillkits_token(
    kube_demo: KubeServer, as_drillkit: Kube, case: str
) -> None:
    if case == "a serviceAccountName":
        kube_demo.seed({"kind": "ServiceAccount", "metadata": {"name": "chatbot-admin", "namespace": NS}})
    pod, said = BAD_PODS[case]
    with pytest.raises(Forbidden) as err:
        as_drillkit.create_pod(NS, copy.deepcopy(pod))
    assert "drillkit-created-objects" in str(err.value) and said in str(err.value), err.value
    assert kube_demo.get("pods", NS, "drillkit-stress-r1") is None
    # the same pod as the admin: the policy binds drillkit's account only
    kube_demo.rbac = None
    kube_demo.seed(copy.deepcopy(pod))
    assert kube_demo.get("pods", NS, "drillkit-stress-r1") is not None


@pytest.mark.parametrize("image", [STRESS_IMAGE, STRESS_IMAGE + "@sha256:" + "a" * 64, NETEM_IMAGE, "mysql:8"])
def test_drillkits_own_pod_passes(kube_demo: KubeServer, as_drillkit: Kube, image: str) -> None:
    pod = stress_pod(spec__containers=[{"name": "stress", "image": image}])
    made = as_drillkit.create_pod(NS, pod)
    assert made.labels == RUN and made.containers[0].image == image


def test_jobs_ephemeral_containers_secrets_and_leases_are_held_to_it(kube_demo: KubeServer, as_drillkit: Kube) -> None:
    template = {"metadata": {"labels": RUN}, "spec": stress_pod()["spec"]}
    del template["spec"]["nodeName"]
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "drillkit-dbconn-r1", "namespace": NS, "labels": RUN},
        "spec": {"template": template},
    }
    bad = copy.deepcopy(job)
    bad["spec"]["template"]["spec"]["containers"][0]["image"] = "curlimages/curl:8.10.1"
    with pytest.raises(Forbidden, match=re.escape("image curlimages/curl:8.10.1 is not one")):
        as_drillkit.create_job(NS, bad)
    bad = copy.deepcopy(job)
    bad["spec"]["template"]["spec"]["serviceAccountName"] = "default2"
    with pytest.raises(Forbidden, match=re.escape("default ServiceAccount")):
        as_drillkit.create_job(NS, bad)
    assert as_drillkit.create_job(NS, job).name == "drillkit-dbconn-r1"

    with pytest.raises(Forbidden, match=re.escape("drillkit.io/run-id")):
        as_drillkit.create_secret(NS, "drillkit-backup-x", {}, {}, {})
    as_drillkit.create_secret(NS, "drillkit-backup-x", {}, dict(RUN), {})

    lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "other-lock"}}
    from kubernetes.client import CoordinationV1Api

    with pytest.raises(Forbidden, match=re.escape("drillkit.io/run-id")):
        as_drillkit.call("create leases", CoordinationV1Api(as_drillkit.api).create_namespaced_lease, NS, lease)

    target = kube_demo.list("pods", NS, label_selector="app=chatbot-api")[0]["metadata"]["name"]
    shell = {"name": "debug-r1", "image": "busybox:1.36", "command": ["sleep", "1"]}
    with pytest.raises(Forbidden, match=re.escape("image busybox:1.36 is not one")):
        as_drillkit.add_ephemeral_container(NS, target, shell)
    as_drillkit.add_ephemeral_container(NS, target, {**shell, "image": NETEM_IMAGE})
    # a later ephemeral container is judged alone: a person's earlier debug container does not block it
    kube_demo.rbac = None
    Kube(KubeSettings(CONTEXT, kube_demo.kubeconfig_path)).add_ephemeral_container(
        NS, target, {**shell, "name": "human"}
    )
    kube_demo.enforce_rbac()
    again = Kube(KubeSettings(CONTEXT, kube_demo.kubeconfig_path))
    try:
        again.add_ephemeral_container(NS, target, {**shell, "name": "debug-r2", "image": NETEM_IMAGE})
    finally:
        again.close()
    names = [c["name"] for c in kube_demo.get("pods", NS, target)["spec"]["ephemeralContainers"]]  # type: ignore[index]
    assert sorted(names) == ["debug-r1", "debug-r2", "human"], names


def test_pod_kill_refuses_an_ownerless_pod_it_could_not_recreate(
    kube_demo: KubeServer, prom_env: PromEnv, tmp_path: Path
) -> None:
    kube_demo.seed(
        {
            "kind": "Pod",
            "metadata": {"name": "debug", "namespace": NS, "labels": {"app": "debug"}},
            "spec": {"containers": [{"name": "sh", "image": "busybox:1.36"}]},
        }
    )
    kube_demo.wait_for(lambda: kube_demo.get("pods", NS, "debug"), message="debug pod")
    run = run_drill(
        kube_demo,
        prom_env,
        tmp_path,
        scenario([{"kind": "pod-kill", "selector": "app=debug"}], guardrails={"max_targets": "100%"}),
    )
    said = run.event("error").data["error"]
    assert "has no owner" in said and "drillkit.io/run-id" in said and "not by RBAC" in said, said
    assert "injected" not in run.kinds(), run.kinds()
    assert kube_demo.get("pods", NS, "debug") is not None, "the pod was deleted though it could not come back"
    assert not [r for r in kube_demo.requests if r.method == "DELETE" and r.path.endswith("/pods/debug")]


def test_the_kind_lab_and_the_deploy_folder_ship_one_policy() -> None:
    assert ADMISSION_POLICY.is_symlink() and ADMISSION_POLICY.resolve() == kindlab.ADMISSION_POLICY.resolve()
    docs = [d for d in yaml.safe_load_all(kindlab.ADMISSION_POLICY.read_text()) if d]
    assert [d["kind"] for d in docs] == ["ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"]
    images = docs[0]["spec"]["variables"][0]["expression"]
    for image in (STRESS_IMAGE, NETEM_IMAGE, "postgres:16", "mysql:8"):
        assert f"'{image}'" in images, f"{image} is a fault's default image but not in the policy's allowlist"
