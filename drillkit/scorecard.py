"""The trainee's scorecard: how a responder did in one exercise, and every attempt at a drill.

Computed from the run folder alone (the journal, the status updates and the responders'
actions), so `drillkit scorecard` re-renders any run: each target met or missed with its margin,
the severity assigned against the playbook's, the status-update cadence against the playbook's
(first within the status-page limit of detection, then every 30 min for P1/P2 and 2 h for
P3/P4), the incident channel against `#incident-{date}-{short-description}`, runbook steps done
and missed, hints used, who did what, and a short debrief for the facilitator. Actions taken
early or late are judged with their times ("acknowledged 40s after the target"), never dropped.
Rendering goes through drillkit.report (the jinja2 owner); the judging is here.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from drillkit.clock import rfc3339
from drillkit.journal import Event, first, printable
from drillkit.model import format_duration
from drillkit.policy import Verdict, verdicts
from drillkit.respond import Action, ActionKind, read_actions, run_folders

SCORECARD_FILES = {"md": "scorecard.md", "html": "scorecard.html", "json": "scorecard.json"}
ATTEMPTS_FILES = {"md": "attempts.md", "html": "attempts.html"}
CHANNEL_RE = re.compile(r"#incident-(\d{4}-\d{2}-\d{2})-([a-z0-9]+(?:-[a-z0-9]+)*)")


@dataclass(frozen=True)
class Line:
    """One judged item of the scorecard: what, the outcome (met / missed / not measured /
    right / wrong…), and the evidence in words."""

    item: str
    outcome: str
    detail: str = ""


@dataclass(frozen=True)
class Step:
    number: int
    text: str
    done: str = ""  # "by alice at +1m2s", or ""
    hinted: bool = False
    branch: bool = False  # a step for one situation (`when:`)
    applies: bool = True  # ... and this drill is that situation: asked about when skipped

    @property
    def ask(self) -> bool:
        """Worth asking about in the debrief: skipped, and it applied."""
        return not self.done and self.applies


@dataclass
class Scorecard:
    """One exercise, judged. `ended_at_s`: seconds from the incident report to the end;
    `marks`: what happened when (seconds from the report) for the time axis."""

    run_id: str
    scenario: str
    title: str
    incident: str
    trainee: str
    date: str
    outcome: str
    targets: list[Line] = field(default_factory=list)
    checks: list[Line] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    hints: list[str] = field(default_factory=list)
    people: dict[str, list[str]] = field(default_factory=dict)
    debrief: list[str] = field(default_factory=list)
    badge: str = ""  # restored / self-healed / gave up / timed out / ended
    marks: list[Mark] = field(default_factory=list)
    spans: list[Span] = field(default_factory=list)
    ended_at_s: float = 0.0
    times: dict[str, float | None] = field(default_factory=dict)  # seconds: acknowledge, mitigate

    @property
    def met(self) -> int:
        return sum(1 for x in self.targets + self.checks if x.outcome in ("met", "right"))

    @property
    def missed(self) -> int:
        return sum(1 for x in self.targets + self.checks if x.outcome in ("missed", "wrong"))

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "met": self.met, "missed": self.missed}


@dataclass(frozen=True)
class Mark:
    """A point on the scorecard's time axis: seconds after the incident report."""

    at_s: float
    label: str
    who: str = ""  # a person (a trainee's action) or "" (the system: page, restored)


@dataclass(frozen=True)
class Span:
    """A stretch on the time axis: the alert firing, the service down."""

    lane: str
    start_s: float
    end_s: float


def _off(e: Event | Action | datetime, zero: Event) -> str:
    at = e if isinstance(e, datetime) else e.at
    return "+" + format_duration((at - zero.at).total_seconds())


