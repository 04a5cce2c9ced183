"""Every Kubernetes fault, in a real `drillkit run` subprocess interrupted mid-fault.

SIGTERM: the runner reverts by itself and exits 130. SIGKILL: the harm stays, and the real
`drillkit cleanup --run-id` (another process) restores it from the journal. For each fault a
rig says what "harmed" looks like on the real control plane and asserts the exact restoration,
with the evidence in the message.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from drillkit.journal import pending_reverts, read_journal
from drillkit.kube import MODIFIED_BY, NETEM_BY, RUN_LABEL
from tests.helpers import drillkit_cmd
from tests.kube_drill import start_run
from tests.kubecluster import KubeServer
from tests.kubecluster.ephemeral import EphemeralRunner, netem_available, node_qdiscs
from tests.kubecluster.jobrunner import JobRunner  # the db Job's pod runs for real (db_jobs)
from tests.promfixture import PromEnv

pytestmark = [pytest.mark.wire, pytest.mark.integration]
NS = "chatbot"
API = "app=chatbot-api"


def ready_api_pods(server: KubeServer) -> dict[str, str]:
    """name -> image of the Ready chatbot-api pods."""
    return {
        p["metadata"]["name"]: p["spec"]["containers"][0]["image"]
        for p in server.list("pods", NS, label_selector=API)
        if any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))
    }


def labelled(server: KubeServer, resource: str) -> list[str]:
    return [o["metadata"]["name"] for o in server.list(resource, NS, label_selector=RUN_LABEL)]


def db_node(server: KubeServer) -> str:
    pod = server.get("pods", NS, "chatbot-db-0")
    assert pod is not None
    return str(pod["spec"]["nodeName"])


@dataclass
class Rig:
    """One fault: its scenario entry, how its harm shows, and how restoration is checked."""

    fault: dict[str, Any]
    harmed: Callable[[KubeServer, dict[str, Any]], bool]
    restored: Callable[[KubeServer, dict[str, Any]], None]
    setup: Callable[[KubeServer, dict[str, Any]], None] = lambda server, before: None
    before: dict[str, Any] = field(default_factory=dict)


def _pods_before(server: KubeServer, before: dict[str, Any]) -> None:
    before["uids"] = {p["metadata"]["uid"] for p in server.list("pods", NS, label_selector=API)}


def _no_more_deletes(server: KubeServer, before: dict[str, Any]) -> None:
    server.wait_for(lambda: len(ready_api_pods(server)) == 3, timeout=15, message="3 Ready chatbot-api pods")
    count = len(server.requests)
    time.sleep(1.5)  # the kill loop ran every 300 ms: it would have deleted again by now
    deletes = [r.path for r in server.requests[count:] if r.method == "DELETE"]
    assert deletes == [], f"pods still deleted after the revert: {deletes}"


def _template(server: KubeServer, before: dict[str, Any]) -> None:
    d = server.get("deployments", NS, "chatbot-api")
    assert d is not None
    before["template"] = d["spec"]["template"]


def _template_back(server: KubeServer, before: dict[str, Any]) -> None:
    d = server.get("deployments", NS, "chatbot-api")
    assert d is not None and d["spec"]["template"] == before["template"], "template not restored exactly"
    assert MODIFIED_BY not in d["metadata"].get("labels", {}), d["metadata"]
    good = before["template"]["spec"]["containers"][0]["image"]
    server.wait_for(
        lambda: set(ready_api_pods(server).values()) == {good} and len(ready_api_pods(server)) == 3,
        timeout=15,
        message=f"3 Ready pods on {good}: {ready_api_pods(server)}",
    )


def _replicas(server: KubeServer) -> int:
    d = server.get("deployments", NS, "chatbot-api")
    assert d is not None
    return int(d["spec"]["replicas"])


def _scaled_back(server: KubeServer, before: dict[str, Any]) -> None:
    assert _replicas(server) == 3, f"replicas {_replicas(server)}, expected 3"
    d = server.get("deployments", NS, "chatbot-api")
    assert d is not None and MODIFIED_BY not in d["metadata"].get("labels", {}), d["metadata"]


def _no_labelled(resource: str) -> Callable[[KubeServer, dict[str, Any]], None]:
    def check(server: KubeServer, before: dict[str, Any]) -> None:
        server.wait_for(
            lambda: not labelled(server, resource),
            timeout=10,
            message=f"run-labelled {resource} gone: {labelled(server, resource)}",
        )
        if resource == "jobs":
            left = [p["metadata"]["name"] for p in server.list("pods", NS) if "dbconn" in p["metadata"]["name"]]
            assert not left, f"Job pods left behind: {left}"

    return check


PULL_SECONDS = 5.0
"""The netem container's image "pull" (ephemeral_runner): on a kernel without netem its script
exits at once (the kernel refuses the qdisc), so the drill is interrupted while the container
is added and still starting — where a revert must wait for it, since it adds the delay once it
starts."""


def _netem_added(server: KubeServer, before: dict[str, Any]) -> bool:
    """The netem container is in a labelled pod; with netem in the kernel, its delay is on the
    nodes' eth0 too (the real `tc qdisc show`)."""
    pods = [p for p in server.list("pods", NS, label_selector=NETEM_BY) if p["spec"].get("ephemeralContainers")]
    if not pods:
        return False
    before["pod"], before["container"] = pods[0]["metadata"]["name"], pods[0]["spec"]["ephemeralContainers"][0]["name"]
    return not netem_available() or "netem d1c:" in node_qdiscs(server)


