"""`drillkit train` on Kubernetes, over the wire: the shipped db-connection-exhaustion scenario
run as a blind exercise by a real `drillkit train` process against the real control plane
(tests/kubecluster, as deploy/rbac.yaml's ServiceAccount), with a real Prometheus evaluating the
platform's own alert rules (drillkit/lab/rules/chatbot.rules.yml).

The fault's Job runs for real (the job runner, tests/kubecluster/jobrunner.py): its pod's script
opens its connections with the real psql to a real PostgreSQL standing for chatbot-db (7 free
slots). `PlatformExporter` is the platform's kube-state-metrics and postgres exporter: the
replica counts from the apiserver, the sessions and connection settings from that PostgreSQL.
So the alert fires because the Job's pod holds the slots, and the steady state comes back when
the Job's pod is gone and PostgreSQL has closed its sessions.

- by hand: the trainee acknowledges with a severity, declares the channel, posts to the status
  page, finds a `chatbot-batch-…` Job holding connections and deletes it through the API: the
  scorecard has everything met; everything the fault created carried the run-id label, and
  nothing the trainee could list (names, labels, annotations, env, command) or read on their
  terminal names the fault;
- giving up: drillkit reverts, and the cluster holds nothing of the run afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from drillkit.kube import RUN_LABEL
from drillkit.lab.services import PrometheusSetup, start_prometheus
from drillkit.scenario import load_scenario
from tests.helpers import MetricsServer, drillkit_cmd, run_cli, write_scenario
from tests.kubecluster import CONTEXT, KubeServer
from tests.kubecluster.jobrunner import DB_SLOTS, JobRunner
from tests.trainee import giveaways, journal_kinds, line, named, scorecard, wait_event

pytestmark = [pytest.mark.wire, pytest.mark.integration]
ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "drillkit" / "lab" / "rules" / "chatbot.rules.yml"
NS = "chatbot"
CONNECTIONS = 15  # more than the 7 free slots: the Job holds all 7, 7 / 7 > 0.85 fires the alert


class PlatformExporter:
    """kube-state-metrics and the postgres exporter of the platform, read whenever Prometheus
    scrapes: the workloads' status from the apiserver, the sessions (pg_stat_activity, this
    exporter's own left out) and connection settings from the real PostgreSQL."""

    def __init__(self, server: KubeServer, postgres: Any) -> None:
        self.server = server
        self.postgres = postgres
        self.http = MetricsServer(lambda: self.metrics().encode())
        self.address = self.http.address

    def database(self) -> tuple[int, int, int]:
        """(client sessions, max_connections, superuser_reserved_connections)."""
        import psycopg

        with psycopg.connect(self.postgres.dsn(), autocommit=True) as conn:
            row = conn.execute(
                "SELECT (SELECT count(*) FROM pg_stat_activity"
                "        WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()),"
                " current_setting('max_connections')::int,"
                " current_setting('superuser_reserved_connections')::int"
            ).fetchone()
        assert row is not None
        return int(row[0]), int(row[1]), int(row[2])

    def metrics(self) -> str:
        sts = self.server.get("statefulsets", NS, "chatbot-db") or {"status": {}}
        deploy = self.server.get("deployments", NS, "chatbot-api") or {"status": {}}
        sessions, max_connections, reserved = self.database()
        return "\n".join(
            [
                f'kube_statefulset_status_replicas_ready{{namespace="{NS}",statefulset="chatbot-db"}} '
                f"{sts['status'].get('readyReplicas', 0)}",
                f'kube_deployment_status_replicas_available{{namespace="{NS}",deployment="chatbot-api"}} '
                f"{deploy['status'].get('availableReplicas', 0)}",
                f'pg_stat_activity_count{{datname="chatbot",state="idle"}} {sessions}',
                f"pg_settings_max_connections {max_connections}",
                f"pg_settings_superuser_reserved_connections {reserved}",
                "",
            ]
        )

    def stop(self) -> None:
        self.http.close()


