"""What a run keeps for its report besides the events: the scenario as the report needs it (in
the journal's `started` event), and the Prometheus series around the drill (`series.json`),
fetched once after the drill so `drillkit report` re-renders, plots and measures the impact
offline.

The measured impact (failed requests, error rate, how long users were hurt) is computed here
from the saved series of the scenario's `impact:` queries, over the drill window (the fault
taking effect to the end of the drill). The engine fetches; the report renders; this module
owns the file between them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, is_dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drillkit.errors import DrillkitError
from drillkit.journal import printable
from drillkit.scenario import Scenario

if TYPE_CHECKING:  # rendering a report reads saved series: no HTTP client (requests) loads
    from drillkit.prometheus import AlertRule, Prometheus

SERIES_NAME = "series.json"
MARGIN_BEFORE, MARGIN_AFTER = 30.0, 5.0  # seconds of context around the drill in the plots
MAX_SERIES = 10  # per query: a plot of more lines is unreadable, and series.json stays small


def scenario_record(s: Scenario) -> dict[str, Any]:
    """The scenario as the report needs it (re-rendering reads only the run folder)."""
    return {
        "name": s.name,
        "title": s.title,
        "incident": s.incident.value,
        "severity": s.severity.value,
        "description": s.description,
        "path": s.path,
        "target": asdict(s.target),
        "alert": s.detection.alert,
        "alert_labels": s.detection.labels,
        "acknowledge": s.response.acknowledge.value,
        "recovery_action": s.recovery.action.value,
        "faults": [{"kind": f.kind, "params": _jsonable(f.params)} for f in s.faults],
        "steady_state": [{"name": p.name, "expr": p.expr, "expect": str(p.expect)} for p in s.steady_state],
        "abort_when": [{"name": c.name, "expr": c.expr} for c in s.guardrails.abort_when],
        "runbook": asdict(s.runbook),
        "impact": asdict(s.impact) if s.impact else None,
        "channel": s.channel,
    }


def _jsonable(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type) and not hasattr(type(value), "parse"):
        return {f.name: _jsonable(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, int | float | str | bool) or value is None:
        return value
    return str(value)


def queries(scenario: Scenario, rule: AlertRule | None) -> list[tuple[str, str, str]]:
    """(role, label, PromQL) of every series the report shows: the probes, the alert's
    expression and the impact queries."""
    out = [("probe", f"probe: {p.name}", p.expr) for p in scenario.steady_state]
    if rule is not None:
        out.append(("alert", f"alert {rule.name}: {rule.query}", rule.query))
    if scenario.impact is not None:
        out.append(("impact-errors", "impact: failed requests per second", scenario.impact.errors))
        if scenario.impact.requests:
            out.append(("impact-requests", "impact: requests per second", scenario.impact.requests))
    return out


def save_series(
    prom: Prometheus,
    scenario: Scenario,
    rule: AlertRule | None,
    started: datetime,
    end: datetime,
    folder: Path,
    out: Callable[[str], None],
) -> Path | None:
    """Fetch each query's values from `started` (minus a margin) to `end` (plus one) and save
    them in the run folder. Best effort: a report without plots beats no report."""
    start, stop = started - timedelta(seconds=MARGIN_BEFORE), end + timedelta(seconds=MARGIN_AFTER)
    step = max(1.0, (stop - start).total_seconds() / 1000)
    saved = []
    try:
        wanted = queries(scenario, rule)
        fetched = prom.query_range_many([expr for _, _, expr in wanted], start, stop, step)  # one request
        for (role, label, expr), series in zip(wanted, fetched, strict=True):
            kept = [asdict(s) for s in series[:MAX_SERIES]]
            saved.append({"role": role, "label": label, "expr": expr, "series": kept})
    except DrillkitError as exc:
        out(f"could not fetch the series to plot: {exc}")
        return None
    path = folder / SERIES_NAME
    path.write_text(json.dumps({"step": step, "queries": saved}) + "\n", encoding="utf-8")
    return path


def load_series(folder: Path) -> dict[str, Any] | None:
    """The saved series of a run folder, or None (the fetch failed, or nothing was injected)."""
    path = folder / SERIES_NAME
    if not path.exists():
        return None
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))  # bad bytes: a UnicodeDecodeError, a ValueError
    except (OSError, ValueError):
        return None
    # label values are scraped text: a lone surrogate among them cannot be written into a report
    return printable(saved) if isinstance(saved, dict) else None


@dataclass(frozen=True)
class MeasuredImpact:
    """What users suffered during the drill window, from the platform's own metrics."""

    failed: float  # requests, summed over the window (rate x step)
    requests: float | None  # every request in the window, if a `requests` query was given
    affected_seconds: float  # how long the error ratio (or the error rate) was above the threshold
    first_affected: float | None  # seconds from the fault taking effect
    last_affected: float | None
    window: float  # seconds: the fault taking effect to the end of the drill

    @property
    def error_rate(self) -> float | None:
        return self.failed / self.requests if self.requests else None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "error_rate": self.error_rate}


def _summed(query: dict[str, Any]) -> dict[float, float]:
    """Every series of a query summed per timestamp (NaN samples skipped)."""
    total: dict[float, float] = {}
    for s in query.get("series", []):
        for t, v in s.get("points", []):
            if v == v:  # NaN (0/0 in a ratio) is no data
                total[float(t)] = total.get(float(t), 0.0) + float(v)
    return total


def measure_impact(saved: dict[str, Any], start: float, end: float, threshold: float) -> MeasuredImpact | None:
    """Failed requests, all requests and the affected time between the unix times `start`
    (the fault took effect) and `end` (the drill ended), from the saved `impact-*` series: each
    sample of a per-second rate stands for `step` seconds. None if no impact query was saved."""
    by_role = {q.get("role"): q for q in saved.get("queries", [])}
    if "impact-errors" not in by_role:
        return None
    step = float(saved.get("step", 1.0))
    errors = {t: v for t, v in _summed(by_role["impact-errors"]).items() if start <= t <= end}
    requests = None
    if "impact-requests" in by_role:
        requests = {t: v for t, v in _summed(by_role["impact-requests"]).items() if start <= t <= end}

    def affected(t: float, v: float) -> bool:
        if requests is not None:
            total = requests.get(t, 0.0)
            return total > 0 and v / total > threshold
        return v > threshold

    bad = sorted(t for t, v in errors.items() if affected(t, v))
    return MeasuredImpact(
        failed=sum(errors.values()) * step,
        requests=sum(requests.values()) * step if requests is not None else None,
        affected_seconds=len(bad) * step,
        first_affected=bad[0] - start if bad else None,
        last_affected=bad[-1] - start if bad else None,
        window=end - start,
    )
