"""`drillkit lab up --kind` / `lab down --kind` without Docker: the platform it deploys and the
steps it takes.

Why: the kind practice platform only really runs where Docker is (tests/test_kind.py, opt-in),
so everything that can be proven here is: (a) the shipped manifests pass the official
Kubernetes 1.29-1.31 schemas, and `kubectl apply` them as `lab up --kind` does onto a real
kube-apiserver (tests/kubecluster: RBAC, admission, controllers, scheduler, KWOK nodes), where
every workload rolls out and every pod comes up on the node it must; (b) the rules Prometheus gets are the local lab's,
byte for byte, and pass promtool (the Prometheus and Alertmanager configs too); (c) the
orchestration is the right sequence of tool invocations, recorded by stand-in `docker`,
`podman`, `kind` and `kubectl` executables on PATH, with a real Prometheus and Alertmanager
deciding readiness; (d) every scenarios/k8s drill names alerts, steady states, selectors and
objects the platform has, and preflights on it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from drillkit.errors import PreflightError, UnavailableError
from drillkit.faults.kube.memory import quantity_bytes
from drillkit.lab import kindlab
from drillkit.lab.services import PrometheusSetup, Service, start_alertmanager, start_prometheus
from drillkit.prometheus import PromConfig, Prometheus
from drillkit.signals import wait_until
from tests.helpers import MetricsServer, run_cli
from tests.kubecluster import CONTEXT, KubeServer
from tests.kubecluster.cluster import DEMO_MANIFESTS, pod_ready
from tests.kubecluster.schemas import problems

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = sorted((ROOT / "scenarios" / "k8s").glob("*.yaml"))
LAB_RULES = ROOT / "drillkit" / "lab" / "rules" / "chatbot.rules.yml"
IMAGE_ID = "sha256:" + "ab" * 32


def docs() -> list[dict[str, Any]]:
    return kindlab.manifests(IMAGE_ID)


def find(kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
    return next(
        (
            d
            for d in docs()
            if d["kind"] == kind
            and d["metadata"]["name"] == name
            and (namespace is None or d["metadata"].get("namespace") == namespace)
        ),
        None,
    )


# --- (a) schemas and a real apiserver ----------------------------------------------------------


def test_every_manifest_passes_the_official_schemas() -> None:
    bad = {f"{d['kind']}/{d['metadata']['name']}": p for d in docs() if (p := problems(d))}
    assert not bad, bad
    kinds = {d["kind"] for d in docs()}
    assert {"Deployment", "StatefulSet", "ConfigMap", "Secret", "Service", "ClusterRole"} <= kinds, kinds


def test_every_shipped_yaml_file_is_deployed_and_the_kind_config_is_the_repositorys() -> None:
    shipped = {p.name for p in kindlab.KIND_DIR.glob("*.yaml")}
    assert shipped == {*kindlab.MANIFESTS, kindlab.KIND_CONFIG.name, kindlab.ADMISSION_POLICY.name}, shipped
    assert kindlab.KIND_CONFIG.read_text() == (ROOT / "kind-config.yaml").read_text(), (
        "drillkit/lab/kind/kind-config.yaml and kind-config.yaml differ: keep them identical"
    )
    config = yaml.safe_load(kindlab.KIND_CONFIG.read_text())
    assert config["name"] == kindlab.CLUSTER
    mapped = {m["containerPort"]: m["hostPort"] for n in config["nodes"] for m in n.get("extraPortMappings", [])}
    node_ports = {
        p["nodePort"]: d["metadata"]["name"]
        for d in docs()
        if d["kind"] == "Service"
        for p in d["spec"]["ports"]
        if "nodePort" in p
    }
    assert node_ports == {30090: "prometheus", 30093: "alertmanager"}, node_ports
    assert mapped == {30090: 9090, 30093: 9093}, mapped
    assert kindlab.PROMETHEUS_URL.endswith(":9090") and kindlab.ALERTMANAGER_URL.endswith(":9093")


def test_a_config_or_image_change_rolls_the_pods_that_use_it() -> None:
    prom = find("Deployment", "prometheus", "monitoring")
    api = find("Deployment", "chatbot-api", "chatbot")
    assert prom and api
    assert kindlab.CONFIG_HASH in prom["spec"]["template"]["metadata"]["annotations"]
    assert api["spec"]["template"]["metadata"]["annotations"][kindlab.IMAGE_ID] == "ab" * 32
    other = next(
        d
        for d in kindlab.manifests("sha256:" + "cd" * 32)
        if d["kind"] == "Deployment" and d["metadata"]["name"] == "chatbot-api"
    )
    assert other["spec"]["template"] != api["spec"]["template"]


def bound_memory_drill_worker(server: KubeServer, total: int = 16 * 2**30) -> None:
    """Give the demo's second worker what kind-config.yaml gives the kind one on a `total`-byte
    machine: its label, and allocatable = capacity - system-reserved - eviction-hard."""
    config = yaml.safe_load(kindlab.kind_config(total))
    workers = [n for n in config["nodes"] if n["role"] == "worker"]
    (i,) = [k for k, n in enumerate(workers) if n.get("labels")]
    name = "kind-drillkit-worker" + (str(i + 1) if i else "")
    args = yaml.safe_load(workers[i]["kubeadmConfigPatches"][0])["nodeRegistration"]["kubeletExtraArgs"]
    reserved = quantity_bytes(args["system-reserved"].removeprefix("memory="))
    hard = quantity_bytes(dict(x.split("<") for x in args["eviction-hard"].split(","))["memory.available"])

    def change(n: dict[str, Any]) -> None:
        n["metadata"].setdefault("labels", {}).update(workers[i]["labels"])
        n["status"].setdefault("capacity", {})["memory"] = str(total)
        n["status"].setdefault("allocatable", {})["memory"] = str(total - reserved - hard)

    server.update("nodes", None, name, change)


def apply(server: KubeServer) -> None:
    """Apply the platform as `lab up --kind` does (the real kubectl: `apply -f -` of
    kindlab.manifests_yaml, then `rollout status` of each workload) onto the 3 kind-like nodes
    of tests/kubecluster/demo.yaml (the control plane tainted and labelled ingress-ready)."""
    for doc in yaml.safe_load_all(DEMO_MANIFESTS.read_text()):
        if doc["kind"] == "Node":
            server.seed(doc)
    bound_memory_drill_worker(server)
    server.kubectl("apply", "-f", "-", input=kindlab.manifests_yaml(IMAGE_ID))
    for ns, kind, name in kindlab.WORKLOADS:
        server.kubectl("-n", ns, "rollout", "status", f"{kind}/{name}", "--timeout=60s")


@pytest.fixture
def platform(kube_server: KubeServer) -> KubeServer:
    apply(kube_server)
    expected = {"chatbot": 5, "monitoring": 3}  # 3 api + db + traffic; ksm, prometheus, alertmanager
    kube_server.wait_for(
        lambda: all(len([p for p in kube_server.list("pods", ns) if pod_ready(p)]) == n for ns, n in expected.items()),
        30,
        f"every platform pod Ready ({expected})",
    )
    return kube_server


@pytest.mark.wire
def test_the_platform_applies_and_monitoring_stays_off_the_workers(platform: KubeServer) -> None:
    for ns, kind, name in kindlab.WORKLOADS:
        resource = {"deployment": "deployments", "statefulset": "statefulsets"}[kind]
        assert platform.get(resource, ns, name), f"{kind} {ns}/{name} not created"
    assert platform.get("configmaps", "monitoring", kindlab.RULES_CONFIGMAP)
    nodes = {p["metadata"]["name"]: p["spec"].get("nodeName") for p in platform.list("pods", "monitoring")}
    assert set(nodes.values()) == {"kind-drillkit-control-plane"}, nodes
    db = platform.get("pods", "chatbot", "chatbot-db-0")
    assert db and db["spec"]["nodeName"] != "kind-drillkit-control-plane", "node-drain would drain monitoring"


# --- (b) rules and configs ----------------------------------------------------------------------


def test_prometheus_gets_the_local_labs_rules_and_promtool_accepts_them(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is needed (apt-get install prometheus)"
    rules = find("ConfigMap", kindlab.RULES_CONFIGMAP, "monitoring")
    assert rules and rules["data"] == {"chatbot.rules.yml": LAB_RULES.read_text()}
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "chatbot.rules.yml").write_text(rules["data"]["chatbot.rules.yml"])
    r = subprocess.run(
        [promtool, "check", "rules", str(tmp_path / "rules" / "chatbot.rules.yml")], capture_output=True, text=True
    )
    assert r.returncode == 0 and "SUCCESS: 10 rules found" in r.stdout, r.stdout + r.stderr
    config = find("ConfigMap", "prometheus-config", "monitoring")
    assert config
    prom_yml = yaml.safe_load(config["data"]["prometheus.yml"])
    prom_yml["rule_files"] = [str(tmp_path / "rules" / "*.yml")]  # where the rules ConfigMap is mounted in the pod
    checked = yaml.safe_load(yaml.safe_dump(prom_yml))
    for job in checked["scrape_configs"]:
        # Debian's promtool is built without Kubernetes discovery: check the rest of the job
        if job.pop("kubernetes_sd_configs", None) is not None:
            job["static_configs"] = [{"targets": ["pod:8000"]}]
        for section, key in (("tls_config", "ca_file"), ("authorization", "credentials_file")):
            if key in job.get(section, {}):  # the pod's ServiceAccount mount, here a file of ours
                (tmp_path / key).write_text("x\n")
                job[section][key] = str(tmp_path / key)
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(checked))
    r = subprocess.run([promtool, "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True, text=True)
    assert r.returncode == 0 and "SUCCESS: 1 rule files found" in r.stdout, r.stdout + r.stderr
    jobs = {j["job_name"] for j in prom_yml["scrape_configs"]}
    assert jobs == {"kube-state-metrics", "kubelet-cadvisor", "chatbot"}, jobs
    assert prom_yml["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["alertmanager.monitoring:9093"]


def test_alertmanager_config_is_valid(tmp_path: Path) -> None:
    amtool = shutil.which("amtool")
    if amtool is None:
        pytest.skip("amtool not installed")
    config = find("ConfigMap", "alertmanager-config", "monitoring")
    assert config
    (tmp_path / "alertmanager.yml").write_text(config["data"]["alertmanager.yml"])
    r = subprocess.run([amtool, "check-config", str(tmp_path / "alertmanager.yml")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


# --- (d) the drills name what the platform has ------------------------------------------------------


def pod_templates(namespace: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(workload, pod template) of every Deployment/StatefulSet in `namespace`."""
    return [
        (d, d["spec"]["template"])
        for d in docs()
        if d["kind"] in ("Deployment", "StatefulSet") and d["metadata"]["namespace"] == namespace
    ]


