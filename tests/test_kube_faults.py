"""Each Kubernetes fault run through the engine against the real control plane (tests/kubecluster).

Every test asserts the server-side effect of the fault (with the evidence in the message) and
that the revert put the cluster back exactly as it was.
"""

from __future__ import annotations

import base64
import copy
import json
import stat
import subprocess
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from drillkit.errors import Aborted, DrillkitError
from drillkit.faults import Undo
from drillkit.faults.kube.workloads import BadRollout, RolloutRecord, record_name
from drillkit.journal import pending_reverts
from drillkit.kube import MODIFIED_BY, REVERT_FAULT, REVERT_OF
from drillkit.signals import StopFlag
from tests.kube_drill import direct_fault, no_secret_values, report, run_drill, scenario
from tests.kubecluster import KubeServer
from tests.kubecluster.ephemeral import EphemeralRunner, netem_available, node_qdiscs
from tests.kubecluster.jobrunner import DB_SLOTS, JobRunner, held_by
from tests.promfixture import PromEnv
from tests.test_kube_commands import stress_ng_accepts

pytestmark = [pytest.mark.wire, pytest.mark.integration]
NS = "chatbot"


def api_pods(server: KubeServer) -> dict[str, str]:
    """name -> uid of the chatbot-api pods."""
    return {
        p["metadata"]["name"]: p["metadata"]["uid"] for p in server.list("pods", NS, label_selector="app=chatbot-api")
    }


def record_posted(server: KubeServer) -> dict[str, Any]:
    """The revert-record Secret drillkit created (the request body)."""
    posts = [
        r.body
        for r in server.requests
        if r.method == "POST"
        and r.path.endswith("/secrets")
        and REVERT_OF in (r.body.get("metadata", {}).get("annotations") or {})
    ]
    assert len(posts) == 1, posts
    return dict(posts[0])


def record_data(record: dict[str, Any]) -> dict[str, Any]:
    return dict(json.loads(base64.b64decode(record["data"]["revert"])))


def killed_so_far(events: list[Any]) -> list[dict[str, Any]]:
    """pod-kill's victims as journalled: each `revert_updated` appends the pods of one batch."""
    return [k for e in events if e.kind == "revert_updated" for k in e.data["append"]["killed"]]


def ready_count(server: KubeServer, selector: str = "app=chatbot-api") -> int:
    return sum(
        1
        for p in server.list("pods", NS, label_selector=selector)
        if any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))
    )


def execs(server: KubeServer) -> list[tuple[str, str, list[str]]]:
    """(pod, container, command) of every exec drillkit sent, as the recording proxy saw them."""
    out = []
    for r in server.requests:
        if r.path.endswith("/exec"):
            command = r.query.get("command")
            out.append(
                (
                    r.path.split("/")[-2],
                    str(r.query.get("container")),
                    list(command) if isinstance(command, list) else [str(command)],
                )
            )
    return out


class Marked:
    """The processes whose command line carries `marker` (the commands drillkit exec'd into a
    pod run on this machine, in the nodes' network namespace and cgroup), sampled while inside."""

    def __init__(self, marker: str) -> None:
        self.marker = marker.encode()
        self.seen: set[int] = set()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._done.wait(0.05):
            self.seen |= self._now()

    def _now(self) -> set[int]:
        found = set()
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                if self.marker in (proc / "cmdline").read_bytes():
                    found.add(int(proc.name))
            except OSError:
                continue
        return found

    def alive(self) -> set[int]:
        return {pid for pid in self._now() if pid in self.seen}

    def __enter__(self) -> Marked:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()


def test_pod_kill_deletes_pods_and_owner_restores_them(
    kube_demo: KubeServer, prom_env: PromEnv, tmp_path: Path
) -> None:
    before = api_pods(kube_demo)
    run = run_drill(
        kube_demo,
        prom_env,
        tmp_path,
        scenario(
            [{"kind": "pod-kill", "selector": "app=chatbot-api", "count": 2, "pick": "oldest", "grace_period": 0}],
            guardrails={"max_targets": 2},
        ),
    )
    killed = run.event("revert_registered")  # registered before any delete
    updates = [killed_so_far(run.events)]
    victims = {k["name"]: k["uid"] for k in updates[-1]}
    assert len(victims) == 2 and set(victims.items()) <= set(before.items()), (victims, before)
    after = api_pods(kube_demo)
    assert not set(victims.values()) & set(after.values()), (
        f"killed pod UIDs {sorted(victims.values())} still present after pod-kill: {after}"
    )
    assert len(after) == 3 and ready_count(kube_demo) == 3, f"owner did not restore 3 Ready pods: {after}"
    restored = run.event("replicas_restored").data
    assert restored["owner"] == "deployment/chatbot-api" and 0 < restored["seconds"] < 10, restored
    assert all(k["owner"] == "deployment/chatbot-api" and k["manifest"] is None for k in updates[-1])
    assert run.kinds().index("revert_registered") < run.kinds().index("injected")
    assert killed.data["data"]["killed"] == []
    assert run.event("leftovers_checked").data["remaining"] == []
    assert run.reverts()[0]["result"]["owners_ready"] == {"deployment/chatbot-api": True}


def test_pod_kill_repeats_until_duration_and_revert_stops_it(
    kube_demo: KubeServer, prom_env: PromEnv, tmp_path: Path
) -> None:
    run = run_drill(
        kube_demo,
        prom_env,
        tmp_path,
        scenario(
            [
                {
                    "kind": "pod-kill",
                    "selector": "app=chatbot-api",
                    "grace_period": 0,
                    "repeat_every": "150ms",
                    "duration": "30s",
                }
            ],
            within="1s",
        ),
    )
    killed = killed_so_far(run.events)
    assert len(killed) >= 3, f"expected repeated kills within the 1 s detection window: {killed}"
    done = run.kinds().index("revert_done")
    later = [e for e in run.events[done:] if e.kind == "revert_updated"]
    assert not later, f"pods still killed after the revert stopped the loop: {later}"
    count = len(kube_demo.requests)
    kube_demo.wait_for(lambda: ready_count(kube_demo) == 3, message="3 Ready pods")
    time.sleep(0.5)
    deletes = [r for r in kube_demo.requests[count:] if r.method == "DELETE"]
    assert deletes == [], "the repeat loop outlived the drill"


def test_pod_kill_recreates_an_ownerless_pod(kube_demo: KubeServer, prom_env: PromEnv, tmp_path: Path) -> None:
    kube_demo.seed(
        {
            "kind": "Pod",
            "metadata": {"name": "debug", "namespace": NS, "labels": {"app": "debug"}},
            "spec": {"containers": [{"name": "sh", "image": "busybox:1.36"}]},
        }
    )
    kube_demo.wait_for(lambda: ready_count(kube_demo, "app=debug") == 1, message="debug pod Ready")
    old = kube_demo.get("pods", NS, "debug")
    assert old is not None
    run = run_drill(
        kube_demo,
        prom_env,
        tmp_path,
        scenario([{"kind": "pod-kill", "selector": "app=debug"}], guardrails={"max_targets": "100%"}),
        admission=False,  # the policy refuses re-creating busybox (tests/test_kube_admission.py)
    )
    new = kube_demo.get("pods", NS, "debug")
    assert new is not None, "revert did not re-create the owner-less pod"
    assert new["metadata"]["uid"] != old["metadata"]["uid"], "pod was never deleted"
    assert new["spec"]["containers"] == old["spec"]["containers"]
    assert new["metadata"]["labels"] == old["metadata"]["labels"]
    assert run.reverts()[0]["result"]["recreated"] == ["debug"]


