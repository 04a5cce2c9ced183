"""Tests of the Kubernetes API test server, through the real `kubernetes` client over HTTP."""

from __future__ import annotations

import json
import threading
import time

import kubernetes
import pytest
import urllib3
from kubernetes.client import ApiException
from kubernetes.stream import stream

from tests.kubecluster import CONTEXT, PROD_CONTEXT, KubeServer, fixture

# Until tests/conftest.py imports them for every test module:
kube_server, kube_demo, kube_api_client = fixture.kube_server, fixture.kube_demo, fixture.kube_api_client


@pytest.fixture
def kube_server_options():
    return {"ready_delay": 0.15}  # faster than the default 0.3 s: keeps this file well under 20 s


pytestmark = pytest.mark.wire
NS = "chatbot"


@pytest.fixture
def core(kube_api_client):
    return kubernetes.client.CoreV1Api(kube_api_client)


@pytest.fixture
def apps(kube_api_client):
    return kubernetes.client.AppsV1Api(kube_api_client)


@pytest.fixture
def batch(kube_api_client):
    return kubernetes.client.BatchV1Api(kube_api_client)


def status_of(exc: ApiException) -> dict:
    return json.loads(exc.body)


def ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))


def api_pods(server: KubeServer, ready_only: bool = True) -> list[dict]:
    """The chatbot-api pods (not those Terminating in their grace period), Ready ones only."""
    pods = server.list("pods", NS, label_selector="app=chatbot-api")
    return [p for p in pods if not p["metadata"].get("deletionTimestamp") and (ready(p) or not ready_only)]


def exec_(core, pod: str, command: list[str], container: str | None = None):
    kwargs = {"container": container} if container else {}
    resp = stream(
        core.connect_get_namespaced_pod_exec,
        pod,
        NS,
        command=command,
        stderr=True,
        stdin=False,
        stdout=True,
        tty=False,
        _preload_content=False,
        **kwargs,
    )
    resp.run_forever(timeout=5)
    return resp.read_stdout(), resp.read_stderr(), resp.returncode, resp


def test_version_discovery_and_both_contexts(kube_server):
    for context in (CONTEXT, PROD_CONTEXT):
        with kube_server.api_client(context) as client:
            version = kubernetes.client.VersionApi(client).get_code()
            groups = kubernetes.client.ApisApi(client).get_api_versions()
            core_versions = kubernetes.client.CoreApi(client).get_api_versions()
            assert version.major == "1" and version.git_version.startswith("v1."), version
            assert {"apps", "batch", "policy"} <= {g.name for g in groups.groups}, groups
            assert core_versions.versions == ["v1"], core_versions
    auth = [r.headers.get("authorization") for r in kube_server.requests]
    assert f"Bearer {PROD_CONTEXT}-token" in auth, auth


def test_crud_metadata_404_409(kube_server, core):
    core.create_namespace({"metadata": {"name": "crud"}})
    cm = core.create_namespaced_config_map("crud", {"metadata": {"name": "cfg"}, "data": {"a": "1"}})
    meta = cm.metadata
    assert meta.uid and meta.resource_version and meta.creation_timestamp, meta
    assert meta.namespace == "crud" and meta.generation == 1, meta

    with pytest.raises(ApiException) as conflict:
        core.create_namespaced_config_map("crud", {"metadata": {"name": "cfg"}})
    body = status_of(conflict.value)
    assert conflict.value.status == 409 and body["reason"] == "AlreadyExists", body

    cm.data["a"] = "2"
    replaced = core.replace_namespaced_config_map("cfg", "crud", cm)
    assert replaced.data == {"a": "2"}, replaced.data
    assert int(replaced.metadata.resource_version) > int(meta.resource_version), replaced.metadata
    assert replaced.metadata.uid == meta.uid, replaced.metadata
    with pytest.raises(ApiException) as stale:  # cm still carries the old resourceVersion
        core.replace_namespaced_config_map("cfg", "crud", cm)
    assert stale.value.status == 409 and status_of(stale.value)["reason"] == "Conflict", stale.value.body

    generated = core.create_namespaced_secret("crud", {"metadata": {"generateName": "tok-"}, "stringData": {"k": "v"}})
    assert generated.metadata.name.startswith("tok-") and len(generated.metadata.name) == 9, generated
    assert generated.data == {"k": "dg=="}, f"stringData is stored base64 in data: {generated.data}"

    with pytest.raises(ApiException) as precondition:
        core.delete_namespaced_config_map("cfg", "crud", body={"preconditions": {"uid": "other"}})
    assert precondition.value.status == 409, precondition.value.body
    assert "Precondition failed: UID" in status_of(precondition.value)["message"], precondition.value.body
    core.delete_namespaced_config_map("cfg", "crud", body={"preconditions": {"uid": meta.uid}})
    with pytest.raises(ApiException) as missing:
        core.read_namespaced_config_map("cfg", "crud")
    body = status_of(missing.value)
    assert missing.value.status == 404, missing.value
    assert body["kind"] == "Status" and body["reason"] == "NotFound" and body["code"] == 404, body
    assert body["message"] == 'configmaps "cfg" not found', body

    with pytest.raises(ApiException) as no_ns:
        core.create_namespaced_config_map("nowhere", {"metadata": {"name": "x"}})
    assert no_ns.value.status == 404 and "namespaces" in status_of(no_ns.value)["message"], no_ns.value.body


