"""The test server refuses and delays what a real apiserver does, where drillkit's faults meet it.

Why: a permissive server lets a fault pass that fails on a real cluster (issue 9: "a more
faithful server"). Each behaviour is checked over the wire, and where a fault depends on it,
through the fault itself: graceful deletion, ephemeral containers that cannot be changed,
unsupported field selectors, watches from a compacted resourceVersion, Pod Security admission.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import requests

from drillkit.errors import PreflightError
from drillkit.faults import Undo
from drillkit.kube import Kube, resolve_settings
from tests.kube_drill import direct_fault
from tests.kubecluster import CONTEXT, KubeServer

pytestmark = [pytest.mark.wire]
NS = "chatbot"
AUTH = {"Authorization": "Bearer kind-drillkit-test-token"}


def call(server: KubeServer, method: str, path: str, body: Any = None, ctype: str = "application/json") -> Any:
    data = None if body is None else json.dumps(body)
    return requests.request(
        method, server.url + path, data=data, headers={**AUTH, "Content-Type": ctype}, timeout=10, stream=True
    )


def api_pod(server: KubeServer) -> str:
    return str(server.list("pods", NS, label_selector="app=chatbot-api")[0]["metadata"]["name"])


@pytest.fixture
def kube(kube_demo: KubeServer) -> Iterator[Kube]:
    k = Kube(resolve_settings(None, CONTEXT, (), kube_demo.kubeconfig_path))
    yield k
    k.close()


def test_graceful_deletion_keeps_the_pod_terminating_for_its_grace_period(kube_demo: KubeServer) -> None:
    name = api_pod(kube_demo)
    started = time.monotonic()
    assert call(kube_demo, "DELETE", f"/api/v1/namespaces/{NS}/pods/{name}").status_code == 200
    pod = kube_demo.get("pods", NS, name)
    assert pod is not None and pod["metadata"]["deletionTimestamp"], "deleted at once, not gracefully"
    assert pod["metadata"]["deletionGracePeriodSeconds"] == 1  # the pod's terminationGracePeriodSeconds
    kube_demo.wait_for(lambda: kube_demo.get("pods", NS, name) is None, 5, "the pod gone after its grace period")
    assert time.monotonic() - started >= 0.9, "gone before its grace period"
    other = api_pod(kube_demo)
    body = {"gracePeriodSeconds": 0}
    assert call(kube_demo, "DELETE", f"/api/v1/namespaces/{NS}/pods/{other}", body).status_code == 200
    assert kube_demo.get("pods", NS, other) is None, "gracePeriodSeconds=0 must delete at once"


def test_ephemeral_containers_can_be_added_never_changed_or_removed(kube_demo: KubeServer) -> None:
    name = api_pod(kube_demo)
    path = f"/api/v1/namespaces/{NS}/pods/{name}/ephemeralcontainers"
    debug = {"name": "debug", "image": "busybox", "command": ["sleep", "1"]}
    ctype = "application/strategic-merge-patch+json"
    assert call(kube_demo, "PATCH", path, {"spec": {"ephemeralContainers": [debug]}}, ctype).status_code == 200
    changed = {**debug, "image": "busybox:2"}
    r = call(kube_demo, "PATCH", path, {"spec": {"ephemeralContainers": [changed]}}, ctype)
    assert r.status_code == 422 and "may not be changed" in r.text, r.text
    r = call(
        kube_demo,
        "PATCH",
        path,
        [{"op": "remove", "path": "/spec/ephemeralContainers/0"}],
        "application/json-patch+json",
    )
    assert r.status_code == 422 and "may not be removed" in r.text, r.text


@pytest.mark.parametrize(
    ("path", "selector", "ok"),
    [
        ("/api/v1/namespaces/chatbot/pods", "spec.nodeName=kind-drillkit-worker", True),
        ("/api/v1/namespaces/chatbot/pods", "metadata.name=x,status.phase=Running", True),
        ("/api/v1/namespaces/chatbot/pods", "spec.containers.image=x", False),
        ("/api/v1/namespaces/chatbot/secrets", "type=Opaque", True),
        ("/api/v1/namespaces/chatbot/secrets", "data.key=x", False),
        ("/apis/apps/v1/namespaces/chatbot/deployments", "spec.replicas=3", False),
    ],
)
def test_unsupported_field_selectors_are_400(kube_demo: KubeServer, path: str, selector: str, ok: bool) -> None:
    for watch in ("", "&watch=1&timeoutSeconds=1"):
        r = call(kube_demo, "GET", f"{path}?fieldSelector={selector}{watch}")
        assert (r.status_code == 200) == ok, f"{selector}{watch}: {r.status_code} {r.text[:200]}"
        if not ok:
            assert r.status_code == 400 and "field label not supported" in r.text, r.text


def test_watch_from_a_compacted_resource_version_is_410(kube_demo: KubeServer, kube: Kube) -> None:
    old = int(call(kube_demo, "GET", f"/api/v1/namespaces/{NS}/pods").json()["metadata"]["resourceVersion"])
    kube_demo.update("pods", NS, api_pod(kube_demo), lambda p: p["metadata"].setdefault("labels", {}).update(x="1"))
    kube_demo.store.compact()
    r = call(kube_demo, "GET", f"/api/v1/namespaces/{NS}/pods?watch=1&resourceVersion={old}&timeoutSeconds=2")
    events = [json.loads(line) for line in r.iter_lines() if line]
    assert r.status_code == 200 and [e["type"] for e in events] == ["ERROR"], events
    assert events[0]["object"]["code"] == 410 and events[0]["object"]["reason"] == "Expired", events

    # drillkit lists again on 410: a wait across a compaction still ends
    def relabel() -> None:
        time.sleep(0.5)
        kube_demo.store.compact()
        kube_demo.update("pods", NS, api_pod(kube_demo), lambda p: p["metadata"]["labels"].update(y="1"))

    import threading

    threading.Thread(target=relabel, daemon=True).start()
    found = kube.wait_pods(NS, "app=chatbot-api", lambda ps: any("y" in p.labels for p in ps) or None, timeout=10)
    assert found, "the wait did not survive the compaction"


def test_pod_security_baseline_refuses_net_admin_and_network_latency(kube_demo: KubeServer, tmp_path: Path) -> None:
    kube_demo.update("namespaces", None, NS, lambda n: n["metadata"]["labels"].update(
        {"pod-security.kubernetes.io/enforce": "baseline"}))  # fmt: skip
    name = api_pod(kube_demo)
    netem = {"name": "tc", "image": "netshoot", "securityContext": {"capabilities": {"add": ["NET_ADMIN"]}}}
    r = call(
        kube_demo,
        "PATCH",
        f"/api/v1/namespaces/{NS}/pods/{name}/ephemeralcontainers",
        {"spec": {"ephemeralContainers": [netem]}},
        "application/strategic-merge-patch+json",
    )
    said = r.json()["message"]
    assert r.status_code == 403 and 'violates PodSecurity "baseline:latest"' in said and "NET_ADMIN" in said, said
    d = direct_fault(kube_demo, tmp_path, {"kind": "network-latency", "selector": "app=chatbot-api", "latency": "1s"})
    with pytest.raises(PreflightError, match="Pod Security"):
        d.fault.preflight()
    d.journal.close()
    assert not (kube_demo.get("pods", NS, name) or {})["spec"].get("ephemeralContainers"), "a container was added"


def test_pod_security_restricted_admits_drillkits_db_job_and_refuses_others(
    kube_demo: KubeServer, tmp_path: Path
) -> None:
    kube_demo.update("namespaces", None, NS, lambda n: n["metadata"]["labels"].update(
        {"pod-security.kubernetes.io/enforce": "restricted"}))  # fmt: skip
    r = call(
        kube_demo,
        "POST",
        f"/api/v1/namespaces/{NS}/pods",
        {"metadata": {"name": "plain"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}},
    )
    assert r.status_code == 403 and "runAsNonRoot != true" in r.text and "seccompProfile" in r.text, r.text
    fault = {"kind": "db-connection-exhaustion", "service": "chatbot-db", "secret": "chatbot-db-credentials"}
    d = direct_fault(kube_demo, tmp_path, {**fault, "connections": 5})
    found = d.fault.preflight()
    with ExitStack() as stack:
        d.fault.inject(found, Undo(stack, d.ctx))
        jobs = kube_demo.list("jobs", NS, label_selector="drillkit.io/run-id")
        assert jobs and kube_demo.list("pods", NS, label_selector=f"job-name={jobs[0]['metadata']['name']}"), (
            "the restricted namespace refused drillkit's Job pod"
        )
    d.journal.close()
    assert "connections_held" in [e.kind for e in d.events()]
    kube_demo.seed(
        {
            "kind": "Job",
            "metadata": {"name": "root-job", "namespace": NS},
            "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}},
        }
    )
    kube_demo.wait_for(
        lambda: any(e["reason"] == "FailedCreate" for e in kube_demo.list("events", NS)), 5, "a FailedCreate event"
    )
    assert not kube_demo.list("pods", NS, label_selector="job-name=root-job"), "a non-compliant pod was admitted"
