"""Several drills as one job: the quarterly drills run from CI with one summary, one merged
JUnit file and one exit code.

A suite is the scenario files and folders named on the command line, or a suite file
(`*.suite.yaml`: order, per-drill overrides, stop at the first failure). Every scenario is loaded
before the first drill starts, so a typo in the third file costs seconds, not two drills.
Between drills each drill waits, bounded, for the previous drill's alert to resolve and its own
steady state to hold (`RunOptions.settle_timeout`), so back-to-back drills do not refuse to
start because of the one before. The drills themselves are `drillkit.engine.Drill`, unchanged.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from drillkit.clock import utcnow
from drillkit.engine import EXIT_NOT_RECORDED, EXIT_NOT_STARTED, Drill, RunOptions
from drillkit.errors import DrillkitError, InputError, ScenarioError
from drillkit.model import PositiveDuration, Where, build, doc, load_yaml
from drillkit.report import SummaryRow, render_summary, summary_row
from drillkit.scenario import Scenario, is_suite_file, load_scenario, scenario_paths, variable
from drillkit.signals import StopFlag

DEFAULT_SETTLE = 180.0  # seconds a drill of a suite waits for the previous one's alert to resolve

# The suite's exit code is its drills' most serious one: interrupted, bad input, something
# unavailable, a report that could not be written, a missed target, not started, all met.
_SERIOUSNESS = (130, 2, 3, EXIT_NOT_RECORDED, 1, EXIT_NOT_STARTED, 0)


@dataclass(frozen=True)
class SuiteItem:
    """One drill of a suite file."""

    scenario: str = doc("scenario file, relative to the suite file")
    overrides: dict[str, Any] = doc(
        "part of a scenario merged over it for this suite, e.g. {detection: {within: 45s}}",
        default_factory=dict,
    )


@dataclass(frozen=True)
class SuiteFile:
    """A suite of drills run one after the other (`drillkit run quarterly.suite.yaml`)."""

    drills: tuple[SuiteItem, ...]
    stop_on_failure: bool = doc("skip the remaining drills once one does not pass", default=False)
    settle_within: PositiveDuration | None = doc(
        "how long each drill waits for the previous alert to resolve and the steady state to hold",
        default=None,
    )


@dataclass(frozen=True)
class Planned:
    """A loaded scenario, in suite order."""

    path: Path
    scenario: Scenario


@dataclass(frozen=True)
class Suite:
    drills: tuple[Planned, ...]
    stop_on_failure: bool = False
    settle_within: float | None = None


@dataclass
class SuiteResult:
    folder: Path
    rows: list[SummaryRow] = field(default_factory=list)
    exit_code: int = 0


def load_suite(paths: tuple[str, ...] | list[str], stop_on_failure: bool = False) -> Suite:
    """Scenario files, folders (every *.yaml below, sorted) and suite files, in the order given,
    all loaded and validated now."""
    drills: list[Planned] = []
    settle: float | None = None
    for raw in paths:
        path = Path(raw)
        if path.is_file() and is_suite_file(path):
            parsed = _suite_file(path)
            drills += parsed.drills
            stop_on_failure = stop_on_failure or parsed.stop_on_failure
            settle = parsed.settle_within if parsed.settle_within is not None else settle
            continue
        drills += [Planned(p, load_scenario(p)) for p in scenario_paths([raw])]
    if not drills:
        raise InputError(f"no *.yaml scenarios found in {', '.join(paths)}")
    return Suite(tuple(drills), stop_on_failure, settle)


def _suite_file(path: Path) -> Suite:
    data = load_yaml(path, variable)
    where = Where(str(path), getattr(data, "line", 1), "")
    parsed = build(SuiteFile, data, where)
    items = data["drills"]
    drills = []
    for i, item in enumerate(parsed.drills):
        at = where.key(data, "drills").item(items, i)
        scenario = path.parent / item.scenario
        if not scenario.is_file():
            raise at.key(items[i], "scenario").error(f"no such scenario file: {scenario}")
        try:
            drills.append(Planned(scenario, load_scenario(scenario, item.overrides)))
        except ScenarioError as exc:
            if not item.overrides:
                raise
            raise _in_overrides(exc, at.key(items[i], "overrides"), items[i]["overrides"]) from None
    return Suite(tuple(drills), parsed.stop_on_failure, parsed.settle_within)


_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")  # `faults[0].count` -> faults, 0, count


def _in_overrides(exc: ScenarioError, where: Where, overrides: object) -> ScenarioError:
    """A scenario error about a value the overrides wrote, at that value's line and key path in
    the suite file (the merged scenario knows only the scenario file's lines); any other error
    (in the scenario itself, or about a mapping the overrides only reach into) keeps its place,
    said to come with these overrides."""
    node, at = overrides, where
    for key, index in _PATH_PART.findall(exc.path):
        if key and isinstance(node, Mapping) and key in node:
            node, at = node[key], at.key(node, key)
        elif index and isinstance(node, list) and int(index) < len(node):
            node, at = node[int(index)], at.item(node, int(index))
        else:
            return where.error(f"with these overrides, {exc}")
    return at.error(exc.message) if exc.path else where.error(f"with these overrides, {exc}")


def suite_exit_code(codes: list[int]) -> int:
    """The most serious exit code among the drills (see _SERIOUSNESS); unknown codes rank as 3."""
    ranked = [c if c in _SERIOUSNESS else 3 for c in codes]
    return min(ranked, key=_SERIOUSNESS.index, default=0)


def run_suite(
    suite: Suite,
    options_for: Callable[[Scenario], RunOptions],
    stop: StopFlag,
    report_root: Path,
    out: Callable[[str], None],
    settle_timeout: float | None = None,
) -> SuiteResult:
    """Run the drills one after the other and write the summary; never raises for one drill's
    failure (it becomes that drill's row and exit code)."""
    folder = report_root / f"{utcnow():%Y-%m-%dT%H%M%SZ}-suite-{secrets.token_hex(4)}"
    try:
        folder.mkdir(parents=True, exist_ok=False)
    except OSError as exc:
        raise InputError(f"cannot create the suite folder {folder}: {exc.strerror}") from None
    settle = settle_timeout if settle_timeout is not None else suite.settle_within
    result = SuiteResult(folder)
    previous: str | None = None
    skip_reason = ""
    total = len(suite.drills)
    for n, planned in enumerate(suite.drills, 1):
        sc = planned.scenario
        if stop.is_set():
            skip_reason = skip_reason or f"not run: the suite was interrupted ({stop.reason})"
        if skip_reason:
            result.rows.append(SummaryRow.not_run(sc.name, sc.title, sc.severity.value, str(planned.path), skip_reason))
            continue
        out(f"suite: drill {n}/{total}: {sc.name} ({planned.path})")
        row = _run_one(planned, options_for, stop, settle, previous, out)
        result.rows.append(row)
        previous = sc.detection.alert
        if row.exit_code == 130:
            skip_reason = "not run: the suite was interrupted"
        elif suite.stop_on_failure and row.exit_code != 0:
            skip_reason = f"not run: stop at first failure ({sc.name} ended {row.status})"
    codes = [r.exit_code for r in result.rows if r.ran]
    if stop.is_set() and len(codes) < total:  # a signal between two drills skipped the rest: interrupted
        codes.append(130)
    result.exit_code = suite_exit_code(codes)
    render_summary(folder, result.rows, result.exit_code)
    return result


def _run_one(
    planned: Planned,
    options_for: Callable[[Scenario], RunOptions],
    stop: StopFlag,
    settle: float | None,
    previous_alert: str | None,
    out: Callable[[str], None],
) -> SummaryRow:
    sc = planned.scenario
    try:
        opts = options_for(sc)
        opts = replace(
            opts,
            settle_timeout=DEFAULT_SETTLE if settle is None else settle,
            settle_alerts=(previous_alert,) if previous_alert else (),
        )
        res = Drill(sc, opts, stop).run()
    except DrillkitError as exc:  # before the drill had a folder: e.g. a kube context not allowed
        out(f"{sc.name}: {exc}")
        return SummaryRow.not_run(sc.name, sc.title, sc.severity.value, str(planned.path), str(exc), exc.exit_code)
    return summary_row(sc.name, str(planned.path), res.folder, res.status.value, res.exit_code)