def test_patch_flavours(kube_demo, apps, core):
    # kubectl set image: strategic merge keeps the other container fields (merged by name)
    apps.patch_namespaced_deployment(
        "chatbot-api",
        NS,
        {
            "spec": {
                "template": {"spec": {"containers": [{"name": "api", "image": "ghcr.io/drillkit/chatbot-api:0.2.0"}]}}
            }
        },
    )
    container = kube_demo.get("deployments", NS, "chatbot-api")["spec"]["template"]["spec"]["containers"][0]
    assert container["image"].endswith(":0.2.0") and container["resources"]["limits"]["memory"] == "128Mi", container
    assert kube_demo.get("deployments", NS, "chatbot-api")["metadata"]["generation"] == 2

    apps.patch_namespaced_deployment(
        "chatbot-api",
        NS,
        [
            {"op": "replace", "path": "/spec/replicas", "value": 2},
            {"op": "add", "path": "/metadata/labels/tier", "value": "web"},
        ],
    )
    dep = kube_demo.get("deployments", NS, "chatbot-api")
    assert dep["spec"]["replicas"] == 2 and dep["metadata"]["labels"]["tier"] == "web", dep["metadata"]

    core.patch_namespaced_service(
        "chatbot-db",
        NS,
        {"metadata": {"labels": {"app": None, "x": "y"}}},
        _content_type="application/merge-patch+json",
    )
    labels = kube_demo.get("services", NS, "chatbot-db")["metadata"]["labels"]
    assert labels == {"x": "y"}, f"merge patch null deletes a key: {labels}"
    kinds = {r.headers.get("Content-Type") for r in kube_demo.requests if r.method == "PATCH"}
    assert {
        "application/strategic-merge-patch+json",
        "application/json-patch+json",
        "application/merge-patch+json",
    } <= kinds, kinds


def test_label_and_field_selectors(kube_demo, core):
    def names(**kw):
        return sorted(p.metadata.name for p in core.list_namespaced_pod(NS, **kw).items)

    api, db = names(label_selector="app=chatbot-api"), names(label_selector="app==chatbot-db")
    assert len(api) == 3 and db == ["chatbot-db-0"], (api, db)
    assert names(label_selector="app in (chatbot-api, chatbot-db)") == sorted(api + db)
    assert names(label_selector="app notin (chatbot-api)") == db
    assert names(label_selector="app!=chatbot-db") == api
    assert names(label_selector="app,pod-template-hash") == api
    assert names(label_selector="!pod-template-hash") == db
    assert names(label_selector="app=nothing") == []

    worker2 = names(field_selector="spec.nodeName=kind-drillkit-worker2")
    expected = sorted(
        p["metadata"]["name"] for p in kube_demo.list("pods", NS) if p["spec"]["nodeName"] == "kind-drillkit-worker2"
    )
    assert worker2 == expected and worker2, (worker2, expected)
    assert names(field_selector="status.phase=Running,metadata.name==chatbot-db-0") == db
    assert names(field_selector="status.phase!=Running") == []
    other = core.list_pod_for_all_namespaces(field_selector="metadata.namespace!=chatbot")
    assert other.items == [], other.items
    with pytest.raises(ApiException) as bad:
        core.list_namespaced_pod(NS, label_selector="app in (")
    assert bad.value.status == 400, bad.value.body


