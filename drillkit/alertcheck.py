"""Checks before a drill that its alert can fire at all (`validate --prometheus-url`,
`run --dry-run`).

Why: a drill whose alert cannot fire costs a real incident's worth of harm and measures
nothing. Each check is one `FILE:LINE: detection.…:` line: the alert exists (did you mean),
`detection.labels` fit one of its rules, every metric its expression selects has series, each
label the drill matches on can appear on the alert (kept by the top-level `by`/`without`, or on
the series), and `detection.within` leaves room for the rule's `for:` plus one evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from drillkit.errors import PreflightError, RejectedRequest
from drillkit.matchers import LabelMatcher, describe
from drillkit.model import Where, format_duration
from drillkit.prometheus import AlertRule, AlertTarget, Prometheus, choose, describe_static
from drillkit.promql import or_branches, output, selectors
from drillkit.scenario import Scenario, detection_sites

SERIES_WINDOW_S = 3600.0  # a metric counts as existing if it had a series in the last hour


@dataclass(frozen=True)
class AlertCheck:
    """The rules the drill would wait for (None if there are none) and what is wrong."""

    target: AlertTarget | None
    problems: tuple[str, ...]


def check_alert(prom: Prometheus, scenario: Scenario) -> AlertCheck:
    d = scenario.detection
    at = detection_sites(scenario)
    rules = prom.rules()
    try:
        target = choose(rules, d.alert, d.matchers, f"Prometheus at {prom.url}")
    except PreflightError as exc:
        key = "labels" if any(r.name == d.alert for r in rules) else "alert"
        return AlertCheck(None, (str(at[key].error(str(exc))),))
    problems: list[str] = []
    for rule in target.rules:
        names = _series_labels(prom, rule, at["alert"], problems)
        for m in d.matchers:
            why = _cannot_carry(rule, m, names)
            if why:
                problems.append(str(at[f"labels.{m.name}"].error(why)))
    need = target.fires_after + target.rule.interval
    if d.within < need:
        r, within = target.rule, format_duration(d.within)
        why = (
            f"{within} is shorter than rule {r.name}'s for: {format_duration(r.for_seconds)} plus one evaluation "
            f"interval ({format_duration(r.interval)}): the target can never be met; make it at least "
            f"{format_duration(need)}"
        )
        problems.append(str(at["within"].error(why)))
    return AlertCheck(target, tuple(dict.fromkeys(problems)))


def missing(prom: Prometheus, rule: AlertRule, seconds: float) -> tuple[list[str], set[str] | None]:
    """The selectors without series in the last `seconds` that stop the rule from firing (of
    each branch of a top-level `or`, when no branch has all of its series), and the label
    names of the series found (None: a selector Prometheus would not look up)."""
    names: set[str] = set()
    dead: list[str] = []
    alive = False
    for branch in or_branches(rule.query):
        lacking = []
        for sel in selectors(branch):
            try:
                found = prom.series(sel, seconds)
            except RejectedRequest:
                return [], None
            if not found:
                lacking.append(sel)
            for labels in found:
                names.update(labels)
        alive = alive or not lacking
        dead += [sel for sel in lacking if sel not in dead]
    names.discard("__name__")
    return ([] if alive else dead), names


def _series_labels(prom: Prometheus, rule: AlertRule, where: Where, problems: list[str]) -> set[str] | None:
    """The label names of every series the rule's expression selects; a problem for each
    selector with none that stops it from firing (None: a selector Prometheus would not look up)."""
    lacking, names = missing(prom, rule, SERIES_WINDOW_S)
    for sel in lacking:
        problems.append(
            str(
                where.error(
                    f"rule {rule.name} ({_origin(rule)}) selects {sel}, which has no series in the last "
                    f"{format_duration(SERIES_WINDOW_S)}: the alert cannot fire (exporter not scraped, "
                    "metric renamed, label mistyped?)"
                )
            )
        )
    return names


def _cannot_carry(rule: AlertRule, m: LabelMatcher, names: set[str] | None) -> str:
    """Why an alert of `rule` can never satisfy `m`, or ''. A matcher that an absent label
    satisfies (`!=`, `!~`, `=""`) always can."""
    if m.matches({}) or m.name in rule.labels:
        return ""  # a static label fits: `choose` kept only rules whose static labels do
    shape = output(rule.query)
    if shape is None:
        return ""
    if shape.mode in ("by", "absent"):
        if m.name in shape.labels:
            return ""
        kept = ", ".join(shape.labels) or "no label"
        how = f"its top-level aggregation keeps {kept}" if shape.mode == "by" else f"absent() keeps only {kept}"
        return f"rule {rule.name}'s alerts never carry {m.name}: {how} (match on one of those, or drop it)"
    if names is None or not names:
        return ""
    if shape.mode == "without" and m.name in shape.labels:
        return f"rule {rule.name}'s alerts never carry {m.name}: its top-level aggregation drops it (without)"
    if m.name not in names:
        return (
            f"no series rule {rule.name} selects has a {m.name} label "
            f"(they have {', '.join(sorted(names))}): its alerts never carry it"
        )
    return ""


def _origin(rule: AlertRule) -> str:
    return f"group {rule.group}" + (f" in {rule.file}" if rule.file else "")


def plan(target: AlertTarget) -> list[str]:
    """The dry run's lines for the alert: each matched rule, its for: and the matchers."""
    out = []
    for r in target.rules:
        fires = format_duration(r.fires_after)
        out.append(
            f"alert rule {r.name} ({_origin(r)}): for: {format_duration(r.for_seconds)}, "
            f"fires {fires} after its condition first holds at {format_duration(r.interval)} evaluations; "
            f"static labels {describe_static(r)}"
        )
    out.append(f"alert label matchers: {describe(target.matchers)}")
    return out