def test_scale_to_zero_restores_exact_replicas(kube_demo: KubeServer, prom_env: PromEnv, tmp_path: Path) -> None:
    kube_demo.update("deployments", NS, "chatbot-api", lambda d: d["spec"].__setitem__("replicas", 2))
    kube_demo.wait_for(lambda: len(api_pods(kube_demo)) == 2 and ready_count(kube_demo) == 2)
    run = run_drill(
        kube_demo,
        prom_env,
        tmp_path,
        scenario([{"kind": "scale-to-zero", "workload": "deployment/chatbot-api"}], guardrails={"max_targets": "100%"}),
    )
    data = run.event("revert_registered").data["data"]
    assert data == {"namespace": NS, "kind": "Deployment", "name": "chatbot-api", "replicas": 2}
    patches = [r for r in kube_demo.requests if r.method == "PATCH" and "/deployments/chatbot-api" in r.path]
    scales = [r.body for r in patches if r.path.endswith("/scale")]
    assert scales == [{"spec": {"replicas": 0}}], f"scale PATCH bodies: {scales}"
    # the revert: a JSON patch of the Deployment itself (a Scale omits replicas when 0, so a
    # `test` of 0 on /scale always fails), replacing the count only if it is still drillkit's 0
    reverts = [r for r in patches if isinstance(r.body, list)]
    assert [r.body for r in reverts] == [
        [{"op": "test", "path": "/spec/replicas", "value": 0}, {"op": "replace", "path": "/spec/replicas", "value": 2}]
    ], [(r.path, r.body) for r in patches]
    assert reverts[0].path.endswith("/deployments/chatbot-api") and reverts[0].status == 200, reverts[0]
    # before the scale-down, the revert data goes into a run-labelled record Secret (for a
    # cleanup without the journal) and the Deployment gets a label (never an annotation: the
    # controller would copy it onto ReplicaSets); the revert drops both
    run_id = run.result.run_id
    first = patches[0]
    assert not first.path.endswith("/scale"), [r.path for r in patches]
    assert first.body == {"metadata": {"labels": {MODIFIED_BY: run_id}}}, first.body
    record = record_posted(kube_demo)
    assert record["metadata"]["name"] == record_name(run_id, "Deployment", "chatbot-api", "scale-to-zero")
    assert record["metadata"]["labels"] == {"drillkit.io/run-id": run_id}
    assert record["metadata"]["annotations"] == {REVERT_OF: "Deployment/chatbot-api", REVERT_FAULT: "scale-to-zero"}
    assert record_data(record) == {"namespace": NS, "kind": "Deployment", "name": "chatbot-api", "replicas": 2}
    assert kube_demo.get("secrets", NS, record["metadata"]["name"]) is None, "record not deleted by the revert"
    d = kube_demo.get("deployments", NS, "chatbot-api")
    assert d is not None and d["spec"]["replicas"] == 2, d and d["spec"]
    assert MODIFIED_BY not in d["metadata"].get("labels", {}), d["metadata"]
    assert not [k for k in d["metadata"].get("annotations", {}) if k.startswith("drillkit.io/")]
    assert ready_count(kube_demo) == 2, api_pods(kube_demo)


def test_scale_to_zero_revert_leaves_an_on_call_change(kube_demo: KubeServer, tmp_path: Path) -> None:
    """On-call scaled the Deployment to 1 during the drill: the revert's `test` of 0 fails on the
    real apiserver (422) and their count stays."""
    d = direct_fault(
        kube_demo,
        tmp_path,
        {"kind": "scale-to-zero", "workload": "deployment/chatbot-api", "wait": 0},
        guardrails={"max_targets": "100%"},
    )
    try:
        found = d.fault.preflight()
        with ExitStack() as stack:
            d.fault.inject(found, Undo(stack, d.ctx))
            assert (kube_demo.get("deployments", NS, "chatbot-api") or {})["spec"]["replicas"] == 0
            kube_demo.update("deployments", NS, "chatbot-api", lambda x: x["spec"].__setitem__("replicas", 1))
    finally:
        d.journal.close()
    result = next(e for e in d.events() if e.kind == "revert_done").data["result"]
    assert result["restored"] is False, result
    assert "has 1 replicas, not the 0 drillkit set" in result["changed during the drill"], result
    refused = [r for r in kube_demo.requests if r.method == "PATCH" and isinstance(r.body, list)]
    assert [r.status for r in refused] == [422], [(r.path, r.status, r.answer) for r in refused]
    after = kube_demo.get("deployments", NS, "chatbot-api")
    assert after is not None and after["spec"]["replicas"] == 1, after and after["spec"]
    assert MODIFIED_BY not in (after["metadata"].get("labels") or {}), after["metadata"]


def test_scale_to_zero_needs_full_blast_radius(kube_demo: KubeServer, prom_env: PromEnv, tmp_path: Path) -> None:
    run = run_drill(
        kube_demo, prom_env, tmp_path, scenario([{"kind": "scale-to-zero", "workload": "deployment/chatbot-api"}])
    )
    assert run.result.status.value == "inconclusive", run.output
    assert "exceed the blast radius" in run.event("error").data["error"]
    assert not [r for r in kube_demo.requests if r.method == "PATCH"], "something was patched"


def test_bad_rollout_restores_previous_template(kube_demo: KubeServer, prom_env: PromEnv, tmp_path: Path) -> None:
    before = kube_demo.get("deployments", NS, "chatbot-api")
    assert before is not None
    run = run_drill(
        kube_demo,
        prom_env,
        tmp_path,
        scenario([{"kind": "bad-rollout", "workload": "deployment/chatbot-api", "container": "api"}]),
    )
    run_id = run.result.run_id
    stuck = run.event("rollout_stuck").data
    bad = f"ghcr.io/drillkit/chatbot-api:drillkit-nonexistent-{run_id}"
    assert stuck["image"] == bad, stuck
    patches = [
        r.body for r in kube_demo.requests if r.method == "PATCH" and r.path.endswith("/deployments/chatbot-api")
    ]
    assert patches[0]["spec"]["template"]["spec"]["containers"] == [{"name": "api", "image": bad}]
    # the same PATCH labels the Deployment; the previous template went into a record Secret first
    assert patches[0]["metadata"] == {"labels": {MODIFIED_BY: run_id}}, patches[0]
    record = record_posted(kube_demo)
    assert record["metadata"]["annotations"][REVERT_FAULT] == "bad-rollout"
    assert record_data(record)["template"] == before["spec"]["template"]
    assert kube_demo.get("secrets", NS, record["metadata"]["name"]) is None, "record not deleted by the revert"
    after = kube_demo.get("deployments", NS, "chatbot-api")
    assert after is not None
    assert after["spec"]["template"] == before["spec"]["template"], "template not restored exactly"
    assert after["metadata"].get("labels") == before["metadata"].get("labels"), after["metadata"]
    assert not [k for k in after["metadata"].get("annotations", {}) if k.startswith("drillkit.io/")]
    images = {p["spec"]["containers"][0]["image"] for p in kube_demo.list("pods", NS, "app=chatbot-api")}
    assert images == {"ghcr.io/drillkit/chatbot-api:0.1.0"}, images
    assert run.event("revert_registered").data["data"]["template"] == before["spec"]["template"]