def _target_line(v: Verdict, events: list[Event], actions: list[Action]) -> Line:
    if _self_healed(events) and v.target in ("acknowledge", "mitigate"):
        return Line(v.description, "not needed", "the service recovered by itself before anyone could act")
    if v.target == "acknowledge":
        return _ack_line(v, events, actions)
    missed = first(events, "mitigation_missed")
    if v.target == "mitigate" and missed is not None and missed.data.get("ended"):
        after = format_duration(float(missed.data.get("after", 0.0)))
        limit = format_duration(float(missed.data.get("within", v.limit_seconds)))
        if missed.data["ended"] == "gave_up":
            why = f"gave up at +{after}, before the service was restored"
        else:
            why = f"time ran out at {limit} (the exercise's limit) with the service still down"
        return Line(v.description, "missed", f"{why}; target {format_duration(v.limit_seconds)}")
    if v.met is None:
        return Line(v.description, "not measured", v.reason)
    margin = v.margin_seconds or 0.0
    spare = f"{format_duration(margin)} to spare" if margin >= 0 else f"{format_duration(-margin)} late"
    return Line(
        v.description,
        v.outcome,
        f"{format_duration(v.actual_seconds)} against {format_duration(v.limit_seconds)}: {spare}",
    )


def _ack_line(v: Verdict, events: list[Event], actions: list[Action]) -> Line:
    """The acknowledgement, with early and late acks said as such."""
    detected = first(events, "detected")
    acks = [a for a in actions if a.kind is ActionKind.ACK]
    if detected is None:
        return Line(v.description, "not measured", v.reason)
    limit = v.limit_seconds
    if not acks:
        return Line(v.description, v.outcome, f"no acknowledgement (target {format_duration(limit)} after the page)")
    ack = acks[0]
    after = (ack.at - detected.at).total_seconds()
    if after < 0:
        return Line(v.description, "met", f"acknowledged {format_duration(-after)} before the alert fired")
    if after <= limit:
        return Line(
            v.description,
            "met",
            f"acknowledged {format_duration(after)} after the page, "
            f"{format_duration(limit - after)} within the {format_duration(limit)} target",
        )
    return Line(
        v.description,
        "missed",
        f"acknowledged {format_duration(after - limit)} after the target "
        f"({format_duration(after)} after the page; target {format_duration(limit)})",
    )


def _self_healed(events: list[Event]) -> bool:
    mitigated = first(events, "mitigated")
    return mitigated is not None and mitigated.data.get("by") == "itself"


def _severity_line(expected: str, events: list[Event], actions: list[Action]) -> Line:
    ack = first(events, "acknowledged")
    given = str(ack.data.get("severity", "")) if ack else ""
    if not given:
        given = next((a.severity.value for a in actions if a.kind is ActionKind.ACK and a.severity), "")
    if not given and _self_healed(events):
        return Line("Severity assigned", "not needed", f"nothing to classify in time (playbook: {expected})")
    if not given:
        return Line("Severity assigned", "missed", f"none given with the acknowledgement (playbook: {expected})")
    if given == expected:
        return Line("Severity assigned", "right", f"{given}, as the playbook classifies this incident")
    if given < expected:  # P1 for a P2: more severe than needed
        return Line(
            "Severity assigned",
            "to discuss",
            f"{given}, more severe than the playbook's {expected}: over-classifying is not a miss; talk it through",
        )
    return Line("Severity assigned", "wrong", f"{given}; the playbook classifies this incident as {expected}")


def _channel_line(actions: list[Action], zero: Event) -> Line:
    names = [a for a in actions if a.kind is ActionKind.CHANNEL]
    if not names:
        return Line("Incident channel", "missed", "no channel declared (#incident-{date}-{short-description})")
    name = names[0].message
    m = CHANNEL_RE.fullmatch(name)
    day = zero.at.strftime("%Y-%m-%d")
    if m is None:
        return Line("Incident channel", "wrong", f"{name}: {channel_problem(name, day)}")
    if m.group(1) != day:
        return Line("Incident channel", "wrong", f"{name}: the date should be the incident's, {day}")
    return Line("Incident channel", "right", f"{name} ({_off(names[0], zero)})")