def test_scale_subresource(kube_demo, apps):
    scale = apps.read_namespaced_deployment_scale("chatbot-api", NS)
    assert scale.spec.replicas == 3 and scale.status.selector == "app=chatbot-api", scale
    apps.patch_namespaced_deployment_scale("chatbot-api", NS, {"spec": {"replicas": 5}})
    kube_demo.wait_for(
        lambda: apps.read_namespaced_deployment("chatbot-api", NS).status.ready_replicas == 5,
        5,
        "deployment status readyReplicas=5",
    )
    dep = apps.read_namespaced_deployment("chatbot-api", NS)
    assert len(api_pods(kube_demo)) == 5 and dep.status.observed_generation == 2, dep.status

    apps.replace_namespaced_stateful_set_scale(
        "chatbot-db",
        NS,
        {
            "apiVersion": "autoscaling/v1",
            "kind": "Scale",
            "metadata": {"name": "chatbot-db", "namespace": NS},
            "spec": {"replicas": 2},
        },
    )
    kube_demo.wait_for(lambda: kube_demo.get("pods", NS, "chatbot-db-1"), 5, "chatbot-db-1")
    assert apps.read_namespaced_stateful_set_scale("chatbot-db", NS).spec.replicas == 2


def test_deleted_pod_is_recreated_ready(kube_demo, core):
    victim = api_pods(kube_demo)[0]
    core.delete_namespaced_pod(victim["metadata"]["name"], NS, grace_period_seconds=0, propagation_policy="Background")
    assert kube_demo.get("pods", NS, victim["metadata"]["name"]) is None
    pods = kube_demo.wait_for(
        lambda: (lambda ps: ps if len(ps) == 3 else None)(api_pods(kube_demo)), 5, "3 ready chatbot-api pods again"
    )
    uids = {p["metadata"]["uid"] for p in pods}
    assert victim["metadata"]["uid"] not in uids, uids
    new = [
        p
        for p in pods
        if p["metadata"]["creationTimestamp"] >= victim["metadata"]["creationTimestamp"]
        and p["metadata"]["name"] != victim["metadata"]["name"]
    ]
    assert new and new[0]["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet", pods
    delete = [r for r in kube_demo.requests if r.method == "DELETE"][-1]
    assert delete.query.get("gracePeriodSeconds") == "0", delete


def test_template_change_rolls_out_new_replicaset(kube_demo, apps):
    old_rs = kube_demo.list("replicasets", NS)
    apps.patch_namespaced_deployment(
        "chatbot-api",
        NS,
        {
            "spec": {
                "template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "2024-01-01T00:00:00Z"}}}
            }
        },
    )

    def rolled():
        dep = kube_demo.get("deployments", NS, "chatbot-api")["status"]
        return (
            dep
            if dep.get("updatedReplicas") == dep.get("readyReplicas") == dep.get("replicas") == 3
            and dep.get("observedGeneration") == 2
            else None
        )

    kube_demo.wait_for(rolled, 8, "rollout to finish")
    rs = {r["metadata"]["name"]: r for r in kube_demo.list("replicasets", NS)}
    new = [r for n, r in rs.items() if n not in {o["metadata"]["name"] for o in old_rs}]
    assert len(rs) == 2 and len(new) == 1, list(rs)
    assert new[0]["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2", new[0]["metadata"]
    assert rs[old_rs[0]["metadata"]["name"]]["spec"]["replicas"] == 0, rs
    hashes = {p["metadata"]["labels"]["pod-template-hash"] for p in api_pods(kube_demo, ready_only=False)}
    assert hashes == {new[0]["metadata"]["labels"]["pod-template-hash"]}, hashes

    # a bad image never gets Ready: the rollout stalls with the old pods still serving
    apps.patch_namespaced_deployment(
        "chatbot-api",
        NS,
        {
            "spec": {
                "template": {
                    "spec": {
                        "containers": [{"name": "api", "image": "ghcr.io/drillkit/chatbot-api:drillkit-nonexistent"}]
                    }
                }
            }
        },
    )
    stuck = kube_demo.wait_for(
        lambda: [
            p
            for p in api_pods(kube_demo, False)
            if (p["status"].get("containerStatuses") or [{}])[0].get("state", {}).get("waiting", {}).get("reason")
            == "ImagePullBackOff"
        ],
        5,
        "an ImagePullBackOff pod",
    )
    time.sleep(0.5)
    assert stuck[0]["status"]["phase"] == "Pending", stuck[0]["status"]
    assert len(api_pods(kube_demo)) == 3, "old pods keep serving during a stuck rollout"


def test_readiness_override_and_statefulset_rollout(kube_demo, apps):
    victim = api_pods(kube_demo)[0]["metadata"]["name"]
    kube_demo.set_pod_ready(NS, victim, False)

    def status(ready_replicas):
        st = apps.read_namespaced_deployment("chatbot-api", NS).status
        return st if (st.ready_replicas or 0) == ready_replicas else None

    st = kube_demo.wait_for(lambda: status(2), 3, "readyReplicas=2")
    available = next(c for c in st.conditions if c.type == "Available")
    assert available.status == "False" and st.unavailable_replicas == 1, st
    kube_demo.set_pod_ready(NS, victim, None)
    kube_demo.wait_for(lambda: status(3), 3, "readyReplicas=3 again")

    old_uid = kube_demo.get("pods", NS, "chatbot-db-0")["metadata"]["uid"]
    apps.patch_namespaced_stateful_set(
        "chatbot-db",
        NS,
        {"spec": {"template": {"spec": {"containers": [{"name": "postgres", "image": "postgres:17"}]}}}},
    )
    pod = kube_demo.wait_for(
        lambda: (lambda p: p if p and p["metadata"]["uid"] != old_uid and ready(p) else None)(
            kube_demo.get("pods", NS, "chatbot-db-0")
        ),
        3,
        "chatbot-db-0 replaced with the new template",
    )
    assert pod["spec"]["containers"][0]["image"] == "postgres:17", pod["spec"]


def test_watch_sees_deleted_and_added(kube_demo, core):
    victim = api_pods(kube_demo)[0]["metadata"]["name"]
    watch, seen = kubernetes.watch.Watch(), []
    for event in watch.stream(core.list_namespaced_pod, NS, label_selector="app=chatbot-api", timeout_seconds=5):
        seen.append((event["type"], event["object"].metadata.name))
        if len(seen) == 3:
            assert [t for t, _ in seen] == ["ADDED"] * 3, seen
            threading.Thread(target=kube_demo.delete, args=("pods", NS, victim)).start()
        if ("DELETED", victim) in seen and any(t == "ADDED" and n != victim for t, n in seen[3:]):
            watch.stop()
    assert ("DELETED", victim) in seen, seen
    assert any(t == "ADDED" for t, _ in seen[3:]), f"replacement pod ADDED: {seen}"

    rv = core.list_namespaced_pod(NS).metadata.resource_version
    quiet = list(
        kubernetes.watch.Watch().stream(
            core.list_namespaced_pod, NS, resource_version=rv, label_selector="app=chatbot-db", timeout_seconds=1
        )
    )
    assert quiet == [], f"no initial events when resourceVersion is given: {quiet}"


def test_eviction_respects_pod_disruption_budget(kube_demo, core):
    policy = kubernetes.client.PolicyV1Api(core.api_client)
    policy.create_namespaced_pod_disruption_budget(
        NS,
        {
            "metadata": {"name": "api-pdb"},
            "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "chatbot-api"}}},
        },
    )

    def evict(name):
        return core.create_namespaced_pod_eviction(
            name, NS, {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name, "namespace": NS}}
        )

    first, second = [p["metadata"]["name"] for p in api_pods(kube_demo)][:2]
    evict(first)
    assert kube_demo.get("pods", NS, first) is None, "first eviction is allowed (3 healthy, 2 needed)"
    with pytest.raises(ApiException) as blocked:
        evict(second)
    body = status_of(blocked.value)
    assert blocked.value.status == 429 and body["reason"] == "TooManyRequests", body
    assert body["message"] == "Cannot evict pod as it would violate the pod's disruption budget.", body
    assert kube_demo.get("pods", NS, second) is not None

    kube_demo.wait_for(lambda: len(api_pods(kube_demo)) == 3, 5, "replacement pod Ready")
    pdb = kube_demo.wait_for(
        lambda: (lambda p: p if p["status"].get("currentHealthy") == 3 else None)(
            kube_demo.get("poddisruptionbudgets", NS, "api-pdb")
        ),
        2,
        "PDB status",
    )
    assert pdb["status"]["disruptionsAllowed"] == 1, pdb["status"]
    evict(second)
    assert kube_demo.get("pods", NS, second) is None, "allowed again once the replacement is Ready"
    db_uid = kube_demo.get("pods", NS, "chatbot-db-0")["metadata"]["uid"]
    evict("chatbot-db-0")  # no budget covers the database (the StatefulSet recreates the name)
    assert (kube_demo.get("pods", NS, "chatbot-db-0") or {"metadata": {}})["metadata"].get("uid") != db_uid


def test_ephemeral_container_and_forbidden_switch(kube_demo, core):
    pod = api_pods(kube_demo)[0]["metadata"]["name"]
    debugger = {
        "name": "debugger",
        "image": "busybox:1.36",
        "targetContainerName": "api",
        "command": ["sh"],
        "stdin": True,
        "tty": True,
    }
    core.patch_namespaced_pod_ephemeralcontainers(pod, NS, {"spec": {"ephemeralContainers": [debugger]}})

    def running():
        got = core.read_namespaced_pod_ephemeralcontainers(pod, NS)
        statuses = got.status.ephemeral_container_statuses or []
        return statuses if statuses and statuses[0].state.running else None

    statuses = kube_demo.wait_for(running, 3, "ephemeral container running")
    assert statuses[0].name == "debugger", statuses
    _, _, code, _ = exec_(core, pod, ["sh", "-c", "true"], container="debugger")
    assert code == 0

    kube_demo.ephemeral_containers_forbidden = True
    with pytest.raises(ApiException) as forbidden:
        core.patch_namespaced_pod_ephemeralcontainers(
            pod, NS, {"spec": {"ephemeralContainers": [{**debugger, "name": "debugger-2"}]}}
        )
    assert forbidden.value.status == 403 and status_of(forbidden.value)["reason"] == "Forbidden", forbidden.value.body


def test_exec_handlers_and_builtins(kube_demo, core):
    pod = api_pods(kube_demo)[0]
    name = pod["metadata"]["name"]
    kube_demo.on_exec("cat /etc/hostname", lambda p, c, cmd: (p["metadata"]["name"] + "\n", "", 0))
    kube_demo.on_exec(lambda p, c, cmd: cmd[-1] == "exit 3", lambda p, c, cmd: ("", "boom\n", 3))

    out, _, code, _ = exec_(core, name, ["sh", "-c", "cat /etc/hostname"])
    assert (out, code) == (name + "\n", 0)
    out, err, code, _ = exec_(core, name, ["sh", "-c", "exit 3"])
    assert (out, err, code) == ("", "boom\n", 3)
    text = stream(
        core.connect_get_namespaced_pod_exec,
        name,
        NS,
        command=["cat", "/etc/hostname"],
        stderr=True,
        stdin=False,
        stdout=True,
        tty=False,
    )
    assert text == name + "\n", f"preloaded exec output: {text!r}"

    out, _, code, _ = exec_(core, name, ["sh", "-c", "cat /sys/fs/cgroup/memory.max 2>/dev/null"])
    assert (out.strip(), code) == (str(128 * 1024 * 1024), 0)
    assert exec_(core, name, ["true"])[2] == 0

    out, _, code, _ = exec_(core, name, ["sh", "-c", "echo drillkit-memory-pressure; tail /dev/zero"])
    assert code == 137, code
    status = kube_demo.get("pods", NS, name)["status"]["containerStatuses"][0]
    assert status["restartCount"] == 1, status
    assert status["lastState"]["terminated"]["reason"] == "OOMKilled", status
    assert status["lastState"]["terminated"]["exitCode"] == 137, status
    kube_demo.wait_for(lambda: ready(kube_demo.get("pods", NS, name)), 3, "OOM-killed pod Ready again")
    assert [e.exit_code for e in kube_demo.execs] == [0, 3, 0, 0, 0, 137], kube_demo.execs


def test_exec_distroless_has_no_shell(kube_demo, core):
    kube_demo.seed(
        {
            "kind": "Pod",
            "metadata": {"name": "static", "namespace": NS},
            "spec": {"containers": [{"name": "app", "image": "gcr.io/distroless/static-debian12:nonroot"}]},
        }
    )
    kube_demo.wait_for(lambda: ready(kube_demo.get("pods", NS, "static")), 3, "plain pod Ready")
    resp = stream(
        core.connect_get_namespaced_pod_exec,
        "static",
        NS,
        command=["sh", "-c", "true"],
        stderr=True,
        stdin=False,
        stdout=True,
        tty=False,
        _preload_content=False,
    )
    resp.run_forever(timeout=5)
    status = json.loads(resp.read_channel(3))
    assert "executable file not found in $PATH" in status["message"], status
    resp._channels[3] = json.dumps(status)  # put it back for returncode, which parses channel 3
    assert resp.returncode == 126, status
    assert kube_demo.execs[-1].command == ["sh", "-c", "true"], kube_demo.execs


def test_exec_status_channel_is_real_api_shaped(kube_demo, core):
    name = api_pods(kube_demo)[0]["metadata"]["name"]
    resp = stream(
        core.connect_get_namespaced_pod_exec,
        name,
        NS,
        command=["false"],
        stderr=True,
        stdin=False,
        stdout=True,
        tty=False,
        _preload_content=False,
    )
    resp.run_forever(timeout=5)
    raw = resp.read_channel(3)
    status = json.loads(raw)
    assert status["status"] == "Failure" and status["reason"] == "NonZeroExitCode", status
    assert status["details"]["causes"] == [{"reason": "ExitCode", "message": "1"}], status


def test_job_active_deadline_and_delete_propagation(kube_server, batch, core):
    kube_server.seed({"kind": "Namespace", "metadata": {"name": "jobs"}})

    def job(name, **spec):
        return {
            "metadata": {"name": name},
            "spec": {
                **spec,
                "template": {
                    "spec": {"restartPolicy": "Never", "containers": [{"name": "stress", "image": "busybox"}]}
                },
            },
        }

    batch.create_namespaced_job("jobs", job("deadline", activeDeadlineSeconds=1))
    batch.create_namespaced_job("jobs", job("cascade"))
    batch.create_namespaced_job("jobs", job("orphan"))
    kube_server.wait_for(
        lambda: len([p for p in kube_server.list("pods", "jobs") if ready(p)]) == 3, 3, "3 job pods running"
    )
    pod = kube_server.list("pods", "jobs", label_selector="job-name=cascade")[0]
    assert pod["metadata"]["ownerReferences"][0]["kind"] == "Job", pod["metadata"]

    def failed():
        conds = kube_server.get("jobs", "jobs", "deadline")["status"].get("conditions", [])
        return [c for c in conds if c["type"] == "Failed" and c["status"] == "True"]

    cond = kube_server.wait_for(failed, 3, "Failed condition on the deadline job")
    assert cond[0]["reason"] == "DeadlineExceeded", cond
    assert kube_server.list("pods", "jobs", label_selector="job-name=deadline") == []

    batch.delete_namespaced_job("cascade", "jobs", propagation_policy="Background")
    assert kube_server.list("pods", "jobs", label_selector="job-name=cascade") == []
    batch.delete_namespaced_job("orphan", "jobs")  # batch/v1 default: orphan the pods
    orphans = kube_server.list("pods", "jobs", label_selector="job-name=orphan")
    assert len(orphans) == 1 and not orphans[0]["metadata"].get("ownerReferences"), orphans


def test_inject_error_429_500_and_dropped_connection(kube_server, core):
    rule = kube_server.inject_error(method="GET", path_contains="/namespaces", status=429)
    with pytest.raises(ApiException) as throttled:
        core.list_namespace()
    assert throttled.value.status == 429, throttled.value
    assert status_of(throttled.value)["reason"] == "TooManyRequests", throttled.value.body
    assert core.list_namespace().items == [] and rule.remaining == 0, rule

    kube_server.inject_error(method="POST", status=429, retry_after=2)
    with pytest.raises(ApiException) as throttled:
        core.create_namespace({"metadata": {"name": "x"}})
    assert throttled.value.headers["Retry-After"] == "2", throttled.value.headers
    assert status_of(throttled.value)["details"]["retryAfterSeconds"] == 2, throttled.value.body

    # urllib3's default Retry honours Retry-After on idempotent requests: the client never sees it
    before, started = len(kube_server.requests), time.monotonic()
    kube_server.inject_error(method="GET", status=429, retry_after=1)
    assert core.list_namespace().items == []
    assert len(kube_server.requests) - before == 2 and time.monotonic() - started >= 1

    kube_server.inject_error(method="POST", status=500)
    with pytest.raises(ApiException) as boom:
        core.create_namespace({"metadata": {"name": "x"}})
    assert boom.value.status == 500 and status_of(boom.value)["reason"] == "InternalError", boom.value.body
    assert kube_server.get("namespaces", None, "x") is None

    kube_server.inject_error(method="POST", drop_connection=True)
    with pytest.raises(urllib3.exceptions.HTTPError):
        core.create_namespace({"metadata": {"name": "x"}})
    assert kube_server.get("namespaces", None, "x") is None
    core.create_namespace({"metadata": {"name": "x"}})

    before = len(kube_server.requests)
    kube_server.inject_error(method="GET", drop_connection=True)  # urllib3 retries an idempotent GET
    assert [n.metadata.name for n in core.list_namespace().items] == ["x"]
    assert len(kube_server.requests) - before == 2, kube_server.requests[before:]

    kube_server.inject_error(status=None, delay=0.3)
    started = time.monotonic()
    core.read_namespace("x")
    assert time.monotonic() - started >= 0.3


def test_cordoned_node_gets_no_new_pods(kube_demo, core):
    core.patch_node("kind-drillkit-worker", {"spec": {"unschedulable": True}})
    for pod in api_pods(kube_demo):
        core.delete_namespaced_pod(pod["metadata"]["name"], NS)
    pods = kube_demo.wait_for(
        lambda: (lambda ps: ps if len(ps) == 3 else None)(api_pods(kube_demo)), 5, "3 replacement pods Ready"
    )
    nodes = {p["spec"]["nodeName"] for p in pods}
    assert nodes == {"kind-drillkit-worker2"}, f"cordoned worker got pods: {nodes}"

    core.patch_node("kind-drillkit-worker2", {"spec": {"unschedulable": True}})
    core.delete_namespaced_pod(pods[0]["metadata"]["name"], NS)
    pending = kube_demo.wait_for(
        lambda: [
            p
            for p in api_pods(kube_demo, False)
            if any(
                c["type"] == "PodScheduled" and c["reason"] == "Unschedulable"
                for c in p["status"].get("conditions", [])
            )
        ],
        3,
        "an Unschedulable pod",
    )
    assert not pending[0]["spec"].get("nodeName") and pending[0]["status"]["phase"] == "Pending", pending


def test_server_stops_cleanly_with_open_watch(tmp_path):
    server = KubeServer(kubeconfig_dir=tmp_path).start()
    client = server.api_client()
    core = kubernetes.client.CoreV1Api(client)
    events = []
    watcher = threading.Thread(
        target=lambda: events.extend(kubernetes.watch.Watch().stream(core.list_namespace, timeout_seconds=30))
    )
    watcher.start()
    server.seed({"kind": "Namespace", "metadata": {"name": "w"}})
    server.wait_for(lambda: events, 3, "the watch to see the namespace")
    started = time.monotonic()
    server.stop()
    watcher.join(5)
    client.close()
    assert not watcher.is_alive() and time.monotonic() - started < 3, "stop() ends open watches"
    assert [e["type"] for e in events] == ["ADDED"], events
