"""pod-kill of 1,000 pods against the Kubernetes API test server (its own process, as an
apiserver would be): drillkit's inject vs the same deletes sent one by one with the plain
`kubernetes` client, both measured in this run; plus requests per pod and journal bytes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PODS = 1000
SERVER = """
import sys
sys.path.insert(0, {root!r})
from pathlib import Path
from tests.kubecluster import KubeServer
from tests.test_kube_scale import NS, swarm
server = KubeServer(kubeconfig_dir=Path(sys.argv[1]), ready_delay=0.05).start()
server.seed({{"apiVersion": "v1", "kind": "Namespace", "metadata": {{"name": NS}}}})
swarm(server, int(sys.argv[2]))
print("ready", flush=True)
for line in sys.stdin:
    if line.strip() == "count":
        print(len(server.requests), flush=True)
    elif line.strip() == "wait":
        server.wait_for(lambda: len(server.list("pods", NS, label_selector="app=swarm")) == int(sys.argv[2])
                        and all(not p["metadata"].get("deletionTimestamp")
                                for p in server.list("pods", NS, label_selector="app=swarm")), timeout=120)
        print("ok", flush=True)
    else:
        break
import os
os._exit(0)
"""


class _Server:
    def __init__(self, folder: Path) -> None:
        self.kubeconfig_path = str(folder / "kubeconfig")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVER.format(root=str(ROOT)), str(folder), str(PODS)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.ask("") == "ready"

    def ask(self, line: str) -> str:
        assert self.proc.stdin and self.proc.stdout
        if line:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.ask("quit")
            self.proc.wait(10)


def bench_pod_kill(rounds: int = 3) -> dict[str, list[float]]:
    """Per round: seconds of drillkit's inject (from inject start to every delete accepted;
    preflight's list is not in it but its requests are counted), then of the one-by-one
    baseline on the same server once the Deployment has brought the pods back; seconds to the
    first accepted delete (`injected`), requests per pod, journal bytes per pod."""
    from kubernetes import client, config

    from drillkit.faults import Undo
    from tests.kube_drill import direct_fault

    folder = Path(tempfile.mkdtemp(prefix="drillkit-bench-pods-"))
    server = _Server(folder)
    api = config.new_client_from_config(config_file=server.kubeconfig_path)
    out: dict[str, list[float]] = {
        k: [] for k in ("ours", "base", "first_harm", "requests_per_pod", "journal_bytes_per_pod")
    }
    try:
        for r in range(rounds):
            (folder / f"round{r}").mkdir()
            d = direct_fault(
                server,  # type: ignore[arg-type]
                folder / f"round{r}",
                {
                    "kind": "pod-kill",
                    "selector": "app=swarm",
                    "count": PODS,
                    "grace_period": 0,
                    "recovery_timeout": "5s",
                },
                guardrails={"max_targets": "100%"},
            )
            first: list[float] = []
            d.ctx.on_harm = lambda _at, seen=first: seen.append(time.perf_counter())
            before = int(server.ask("count"))
            with ExitStack() as stack:
                undo = Undo(stack, d.ctx)
                found = d.fault.preflight()
                start = time.perf_counter()
                d.fault.inject(found, undo)
                out["ours"].append(time.perf_counter() - start)
                out["requests_per_pod"].append((int(server.ask("count")) - before) / PODS)
                stack.pop_all()  # no revert: the Deployment brings the pods back
            d.ctx.stop.set("round measured")  # ends the fault's watchers, or they would load the next rounds
            out["first_harm"].append(first[0] - start)
            out["journal_bytes_per_pod"].append((d.folder / "journal.jsonl").stat().st_size / PODS)
            d.journal.close()
            assert server.ask("wait") == "ok"

            core = client.CoreV1Api(api)
            pods = core.list_namespaced_pod("chatbot", label_selector="app=swarm", _preload_content=False)
            names = [p["metadata"]["name"] for p in json.loads(pods.data)["items"]]
            t = time.perf_counter()
            for name in names:
                core.delete_namespaced_pod(name, "chatbot", body={"gracePeriodSeconds": 0}, _preload_content=False)
            out["base"].append(time.perf_counter() - t)
            assert server.ask("wait") == "ok"
        return out
    finally:
        api.close()
        server.close()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    print(bench_pod_kill())