def channel_note(name: str, day: str) -> str:
    """What a responder is told when declaring `name` on `day`: "" if it follows the convention."""
    m = CHANNEL_RE.fullmatch(name)
    if m is None:
        return f"not the playbook's convention: {channel_problem(name, day)}"
    if m.group(1) != day:
        return f"the date should be the incident's, {day}"
    return ""


def channel_problem(name: str, day: str) -> str:
    """Which part of `#incident-{date}-{short-description}` `name` breaks, in words."""
    want = f"expected #incident-{day}-short-description"
    if not name.startswith("#"):
        return f"a channel name starts with `#` ({want})"
    if not name.startswith("#incident-"):
        return f"the prefix should be `#incident-` ({want})"
    rest = name[len("#incident-") :]
    if not re.match(r"\d{4}-\d{2}-\d{2}(-|$)", rest):
        return f"the date (YYYY-MM-DD) should follow `#incident-` ({want})"
    desc = rest[11:]
    if not desc:
        return f"the short description is missing after the date ({want})"
    if desc != desc.lower():
        return f"the description should be lowercase ({want})"
    return f"the description takes letters, digits and single dashes only ({want})"


def _updates_lines(vs: list[Verdict], events: list[Event]) -> list[Line]:
    out = []
    detected = first(events, "detected")
    updates = [e for e in events if e.kind in ("status_update", "status_page")]
    for v in vs:
        if v.target not in ("status_page", "status_updates"):
            continue
        line = _target_line(v, events, [])
        if v.target == "status_updates" and detected and updates:
            states = ", ".join(
                f"{_off(e, detected).replace('+', '+', 1)} {e.data.get('state') or e.kind.replace('_', ' ')}"
                for e in updates
            )
            line = Line(line.item, line.outcome, f"{line.detail}; updates after the page: {states}")
        out.append(line)
    return out


def build_scorecard(folder: Path) -> Scorecard:
    from drillkit.report import load_events

    events = load_events(folder)
    actions = read_actions(folder)
    zero = events[0]
    sc: dict[str, Any] = zero.data["scenario"]
    vs = verdicts(events)
    exercise = first(events, "exercise_started")
    trainee = str(exercise.data.get("trainee", "")) if exercise else ""
    card = Scorecard(
        run_id=str(zero.data["run_id"]),
        scenario=str(sc["name"]),
        title=str(sc["title"]),
        incident=str(sc["incident"]),
        trainee=trainee,
        date=zero.at.strftime("%Y-%m-%d %H:%M UTC"),
        outcome=_outcome(events),
    )
    card.targets = [_target_line(v, events, actions) for v in vs if v.target in ("detect", "acknowledge")]
    card.targets += [_target_line(v, events, actions) for v in vs if v.target in ("mitigate", "resolve")]
    card.checks = [_severity_line(str(sc["severity"]), events, actions), *_updates_lines(vs, events)]
    card.checks.append(_channel_line(actions, zero))
    if _self_healed(events):  # nothing to communicate about an incident nobody could act on
        card.checks = [x if x.outcome != "missed" else Line(x.item, "not needed", x.detail) for x in card.checks]
    rb = sc.get("runbook", {})
    texts = [(f"initial response: {s}", False, True) for s in rb.get("initial_response", [])]
    texts += [(f"resolution: {s}", False, True) for s in rb.get("resolution", [])]
    texts += [(f"resolution: if {b['when']}: {b['do']}", True, bool(b.get("applies"))) for b in rb.get("branches", [])]
    hinted = {int(e.data["number"]) for e in events if e.kind == "hint_shown"}
    done = {}
    for a in actions:
        if a.kind is ActionKind.STEP_DONE and a.step not in done:
            done[a.step] = f"by {a.by} at {_off(a, zero)}"
    card.steps = [
        Step(n, t, done.get(n, ""), n in hinted, branch, applies) for n, (t, branch, applies) in enumerate(texts, 1)
    ]
    card.hints = [
        f"{e.data['number']}: {e.data['text']} ({e.data.get('reason', '')}, {_off(e, zero)})"
        for e in events
        if e.kind == "hint_shown"
    ]
    for a in actions:
        card.people.setdefault(a.by or "someone", []).append(f"{_off(a, zero)} {_describe(a)}")
    card.debrief = _debrief(card, sc, events, len(texts))
    card.times = {v.target: v.actual_seconds for v in vs if v.target in ("acknowledge", "mitigate")}
    card.badge = _badge(events)
    card.marks, card.spans, card.ended_at_s = _timeline(events, actions)
    return card


