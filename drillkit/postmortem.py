"""What the post-mortem says beyond the verdicts, derived from a run's events: the incident
channel, responders and their roles, status-page entries with their states, the measured
impact, links to each query in Prometheus, what went well and wrong, and the action items.

The playbook's template and communication rules are the reference (`#incident-{date}-{short-
description}`, status page within 10 minutes and updated when resolved, the four response
roles). Plain values out; drillkit.report formats them, drillkit.policy keeps the verdicts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from drillkit.evidence import MeasuredImpact, measure_impact
from drillkit.journal import Event, first
from drillkit.model import format_duration
from drillkit.policy import ActionDefaults, Verdict
from drillkit.respond import Role

STATUS_WORDS = {
    "passed": ("green", "every measured target met"),
    "failed": ("red", "a target was missed or a revert failed"),
    "aborted": ("orange", "stopped before the end, reverted"),
    "not-started": ("grey", "nothing injected: retry later"),
    "inconclusive": ("amber", "something broke: the drill proves nothing"),
}


@dataclass(frozen=True)
class Glance:
    """The status and the verdict counts, for the report's first lines."""

    status: str
    color: str
    meaning: str
    met: int
    missed: int
    unmeasured: int
    missed_names: tuple[str, ...]


def glance(status: str, verdicts: list[Verdict]) -> Glance:
    color, meaning = STATUS_WORDS.get(status, ("amber", "unknown"))
    return Glance(
        status,
        color,
        meaning,
        sum(v.met is True for v in verdicts),
        sum(v.met is False for v in verdicts),
        sum(v.met is None for v in verdicts),
        tuple(v.description for v in verdicts if v.met is False),
    )


def channel(events: list[Event]) -> str:
    """`#incident-{date}-{short-description}`: the drill's start date, the scenario's `channel`
    (else its name); Slack's 80-character limit kept."""
    sc = events[0].data["scenario"]
    short = sc.get("channel") or sc["name"]
    return f"#incident-{events[0].at:%Y-%m-%d}-{short}"[:80]


def declared_channel(events: list[Event]) -> Event | None:
    """The responders' `drillkit channel` action, if they opened one."""
    return first(events, "channel")


@dataclass(frozen=True)
class Responder:
    name: str
    roles: tuple[str, ...]
    did: tuple[str, ...]


def responders(events: list[Event]) -> list[Responder]:
    """Everyone who acknowledged or wrote an update, in order of their first action, with the
    roles they gave (`drillkit update --by --role`) and what they did."""
    detected = first(events, "detected") or first(events, "detected_late")
    seen: dict[str, tuple[list[str], list[str]]] = {}
    actions = {
        "channel": "opened the incident channel",
        "step_done": "did runbook steps",
        "note": "wrote notes",
        "hint_request": "asked for hints",
        "give_up": "gave up",
    }
    for e in events:
        if e.kind in actions and "fault" not in e.data:  # a fault's own `note` is not a responder's
            seen.setdefault(str(e.data.get("by") or "unnamed"), ([], []))[1].append(actions[e.kind])
        elif e.kind == "handover" and e.data.get("to"):
            roles, did = seen.setdefault(str(e.data["to"]), ([], []))
            roles.append(f"{e.data.get('role', '')} (handed over by {e.data.get('by') or 'unnamed'})")
            did.append("took over a role")
        elif e.kind == "acknowledged":
            auto = e.data.get("source") == "auto"
            name = "drillkit" if auto else str(e.data.get("by") or "unnamed")
            roles, did = seen.setdefault(name, ([], []))
            roles.append("auto-acknowledge, unattended run" if auto else "first responder")
            after = f" {format_duration(e.mono - detected.mono)} after the alert fired" if detected else ""
            did.append(f"acknowledged the page{after}" + ("" if auto else f" ({e.data.get('source', '')})"))
        elif e.kind in ("status_update", "status_page"):
            name = str(e.data.get("by") or "unnamed")
            roles, did = seen.setdefault(name, ([], []))
            if (role := e.data.get("role")) and role not in roles:
                roles.append(str(role))
            did.append("updated the status page" if e.kind == "status_page" else "posted a status update")
    out = []
    for name, (roles, did) in seen.items():
        counted = [f"{d} ({did.count(d)}x)" if did.count(d) > 1 else d for d in dict.fromkeys(did)]
        out.append(Responder(name, tuple(roles), tuple(counted)))
    return out


