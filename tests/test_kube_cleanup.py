"""A real `drillkit run` subprocess killed mid-fault: SIGTERM reverts by itself, SIGKILL is
finished by `drillkit cleanup` (from the journal, or from the cluster's labels alone; the
cleanup command runs in-process through CliRunner, the drill as a real subprocess)."""

from __future__ import annotations

import base64
import json
import shutil
import signal
import subprocess
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from drillkit.cleanup import cleanup
from drillkit.cli import main
from drillkit.faults import FaultContext, Naming, Undo, fault_class
from drillkit.faults.kube.workloads import record_name
from drillkit.journal import Journal, pending_reverts
from drillkit.kube import MODIFIED_BY, REVERT_FAULT, REVERT_OF, kube_factory_for
from drillkit.scenario import Scenario, load_scenario
from drillkit.signals import StopFlag
from tests.helpers import write_scenario
from tests.kube_drill import scenario, start_run
from tests.kubecluster import CONTEXT, KubeServer
from tests.promfixture import PromEnv

pytestmark = [pytest.mark.wire, pytest.mark.integration]
NS = "chatbot"
FAULTS = [
    {"kind": "scale-to-zero", "workload": "deployment/chatbot-api", "wait": 0},
    {"kind": "auth-secret-corruption", "secret": "chatbot-jwt", "key": "jwt-secret"},
]


def jwt(server: KubeServer) -> str:
    s = server.get("secrets", NS, "chatbot-jwt")
    assert s is not None
    return str(s["data"]["jwt-secret"])


def replicas(server: KubeServer) -> int:
    d = server.get("deployments", NS, "chatbot-api")
    assert d is not None
    return int(d["spec"]["replicas"])


def backups(server: KubeServer) -> list[str]:
    return [s["metadata"]["name"] for s in server.list("secrets", NS, "drillkit.io/run-id")]


def wait_harmed(server: KubeServer, proc: subprocess.Popen[str], original: str) -> None:
    deadline = time.monotonic() + 60  # a loaded 2-core machine starts a drill slowly
    while time.monotonic() < deadline and proc.poll() is None:
        if replicas(server) == 0 and jwt(server) != original and backups(server):
            return
        time.sleep(0.05)
    if proc.poll() is None:
        proc.kill()
    err = proc.communicate(timeout=5)[1]
    raise AssertionError(f"drill never injected both faults (exit {proc.poll()}):\n{err}")


def assert_restored(server: KubeServer, original: str) -> None:
    assert replicas(server) == 3, f"replicas {replicas(server)}, expected 3 restored"
    assert jwt(server) == original, "jwt-secret not restored"
    assert backups(server) == [], f"backup Secrets left: {backups(server)}"
    server.wait_for(
        lambda: (
            len([p for p in server.list("pods", NS, "app=chatbot-api") if p["status"].get("phase") == "Running"]) == 3
        ),
        timeout=10,
        message="3 chatbot-api pods running again",
    )


def test_sigterm_mid_fault_reverts_everything(kube_demo: KubeServer, prom_env: PromEnv, tmp_path: Path) -> None:
    original = jwt(kube_demo)
    proc, reports = start_run(kube_demo, prom_env, tmp_path, FAULTS)
    try:
        wait_harmed(kube_demo, proc, original)
        proc.send_signal(signal.SIGTERM)
        err = proc.communicate(timeout=60)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, f"exit {proc.returncode}\n{err}"
    assert_restored(kube_demo, original)
    journal = next(reports.glob("*/journal.jsonl"))
    kinds = [json.loads(line)["kind"] for line in journal.read_text().splitlines()]
    assert kinds.count("revert_done") == 2 and "aborted" in kinds and kinds[-1] == "finished", kinds
    assert pending_reverts(journal) == []
    checked = [json.loads(line) for line in journal.read_text().splitlines() if '"leftovers_checked"' in line]
    assert checked and checked[0]["remaining"] == [], checked