def _netem_removed(server: KubeServer, before: dict[str, Any]) -> None:
    name, container = before["pod"], before["container"]

    def ended() -> dict[str, Any] | None:
        pod = server.get("pods", NS, name) or {}
        states = [s["state"] for s in (pod.get("status") or {}).get("ephemeralContainerStatuses") or []]
        return next((s["terminated"] for s in states if "terminated" in s), None)

    done = server.wait_for(ended, timeout=15, message=f"the netem container {container} in {name} to have exited")
    pod = server.get("pods", NS, name)
    assert pod is not None and NETEM_BY not in (pod["metadata"].get("labels") or {}), pod and pod["metadata"]
    assert "d1c:" not in node_qdiscs(server), f"drillkit's qdisc left on eth0: {node_qdiscs(server)}"
    marker = f"{container}=1".encode()
    alive = [p.name for p in Path("/proc").glob("[0-9]*") if _cmdline(p).find(marker) >= 0]
    assert not alive, f"netem scripts (NET_ADMIN) still running: {alive}"
    if not netem_available():
        assert done["exitCode"] == 1 and "Specified qdisc kind is unknown" in done["message"], done


def _cmdline(proc: Path) -> bytes:
    try:
        return (proc / "cmdline").read_bytes()
    except OSError:
        return b""


def _secret(server: KubeServer) -> str:
    s = server.get("secrets", NS, "chatbot-jwt")
    assert s is not None
    return str(s["data"]["jwt-secret"])


def _secret_back(server: KubeServer, before: dict[str, Any]) -> None:
    assert _secret(server) == before["jwt"], "jwt-secret not restored"
    _no_labelled("secrets")(server, before)  # the backup Secret is gone too


def _node_cordoned(server: KubeServer, before: dict[str, Any]) -> bool:
    node = server.get("nodes", None, before["node"])
    return bool(node and node["spec"].get("unschedulable"))


def _node_back(server: KubeServer, before: dict[str, Any]) -> None:
    node = server.get("nodes", None, before["node"])
    assert node is not None and not node["spec"].get("unschedulable"), node and node["spec"]
    assert "drillkit.io/cordoned-by" not in (node["metadata"].get("annotations") or {}), node["metadata"]


RIGS: dict[str, Rig] = {
    "pod-kill": Rig(
        {"kind": "pod-kill", "selector": API, "count": 1, "grace_period": 0, "repeat_every": "300ms", "duration": "2m"},
        harmed=lambda s, b: not b["uids"] <= {p["metadata"]["uid"] for p in s.list("pods", NS, label_selector=API)},
        restored=_no_more_deletes,
        setup=_pods_before,
    ),
    "scale-to-zero": Rig(
        {"kind": "scale-to-zero", "workload": "deployment/chatbot-api", "wait": 0},
        harmed=lambda s, b: _replicas(s) == 0,
        restored=_scaled_back,
    ),
    "bad-rollout": Rig(
        {"kind": "bad-rollout", "workload": "deployment/chatbot-api", "wait": 0},
        harmed=lambda s, b: (s.get("deployments", NS, "chatbot-api") or {})["spec"]["template"] != b["template"],
        restored=_template_back,
        setup=_template,
    ),
    "memory-pressure": Rig(
        {"kind": "memory-pressure", "mode": "node", "selector": "app=chatbot-db", "memory": "256Mi"},
        harmed=lambda s, b: bool(labelled(s, "pods")),
        restored=_no_labelled("pods"),
    ),
    "cpu-pressure": Rig(
        {"kind": "cpu-pressure", "selector": "app=chatbot-db", "workers": 2},
        harmed=lambda s, b: bool(labelled(s, "pods")),
        restored=_no_labelled("pods"),
    ),
    "db-connection-exhaustion": Rig(
        {
            "kind": "db-connection-exhaustion",
            "service": "chatbot-db",
            "secret": "chatbot-db-credentials",
            "connections": 5,
        },
        harmed=lambda s, b: bool(labelled(s, "jobs")),
        restored=_no_labelled("jobs"),
    ),
    "network-latency": Rig(
        {"kind": "network-latency", "selector": API, "latency": "200ms"},
        harmed=_netem_added,
        restored=_netem_removed,
    ),
    "auth-secret-corruption": Rig(
        {"kind": "auth-secret-corruption", "secret": "chatbot-jwt", "key": "jwt-secret"},
        harmed=lambda s, b: _secret(s) != b["jwt"] and bool(labelled(s, "secrets")),
        restored=_secret_back,
        setup=lambda s, b: b.__setitem__("jwt", _secret(s)),
    ),
    "node-memory-pressure": Rig(  # still ramping on the demo's bounded worker2 when interrupted
        {"kind": "node-memory-pressure", "step": "64Mi", "step_every": "1s", "wait": "2m"},
        harmed=lambda s, b: bool(labelled(s, "pods")),
        restored=_no_labelled("pods"),
    ),
    "node-drain": Rig(
        {"kind": "node-drain", "pod_selector": "app=chatbot-db", "evict_timeout": "1s"},
        harmed=_node_cordoned,
        restored=_node_back,
        setup=lambda s, b: b.__setitem__("node", db_node(s)),
    ),
}


