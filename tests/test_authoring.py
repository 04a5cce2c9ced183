"""Authoring checks: `--dry-run` and `validate --prometheus-url` run every PromQL expression
against a real Prometheus and report rejected queries and empty probes as located lines;
`drillkit schema` describes fields in words, never in Python reprs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from drillkit.cli import main
from tests.helpers import run_cli
from tests.promfixture import PromEnv

BAD = """\
name: exporter-kill
title: Demo exporter killed
severity: P2
target:
  local: {}
guardrails:
  abort_when:
    - expr: sum(up{job="demo"}) == == 0
steady_state:
  - name: exporter up
    expr: up{job="demo"}
    expect: "== 1"
  - name: typo in the metric
    expr: upp{job="demo"}
    expect: "== 1"
  - name: unbalanced
    expr: rate(up{job="demo"}[5s]
    expect: ">= 0"
faults:
  - kind: process-kill
    pidfile: PIDFILE
detection:
  alert: DemoExporterDown
"""


def _expected(path: Path) -> list[tuple[str, str]]:
    return [
        (f"{path}:8: guardrails.abort_when[0].expr: ", "Prometheus rejects this PromQL: bad_data: "),
        (f"{path}:14: steady_state[1].expr: ", "returns no data now"),
        (f"{path}:17: steady_state[2].expr: ", "Prometheus rejects this PromQL: bad_data: "),
    ]


def _check(stderr: str, path: Path) -> None:
    located = [line for line in stderr.splitlines() if line.startswith(str(path))]
    assert len(located) == 3, stderr
    for line, (where, what) in zip(located, _expected(path), strict=True):
        assert line.startswith(where + what), f"expected {where}{what}…, got {line}"
    assert "HTTP Status Code" not in stderr and "b'{" not in stderr and "Traceback" not in stderr, stderr


@pytest.mark.integration
def test_dry_run_runs_every_promql_expression(prom_env: PromEnv, tmp_path: Path) -> None:
    prom_env.ensure_exporter()
    prom_env.wait_up()
    path = tmp_path / "bad.yaml"
    path.write_text(BAD.replace("PIDFILE", str(prom_env.pidfile)))
    r = run_cli("run", str(path), "--dry-run", "--prometheus-url", prom_env.url, "--report-dir", str(tmp_path / "r"))
    assert r.returncode == 2, r.stderr
    _check(r.stderr, path)
    assert not (tmp_path / "r").exists()


@pytest.mark.integration
def test_validate_with_prometheus_runs_every_promql_expression(prom_env: PromEnv, tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD.replace("PIDFILE", str(prom_env.pidfile)))
    r = CliRunner().invoke(main, ["validate", str(path), "--prometheus-url", prom_env.url])
    assert r.exit_code == 2, r.output
    _check(r.stderr, path)
    good = tmp_path / "good.yaml"
    fixed = re.sub(r"  - name: typo.*?(?=faults:)", "", BAD, flags=re.S).replace("== == 0", "== 0")
    good.write_text(fixed.replace("PIDFILE", str(prom_env.pidfile)))
    r = CliRunner().invoke(main, ["validate", str(good), "--prometheus-url", prom_env.url])
    assert r.exit_code == 0, r.output + r.stderr


def test_schema_descriptions_are_written_for_people() -> None:
    schema = json.loads(CliRunner().invoke(main, ["schema"]).output)
    found: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("description"), str):
                found.append(node["description"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(schema)
    reprs = [d for d in found if re.search(r"\w+\(\w+: '|<factory>|<\w+\.\w+: ", d)]
    assert not reprs, reprs
    props = schema["properties"]
    for key in ("name", "severity", "steady_state", "detection", "target", "description"):
        assert props[key].get("description"), f"{key} has no description"
