"""P1–P4 targets from the playbook, and the verdict on each measured time: the one place
verdicts are computed (the engine judges with them, the report only renders them).

Defaults are the playbook's severity table (P1's "immediate" response is a configurable five
minutes); a policy file (`--policy`) and each scenario's `targets:` override them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from itertools import pairwise
from pathlib import Path
from typing import Any

from drillkit.journal import Event, first, measures
from drillkit.model import PositiveDuration, Where, build, format_duration, load_yaml
from drillkit.scenario import Scenario, Severity

H, M = 3600.0, 60.0


@dataclass(frozen=True)
class SeverityTargets:
    """Targets for one severity; all in seconds."""

    acknowledge: PositiveDuration
    resolve: PositiveDuration
    status_update_every: PositiveDuration


@dataclass(frozen=True)
class Policy:
    """Severity targets plus the status-page rule."""

    P1: SeverityTargets = SeverityTargets(5 * M, 4 * H, 30 * M)
    P2: SeverityTargets = SeverityTargets(30 * M, 8 * H, 30 * M)
    P3: SeverityTargets = SeverityTargets(2 * H, 24 * H, 2 * H)
    P4: SeverityTargets = SeverityTargets(24 * H, 7 * 24 * H, 2 * H)
    status_page_within: PositiveDuration = 10 * M

    def for_severity(self, severity: Severity) -> SeverityTargets:
        targets: SeverityTargets = getattr(self, severity.value)
        return targets


@dataclass(frozen=True)
class _PolicyFile:
    """A policy file: any severity may be partially overridden."""

    P1: dict[str, PositiveDuration] = field(default_factory=dict)
    P2: dict[str, PositiveDuration] = field(default_factory=dict)
    P3: dict[str, PositiveDuration] = field(default_factory=dict)
    P4: dict[str, PositiveDuration] = field(default_factory=dict)
    status_page_within: PositiveDuration | None = None


def load_policy(path: str | Path | None) -> Policy:
    """The default policy, overridden by a policy file if given."""
    policy = Policy()
    if path is None:
        return policy
    data = load_yaml(Path(path))
    where = Where(str(path), getattr(data, "line", 1), "")
    parsed = build(_PolicyFile, data, where)
    for sev in Severity:
        overrides: dict[str, float] = getattr(parsed, sev.value)
        known = {"acknowledge", "resolve", "status_update_every"}
        for key in overrides:
            if key not in known:
                raise (
                    where.key(data, sev.value)
                    .key(data[sev.value], key)
                    .error(f"unknown target; expected one of {', '.join(sorted(known))}")
                )
        updated: Any = replace(policy.for_severity(sev), **overrides)
        policy = replace(policy, **{sev.value: updated})
    if parsed.status_page_within is not None:
        policy = replace(policy, status_page_within=parsed.status_page_within)
    return policy


@dataclass(frozen=True)
class ActionDefaults:
    """Who owns the action items a drill's misses produce, and when they fall due (seconds
    after the drill started): `drillkit run/report --owner --due-in`."""

    owner: str = ""  # empty: the post-mortem leaves the playbook's [Name] to fill in
    due_in: float = 14 * 24 * H

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: object) -> ActionDefaults:
        """From a journal's `started` event (absent in journals written before these options)."""
        if not isinstance(raw, dict):
            return cls()
        return cls(str(raw.get("owner", "")), float(raw.get("due_in", cls.due_in)))


@dataclass(frozen=True)
class Limits:
    """The limits that apply to one drill, in seconds (None: no such target)."""

    detect: float
    acknowledge: float
    mitigate: float
    resolve: float
    status_update_every: float
    status_page_within: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def limits_for(scenario: Scenario, policy: Policy) -> Limits:
    """Combine policy defaults for the scenario's severity with the scenario's overrides."""
    sev = policy.for_severity(scenario.severity)
    o = scenario.targets
    return Limits(
        detect=scenario.detection.within,
        acknowledge=scenario.response.within if scenario.response.within is not None else sev.acknowledge,
        mitigate=scenario.recovery.within,
        resolve=o.resolve if o.resolve is not None else sev.resolve,
        status_update_every=o.status_update_every if o.status_update_every is not None else sev.status_update_every,
        status_page_within=o.status_page_within if o.status_page_within is not None else policy.status_page_within,
    )


@dataclass(frozen=True)
class Verdict:
    """Met / missed / not measured (met is None, with the reason) for one target."""

    target: str
    description: str
    limit_seconds: float
    actual_seconds: float | None
    met: bool | None
    reason: str = ""
    expected: str = ""  # for targets that are not durations (classification): the expected value
    given: str = ""  # ... and the value given

    @property
    def limit_text(self) -> str:
        return self.expected or format_duration(self.limit_seconds)

    @property
    def actual_text(self) -> str:
        return self.given or format_duration(self.actual_seconds)

    @property
    def margin_text(self) -> str:
        return "-" if self.expected else format_duration(self.margin_seconds)

    @property
    def margin_seconds(self) -> float | None:
        """Positive: time to spare; negative: how late."""
        if self.actual_seconds is None:
            return None
        return self.limit_seconds - self.actual_seconds

    @property
    def outcome(self) -> str:
        if self.target == "classification" and self.met is None:
            return "to discuss"  # over-classified: see verdicts()
        return {True: "met", False: "missed", None: "not measured"}[self.met]

    def summary(self) -> str:
        if self.target == "classification":
            return f"{self.description}: {self.outcome}"
        if self.met is None:
            return f"{self.description}: not measured ({self.reason})"
        return (
            f"{self.description}: {format_duration(self.actual_seconds)} "
            f"against {format_duration(self.limit_seconds)} ({self.outcome}, margin "
            f"{format_duration(self.margin_seconds)})"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "description": self.description,
            "limit_seconds": self.limit_seconds,
            "actual_seconds": self.actual_seconds,
            "met": self.met,
            "outcome": self.outcome,
            "margin_seconds": self.margin_seconds,
            "reason": self.reason,
        }