def selects(selector: str, labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in (part.split("=", 1) for part in selector.split(",")))


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_each_k8s_drill_names_what_the_platform_has(path: Path) -> None:
    sc = yaml.safe_load(path.read_text())
    ns = sc["target"]["kubernetes"]["namespace"]
    assert find("Namespace", ns), f"{path.name}: namespace {ns} is not in the platform"
    assert sc["target"]["kubernetes"]["context"] == kindlab.CONTEXT
    assert sc["detection"]["alert"] in kindlab.rule_names(), f"{path.name}: alert {sc['detection']['alert']}"
    checks = {(c.expr, c.expect) for c in kindlab.STEADY_STATE}
    for probe in sc["steady_state"]:
        assert (probe["expr"], probe["expect"]) in checks, (
            f"{path.name}: steady state {probe['name']!r} is not one `lab up --kind` waits for"
        )
    for abort in sc.get("guardrails", {}).get("abort_when", []):
        metric = re.match(r"\w+", abort["expr"])
        assert metric and any(metric.group(0) in c.expr for c in kindlab.STEADY_STATE), abort
    for fault in sc["faults"]:
        where = f"{path.name}: {fault['kind']}"
        templates = pod_templates(ns)
        for key in ("selector", "pod_selector"):
            if key in fault:
                matched = [t for w, t in templates if selects(fault[key], t["metadata"]["labels"])]
                assert matched, f"{where}: {key} {fault[key]} matches no pod of the platform"
                if "container" in fault:
                    names = {c["name"] for t in matched for c in t["spec"]["containers"]}
                    assert fault["container"] in names, f"{where}: container {fault['container']} not in {names}"
        for ref in [fault.get("workload"), *fault.get("restart", [])]:
            if ref:
                kind, name = ref.split("/")
                assert find({"deployment": "Deployment", "statefulset": "StatefulSet"}[kind], name, ns), (
                    f"{where}: {ref}"
                )
                if "container" in fault:
                    workload = find({"deployment": "Deployment", "statefulset": "StatefulSet"}[kind], name, ns)
                    assert workload
                    names = {c["name"] for c in workload["spec"]["template"]["spec"]["containers"]}
                    assert fault["container"] in names, f"{where}: container {fault['container']}"
        if "secret" in fault:
            secret = find("Secret", fault["secret"], ns)
            assert secret, f"{where}: Secret {fault['secret']}"
            for key in ("key", "user_key", "password_key"):
                if key in fault:
                    assert fault[key] in secret["stringData"], f"{where}: {key} {fault[key]} not in the Secret"
        if "service" in fault:
            service = find("Service", fault["service"], ns)
            assert service, f"{where}: Service {fault['service']}"
            assert fault.get("port", 5432) in [p["port"] for p in service["spec"]["ports"]], where
        if fault["kind"] == "memory-pressure":
            limits = [
                c["resources"]["limits"]["memory"]
                for w, t in templates
                if selects(fault["selector"], t["metadata"]["labels"])
                for c in t["spec"]["containers"]
                if c["name"] == fault["container"]
            ]
            assert limits, f"{where}: the container needs a memory limit to be OOM-killed"