def _badge(events: list[Event]) -> str:
    if _self_healed(events):
        return "self-healed"
    if first(events, "gave_up"):
        return "gave up"
    if first(events, "mitigated"):
        return "restored"
    if first(events, "mitigation_missed"):
        return "time ran out"
    return "ended"


def _timeline(events: list[Event], actions: list[Action]) -> tuple[list[Mark], list[Span], float]:
    """The time axis, in seconds from the incident report (`injected`): the page, the service
    down until restored, and every action, by whom."""
    start = first(events, "exercise_started") or first(events, "injected") or events[0]
    end = first(events, "finished") or events[-1]

    def s(at: datetime) -> float:
        return round((at - start.at).total_seconds(), 3)

    total = max(s(end.at), 1.0)
    detected, mitigated = first(events, "detected"), first(events, "mitigated")
    back = mitigated or first(events, "reverted") or end
    marks = [Mark(0.0, "incident report")]
    spans = [Span("service down", 0.0, s(back.at))]
    if detected is not None:
        marks.append(Mark(s(detected.at), "page"))
        spans.append(Span("alert firing", s(detected.at), s(back.at)))
    if mitigated is not None:
        marks.append(Mark(s(mitigated.at), "service restored"))
    marks += [Mark(s(a.at), _describe(a).split(":")[0], a.by or "someone") for a in actions if s(a.at) >= 0]
    return marks, spans, total


def _outcome(events: list[Event]) -> str:
    end = first(events, "finished")
    missed = first(events, "mitigation_missed")
    after = format_duration(float(missed.data.get("after", 0.0))) if missed and "after" in missed.data else ""
    if first(events, "gave_up"):
        return f"gave up{' at +' + after if after else ''}; drillkit reverted the fault"
    if _self_healed(events):
        return "the service recovered by itself before anyone could act: no response needed"
    if first(events, "mitigated"):
        return "service restored by the responders"
    if missed is not None and missed.data.get("ended") == "time_limit":
        return f"time ran out at {format_duration(float(missed.data['within']))}; drillkit reverted the fault"
    if missed is not None:
        return "not restored in time; drillkit reverted the fault"
    return f"ended: {end.data.get('status')} {end.data.get('reason', '')}".strip() if end else "did not finish"


def _describe(a: Action) -> str:
    text = {
        ActionKind.ACK: f"acknowledged{' as ' + a.severity.value if a.severity else ''}",
        ActionKind.STATUS_UPDATE: f"status update{' (' + a.state + ')' if a.state else ''}",
        ActionKind.STATUS_PAGE: f"status page{' (' + a.state + ')' if a.state else ''}",
        ActionKind.CHANNEL: "declared channel",
        ActionKind.STEP_DONE: f"runbook step {a.step} done",
        ActionKind.NOTE: "note",
        ActionKind.HANDOVER: f"handed {a.role.value if a.role else 'a role'} over to {a.to}",
        ActionKind.HINT_REQUEST: "asked for a hint",
        ActionKind.GIVE_UP: "gave up",
    }[a.kind]
    return f"{text}: {a.message}" if a.message else text