def judge(
    target: str,
    description: str,
    limit: float,
    actual: float | None,
    missing_reason: str,
    missing_is_miss: bool,
) -> Verdict:
    """A verdict: at the limit counts as met. An unmeasured time is a miss when the thing
    should have happened (the alert never fired) and 'not measured' when it could not be."""
    if actual is None:
        return Verdict(target, description, limit, None, False if missing_is_miss else None, missing_reason)
    return Verdict(target, description, limit, actual, actual <= limit)


def status_update_verdict(
    limit: float, detected_mono: float | None, end_mono: float | None, update_monos: list[float]
) -> Verdict:
    """Status updates must come every `limit` seconds from detection until resolution."""
    desc = "Status updates at the severity's cadence"
    if detected_mono is None or end_mono is None:
        return Verdict("status_updates", desc, limit, None, None, "the incident was never detected and closed")
    span = end_mono - detected_mono
    if span < limit and not update_monos:
        return Verdict(
            "status_updates",
            desc,
            limit,
            None,
            None,
            f"no update was due: detection to resolution took {format_duration(span)}, under the "
            f"{format_duration(limit)} cadence",
        )
    marks = [detected_mono, *sorted(u for u in update_monos if detected_mono <= u <= end_mono), end_mono]
    longest = max(b - a for a, b in pairwise(marks))
    return Verdict("status_updates", desc, limit, longest, longest <= limit)


def verdicts(events: list[Event]) -> list[Verdict]:
    """One verdict per target, from a run's events alone (its journal, plus any status updates
    merged in): the drill's pass/fail and every report format come from this one function."""
    limits: dict[str, float] = events[0].data["limits"]
    m = measures(events)
    kinds = {e.kind for e in events}
    alert = events[0].data["scenario"]["alert"]
    injected, detected = first(events, "injected"), first(events, "detected")
    late = first(events, "detected_late")  # fired, but only after the detection target
    not_reached = "the drill ended before this phase" if "aborted" in kinds or "error" in kinds else ""
    out = [
        judge(
            "detect",
            f"Time to detect ({alert} firing after injection)",
            limits["detect"],
            m.time_to_detect if late is None or injected is None else late.mono - injected.mono,
            not_reached or f"{alert} did not fire within {format_duration(limits['detect'])}",
            "detection_missed" in kinds,
        ),
        judge(
            "acknowledge",
            "Time to acknowledge (response target)",
            limits["acknowledge"],
            m.time_to_acknowledge,
            not_reached or ("no acknowledgement" if detected else "nothing to acknowledge: the alert never fired"),
            "acknowledge_missed" in kinds,
        ),
        judge(
            "mitigate",
            "Time to mitigate (service restored)",
            limits["mitigate"],
            m.time_to_mitigate,
            not_reached or "service was not restored",
            "mitigation_missed" in kinds,
        ),
        judge(
            "resolve",
            "Time to resolve (verified after revert)",
            limits["resolve"],
            m.time_to_resolve,
            not_reached or "not verified healthy after the revert",
            "verify_failed" in kinds and injected is not None,
        ),
    ]
    page = first(events, "status_page")
    out.append(
        judge(
            "status_page",
            "Status page updated after detection",
            limits["status_page_within"],
            page.mono - detected.mono if page and detected else None,
            "no status page update recorded (`drillkit update RUN_ID --status-page`)",
            False,
        )
    )
    ack = first(events, "acknowledged")
    if ack and ack.data.get("severity"):
        expected, given = events[0].data["scenario"]["severity"], ack.data["severity"]
        # more severe than the playbook's (P1 for a P2) is a point for the debrief, not a miss:
        # a responder who escalates too early costs sleep, one who under-classifies costs users
        over = str(given) < str(expected)
        out.append(
            Verdict(
                "classification",
                f"Severity classified as {given} (playbook: {expected})",
                0.0,
                None,
                None if over else given == expected,
                reason="more severe than the playbook's: a point for the debrief, not a miss" if over else "",
                expected=str(expected),
                given=str(given),
            )
        )
    end = first(events, "resolved") or first(events, "mitigated")
    out.append(
        status_update_verdict(
            limits["status_update_every"],
            detected.mono if detected else None,
            end.mono if end else None,
            [e.mono for e in events if e.kind in ("status_update", "status_page")],
        )
    )
    return out