def test_kube_state_metrics_exports_what_the_steady_states_read() -> None:
    ksm = find("Deployment", "kube-state-metrics", "monitoring")
    assert ksm
    resources = next(a for a in ksm["spec"]["template"]["spec"]["containers"][0]["args"] if a.startswith("--resources"))
    for check in kindlab.STEADY_STATE:
        if not check.expr.startswith("kube_"):  # the rest is the postgres exporter's (below)
            assert check.expr.startswith("sum(pg_"), check.expr
            continue
        family = check.expr.split("{")[0].split("_")[1]  # kube_deployment_… -> deployment
        assert f"{family}s" in resources, (check.expr, resources)
    jobs_in_rules = set(re.findall(r'job="([^"]+)"', LAB_RULES.read_text()))
    annotated = {t["metadata"].get("annotations", {}).get("prometheus.io/job") for _, t in pod_templates("chatbot")} - {
        None
    }
    assert jobs_in_rules <= annotated, (jobs_in_rules, annotated)
    assert "postgres" in annotated, "the database alert reads the postgres exporter"


@pytest.mark.wire
@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_each_k8s_drill_preflights_on_the_shipped_platform(platform: KubeServer, tmp_path: Path, path: Path) -> None:
    """Each drill resolves its targets on the shipped platform (applied to the real apiserver)
    and plans exact objects; nothing is written."""
    from drillkit.faults import FaultContext, fault_class
    from drillkit.journal import Journal
    from drillkit.kube import kube_factory_for
    from drillkit.scenario import load_scenario
    from drillkit.signals import StopFlag

    sc = load_scenario(path)
    journal = Journal(tmp_path / "journal.jsonl")
    ctx = FaultContext(
        run_id="cafe0001",
        scenario=sc,
        journal=journal,
        stop=StopFlag(),
        log=lambda _: None,
        kube_factory=kube_factory_for(sc, CONTEXT, (), platform.kubeconfig_path),
    )
    platform.requests.clear()
    lines = []
    for spec in sc.faults:
        fault = fault_class(spec.kind, "kubernetes")(spec.params, ctx)
        lines += fault.plan(fault.preflight())
    journal.close()
    assert lines and any("(uid " in line for line in lines), lines
    changed = [
        f"{r.method} {r.path}" for r in platform.requests if r.method != "GET" and r.query.get("dryRun") != "All"
    ]
    assert changed == [], f"preflight changed the cluster: {changed}"


