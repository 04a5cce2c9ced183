"""What only a real control plane can show: its build, its RBAC answers, a watch that expired,
graceful deletion, the disruption controller, RBAC refusals and Pod Security admission.

Why: the retired hand-written API server answered what its author believed Kubernetes answers.
Each test here pins a behaviour of the real kube-apiserver, kube-controller-manager and KWOK
(tests/kubecluster) that drillkit depends on, and each failed, or could not be written, against
the fake.
"""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from drillkit.cli import main
from drillkit.faults import Undo
from drillkit.journal import read_journal
from drillkit.kube import Kube, KubeSettings, Pod
from tests.helpers import run_folder, write_scenario
from tests.kube_drill import direct_fault, scenario
from tests.kubecluster import CONTEXT, KubeServer
from tests.kubecluster.cluster import RBAC_NAMESPACE, REPO, pod_ready
from tests.kubecluster.controlplane import ADMIN_TOKEN, ControlPlane, _die_with_parent
from tests.promfixture import PromEnv
from tests.test_kube_rbac import manifest_without

pytestmark = [pytest.mark.wire]
NS = "chatbot"
SA = ("drillkit", "drillkit")
RBAC_NODE_DRAIN = REPO / "deploy" / "rbac-node-drain.yaml"


@pytest.fixture
def kube(kube_demo: KubeServer) -> Iterator[Kube]:
    k = Kube(KubeSettings(CONTEXT, kube_demo.kubeconfig_path))
    try:
        yield k
    finally:
        k.close()


# --- (a) the server is a real build ---------------------------------------------------------------


def test_version_is_the_real_kube_apiserver_build(kube_demo: KubeServer, kube_api_client: Any, kube: Kube) -> None:
    import kubernetes

    v = kubernetes.client.VersionApi(kube_api_client).get_code()
    assert v.git_version == "v1.35.4", v
    assert (v.major, v.minor) == ("1", "35"), v
    assert v.go_version.startswith("go1."), v
    assert v.platform.startswith("linux/"), v
    assert v.compiler == "gc" and v.build_date.startswith("20"), v
    assert "kubeserver" not in str(v.to_dict()).lower(), f"the fake's version: {v}"
    kube.verify_server()  # and drillkit takes it for Kubernetes
    asked = [r.path for r in kube_demo.requests if r.path.rstrip("/") == "/version"]
    assert asked, f"drillkit did not ask /version: {[r.path for r in kube_demo.requests]}"


# --- (b) kubectl auth can-i as the ServiceAccount -------------------------------------------------


def can_i(server: KubeServer, token: str, verb: str, resource: str, *where: str) -> str:
    """`kubectl auth can-i` as the token's user: "yes" or "no"."""
    res, _, sub = resource.partition("/")
    args = ["auth", "can-i", verb, res, *([f"--subresource={sub}"] if sub else []), *where]
    return server.kubectl(*args, token=token, check=False).split()[0]


def role_rules(path: Path) -> list[tuple[str, str]]:
    """(verb, resource as can-i takes it: `deployments.apps/scale`) of every rule in `path`."""
    out = []
    for doc in yaml.safe_load_all(path.read_text()):
        if doc and doc["kind"] in ("Role", "ClusterRole"):
            for rule in doc["rules"]:
                for group in rule["apiGroups"]:
                    for resource in rule["resources"]:
                        res, _, sub = resource.partition("/")
                        named = f"{res}.{group}" if group else res
                        out += [(verb, named + (f"/{sub}" if sub else "")) for verb in rule["verbs"]]
    return out


