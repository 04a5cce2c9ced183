"""`drillkit cleanup --all` over a reports folder of 10,000 finished Kubernetes runs, against the
same command over 10 of them, both as whole processes of this checkout's code against the real
control plane of the wire tests (tests/kubecluster), behind the recording proxy.

Both folders make the same list calls (one sweep of the one context), so their difference is
what each run costs: reading its journal, checking its MAC, resolving its context.

Needs what the wire tests need: root, iproute2 and the binaries of scripts/build-k8s.sh.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.streaming import DRILLKIT, measure  # noqa: E402

NS = "chatbot"


def finished_runs(reports: Path, n: int, context: str) -> Path:
    """`n` finished drills of one Kubernetes context, each journalled as `drillkit run` does
    (sealed with this user's key, so cleanup trusts them and sweeps their namespace)."""
    from drillkit.journal import Journal

    for i in range(n):
        j = Journal(reports / f"run-{i:08x}" / "journal.jsonl")
        scenario = {"target": {"kubernetes": {"context": context, "namespace": NS}}, "path": "", "faults": []}
        j.append("started", run_id=f"{i:08x}", scenario=scenario)
        j.append("finished", status="passed", reason="")
        j.close()
    return reports


def bench_cleanup(rounds: int = 3, runs: int = 10_000, few: int = 10) -> dict[str, list[float]]:
    """CPU seconds of `cleanup --all` over `runs` and over `few` runs, interleaved; the requests
    each sent; the CPU milliseconds per run beyond the listing."""
    from tests.kubecluster.cluster import CONTEXT, RealCluster
    from tests.kubecluster.controlplane import ControlPlane, k8s_bin_dir

    folder = Path(tempfile.mkdtemp(prefix="drillkit-bench-cleanup-"))
    (folder / "k8s").mkdir()
    plane = ControlPlane(root=folder / "k8s", bin=k8s_bin_dir())
    cluster: RealCluster | None = None
    out: dict[str, list[float]] = {k: [] for k in ("many_s", "few_s", "per_run_ms", "many_requests", "few_requests")}
    try:
        plane.start()
        cluster = RealCluster(plane, folder)
        cluster.ensure_namespace(NS)
        many = finished_runs(folder / "many", runs, CONTEXT)
        small = finished_runs(folder / "few", few, CONTEXT)
        for _ in range(rounds):
            for name, where in (("many", many), ("few", small)):
                before = len(cluster.requests)
                cmd = [*DRILLKIT, "cleanup", "--all", "--report-dir", str(where)]
                seconds, _ = measure([*cmd, "--kubeconfig", cluster.kubeconfig_path])
                out[f"{name}_s"].append(seconds)
                out[f"{name}_requests"].append(len(cluster.requests) - before)
            out["per_run_ms"].append((out["many_s"][-1] - out["few_s"][-1]) / (runs - few) * 1000)
        return out
    finally:
        if cluster is not None:
            cluster.proxy.stop()
        plane.stop()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    print(bench_cleanup(int(sys.argv[1]) if len(sys.argv) > 1 else 3))
