"""Checks before the drill, against a real Prometheus: each bad scenario gets its one
`FILE:LINE: detection.…:` line from `validate --prometheus-url` and from `run --dry-run`."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from drillkit.lab.services import PrometheusSetup, Service, free_port, start_prometheus
from drillkit.promql import Output, or_branches, output, selectors
from tests.helpers import run_cli, write_scenario

pytestmark = pytest.mark.integration

RULES = """
groups:
  - name: checks
    interval: 1s
    rules:
      - alert: ChkDown
        expr: up{job="chk"} == 0
        for: 5s
        labels: {severity: critical}
      - alert: ChkAggregated
        expr: sum by (job) (up{job="chk"}) == 0
        for: 5s
      - alert: ChkNoSeries
        expr: sum by (job) (rate(chk_requests_missing_total[1m])) > 0
        for: 5s
      - alert: ChkSlow
        expr: up{job="chk"} == 0
        for: 10m
      - alert: ChkEitherBranch
        expr: |
          up{job="chk"} == 0
          or
          max by (pod) (increase(chk_oom_events_total[30s])) > 0
        for: 5s
"""


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    work = tmp_path_factory.mktemp("checks")
    (work / "rules.yml").write_text(RULES)
    svc = start_prometheus(
        work / "prometheus",
        PrometheusSetup(scrape={"chk": [f"127.0.0.1:{free_port()}"]}, rule_files=[work / "rules.yml"]),
    )
    try:
        deadline = time.monotonic() + 30
        while not requests.get(f"{svc.url}/api/v1/series", params={"match[]": 'up{job="chk"}'}, timeout=5).json()[
            "data"
        ]:
            assert time.monotonic() < deadline, "Prometheus never scraped its target"
            time.sleep(0.3)
        yield svc
    finally:
        svc.stop()


@pytest.fixture
def victim(tmp_path: Path) -> Iterator[Path]:
    """A process for the dry run's preflight to find (nothing is signalled in a dry run)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    pidfile = tmp_path / "victim.pid"
    pidfile.write_text(str(proc.pid))
    yield pidfile
    proc.kill()
    proc.wait()


def scenario(pidfile: Path, detection: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "chk",
        "title": "Check",
        "severity": "P2",
        "target": {"local": {}},
        "steady_state": [{"name": "scraped", "expr": 'up{job="chk"}', "expect": ">= 0"}],
        "faults": [{"kind": "process-kill", "pidfile": str(pidfile), "signal": "SIGSTOP"}],
        "detection": detection,
    }


def line_of(path: Path, needle: str) -> int:
    lines = path.read_text().splitlines()
    return next(i for i, text in enumerate(lines, start=1) if needle in text)


BAD = [
    ({"alert": "ChkDwn"}, "  alert: ChkDwn", "detection.alert", "did you mean 'ChkDown'"),
    (
        {"alert": "ChkDown", "labels": {"severity": "warning"}},
        "  labels:",
        "detection.labels",
        'none whose labels fit detection.labels {severity="warning"}',
    ),
    (
        {"alert": "ChkNoSeries"},
        "  alert: ChkNoSeries",
        "detection.alert",
        "selects chk_requests_missing_total, which has no series in the last 1h",
    ),
    (
        {"alert": "ChkAggregated", "labels": {"instance": "=~127.*"}},
        "    instance:",
        "detection.labels.instance",
        "never carry instance: its top-level aggregation keeps job",
    ),
    (
        {"alert": "ChkDown", "labels": {"namespace": "chatbot"}},
        "    namespace:",
        "detection.labels.namespace",
        "no series rule ChkDown selects has a namespace label (they have instance, job)",
    ),
    (
        {"alert": "ChkSlow", "within": "5m"},
        "  within:",
        "detection.within",
        "5m is shorter than rule ChkSlow's for: 10m plus one evaluation interval (1.00s)",
    ),
]


