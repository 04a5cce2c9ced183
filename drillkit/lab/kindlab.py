"""`drillkit lab up --kind` / `lab down --kind`: the practice platform on a kind cluster.

Why: the Kubernetes drills (scenarios/k8s) need a cluster running the chat platform and a
Prometheus with the same alert rules as the local lab; `kind create cluster` alone gives an
empty one. `up` checks the tools (docker or podman, kind, kubectl), creates the cluster from
the packaged kind config (context kind-drillkit; the memory-drill worker's `system-reserved`
sized from the engine's memory), builds the chat API image from the installed
drillkit package and loads it into the cluster, applies the manifests shipped in
`drillkit/lab/kind/` (plus the rules ConfigMap generated from `drillkit/lab/rules/`, both at the
scrape interval asked for: `drillkit.lab.ruleset`), waits for
every rollout, then waits until Prometheus (localhost:9090 through the kind port mapping) has
evaluated the rules, the steady states of the Kubernetes drills hold and no chatbot alert
fires. `down` deletes the cluster. Every external tool runs through `Tools.run`, so its argv
is the whole interface (the tests record it with stand-in executables).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from drillkit.errors import PreflightError, UnavailableError
from drillkit.lab import ruleset
from drillkit.lab.services import SCRAPE_TIMEOUT_S
from drillkit.signals import wait_until

KIND_DIR = Path(__file__).parent / "kind"
RULES = ruleset.RULES
KIND_CONFIG = KIND_DIR / "kind-config.yaml"
DOCKERFILE = KIND_DIR / "Dockerfile"
ADMISSION_POLICY = KIND_DIR / "admission-policy.yaml"
"""What drillkit's ServiceAccount may create (deploy/admission-policy.yaml links to it); applied
with the platform, so drills on the lab run under it once deploy/rbac*.yaml is applied."""
# Applied in this order (namespaces first); of the other *.yaml here, one is the kind config and
# one drillkit's admission policy (applied after the platform).
MANIFESTS = (
    "namespaces.yaml",
    "chatbot-db.yaml",
    "chatbot-api.yaml",
    "traffic.yaml",
    "kube-state-metrics.yaml",
    "prometheus.yaml",
    "alertmanager.yaml",
)
MEMORY_DRILL_SHARE = 3 * 2**30
"""Bytes of the machine the memory-drill worker's pods may use at most (a quarter of a smaller
machine): kind-config.yaml reserves the rest with the kubelet's `system-reserved`."""
_RESERVED = re.compile(r'system-reserved: "memory=\d+Mi"')
CLUSTER = "drillkit"
CONTEXT = f"kind-{CLUSTER}"
IMAGE = "localhost/chatbot-api:dev"
PROMETHEUS_URL = "http://127.0.0.1:9090"  # NodePort 30090 through kind-config.yaml
ALERTMANAGER_URL = "http://127.0.0.1:9093"  # NodePort 30093
RULES_CONFIGMAP = "chatbot-rules"
# What `up` waits for, in order (namespace, kind, name).
WORKLOADS = (
    ("chatbot", "statefulset", "chatbot-db"),
    ("chatbot", "deployment", "chatbot-api"),
    ("chatbot", "deployment", "chatbot-traffic"),
    ("monitoring", "deployment", "kube-state-metrics"),
    ("monitoring", "deployment", "alertmanager"),
    ("monitoring", "deployment", "prometheus"),
)
READY_TIMEOUT_S = 300.0  # Prometheus: rules evaluated, steady states held, nothing firing
ROLLOUT_TIMEOUT = "10m"
CONFIG_HASH = "drillkit.io/config-hash"
IMAGE_ID = "drillkit.io/image-id"

PROVIDER_ENV = "KIND_EXPERIMENTAL_PROVIDER"
INSTALL = {
    "docker": "https://docs.docker.com/engine/install/ (or podman: https://podman.io/docs/installation)",
    "kind": "https://kind.sigs.k8s.io/docs/user/quick-start/#installation",
    "kubectl": "https://kubernetes.io/docs/tasks/tools/#kubectl",
}


