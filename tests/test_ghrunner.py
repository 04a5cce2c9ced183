"""The local workflow runner's `${{ }}` evaluation (tests/ghrunner.py) answers as GitHub does for
the expressions the workflows use: it decides which steps tests/test_workflow_history.py runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.ghrunner import Evaluator, ExpressionError, Runner, parse_outputs

CONTEXTS: dict[str, Any] = {
    "inputs": {"owner": "", "scenarios": "a b", "fail_on_regression": True},
    "vars": {},
    "steps": {"suite": {"outputs": {"folder": "/r/x"}, "outcome": "failure"}, "pages": {"outcome": "success"}},
    "needs": {"drills": {"result": "failure", "outputs": {"pages": "true"}}},
    "github": {"workspace": "/w"},
}


def evaluate(text: str, failed: bool = False) -> Any:
    def status(fn: str) -> bool:
        return {"always": True, "success": not failed, "failure": failed, "cancelled": False}[fn]

    return Evaluator(CONTEXTS, status).evaluate(text)


@pytest.mark.parametrize(
    ("expr", "failed", "expected"),
    [
        ("inputs.owner || 'sre-oncall'", False, "sre-oncall"),
        ("inputs.scenarios || 'scenarios/lab/'", False, "a b"),
        ("inputs.fail_on_regression || vars.DRILLS_FAIL_ON_REGRESSION", False, True),
        ("vars.DRILLS_FAIL_ON_REGRESSION", False, None),
        ("always() && steps.suite.outputs.folder != ''", True, True),
        ("always() && steps.nothing.outputs.folder != ''", True, False),
        ("!cancelled() && needs.drills.outputs.pages == 'true'", False, True),
        ("always() && steps.pages.outcome == 'SUCCESS'", False, True),  # strings compare ignoring case
        ("failure()", True, True),
        ("success() && (steps.suite.outcome == 'failure')", True, False),
        ("'it''s'", False, "it's"),
    ],
)
def test_expressions(expr: str, failed: bool, expected: Any) -> None:
    assert evaluate(expr, failed) == expected


@pytest.mark.parametrize("expr", ["secrets.TOKEN", "fromJSON('{}')", "inputs.owner ==", "(always()", "a ? b"])
def test_what_the_runner_cannot_evaluate_is_an_error(expr: str) -> None:
    with pytest.raises(ExpressionError):
        evaluate(expr)


def test_an_if_without_a_status_function_means_success_and(tmp_path: Path) -> None:
    runner = Runner({}, tmp_path, tmp_path, "1", {})
    assert runner.condition("steps.suite.outputs.folder != ''", CONTEXTS, lambda fn: fn != "success") is False
    assert runner.condition("${{ always() && steps.suite.outputs.folder != '' }}", CONTEXTS, lambda fn: True) is True


def test_outputs_file() -> None:
    assert parse_outputs("a=1\nb=x=y\nmulti<<EOF\nline 1\nline 2\nEOF\nc=\n") == {
        "a": "1",
        "b": "x=y",
        "multi": "line 1\nline 2",
        "c": "",
    }
