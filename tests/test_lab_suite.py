"""A suite against the real lab: three drills back to back through one `drillkit run`, the middle
one failing (its detection target overridden to 1 s in the suite file). No test-side waiting
between drills: each drill waits for the previous alert to resolve and its steady state to hold.
One exit code (1), one merged JUnit file (parsed), one summary."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.helpers import run_cli
from tests.test_lab_e2e import Lab, lab, scenario_for  # noqa: F401 - `lab` is the module's fixture

pytestmark = pytest.mark.integration


def test_three_drills_back_to_back_one_failing(lab: Lab) -> None:  # noqa: F811
    for name in ("outage", "high-latency", "database-exhaustion"):
        scenario_for(lab, name)
    suite = lab.work / "quarterly.suite.yaml"
    suite.write_text(
        "drills:\n"
        "  - scenario: scenarios/outage.yaml\n"
        "  - scenario: scenarios/high-latency.yaml\n"
        "    overrides: {detection: {within: 1s}}  # p95 cannot page that fast: a missed target\n"
        "  - scenario: scenarios/database-exhaustion.yaml\n"
    )
    r = run_cli("run", suite.name, "--report-dir", "reports", cwd=lab.work, timeout=600)
    assert r.returncode == 1, f"a missed target is the suite's exit code 1, got {r.returncode}:\n{r.stderr}"
    out = r.stdout.strip().splitlines()
    folder = lab.work / out[-1]
    assert [line.split()[0] for line in out[:3]] == ["passed", "failed", "passed"], r.stdout
    assert "not started" not in r.stderr, f"a drill refused to start despite the settle wait:\n{r.stderr}"

    root = ET.parse(folder / "junit.xml").getroot()
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    assert list(suites) == ["lab-service-outage", "lab-high-latency", "lab-database-exhaustion"]
    for name, s in suites.items():
        cases = {c.get("name"): c for c in s.findall("testcase")}
        assert {"drill", "detect", "acknowledge", "mitigate", "resolve"} <= set(cases), (name, list(cases))
        failed = {n for n, c in cases.items() if c.find("failure") is not None}
        expected = {"drill", "detect"} if name == "lab-high-latency" else set()
        assert failed == expected, f"{name}: failing testcases {failed}, expected {expected}"
    summary = json.loads((folder / "summary.json").read_text())
    assert [d["status"] for d in summary["drills"]] == ["passed", "failed", "passed"]
    md = (folder / "summary.md").read_text()
    assert "# Drill suite: 2 of 3 passed" in md and "Time to detect" in md, md
    for d in summary["drills"]:
        assert (Path(d["folder"]) / "report.html").exists() or (lab.work / d["folder"] / "report.html").exists()
    assert "(retry later)" not in md
