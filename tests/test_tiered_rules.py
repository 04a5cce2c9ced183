"""Detection by rule and labels, on a real Prometheus and Alertmanager.

Several rules share one alert name (a warning `for: 10s` / critical `for: 1m` pair, as
kube-prometheus and the node-exporter mixin ship them): `detection.labels` picks the rule,
and the detection time is that rule's own first firing sample. A second target of the same job
is down from the start, so the same alert name already fires for another label set.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from drillkit.alertmanager import Alertmanager, NotificationWatch
from drillkit.errors import PreflightError
from drillkit.lab.services import PrometheusSetup, Service, free_port, start_alertmanager, start_prometheus
from drillkit.matchers import LabelMatcher, parse_labels
from drillkit.prometheus import AlertRule, choose
from tests.helpers import report_json, run_cli, run_folder, write_scenario

HERE = Path(__file__).parent
RULES = """
groups:
  - name: tiered
    interval: 1s
    rules:
      - alert: TierDown
        expr: up{job="tier"} == 0
        for: 10s
        labels: {severity: warning}
      - alert: TierDown
        expr: up{job="tier"} == 0
        for: 1m
        labels: {severity: critical}
"""


@dataclass
class Tier:
    prom: Service
    am: Service
    pidfile: Path
    port: int
    dead: str  # the instance that is down from the start

    def restart(self) -> list[str]:
        return [sys.executable, str(HERE / "fake_exporter.py"), str(self.port), str(self.pidfile)]

    def scenario(self, labels: dict[str, str], within: str = "90s") -> dict[str, Any]:
        return {
            "name": "tier-down",
            "title": "Tier exporter killed",
            "incident": "service-outage",
            "severity": "P2",
            "target": {"local": {}},
            "steady_state": [
                {"name": "exporter up", "expr": f'up{{job="tier",instance="127.0.0.1:{self.port}"}}', "expect": "== 1"}
            ],
            "faults": [{"kind": "process-kill", "pidfile": str(self.pidfile), "restart": self.restart()}],
            "detection": {"alert": "TierDown", "labels": labels, "within": within},
            "response": {"acknowledge": "auto"},
            "recovery": {"action": "revert", "within": "150s", "verify_within": "30s"},
        }

    def query(self, expr: str) -> list[dict[str, Any]]:
        r = requests.get(f"{self.prom.url}/api/v1/query", params={"query": expr}, timeout=5)
        return list(r.json()["data"]["result"])


@pytest.fixture(scope="module")
def tier(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tier]:
    work = tmp_path_factory.mktemp("tier")
    (work / "rules.yml").write_text(RULES)
    port, dead = free_port(), f"127.0.0.1:{free_port()}"
    am = start_alertmanager(work / "alertmanager")
    prom = start_prometheus(
        work / "prometheus",
        PrometheusSetup(
            scrape={"tier": [f"127.0.0.1:{port}", dead]},
            rule_files=[work / "rules.yml"],
            alertmanager=am.url.removeprefix("http://"),
        ),
    )
    env = Tier(prom, am, work / "exporter.pid", port, dead)
    first = subprocess.Popen(
        env.restart(), start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 40
        while not env.query(f'ALERTS{{alertname="TierDown",alertstate="firing",instance="{dead}"}}'):
            assert time.monotonic() < deadline, "the dead instance's warning never fired"
            time.sleep(0.5)
        yield env
    finally:
        prom.stop()
        am.stop()
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(env.pidfile.read_text()), 9)
        first.kill()
        first.wait()


@pytest.mark.parametrize(
    ("raw", "labels", "hit"),
    [
        ({"severity": "critical"}, {"severity": "critical"}, True),
        ({"severity": "critical"}, {"severity": "warning"}, False),
        ({"severity": "!=warning"}, {"severity": "critical"}, True),
        ({"severity": "!=warning"}, {}, True),
        ({"instance": "=~db-.*"}, {"instance": "db-1"}, True),
        ({"instance": "=~db-.*"}, {"instance": "xdb-1"}, False),  # anchored, as in PromQL
        ({"instance": "!~db-.*"}, {"instance": "web-1"}, True),
        ({"path": "=!=x"}, {"path": "!=x"}, True),  # a leading = forces equality
    ],
)
def test_label_matchers(raw: dict[str, str], labels: dict[str, str], hit: bool) -> None:
    matchers = parse_labels(raw)
    assert all(m.matches(labels) for m in matchers) is hit, f"{[str(m) for m in matchers]} on {labels}"


def test_rule_chosen_by_static_labels_and_named_when_none_fits() -> None:
    warn = AlertRule("TierDown", 10, "up == 0", {"severity": "warning"}, "g", None, 1)
    crit = AlertRule("TierDown", 60, "up == 0", {"severity": "critical"}, "g", None, 1)
    other = AlertRule("TierUp", 0, "up == 1", {}, "g", None, 1)
    target = choose([warn, crit, other], "TierDown", parse_labels({"severity": "critical"}), "here")
    assert target.rules == (crit,) and target.fires_after == 60
    both = choose([warn, crit], "TierDown", (), "here")
    assert both.rule is warn, "without labels the first to fire is the reference"
    assert both.rule_of({"alertname": "TierDown", "severity": "critical"}) is crit
    with pytest.raises(PreflightError, match=r"none whose labels fit detection.labels \{severity=\"page\"\}"):
        choose([warn, crit], "TierDown", parse_labels({"severity": "page"}), "here")
    with pytest.raises(PreflightError, match="did you mean 'TierDown'"):
        choose([warn, crit], "TierDwn", (), "here")


@pytest.mark.integration
def test_tiered_pair_detects_on_the_critical_rule_to_the_ms(tier: Tier, tmp_path: Path) -> None:
    labels = {"severity": "critical", "instance": f"127.0.0.1:{tier.port}"}
    path = write_scenario(tmp_path / "drill.yaml", tier.scenario(labels))
    reports = tmp_path / "reports"
    r = run_cli(
        "run",
        str(path),
        "--prometheus-url",
        tier.prom.url,
        "--alertmanager-url",
        tier.am.url,
        "--report-dir",
        str(reports),
        timeout=240,
    )
    assert r.returncode == 0, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    rep = report_json(run_folder(reports))
    events = {e["kind"]: e for e in rep["events"]}
    injected = datetime.fromisoformat(events["injected"]["at"]).timestamp()
    detected = datetime.fromisoformat(events["detected"]["at"]).timestamp()
    q = f'ALERTS{{alertname="TierDown",alertstate="firing",severity="critical",instance="127.0.0.1:{tier.port}"}}[5m]'
    stamps = [float(t) for s in tier.query(q) for t, _ in s["values"] if float(t) >= injected]
    assert stamps, "Prometheus recorded no critical firing sample after the injection"
    assert abs(detected - min(stamps)) < 0.005, (
        f"detected at {detected:.3f}, Prometheus's first critical firing sample at {min(stamps):.3f}: "
        f"{abs(detected - min(stamps)) * 1000:.1f} ms apart"
    )
    assert detected - injected >= 60, f"detected {detected - injected:.1f}s after injection: the warning's for: 10s?"
    assert events["detected"]["for_seconds"] == 60
    notified = datetime.fromisoformat(events["notified"]["at"]).timestamp()
    assert notified >= detected, f"the page counted at {notified:.3f}, before the critical fired at {detected:.3f}"


@pytest.mark.integration
def test_without_a_severity_the_first_tier_to_fire_detects(tier: Tier, tmp_path: Path) -> None:
    deadline = time.monotonic() + 60  # the previous drill's alerts resolve first
    while tier.query(f'ALERTS{{alertname="TierDown",instance="127.0.0.1:{tier.port}"}}'):
        assert time.monotonic() < deadline, "the live instance's TierDown never resolved"
        time.sleep(0.5)
    path = write_scenario(tmp_path / "drill.yaml", tier.scenario({"instance": f"127.0.0.1:{tier.port}"}, "30s"))
    reports = tmp_path / "reports"
    r = run_cli("run", str(path), "--prometheus-url", tier.prom.url, "--report-dir", str(reports), timeout=180)
    assert r.returncode == 0, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    events = {e["kind"]: e for e in report_json(run_folder(reports))["events"]}
    took = (
        datetime.fromisoformat(events["detected"]["at"]) - datetime.fromisoformat(events["injected"]["at"])
    ).total_seconds()
    assert 10 <= took < 20 and events["detected"]["for_seconds"] == 10, (took, events["detected"])


@pytest.mark.integration
def test_refusal_names_the_label_set_already_firing(tier: Tier, tmp_path: Path) -> None:
    deadline = time.monotonic() + 60  # the live instance's alerts from a drill before resolve
    while tier.query(f'ALERTS{{alertname="TierDown",instance="127.0.0.1:{tier.port}"}}'):
        assert time.monotonic() < deadline, "the live instance's TierDown never resolved"
        time.sleep(0.5)
    path = write_scenario(tmp_path / "drill.yaml", tier.scenario({"severity": "warning"}))
    r = run_cli("run", str(path), "--prometheus-url", tier.prom.url, "--report-dir", str(tmp_path / "reports"))
    assert r.returncode == 5, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    assert f'instance="{tier.dead}"' in r.stderr + r.stdout, r.stderr
    assert f'detection.labels to the drill\'s own, e.g. instance: "!={tier.dead}"' in r.stderr + r.stdout, r.stderr


@pytest.mark.integration
def test_notified_counts_only_matching_alerts_started_after_injection(tier: Tier) -> None:
    """Alerts posted straight to the real Alertmanager: one of the same name and labels that
    started before the injection, one with other labels after it, then the drill's own."""
    am = Alertmanager(tier.am.url)
    now = datetime.now(UTC)

    def post(labels: dict[str, str], starts: datetime) -> None:
        alert = {"labels": {"alertname": "PagedAlert", **labels}, "startsAt": starts.isoformat()}
        requests.post(f"{tier.am.url}/api/v2/alerts", json=[alert], timeout=5).raise_for_status()

    matchers = (LabelMatcher("severity", "=", "critical"), LabelMatcher("instance", "=~", "db-.*"))
    watch = NotificationWatch(am, "PagedAlert", matchers, since=now)
    post({"severity": "critical", "instance": "db-1"}, now - timedelta(minutes=5))
    post({"severity": "warning", "instance": "db-2"}, now + timedelta(seconds=1))
    time.sleep(0.3)
    assert watch.poll() is None, "an alert that started before the injection, or with other labels, is no page"
    post({"severity": "critical", "instance": "db-2"}, now + timedelta(seconds=2))
    time.sleep(0.3)
    assert watch.poll() is not None
    am.close()