@dataclass(frozen=True)
class Check:
    """One steady-state condition of the platform: `expr` must hold `expect` (e.g. ">= 3")."""

    name: str
    expr: str
    expect: str

    def holds(self, value: float) -> bool:
        m = re.fullmatch(r"\s*(>=|<=|==|!=|>|<)\s*(-?[0-9.]+)\s*", self.expect)
        if m is None:
            raise ValueError(f"bad expectation {self.expect!r}")
        op, want = m.group(1), float(m.group(2))
        return {
            ">=": value >= want,
            "<=": value <= want,
            "==": value == want,
            "!=": value != want,
            ">": value > want,
            "<": value < want,
        }[op]


# The steady states of every scenarios/k8s drill (tests/test_lab_kind.py checks each drill's
# steady_state is one of these), so a drill started after `up` does not refuse to start.
STEADY_STATE = (
    Check(
        "every API replica available",
        'kube_deployment_status_replicas_available{namespace="chatbot",deployment="chatbot-api"}',
        ">= 3",
    ),
    Check(
        "no unavailable API replica",
        'kube_deployment_status_replicas_unavailable{namespace="chatbot",deployment="chatbot-api"}',
        "== 0",
    ),
    Check(
        "database ready",
        'kube_statefulset_status_replicas_ready{namespace="chatbot",statefulset="chatbot-db"}',
        ">= 1",
    ),
    Check(  # the postgres exporter sidecar's metrics, as in the local lab
        "connection slots under 85% used",
        "sum(pg_stat_activity_count) / (max(pg_settings_max_connections) - "
        "max(pg_settings_superuser_reserved_connections))",
        "< 0.85",
    ),
)


# --- the external tools ------------------------------------------------------------------------


