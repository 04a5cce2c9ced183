"""The kind cpu-pressure drill starves the chat API for real: the kernel's CPU quota, the lab's
real app and PostgreSQL, the lab's traffic generator and the app's own latency histogram.

Why (issue 18 item 11): the drill used to put a stress-ng pod (request 500m) beside one API
replica (request 50m) on its node. CPU weights of about 20:2 still leave that replica far more
CPU than the ~35m the kind traffic (20 requests/s over three replicas) asks of it, and the two
other replicas were untouched, so ChatbotHighLatency (p95 > 0.5 s) would not page. Now the kind
API container has a CPU limit (drillkit/lab/kind/chatbot-api.yaml) and the drill execs its busy
loops in every replica's container (scenarios/k8s/cpu-pressure.yaml, mode: container), where
they share that quota with the app. This test builds one such container from the kernel's
parts: a cpu cgroup with the manifest's limit as CFS quota (v1 `cpu.cfs_quota_us`, v2
`cpu.max`), the app moved into it, the scenario's number of the fault's own busy loops started
in it, the kind traffic's per-replica rate, and the alert's p95 computed from the app's
histogram, as the rule does.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from drillkit.faults.kube.pressure import busy_loops
from drillkit.faults.local import cgroups as cg
from tests.pgutil import free_port, start_postgres
from tests.test_lab_app import SECRET, start_replica, wait_status

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[1]
RPS_PER_REPLICA = 20 / 3  # drillkit/lab/kind/traffic.yaml: 20 requests/s over three replicas
WINDOW_S = 20.0
QUIET = ("/metrics", "/healthz", "/readyz")  # what ChatbotHighLatency leaves out


def kind_cpu_limit() -> float:
    """The API container's CPU limit in the kind manifest, in cores."""
    docs = yaml.safe_load_all((ROOT / "drillkit/lab/kind/chatbot-api.yaml").read_text())
    deployment = next(d for d in docs if d and d["kind"] == "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    cpu = str(container["resources"]["limits"]["cpu"])
    return int(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)


def scenario_fault() -> dict[str, object]:
    data = yaml.safe_load((ROOT / "scenarios/k8s/cpu-pressure.yaml").read_text())
    (fault,) = data["faults"]
    return dict(fault)


@pytest.fixture
def quota_cgroup() -> Iterator[Path]:
    """A new cpu cgroup with the kind API's CPU limit as its quota."""
    h = cg.hierarchy("cpu")
    parent = cg.parent_for_new(os.getpid(), h, "cpu")[0] if h else None
    if h is None or parent is None:
        pytest.fail("no writable cpu cgroup on this host (the tests run as root on cgroup v1 or v2)")
    group = parent / f"drillkit-test-quota-{os.getpid()}"
    group.mkdir()
    period = 100_000
    quota = int(kind_cpu_limit() * period)
    if h.version == 1:
        (group / "cpu.cfs_period_us").write_text(str(period))
        (group / "cpu.cfs_quota_us").write_text(str(quota))
    else:
        (group / "cpu.max").write_text(f"{quota} {period}")
    try:
        yield group
    finally:
        for pid in cg.procs(group):
            cg.move(pid, parent)
        assert cg.remove(group), f"{group} left behind"


def p95(before: str, after: str) -> float:
    """histogram_quantile(0.95, sum by (le) (increase of the request-duration buckets)) over the
    requests ChatbotHighLatency counts, between two scrapes of /metrics (linear within a bucket,
    as Prometheus interpolates)."""

    def buckets(text: str) -> dict[float, float]:
        out: dict[float, float] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == "chatbot_http_request_duration_seconds_bucket" and s.labels["route"] not in QUIET:
                    le = float(s.labels["le"])
                    out[le] = out.get(le, 0.0) + s.value
        return out

    b0, b1 = buckets(before), buckets(after)
    counts = sorted((le, b1[le] - b0.get(le, 0.0)) for le in b1)
    total = counts[-1][1]
    assert total > 0, "no request was served in the window"
    rank, lower, below = 0.95 * total, 0.0, 0.0
    for le, cumulative in counts:
        if cumulative >= rank:
            if le == float("inf"):
                return lower
            return lower + (le - lower) * (rank - below) / max(cumulative - below, 1e-9)
        lower, below = le, cumulative
    return lower


def window(url: str, tmp: Path, name: str) -> float:
    """The p95 of WINDOW_S seconds of the kind traffic's per-replica rate against `url`."""
    before = requests.get(f"{url}/metrics", timeout=10).text
    argv = [sys.executable, "-m", "drillkit.lab.traffic", "--targets", url, "--rps", f"{RPS_PER_REPLICA:.2f}"]
    argv += ["--duration", str(WINDOW_S), "--timeout", "5"]
    with (tmp / f"traffic-{name}.log").open("wb") as log:
        done = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, timeout=WINDOW_S + 60, check=False)
    assert done.returncode == 0, (tmp / f"traffic-{name}.log").read_text()[-2000:]
    return p95(before, requests.get(f"{url}/metrics", timeout=30).text)


def test_the_kind_cpu_drill_pushes_the_apis_p95_over_the_alerts_threshold(tmp_path: Path, quota_cgroup: Path) -> None:
    fault = scenario_fault()
    assert fault["mode"] == "container", "the kind drill must load the API's own container"
    pg = start_postgres(tmp_path, free_port(), max_connections=20)
    secret = tmp_path / "jwt-secret"
    secret.write_text(SECRET + "\n")
    replica = None
    loops: subprocess.Popen[bytes] | None = None
    try:
        pg.create_database("chat")
        replica = start_replica(tmp_path, pg.dsn("chat"), secret, "a")
        wait_status(f"{replica.url}/readyz", 200)
        cg.move(replica.proc.pid, quota_cgroup)
        calm = window(replica.url, tmp_path, "calm")
        assert calm < 0.5, f"the CPU limit alone makes p95 {calm:.2f}s: the platform would page without a drill"

        script = busy_loops("drillkit-test-cpu-pressure", int(str(fault["workers"])), int(WINDOW_S) + 30)
        loops = subprocess.Popen(
            ["sh", "-c", script],
            start_new_session=True,
            preexec_fn=lambda: cg.move(os.getpid(), quota_cgroup),
        )
        time.sleep(2)  # the loops are forked and running
        starved = window(replica.url, tmp_path, "starved")
        assert starved > 0.5, (
            f"p95 {starved:.2f}s with {fault['workers']} busy loops in a {kind_cpu_limit():g}-core container "
            f"(calm: {calm:.2f}s): ChatbotHighLatency would not page"
        )
    finally:
        if loops is not None:
            os.killpg(loops.pid, signal.SIGKILL)
            loops.wait(10)
        if replica is not None:
            replica.stop()
        pg.destroy()