def roles_untaken(events: list[Event]) -> list[str]:
    """The playbook's roles nobody named in an update or a handover (none are expected of an
    unattended run: nobody wrote anything)."""
    people = [e for e in events if e.kind in ("status_update", "status_page", "handover")]
    if not people:
        return []
    taken = {e.data.get("role") for e in people}
    return [r.value for r in Role if r.value not in taken]


@dataclass(frozen=True)
class PageEntry:
    at: datetime
    after_detection: float | None
    state: str
    message: str
    by: str


def status_page(events: list[Event]) -> list[PageEntry]:
    detected = first(events, "detected") or first(events, "detected_late")
    return [
        PageEntry(
            e.at,
            e.mono - detected.mono if detected else None,
            str(e.data.get("state", "")),
            str(e.data.get("message", "")),
            str(e.data.get("by", "")),
        )
        for e in events
        if e.kind == "status_page"
    ]


def impact(events: list[Event], saved: dict[str, Any] | None) -> MeasuredImpact | None:
    """The measured impact over the drill window (the fault taking effect to the drill's end)."""
    sc = events[0].data["scenario"]
    injected, end = first(events, "injected"), first(events, "finished") or events[-1]
    if not sc.get("impact") or saved is None or injected is None:
        return None
    return measure_impact(saved, injected.at.timestamp(), end.at.timestamp(), float(sc["impact"]["threshold"]))


def impact_text(m: MeasuredImpact) -> str:
    failed = f"{m.failed:.0f} failed request{'s' if round(m.failed) != 1 else ''}"
    if m.requests is not None:
        rate = f"{100 * m.error_rate:.1f}%" if m.error_rate is not None else "no requests"
        failed += f" of {m.requests:.0f} ({rate} error rate)"
    if m.first_affected is None or m.last_affected is None:
        return f"{failed} during the drill; users were never affected beyond the threshold"
    return (
        f"{failed} during the drill; users affected for {format_duration(m.affected_seconds)} "
        f"(from +{format_duration(m.first_affected)} to +{format_duration(m.last_affected)} "
        "after the fault took effect)"
    )


@dataclass(frozen=True)
class Query:
    label: str
    expr: str
    link: str


def prometheus_link(base: str, expr: str, start: datetime, end: datetime) -> str:
    """The Prometheus graph page showing `expr` over [start, end] (UTC), credentials stripped."""
    parts = urlsplit(base)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    netloc += f":{parts.port}" if parts.port else ""
    seconds = max(60, int((end - start).total_seconds()) + 1)
    params = {
        "g0.expr": expr,
        "g0.tab": "0",
        "g0.range_input": f"{seconds}s",
        "g0.end_input": f"{end:%Y-%m-%d %H:%M:%S}",
        "g0.moment_input": f"{end:%Y-%m-%d %H:%M:%S}",
    }
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/") + "/graph", urlencode(params), ""))


def queries(events: list[Event], saved: dict[str, Any] | None) -> list[Query]:
    """Every PromQL expression of the drill with a link to it over the drill (with margins)."""
    start, sc = events[0], events[0].data["scenario"]
    base = str(start.data.get("prometheus") or "")
    if not base:
        return []
    end = (first(events, "finished") or events[-1]).at + timedelta(seconds=30)
    begin = start.at - timedelta(seconds=30)
    labels = {p["expr"]: f"probe: {p['name']}" for p in sc["steady_state"]}
    alert = sc["alert"]
    items = [(f"alert {alert}: pending and firing", f'ALERTS{{alertname="{alert}"}}')]
    items += [(labels[p["expr"]], p["expr"]) for p in sc["steady_state"]]
    if saved is not None:  # the rule's expression is only known from the saved series
        items += [(q["label"], q["expr"]) for q in saved.get("queries", []) if q.get("role") == "alert"]
    items += [(f"abort condition: {c['name'] or c['expr']}", c["expr"]) for c in sc.get("abort_when", [])]
    if sc.get("impact"):
        items.append(("impact: failed requests per second", sc["impact"]["errors"]))
        if sc["impact"]["requests"]:
            items.append(("impact: requests per second", sc["impact"]["requests"]))
    return [Query(label, expr, prometheus_link(base, expr, begin, end)) for label, expr in items]