def wait_harmed(server: KubeServer, proc: subprocess.Popen[str], reports: Path, rig: Rig) -> Path:
    """Until the harm shows on the server and the journal says `injected`; the journal."""
    deadline = time.monotonic() + 60  # a loaded 2-core machine starts a drill slowly
    while time.monotonic() < deadline and proc.poll() is None:
        journals = list(reports.glob("*/journal.jsonl")) if reports.exists() else []
        if journals and '"kind": "injected"' in journals[0].read_text() and rig.harmed(server, rig.before):
            return journals[0]
        time.sleep(0.05)
    if proc.poll() is None:
        proc.kill()
    out, err = proc.communicate(timeout=10)
    raise AssertionError(f"{rig.fault['kind']}: harm never seen (exit {proc.returncode}):\n{out}\n{err}")


def begin(kind: str, server: KubeServer, prom: PromEnv, tmp_path: Path) -> tuple[Rig, subprocess.Popen[str], Path]:
    """The fault's rig, set up afresh, and a `drillkit run` of it (process, report dir)."""
    rig = RIGS[kind]
    rig.before = {}
    rig.setup(server, rig.before)
    return (rig, *start_run(server, prom, tmp_path, [rig.fault]))


@pytest.mark.parametrize("kind", list(RIGS))
def test_sigterm_mid_fault_restores(
    kube_demo: KubeServer,
    prom_env: PromEnv,
    tmp_path: Path,
    db_jobs: JobRunner,
    ephemeral_runner: EphemeralRunner,
    kind: str,
) -> None:
    ephemeral_runner.pull_seconds = PULL_SECONDS
    rig, proc, reports = begin(kind, kube_demo, prom_env, tmp_path)
    try:
        journal = wait_harmed(kube_demo, proc, reports, rig)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, f"exit {proc.returncode}\n{out}\n{err}"
    kinds = [e.kind for e in read_journal(journal)]
    assert "aborted" in kinds and kinds.count("revert_done") == 1 and "revert_failed" not in kinds, kinds
    assert pending_reverts(journal) == []
    rig.restored(kube_demo, rig.before)


@pytest.mark.parametrize("kind", list(RIGS))
def test_sigkill_mid_fault_then_cleanup_restores(
    kube_demo: KubeServer,
    prom_env: PromEnv,
    tmp_path: Path,
    db_jobs: JobRunner,
    ephemeral_runner: EphemeralRunner,
    kind: str,
) -> None:
    ephemeral_runner.pull_seconds = PULL_SECONDS
    rig, proc, reports = begin(kind, kube_demo, prom_env, tmp_path)
    try:
        journal = wait_harmed(kube_demo, proc, reports, rig)
    finally:
        proc.kill()
        proc.communicate(timeout=10)
    assert rig.harmed(kube_demo, rig.before), f"{kind}: SIGKILL must leave the harm in place"
    assert [p.fault for p in pending_reverts(journal)] == [kind]
    run_id = json.loads(journal.read_text().splitlines()[0])["run_id"]
    env = {**os.environ, "KUBECONFIG": kube_demo.kubeconfig_path}
    r = subprocess.run(
        drillkit_cmd("cleanup", "--run-id", run_id, "--report-dir", str(reports)),
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert r.returncode == 0, f"cleanup exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    assert f"done: run {run_id}: revert {kind} #1" in r.stdout, r.stdout
    assert pending_reverts(journal) == []
    rig.restored(kube_demo, rig.before)