def test_auth_secret_corruption_restores_and_keeps_secrets_out(
    kube_demo: KubeServer, prom_env: PromEnv, tmp_path: Path
) -> None:
    original = kube_demo.get("secrets", NS, "chatbot-jwt")
    assert original is not None
    seen: dict[str, str] = {}

    def watch_backup() -> bool:  # capture the corrupted state while the drill runs
        s = kube_demo.get("secrets", NS, "chatbot-jwt")
        backups = [b for b in kube_demo.list("secrets", NS) if b["metadata"]["name"].startswith("drillkit-backup-")]
        if s and s["data"]["jwt-secret"] != original["data"]["jwt-secret"] and backups:
            seen["corrupt"] = s["data"]["jwt-secret"]
            seen["backup"] = backups[0]["metadata"]["name"]
            seen["backup_value"] = backups[0]["data"]["jwt-secret"]
            seen["labels"] = str(backups[0]["metadata"]["labels"])
        return False

    import threading

    stop = threading.Event()
    t = threading.Thread(target=lambda: [watch_backup() for _ in iter(lambda: stop.wait(0.05), True)])
    t.start()
    try:
        run = run_drill(
            kube_demo,
            prom_env,
            tmp_path,
            scenario([{"kind": "auth-secret-corruption", "secret": "chatbot-jwt", "key": "jwt-secret"}]),
        )
    finally:
        stop.set()
        t.join()
    run_id = run.result.run_id
    assert seen.get("backup") == f"drillkit-backup-chatbot-jwt-{run_id}", seen
    assert seen["backup_value"] == original["data"]["jwt-secret"]
    assert f"'drillkit.io/run-id': '{run_id}'" in seen["labels"]
    after = kube_demo.get("secrets", NS, "chatbot-jwt")
    assert after is not None and after["data"] == original["data"], "secret not restored"
    assert not [b for b in kube_demo.list("secrets", NS) if "drillkit-backup" in b["metadata"]["name"]]
    restarts = [
        r.body for r in kube_demo.requests if r.method == "PATCH" and r.path.endswith("/deployments/chatbot-api")
    ]
    assert len(restarts) == 2 and all("drillkit.io/restartedAt" in str(b) for b in restarts), restarts
    secret_text = base64.b64decode(original["data"]["jwt-secret"]).decode()
    corrupt_text = base64.b64decode(seen["corrupt"]).decode()
    no_secret_values(run.journal_text(), secret_text, corrupt_text)
    no_secret_values(str(report(run)), secret_text, corrupt_text)
    data = run.event("revert_registered").data["data"]
    assert data == {
        "namespace": NS,
        "secret": "chatbot-jwt",
        "key": "jwt-secret",
        "backup": f"drillkit-backup-chatbot-jwt-{run_id}",
        "restart": "deployment/chatbot-api",
    }, data


@pytest.mark.parametrize(
    ("engine", "image", "user", "password", "client"),
    [
        ("postgresql", "postgres:16", "PGUSER", "PGPASSWORD", "psql"),
        ("mysql", "mysql:8", "DRILLKIT_USER", "MYSQL_PWD", "mysql"),
    ],
)
def test_db_connection_exhaustion_job_by_reference_and_deleted(
    kube_demo: KubeServer,
    prom_env: PromEnv,
    tmp_path: Path,
    db_jobs: JobRunner,
    chatbot_postgres: Any,
    engine: str,
    image: str,
    user: str,
    password: str,
    client: str,
) -> None:
    """The Job's pod runs its real script (sh + the real client) against a real PostgreSQL with
    7 free slots: it holds 7 of the 50 connections asked for, and says so at once (the refused
    ones no longer wait for the hold to end). No MySQL server or client is installed here: the
    mysql Job runs its real script, every client fails to start, and the fault says it holds 0."""
    run = run_drill(
        kube_demo,
        prom_env,
        tmp_path,
        scenario(
            [
                {
                    "kind": "db-connection-exhaustion",
                    "service": "chatbot-db",
                    "engine": engine,
                    "secret": "chatbot-db-credentials",
                    "connections": 50,
                }
            ]
        ),
    )
    run_id = run.result.run_id
    data = run.event("revert_registered").data["data"]
    job = data["job"]
    assert data == {"namespace": NS, "job": job} and job.startswith(f"drillkit-dbconn-{run_id}-")
    created = next(r.body for r in kube_demo.requests if r.method == "POST" and r.path.endswith("/jobs"))
    assert created["metadata"]["labels"]["drillkit.io/run-id"] == run_id
    spec = created["spec"]
    assert spec["activeDeadlineSeconds"] == 30 + 120, "dead-man's switch: recovery.within + 2m"
    container = spec["template"]["spec"]["containers"][0]
    assert container["image"] == image
    env = {e["name"]: e for e in container["env"]}
    assert env[user]["valueFrom"]["secretKeyRef"] == {"name": "chatbot-db-credentials", "key": "username"}
    assert env[password]["valueFrom"]["secretKeyRef"] == {"name": "chatbot-db-credentials", "key": "password"}
    assert {"chatbot-db", "5432"} <= {str(e.get("value")) for e in env.values()}
    assert env["DRILLKIT_CONNECTIONS"]["value"] == "50"
    assert client in container["command"][2] and "sleep" in container["command"][2]
    assert "Job " in run.journal_text() and "running" in run.journal_text()
    if engine == "postgresql":
        held = run.event("connections_held").data
        assert held["held"] == DB_SLOTS and held["requested"] == 50, f"PostgreSQL has {DB_SLOTS} free slots: {held}"
        kube_demo.wait_for(
            lambda: held_by(chatbot_postgres, "drillkit-connection-exhaustion") == 0,
            10,
            "PostgreSQL to see the Job's connections closed after the revert",
        )
    else:
        error = run.event("error").data["error"]
        assert "holds 0 of 50 connections" in error and "mysql: not found" in error, error
    pod_sc = container["securityContext"]
    assert pod_sc["runAsNonRoot"] is True and pod_sc["allowPrivilegeEscalation"] is False, pod_sc
    assert pod_sc["capabilities"] == {"drop": ["ALL"]} and pod_sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert kube_demo.get("jobs", NS, job) is None, "Job not deleted by the revert"
    assert not kube_demo.list("pods", NS, label_selector=f"job-name={job}"), "Job pods left behind"
    deletes = [r for r in kube_demo.requests if r.method == "DELETE" and r.path.endswith(f"/jobs/{job}")]
    assert deletes and deletes[0].body.get("propagationPolicy") == "Background", deletes
    no_secret_values(run.journal_text(), "chatbot-demo-password")
    no_secret_values(str(report(run)), "chatbot-demo-password")


