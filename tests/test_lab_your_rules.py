"""Your own rules in the lab (`lab up --rules`), with public rule sets: the node-exporter mixin
(node_exporter's docs/node-mixin) and the Prometheus self-monitoring mixin, rendered at set-up
time by scripts/fetch-public-rules.sh into ~/.cache/drillkit/public-rules (never committed), and
a PrometheusRule manifest. The rules survive a Prometheus restart, node_exporter is scraped, and
rules given to a running lab replace the old ones."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from drillkit.lab.state import load_state, stop_proc
from tests.helpers import public_rules, run_cli
from tests.test_lab_up import free_block, lab_down

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parent.parent
MANIFEST = {
    "apiVersion": "monitoring.coreos.com/v1",
    "kind": "PrometheusRule",
    "metadata": {"name": "team-rules", "namespace": "monitoring"},
    "spec": {
        "groups": [
            {
                "name": "team",
                "rules": [
                    {"alert": "TeamHostLowMemory", "expr": "node_memory_MemAvailable_bytes < 1", "for": "1m"},
                    {"record": "team:up:sum", "expr": "sum(up)"},
                ],
            }
        ]
    },
}


def alert_names(url: str) -> set[str]:
    groups = requests.get(f"{url}/api/v1/rules", params={"type": "alert"}, timeout=5).json()["data"]["groups"]
    return {r["name"] for g in groups for r in g["rules"]}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    work = tmp_path_factory.mktemp("yours")
    manifests = work / "manifests"
    manifests.mkdir()
    (manifests / "team.yaml").write_text(yaml.safe_dump(MANIFEST))
    lab_dir = work / "lab"
    node, prom = public_rules("node-mixin"), public_rules("prometheus-mixin")
    r = run_cli(
        "lab", "up", "--dir", str(lab_dir), "--base-port", str(free_block()),
        "--rules", str(node), "--rules", str(prom), "--rules", str(manifests), timeout=240,
    )  # fmt: skip
    try:
        assert r.returncode == 0, f"lab up exited {r.returncode}\n{r.stdout}\n{r.stderr}"
        yield lab_dir
    finally:
        lab_down(lab_dir)


def test_bad_rules_are_refused_in_one_line_before_anything_starts(tmp_path: Path) -> None:
    bad = tmp_path / "bad.rules.yml"
    bad.write_text("groups:\n  - name: g\n    rules:\n      - alert: Broken\n        expr: sum(up\n")
    lab_dir = tmp_path / "lab"
    r = run_cli("lab", "up", "--dir", str(lab_dir), "--base-port", str(free_block()), "--rules", str(bad))
    assert r.returncode == 2, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"drillkit: {bad}: --rules: promtool check rules: "), r.stderr
    assert "Traceback" not in r.stderr and load_state(lab_dir) is None, "nothing may start on bad rules"
    r = run_cli("lab", "up", "--dir", str(lab_dir), "--rules", str(tmp_path / "missing.yml"))
    assert r.returncode == 2 and "missing.yml: --rules: no such file or directory" in r.stderr, r.stderr


def test_rules_and_node_exporter_are_loaded(lab: Path) -> None:
    state = load_state(lab)
    files = [
        str(public_rules("node-mixin") / "node-exporter-alerts.yml"),
        str(public_rules("prometheus-mixin") / "prometheus-alerts.yml"),
    ]
    assert state is not None and state.rules == [*files, str(lab.parent / "manifests" / "team.yaml")], state
    url = state.urls["prometheus"]
    names = alert_names(url)
    assert {"NodeMemoryHighUtilization", "NodeFilesystemAlmostOutOfSpace", "PrometheusRuleFailures"} <= names
    assert {"TeamHostLowMemory", "ChatbotServiceDown"} <= names
    targets = requests.get(f"{url}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
    assert {t["labels"]["job"]: t["health"] for t in targets}.get("node") == "up", targets
    mem = requests.get(f"{url}/api/v1/query", params={"query": "node_memory_MemAvailable_bytes"}, timeout=5).json()
    assert mem["data"]["result"], "node_exporter's memory series are missing"


def test_the_shipped_lab_scenarios_pass_the_checks_before_a_drill(lab: Path) -> None:
    """No false alarm from the alert checks on the lab's own drills (ChatbotMemoryLeak's
    kind-only `container_oom_events_total` branch is one side of an `or`)."""
    state = load_state(lab)
    assert state is not None
    v = run_cli(
        "validate", str(ROOT / "scenarios" / "lab"), "--prometheus-url", state.urls["prometheus"],
        env_extra={"DRILLKIT_LAB_DIR": str(lab)},
    )  # fmt: skip
    assert v.returncode == 0, v.stderr


def test_a_prometheus_restart_keeps_your_rules(lab: Path) -> None:
    state = load_state(lab)
    assert state is not None
    old = state.procs["prometheus"].pid
    stop_proc(state.procs["prometheus"])
    r = run_cli("lab", "up", "--dir", str(lab), timeout=180)
    assert r.returncode == 0 and "prometheus" in r.stdout, f"{r.stdout}\n{r.stderr}"
    again = load_state(lab)
    assert again is not None and again.procs["prometheus"].pid != old
    names = alert_names(again.urls["prometheus"])
    assert {"NodeMemoryHighUtilization", "PrometheusRuleFailures", "TeamHostLowMemory"} <= names, sorted(names)


def test_rules_given_to_a_running_lab_replace_the_old_ones(lab: Path) -> None:
    """Last in this module: it takes the public rules away again."""
    r = run_cli("lab", "up", "--dir", str(lab), "--rules", str(lab.parent / "manifests"), timeout=180)
    assert r.returncode == 0 and "Prometheus reloaded 1 rule file(s)" in r.stdout, f"{r.stdout}\n{r.stderr}"
    state = load_state(lab)
    assert state is not None and state.rules == [str(lab.parent / "manifests" / "team.yaml")]
    names = alert_names(state.urls["prometheus"])
    assert "TeamHostLowMemory" in names and "NodeMemoryHighUtilization" not in names, sorted(names)
