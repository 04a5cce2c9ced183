"""Every drill under a reports folder, compared over time: `drillkit report index|trends`.

`index` lists every run (newest first) with its status, the four times and its missed targets.
`trends` groups the runs per scenario and per playbook incident type, per calendar quarter
(the drills are quarterly): runs, pass rate, and the median time to detect, acknowledge,
mitigate and resolve, with plots, and the regressions of each group's latest quarter against
its previous one. Each run is read back from its run folder (drillkit.report.collect), so
folders copied from CI artifacts, other machines or older versions all count.
"""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from drillkit.clock import rfc3339
from drillkit.errors import DrillkitError, InputError
from drillkit.journal import JOURNAL_NAME, first
from drillkit.report import collect, write_page
from drillkit.respond import run_folders

MEASURES = ("time_to_detect", "time_to_acknowledge", "time_to_mitigate", "time_to_resolve")
MEASURE_NAMES = {
    "time_to_detect": "detect",
    "time_to_acknowledge": "acknowledge",
    "time_to_mitigate": "mitigate",
    "time_to_resolve": "resolve",
}
JUDGED = ("passed", "failed", "aborted")  # runs that count for the pass rate (not-started/inconclusive prove nothing)
# A median time is a regression when it grew by more than this share AND this many seconds (a
# 0.4 s detection that becomes 0.6 s is jitter, not a regression).
SLOWER_BY, SLOWER_AT_LEAST = 0.25, 1.0
PAGES = ("html", "md", "json")


@dataclass(frozen=True)
class Run:
    """One run folder, as the history shows it."""

    folder: Path
    run_id: str
    scenario: str
    title: str
    incident: str
    severity: str
    status: str
    started: datetime
    measures: dict[str, float | None]
    missed: tuple[str, ...]
    trainee: str = ""  # a training exercise's trainee; "" for a drill
    training: bool = False  # a `drillkit train` exercise: a person learning, not the platform's readiness
    alert: str = ""  # the detection alert and its label matchers (drillkit coverage)
    alert_labels: tuple[tuple[str, str], ...] = ()

    @property
    def group(self) -> str:
        """The scenario as trends group it: exercises apart from drills of the same scenario."""
        return f"{self.scenario} (training)" if self.training else self.scenario

    @property
    def quarter(self) -> str:
        return quarter_of(self.started)

    def to_json(self, root: Path) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "scenario": self.scenario,
            "title": self.title,
            "incident": self.incident,
            "severity": self.severity,
            "status": self.status,
            "started_at": rfc3339(self.started),
            "quarter": self.quarter,
            "measures": self.measures,
            "missed": list(self.missed),
            "training": self.training,
            "trainee": self.trainee,
            "folder": os.path.relpath(self.folder, root),
        }


def quarter_of(at: datetime) -> str:
    return f"{at.year}-Q{(at.month - 1) // 3 + 1}"


def find_runs(root: Path, include_training: bool = True) -> tuple[list[Run], list[str]]:
    """Every run folder below `root` (at any depth), oldest first, and a line per folder that
    could not be read (a damaged journal is reported, not fatal). Without `include_training`,
    training exercises are left out: a trainee's time-out says nothing of the platform."""
    runs, problems, left_out = [], [], 0
    for journal in (folder / JOURNAL_NAME for folder in run_folders(root)):  # as `drillkit attempts`
        try:
            d = collect(journal.parent)
        except (DrillkitError, KeyError, TypeError, ValueError) as exc:
            problems.append(f"{journal.parent}: skipped, not a readable run ({exc})")
            continue
        exercise = first(d.events, "exercise_started")
        if exercise is not None and not include_training:
            left_out += 1
            continue
        runs.append(
            Run(
                folder=journal.parent,
                run_id=d.run_id,
                scenario=str(d.scenario["name"]),
                title=str(d.scenario["title"]),
                incident=str(d.scenario.get("incident", "other")),
                severity=str(d.scenario["severity"]),
                status=d.status,
                started=d.events[0].at,
                measures=d.measures.to_dict(),
                missed=tuple(v.description for v in d.verdicts if v.met is False),
                trainee=str(exercise.data.get("trainee", "")) if exercise else "",
                training=exercise is not None,
                alert=str(d.scenario.get("alert", "")),
                alert_labels=tuple(sorted((d.scenario.get("alert_labels") or {}).items())),
            )
        )
    if not runs and not problems and not left_out:
        raise InputError(f"{root}: no run folders (with a {JOURNAL_NAME}) below it")
    return sorted(runs, key=lambda r: r.started), problems