# --- (c) the orchestration, recorded --------------------------------------------------------------

FAKE_TOOL = r"""#!{python}
import json, os, sys
from pathlib import Path
state = Path(os.environ["FAKE_TOOLS_STATE"])
tool, args = Path(sys.argv[0]).name, sys.argv[1:]
call = {{"tool": tool, "args": args, "provider": os.environ.get("KIND_EXPERIMENTAL_PROVIDER")}}
if args[-2:] == ["-f", "-"]:
    (state / "applied.yaml").write_text(sys.stdin.read())
if tool in ("docker", "podman") and args[0] == "build":
    call["context_has_app"] = (Path(args[-1]) / "drillkit" / "lab" / "app.py").is_file()
    call["dockerfile"] = Path(args[args.index("-f") + 1]).read_text().startswith("# The chat API")
if tool == "kind" and args[:2] == ["load", "image-archive"]:
    call["archive_exists"] = Path(args[2]).is_file()
if tool == "kind" and args[:2] == ["create", "cluster"]:
    call["config"] = Path(args[args.index("--config") + 1]).read_text()
with open(state / "calls.jsonl", "a") as fh:
    fh.write(json.dumps(call) + "\n")
fail = state / ("fail-" + tool + "-" + args[0])
if fail.exists():
    sys.stderr.write(fail.read_text())
    sys.exit(1)
clusters = state / "clusters"
if tool == "kind" and args[:2] == ["get", "clusters"]:
    if clusters.exists():
        print(clusters.read_text().strip())
    else:
        sys.stderr.write("No kind clusters found.\n")
elif tool == "kind" and args[:2] == ["create", "cluster"]:
    clusters.write_text(args[args.index("--name") + 1] + "\n")
elif tool == "kind" and args[:2] == ["delete", "cluster"]:
    clusters.unlink()
elif tool == "kubectl" and args[:2] == ["config", "get-contexts"]:
    print("kind-drillkit" if clusters.exists() else "")
elif tool in ("docker", "podman") and args[0] == "info" and "MemTotal" in args[-1]:
    print(16 * 2**30)  # a 16 GiB machine
elif tool in ("docker", "podman") and args[:2] == ["image", "inspect"]:
    print("{image_id}")
elif tool == "podman" and args[0] == "save":
    Path(args[args.index("-o") + 1]).write_bytes(b"tar")
"""


