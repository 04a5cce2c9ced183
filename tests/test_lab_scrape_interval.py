"""`drillkit lab up --scrape-interval`: Prometheus (local and kind) scrapes and evaluates at the
interval asked for, with the rules derived for it.

Why: the rules' promtool tests (tests/test_rules_intervals.py) prove the derived rules fire at
15/30/60 s; these prove that what Prometheus actually loads is those rules, at that interval,
and that the lab still becomes ready when two scrapes take half a minute.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from drillkit.lab import kindlab, ruleset
from drillkit.lab.state import load_state
from tests.helpers import run_cli
from tests.test_lab_up import free_block, lab_down


def test_a_bad_interval_is_refused_before_anything_starts(tmp_path: Path) -> None:
    r = run_cli("lab", "up", "--dir", str(tmp_path / "lab"), "--scrape-interval", "1.5s", timeout=60)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "--scrape-interval" in r.stderr and "whole number of seconds from 1s to 5m" in r.stderr, r.stderr
    assert not (tmp_path / "lab").exists(), "nothing is created for a refused option"


def prom(url: str, path: str) -> Any:
    r = requests.get(f"{url}{path}", timeout=5)
    r.raise_for_status()
    return r.json()["data"]


@pytest.mark.integration
def test_lab_up_at_15s_loads_the_derived_rules_and_keeps_its_interval(tmp_path: Path) -> None:
    lab_dir = tmp_path / "lab"
    r = run_cli(
        "lab", "up", "--dir", str(lab_dir), "--base-port", str(free_block()), "--scrape-interval", "15s", timeout=240
    )
    try:
        assert r.returncode == 0, f"lab up --scrape-interval 15s exited {r.returncode}\n{r.stdout}\n{r.stderr}"
        state = load_state(lab_dir)
        assert state is not None and state.scrape_interval == 15
        url = state.urls["prometheus"]
        config = yaml.safe_load(prom(url, "/api/v1/status/config")["yaml"])["global"]
        assert (config["scrape_interval"], config["evaluation_interval"], config["scrape_timeout"]) == (
            "15s",
            "15s",
            "10s",
        ), config
        groups = {g["name"]: g for g in prom(url, "/api/v1/rules")["groups"]}
        assert {g: groups[g]["interval"] for g in ("chatbot", "kubernetes")} == {"chatbot": 15, "kubernetes": 15}
        rules = {rule["name"]: rule for g in groups.values() for rule in g["rules"]}
        assert "[1m]" in rules["ChatbotHigh5xxRatio"]["query"] and rules["ChatbotHigh5xxRatio"]["duration"] == 30, (
            rules["ChatbotHigh5xxRatio"]
        )
        assert not [n for n, rule in rules.items() if rule["health"] != "ok"], rules
        assert (lab_dir / "prometheus" / "chatbot.rules.yml").read_text() == ruleset.rules_at(15)

        again = run_cli("lab", "up", "--dir", str(lab_dir), timeout=60)
        assert again.returncode == 0 and "nothing changed" in again.stdout, again.stdout + again.stderr
        other = run_cli("lab", "up", "--dir", str(lab_dir), "--scrape-interval", "30s", timeout=60)
        assert other.returncode == 2 and "--scrape-interval 15s" in other.stderr, other.stderr
    finally:
        lab_down(lab_dir)


@pytest.mark.parametrize("interval", [1, 30, 60])
def test_kind_prometheus_and_its_rules_follow_the_interval(tmp_path: Path, interval: int) -> None:
    docs = kindlab.manifests(interval_s=interval)
    by_name = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    rules = by_name["ConfigMap", kindlab.RULES_CONFIGMAP]["data"]
    assert rules == {"chatbot.rules.yml": ruleset.rules_at(interval)}
    config = yaml.safe_load(by_name["ConfigMap", "prometheus-config"]["data"]["prometheus.yml"])
    every = ruleset.duration(interval)
    assert config["global"] == {
        "scrape_interval": every,
        "evaluation_interval": every,
        "scrape_timeout": f"{min(interval, 10)}s",
    }
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed")
    (tmp_path / "rules.yml").write_text(rules["chatbot.rules.yml"])
    config["rule_files"] = [str(tmp_path / "rules.yml")]
    for job in config["scrape_configs"]:  # Debian's promtool lacks Kubernetes discovery
        if job.pop("kubernetes_sd_configs", None) is not None:
            job["static_configs"] = [{"targets": ["pod:8000"]}]
        for section, key in (("tls_config", "ca_file"), ("authorization", "credentials_file")):
            if key in job.get(section, {}):  # the pod's ServiceAccount mount, here a file of ours
                (tmp_path / key).write_text("x\n")
                job[section][key] = str(tmp_path / key)
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    r = subprocess.run([promtool, "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True, text=True)
    assert r.returncode == 0 and "SUCCESS: 10 rules found" in r.stdout, r.stdout + r.stderr


def test_kind_rolls_prometheus_when_the_interval_changes() -> None:
    def config_hash(interval: int) -> str:
        prometheus = next(
            d
            for d in kindlab.manifests(interval_s=interval)
            if d["metadata"]["name"] == "prometheus" and d["kind"] == "Deployment"
        )
        return str(prometheus["spec"]["template"]["metadata"]["annotations"][kindlab.CONFIG_HASH])

    assert len({config_hash(1), config_hash(30), config_hash(60)}) == 3
