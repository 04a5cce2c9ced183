"""Where `drillkit cleanup` looks for run-labelled objects (issue 9, defect 7).

Why: deploy/rbac.yaml grants listing only in the namespaces drills target, so a cleanup that
lists across all namespaces fails under it (or needs an outsized ClusterRole). Cleanup lists
where its journals' drills ran; anywhere else only when told (`--namespace`), and across the
cluster only with `--cluster-wide`. Every test runs cleanup as the shipped ServiceAccount, with
the real apiserver's RBAC deciding: node-drain's ClusterRole (deploy/rbac-node-drain.yaml) is
opt-in, so its one refusal, listing nodes, is expected and must be said as a note.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from drillkit.cli import main
from drillkit.journal import Journal
from tests.kubecluster import CONTEXT, KubeServer

pytestmark = [pytest.mark.wire]
NS = "chatbot"
ALL_NAMESPACES = ("/api/v1/secrets", "/api/v1/pods", "/apis/batch/v1/jobs", "/apis/apps/v1/deployments")
NODES_REFUSED = 'cannot list resource "nodes" in API group "" at the cluster scope'
NODES_NOTE = "nodes not checked (no list on nodes: this user cannot cordon)"


@pytest.fixture
def as_drillkit(kube_demo: KubeServer) -> Iterator[KubeServer]:
    kube_demo.enforce_rbac()
    kube_demo.requests.clear()
    yield kube_demo
    kube_demo.rbac = None


def leftover(server: KubeServer, namespace: str, run_id: str) -> None:
    if server.get("namespaces", None, namespace) is None:
        server.seed({"kind": "Namespace", "metadata": {"name": namespace}})
    server.seed(
        {
            "kind": "Secret",
            "metadata": {"name": f"left-{run_id}", "namespace": namespace, "labels": {"drillkit.io/run-id": run_id}},
        }
    )


def finished_run(reports: Path, run_id: str) -> None:
    """A journal whose drill finished with nothing pending (the case that listed everywhere)."""
    j = Journal(reports / f"run-{run_id}" / "journal.jsonl")
    scenario = {"target": {"kubernetes": {"context": CONTEXT, "namespace": NS}}, "path": "", "faults": []}
    j.append("started", run_id=run_id, scenario=scenario)
    j.append("finished", status="passed", reason="")
    j.close()


def cleanup(server: KubeServer, reports: Path, *args: str) -> Result:
    return CliRunner().invoke(
        main, ["cleanup", "--report-dir", str(reports), "--kubeconfig", server.kubeconfig_path, *args]
    )


def refused(server: KubeServer, stdout: str) -> list[str]:
    """The apiserver's 403s beyond listing nodes (which deploy/rbac.yaml alone does not grant,
    and which cleanup must then say it skipped)."""
    nodes = [m for m in server.denied if NODES_REFUSED in m]
    assert not nodes or NODES_NOTE in stdout, f"nodes were refused ({nodes}) but cleanup did not say so:\n{stdout}"
    return [m for m in server.denied if NODES_REFUSED not in m]


def cluster_wide_lists(server: KubeServer) -> list[str]:
    return [r.path for r in server.requests if r.method == "GET" and r.path in ALL_NAMESPACES]


def test_cleanup_lists_in_the_journals_namespace(as_drillkit: KubeServer, tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    finished_run(reports, "f1f1f1f1")
    leftover(as_drillkit, NS, "f1f1f1f1")
    r = cleanup(as_drillkit, reports, "--run-id", "f1f1f1f1")
    assert r.exit_code == 0, r.stdout + r.stderr
    assert f"deleted Secret {NS}/left-f1f1f1f1" in r.stdout, r.stdout
    assert not refused(as_drillkit, r.stdout), f"cleanup needed more than deploy/rbac.yaml grants: {as_drillkit.denied}"
    assert cluster_wide_lists(as_drillkit) == [], "cleanup listed across all namespaces"


def test_cleanup_without_a_namespace_says_how_to_give_one(as_drillkit: KubeServer, tmp_path: Path) -> None:
    leftover(as_drillkit, NS, "a0a0a0a0")
    r = cleanup(as_drillkit, tmp_path / "none", "--all", "--context", CONTEXT)
    assert r.exit_code == 1, r.stdout + r.stderr
    assert "not checked for labelled objects" in r.stdout and "--namespace NS" in r.stdout, r.stdout
    assert "--cluster-wide, which needs a ClusterRole" in r.stdout, r.stdout
    assert cluster_wide_lists(as_drillkit) == [] and not refused(as_drillkit, r.stdout), as_drillkit.denied
    r = cleanup(as_drillkit, tmp_path / "none", "--all", "--context", CONTEXT, "--namespace", NS)
    assert r.exit_code == 0, r.stdout + r.stderr
    assert f"deleted Secret {NS}/left-a0a0a0a0" in r.stdout, r.stdout
    assert not refused(as_drillkit, r.stdout), as_drillkit.denied


def test_cluster_wide_only_when_asked_and_needs_a_clusterrole(as_drillkit: KubeServer, tmp_path: Path) -> None:
    leftover(as_drillkit, "payments", "b0b0b0b0")
    r = cleanup(as_drillkit, tmp_path / "none", "--run-id", "b0b0b0b0", "--context", CONTEXT, "--cluster-wide")
    assert r.exit_code == 1, "deploy/rbac.yaml grants no cluster-wide listing: " + r.stdout
    assert "forbidden" in r.stdout and "cannot list labelled objects" in r.stdout, r.stdout
    as_drillkit.rbac = None  # a cluster admin
    as_drillkit.requests.clear()
    r = cleanup(as_drillkit, tmp_path / "none", "--run-id", "b0b0b0b0", "--context", CONTEXT, "--cluster-wide")
    assert r.exit_code == 0, r.stdout + r.stderr
    assert "deleted Secret payments/left-b0b0b0b0" in r.stdout, r.stdout
    assert "/api/v1/secrets" in cluster_wide_lists(as_drillkit)


def _unfinished_run(reports: Path, run_id: str, context: str) -> None:
    """A drill killed before it ended, with nothing pending, whose journal names `context`."""
    j = Journal(reports / f"run-{run_id}" / "journal.jsonl")
    scenario = {"target": {"kubernetes": {"context": context, "namespace": NS}}, "path": "", "faults": []}
    j.append("started", run_id=run_id, scenario=scenario)
    j.close()


def test_cleanup_all_asks_the_same_of_2_runs_as_of_60(kube_demo: KubeServer, tmp_path: Path) -> None:
    """The kubeconfig is resolved once per context (not once per run, issue 23): `--all` over 60
    finished runs sends exactly the requests it sends over 2, and prints the same lines."""

    def run(n: int) -> tuple[list[tuple[str, str, str]], list[str]]:
        reports = tmp_path / f"reports{n}"
        for i in range(n):
            finished_run(reports, f"{i:08x}")
        before = len(kube_demo.requests)
        r = cleanup(kube_demo, reports, "--all")
        assert r.exit_code == 0, r.stdout + r.stderr
        asked = sorted((q.method, q.path, str(sorted(q.query.items()))) for q in kube_demo.requests[before:])
        return asked, r.stdout.splitlines()

    few, many = run(2), run(60)
    assert many[0] == few[0], f"60 runs asked {len(many[0])} requests, 2 runs {len(few[0])}"
    assert many[1] == few[1]
    assert any(path.endswith(f"/namespaces/{NS}/secrets") for _, path, _ in few[0]), few[0]


def test_a_refused_context_fails_every_run_that_names_it(kube_demo: KubeServer, tmp_path: Path) -> None:
    """A context resolved once and refused is still one located FAILED line per run naming it
    (the cached refusal), while the runs of the good context are ended as before."""
    reports = tmp_path / "reports"
    gone = [f"c{i:07x}" for i in range(3)]
    for run_id in gone:
        _unfinished_run(reports, run_id, "kind-gone")
    _unfinished_run(reports, "d0000000", CONTEXT)
    r = cleanup(kube_demo, reports, "--all")
    assert r.exit_code == 1, r.stdout + r.stderr
    for run_id in gone:
        line = [x for x in r.stdout.splitlines() if f"run {run_id}:" in x]
        assert len(line) == 1 and "'kind-gone' not found" in line[0], r.stdout
    assert "aborted" in (reports / "run-d0000000" / "journal.jsonl").read_text(), r.stdout