@dataclass
class Platform:
    server: KubeServer
    prometheus_url: str
    scenario: Path
    reports: Path
    exporter: PlatformExporter

    def train(self, *extra: str) -> subprocess.Popen[str]:
        """A real `drillkit train` process; the trainee acts from other processes (and never
        types `done`: a short close-out window)."""
        close = () if "--close-out" in extra else ("--close-out", "2s")
        return subprocess.Popen(
            drillkit_cmd(
                "train",
                str(self.scenario),
                "--trainee",
                "alice",
                "--report-dir",
                str(self.reports),
                "--prometheus-url",
                self.prometheus_url,
                *close,
                *extra,
            ),
            stdin=subprocess.PIPE,  # open and silent: the trainee acts from other shells
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "KUBECONFIG": self.server.kubeconfig_path},
        )

    def act(self, *args: str) -> subprocess.CompletedProcess[str]:
        run_id = next(self.reports.glob("*/journal.jsonl")).parent.name.rsplit("-", 1)[1]
        return run_cli(args[0], run_id, *args[1:], "--by", "alice", "--report-dir", str(self.reports))

    def query(self, expr: str) -> float | None:
        r = requests.get(f"{self.prometheus_url}/api/v1/query", params={"query": expr}, timeout=5)
        result = r.json()["data"]["result"]
        return float(result[0]["value"][1]) if result else None


@pytest.fixture
def platform(kube_demo: KubeServer, tmp_path: Path, db_jobs: JobRunner, chatbot_postgres: Any) -> Iterator[Platform]:
    exporter = PlatformExporter(kube_demo, chatbot_postgres)
    prom = start_prometheus(
        tmp_path / "prometheus", PrometheusSetup(scrape={"platform": [exporter.address]}, rule_files=[RULES])
    )
    data = yaml.safe_load((ROOT / "scenarios" / "k8s" / "db-connection-exhaustion.yaml").read_text())
    data["target"]["kubernetes"]["context"] = CONTEXT
    data["faults"][0]["connections"] = CONNECTIONS
    data["detection"]["within"] = "30s"
    data["recovery"] = {**data["recovery"], "within": "60s", "verify_within": "20s"}
    env = Platform(kube_demo, prom.url, write_scenario(tmp_path / "k8s-db.yaml", data), tmp_path / "reports", exporter)
    try:
        deadline = time.monotonic() + 30  # until Prometheus has the platform healthy
        while (env.query(f'kube_deployment_status_replicas_available{{namespace="{NS}"}}') or 0) < 3:
            assert time.monotonic() < deadline, "Prometheus never scraped the platform"
            time.sleep(0.3)
        kube_demo.enforce_rbac()  # drillkit (and the trainee's API calls) as deploy/rbac.yaml's ServiceAccount
        yield env
    finally:
        kube_demo.rbac = None
        prom.stop()
        exporter.stop()
    assert not kube_demo.denied, f"RBAC (deploy/rbac.yaml) refused: {kube_demo.denied}"


def finish(proc: subprocess.Popen[str], timeout: float = 120) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def run_objects(server: KubeServer, run_id: str) -> list[str]:
    """Every object in the cluster still labelled with the run."""
    return [
        f"{resource} {o['metadata']['name']}"
        for resource in ("jobs", "pods", "secrets", "leases")
        for o in server.list(resource, NS, label_selector=f"{RUN_LABEL}={run_id}")
    ]


def created_by_drillkit(server: KubeServer) -> list[dict[str, Any]]:
    """The bodies of every object drillkit's requests created (not subresources: evictions)."""
    return [
        r.body
        for r in server.requests
        if r.method == "POST" and isinstance(r.body, dict) and r.body.get("kind") not in (None, "Eviction")
    ]


def visible(obj: dict[str, Any]) -> str:
    """What `kubectl get/describe` shows of an object: name, labels, annotations, and for a Job
    or pod its containers' names, images, commands, args and env."""
    meta = obj["metadata"]
    spec = obj.get("spec") or {}
    pod_spec = ((spec.get("template") or {}).get("spec")) or spec
    shown: list[Any] = [meta["name"], meta.get("labels"), meta.get("annotations")]
    for c in pod_spec.get("containers") or []:
        shown += [c["name"], c.get("image"), c.get("command"), c.get("args"), c.get("env")]
    return json.dumps(shown)


