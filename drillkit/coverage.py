"""`drillkit coverage`: which alerts have been proven by a drill, and which never were.

Why: teams run a hundred third-party alert rules and drill a handful; `report index` and
`trends` work per scenario, so nothing said which alerts no drill exercises. Coverage joins
the alerting rules (Prometheus's `/api/v1/rules`, or rule files and PrometheusRule manifests)
with the runs under a reports folder: a run counts for a rule when its detection alert has the
rule's name and its `detection.labels` fit the rule's static labels (as `drillkit run` chooses
the rule). Per rule: the scenarios that detect on it, the last drill's result and time to
detect, and when a passing drill last proved it; per playbook incident type, its scenarios.
`--fail-untested-since 90d` makes CI fail while an alert has no passing drill in that window.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from drillkit.clock import rfc3339
from drillkit.errors import InputError
from drillkit.history import Run, find_runs
from drillkit.matchers import parse_labels
from drillkit.model import format_duration, parse_duration
from drillkit.prometheus import AlertRule
from drillkit.scenario import Incident

PAGES = ("md", "html", "json")


def rules_from_files(paths: list[str]) -> list[AlertRule]:
    """The alerting rules of rule files and PrometheusRule manifests (files or folders)."""
    from drillkit.lab.userrules import collect, rule_text

    out = []
    for path in collect(paths):
        groups = (yaml.safe_load(rule_text(path)) or {}).get("groups") or []
        for g in groups:
            interval = parse_duration(str(g["interval"])) if g.get("interval") else 0.0
            for r in g.get("rules") or []:
                if "alert" not in r:
                    continue
                out.append(
                    AlertRule(
                        name=str(r["alert"]),
                        for_seconds=parse_duration(str(r.get("for", "0s"))),
                        query=str(r.get("expr", "")),
                        labels={str(k): str(v) for k, v in (r.get("labels") or {}).items()},
                        group=str(g.get("name", "")),
                        last_evaluation=None,
                        interval=interval,
                        file=str(path),
                    )
                )
    return out


@dataclass(frozen=True)
class Drilled:
    """One scenario's drills on a rule."""

    scenario: str
    runs: int
    last_status: str
    last_at: datetime
    last_detect: float | None  # seconds, the last run's time to detect
    last_passed: datetime | None


@dataclass(frozen=True)
class RuleCoverage:
    rule: AlertRule
    drilled: tuple[Drilled, ...]

    @property
    def proven_at(self) -> datetime | None:
        """When a passing drill last proved the rule."""
        passed = [d.last_passed for d in self.drilled if d.last_passed is not None]
        return max(passed) if passed else None


@dataclass(frozen=True)
class Coverage:
    rules: tuple[RuleCoverage, ...]
    incidents: dict[str, tuple[str, ...]]  # playbook incident type -> scenarios drilled
    orphans: tuple[str, ...]  # scenarios whose detection alert matches no rule
    problems: tuple[str, ...]  # run folders that could not be read

    def untested(self, since: datetime) -> list[RuleCoverage]:
        return [c for c in self.rules if c.proven_at is None or c.proven_at < since]


def _key(r: AlertRule) -> tuple[str, str, str, float, tuple[tuple[str, str], ...]]:
    return (r.name, r.group, r.query.strip(), r.for_seconds, tuple(sorted(r.labels.items())))


def coverage(rules: list[AlertRule], runs: list[Run], problems: list[str]) -> Coverage:
    unique = list({_key(r): r for r in rules}.values())  # Prometheus and files may both list one
    by_rule: dict[int, dict[str, list[Run]]] = {}
    matched: set[str] = set()
    for run in runs:
        matchers = parse_labels(dict(run.alert_labels))
        for i, rule in enumerate(unique):
            if rule.name == run.alert and rule.could_match(matchers):
                by_rule.setdefault(i, {}).setdefault(run.scenario, []).append(run)
                matched.add(run.scenario)
    out = []
    for i, rule in enumerate(unique):
        drilled = []
        for scenario, its in sorted(by_rule.get(i, {}).items()):
            last = max(its, key=lambda r: r.started)
            passed = [r.started for r in its if r.status == "passed"]
            drilled.append(
                Drilled(
                    scenario,
                    len(its),
                    last.status,
                    last.started,
                    last.measures.get("time_to_detect"),
                    max(passed) if passed else None,
                )
            )
        out.append(RuleCoverage(rule, tuple(drilled)))
    out.sort(key=lambda c: (c.proven_at is not None, c.rule.name, c.rule.group))
    incidents = {i.value: tuple(sorted({r.scenario for r in runs if r.incident == i.value})) for i in Incident}
    orphans = tuple(sorted({r.scenario for r in runs} - matched))
    return Coverage(tuple(out), incidents, orphans, tuple(problems))


def load(rules: list[AlertRule], report_dir: Path) -> Coverage:
    try:
        runs, problems = find_runs(report_dir)
    except InputError:
        runs, problems = [], [f"{report_dir}: no run folders below it"]
    return coverage(rules, runs, problems)


# --- the pages ------------------------------------------------------------------------------