def test_can_i_answers_as_the_shipped_rbac_says(kube_demo: KubeServer, tmp_path: Path) -> None:
    kube_demo.ensure_namespace("payments")  # (reset keeps namespaces an earlier test made)
    token = kube_demo.enforce_rbac()
    granted = role_rules(RBAC_NAMESPACE)
    assert len(granted) > 20, granted
    wrong = [f"{v} {r} -n {NS}" for v, r in granted if can_i(kube_demo, token, v, r, "-n", NS) != "yes"]
    assert not wrong, f"the Role grants these, but the apiserver says no: {wrong}"
    assert can_i(kube_demo, token, "get", "namespaces") == "yes"  # deploy/rbac.yaml's ClusterRole
    refused = [
        ("list", "secrets", "--all-namespaces"),
        ("create", "pods", "-n", "payments"),
        ("delete", "pods", "-n", "payments"),
        ("get", "secrets", "-n", "kube-system"),
        ("delete", "deployments.apps", "-n", NS),
        ("update", "secrets", "-n", NS),
        ("list", "leases.coordination.k8s.io", "-n", NS),
        ("patch", "nodes"),
        ("create", "pods/eviction", "-n", NS),
        ("list", "pods", "--all-namespaces"),
    ]
    said = {" ".join(q): can_i(kube_demo, token, *q) for q in refused}
    assert set(said.values()) == {"no"}, f"the shipped RBAC grants more than it says: {said}"
    kube_demo.kubectl("apply", "-f", str(RBAC_NODE_DRAIN))
    drain = [f"{v} {r}" for v, r in role_rules(RBAC_NODE_DRAIN)]
    assert {"patch nodes", "list pods", "create pods/eviction"} <= set(drain), drain
    now = {q: can_i(kube_demo, token, *q.split(), "--all-namespaces") for q in drain}
    assert set(now.values()) == {"yes"}, f"rbac-node-drain.yaml applied, yet: {now}"
    assert can_i(kube_demo, token, "delete", "nodes") == "no"


# --- (c) a watch that gets 410 Gone -----------------------------------------------------------------


def restart_etcd(plane: ControlPlane) -> None:
    """Stop etcd and start it again on its data: the apiserver's watch cache resumes its etcd
    watches from their last revision, finds it compacted, and lists again; a watch from an older
    resourceVersion then gets 410 Gone (as after an apiserver restart or a long disconnect)."""
    old = plane.procs["etcd"]
    old.terminate()
    old.wait(10)
    with open(plane.root / "etcd.log", "ab") as log:
        plane.procs["etcd"] = subprocess.Popen(
            old.args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, preexec_fn=_die_with_parent,
        )  # fmt: skip
    plane._wait_http(f"{plane.etcd_url}/health", "etcd")
    plane._wait_http(f"{plane.url}/readyz", "kube-apiserver", auth=True, timeout=60)


def initializing_caches(server: KubeServer) -> list[str]:
    """The resources whose watch cache still answers 429 "storage is (re)initializing" ([] when
    every one the tests use serves lists again)."""
    from tests.kubecluster.cluster import RESOURCES, ApiError

    waiting = []
    for resource, (prefix, _, _) in RESOURCES.items():
        try:
            server.call("GET", f"{prefix}/{resource}?limit=1")
        except ApiError as exc:
            if exc.status != 429:
                raise
            waiting.append(resource)
    return waiting


def watch_answer(plane: ControlPlane, rv: str) -> str:
    """The first line of a watch of chatbot's pods from `rv`, asked straight of the apiserver."""
    import ssl
    import urllib.error
    import urllib.request

    url = f"{plane.url}/api/v1/namespaces/{NS}/pods?watch=true&resourceVersion={rv}&timeoutSeconds=1"
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    ctx = ssl.create_default_context(cafile=str(plane.ca))
    try:
        with urllib.request.urlopen(req, timeout=10, context=ctx) as r:
            return r.readline().decode()
    except urllib.error.HTTPError as exc:  # 429 while the watch cache initializes again
        return f"HTTP {exc.code}"


@pytest.fixture
def own_demo(tmp_path: Path) -> Iterator[KubeServer]:
    """The demo platform on a control plane of this test's own: restarting etcd under the shared
    one left KWOK's and the controllers' watches behind, and the next test's pods never got Ready."""
    from tests.kubecluster.controlplane import k8s_bin_dir

    (tmp_path / "plane").mkdir()
    plane = ControlPlane(root=tmp_path / "plane", bin=k8s_bin_dir()).start()
    try:
        cluster = KubeServer(plane, tmp_path)
        try:
            cluster.reset()
            cluster.seed_demo(wait=True)
            yield cluster
        finally:
            cluster.proxy.stop()
    finally:
        plane.stop()