def test_a_blind_kubernetes_exercise_mitigated_by_deleting_the_job(platform: Platform) -> None:
    sc = load_scenario(platform.scenario)
    server = platform.server
    proc = platform.train()
    try:
        folder = wait_event(platform.reports, "detected")
        run_id = folder.name.rsplit("-", 1)[1]
        day = time.strftime("%Y-%m-%d", time.gmtime())
        for args in (
            ("ack", "--severity", "P2", "--note", "API cannot get database connections"),
            ("channel", f"#incident-{day}-chat-db-connections"),
            ("update", "Investigating: messages fail to send", "--status-page"),
            ("step", "1"),
        ):
            r = platform.act(*args)
            assert r.returncode == 0, r.stderr
        # the trainee looks with their own tools (the API, as kubectl would) and finds a batch
        # Job's pod connecting to the database that is not part of the platform's workloads
        with server.api_client() as api:
            import kubernetes

            batch, core = kubernetes.client.BatchV1Api(api), kubernetes.client.CoreV1Api(api)
            jobs = batch.list_namespaced_job(NS).items
            assert [j.metadata.name.startswith("chatbot-batch-") for j in jobs] == [True], [
                j.metadata.name for j in jobs
            ]
            job = jobs[0].metadata.name
            pods = [p.metadata.name for p in core.list_namespaced_pod(NS, label_selector=f"job-name={job}").items]
            seen = [server.get("jobs", NS, job)] + [server.get("pods", NS, p) for p in pods]
            lease = server.get("leases", NS, "drillkit-drill-lock")
            held = platform.exporter.database()[0]
            assert held == DB_SLOTS, f"PostgreSQL holds {held} sessions at detection, not its {DB_SLOTS} free slots"
            batch.delete_namespaced_job(job, NS, propagation_policy="Background")  # kubectl delete job
        platform.act("note", f"deleted batch Job {job}: it held idle database sessions")
        out, err = finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, f"exit {proc.returncode}\n{out}\n{err}"
    assert "service restored" in out, out
    kinds = journal_kinds(folder / "journal.jsonl")
    assert "mitigated" in kinds and kinds.index("mitigated") < kinds.index("reverted"), kinds
    card = scorecard(folder)
    assert card["missed"] == 0, json.dumps(card, indent=1)
    assert line(card, "Severity")["outcome"] == "right"
    assert line(card, "Incident channel")["outcome"] == "right"
    assert line(card, "Time to acknowledge")["outcome"] == "met"
    assert line(card, "Time to mitigate")["outcome"] == "met"
    assert card["outcome"] == "service restored by the responders"
    # every object drillkit created carried the run's label (cleanup finds them by it)
    created = created_by_drillkit(server)
    assert {o["kind"] for o in created} >= {"Job", "Lease"}, [o["kind"] for o in created]
    unlabelled = [
        f"{o['kind']} {o['metadata'].get('name')}"
        for o in created
        if (o["metadata"].get("labels") or {}).get(RUN_LABEL) != run_id
    ]
    assert not unlabelled, f"created without {RUN_LABEL}={run_id}: {unlabelled}"
    assert seen[1:] and all(p is not None and p["metadata"]["labels"][RUN_LABEL] == run_id for p in seen[1:]), seen
    # blind: what the trainee could list names neither the fault nor its words
    secrets = giveaways(sc, "exhaust", "connection", "drillkit-", "hold")
    shown = "\n".join(visible(o) for o in seen if o is not None)
    assert not named(shown, secrets), f"the trainee's kubectl shows {named(shown, secrets)}:\n{shown}"
    assert lease is not None and not named(json.dumps(lease["metadata"].get("annotations")), secrets), lease
    assert not named(out + err, secrets), f"the trainee's terminal named {named(out + err, secrets)}:\n{out}{err}"
    assert run_objects(server, run_id) == [], "the run left objects behind"


def test_giving_up_on_kubernetes_reverts_on_the_server(platform: Platform) -> None:
    sc = load_scenario(platform.scenario)
    server = platform.server
    proc = platform.train()
    try:
        folder = wait_event(platform.reports, "detected")
        run_id = folder.name.rsplit("-", 1)[1]
        jobs = server.list("jobs", NS, label_selector=f"{RUN_LABEL}={run_id}")
        assert len(jobs) == 1 and jobs[0]["metadata"]["name"].startswith("chatbot-batch-"), jobs
        assert platform.act("ack", "--severity", "P3").returncode == 0
        assert platform.act("give-up").returncode == 0
        out, err = finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1, f"exit {proc.returncode}\n{out}\n{err}"
    assert "you gave up" in out, out
    kinds = journal_kinds(folder / "journal.jsonl")
    assert {"gave_up", "reverted", "resolved"} <= set(kinds), kinds
    assert kinds.index("gave_up") < kinds.index("reverted"), kinds
    job = jobs[0]["metadata"]["name"]
    deletes = [r.path for r in server.requests if r.method == "DELETE" and r.path.endswith(f"/jobs/{job}")]
    assert deletes, "drillkit never deleted the Job"
    assert server.get("jobs", NS, job) is None
    assert run_objects(server, run_id) == [], f"left after the revert: {run_objects(server, run_id)}"
    card = scorecard(folder)
    assert card["outcome"].startswith("gave up"), card["outcome"]
    assert line(card, "Severity")["outcome"] == "wrong"
    assert not named(out + err, giveaways(sc, "exhaust", "connection", "drillkit-")), out + err