@dataclass(frozen=True)
class Tools:
    """The container engine (docker or podman), kind and kubectl, found on PATH."""

    engine: str  # "docker" or "podman"
    paths: Mapping[str, str]
    out: Callable[[str], None] = field(default=lambda _: None, compare=False)

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.engine == "podman":
            env.setdefault(PROVIDER_ENV, "podman")  # kind's switch to podman
        return env

    def run(self, tool: str, *args: str, input: str | None = None, timeout: float = 600) -> str:
        """Run a tool; its stdout, or an UnavailableError with the last lines it wrote."""
        argv = [self.paths[tool], *args]
        try:
            r = subprocess.run(
                argv, input=input, capture_output=True, text=True, timeout=timeout, env=self.env(), check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise UnavailableError(f"`{tool} {' '.join(args)}` did not finish within {timeout:g}s") from exc
        if r.returncode != 0:
            said = " | ".join((r.stderr.strip() or r.stdout.strip()).splitlines()[-3:]) or "no output"
            raise UnavailableError(f"`{tool} {' '.join(args)}` failed (exit {r.returncode}): {said}")
        return r.stdout

    def kubectl(self, *args: str, input: str | None = None, timeout: float = 600) -> str:
        return self.run("kubectl", "--context", CONTEXT, *args, input=input, timeout=timeout)


def find_tools(need_kubectl: bool = True, out: Callable[[str], None] = lambda _: None) -> Tools:
    """docker (else podman), kind and kubectl on PATH, and an engine that answers; otherwise a
    one-line PreflightError (exit 3) saying what to install or start."""
    engine = next((name for name in ("docker", "podman") if shutil.which(name)), None)
    if engine is None:
        raise PreflightError(f"the kind lab needs `docker` or `podman` on PATH: install one, {INSTALL['docker']}")
    paths = {engine: str(shutil.which(engine))}
    for tool in ("kind", "kubectl") if need_kubectl else ("kind",):
        found = shutil.which(tool)
        if found is None:
            raise PreflightError(f"the kind lab needs `{tool}` on PATH: install it, {INSTALL[tool]}")
        paths[tool] = found
    tools = Tools(engine, paths, out)
    try:
        tools.run(
            engine, "info", "--format", "{{.ServerVersion}}" if engine == "docker" else "{{.Host.Arch}}", timeout=30
        )
    except UnavailableError as exc:
        raise PreflightError(
            f"`{engine}` is installed but its daemon does not answer (is it running, and may you use it?): {exc}"
        ) from exc
    return tools


# --- the manifests --------------------------------------------------------------------------------


def rules_configmap(interval_s: int = ruleset.DEFAULT_INTERVAL_S) -> dict[str, Any]:
    """The local lab's rules file as ConfigMap monitoring/chatbot-rules, derived for the
    scrape interval (byte for byte at 1 s)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": RULES_CONFIGMAP, "namespace": "monitoring"},
        "data": {RULES.name: ruleset.rules_at(interval_s)},
    }


def _at_interval(doc: dict[str, Any], interval_s: int) -> dict[str, Any]:
    """ConfigMap monitoring/prometheus-config scraping and evaluating every `interval_s`."""
    if (doc["kind"], doc["metadata"]["name"]) != ("ConfigMap", "prometheus-config"):
        return doc
    config = yaml.safe_load(doc["data"]["prometheus.yml"])
    every = ruleset.duration(interval_s)
    timeout = ruleset.duration(min(interval_s, SCRAPE_TIMEOUT_S))
    config["global"] = {"scrape_interval": every, "evaluation_interval": every, "scrape_timeout": timeout}
    return {**doc, "data": {**doc["data"], "prometheus.yml": yaml.safe_dump(config, sort_keys=False)}}


def manifests(image_id: str | None = None, interval_s: int = ruleset.DEFAULT_INTERVAL_S) -> list[dict[str, Any]]:
    """Every object of the platform, in apply order, with Prometheus and its rules at the
    scrape interval `interval_s`. A pod template whose ConfigMaps change gets a new
    `drillkit.io/config-hash` (Prometheus does not reload rules by itself), and with
    `image_id` the chat API's templates get the built image's id (so a rebuilt image with the
    same tag rolls the pods)."""
    docs: list[dict[str, Any]] = []
    for name in MANIFESTS:
        docs += [_at_interval(d, interval_s) for d in yaml.safe_load_all((KIND_DIR / name).read_text()) if d]
        if name == "namespaces.yaml":
            docs.append(rules_configmap(interval_s))
    configmaps = {
        (d["metadata"]["namespace"], d["metadata"]["name"]): d.get("data") or {}
        for d in docs
        if d["kind"] == "ConfigMap"
    }
    for d in docs:
        if d["kind"] not in ("Deployment", "StatefulSet"):
            continue
        template = d["spec"]["template"]
        pod = template["spec"]
        annotations = template["metadata"].setdefault("annotations", {})
        used = sorted(v["configMap"]["name"] for v in pod.get("volumes") or [] if "configMap" in v)
        if used:
            data = [configmaps[(d["metadata"]["namespace"], n)] for n in used]
            digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
            annotations[CONFIG_HASH] = digest
        if image_id and any(c["image"] == IMAGE for c in pod["containers"]):
            annotations[IMAGE_ID] = image_id.removeprefix("sha256:")
    return docs


def manifests_yaml(image_id: str | None = None, interval_s: int = ruleset.DEFAULT_INTERVAL_S) -> str:
    return yaml.safe_dump_all(manifests(image_id, interval_s), sort_keys=False)


# --- up and down ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class KindLab:
    context: str
    prometheus: str
    alertmanager: str
    created: bool
    seconds: float


def memory_drill_reserved(total: int) -> int:
    """`system-reserved` memory of the memory-drill worker on a machine of `total` bytes: all but
    min(MEMORY_DRILL_SHARE, total / 4), in whole MiB. A kind node's capacity is the machine's."""
    return (total - min(MEMORY_DRILL_SHARE, total // 4)) // 2**20 * 2**20


def kind_config(total: int) -> str:
    """kind-config.yaml with the memory-drill worker's `system-reserved` sized for `total` bytes."""
    text = KIND_CONFIG.read_text()
    config, n = _RESERVED.subn(f'system-reserved: "memory={memory_drill_reserved(total) // 2**20}Mi"', text)
    if n != 1:
        raise PreflightError(f"{KIND_CONFIG}: expected one system-reserved memory of the memory-drill worker")
    return config


def engine_memory(tools: Tools) -> int:
    """The memory (bytes) of the machine kind's nodes run on: the container engine's MemTotal
    (the Docker Desktop VM's on a Mac, the host's on Linux)."""
    field = "{{.MemTotal}}" if tools.engine == "docker" else "{{.Host.MemTotal}}"
    said = tools.run(tools.engine, "info", "--format", field, timeout=30).strip()
    if not said.isdigit() or int(said) < 2**30:
        raise PreflightError(f"`{tools.engine} info` reports {said!r} bytes of memory: cannot size the kind nodes")
    return int(said)


def clusters(tools: Tools) -> list[str]:
    return tools.run("kind", "get", "clusters", timeout=60).split()


def build_image(tools: Tools, workdir: Path) -> str:
    """Build the chat API image from the installed drillkit package and load it into the
    cluster; returns the image id."""
    package = Path(__file__).resolve().parent.parent
    ctx = workdir / "context"
    shutil.copytree(package, ctx / package.name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(DOCKERFILE, ctx / "Dockerfile")
    tools.out(f"building image {IMAGE} with {tools.engine} (first time: a few minutes)")
    tools.run(tools.engine, "build", "-t", IMAGE, "-f", str(ctx / "Dockerfile"), str(ctx), timeout=1800)
    image_id = tools.run(tools.engine, "image", "inspect", "--format", "{{.Id}}", IMAGE, timeout=60).strip()
    tools.out(f"loading {IMAGE} into kind cluster {CLUSTER}")
    if tools.engine == "docker":
        tools.run("kind", "load", "docker-image", IMAGE, "--name", CLUSTER, timeout=900)
    else:
        archive = workdir / "image.tar"
        tools.run("podman", "save", "--format", "docker-archive", "-o", str(archive), IMAGE, timeout=900)
        tools.run("kind", "load", "image-archive", str(archive), "--name", CLUSTER, timeout=900)
    return image_id


def up(
    out: Callable[[str], None] = lambda _: None,
    prometheus_url: str = PROMETHEUS_URL,
    alertmanager_url: str = ALERTMANAGER_URL,
    ready_timeout: float = READY_TIMEOUT_S,
    scrape_interval: int = ruleset.DEFAULT_INTERVAL_S,
) -> KindLab:
    """Create (or reuse) the kind cluster, deploy the platform with Prometheus scraping every
    `scrape_interval` seconds, and wait until it is drillable."""
    start = time.monotonic()
    tools = find_tools(out=out)
    created = CLUSTER not in clusters(tools)
    if created:
        total = engine_memory(tools)
        reserved = memory_drill_reserved(total) // 2**20
        out(
            f"creating kind cluster {CLUSTER} from {KIND_CONFIG.name} (a minute or two); the memory-drill "
            f"worker reserves {reserved}Mi of the machine's {total // 2**20}Mi"
        )
        with tempfile.TemporaryDirectory(prefix="drillkit-kind-") as tmp:
            config = Path(tmp) / KIND_CONFIG.name
            config.write_text(kind_config(total))
            tools.run(
                "kind", "create", "cluster", "--name", CLUSTER, "--config", str(config), "--wait", "120s", timeout=900
            )
    else:
        out(f"kind cluster {CLUSTER} exists; deploying onto it")
    if CONTEXT not in tools.run("kubectl", "config", "get-contexts", "-o", "name", timeout=60).split():
        tools.run("kind", "export", "kubeconfig", "--name", CLUSTER, timeout=60)
    with tempfile.TemporaryDirectory(prefix="chatbot-image-") as tmp:
        image_id = build_image(tools, Path(tmp))
    every = ruleset.duration(scrape_interval)
    out(f"applying the platform ({', '.join(MANIFESTS)}, rules from {RULES.name}; scrape and evaluation every {every})")
    tools.kubectl("apply", "-f", "-", input=manifests_yaml(image_id, scrape_interval), timeout=300)
    out(f"applying drillkit's admission policy ({ADMISSION_POLICY.name})")
    tools.kubectl("apply", "-f", str(ADMISSION_POLICY), timeout=120)
    for ns, kind, name in WORKLOADS:
        out(f"waiting for {kind} {ns}/{name}")
        tools.kubectl("-n", ns, "rollout", "status", f"{kind}/{name}", f"--timeout={ROLLOUT_TIMEOUT}", timeout=660)
    out(f"waiting for Prometheus at {prometheus_url}: rules evaluated, steady states, no alert firing")
    wait_ready(prometheus_url, alertmanager_url, ready_timeout + 3 * scrape_interval)
    return KindLab(CONTEXT, prometheus_url, alertmanager_url, created, time.monotonic() - start)


def down(out: Callable[[str], None] = lambda _: None) -> bool:
    """Delete the kind cluster (and everything in it); False if there was none."""
    tools = find_tools(need_kubectl=False, out=out)
    if CLUSTER not in clusters(tools):
        return False
    out(f"deleting kind cluster {CLUSTER}")
    tools.run("kind", "delete", "cluster", "--name", CLUSTER, timeout=300)
    return True


def summary(lab: KindLab) -> list[str]:
    return [
        f"context      {lab.context}",
        f"prometheus   {lab.prometheus}",
        f"alertmanager {lab.alertmanager}",
        "drills       drillkit run scenarios/k8s/<drill>.yaml   (drillkit train … to practise)",
    ]


# --- readiness through Prometheus' API ------------------------------------------------------------


def _get(base: str, path: str, params: Mapping[str, str] | None = None) -> Any:
    url = base.rstrip("/") + path + (("?" + urllib.parse.urlencode(params)) if params else "")
    with urllib.request.urlopen(url, timeout=5) as resp:
        body = resp.read()
    return json.loads(body) if body.strip().startswith(b"{") else body.decode()


def rule_names() -> set[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {r.get("alert") or r.get("record") for g in groups for r in g["rules"]}


def not_ready(prometheus_url: str, alertmanager_url: str) -> list[str]:
    """What still keeps the platform from being drillable ([] when ready)."""
    try:
        _get(alertmanager_url, "/-/ready")
        groups = _get(prometheus_url, "/api/v1/rules")["data"]["groups"]
        evaluated = {
            r["name"] for g in groups for r in g["rules"] if not str(r.get("lastEvaluation", "")).startswith("0001")
        }
        waiting = [f"rule {n} not evaluated yet" for n in sorted(rule_names() - evaluated)]
        for check in STEADY_STATE:
            result = _get(prometheus_url, "/api/v1/query", {"query": check.expr})["data"]["result"]
            value = float(result[0]["value"][1]) if result else None
            if value is None or not check.holds(value):
                waiting.append(f"steady state {check.name!r} ({check.expr} {check.expect}): got {value}")
        alerts = _get(prometheus_url, "/api/v1/alerts")["data"]["alerts"]
        firing = sorted({a["labels"]["alertname"] for a in alerts if a["state"] == "firing"} & rule_names())
        waiting += [f"alert {name} firing" for name in firing]
        return waiting
    except (OSError, ValueError, KeyError) as exc:
        return [f"Prometheus {prometheus_url} / Alertmanager {alertmanager_url} not answering: {exc}"]


def wait_ready(prometheus_url: str, alertmanager_url: str, timeout: float) -> None:
    last: list[str] = []

    def ready() -> bool:
        last[:] = not_ready(prometheus_url, alertmanager_url)
        return not last

    if not wait_until(ready, time.monotonic() + timeout, every=2.0):
        raise UnavailableError(f"the kind lab is not drillable after {timeout:g}s: {'; '.join(last)}")