def _debrief(card: Scorecard, sc: dict[str, Any], events: list[Event], steps: int) -> list[str]:
    faults = ", ".join(f"`{f['kind']}`" for f in sc.get("faults", []))
    out = [f"What happened: {sc.get('description') or sc['title']} (fault: {faults})."]
    out.append(f"Outcome: {card.outcome}; {card.met} met, {card.missed} missed.")
    wrong = [
        f"{x.item.lower()}: {x.detail}"
        for x in card.targets + card.checks
        if x.outcome in ("missed", "wrong", "to discuss")
    ]
    out += [f"Discuss — {w}" for w in wrong]
    undone = [s.number for s in card.steps if s.ask]
    done = sum(1 for s in card.steps if s.done)
    skipped = sum(1 for s in card.steps if not s.done and not s.applies)
    if steps:
        out.append(
            f"Runbook: {done} of {steps} steps marked done; {len(card.hints)} hint(s) used."
            + (f" {skipped} branch(es) for other situations left out." if skipped else "")
            + (f" Ask about steps {', '.join(map(str, undone))}." if undone else "")
        )
    out.append("Ask: what told you where to look first, and what would have found it sooner?")
    return out


def write_scorecard(folder: Path) -> list[Path]:
    """scorecard.md, .html and .json in the run folder."""
    from drillkit.report import render_page

    card = build_scorecard(folder)
    written = []
    for fmt, name in SCORECARD_FILES.items():
        path = folder / name
        if fmt == "json":
            path.write_text(json.dumps(card.to_dict(), indent=2) + "\n", encoding="utf-8")
        else:
            from drillkit.timeaxis import timeline_svg

            svgs = {"timeline": timeline_svg(card)} if fmt == "html" else None
            path.write_text(render_page(f"{name}.j2", fmt, svgs, card=card), encoding="utf-8")
        written.append(path)
    return written


@dataclass(frozen=True)
class Attempt:
    folder: str
    trainee: str
    date: str
    outcome: str
    met: int
    missed: int
    severity: str
    hints: int
    scenario: str = ""
    acknowledged: str = "-"  # time to acknowledge, as the scorecard measured it
    restored: str = "-"  # time to restore the service


def attempts(root: Path) -> dict[str, list[Attempt]]:
    """Every exercise under `root` (run folders at any depth, as `report index` finds them) that
    has a scorecard, by scenario, oldest first."""
    out: dict[str, list[Attempt]] = {}
    for folder in run_folders(root):
        path = folder / SCORECARD_FILES["json"]
        if not path.is_file():
            continue
        raw = printable(json.loads(path.read_text(encoding="utf-8", errors="replace")))
        severity = next((c["outcome"] for c in raw["checks"] if c["item"] == "Severity assigned"), "-")
        times = raw.get("times") or {}
        out.setdefault(raw["scenario"], []).append(
            Attempt(
                folder.relative_to(root).as_posix(),
                raw["trainee"] or "-",
                raw["date"],
                raw["outcome"],
                raw["met"],
                raw["missed"],
                severity,
                len(raw["hints"]),
                raw["scenario"],
                format_duration(times.get("acknowledge")),
                format_duration(times.get("mitigate")),
            )
        )
    return {name: sorted(tries, key=lambda a: (a.date, Path(a.folder).name)) for name, tries in out.items()}


def write_attempts(root: Path) -> list[Path]:
    """attempts.md and attempts.html in `root`: every trainee's attempts at each drill."""
    from drillkit.report import render_page

    by_scenario = attempts(root)
    by_trainee: dict[str, list[Attempt]] = {}
    for tries in by_scenario.values():
        for a in tries:
            by_trainee.setdefault(a.trainee, []).append(a)
    by_trainee = {t: sorted(tries, key=lambda a: a.date) for t, tries in sorted(by_trainee.items())}
    written = []
    for fmt, name in ATTEMPTS_FILES.items():
        path = root / name
        path.write_text(
            render_page(f"{name}.j2", fmt, by_scenario=by_scenario, by_trainee=by_trainee, generated=rfc3339_now()),
            encoding="utf-8",
        )
        written.append(path)
    return written


def rfc3339_now() -> str:
    from drillkit.clock import utcnow

    return rfc3339(utcnow())