def test_sigkill_is_finished_by_drillkit_cleanup(kube_demo: KubeServer, prom_env: PromEnv, tmp_path: Path) -> None:
    original = jwt(kube_demo)
    proc, reports = start_run(kube_demo, prom_env, tmp_path, FAULTS)
    try:
        wait_harmed(kube_demo, proc, original)
        time.sleep(0.2)
        proc.kill()
        proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert replicas(kube_demo) == 0 and jwt(kube_demo) != original, "SIGKILL must leave the harm"
    journal = next(reports.glob("*/journal.jsonl"))
    run_id = json.loads(journal.read_text().splitlines()[0])["run_id"]
    assert [p.fault for p in pending_reverts(journal)] == ["auth-secret-corruption", "scale-to-zero"]
    r = CliRunner().invoke(
        main, ["cleanup", "--run-id", run_id, "--report-dir", str(reports), "--kubeconfig", kube_demo.kubeconfig_path]
    )
    assert r.exit_code == 0, f"exit {r.exit_code}\n{r.stdout}\n{r.stderr}"
    assert f"done: run {run_id}: revert auth-secret-corruption #2" in r.stdout, r.stdout
    assert f"done: run {run_id}: revert scale-to-zero #1: replicas=3" in r.stdout, r.stdout
    assert_restored(kube_demo, original)
    assert pending_reverts(journal) == []
    again = cleanup(reports, run_id, kubeconfig=kube_demo.kubeconfig_path, log=lambda _: None)
    assert again.done == [] and again.failed == [], again  # idempotent: nothing left to do


def inject_then_die(
    server: KubeServer, sc: Scenario, tmp_path: Path, run_id: str, naming: Naming | None = None
) -> Path:
    """Inject every fault of `sc` as run `run_id` (named by `naming`: a blind exercise's), then
    "die": no revert runs. The run folder."""
    folder = tmp_path / "reports" / "run"
    journal = Journal(folder / "journal.jsonl")
    journal.append("started", run_id=run_id, scenario={})
    ctx = FaultContext(
        run_id=run_id,
        scenario=sc,
        journal=journal,
        stop=StopFlag(),
        log=lambda _: None,
        kube_factory=kube_factory_for(sc, None, (), server.kubeconfig_path),
        naming=naming or Naming(),
    )
    with ExitStack() as stack:
        undo = Undo(stack, ctx)
        for spec in sc.faults:
            fault = fault_class(spec.kind, "kubernetes")(spec.params, ctx)
            fault.inject(fault.preflight(), undo)
        stack.pop_all()
    journal.close()
    return folder


def test_cleanup_without_journal_uses_labels(kube_demo: KubeServer, tmp_path: Path) -> None:
    """The runner died and its report folder is gone: labels alone let cleanup restore the
    Secret from its backup, delete the Job, and uncordon the node."""
    original = jwt(kube_demo)
    db_node = (kube_demo.get("pods", NS, "chatbot-db-0") or {})["spec"]["nodeName"]
    faults: list[dict[str, Any]] = [
        {"kind": "auth-secret-corruption", "secret": "chatbot-jwt", "key": "jwt-secret"},
        {
            "kind": "db-connection-exhaustion",
            "service": "chatbot-db",
            "secret": "chatbot-db-credentials",
            "connections": 5,
            "wait": 0,  # labels are the point here, not the connections the Job's script holds
        },
        {"kind": "node-drain", "node": db_node, "evict_timeout": "1s"},
    ]
    sc = load_scenario(write_scenario(tmp_path / "d.yaml", scenario(faults)))
    folder = inject_then_die(kube_demo, sc, tmp_path, "deadbeef")
    assert jwt(kube_demo) != original and len(kube_demo.list("jobs", NS)) == 1
    node = kube_demo.get("nodes", None, db_node)
    assert node is not None and node["spec"].get("unschedulable") is True
    shutil.rmtree(folder)
    kube_demo.requests.clear()
    r = CliRunner().invoke(
        main,
        [
            "cleanup",
            "--all",
            "--report-dir",
            str(tmp_path / "reports"),
            "--context",
            CONTEXT,
            "--kubeconfig",
            kube_demo.kubeconfig_path,
            "--namespace",
            NS,
        ],
    )
    assert r.exit_code == 0, f"exit {r.exit_code}\n{r.stdout}\n{r.stderr}"
    assert jwt(kube_demo) == original, r.stdout
    assert base64.b64decode(jwt(kube_demo)).decode() == "drillkit-demo-jwt-secret"
    assert kube_demo.list("jobs", NS) == [], r.stdout
    assert kube_demo.list("secrets", NS, "drillkit.io/run-id") == []
    node = kube_demo.get("nodes", None, db_node)
    assert node is not None and not node["spec"].get("unschedulable"), r.stdout
    restarts = [
        q
        for q in kube_demo.requests
        if q.method == "PATCH" and q.path.endswith("/deployments/chatbot-api") and "restartedAt" in str(q.body)
    ]
    assert restarts, "the Secret's users were not restarted after the restore"
    assert "restored Secret chatbot/drillkit-backup-chatbot-jwt-deadbeef" in r.stdout, r.stdout