@pytest.mark.parametrize(("detection", "needle", "key", "message"), BAD, ids=[b[2] + ":" + b[3][:20] for b in BAD])
def test_each_check_fails_a_bad_scenario_with_one_located_line(
    prom: Service, victim: Path, tmp_path: Path, detection: dict[str, Any], needle: str, key: str, message: str
) -> None:
    path = write_scenario(tmp_path / "bad.yaml", scenario(victim, detection))
    where = f"{path}:{line_of(path, needle)}: {key}: "
    v = run_cli("validate", str(path), "--prometheus-url", prom.url)
    assert v.returncode == 2, f"validate said ok:\n{v.stdout}{v.stderr}"
    hits = [ln for ln in v.stderr.splitlines() if ln.startswith(where)]
    assert len(hits) == 1 and message in hits[0], f"wanted one line {where}…{message}, got:\n{v.stderr}"
    d = run_cli("run", str(path), "--dry-run", "--prometheus-url", prom.url, "--report-dir", str(tmp_path / "r"))
    assert d.returncode == 2, f"dry run said ok:\n{d.stdout}{d.stderr}"
    assert any(ln.startswith(where) and message in ln for ln in (d.stdout + d.stderr).splitlines()), d.stderr
    assert "Traceback" not in v.stderr + d.stderr


def test_a_metric_missing_from_one_branch_of_or_does_not_stop_the_alert(
    prom: Service, victim: Path, tmp_path: Path
) -> None:
    path = write_scenario(tmp_path / "or.yaml", scenario(victim, {"alert": "ChkEitherBranch", "within": "1m"}))
    v = run_cli("validate", str(path), "--prometheus-url", prom.url)
    assert v.returncode == 0, f"the up branch can fire without chk_oom_events_total:\n{v.stderr}"


def test_a_good_scenario_passes_and_the_plan_shows_rule_for_and_matchers(
    prom: Service, victim: Path, tmp_path: Path
) -> None:
    detection = {"alert": "ChkDown", "labels": {"severity": "critical", "instance": "=~127\\..*"}, "within": "1m"}
    path = write_scenario(tmp_path / "good.yaml", scenario(victim, detection))
    v = run_cli("validate", str(path), "--prometheus-url", prom.url)
    assert v.returncode == 0, v.stderr
    d = run_cli("run", str(path), "--dry-run", "--prometheus-url", prom.url, "--report-dir", str(tmp_path / "r"))
    out = d.stdout + d.stderr
    assert d.returncode == 0, out
    assert "alert rule ChkDown (group checks in " in out and "for: 5.00s" in out, out
    assert 'alert label matchers: {instance=~"127\\\\..*", severity="critical"}' in out, out


@pytest.mark.parametrize(
    ("expr", "sels", "shape"),
    [
        ('up{job="a"} == 0', ['up{job="a"}'], Output("series")),
        ("sum by (a, b) (rate(x_total[5m])) > 1", ["x_total"], Output("by", ("a", "b"))),
        ("sum(rate(x[1m])) by (a) / sum(rate(y[1m])) BY (a)", ["x", "y"], Output("by", ("a",))),
        ("100 * (1 - avg without (cpu) (rate(n{mode='idle'}[2m])))", ["n{mode='idle'}"], Output("without", ("cpu",))),
        ("(a / b < 10) and ON (instance) (rate(c[1m]) > 5)", ["a", "b", "c"], Output("series")),
        ('absent(up{job="x"})', ['up{job="x"}'], Output("absent", ("job",))),
        ('label_replace(up, "x", "$1", "job", "(.*)")', ["up"], None),
        ("count(x) # by (not a comment's label)", ["x"], Output("by", ())),
    ],
)
def test_promql_reading(expr: str, sels: list[str], shape: Output | None) -> None:
    assert selectors(expr) == sels
    assert output(expr) == shape


@pytest.mark.parametrize(
    ("expr", "branches"),
    [
        ("a > 1", ["a > 1"]),
        ("a > 1 or b", ["a > 1", "b"]),
        ("(a > 1) OR ((b or c))", ["a > 1", "b", "c"]),
        ("(a or b) > 1", ["(a or b) > 1"]),  # not a top-level union: both are needed
        ('a{x="or"} or on() b', ['a{x="or"}', "on() b"]),
    ],
)
def test_or_branches(expr: str, branches: list[str]) -> None:
    assert or_branches(expr) == branches