def went_well(events: list[Event], verdicts: list[Verdict], measured: MeasuredImpact | None) -> list[str]:
    """What the drill showed working, in words and with evidence the targets table lacks (who,
    how, which mechanism); the table's verdicts are not repeated."""
    sc = events[0].data["scenario"]
    met = {v.target for v in verdicts if v.met is True}
    injected, detected = first(events, "injected"), first(events, "detected")
    out = []
    if detected and injected and "detect" in met:
        pending = next((e for e in events if e.kind == "alert_pending" and e.data.get("fired") is not False), None)
        how = (
            f"pending {format_duration(pending.mono - injected.mono)} after the fault took effect, then firing "
            f"after its `for: {detected.data.get('for_seconds', 0):g}s`"
            if pending
            else f"firing {format_duration(detected.mono - injected.mono)} after the fault took effect"
        )
        out.append(f"The alert `{sc['alert']}` caught the incident on its own: {how}; nobody had to notice it by hand")
    notified = first(events, "notified")
    if notified and detected:
        out.append(
            f"Alertmanager had the alert {format_duration(max(0.0, notified.mono - detected.mono))} after it fired: "
            "the page went out"
        )
    ack = first(events, "acknowledged")
    if ack and ack.data.get("source") != "auto" and "acknowledge" in met:
        out.append(f"{ack.data.get('by') or 'The responder'} took the page ({ack.data.get('source')})")
    if "classification" in met and ack:
        out.append(f"{ack.data.get('by')} classified the incident as the playbook does ({ack.data.get('severity')})")
    reverted, mitigated = first(events, "reverted"), first(events, "mitigated")
    if mitigated and "mitigate" in met:
        if sc.get("recovery_action") == "revert" and reverted and reverted.mono <= mitigated.mono:
            back = format_duration(mitigated.mono - reverted.mono)
            out.append(f"Undoing the cause was enough: users were served again {back} after the revert")
        else:
            out.append("Service came back before drillkit reverted anything (self-healing or the responders' fix)")
    if first(events, "resolved"):
        probes = ", ".join(p["name"] for p in sc["steady_state"])
        out.append(f"Every revert ran and the steady state held again afterwards ({probes})")
    if sc.get("abort_when") and injected and not first(events, "aborted"):
        out.append("No abort condition fired: the harm stayed inside the guardrails")
    if measured is not None and measured.failed < 0.5 and injected:
        served = f" ({measured.requests:.0f} served)" if measured.requests else ""
        out.append(f"No request failed during the drill{served}")
    entries = status_page(events)
    if entries and "status_page" in met:
        states = " → ".join(dict.fromkeys(e.state for e in entries if e.state)) or "no states given"
        # "kept current" only if it ended on `resolved`: went_wrong says so otherwise
        current = not first(events, "resolved") or entries[-1].state == "resolved"
        what = "kept current" if current else "first updated in time"
        out.append(f"The status page was {what}: {len(entries)} entries ({states})")
    named = [r for r in responders(events) if r.roles and not r.name.startswith("drillkit")]
    if named:
        out.append("Roles were taken: " + "; ".join(f"{r.name} as {', '.join(r.roles)}" for r in named))
    return out


