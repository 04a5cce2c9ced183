"""The lab's alert rules must load in Prometheus and behave as their promtool unit tests say.

Drills time detection by these alerts, so a rule that silently never fires (a renamed metric,
a broken ratio) would make every drill of that incident fail for the wrong reason.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

RULES_DIR = Path(__file__).resolve().parents[1] / "drillkit" / "lab" / "rules"
PROMTOOL = shutil.which("promtool")

pytestmark = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], cwd=RULES_DIR, capture_output=True, text=True, timeout=60, check=False)


def test_rules_are_valid() -> None:
    result = promtool("check", "rules", "chatbot.rules.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 10 rules found" in result.stdout


def test_rule_unit_tests_pass() -> None:
    result = promtool("test", "rules", "chatbot.rules.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_rule_is_unit_tested_and_labelled() -> None:
    groups = yaml.safe_load((RULES_DIR / "chatbot.rules.yml").read_text())["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    tests = yaml.safe_load((RULES_DIR / "chatbot.rules.test.yml").read_text())["tests"]
    cases = [case for test in tests for case in test["alert_rule_test"]]
    for rule in rules:
        name = rule["alert"]
        # the graded answer (severity, incident type) must not ride on the page a trainee reads
        assert rule["labels"] == {"team": "chat"}, f"{name}: {rule['labels']}"
        assert {"summary", "runbook"} <= set(rule["annotations"]), name
        mine = [case for case in cases if case["alertname"] == name]
        assert any(case["exp_alerts"] for case in mine), f"{name}: no firing test"
        assert any(not case["exp_alerts"] for case in mine), f"{name}: no quiet test"