def test_db_connection_exhaustion_fails_when_no_connection_is_held(
    kube_demo: KubeServer, prom_env: PromEnv, tmp_path: Path, db_jobs: JobRunner
) -> None:
    """A NetworkPolicy, a wrong DSN or password: the Job runs but holds nothing; the old fault
    counted that as harm done. Here the real PostgreSQL refuses the Secret's (wrong) password."""
    wrong = base64.b64encode(b"not-the-password").decode()
    kube_demo.update("secrets", NS, "chatbot-db-credentials", lambda s: s["data"].__setitem__("password", wrong))
    run = run_drill(
        kube_demo,
        prom_env,
        tmp_path,
        scenario(
            [
                {
                    "kind": "db-connection-exhaustion",
                    "service": "chatbot-db",
                    "secret": "chatbot-db-credentials",
                    "connections": 5,
                }
            ]
        ),
    )
    error = run.event("error").data["error"]
    assert "holds 0 of 5 connections" in error and 'password authentication failed for user "chatbot"' in error, error
    assert run.result.status.value != "passed"
    assert not kube_demo.list("jobs", NS), "the Job outlived the failed fault"


def test_node_drain_cordons_evicts_respects_pdb_and_uncordons(
    kube_demo: KubeServer, prom_env: PromEnv, tmp_path: Path
) -> None:
    kube_demo.seed(
        {
            "kind": "PodDisruptionBudget",
            "metadata": {"name": "api", "namespace": NS},
            "spec": {"minAvailable": 3, "selector": {"matchLabels": {"app": "chatbot-api"}}},
        }
    )
    db = kube_demo.get("pods", NS, "chatbot-db-0")
    assert db is not None
    node = db["spec"]["nodeName"]
    on_node = {p["metadata"]["name"] for p in kube_demo.list("pods", field_selector=f"spec.nodeName={node}")}
    api_on_node = {n for n in on_node if n.startswith("chatbot-api")}
    run = run_drill(
        kube_demo,
        prom_env,
        tmp_path,
        scenario([{"kind": "node-drain", "pod_selector": "app=chatbot-db", "evict_timeout": "1s"}]),
    )
    result = run.event("drain_result").data
    assert result["node"] == node and result["evicted"] == [f"{NS}/chatbot-db-0"], result
    assert set(result["blocked"]) == {f"{NS}/{n}" for n in api_on_node}, result
    evictions = [r for r in kube_demo.requests if r.path.endswith("/eviction")]
    for name in api_on_node:  # a PDB's 429 is retried with backoff until the deadline
        tries = [r for r in evictions if f"/pods/{name}/" in r.path]
        assert len(tries) >= 2, f"eviction of {name} tried {len(tries)} time(s)"
    cordon = [r.body for r in kube_demo.requests if r.method == "PATCH" and r.path.endswith(f"/nodes/{node}")]
    assert cordon[0]["spec"]["unschedulable"] is True, cordon
    after = kube_demo.get("nodes", None, node)
    assert after is not None and not after["spec"].get("unschedulable"), after["spec"]
    assert "drillkit.io/cordoned-by" not in (after["metadata"].get("annotations") or {})
    new_db = kube_demo.get("pods", NS, "chatbot-db-0")
    assert new_db is None or new_db["metadata"]["uid"] != db["metadata"]["uid"], "db pod not evicted"


def test_memory_pressure_container_is_oom_killed(kube_demo: KubeServer, prom_env: PromEnv, tmp_path: Path) -> None:
    """The allocator drillkit execs really runs, in the nodes' memory cgroup (KWOK's, limited
    like a container), until the kernel OOM-kills it; the cgroup's own counter is the evidence.
    (A kubelet on cgroup v2 would restart the container instead: KWOK restarts nothing, so that
    path is not exercised here.)"""
    cgroup = kube_demo.plane.node_cgroup
    assert cgroup is not None
    before = cgroup.oom_kills
    pods = api_pods(kube_demo)
    with Marked("drillkit-memory-pressure=1") as allocators:
        run = run_drill(
            kube_demo,
            prom_env,
            tmp_path,
            scenario(
                [{"kind": "memory-pressure", "selector": "app=chatbot-api", "container": "api", "timeout": "10s"}]
            ),
        )
    oom = run.event("oom_killed").data
    assert cgroup.oom_kills == before + 1, f"the kernel's OOM kills in {cgroup.path}: {before} -> {cgroup.oom_kills}"
    assert oom == {
        "fault": "memory-pressure",
        "pod": oom["pod"],
        "container": "api",
        "restarts": 0,
        "reason": f"cgroup v{cgroup.version} oom_kill {before} -> {before + 1}",
    }, oom
    pod = kube_demo.get("pods", NS, oom["pod"])
    assert pod is not None and pod["metadata"]["uid"] == pods[oom["pod"]]
    assert allocators.seen, "no allocator process ever ran"
    assert not allocators.alive(), f"allocator processes left: {allocators.alive()}"
    ran = execs(kube_demo)
    assert ran[0][0] == oom["pod"] and "memory.oom_control" in ran[0][2][2], "preflight reads the cgroup"
    assert "tail /dev/zero" in ran[1][2][2] and "drillkit-memory-pressure=1" in ran[1][2][2], ran
    assert "drillkit-memory-pressure" not in ran[-1][2][2], "the revert's killer must not match itself"


def test_memory_pressure_on_cgroup_v1_accepts_the_cgroups_oom_kill_count(
    kube_demo: KubeServer, prom_env: PromEnv, tmp_path: Path
) -> None:
    """cgroup v1 (this machine's; v2 alike with memory.oom.group 0): the kernel kills the
    allocator, not the container, so nothing restarts; the cgroup's own oom_kill counter is the
    evidence (the old code waited for a restart and failed)."""
    cgroup = kube_demo.plane.node_cgroup
    assert cgroup is not None
    before = cgroup.oom_kills
    run = run_drill(
        kube_demo,
        prom_env,
        tmp_path,
        scenario([{"kind": "memory-pressure", "selector": "app=chatbot-api", "container": "api", "timeout": "5s"}]),
    )
    oom = run.event("oom_killed").data
    assert oom["reason"] == f"cgroup v{cgroup.version} oom_kill {before} -> {before + 1}", oom
    assert oom["restarts"] == 0, oom
    pod = kube_demo.get("pods", NS, oom["pod"])
    assert pod is not None and pod["status"]["containerStatuses"][0]["restartCount"] == 0
    assert "error" not in run.kinds(), run.output