def miss(events: list[Event]) -> tuple[str, str] | None:
    """Why the alert missed its target, and the action that follows from it; None if it did
    not miss (or an old journal says nothing). Causes as `alertcheck.MissCause` journals them;
    a `detected_late` event makes it "fired after the target"."""
    missed, late, injected = (
        first(events, "detection_missed"),
        first(events, "detected_late"),
        first(events, "injected"),
    )
    if missed is None:
        return None
    alert = f"`{missed.data.get('alert')}`"
    if late is not None and injected is not None:
        took = format_duration(late.mono - injected.mono)
        target = format_duration(missed.data.get("within"))
        return (
            f"Why the alert missed: fired after the target: {alert} fired {took} after the fault took effect "
            f"(target {target})",
            f"Make {alert} fire sooner (a shorter `for:`, a faster evaluation interval, a window that reacts "
            f"sooner) or agree a detection target above {took}",
        )
    cause, why = missed.data.get("cause"), missed.data.get("why", "")
    if cause == "no series":
        return (
            f"Why the alert missed: no series: {why}",
            f"Make the metrics {alert} reads exist where it runs ({why}): is the exporter scraped, was a metric or "
            "label renamed? No threshold or `for:` change can make it fire",
        )
    if cause == "pending then dropped":
        return (
            f"Why the alert missed: {why}",
            f"{alert} saw the incident but dropped it: its condition flapped or its `for:` is longer than the "
            "harm lasts; smooth the expression (a longer window) or shorten `for:`",
        )
    if cause == "condition never true":
        return (
            f"Why the alert missed: condition never true: {why}",
            f"The condition of {alert} never held while the fault was in effect: compare its threshold with "
            "what the fault did to the metric (the alert chart) and lower it, or alert on a symptom users feel",
        )
    return None


def went_wrong(events: list[Event], verdicts: list[Verdict], measured: MeasuredImpact | None) -> list[str]:
    out = [v.summary() for v in verdicts if v.met is False]
    if (explained := miss(events)) is not None:
        out.append(explained[0])
    for e in events:
        if e.kind == "revert_failed":
            out.append(f"Revert failed: {e.data.get('error')}")
        elif e.kind == "error":
            out.append(f"Error: {e.data.get('error')}")
        elif e.kind == "aborted":
            out.append(f"Drill aborted: {e.data.get('reason')}")
    if measured is not None and measured.failed >= 0.5:
        out.append(f"Users noticed: {impact_text(measured)}")
    entries = status_page(events)
    if entries and first(events, "resolved") and entries[-1].state != "resolved":
        out.append(
            f"The status page still said `{entries[-1].state or 'no state'}` when the drill ended: the playbook "
            "updates it when resolved (`drillkit update RUN_ID MESSAGE --state resolved`)"
        )
    return out


@dataclass(frozen=True)
class ActionItem:
    text: str
    owner: str  # empty: nobody named yet
    due: str


FIXES = {
    "detect": "Tune the detection alert (threshold, `for:`, scrape/evaluation interval) so it fires within the target",
    "acknowledge": "Review paging and on-call routing so the alert is acknowledged within the target",
    "mitigate": "Improve automated recovery or the runbook's mitigation steps",
    "resolve": "Shorten resolution: automate the fix and the verification",
    "status_page": "Practise updating the status page within the target after detection",
    "status_updates": "Practise regular status updates at the severity's cadence",
    "classification": "Review the playbook's severity table (impact assessment) with the responder",
}


def action_items(events: list[Event], verdicts: list[Verdict], defaults: ActionDefaults) -> list[ActionItem]:
    """One item per miss and per failure, owned by `--owner` (else the template's [Name]) and due
    `--due-in` after the drill."""
    owner = defaults.owner  # empty: the template's [Name], to fill in
    due = f"{events[0].at + timedelta(seconds=defaults.due_in):%Y-%m-%d}"
    explained = miss(events)
    texts = [
        f"{explained[1] if v.target == 'detect' and explained else FIXES.get(v.target, 'Review')} ({v.summary()})"
        for v in verdicts
        if v.met is False
    ]
    texts += [f"Investigate: {e.data.get('error')}" for e in events if e.kind in ("revert_failed", "error")]
    if not texts:
        texts = ["Review this drill in the next post-mortem meeting"]
    return [ActionItem(t, owner, due) for t in texts]