class FakeTools:
    def __init__(self, root: Path) -> None:
        self.bin, self.state = root / "bin", root / "state"
        self.bin.mkdir(parents=True)
        self.state.mkdir()

    def install(self, *names: str) -> FakeTools:
        for name in names:
            exe = self.bin / name
            exe.write_text(FAKE_TOOL.format(python=sys.executable, image_id=IMAGE_ID))
            exe.chmod(0o755)
        return self

    def calls(self) -> list[dict[str, Any]]:
        path = self.state / "calls.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def argv(self) -> list[str]:
        """Each call as one line, build temp paths replaced by <build>."""
        return [
            re.sub(
                r"\S*/drillkit-kind-[^/\s]+",
                "<kind>",
                re.sub(r"\S*/chatbot-image-[^/\s]+", "<build>", " ".join([c["tool"], *c["args"]])),
            )
            for c in self.calls()
        ]


@pytest.fixture
def tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeTools:
    fake = FakeTools(tmp_path / "tools")
    monkeypatch.setenv("PATH", str(fake.bin))
    monkeypatch.setenv("FAKE_TOOLS_STATE", str(fake.state))
    monkeypatch.delenv("KIND_EXPERIMENTAL_PROVIDER", raising=False)
    return fake


def ksm_metrics(available: int) -> bytes:
    return (
        f'kube_deployment_status_replicas_available{{namespace="chatbot",deployment="chatbot-api"}} {available}\n'
        f'kube_deployment_status_replicas_unavailable{{namespace="chatbot",deployment="chatbot-api"}} {3 - available}\n'
        'kube_statefulset_status_replicas_ready{namespace="chatbot",statefulset="chatbot-db"} 1\n'
        # and what the postgres exporter reports: 3 of 97 usable slots taken
        'pg_stat_activity_count{datname="chatbot",state="idle"} 3\n'
        "pg_settings_max_connections 100\n"
        "pg_settings_superuser_reserved_connections 3\n"
    ).encode()


class Monitoring:
    def __init__(self, prometheus: Service, alertmanager: Service, ksm: MetricsServer) -> None:
        self.prometheus, self.alertmanager, self.ksm = prometheus, alertmanager, ksm

    def set_available(self, n: int) -> None:
        """Serve `n` available replicas, and return once Prometheus has scraped that value (so
        a test never races the scrape interval)."""
        self.ksm.body = ksm_metrics(n)
        prom = Prometheus(PromConfig(url=self.prometheus.url))
        expr = 'kube_deployment_status_replicas_available{deployment="chatbot-api"}'
        try:
            seen = wait_until(lambda: [s for s in prom.query(expr) if s.value == n], time.monotonic() + 30, 0.2)
        finally:
            prom.close()
        assert seen, f"Prometheus never scraped {n} available replicas"


