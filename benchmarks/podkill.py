"""pod-kill of 1,000 and 5,000 pods against the real Kubernetes control plane of the wire tests
(tests/kubecluster: etcd, kube-apiserver, controller-manager, scheduler, KWOK nodes, behind the
recording proxy): drillkit's inject vs the same deletes sent one by one with the plain
`kubernetes` client, both measured in this run; plus requests per pod, the seconds to the first
accepted delete, and journal bytes.

Needs what the wire tests need: root, iproute2 and the binaries of scripts/build-k8s.sh.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PODS = 1000
SETTLE_TIMEOUT = 900.0
"""Seconds the Deployment gets to bring every pod back, Ready, between measurements."""


def bench_pod_kill(rounds: int = 3, pods: int = PODS, baseline: bool = True) -> dict[str, list[float]]:
    """`pods` pods (all Ready) of one Deployment. Per round: seconds of drillkit's inject (from
    inject start to every delete accepted; preflight's list is not in it but its requests are
    counted), then of the one-by-one baseline on the same cluster once the Deployment has
    brought the pods back; seconds to the first accepted delete (`injected`), requests per pod,
    journal bytes per pod. Also the control plane's start-up and the seconds the pods take to
    be Ready (`setup`). Without `baseline` the one-by-one deletes are skipped (at 5,000 pods
    they take minutes a round on this machine)."""
    from kubernetes import client, config

    from drillkit.faults import Undo
    from tests.kube_drill import direct_fault
    from tests.kubecluster.cluster import RealCluster, pod_ready
    from tests.kubecluster.controlplane import ControlPlane, k8s_bin_dir
    from tests.test_kube_scale import NS, swarm

    folder = Path(tempfile.mkdtemp(prefix="drillkit-bench-pods-"))
    (folder / "k8s").mkdir()
    plane = ControlPlane(root=folder / "k8s", bin=k8s_bin_dir())
    cluster: RealCluster | None = None
    api = None
    out: dict[str, list[float]] = {
        k: [] for k in ("ours", "base", "first_harm", "requests_per_pod", "journal_bytes_per_pod", "setup")
    }

    def settled() -> bool:
        assert cluster is not None
        found = cluster.list("pods", NS, label_selector="app=swarm")
        return len(found) == pods and all(pod_ready(p) for p in found)

    try:
        plane.start()
        out["setup"].append(plane.startup_seconds)
        cluster = RealCluster(plane, folder)
        cluster.ensure_namespace(NS)
        t = time.perf_counter()
        swarm(cluster, pods, timeout=SETTLE_TIMEOUT)
        out["setup"].append(time.perf_counter() - t)
        api = config.new_client_from_config(config_file=cluster.kubeconfig_path)
        for r in range(rounds):
            (folder / f"round{r}").mkdir()
            d = direct_fault(
                cluster,
                folder / f"round{r}",
                {
                    "kind": "pod-kill",
                    "selector": "app=swarm",
                    "count": pods,
                    "grace_period": 0,
                    "recovery_timeout": "5s",
                },
                guardrails={"max_targets": "100%"},
            )
            first: list[float] = []
            d.ctx.on_harm = lambda _at, seen=first: seen.append(time.perf_counter())
            before = len(cluster.requests)
            with ExitStack() as stack:
                undo = Undo(stack, d.ctx)
                found = d.fault.preflight()
                start = time.perf_counter()
                d.fault.inject(found, undo)
                out["ours"].append(time.perf_counter() - start)
                out["requests_per_pod"].append((len(cluster.requests) - before) / pods)
                stack.pop_all()  # no revert: the Deployment brings the pods back
            d.ctx.stop.set("round measured")  # ends the fault's watchers, or they would load the next rounds
            out["first_harm"].append(first[0] - start)
            out["journal_bytes_per_pod"].append((d.folder / "journal.jsonl").stat().st_size / pods)
            d.journal.close()
            cluster.wait_for(settled, SETTLE_TIMEOUT, f"{pods} swarm pods back and Ready")
            if not baseline:
                continue
            core = client.CoreV1Api(api)
            listed = core.list_namespaced_pod(NS, label_selector="app=swarm", _preload_content=False)
            names = [p["metadata"]["name"] for p in json.loads(listed.data)["items"]]
            t = time.perf_counter()
            for name in names:
                core.delete_namespaced_pod(name, NS, body={"gracePeriodSeconds": 0}, _preload_content=False)
            out["base"].append(time.perf_counter() - t)
            cluster.wait_for(settled, SETTLE_TIMEOUT, f"{pods} swarm pods back and Ready")
        return out
    finally:
        if api is not None:
            api.close()
        if cluster is not None:
            cluster.proxy.stop()
        plane.stop()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    print(bench_pod_kill(int(sys.argv[1]) if len(sys.argv) > 1 else 3, int(sys.argv[2]) if len(sys.argv) > 2 else PODS))