def test_cleanup_without_journal_restores_changed_workloads(kube_demo: KubeServer, tmp_path: Path) -> None:
    """scale-to-zero and bad-rollout change objects drillkit did not create: their revert data
    also lives in run-labelled record Secrets (the workloads get a label), so a lost journal
    still restores them; a record with damaged data is one FAILED line and the rest goes on."""
    api = kube_demo.get("deployments", NS, "chatbot-api")
    assert api is not None
    faults: list[dict[str, Any]] = [
        {"kind": "scale-to-zero", "workload": "statefulset/chatbot-db", "wait": 0},
        {"kind": "bad-rollout", "workload": "deployment/chatbot-api", "wait": 0},
    ]
    sc = load_scenario(write_scenario(tmp_path / "d.yaml", scenario(faults, guardrails={"max_targets": "100%"})))
    folder = inject_then_die(kube_demo, sc, tmp_path, "cafe0001")
    db = kube_demo.get("statefulsets", NS, "chatbot-db")
    broken = kube_demo.get("deployments", NS, "chatbot-api")
    assert db is not None and db["spec"]["replicas"] == 0
    assert broken is not None and broken["spec"]["template"] != api["spec"]["template"]
    shutil.rmtree(folder)
    r = CliRunner().invoke(
        main,
        [
            "cleanup",
            "--all",
            "--report-dir",
            str(tmp_path / "reports"),
            "--context",
            CONTEXT,
            "--kubeconfig",
            kube_demo.kubeconfig_path,
            "--namespace",
            NS,
        ],
    )
    assert r.exit_code == 0, f"exit {r.exit_code}\n{r.stdout}\n{r.stderr}"
    assert "workload=StatefulSet/chatbot-db" in r.stdout and "(run cafe0001)" in r.stdout, r.stdout
    assert "workload=Deployment/chatbot-api" in r.stdout, r.stdout
    db, fixed = kube_demo.get("statefulsets", NS, "chatbot-db"), kube_demo.get("deployments", NS, "chatbot-api")
    assert db is not None and db["spec"]["replicas"] == 1, r.stdout
    assert fixed is not None and fixed["spec"]["template"] == api["spec"]["template"], r.stdout
    for obj in (db, fixed):
        assert MODIFIED_BY not in obj["metadata"].get("labels", {}), obj["metadata"]
    assert kube_demo.list("secrets", NS, "drillkit.io/run-id") == [], "records left behind"
    again = cleanup(
        tmp_path / "reports",
        None,
        context=CONTEXT,
        kubeconfig=kube_demo.kubeconfig_path,
        log=lambda _: None,
        namespaces=(NS,),
    )
    assert again.done == [] and again.failed == [], again


def test_cleanup_reports_a_damaged_revert_record_and_goes_on(kube_demo: KubeServer) -> None:
    """A record whose data is not what drillkit wrote: FAILED, the workload keeps its label (so
    other runs keep refusing it), and the other labelled objects are still handled."""
    name = record_name("bad00001", "Deployment", "chatbot-api", "scale-to-zero")
    kube_demo.seed(
        {
            "kind": "Secret",
            "metadata": {
                "name": name,
                "namespace": NS,
                "labels": {"drillkit.io/run-id": "bad00001"},
                "annotations": {REVERT_OF: "Deployment/chatbot-api", REVERT_FAULT: "scale-to-zero"},
            },
            "data": {"revert": base64.b64encode(b'["not", "a", "mapping"]').decode()},
        }
    )
    kube_demo.update(
        "deployments",
        NS,
        "chatbot-api",
        lambda d: d["metadata"].setdefault("labels", {}).__setitem__(MODIFIED_BY, "bad00001"),
    )
    kube_demo.seed(
        {"kind": "Secret", "metadata": {"name": "other", "namespace": NS, "labels": {"drillkit.io/run-id": "bad00001"}}}
    )
    report = cleanup(
        Path("/nonexistent"),
        "bad00001",
        context=CONTEXT,
        kubeconfig=kube_demo.kubeconfig_path,
        log=lambda _: None,
        namespaces=(NS,),
    )
    assert any(
        f"restore from Secret {NS}/{name}" in f and "unreadable" in f and "restore Deployment/chatbot-api by hand" in f
        for f in report.failed
    ), report
    assert any("keeps its revert record" in f for f in report.failed), report
    assert any(f"deleted Secret {NS}/other" in d for d in report.done), report
    d = kube_demo.get("deployments", NS, "chatbot-api")
    assert d is not None and d["metadata"]["labels"][MODIFIED_BY] == "bad00001"


