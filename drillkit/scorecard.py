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


@dataclass
class Scorecard:
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

    @property
    def met(self) -> int:
        return sum(1 for x in self.targets + self.checks if x.outcome in ("met", "right"))

    @property
    def missed(self) -> int:
        return sum(1 for x in self.targets + self.checks if x.outcome in ("missed", "wrong"))

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "met": self.met, "missed": self.missed}


def _off(e: Event | Action | datetime, zero: Event) -> str:
    at = e if isinstance(e, datetime) else e.at
    return "+" + format_duration((at - zero.at).total_seconds())


def _target_line(v: Verdict, events: list[Event], actions: list[Action]) -> Line:
    if v.target == "acknowledge":
        return _ack_line(v, events, actions)
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


def _severity_line(expected: str, events: list[Event], actions: list[Action]) -> Line:
    ack = first(events, "acknowledged")
    given = str(ack.data.get("severity", "")) if ack else ""
    if not given:
        given = next((a.severity.value for a in actions if a.kind is ActionKind.ACK and a.severity), "")
    if not given:
        return Line("Severity assigned", "missed", f"none given with the acknowledgement (playbook: {expected})")
    if given == expected:
        return Line("Severity assigned", "right", f"{given}, as the playbook classifies this incident")
    return Line("Severity assigned", "wrong", f"{given}; the playbook classifies this incident as {expected}")


def _channel_line(actions: list[Action], zero: Event) -> Line:
    names = [a for a in actions if a.kind is ActionKind.CHANNEL]
    if not names:
        return Line("Incident channel", "missed", "no channel declared (#incident-{date}-{short-description})")
    name = names[0].message
    m = CHANNEL_RE.fullmatch(name)
    day = zero.at.strftime("%Y-%m-%d")
    if m is None:
        return Line(
            "Incident channel", "wrong", f"{name}: expected #incident-{day}-short-description (lowercase, dashes)"
        )
    if m.group(1) != day:
        return Line("Incident channel", "wrong", f"{name}: the date should be the incident's, {day}")
    return Line("Incident channel", "right", f"{name} ({_off(names[0], zero)})")


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
    rb = sc.get("runbook", {})
    texts = [f"initial response: {s}" for s in rb.get("initial_response", [])]
    texts += [f"resolution: {s}" for s in rb.get("resolution", [])]
    hinted = {int(e.data["number"]) for e in events if e.kind == "hint_shown"}
    done = {}
    for a in actions:
        if a.kind is ActionKind.STEP_DONE and a.step not in done:
            done[a.step] = f"by {a.by} at {_off(a, zero)}"
    card.steps = [Step(n, t, done.get(n, ""), n in hinted) for n, t in enumerate(texts, 1)]
    card.hints = [
        f"{e.data['number']}: {e.data['text']} ({e.data.get('reason', '')}, {_off(e, zero)})"
        for e in events
        if e.kind == "hint_shown"
    ]
    for a in actions:
        card.people.setdefault(a.by or "someone", []).append(f"{_off(a, zero)} {_describe(a)}")
    card.debrief = _debrief(card, sc, events, len(texts))
    return card


def _outcome(events: list[Event]) -> str:
    end = first(events, "finished")
    if first(events, "gave_up"):
        return "gave up; drillkit reverted the fault"
    if first(events, "mitigated"):
        return "service restored by the responders"
    if first(events, "mitigation_missed"):
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
    wrong = [f"{x.item.lower()}: {x.detail}" for x in card.targets + card.checks if x.outcome in ("missed", "wrong")]
    out += [f"Discuss — {w}" for w in wrong]
    undone = [s.number for s in card.steps if not s.done]
    if steps:
        out.append(
            f"Runbook: {steps - len(undone)} of {steps} steps marked done; {len(card.hints)} hint(s) used."
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
            path.write_text(render_page(f"{name}.j2", fmt, card=card), encoding="utf-8")
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
            )
        )
    return {name: sorted(tries, key=lambda a: (a.date, Path(a.folder).name)) for name, tries in out.items()}


def write_attempts(root: Path) -> list[Path]:
    """attempts.md and attempts.html in `root`: every trainee's attempts at each drill."""
    from drillkit.report import render_page

    by_scenario = attempts(root)
    written = []
    for fmt, name in ATTEMPTS_FILES.items():
        path = root / name
        path.write_text(
            render_page(f"{name}.j2", fmt, by_scenario=by_scenario, generated=rfc3339_now()), encoding="utf-8"
        )
        written.append(path)
    return written


def rfc3339_now() -> str:
    from drillkit.clock import utcnow

    return rfc3339(utcnow())
