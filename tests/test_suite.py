"""Suites: loading files, folders and suite files; the suite's exit code; the merged JUnit and
summary; and a drill that waits for a steady state that never comes (exit 5, retry later)."""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from drillkit.errors import ScenarioError
from drillkit.report import SummaryRow, render_summary, summary_row
from drillkit.scenario import scenario_paths
from drillkit.suite import load_suite, suite_exit_code
from tests.helpers import report_json, run_cli, run_folder, write_scenario
from tests.promfixture import PromEnv
from tests.test_policy_journal_report import fixed_journal

DATA = Path(__file__).parent / "data"


def _scenario(folder: Path, name: str, **changes: object) -> Path:
    data = yaml.safe_load((DATA / "exporter-kill.yaml").read_text())
    data["name"] = name
    data.update(changes)
    folder.mkdir(parents=True, exist_ok=True)
    return write_scenario(folder / f"{name}.yaml", data)


def test_files_folders_and_suite_files_keep_their_order(tmp_path: Path) -> None:
    _scenario(tmp_path / "lab", "b-drill")
    _scenario(tmp_path / "lab", "a-drill")
    c = _scenario(tmp_path, "c-drill")
    suite = tmp_path / "lab" / "q.suite.yaml"  # inside a folder: not taken for a scenario
    suite.write_text(
        "stop_on_failure: true\nsettle_within: 45s\ndrills:\n"
        "  - scenario: b-drill.yaml\n    overrides: {detection: {within: 5s}, response: {acknowledge: command}}\n"
        "  - scenario: ../c-drill.yaml\n"
    )
    loaded = load_suite([str(c), str(tmp_path / "lab"), str(suite)])
    assert [d.scenario.name for d in loaded.drills] == ["c-drill", "a-drill", "b-drill", "b-drill", "c-drill"]
    overridden = loaded.drills[3].scenario
    assert overridden.detection.within == 5 and overridden.response.acknowledge.value == "command"
    assert overridden.detection.alert == "DemoExporterDown", "overrides merge, they do not replace the mapping"
    assert loaded.drills[1].scenario.detection.within == 30
    assert loaded.stop_on_failure and loaded.settle_within == 45
    assert suite not in scenario_paths([str(tmp_path / "lab")])


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("drills:\n  - scenario: nope.yaml\n", r"q.suite.yaml:2: drills\[0\].scenario: no such scenario file"),
        ("drills:\n  - scenario: a.yaml\n    overides: {}\n", r"q.suite.yaml:3: drills\[0\].overides: unknown key"),
        (
            "drills:\n  - scenario: a.yaml\n    overrides:\n      detection: {within: soon}\n",
            r"q.suite.yaml:4: drills\[0\].overrides.detection.within: expected a duration",
        ),
        (
            "drills:\n  - scenario: a.yaml\n    overrides:\n      detection: {within: 5s}\n      guardrails: []\n",
            r"q.suite.yaml:5: drills\[0\].overrides.guardrails: expected a mapping",
        ),
        ("stop_on_failure: maybe\ndrills: []\n", r"q.suite.yaml:1: stop_on_failure: expected true or false"),
    ],
)
def test_bad_suite_files_are_located(tmp_path: Path, text: str, error: str) -> None:
    _scenario(tmp_path, "a")
    (tmp_path / "q.suite.yaml").write_text(text)
    with pytest.raises(ScenarioError, match=error):
        load_suite([str(tmp_path / "q.suite.yaml")])


@pytest.mark.parametrize(
    ("codes", "expected"),
    [
        ([], 0),
        ([0, 0], 0),
        ([0, 5], 5),  # not started: retry later
        ([5, 1], 1),  # a missed target outranks a drill that could not start
        ([1, 3], 3),  # Prometheus or the cluster unavailable: broken, not a finding
        ([4, 1], 4),
        ([1, 130, 3], 130),
        ([0, 42], 3),
    ],
)
def test_suite_exit_code_is_the_most_serious(codes: list[int], expected: int) -> None:
    assert suite_exit_code(codes) == expected


def test_merged_junit_and_summary(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    t0 = datetime(2026, 11, 29, 9, 30, tzinfo=UTC)
    passed = reports / "2026-11-29T093000Z-exporter-kill-0123abcd"
    fixed_journal(passed, t0)
    rows = [
        summary_row("exporter-kill", "a.yaml", passed, "passed", 0),
        SummaryRow.not_run("b-drill", "B", "P3", "b.yaml", "not run: stop at first failure"),
    ]
    suite = reports / "suite"
    suite.mkdir()
    written = render_summary(suite, rows, 1)
    assert {p.name for p in written} == {"summary.md", "summary.html", "summary.json", "junit.xml"}
    root = ET.parse(suite / "junit.xml").getroot()
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == ["exporter-kill", "b-drill"]
    cases = [c.get("name") for c in suites[0].findall("testcase")]
    assert cases == ["drill", "detect", "acknowledge", "mitigate", "resolve", "status_page", "status_updates"]
    assert suites[1].find("testcase/skipped") is not None
    md = (suite / "summary.md").read_text()
    assert "# Drill suite: 1 of 2 passed" in md and "../2026-11-29T093000Z-exporter-kill-0123abcd/report.md" in md
    html = (suite / "summary.html").read_text()
    assert 'class="status status-passed"' in html and 'class="status status-not-run"' in html
    summary = json.loads((suite / "summary.json").read_text())
    assert [d["status"] for d in summary["drills"]] == ["passed", "not-run"] and summary["exit_code"] == 1


@pytest.mark.integration
def test_a_steady_state_that_never_comes_is_exit_5_after_the_settle_wait(prom_env: PromEnv, tmp_path: Path) -> None:
    prom_env.ensure_exporter()
    prom_env.wait_up()
    pid = prom_env.exporter_pid()
    data = prom_env.scenario(steady_state=[{"name": "two exporters", "expr": 'up{job="demo"}', "expect": "== 2"}])
    path = write_scenario(tmp_path / "d.yaml", data)
    t0 = time.monotonic()
    r = run_cli(
        "run", str(path), "--prometheus-url", prom_env.url, "--report-dir", str(tmp_path / "r"), "--settle-timeout", "3"
    )
    waited = time.monotonic() - t0
    assert r.returncode == 5, f"not started is exit 5 (retry later), not 3:\n{r.stderr}"
    assert waited >= 3, f"gave up after {waited:.1f}s, before --settle-timeout 3"
    rep = report_json(run_folder(tmp_path / "r"))
    assert rep["status"] == "not-started" and "steady state does not hold" in rep["reason"], rep["reason"]
    assert prom_env.exporter_pid() == pid, "nothing may be injected"
