"""`drillkit coverage` on a reports folder with known answers, and `report index` showing a
drill that is still running as running."""

from __future__ import annotations

import fcntl
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import public_rules, run_cli
from tests.test_history import synthetic_run

RULES = """
groups:
  - name: demo
    rules:
      - alert: DemoExporterDown
        expr: up{job="demo"} == 0
        for: 2s
        labels: {severity: warning}
      - alert: DemoExporterDown
        expr: up{job="demo"} == 0
        for: 1m
        labels: {severity: critical}
      - alert: NeverDrilled
        expr: up{job="demo"} == 2
      - alert: DbDown
        expr: pg_up == 0
        for: 30s
"""


def run(root: Path, name: str, days_ago: float, status: str, alert: str, labels: dict[str, str], incident: str) -> Path:
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=days_ago)
    folder = synthetic_run(root, name, t0, 3.0, status, incident=incident)
    journal = folder / "journal.jsonl"
    events = [json.loads(line) for line in journal.read_text().splitlines()]
    events[0]["scenario"] |= {"alert": alert, "alert_labels": labels}
    journal.write_text("".join(json.dumps(e) + "\n" for e in events))
    return folder


@pytest.fixture
def reports(tmp_path: Path) -> Path:
    root = tmp_path / "reports"
    run(root, "outage-critical", 10, "passed", "DemoExporterDown", {"severity": "critical"}, "service-outage")
    run(root, "outage-any", 5, "failed", "DemoExporterDown", {}, "service-outage")
    run(root, "db-old", 200, "passed", "DbDown", {}, "database")
    run(root, "orphan", 3, "passed", "NoSuchAlert", {}, "high-latency")
    return root


def alerts(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(a["alert"], a["labels"].get("severity", "")): a for a in doc["alerts"]}


def test_coverage_with_known_answers(reports: Path, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yml"
    rules.write_text(RULES)
    r = run_cli("coverage", "--rules", str(rules), "--report-dir", str(reports), "--fail-untested-since", "90d")
    assert r.returncode == 1, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    untested = sorted(line for line in r.stderr.splitlines() if "untested:" in line)
    assert [line.split("untested: ")[1].split(" (")[0] for line in untested] == [
        "DbDown",
        "DemoExporterDown",
        "NeverDrilled",
    ], r.stderr
    doc = json.loads((reports / "coverage.json").read_text())
    got = alerts(doc)
    assert (doc["rules"], doc["drilled"], doc["proven"]) == (4, 3, 2), doc
    critical = got[("DemoExporterDown", "critical")]
    assert [s["scenario"] for s in critical["scenarios"]] == ["outage-any", "outage-critical"]
    assert critical["last_status"] == "failed" and critical["last_time_to_detect"] == pytest.approx(3.0)
    assert critical["proven_at"] is not None and not critical["untested"], critical
    warning = got[("DemoExporterDown", "warning")]
    assert [s["scenario"] for s in warning["scenarios"]] == ["outage-any"], "severity=critical fits no warning rule"
    assert warning["proven_at"] is None and warning["untested"]
    assert got[("NeverDrilled", "")]["scenarios"] == [] and got[("NeverDrilled", "")]["untested"]
    assert got[("DbDown", "")]["proven_at"] is not None and got[("DbDown", "")]["untested"], "proven 200 days ago"
    assert doc["incidents"]["service-outage"] == ["outage-any", "outage-critical"]
    assert doc["incidents"]["database"] == ["db-old"] and doc["incidents"]["memory-leak"] == []
    assert doc["scenarios_without_rule"] == ["orphan"]
    md = (reports / "coverage.md").read_text()
    assert "| NeverDrilled ✗ | - | 0s | none | - | - | never |" in md, md
    assert "| service-outage | outage-any, outage-critical |" in md, md
    assert 'class="untested"><td>NeverDrilled</td>' in (reports / "coverage.html").read_text()


def test_coverage_passes_ci_when_every_alert_was_proven_in_the_window(reports: Path, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yml"
    rules.write_text(RULES.split("      - alert: NeverDrilled")[0].replace("severity: warning", "severity: critical"))
    out = tmp_path / "out"
    args = ("coverage", "--rules", str(rules), "--report-dir", str(reports), "--out", str(out))
    r = run_cli(*args, "--fail-untested-since", "365d")
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    assert "2 of 2 alerting rules proven" in r.stdout, r.stdout  # both tiers now say severity=critical
    assert (out / "coverage.md").exists() and not (reports / "coverage.md").exists()
    r = run_cli(*args, "--fail-untested-since", "1d")
    assert r.returncode == 1, r.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "coverage needs the rules: --prometheus-url URL, --rules FILE_OR_DIR, or both"),
        (("--rules", "missing.yml"), "missing.yml: --rules: no such file or directory"),
        (("--rules", "RULES", "--fail-untested-since", "soon"), "expected a duration like 90s"),
    ],
)
def test_coverage_bad_input_is_one_line(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    rules = tmp_path / "rules.yml"
    rules.write_text(RULES)
    r = run_cli("coverage", *(str(rules) if a == "RULES" else a for a in args), cwd=tmp_path)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_index_shows_a_running_drill_as_running(tmp_path: Path) -> None:
    root = tmp_path / "reports"
    folder = synthetic_run(root, "still-going", datetime.now(UTC), 3.0)
    journal = folder / "journal.jsonl"
    lines = [line for line in journal.read_text().splitlines() if '"finished"' not in line]
    journal.write_text("\n".join(lines) + "\n")
    with open(journal, "a") as held:  # as the live drill holds it
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        r = run_cli("report", "index", str(root))
        assert r.returncode == 0, r.stderr
        assert json.loads((root / "index.json").read_text())["runs"][0]["status"] == "running"
    r = run_cli("report", "index", str(root))
    assert json.loads((root / "index.json").read_text())["runs"][0]["status"] == "inconclusive", "no live writer"


def test_the_coverage_example_comes_from_real_drills() -> None:
    """docs/examples/coverage/ (scripts/coverage-example.sh): the five lab drills against a lab
    that also loaded the node-exporter and Prometheus mixins (scripts/fetch-public-rules.sh):
    every rendered mixin rule is listed (none drilled), each lab drill proves its own alert."""
    doc = json.loads((Path(__file__).parent.parent / "docs" / "examples" / "coverage" / "coverage.json").read_text())
    for name, file in (("node-mixin", "node-exporter-alerts.yml"), ("prometheus-mixin", "prometheus-alerts.yml")):
        rendered = yaml.safe_load((public_rules(name) / file).read_text())
        rules = [r for g in rendered["groups"] for r in g["rules"] if "alert" in r]
        listed = [a for a in doc["alerts"] if a["file"].endswith(file)]  # the lab's copy may be numbered
        assert sorted(a["alert"] for a in listed) == sorted(r["alert"] for r in rules), file
        assert all(not a["scenarios"] and a["proven_at"] is None for a in listed), file
    proven = {a["alert"]: [s["scenario"] for s in a["scenarios"]] for a in doc["alerts"] if a["proven_at"]}
    assert proven == {
        "ChatbotServiceDown": ["lab-service-outage"],
        "ChatbotDatabaseConnectionsExhausted": ["lab-database-exhaustion"],
        "ChatbotHighLatency": ["lab-high-latency"],
        "ChatbotAuthFailures": ["lab-auth-failures"],
        "ChatbotMemoryLeak": ["lab-memory-leak"],
    }, proven
    assert doc["scenarios_without_rule"] == [] and "/tmp" not in json.dumps(doc)