@dataclass(frozen=True)
class Cell:
    """One group (a scenario or an incident type) in one quarter."""

    group: str
    quarter: str
    runs: int
    judged: int
    passed: int
    medians: dict[str, float | None]

    @property
    def pass_rate(self) -> float | None:
        return self.passed / self.judged if self.judged else None


@dataclass(frozen=True)
class Regression:
    by: str  # "scenario" or "incident"
    group: str
    quarter: str
    previous: str
    what: str
    before: float
    after: float

    def text(self) -> str:
        if self.what == "pass rate":
            change = f"pass rate {self.before:.0%} → {self.after:.0%}"
        else:
            change = f"median time to {self.what} {self.before:.1f}s → {self.after:.1f}s"
        return f"{self.by} {self.group}: {change} ({self.previous} → {self.quarter})"


@dataclass
class Trends:
    runs: list[Run]
    quarters: list[str]
    by_scenario: dict[str, list[Cell]] = field(default_factory=dict)
    by_incident: dict[str, list[Cell]] = field(default_factory=dict)
    regressions: list[Regression] = field(default_factory=list)


def _median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _cells(runs: list[Run], key: Callable[[Run], str]) -> dict[str, list[Cell]]:
    groups: dict[str, dict[str, list[Run]]] = {}
    for r in runs:
        groups.setdefault(key(r), {}).setdefault(r.quarter, []).append(r)
    out = {}
    for group, quarters in sorted(groups.items()):
        cells = []
        for quarter, rs in sorted(quarters.items()):
            judged = [r for r in rs if r.status in JUDGED]
            medians = {m: _median(r.measures.get(m) for r in judged) for m in MEASURES}
            cells.append(Cell(group, quarter, len(rs), len(judged), sum(r.status == "passed" for r in rs), medians))
        out[group] = cells
    return out


def regressions(by: str, cells: list[Cell]) -> list[Regression]:
    """The group's latest quarter against its previous quarter with judged runs: a lower pass
    rate, or a median time slower by more than SLOWER_BY and SLOWER_AT_LEAST seconds."""
    judged = [c for c in cells if c.judged]
    if len(judged) < 2:
        return []
    before, now = judged[-2], judged[-1]
    out = []
    if before.pass_rate is not None and now.pass_rate is not None and now.pass_rate < before.pass_rate:
        out.append(Regression(by, now.group, now.quarter, before.quarter, "pass rate", before.pass_rate, now.pass_rate))
    for m in MEASURES:
        a, b = before.medians[m], now.medians[m]
        if a is not None and b is not None and b - a > max(SLOWER_AT_LEAST, SLOWER_BY * a):
            out.append(Regression(by, now.group, now.quarter, before.quarter, MEASURE_NAMES[m], a, b))
    return out


def trends(runs: list[Run]) -> Trends:
    t = Trends(runs, sorted({r.quarter for r in runs}))
    t.by_scenario = _cells(runs, lambda r: r.group)
    t.by_incident = _cells(runs, lambda r: r.incident + (" (training)" if r.training else ""))
    for by, table in (("scenario", t.by_scenario), ("incident", t.by_incident)):
        for cells in table.values():
            t.regressions += regressions(by, cells)
    return t


# --- the pages -----------------------------------------------------------------------------