def test_memory_pressure_refuses_an_unknown_cgroup_layout(
    kube_demo: KubeServer, prom_env: PromEnv, tmp_path: Path
) -> None:
    """The nodes' containers see no memory cgroup (cgroupfs unmounted in KWOK's mount namespace):
    the real probe prints `cgroup unknown`."""
    with kube_demo.plane.memory_cgroup_hidden():
        run = run_drill(
            kube_demo, prom_env, tmp_path, scenario([{"kind": "memory-pressure", "selector": "app=chatbot-api"}])
        )
    assert "cannot read the memory cgroup" in run.event("error").data["error"]
    assert "revert_registered" not in run.kinds()


@pytest.mark.parametrize(
    ("patch", "words"),
    [
        # KWOK has no images: a container named `static` has no root filesystem (controlplane.py),
        # so no command starts in it, as `sh` does not in a distroless image
        ({"name": "static", "image": "gcr.io/distroless/static:nonroot"}, "needs a POSIX shell"),
        ({"resources": {}}, "has no memory limit"),
    ],
)
def test_memory_pressure_preflight_refuses(
    kube_demo: KubeServer, prom_env: PromEnv, tmp_path: Path, patch: dict[str, object], words: str
) -> None:
    def change(d: dict) -> None:
        d["spec"]["template"]["spec"]["containers"][0].update(patch)

    kube_demo.update("deployments", NS, "chatbot-api", change)
    want = (kube_demo.get("deployments", NS, "chatbot-api") or {})["spec"]["template"]["spec"]["containers"][0]

    def rolled() -> bool:
        pods = kube_demo.list("pods", NS, "app=chatbot-api")
        return len(pods) == 3 == ready_count(kube_demo) and all(
            p["spec"]["containers"][0].get("image") == want.get("image")
            and p["spec"]["containers"][0].get("resources") == want.get("resources")
            for p in pods
        )

    kube_demo.wait_for(rolled, timeout=10, message="the changed template rolled out")
    run = run_drill(
        kube_demo, prom_env, tmp_path, scenario([{"kind": "memory-pressure", "selector": "app=chatbot-api"}])
    )
    assert run.result.status.value == "inconclusive"
    assert words in run.event("error").data["error"], run.event("error").data
    assert "revert_registered" not in run.kinds()


@pytest.mark.parametrize(
    ("kind", "extra", "args"),
    [
        ("memory-pressure", {"mode": "node", "memory": "256Mi"}, ["--vm", "1", "--vm-bytes", str(256 * 2**20)]),
        ("memory-pressure", {"mode": "node", "memory": "1G"}, ["--vm", "1", "--vm-bytes", "1000000000"]),
        ("cpu-pressure", {"workers": 2}, ["--cpu", "2"]),
    ],
)
def test_stress_pod_pinned_to_targets_node_and_deleted(
    kube_demo: KubeServer, prom_env: PromEnv, tmp_path: Path, kind: str, extra: dict[str, object], args: list[str]
) -> None:
    target = kube_demo.get("pods", NS, "chatbot-db-0")
    assert target is not None
    run = run_drill(kube_demo, prom_env, tmp_path, scenario([{"kind": kind, "selector": "app=chatbot-db", **extra}]))
    run_id = run.result.run_id
    created = next(r.body for r in kube_demo.requests if r.method == "POST" and r.path.endswith("/pods"))
    name = created["metadata"]["name"]
    registered = run.event("revert_registered").data["data"]
    assert registered == {
        "mode": "node",
        "namespace": NS,
        "pod": name,
        "pods": [],
        "background": None,
        "marker": None,
    }, registered
    assert created["metadata"]["labels"]["drillkit.io/run-id"] == run_id
    assert created["spec"]["nodeName"] == target["spec"]["nodeName"]
    container = created["spec"]["containers"][0]
    assert container["image"] == "ghcr.io/colinianking/stress-ng"
    assert container["args"][: len(args)] == args, container["args"]
    stress_ng_accepts(container["args"])
    if kind == "memory-pressure":
        assert container["resources"]["requests"]["memory"] == extra["memory"]
    assert kube_demo.get("pods", NS, name) is None, "stress pod not deleted by the revert"
    assert run.event("leftovers_checked").data["remaining"] == []


@pytest.mark.parametrize(
    ("kind", "extra", "limit"),
    [
        ("memory-pressure", {"mode": "node", "memory": "256Mi"}, str((256 + 64) * 2**20)),
        ("cpu-pressure", {"workers": 2}, "72Mi"),
    ],
)
def test_stress_pod_passes_restricted_and_keeps_its_limits_under_a_limitrange(
    kube_demo: KubeServer, prom_env: PromEnv, tmp_path: Path, kind: str, extra: dict[str, object], limit: str
) -> None:
    """Pod Security `restricted` enforced on the namespace and a LimitRange defaulting every
    container to 64Mi: the stress pod is admitted (non-root, no escalation, no capabilities,
    RuntimeDefault seccomp; the real apiserver's PodSecurity admission judges it), and its own
    memory limit, not the LimitRange's default, bounds it. It had no securityContext (refused on
    the preflight's dry run) and no limits (a 64Mi default OOM-kills a 256Mi load in a loop)."""
    kube_demo.update(
        "namespaces",
        None,
        NS,
        lambda n: n["metadata"]["labels"].__setitem__("pod-security.kubernetes.io/enforce", "restricted"),
    )
    kube_demo.seed(
        {
            "kind": "LimitRange",
            "metadata": {"name": "defaults", "namespace": NS},
            "spec": {"limits": [{"type": "Container", "default": {"memory": "64Mi"}}]},
        }
    )
    run = run_drill(kube_demo, prom_env, tmp_path, scenario([{"kind": kind, "selector": "app=chatbot-db", **extra}]))
    assert "error" not in run.kinds(), run.event("error").data
    posts = [r for r in kube_demo.requests if r.method == "POST" and r.path.endswith("/pods")]
    assert [(r.query.get("dryRun"), r.status) for r in posts] == [("All", 201), (None, 201)], posts
    sent = posts[1].body
    assert sent["spec"]["containers"][0]["resources"]["limits"] == {"memory": limit}, sent["spec"]["containers"]
    assert sent["spec"]["securityContext"]["runAsNonRoot"] is True
    assert run.event("leftovers_checked").data["remaining"] == []


def test_cpu_pressure_container_busy_loop_is_killed(kube_demo: KubeServer, prom_env: PromEnv, tmp_path: Path) -> None:
    with Marked("drillkit-cpu-pressure=1") as loops:
        run = run_drill(
            kube_demo,
            prom_env,
            tmp_path,
            scenario([{"kind": "cpu-pressure", "mode": "container", "selector": "app=chatbot-api", "duration": "30s"}]),
        )
    commands = [c for _, _, c in execs(kube_demo)]
    assert ["sh", "-c", "true"] in commands
    loop = next(c for c in commands if "drillkit-cpu-pressure=1" in c[2])
    assert "+ 30 ))" in loop[2], loop
    killer = next(c for c in commands if "kill -9" in c[2])
    assert "drillkit-cpu-pressure=1" not in killer[2]
    assert run.reverts()[0]["result"]["stopped_in"], run.reverts()
    assert len(loops.seen) >= 2, f"the busy loop (a shell and its loop) never ran: {loops.seen}"
    assert not loops.alive(), f"busy loops still running after the revert: {loops.alive()}"


