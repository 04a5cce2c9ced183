"""Opt-in end-to-end suite: every `scenarios/k8s` drill against a real kind cluster.

Why: the wire suite proves the faults against a faithful API test server; this proves them
against a real kubelet, scheduler, container runtime and Prometheus. It needs Docker, `kind`
and `kubectl`, and runs only with `pytest --kind`:

    kind create cluster --name drillkit --config kind-config.yaml
    pytest --kind tests/test_kind.py

It refuses any kubeconfig context not named `kind-*` (set DRILLKIT_KIND_CONTEXT to pick one;
default: kind-drillkit). It builds the chat API image from this repository, loads it into the
cluster, deploys tests/kind/platform.yaml (the demo platform, kube-state-metrics, Prometheus on
localhost:9090) and runs each drill through the CLI, asserting that every revert ran, nothing
labelled with the run is left, and the platform is healthy again before the next drill.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.helpers import run_cli

pytestmark = pytest.mark.kind
ROOT = Path(__file__).resolve().parent.parent
KIND_DIR = Path(__file__).parent / "kind"
IMAGE = "drillkit-chatbot:dev"
PROMETHEUS = os.environ.get("DRILLKIT_KIND_PROMETHEUS", "http://127.0.0.1:9090")
SCENARIOS = sorted((ROOT / "scenarios" / "k8s").glob("*.yaml"))
# Drills whose alert depends on traffic patterns a small kind cluster may not reproduce in
# time; for them a missed detection is reported but does not fail the suite.
DETECTION_BEST_EFFORT = {"cpu-pressure", "network-latency", "bad-rollout", "pod-kill"}


def sh(*args: str, timeout: float = 600, input: str | None = None) -> str:
    r = subprocess.run(args, capture_output=True, text=True, timeout=timeout, input=input)
    if r.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r.stdout


@pytest.fixture(scope="module")
def context() -> str:
    for tool in ("docker", "kind", "kubectl"):
        if shutil.which(tool) is None:
            pytest.fail(f"the kind suite needs `{tool}` on PATH")
    name = os.environ.get("DRILLKIT_KIND_CONTEXT", "kind-drillkit")
    if not name.startswith("kind-"):
        pytest.fail(f"refusing context {name!r}: the kind suite only runs against kind-* contexts")
    contexts = sh("kubectl", "config", "get-contexts", "-o", "name").split()
    if name not in contexts:
        pytest.fail(
            f"no context {name!r}; create it: kind create cluster --name "
            f"{name.removeprefix('kind-')} --config kind-config.yaml"
        )
    return name


def kubectl(ctx: str, *args: str, **kw: object) -> str:
    return sh("kubectl", "--context", ctx, *args, **kw)  # type: ignore[arg-type]


def prometheus_ready() -> bool:
    try:
        r = requests.get(
            f"{PROMETHEUS}/api/v1/query",
            params={"query": 'kube_deployment_status_replicas_available{namespace="chatbot"}'},
            timeout=2,
        )
        rules = requests.get(f"{PROMETHEUS}/api/v1/rules", timeout=2).json()["data"]["groups"]
    except (requests.RequestException, ValueError, KeyError):
        return False
    return r.ok and bool(r.json()["data"]["result"]) and bool(rules)


def wait(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(2)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


@pytest.fixture(scope="module")
def platform(context: str) -> Iterator[str]:
    cluster = context.removeprefix("kind-")
    sh("docker", "build", "-t", IMAGE, "-f", str(KIND_DIR / "Dockerfile"), str(ROOT), timeout=900)
    sh("kind", "load", "docker-image", IMAGE, "--name", cluster, timeout=600)
    kubectl(context, "apply", "-f", str(KIND_DIR / "platform.yaml"))
    rules = kubectl(
        context,
        "-n",
        "monitoring",
        "create",
        "configmap",
        "chatbot-rules",
        f"--from-file={ROOT / 'drillkit/lab/rules/chatbot.rules.yml'}",
        "--dry-run=client",
        "-o",
        "yaml",
    )
    kubectl(context, "apply", "-f", "-", input=rules)
    for ns, kind, name in (
        ("chatbot", "statefulset", "chatbot-db"),
        ("chatbot", "deployment", "chatbot-api"),
        ("chatbot", "deployment", "chatbot-traffic"),
        ("monitoring", "deployment", "kube-state-metrics"),
        ("monitoring", "deployment", "prometheus"),
    ):
        kubectl(context, "-n", ns, "rollout", "status", f"{kind}/{name}", "--timeout=10m", timeout=700)
    wait(prometheus_ready, 300, f"Prometheus at {PROMETHEUS} with kube-state-metrics and the rules")
    yield context


def healthy(context: str) -> bool:
    out = json.loads(kubectl(context, "-n", "chatbot", "get", "deploy,sts", "-o", "json"))
    return all((i["status"].get("readyReplicas") or 0) >= i["spec"]["replicas"] > 0 for i in out["items"])


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario_on_kind(platform: str, tmp_path: Path, path: Path) -> None:
    wait(lambda: healthy(platform), 300, "the demo platform to be healthy before the drill")
    time.sleep(20)  # let rate() windows and `for:` clauses settle after the previous drill
    reports = tmp_path / "reports"
    r = run_cli(
        "run",
        str(path),
        "--context",
        platform,
        "--prometheus-url",
        PROMETHEUS,
        "--report-dir",
        str(reports),
        "--format",
        "json,md",
        timeout=1800,
    )
    folders = list(reports.iterdir()) if reports.exists() else []
    assert len(folders) == 1, f"exit {r.returncode}, no report:\n{r.stdout}\n{r.stderr}"
    events = [json.loads(line) for line in (folders[0] / "journal.jsonl").read_text().splitlines()]
    kinds = [e["kind"] for e in events]
    registered = {e["id"] for e in events if e["kind"] == "revert_registered"}
    done = {e["id"] for e in events if e["kind"] == "revert_done"}
    assert registered and registered == done, f"reverts not all done: {kinds}\n{r.stderr}"
    assert "revert_failed" not in kinds, r.stderr
    left = next(e for e in events if e["kind"] == "leftovers_checked")
    assert left["remaining"] == [], left
    report = json.loads((folders[0] / "report.json").read_text())
    fault = path.stem
    if fault not in DETECTION_BEST_EFFORT:
        assert "detected" in kinds, f"{fault}: alert never fired: {kinds}\n{r.stderr}"
    assert report["status"] in ("passed", "failed"), (report["status"], r.stderr)
    wait(lambda: healthy(platform), 600, "the demo platform to recover after the drill")
    leftovers = kubectl(platform, "get", "pods,jobs,secrets", "-A", "-l", "drillkit.io/run-id", "-o", "name")
    assert leftovers.strip() == "", leftovers
    modified = kubectl(platform, "get", "deploy,sts", "-A", "-l", "drillkit.io/modified-by", "-o", "name")
    assert modified.strip() == "", f"workloads still labelled as awaiting a revert: {modified}"
    nodes = json.loads(kubectl(platform, "get", "nodes", "-o", "json"))["items"]
    assert not [n["metadata"]["name"] for n in nodes if n["spec"].get("unschedulable")]