@pytest.fixture(scope="module")
def monitoring(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Monitoring]:
    """A real Prometheus with the lab's rules and a real Alertmanager, scraping a chat API
    stand-in (job chatbot-api, up) and a kube-state-metrics stand-in whose replica count the
    test sets."""
    work = tmp_path_factory.mktemp("kindprom")
    api, ksm = MetricsServer(), MetricsServer(ksm_metrics(3))
    am = start_alertmanager(work / "am")
    prom = start_prometheus(
        work / "prom",
        PrometheusSetup(
            scrape={
                "chatbot-api": [api.address],
                "kube-state-metrics": [ksm.address],
            },
            rule_files=[LAB_RULES],
            alertmanager=am.url.removeprefix("http://"),
        ),
    )
    try:
        yield Monitoring(prom, am, ksm)
    finally:
        prom.stop()
        am.stop()
        for server in (api, ksm):
            server.close()


ROLLOUTS = [
    f"kubectl --context kind-drillkit -n {ns} rollout status {kind}/{name} --timeout=10m"
    for ns, kind, name in kindlab.WORKLOADS
]


def test_up_on_a_fresh_machine_runs_every_step_in_order(tools: FakeTools, monitoring: Monitoring) -> None:
    tools.install("docker", "kind", "kubectl")
    monitoring.set_available(3)
    said: list[str] = []
    lab = kindlab.up(said.append, monitoring.prometheus.url, monitoring.alertmanager.url, ready_timeout=60)
    image = kindlab.IMAGE
    assert tools.argv() == [
        "docker info --format {{.ServerVersion}}",
        "kind get clusters",
        "docker info --format {{.MemTotal}}",
        "kind create cluster --name drillkit --config <kind>/kind-config.yaml --wait 120s",
        "kubectl config get-contexts -o name",
        f"docker build -t {image} -f <build>/context/Dockerfile <build>/context",
        f"docker image inspect --format {{{{.Id}}}} {image}",
        f"kind load docker-image {image} --name drillkit",
        "kubectl --context kind-drillkit apply -f -",
        f"kubectl --context kind-drillkit apply -f {kindlab.ADMISSION_POLICY}",
        *ROLLOUTS,
    ], "\n".join(tools.argv())
    config = next(c for c in tools.calls() if c["args"][:2] == ["create", "cluster"])["config"]
    # 16 GiB of machine: the memory-drill worker's pods get 3 GiB, the kubelet reserves the rest
    assert config == kindlab.KIND_CONFIG.read_text().replace("memory=12900Mi", "memory=13312Mi"), config
    build = next(c for c in tools.calls() if c["args"][0] == "build")
    assert build["context_has_app"] and build["dockerfile"], build
    assert (tools.state / "applied.yaml").read_text() == kindlab.manifests_yaml(IMAGE_ID)
    assert lab.created and lab.context == "kind-drillkit"
    assert any("creating kind cluster drillkit" in line for line in said), said


def test_up_again_reuses_the_cluster_and_podman_loads_an_archive(tools: FakeTools, monitoring: Monitoring) -> None:
    tools.install("podman", "kind", "kubectl")
    (tools.state / "clusters").write_text("drillkit\n")
    monitoring.set_available(3)
    lab = kindlab.up(lambda _: None, monitoring.prometheus.url, monitoring.alertmanager.url, ready_timeout=60)
    image = kindlab.IMAGE
    assert tools.argv() == [
        "podman info --format {{.Host.Arch}}",
        "kind get clusters",
        "kubectl config get-contexts -o name",
        f"podman build -t {image} -f <build>/context/Dockerfile <build>/context",
        f"podman image inspect --format {{{{.Id}}}} {image}",
        f"podman save --format docker-archive -o <build>/image.tar {image}",
        "kind load image-archive <build>/image.tar --name drillkit",
        "kubectl --context kind-drillkit apply -f -",
        f"kubectl --context kind-drillkit apply -f {kindlab.ADMISSION_POLICY}",
        *ROLLOUTS,
    ], "\n".join(tools.argv())
    assert {c["provider"] for c in tools.calls() if c["tool"] == "kind"} == {"podman"}
    assert next(c for c in tools.calls() if c["args"][:2] == ["load", "image-archive"])["archive_exists"]
    assert not lab.created


def test_up_waits_for_the_steady_state_and_says_which_does_not_hold(tools: FakeTools, monitoring: Monitoring) -> None:
    tools.install("docker", "kind", "kubectl")
    monitoring.set_available(2)
    try:
        with pytest.raises(UnavailableError) as exc:
            kindlab.up(lambda _: None, monitoring.prometheus.url, monitoring.alertmanager.url, ready_timeout=4)
    finally:
        monitoring.set_available(3)
    assert "'every API replica available'" in str(exc.value) and "got 2.0" in str(exc.value), exc.value
    assert exc.value.exit_code == 3