NO_NETEM = "Specified qdisc kind is unknown"
"""The kernel's answer to `tc qdisc add … netem` where netem is missing (this machine's)."""


def netem_posts(server: KubeServer) -> tuple[list[Any], list[Any]]:
    """The ephemeral-container PATCHes drillkit sent: (dry runs, real ones)."""
    posts = [r for r in server.requests if r.method == "PATCH" and r.path.endswith("/ephemeralcontainers")]
    return [r for r in posts if r.query.get("dryRun") == "All"], [r for r in posts if r.query.get("dryRun") != "All"]


def test_network_latency_ephemeral_netem_and_revert(
    kube_demo: KubeServer, prom_env: PromEnv, tmp_path: Path, ephemeral_runner: EphemeralRunner
) -> None:
    """The ephemeral container's script runs for real in the nodes' network namespace. With
    netem in the kernel: the delay is on eth0, `tc qdisc show` (exec'd) proves it, the revert
    removes it and ends the script. Without (this machine): the kernel refuses the qdisc, the
    container exits 1, inject says so at once with the kernel's words, and the revert goes by
    the container's exit (no exec into an exited container: the kubelet answers 500)."""
    marker = "drillkit-netem-"
    with Marked(marker) as scripts:
        run = run_drill(
            kube_demo,
            prom_env,
            tmp_path,
            scenario(
                [{"kind": "network-latency", "selector": "app=chatbot-api", "latency": "200ms", "jitter": "20ms"}]
            ),
        )
    run_id = run.result.run_id
    container = f"drillkit-netem-{run_id}"
    name = run.event("revert_registered").data["data"]["pods"][0]["name"]
    pod = kube_demo.get("pods", NS, name)
    assert pod is not None
    eph = pod["spec"]["ephemeralContainers"]
    assert [e["name"] for e in eph] == [container], eph
    assert eph[0]["securityContext"]["capabilities"]["add"] == ["NET_ADMIN"]
    script = eph[0]["command"][2]
    assert "tc qdisc add dev eth0 root handle d1c: netem delay 200ms 20ms" in script, script
    assert "root handle d1c:" in script.split("trap", 1)[1], "the dead man's switch deletes only drillkit's qdisc"
    dry, real = netem_posts(kube_demo)
    assert dry and real, "preflight did not dry-run the ephemeral container, or inject never added it"
    label = next(
        i
        for i, r in enumerate(kube_demo.requests)
        if r.method == "PATCH" and r.path.endswith(f"/pods/{name}") and "drillkit.io/netem-by" in json.dumps(r.body)
    )
    assert label < kube_demo.requests.index(real[0]), "the pod was not labelled before the container was added"
    assert "drillkit.io/netem-by" not in (pod["metadata"].get("labels") or {}), "the revert keeps the netem label"
    assert "drillkit.io/netem" not in (pod["metadata"].get("annotations") or {})
    (status,) = pod["status"]["ephemeralContainerStatuses"]
    assert "terminated" in status["state"], f"the netem script still runs after the revert: {status}"
    assert not scripts.alive(), f"netem scripts (holding NET_ADMIN) still running: {scripts.alive()}"
    assert "d1c:" not in node_qdiscs(kube_demo), node_qdiscs(kube_demo)
    into = [r for r in kube_demo.requests if r.path.endswith("/exec") and r.query.get("container") == container]
    if netem_available():
        shown = [e.data["text"] for e in run.events if e.kind == "note" and "netem" in e.data.get("text", "")]
        assert shown and "netem d1c: root" in shown[0] and "delay 200ms  20ms" in shown[0], shown
        assert run.reverts()[0]["result"] == {name: "delay removed"}, run.reverts()
        commands = [" ".join(r.query["command"]) for r in into]
        revert = next(c for c in commands if "tc qdisc del" in c)
        assert "root handle d1c:" in revert and "kill -TERM" in revert, f"the revert must stop the container: {revert}"
        assert status["state"]["terminated"]["exitCode"] == 0, status
        assert scripts.seen, "the ephemeral container's script never ran"
        assert run.event("leftovers_checked").data["remaining"] == []
        return
    error = run.event("error").data["error"]
    assert f"ephemeral container {container} in Pod {NS}/{name}" in error, error
    assert f"exited 1 (Error): Error: {NO_NETEM}.; no delay in place" in error, error
    took = run.event("error").mono - run.event("injected").mono
    assert took < 30, f"inject took {took:.0f}s to say why the container ended (it waited for `wait`)"
    assert status["state"]["terminated"]["exitCode"] == 1 and NO_NETEM in status["state"]["terminated"]["message"]
    assert run.reverts()[0]["result"] == {
        name: f"no delay was added: the container exited 1 (Error): Error: {NO_NETEM}."
    }
    # inject may have looked (`tc qdisc show`) while the status still said running; the revert
    # saw the exit and exec'd nothing into the exited container
    reverts = [r.query["command"] for r in into if r.query["command"][:3] != ["tc", "qdisc", "show"]]
    assert reverts == [], f"the revert exec'd into the exited container: {reverts}"
    assert ephemeral_runner.ran == [(name, container, 1)], ephemeral_runner.ran


def test_network_latency_revert_leaves_a_foreign_root_qdisc_alone(
    kube_demo: KubeServer, tmp_path: Path, ephemeral_runner: EphemeralRunner
) -> None:
    """Another root qdisc (tbf, handle 1:) on the pods' eth0: it is never touched. With netem,
    it replaces drillkit's after inject, and the kernel answers `Invalid handle` to the revert's
    handle-qualified delete ("no delay left"). Without netem, it is there before the drill, the
    kernel refuses drillkit's qdisc, and nothing is deleted either."""
    assert kube_demo.plane.node_net is not None
    netns = ["ip", "netns", "exec", kube_demo.plane.node_net.name]
    foreign = ["tc", "qdisc", "replace", "dev", "eth0", "root", "handle", "1:", "tbf"]
    foreign += ["rate", "100mbit", "burst", "32kbit", "latency", "400ms"]
    d = direct_fault(kube_demo, tmp_path, {"kind": "network-latency", "selector": "app=chatbot-api", "latency": "1s"})
    try:
        if not netem_available():
            subprocess.run([*netns, *foreign], check=True, capture_output=True)
        found = d.fault.preflight()
        with ExitStack() as stack:
            undo = Undo(stack, d.ctx)
            if netem_available():
                d.fault.inject(found, undo)
                assert "netem d1c:" in node_qdiscs(kube_demo), node_qdiscs(kube_demo)
                subprocess.run([*netns, *foreign], check=True, capture_output=True)
            else:
                with pytest.raises(DrillkitError, match="exited 1 \\(Error\\): Error: "):
                    d.fault.inject(found, undo)
        d.journal.close()
        result = next(e for e in d.events() if e.kind == "revert_done").data["result"]
        want = "no delay left" if netem_available() else "no delay was added: the container exited 1 (Error): Error:"
        assert [v[: len(want)] for v in result.values()] == [want], result
        assert "qdisc tbf 1: root" in node_qdiscs(kube_demo), f"the foreign qdisc was touched: {node_qdiscs(kube_demo)}"
    finally:
        d.journal.close()
        subprocess.run([*netns, "tc", "qdisc", "del", "dev", "eth0", "root"], capture_output=True)


