"""The kind platform's manifests and the CronJob's scenario folder, as a real cluster mounts them.

Why: `lab up --kind` never became ready with a 24-byte JWT secret (the app needs 32, so every
login was a 401), and a CronJob reading scenarios from a mounted ConfigMap ran every drill twice
(the kubelet keeps each file in a `..<timestamp>/` folder and links it beside it).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import yaml

from drillkit.lab.app import MIN_SECRET_BYTES, read_secret
from drillkit.scenario import scenario_paths

ROOT = Path(__file__).parents[1]
KIND = ROOT / "drillkit" / "lab" / "kind"
RULES = ROOT / "drillkit" / "lab" / "rules"


def test_the_kind_platforms_jwt_secret_is_one_the_app_accepts(tmp_path: Path) -> None:
    docs = [d for d in yaml.safe_load_all((ROOT / "drillkit/lab/kind/chatbot-api.yaml").read_text()) if d]
    secret = next(d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"] == "chatbot-jwt")
    path = tmp_path / "jwt-secret"
    path.write_text(secret["stringData"]["jwt-secret"])
    assert read_secret(path) is not None, f"the app refuses the kind secret (under {MIN_SECRET_BYTES} bytes)"


def configmap_mount(root: Path, files: dict[str, str]) -> Path:
    """The layout the kubelet gives a mounted ConfigMap: data in `..<timestamp>/`, `..data`
    linking to it, and each key a link through `..data`."""
    stamp = root / "..2026_12_07_10_00_00.123456789"
    stamp.mkdir(parents=True)
    for name, text in files.items():
        (stamp / name).write_text(text)
    os.symlink(stamp.name, root / "..data")
    for name in files:
        os.symlink(f"..data/{name}", root / name)
    return root


def test_a_mounted_configmap_lists_each_scenario_once(tmp_path: Path) -> None:
    mount = configmap_mount(tmp_path / "scenarios", {"pod-kill.yaml": "a: 1\n", "drain.yml": "b: 2\n"})
    (mount / ".hidden").mkdir()
    (mount / ".hidden" / "x.yaml").write_text("c: 3\n")
    (mount / "team").mkdir()
    (mount / "team" / "outage.yaml").write_text("d: 4\n")
    found = [str(p.relative_to(mount)) for p in scenario_paths([str(mount)])]
    assert found == ["drain.yml", "pod-kill.yaml", "team/outage.yaml"], found


def test_the_kind_prometheus_scrapes_the_cadvisor_series_the_rules_read() -> None:
    """ChatbotMemoryLeak counts OOM kills from cAdvisor (`container_oom_events_total`): on a
    cgroup v1 node only the allocator dies and nothing restarts, so no other series shows it.
    The kind Prometheus must scrape the kubelets' cAdvisor (through the apiserver's node proxy,
    which its ClusterRole must grant) and keep every `container_*` series the rules read.
    (Debian's promtool is built without Kubernetes service discovery, so the config's shape is
    checked here; the kind suite's Prometheus loads it for real.)"""
    docs = list(yaml.safe_load_all((KIND / "prometheus.yaml").read_text()))
    config = yaml.safe_load(next(d for d in docs if d["kind"] == "ConfigMap")["data"]["prometheus.yml"])
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "kubelet-cadvisor")
    assert job["kubernetes_sd_configs"] == [{"role": "node"}]
    path = next(r for r in job["relabel_configs"] if r.get("target_label") == "__metrics_path__")
    assert path["replacement"] == "/api/v1/nodes/$1/proxy/metrics/cadvisor", path
    keep = re.compile(next(r["regex"] for r in job["metric_relabel_configs"] if r["action"] == "keep"))
    read = set(re.findall(r"\b(container_[a-z_]+)\b", (RULES / "chatbot.rules.yml").read_text()))
    assert "container_oom_events_total" in read
    assert {m for m in read if not keep.fullmatch(m)} == set(), "the rules read cAdvisor series the job drops"
    role = next(d for d in docs if d["kind"] == "ClusterRole")
    granted = {(res, verb) for rule in role["rules"] for res in rule["resources"] for verb in rule["verbs"]}
    assert ("nodes/proxy", "get") in granted, role["rules"]


def test_the_kind_workflow_pins_kind_and_the_node_image_and_loads_netem() -> None:
    """What `drillkit lab up --kind` needs on a fresh runner, in the workflow's steps: the kind
    release its configs pin (their node images are built for it), `sch_netem` loaded on the host
    the kind nodes share before the suite runs, and one digest-pinned node image in both kind
    configs (the trainee's `kind-config.yaml` and the lab's)."""
    configs = [ROOT / "kind-config.yaml", KIND / "kind-config.yaml"]
    images = {n["image"] for c in configs for n in yaml.safe_load(c.read_text())["nodes"]}
    assert len(images) == 1 and re.fullmatch(r"kindest/node:v[\d.]+@sha256:[0-9a-f]{64}", images.pop()), images
    pinned = {m for c in configs for m in re.findall(r"Pinned: kind (v[\d.]+)", c.read_text())}
    assert len(pinned) == 1, f"the kind configs name {pinned or 'no'} kind release"
    steps = yaml.safe_load((ROOT / ".github/workflows/kind.yml").read_text())["jobs"]["kind"]["steps"]
    kind = [s for s in steps if "kind-action" in str(s.get("uses", "")) or "kind" in str(s.get("run", "")).split()]
    assert [s.get("with", {}).get("version") for s in kind if "uses" in s] == [pinned.pop()], kind
    runs = [str(s.get("run", "")) for s in steps]
    netem = next(i for i, r in enumerate(runs) if "modprobe sch_netem" in r)
    suite = next(i for i, r in enumerate(runs) if "--kind" in r and "pytest" in r)
    assert netem < suite, "sch_netem must be loaded before the kind suite runs"