def test_cleanup_reports_bad_journal_data_per_run_and_goes_on(kube_demo: KubeServer, tmp_path: Path) -> None:
    """Bad data in one run's journal is one FAILED line naming the journal line and key; the
    other reverts and runs still run, and the exit code is 1."""
    reports = tmp_path / "reports"
    record = {"target": {"kubernetes": {"context": CONTEXT, "namespace": NS}}, "path": ""}

    def journal(folder: str, run_id: str, *reverts: tuple[Any, str, dict[str, Any]]) -> None:
        j = Journal(reports / folder / "journal.jsonl")
        j.append("started", run_id=run_id, scenario=record)
        for rid, fault, data in reverts:
            j.append("revert_registered", id=rid, fault=fault, data=data)
        j.close()

    base = {"namespace": NS, "kind": "Deployment", "name": "chatbot-api"}
    journal(
        "a-bad-data",
        "aaaa",
        (1, "scale-to-zero", {**base, "replicas": "three"}),
        (2, "scale-to-zero", {**base, "replicas": None}),
    )
    journal("b-bad-event", "bbbb", ("x", "scale-to-zero", {**base, "replicas": 3}))
    journal("c-good", "cccc", (1, "scale-to-zero", {**base, "replicas": 3}))
    kube_demo.update("deployments", NS, "chatbot-api", lambda d: d["spec"].__setitem__("replicas", 0))
    r = CliRunner().invoke(
        main, ["cleanup", "--all", "--report-dir", str(reports), "--kubeconfig", kube_demo.kubeconfig_path]
    )
    assert r.exit_code == 1, f"exit {r.exit_code}: {r.exception!r}\n{r.stdout}\n{r.stderr}"
    # (these hand-made journals lack what a report needs: cleanup says so for each unfinished run)
    failed = [x for x in r.stdout.splitlines() if x.startswith("FAILED") and "could not write its report" not in x]
    assert len(failed) == 3, r.stdout
    journal_a = reports / "a-bad-data" / "journal.jsonl"
    assert any(
        f"run aaaa: revert scale-to-zero #2: {journal_a}:3: revert #2 data.replicas: expected an integer, got None"
        in line
        for line in failed
    ), failed
    assert any(
        f"run aaaa: revert scale-to-zero #1: {journal_a}:2: revert #1 data.replicas: expected an integer, got 'three'"
        in line
        for line in failed
    ), failed
    assert any(line.startswith("FAILED: run bbbb") and "ValueError" in line for line in failed), failed
    assert "done: run cccc: revert scale-to-zero #1: replicas=3" in r.stdout, r.stdout
    assert replicas(kube_demo) == 3
    assert [p.id for p in pending_reverts(reports / "c-good")] == []
    assert [p.id for p in pending_reverts(reports / "a-bad-data")] == [2, 1]  # failed stays pending


def test_cleanup_keeps_a_key_on_call_rotated_during_the_drill(kube_demo: KubeServer, tmp_path: Path) -> None:
    """On-call rotates the corrupted key (through the API, as kubectl would) before cleanup runs:
    the restore (the revert's own, restore_from_backup) must not put the old value back over
    theirs; the backup still goes."""
    original = jwt(kube_demo)
    faults: list[dict[str, Any]] = [{"kind": "auth-secret-corruption", "secret": "chatbot-jwt", "key": "jwt-secret"}]
    sc = load_scenario(write_scenario(tmp_path / "r.yaml", scenario(faults)))
    shutil.rmtree(inject_then_die(kube_demo, sc, tmp_path, "0ca11001"))  # from labels, as above
    corrupted = jwt(kube_demo)
    assert corrupted != original and backups(kube_demo), "the fault did not corrupt the key"
    rotated = base64.b64encode(b"rotated-by-on-call").decode()
    kube_demo.update("secrets", NS, "chatbot-jwt", lambda s: s["data"].__setitem__("jwt-secret", rotated))
    report = cleanup(
        tmp_path / "reports",
        "0ca11001",
        context=CONTEXT,
        kubeconfig=kube_demo.kubeconfig_path,
        log=lambda _: None,
        namespaces=(NS,),
    )
    assert report.failed == [], "\n".join(report.failed)
    assert jwt(kube_demo) == rotated, f"on-call's rotation overwritten: {report}"
    assert any("changed during the drill" in d and "left as it is" in d for d in report.done), report
    assert backups(kube_demo) == [], "the backup Secret was left behind"