def _row(c: RuleCoverage, since: datetime | None) -> dict[str, Any]:
    r = c.rule
    last = max(c.drilled, key=lambda d: d.last_at) if c.drilled else None
    return {
        "alert": r.name,
        "labels": r.labels,
        "for_seconds": r.for_seconds,
        "group": r.group,
        "file": Path(r.file).name,  # the rule file's name: the lab's copy or a CI checkout's path says nothing
        "scenarios": [
            {
                "scenario": d.scenario,
                "runs": d.runs,
                "last_status": d.last_status,
                "last_at": rfc3339(d.last_at),
                "last_time_to_detect": d.last_detect,
                "last_passed_at": rfc3339(d.last_passed) if d.last_passed else None,
            }
            for d in c.drilled
        ],
        "last_status": last.last_status if last else None,
        "last_time_to_detect": last.last_detect if last else None,
        "proven_at": rfc3339(c.proven_at) if c.proven_at else None,
        "untested": since is not None and (c.proven_at is None or c.proven_at < since),
    }


def document(cov: Coverage, since: datetime | None) -> dict[str, Any]:
    rows = [_row(c, since) for c in cov.rules]
    return {
        "rules": len(rows),
        "drilled": sum(1 for r in rows if r["scenarios"]),
        "proven": sum(1 for r in rows if r["proven_at"]),
        "untested_since": rfc3339(since) if since else None,
        "alerts": rows,
        "incidents": {k: list(v) for k, v in cov.incidents.items()},
        "scenarios_without_rule": list(cov.orphans),
        "problems": list(cov.problems),
    }


def _for(seconds: float) -> str:
    return format_duration(seconds) if seconds else "0s"


def _md(doc: dict[str, Any]) -> str:
    def cell(text: object) -> str:
        return str(text).replace("|", "\\|")

    lines = [
        "# Alert coverage",
        "",
        f"{doc['drilled']} of {doc['rules']} alerting rules are exercised by a drill; {doc['proven']} were proven by "
        "a passing one."
        + (f" No passing drill since {doc['untested_since'][:10]}: marked ✗." if doc["untested_since"] else ""),
        "",
        "| Alert | Static labels | for | Scenarios | Last result | Time to detect | Proven |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in doc["alerts"]:
        labels = ", ".join(f"{k}={v}" for k, v in sorted(r["labels"].items())) or "-"
        scenarios = ", ".join(f"{s['scenario']} ({s['runs']})" for s in r["scenarios"]) or "none"
        mark = " ✗" if r["untested"] else ""
        lines.append(
            f"| {cell(r['alert'])}{mark} | {cell(labels)} | {_for(r['for_seconds'])} | {cell(scenarios)} | "
            f"{r['last_status'] or '-'} | {format_duration(r['last_time_to_detect'])} | {r['proven_at'] or 'never'} |"
        )
    lines += ["", "## Playbook incident types", "", "| Incident | Scenarios drilled |", "|---|---|"]
    lines += [f"| {k} | {', '.join(v) or 'none'} |" for k, v in doc["incidents"].items()]
    if doc["scenarios_without_rule"]:
        lines += ["", "Scenarios whose alert matches no rule loaded: " + ", ".join(doc["scenarios_without_rule"])]
    lines += [f"- {p}" for p in doc["problems"]]
    return "\n".join(lines) + "\n"


def _html(doc: dict[str, Any]) -> str:
    e = html.escape
    rows = []
    for r in doc["alerts"]:
        labels = ", ".join(f"{k}={v}" for k, v in sorted(r["labels"].items())) or "-"
        scenarios = ", ".join(f"{s['scenario']} ({s['runs']})" for s in r["scenarios"]) or "none"
        cls = ' class="untested"' if r["untested"] else ""
        rows.append(
            f"<tr{cls}><td>{e(r['alert'])}</td><td>{e(labels)}</td><td>{_for(r['for_seconds'])}</td>"
            f"<td>{e(scenarios)}</td><td>{e(r['last_status'] or '-')}</td>"
            f"<td>{format_duration(r['last_time_to_detect'])}</td><td>{e(r['proven_at'] or 'never')}</td></tr>"
        )
    incidents = "".join(
        f"<tr><td>{e(k)}</td><td>{e(', '.join(v) or 'none')}</td></tr>" for k, v in doc["incidents"].items()
    )
    since = f" No passing drill since {e(doc['untested_since'][:10])}: in red." if doc["untested_since"] else ""
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>Alert coverage</title>'
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
        "padding:.3em .6em;text-align:left}tr.untested td:first-child{color:#b00020;font-weight:bold}</style>"
        "</head><body><h1>Alert coverage</h1>"
        f"<p>{doc['drilled']} of {doc['rules']} alerting rules are exercised by a drill; {doc['proven']} were "
        f"proven by a passing one.{since}</p>"
        "<table><tr><th>Alert</th><th>Static labels</th><th>for</th><th>Scenarios (runs)</th><th>Last result</th>"
        f"<th>Time to detect</th><th>Proven</th></tr>{''.join(rows)}</table>"
        "<h2>Playbook incident types</h2><table><tr><th>Incident</th><th>Scenarios drilled</th></tr>"
        f"{incidents}</table></body></html>\n"
    )


def write(cov: Coverage, out_dir: Path, since: datetime | None) -> list[Path]:
    """coverage.md, coverage.html and coverage.json in `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = document(cov, since)
    written = []
    for fmt, text in (("md", _md(doc)), ("html", _html(doc)), ("json", json.dumps(doc, indent=2) + "\n")):
        path = out_dir / f"coverage.{fmt}"
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def window_start(now: datetime, window: float | None) -> datetime | None:
    return now - timedelta(seconds=window) if window else None