class MissCause(StrEnum):
    """Why the alert did not fire within the target, in the order they are told apart."""

    NO_SERIES = "no series"  # a metric the rule reads had no series: no threshold can help
    DROPPED = "pending then dropped"  # the condition held, but for less than `for:`
    NEVER_TRUE = "condition never true"  # the series were there; the condition never held
    LATE = "fired after the target"  # set by the report when `detected_late` follows


@dataclass(frozen=True)
class Miss:
    cause: MissCause
    detail: str
    episodes: tuple[tuple[datetime, datetime], ...] = ()  # pending episodes that never fired


def explain_miss(prom: Prometheus, target: AlertTarget, since: datetime) -> Miss:
    """Why `target` did not fire since `since` (the injection), from Prometheus's own record:
    its raw `ALERTS` samples (pending episodes) and the series its rules read."""
    episodes = tuple((a, b) for a, b, fired in prom.pending_episodes(target, since) if not fired)
    if episodes:
        longest = max(episodes, key=lambda e: e[1] - e[0])
        held = (longest[1] - longest[0]).total_seconds() + target.rule.interval
        return Miss(
            MissCause.DROPPED,
            f"pending {format_duration(held)} then dropped ({len(episodes)} episode(s)), short of its "
            f"for: {format_duration(target.rule.for_seconds)}",
            episodes,
        )
    seconds = (datetime.now(UTC) - since).total_seconds() + 60
    for rule in target.rules:
        lacking, _ = missing(prom, rule, seconds)
        if lacking:
            return Miss(MissCause.NO_SERIES, f"{', '.join(lacking)} had no series during the drill")
    return Miss(
        MissCause.NEVER_TRUE, f"its expression had data but never met its condition: {target.rule.query.strip()}"
    )


def already_firing(alert: str, labels: dict[str, str], firing: list[dict[str, str]]) -> str:
    """The refusal when the drill's alert fires before the drill: which label sets, and how to
    tell the drill's own alert apart from them (`detection.labels`)."""
    sets = [{k: v for k, v in sorted(lb.items()) if k not in ("__name__", "alertname", "alertstate")} for lb in firing]
    shown = "; ".join("{" + ", ".join(f'{k}="{v}"' for k, v in s.items()) + "}" for s in sets[:3])
    more = f" (and {len(sets) - 3} more)" if len(sets) > 3 else ""
    first = sets[0] if sets else {}
    free = [k for k in ("instance", "namespace", "job", "severity", *first) if k in first and k not in labels]
    example = f'{free[0]}: "!={first[free[0]]}"' if free else ""
    hint = f"; if that is another incident, narrow detection.labels to the drill's own, e.g. {example}" if free else ""
    return f"alert {alert} is already firing before the drill for {shown}{more}{hint}"