def test_a_failing_step_stops_up_with_the_tools_own_words(tools: FakeTools) -> None:
    tools.install("docker", "kind", "kubectl")
    (tools.state / "fail-kind-create").write_text("ERROR: failed to create cluster: node(s) already exist\n")
    r = run_cli("lab", "up", "--kind")
    assert r.returncode == 3, r.stdout + r.stderr
    assert "`kind create cluster --name drillkit" in r.stderr and "node(s) already exist" in r.stderr, r.stderr
    assert not [c for c in tools.calls() if c["args"][0] == "build"], "no build after the cluster failed"


@pytest.mark.parametrize(
    ("present", "words"),
    [
        (("kind", "kubectl"), "the kind lab needs `docker` or `podman` on PATH"),
        (("docker", "kubectl"), "the kind lab needs `kind` on PATH: install it, https://kind.sigs.k8s.io"),
        (("podman", "kind"), "the kind lab needs `kubectl` on PATH"),
    ],
)
def test_missing_tools_are_named_in_one_line(tools: FakeTools, present: tuple[str, ...], words: str) -> None:
    tools.install(*present)
    r = run_cli("lab", "up", "--kind")
    assert r.returncode == 3, r.stdout + r.stderr
    assert words in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert tools.calls() == [], "nothing runs before every tool is there"


def test_a_docker_without_its_daemon_is_said_so(tools: FakeTools) -> None:
    tools.install("docker", "kind", "kubectl")
    (tools.state / "fail-docker-info").write_text(
        "Cannot connect to the Docker daemon at unix:///var/run/docker.sock\n"
    )
    with pytest.raises(PreflightError) as exc:
        kindlab.find_tools()
    assert "`docker` is installed but its daemon does not answer" in str(exc.value)
    assert "Cannot connect to the Docker daemon" in str(exc.value)
    r = run_cli("lab", "down", "--kind")
    assert r.returncode == 3 and "daemon does not answer" in r.stderr, r.stderr


def test_down_deletes_the_cluster_once(tools: FakeTools) -> None:
    tools.install("docker", "kind")  # down needs no kubectl
    (tools.state / "clusters").write_text("drillkit\n")
    r = run_cli("lab", "down", "--kind")
    assert r.returncode == 0 and "kind lab down: cluster drillkit deleted" in r.stdout, r.stdout + r.stderr
    r = run_cli("lab", "down", "--kind")
    assert r.returncode == 0 and "no kind cluster drillkit; nothing to delete" in r.stdout, r.stdout + r.stderr
    assert [line for line in tools.argv() if not line.startswith("docker info")] == [
        "kind get clusters",
        "kind delete cluster --name drillkit",
        "kind get clusters",
    ]


def test_local_lab_options_are_refused_with_kind(tools: FakeTools) -> None:
    r = run_cli("lab", "up", "--kind", "--base-port", "20000")
    assert r.returncode == 2 and "--replicas, --base-port and --rules are for the local lab" in r.stderr, r.stderr


@pytest.mark.parametrize(
    ("total", "reserved"),
    [(16 * 2**30, 13 * 2**30), (8 * 2**30, 6 * 2**30), (64 * 2**30 + 12345, 61 * 2**30), (4 * 2**30, 3 * 2**30)],
)
def test_the_memory_drill_worker_is_bounded_from_the_machines_memory(total: int, reserved: int) -> None:
    assert kindlab.memory_drill_reserved(total) == reserved
    config = yaml.safe_load(kindlab.kind_config(total))
    (worker,) = [n for n in config["nodes"] if (n.get("labels") or {}).get("drillkit.io/memory-drill") == "true"]
    assert worker["role"] == "worker"
    (patch,) = [yaml.safe_load(p) for p in worker["kubeadmConfigPatches"]]
    args = patch["nodeRegistration"]["kubeletExtraArgs"]
    assert args["system-reserved"] == f"memory={reserved // 2**20}Mi", args
    hard = dict(x.split("<") for x in args["eviction-hard"].split(","))
    assert hard["memory.available"] == "300Mi", hard
    assert {k: v for k, v in hard.items() if k != "memory.available"} == dict.fromkeys(
        ("nodefs.available", "nodefs.inodesFree", "imagefs.available"), "0%"
    ), "kind's disk signals stay off"
    assert args["eviction-pressure-transition-period"] == "30s"