def _link(root: Path, run: Run) -> str:
    report = run.folder / "report.html"
    return os.path.relpath(report, root) if report.exists() else ""


def write_index(root: Path, include_training: bool = False) -> list[Path]:
    """index.html, index.md and index.json in `root`: every run, newest first (training
    exercises only with `include_training`, marked as such)."""
    runs, problems = find_runs(root, include_training)
    rows = [{"run": r, "link": _link(root, r)} for r in reversed(runs)]
    ctx: dict[str, Any] = {"rows": rows, "problems": problems, "measures": MEASURES, "names": MEASURE_NAMES}
    ctx["root"] = str(root)
    written = []
    for fmt in PAGES:
        path = root / f"index.{fmt}"
        if fmt == "json":
            _write_json(path, {"runs": [r.to_json(root) for r in reversed(runs)], "problems": problems})
        else:
            write_page(path, f"index.{fmt}.j2", fmt, **ctx)
        written.append(path)
    return written


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    """`doc` as indented JSON, written as it is encoded (never one string of every run)."""
    with open(path, "w", encoding="utf-8") as fh:
        fh.writelines(json.JSONEncoder(indent=2).iterencode(doc))
        fh.write("\n")


def write_trends(root: Path, include_training: bool = False) -> tuple[list[Path], list[str]]:
    """trends.html (with plots), trends.md and trends.json in `root`; returns them and the
    regressions, one line each. Training exercises count only with `include_training`, and then
    as groups of their own (`<scenario> (training)`)."""
    runs, problems = find_runs(root, include_training)
    t = trends(runs)
    lines = [r.text() for r in t.regressions]
    ctx: dict[str, Any] = {
        "t": t,
        "problems": problems,
        "measures": MEASURES,
        "names": MEASURE_NAMES,
        "regressions": lines,
        "root": str(root),
    }
    written = []
    for fmt in PAGES:
        path = root / f"trends.{fmt}"
        if fmt == "json":
            _write_json(path, _trends_json(t, root))
        else:
            extra = _trend_plots(t) if fmt == "html" else {}
            write_page(path, f"trends.{fmt}.j2", fmt, **ctx, **extra)
        written.append(path)
    return written, lines


def _cell_json(c: Cell) -> dict[str, Any]:
    return asdict(c) | {"pass_rate": c.pass_rate}


def _trends_json(t: Trends, root: Path) -> dict[str, Any]:
    return {
        "quarters": t.quarters,
        "by_scenario": {g: [_cell_json(c) for c in cells] for g, cells in t.by_scenario.items()},
        "by_incident": {g: [_cell_json(c) for c in cells] for g, cells in t.by_incident.items()},
        "regressions": [asdict(r) | {"text": r.text()} for r in t.regressions],
        "runs": [r.to_json(root) for r in t.runs],
    }


def _trend_plots(t: Trends) -> dict[str, dict[str, Any]]:
    """Inline SVG (marked safe by drillkit.report): each scenario's four times run by run, and
    the pass rate per incident type and quarter (drawn by drillkit.plots, lazily)."""
    from drillkit import plots

    per_scenario: dict[str, str] = {}
    for scenario in t.by_scenario:
        runs = [r for r in t.runs if r.group == scenario and r.status in JUDGED]
        lines = [
            plots.TrendLine(
                MEASURE_NAMES[m],
                [(r.started, v) for r in runs if (v := r.measures.get(m)) is not None],
            )
            for m in MEASURES
        ]
        if any(line.points for line in lines):
            per_scenario[scenario] = plots.trend_svg(scenario, lines)
    rates = {(c.group, c.quarter): c.pass_rate for cells in t.by_incident.values() for c in cells}
    pass_rates = plots.pass_rate_svg(list(t.by_incident), t.quarters, rates) if t.by_incident else ""
    return {"svgs": {"scenarios": per_scenario, "pass_rate": pass_rates}}