def test_network_latency_refused_where_ephemeral_containers_are_forbidden(
    kube_demo: KubeServer, prom_env: PromEnv, tmp_path: Path
) -> None:
    """Pod Security `baseline` on the namespace: the real apiserver refuses NET_ADMIN, on the
    preflight's dry run already; nothing is labelled or added."""
    kube_demo.update(
        "namespaces",
        None,
        NS,
        lambda n: n["metadata"]["labels"].__setitem__("pod-security.kubernetes.io/enforce", "baseline"),
    )
    run = run_drill(
        kube_demo,
        prom_env,
        tmp_path,
        scenario([{"kind": "network-latency", "selector": "app=chatbot-api", "latency": "200ms"}]),
    )
    error = run.event("error").data["error"]
    assert "ephemeral containers are forbidden" in error and "NET_ADMIN" in error, error
    assert 'violates PodSecurity "baseline:latest"' in error, error
    dry, real = netem_posts(kube_demo)
    assert [r.status for r in dry] == [403] and real == [], [(r.query, r.status) for r in dry + real]
    assert not any(p["spec"].get("ephemeralContainers") for p in kube_demo.list("pods", NS))
    assert not kube_demo.list("pods", NS, label_selector="drillkit.io/netem-by"), "a pod was labelled"
    assert "revert_registered" not in run.kinds()


def pod_deletes(server: KubeServer) -> int:
    return sum(1 for r in server.requests if r.method == "DELETE" and f"/namespaces/{NS}/pods/" in r.path)


def test_pod_kill_revert_waits_for_a_repeat_kill_in_progress(kube_demo: KubeServer, tmp_path: Path) -> None:
    """The revert stops the repeat loop for real: a kill in the middle of a (slow) delete is
    waited for, nothing is deleted or journalled after `revert_done`, and the revert is not
    pending again (cleanup would run it twice)."""
    d = direct_fault(
        kube_demo,
        tmp_path,
        {
            "kind": "pod-kill",
            "selector": "app=chatbot-api",
            "count": 2,
            "grace_period": 0,
            "repeat_every": "100ms",
            "duration": "60s",
        },
        guardrails={"max_targets": 2},
    )
    try:
        with ExitStack() as stack:
            undo = Undo(stack, d.ctx)
            d.fault.inject(d.fault.preflight(), undo)
            kube_demo.inject_error(
                "DELETE", f"/namespaces/{NS}/pods/", status=None, delay=2.0, times=1000
            )  # from now on every pod delete takes 2 s

            def updates() -> int:
                return sum(1 for e in d.journal.events if e.kind == "revert_updated")

            kube_demo.wait_for(
                lambda: updates() >= 3, timeout=5, message="the repeat loop journalling its first victim"
            )
            time.sleep(0.1)  # ... and now in the middle of deleting it
        deletes = pod_deletes(kube_demo)
        time.sleep(2.5)  # longer than the delete the loop was in
        assert pod_deletes(kube_demo) == deletes, "pods deleted after the revert reported done"
        kinds = [e.kind for e in d.events()]
        done = kinds.index("revert_done")
        assert "revert_updated" not in kinds[done:], kinds
        assert pending_reverts(d.folder) == [], "the revert looks pending again"
    finally:
        d.journal.close()
        kube_demo.clear_injections()


def test_pod_kill_recreates_an_ownerless_pod_after_its_grace_period(
    kube_demo: KubeServer, prom_env: PromEnv, tmp_path: Path
) -> None:
    kube_demo.seed(
        {
            "kind": "Pod",
            "metadata": {"name": "debug", "namespace": NS, "labels": {"app": "debug"}},
            "spec": {
                "containers": [
                    {"name": "sh", "image": "busybox:1.36", "env": [{"name": "TOKEN", "value": "inline-s3cret"}]}
                ]
            },
        }
    )
    kube_demo.wait_for(lambda: ready_count(kube_demo, "app=debug") == 1, message="debug pod Ready")
    old = kube_demo.get("pods", NS, "debug")
    assert old is not None
    run = run_drill(
        kube_demo,
        prom_env,
        tmp_path,
        scenario(
            [{"kind": "pod-kill", "selector": "app=debug", "grace_period": "2s"}], guardrails={"max_targets": "100%"}
        ),
        admission=False,  # the policy refuses re-creating busybox (tests/test_kube_admission.py)
    )
    deletes = [r.body for r in kube_demo.requests if r.method == "DELETE" and r.path.endswith("/pods/debug")]
    assert deletes and deletes[0]["gracePeriodSeconds"] == 2, deletes
    assert run.reverts()[0]["result"]["recreated"] == ["debug"], run.reverts()
    new = kube_demo.get("pods", NS, "debug")
    assert new is not None, "the pod was still terminating at the revert and then vanished"
    assert new["metadata"]["uid"] != old["metadata"]["uid"]
    assert not new["metadata"].get("deletionTimestamp"), new["metadata"]
    assert new["spec"]["containers"] == old["spec"]["containers"]


def test_journal_holding_a_saved_manifest_is_private(kube_demo: KubeServer, prom_env: PromEnv, tmp_path: Path) -> None:
    kube_demo.seed(
        {
            "kind": "Pod",
            "metadata": {"name": "debug", "namespace": NS, "labels": {"app": "debug"}},
            "spec": {
                "containers": [
                    {"name": "sh", "image": "busybox:1.36", "env": [{"name": "TOKEN", "value": "inline-s3cret"}]}
                ]
            },
        }
    )
    kube_demo.wait_for(lambda: ready_count(kube_demo, "app=debug") == 1, message="debug pod Ready")
    for fault in (
        {"kind": "pod-kill", "selector": "app=debug"},
        {"kind": "bad-rollout", "workload": "deployment/chatbot-api", "wait": 0},
    ):
        (tmp_path / fault["kind"]).mkdir()
        run = run_drill(
            kube_demo,
            prom_env,
            tmp_path / fault["kind"],
            scenario([fault], guardrails={"max_targets": "100%"}),
            admission=False,  # pod-kill re-creates busybox, which the policy refuses
        )
        assert run.result.folder is not None
        journal = run.result.folder / "journal.jsonl"
        assert "inline-s3cret" in journal.read_text() or fault["kind"] == "bad-rollout"
        mode = stat.S_IMODE(journal.stat().st_mode)
        assert mode == 0o600, f"{fault['kind']}: journal mode {oct(mode)}, expected 0o600"


