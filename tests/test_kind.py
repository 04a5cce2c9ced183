"""Opt-in end-to-end suite: every `scenarios/k8s` drill against a real kind cluster.

Why: the wire suite proves the faults against a real control plane with KWOK nodes; this proves them
against a real kubelet, scheduler, container runtime and Prometheus. It needs Docker, `kind`
and `kubectl`, and runs only with `pytest --kind`:

    pytest --kind tests/test_kind.py

The platform comes from `drillkit lab up --kind` (drillkit.lab.kindlab: creates the kind-drillkit
cluster if needed, builds and loads the chat API image, deploys drillkit/lab/kind/*.yaml and
waits until Prometheus on localhost:9090 has evaluated the rules and the steady states hold),
exactly as a trainee gets it. Each drill then runs through the CLI **as the shipped
ServiceAccount** (deploy/rbac.yaml applied, a kubeconfig holding that account's token, so a verb
missing from the documented Role fails here as it would for a user), asserting that the alert
fired within the scenario's target (no drill is excused: one that cannot detect on kind is a bug
in the drill or the platform), every revert ran, nothing labelled with the run is left, and the
platform is healthy again before the next drill. `drillkit lab down --kind` deletes the cluster.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import run_cli

pytestmark = pytest.mark.kind
ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS = os.environ.get("DRILLKIT_KIND_PROMETHEUS", "http://127.0.0.1:9090")
SCENARIOS = sorted((ROOT / "scenarios" / "k8s").glob("*.yaml"))
RBAC = ROOT / "deploy" / "rbac.yaml"


def sh(*args: str, timeout: float = 600, input: str | None = None, check: bool = True, stderr: bool = False) -> str:
    r = subprocess.run(args, capture_output=True, text=True, timeout=timeout, input=input)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r.stdout + (r.stderr if stderr else "")


@pytest.fixture(scope="module")
def context() -> str:
    name = os.environ.get("DRILLKIT_KIND_CONTEXT", "kind-drillkit")
    if name != "kind-drillkit":
        pytest.fail(f"refusing context {name!r}: `drillkit lab up --kind` deploys onto kind-drillkit only")
    return name


def kubectl(ctx: str, *args: str, **kw: object) -> str:
    return sh("kubectl", "--context", ctx, *args, **kw)  # type: ignore[arg-type]


def wait(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(2)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


@pytest.fixture(scope="module")
def platform(context: str) -> Iterator[str]:
    r = run_cli("lab", "up", "--kind", timeout=3600)
    if r.returncode != 0:
        pytest.fail(f"drillkit lab up --kind failed (exit {r.returncode}):\n{r.stdout}\n{r.stderr}")
    yield context


@pytest.fixture(scope="module")
def as_service_account(platform: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A kubeconfig whose `kind-drillkit` context is the drillkit ServiceAccount of
    deploy/rbac.yaml, deploy/rbac-namespace.yaml in the drills' namespace, the opt-in
    deploy/rbac-node-drain.yaml and deploy/rbac-node-memory.yaml (the node-drain and
    node-memory-pressure drills), as their comments say; not cluster-admin. Every drill runs
    under deploy/admission-policy.yaml (`lab up --kind` applies it; applied again here, as an
    operator applies it with the RBAC)."""
    kubectl(platform, "apply", "-f", str(RBAC))
    kubectl(platform, "apply", "-n", "chatbot", "-f", str(RBAC.with_name("rbac-namespace.yaml")))
    kubectl(platform, "apply", "-f", str(RBAC.with_name("rbac-node-drain.yaml")))
    kubectl(platform, "apply", "-f", str(RBAC.with_name("rbac-node-memory.yaml")))
    kubectl(platform, "apply", "-f", str(RBAC.with_name("admission-policy.yaml")))
    token = kubectl(platform, "-n", "drillkit", "create", "token", "drillkit", "--duration", "4h").strip()
    admin = json.loads(kubectl(platform, "config", "view", "--raw", "--minify", "-o", "json"))
    cluster = admin["clusters"][0]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster["name"], "cluster": cluster["cluster"]}],
        "users": [{"name": "drillkit-sa", "user": {"token": token}}],
        "contexts": [{"name": platform, "context": {"cluster": cluster["name"], "user": "drillkit-sa"}}],
        "current-context": platform,
    }
    path = tmp_path_factory.mktemp("sa") / "kubeconfig"
    path.write_text(json.dumps(config))
    path.chmod(0o600)
    denied = sh("kubectl", "--kubeconfig", str(path), "auth", "can-i", "list", "secrets", "-A", check=False)
    assert denied.strip() == "no", f"the ServiceAccount must not list Secrets cluster-wide: {denied}"
    probe = ("create", "secret", "generic", "drillkit-policy-probe", "-n", "chatbot", "--dry-run=server")
    wait(
        lambda: "drillkit.io/run-id" in sh("kubectl", "--kubeconfig", str(path), *probe, check=False, stderr=True),
        60,
        "the admission policy to refuse an unlabelled Secret of the ServiceAccount",
    )
    return str(path)


def healthy(context: str) -> bool:
    out = json.loads(kubectl(context, "-n", "chatbot", "get", "deploy,sts", "-o", "json"))
    return all((i["status"].get("readyReplicas") or 0) >= i["spec"]["replicas"] > 0 for i in out["items"])


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario_on_kind(platform: str, as_service_account: str, tmp_path: Path, path: Path) -> None:
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
        env_extra={"KUBECONFIG": as_service_account},
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
    detect = next(v for v in report["verdicts"] if v["target"] == "detect")
    assert detect["met"] is True, f"{path.stem}: {detect}\n{r.stderr}"
    assert report["status"] in ("passed", "failed"), (report["status"], r.stderr)
    wait(lambda: healthy(platform), 600, "the demo platform to recover after the drill")
    leftovers = kubectl(platform, "get", "pods,jobs,secrets", "-A", "-l", "drillkit.io/run-id", "-o", "name")
    assert leftovers.strip() == "", leftovers
    modified = kubectl(platform, "get", "deploy,sts", "-A", "-l", "drillkit.io/modified-by", "-o", "name")
    assert modified.strip() == "", f"workloads still labelled as awaiting a revert: {modified}"
    nodes = json.loads(kubectl(platform, "get", "nodes", "-o", "json"))["items"]
    assert not [n["metadata"]["name"] for n in nodes if n["spec"].get("unschedulable")]
    pressured = [
        n["metadata"]["name"]
        for n in nodes
        for c in n["status"]["conditions"]
        if c["type"] == "MemoryPressure" and c["status"] == "True"
    ]
    assert not pressured, f"nodes still under MemoryPressure after the revert: {pressured}"
    if path.stem == "node-memory-pressure":  # the bounded worker really reached the kubelet's threshold
        reached = next(e for e in events if e["kind"] == "memory_pressure")
        assert reached["node"] == "drillkit-worker2" and reached["stress_pods"] >= 1, reached