def test_wait_pods_lists_again_when_its_watch_gets_410_gone(
    own_demo: KubeServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Between wait_pods' list and its watch, etcd is compacted and restarted: the watch from the
    list's resourceVersion answers an ERROR event with 410 Gone. drillkit used to die on it with
    KeyError 'raw_object' (the client's Watch.stream with deserialize=False); it lists again."""
    kube_demo, kube = own_demo, Kube(KubeSettings(CONTEXT, own_demo.kubeconfig_path))
    plane = kube_demo.plane
    first_list: list[str] = []

    def done(pods: list[Pod]) -> bool:
        if not first_list:  # after wait_pods' first list, before its watch
            first_list.append(kube_demo.call("GET", f"/api/v1/namespaces/{NS}/pods")["metadata"]["resourceVersion"])
            for i in range(5):  # revisions past the pods cache's last one, compacted away with it
                kube_demo.seed({"kind": "ConfigMap", "metadata": {"name": f"after-the-list-{i}", "namespace": NS}})
            plane.compact_etcd()
            restart_etcd(plane)
            kube_demo.wait_for(
                lambda: '"code":410' in watch_answer(plane, first_list[0]), 30, "a watch from the list's RV to get 410"
            )
            kube_demo.seed(
                {
                    "kind": "Pod",
                    "metadata": {"name": "late", "namespace": NS, "labels": {"app": "late"}},
                    "spec": {"containers": [{"name": "c", "image": "late:1"}]},
                }
            )
            return False
        return any(p.name == "late" for p in pods)

    caplog.set_level(logging.WARNING, logger="drillkit.kube")
    try:
        assert kube.wait_pods(NS, "app=late", done, timeout=60) is True
    finally:
        kube.close()
    watches = [r for r in kube_demo.requests if r.query.get("watch") in ("True", "true")]
    assert watches and watches[0].status == 200, watches
    lists = [i for i, r in enumerate(kube_demo.requests) if r.path.endswith("/pods") and "watch" not in r.query]
    assert len(lists) >= 2, "wait_pods did not list again"
    gone = [m for m in caplog.messages if "410" in m and "listing again" in m]
    assert gone, f"no 410 seen by wait_pods: {caplog.messages}"
    assert "too old resource version" in gone[0], gone


# --- (d) eviction is a graceful deletion ----------------------------------------------------------


def pod_events(plane: ControlPlane, name: str, rv: str, timeout: int) -> Iterator[tuple[float, str, dict[str, Any]]]:
    """(arrival time, type, pod) of the watch events of pod `name` since `rv`, asked straight of
    the apiserver (its watch cache replays what happened since `rv`)."""
    import json
    import ssl
    import urllib.request

    query = f"watch=true&resourceVersion={rv}&timeoutSeconds={timeout}&fieldSelector=metadata.name%3D{name}"
    req = urllib.request.Request(
        f"{plane.url}/api/v1/namespaces/{NS}/pods?{query}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    with urllib.request.urlopen(
        req, timeout=timeout + 10, context=ssl.create_default_context(cafile=str(plane.ca))
    ) as r:
        for line in r:
            event = json.loads(line)
            yield time.monotonic(), event["type"], event["object"]


def test_eviction_is_a_graceful_deletion(kube_demo: KubeServer, kube: Kube) -> None:
    """An eviction deletes with the pod's grace period: the pod is Terminating (deletionTimestamp
    set, deletionGracePeriodSeconds 5) and goes when its containers stop (KWOK: at a random
    moment within the grace period, as a kubelet whose process may exit on SIGTERM at once or
    only when killed at the deadline), never later."""
    kube_demo.seed(
        {
            "kind": "Pod",
            "metadata": {"name": "slow-to-stop", "namespace": NS},
            "spec": {"terminationGracePeriodSeconds": 5, "containers": [{"name": "c", "image": "app:1"}]},
        }
    )
    ready = kube_demo.wait_for(lambda: pod_ready(kube_demo.get("pods", NS, "slow-to-stop") or {"metadata": {}}), 30)
    assert ready
    rv = kube_demo.call("GET", f"/api/v1/namespaces/{NS}/pods")["metadata"]["resourceVersion"]
    start = time.monotonic()
    assert kube.evict(NS, "slow-to-stop", time.monotonic() + 10) == "evicted"
    events = []
    for at, kind, obj in pod_events(kube_demo.plane, "slow-to-stop", rv, timeout=15):
        events.append(
            (
                at - start,
                kind,
                obj["metadata"].get("deletionTimestamp"),
                obj["metadata"].get("deletionGracePeriodSeconds"),
            )
        )
        if kind == "DELETED":
            break
    kinds = [e[1] for e in events]
    assert kinds[-1:] == ["DELETED"], f"the evicted pod never went: {events}"
    terminating = [e for e in events if e[1] == "MODIFIED" and e[2]]
    assert terminating, f"deleted without a Terminating phase (not graceful): {events}"
    assert terminating[0][3] == 5, f"grace period {terminating[0][3]}, not the pod's 5 s: {events}"
    assert events[-1][0] < 5 + 3, f"gone {events[-1][0]:.1f}s after the eviction, past its 5 s grace period"
    assert kube.get_pod(NS, "slow-to-stop") is None


# --- (e) a PodDisruptionBudget that blocks a drain --------------------------------------------------


def test_a_pdb_blocks_node_drain_and_drillkit_reports_it(kube_demo: KubeServer, tmp_path: Path) -> None:
    kube_demo.seed(
        {
            "kind": "PodDisruptionBudget",
            "metadata": {"name": "api", "namespace": NS},
            "spec": {"minAvailable": 3, "selector": {"matchLabels": {"app": "chatbot-api"}}},
        }
    )

    def computed() -> dict[str, Any] | None:  # by the real disruption controller
        status = (kube_demo.get("poddisruptionbudgets", NS, "api") or {}).get("status") or {}
        return status if status.get("observedGeneration") and status.get("currentHealthy") == 3 else None

    status = kube_demo.wait_for(computed, 30, "the disruption controller to compute the PDB")
    assert status["disruptionsAllowed"] == 0 and status["desiredHealthy"] == 3, status
    api_before = {p["metadata"]["name"]: p["metadata"]["uid"] for p in kube_demo.list("pods", NS, "app=chatbot-api")}
    kube_demo.enforce_rbac()
    kube_demo.kubectl("apply", "-f", str(RBAC_NODE_DRAIN))
    d = direct_fault(
        kube_demo, tmp_path, {"kind": "node-drain", "pod_selector": "app=chatbot-api", "evict_timeout": "2s"}
    )
    try:
        found = d.fault.preflight()
        node = found.node.name
        on_node = [p.name for p in found.evict if p.labels.get("app") == "chatbot-api"]
        assert on_node, found
        with ExitStack() as stack:
            d.fault.inject(found, Undo(stack, d.ctx))
    finally:
        d.journal.close()
        kube_demo.rbac = None
    (result,) = [e.data for e in d.events() if e.kind == "drain_result"]
    assert set(result["blocked"]) == {f"{NS}/{n}" for n in on_node}, result
    for why in result["blocked"].values():
        assert "not evicted within the deadline" in why and "429" in why and "disruption budget" in why, why
    refused = [r for r in kube_demo.requests if r.path.endswith("/eviction") and r.status == 429]
    assert len(refused) >= len(on_node), "the apiserver refused no eviction"
    assert "Cannot evict pod as it would violate the pod's disruption budget" in refused[0].answer
    after = {p["metadata"]["name"]: p["metadata"]["uid"] for p in kube_demo.list("pods", NS, "app=chatbot-api")}
    assert after == api_before, "a pod the budget protects was evicted"
    assert not (kube_demo.get("nodes", None, node) or {})["spec"].get("unschedulable"), "the node stayed cordoned"


# --- (f) a drill under an RBAC missing one verb -------------------------------------------------------


def test_a_drill_missing_one_verb_says_which(kube_demo: KubeServer, prom_env: PromEnv, tmp_path: Path) -> None:
    prom_env.ensure_exporter()
    prom_env.wait_up()
    path = write_scenario(
        tmp_path / "d.yaml", scenario([{"kind": "pod-kill", "selector": "app=chatbot-api", "count": 1}])
    )
    before = {p["metadata"]["uid"] for p in kube_demo.list("pods", NS)}
    kube_demo.enforce_rbac(manifest_without(tmp_path, "pods", "delete"))
    try:
        r = CliRunner().invoke(
            main,
            ["run", str(path), "--prometheus-url", prom_env.url, "--kubeconfig", kube_demo.kubeconfig_path,
             "--report-dir", str(tmp_path / "r"), "--format", "json"],
        )  # fmt: skip
    finally:
        kube_demo.rbac = None
    out = r.output + r.stderr
    assert r.exit_code != 0, out
    assert f"forbidden: cannot delete pods {NS}/chatbot-api-" in out, out
    assert 'cannot delete resource "pods" in API group "" in the namespace "chatbot"' in out, out
    assert any('cannot delete resource "pods"' in m for m in kube_demo.denied), kube_demo.denied
    assert {p["metadata"]["uid"] for p in kube_demo.list("pods", NS)} == before, "a pod was deleted anyway"
    assert kube_demo.list("leases", NS) == [], "the drill lock was left"


# --- (g) a ResourceQuota refuses node mode's stress pod ---------------------------------------------
# (Pod Security `restricted` admits it: tests/test_kube_faults.py)


@pytest.mark.parametrize("fault", ["cpu-pressure", "memory-pressure"])
def test_a_resource_quota_refuses_the_stress_pod_in_preflight(
    kube_demo: KubeServer, prom_env: PromEnv, tmp_path: Path, fault: str
) -> None:
    kube_demo.seed(
        {
            "kind": "ResourceQuota",
            "metadata": {"name": "tight", "namespace": NS},
            "spec": {"hard": {"requests.memory": "1Mi"}},
        }
    )
    prom_env.ensure_exporter()
    prom_env.wait_up()
    spec = {"kind": fault, "mode": "node", "selector": "app=chatbot-api", "duration": "5s"}
    path = write_scenario(tmp_path / "d.yaml", scenario([spec], guardrails={"max_targets": "100%"}))
    kube_demo.enforce_rbac()
    try:
        r = CliRunner().invoke(
            main,
            ["run", str(path), "--prometheus-url", prom_env.url, "--kubeconfig", kube_demo.kubeconfig_path,
             "--report-dir", str(tmp_path / "r"), "--format", "json"],
        )  # fmt: skip
    finally:
        kube_demo.rbac = None
    out = r.output + r.stderr
    assert r.exit_code == 3, out
    assert f"{fault}: the cluster refuses the stress pod {NS}/" in out, out
    assert "exceeded quota: tight" in out and "nothing created" in out, out
    assert "admission control, not by RBAC" in out and "grant this verb" not in out, out
    pod_posts = [r for r in kube_demo.requests if r.method == "POST" and r.path.endswith(f"/{NS}/pods")]
    assert pod_posts and all(p.query.get("dryRun") == "All" for p in pod_posts), pod_posts
    assert not kube_demo.list("pods", NS, "drillkit.io/run-id"), "a stress pod was left"
    assert kube_demo.list("leases", NS) == [], "the drill lock was left"
    kinds = [e.kind for e in read_journal(run_folder(tmp_path / "r"))]
    assert "revert_registered" not in kinds and "injected" not in kinds, kinds