def test_bad_rollout_revert_replaces_a_stuck_statefulset_pod(
    kube_demo: KubeServer, prom_env: PromEnv, tmp_path: Path
) -> None:
    """OrderedReady never replaces a pod stuck on the broken image once the template is back:
    the revert deletes it, and the StatefulSet is Ready again."""
    before = kube_demo.get("statefulsets", NS, "chatbot-db")
    assert before is not None
    run = run_drill(
        kube_demo,
        prom_env,
        tmp_path,
        scenario([{"kind": "bad-rollout", "workload": "statefulset/chatbot-db", "container": "postgres"}]),
    )
    assert run.event("rollout_stuck").data["pod"] == "chatbot-db-0"
    result = run.reverts()[0]["result"]
    assert result == {"restored": True, "ready": True, "stuck_pods_deleted": ["chatbot-db-0"]}, result
    after = kube_demo.get("statefulsets", NS, "chatbot-db")
    assert after is not None and after["spec"]["template"] == before["spec"]["template"]
    pod = kube_demo.get("pods", NS, "chatbot-db-0")
    assert pod is not None and pod["spec"]["containers"][0]["image"] == "postgres:16"
    assert ready_count(kube_demo, "app=chatbot-db") == 1


def test_a_workload_awaiting_another_runs_revert_is_refused(
    kube_demo: KubeServer, prom_env: PromEnv, tmp_path: Path
) -> None:
    """A runner died after scale-to-zero: until cleanup restores it, no drill may treat the
    broken state as the one to restore (a bad-rollout would save and later 'restore' it)."""
    d = direct_fault(
        kube_demo,
        tmp_path,
        {"kind": "scale-to-zero", "workload": "deployment/chatbot-api", "wait": 0},
        run_id="aaaa1111",
        guardrails={"max_targets": "100%"},
    )
    try:
        found = d.fault.preflight()
        with ExitStack() as stack:
            d.fault.inject(found, Undo(stack, d.ctx))
            stack.pop_all()  # the runner "dies"
    finally:
        d.journal.close()
    count = len(kube_demo.requests)
    run = run_drill(
        kube_demo,
        prom_env,
        tmp_path,
        scenario([{"kind": "bad-rollout", "workload": "deployment/chatbot-api", "wait": 0}]),
    )
    assert run.result.status.value == "inconclusive", run.output  # a preflight refusal
    error = run.event("error").data["error"]
    assert f"still awaits the revert of run aaaa1111 (label {MODIFIED_BY})" in error, error
    assert "drillkit cleanup --run-id aaaa1111" in error, error
    assert not [r for r in kube_demo.requests[count:] if r.method == "PATCH"], "something was patched"


def test_bad_rollout_revert_fails_when_statefulset_stays_unready(kube_demo: KubeServer, tmp_path: Path) -> None:
    sts = kube_demo.get("statefulsets", NS, "chatbot-db")
    assert sts is not None
    broken = copy.deepcopy(sts["spec"]["template"])
    broken["spec"]["containers"][0]["image"] = "postgres:drillkit-nonexistent-x"
    d = direct_fault(kube_demo, tmp_path, {"kind": "bad-rollout", "workload": "statefulset/chatbot-db"})

    class Impatient(BadRollout):
        ready_timeout = 1.0

    try:
        with pytest.raises(DrillkitError, match="not Ready within 1s"):
            Impatient.revert(d.ctx, RolloutRecord(NS, "StatefulSet", "chatbot-db", broken, "postgres", "postgres:16"))
    finally:
        d.journal.close()


def test_memory_pressure_wait_for_the_oom_kill_ends_on_stop(kube_demo: KubeServer, tmp_path: Path) -> None:
    """The allocator is never OOM-killed (the kernel's OOM killer held off in the nodes'
    cgroup): a stop ends inject's wait at once."""
    cgroup = kube_demo.plane.node_cgroup
    assert cgroup is not None
    stop = StopFlag()
    d = direct_fault(
        kube_demo,
        tmp_path,
        {"kind": "memory-pressure", "selector": "app=chatbot-api", "container": "api", "timeout": "10s"},
        stop=stop,
    )
    try:
        found = d.fault.preflight()
        with ExitStack() as stack:
            undo = Undo(stack, d.ctx)
            with cgroup.never_oom_killing():  # left before the revert runs
                threading.Timer(0.5, stop.set, args=("received SIGTERM",)).start()
                start = time.monotonic()
                with pytest.raises(Aborted):
                    d.fault.inject(found, undo)
                took = time.monotonic() - start
        assert took < 6.0, f"inject ignored the stop flag for {took:.1f}s"
    finally:
        d.journal.close()


@pytest.mark.parametrize(
    "pod_security",
    [{"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000}, {"runAsNonRoot": True}],
    ids=["non-root-user", "run-as-non-root-only"],
)
def test_network_latency_runs_tc_as_root_in_a_non_root_pod(
    kube_demo: KubeServer, tmp_path: Path, ephemeral_runner: EphemeralRunner, pod_security: dict[str, Any]
) -> None:
    """A pod running as non-root: its ephemeral container inherits the pod's security context.
    As user 1000 the added NET_ADMIN is not effective and `tc` meets the kernel's EPERM; with
    `runAsNonRoot` alone the kubelet refuses the root image (CreateContainerConfigError) and
    inject waited out `wait`. drillkit's container asks for root itself, so `tc` runs with
    NET_ADMIN: the kernel then answers about netem (this machine lacks it) or adds the delay."""
    ns = "nonroot"
    kube_demo.seed(
        {
            "kind": "Pod",
            "metadata": {"name": "api-0", "namespace": ns, "labels": {"app": "api"}},
            "spec": {"securityContext": pod_security, "containers": [{"name": "api", "image": "chatbot-api:1"}]},
        }
    )
    kube_demo.wait_for(
        lambda: ((kube_demo.get("pods", ns, "api-0") or {}).get("status") or {}).get("phase") == "Running",
        message="pod api-0 running",
    )
    d = direct_fault(
        kube_demo,
        tmp_path,
        {"kind": "network-latency", "selector": "app=api", "latency": "200ms", "wait": "15s"},
        namespace=ns,
    )
    try:
        found = d.fault.preflight()
        with ExitStack() as stack:
            undo = Undo(stack, d.ctx)
            if netem_available():
                d.fault.inject(found, undo)
                assert "netem d1c:" in node_qdiscs(kube_demo), node_qdiscs(kube_demo)
            else:
                started = time.monotonic()
                with pytest.raises(DrillkitError) as raised:
                    d.fault.inject(found, undo)
                assert f"exited 1 (Error): Error: {NO_NETEM}." in str(raised.value), raised.value
                assert time.monotonic() - started < 10, "inject waited for the container instead of saying why"
    finally:
        d.journal.close()
    pod = kube_demo.get("pods", ns, "api-0")
    assert pod is not None
    (eph,) = pod["spec"]["ephemeralContainers"]
    assert eph["securityContext"]["runAsUser"] == 0 and eph["securityContext"]["runAsNonRoot"] is False, eph
    assert [(name, code) for name, _, code in ephemeral_runner.ran] == [("api-0", 0 if netem_available() else 1)]
    assert "d1c:" not in node_qdiscs(kube_demo)
