"""The drill report in the playbook's post-mortem format: Markdown, HTML, JSON, JUnit XML.

The only jinja2 importer. It renders the verdicts `drillkit.policy.verdicts` computes and judges
nothing itself. Everything comes from the run folder (journal plus the status updates written
by `drillkit update`), so `drillkit report` re-renders any run identically.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from drillkit.clock import parse_time, rfc3339
from drillkit.errors import InputError
from drillkit.journal import JOURNAL_NAME, Event, Measures, first, measures, read_journal
from drillkit.model import format_duration
from drillkit.policy import Verdict, verdicts

UPDATES_NAME = "updates.jsonl"
FORMATS = {"md": "report.md", "html": "report.html", "json": "report.json", "junit": "junit.xml"}

EVENT_TEXT = {
    "started": "Drill started",
    "steady_state_ok": "Steady state verified",
    "fault_injecting": "Injecting fault",
    "injected": "Fault took effect",
    "alert_pending": "Alert condition first true (pending)",
    "detected": "Alert firing",
    "notified": "Alertmanager notified",
    "acknowledged": "Acknowledged",
    "status_update": "Status update",
    "status_page": "Status page updated",
    "mitigated": "Service restored (steady state back)",
    "reverted": "Fault reverted",
    "resolved": "Resolved (verified healthy after revert)",
    "aborted": "Drill aborted",
    "not_started": "Drill not started",
    "detection_missed": "Alert did not fire in time",
    "acknowledge_missed": "No acknowledgement in time",
    "mitigation_missed": "Service not restored in time",
    "verify_failed": "Not healthy after revert",
    "revert_failed": "Revert failed",
    "error": "Error",
    "finished": "Drill finished",
}
TIMELINE_KINDS = set(EVENT_TEXT) - {"fault_injecting"}


def load_events(folder: Path) -> list[Event]:
    """Journal events plus status updates from other processes, on one time axis."""
    events = read_journal(folder)
    updates = folder / UPDATES_NAME if folder.is_dir() else folder.parent / UPDATES_NAME
    if updates.exists():
        start = events[0]
        for line in updates.read_text(encoding="utf-8").splitlines():
            try:
                raw = json.loads(line)
                kind, at = str(raw.pop("kind")), parse_time(str(raw.pop("at")))
            except (ValueError, KeyError, TypeError, AttributeError):
                continue  # a torn or hand-edited line: the journal is the record, keep the rest
            events.append(Event(kind, at, start.mono + (at - start.at).total_seconds(), raw))
    return sorted(events, key=lambda e: e.mono)


@dataclass(frozen=True)
class ReportData:
    run_id: str
    status: str
    reason: str
    scenario: dict[str, Any]
    events: list[Event]
    measures: Measures
    verdicts: list[Verdict]

    def to_json(self) -> dict[str, Any]:
        start = self.events[0]
        return {
            "run_id": self.run_id,
            "scenario": self.scenario["name"],
            "title": self.scenario["title"],
            "incident": self.scenario["incident"],
            "severity": self.scenario["severity"],
            "status": self.status,
            "reason": self.reason,
            "started_at": rfc3339(start.at),
            "events": [
                {
                    "kind": e.kind,
                    "at": rfc3339(e.at),
                    "offset_seconds": round(e.mono - start.mono, 6),
                    **_public(e.kind, e.data),
                }
                for e in self.events
                if e.kind != "started"
            ],
            "measures": self.measures.to_dict(),
            "verdicts": [v.to_dict() for v in self.verdicts],
            "faults": self.scenario["faults"],
        }


def _public(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    """Event data fit for a shared report: revert data (saved manifests, templates) stays in
    the journal, where `drillkit cleanup` needs it; the report keeps what happened."""
    hidden = {"scenario", "limits"} | ({"data"} if kind.startswith("revert_") else set())
    return {k: v for k, v in data.items() if k not in hidden}


def collect(folder: Path) -> ReportData:
    events = load_events(folder)
    start, end = events[0], first(events, "finished")
    return ReportData(
        run_id=str(start.data["run_id"]),
        status=str(end.data["status"]) if end else "inconclusive",
        reason=str(end.data.get("reason", "")) if end else "the run did not finish (crashed or killed)",
        scenario=start.data["scenario"],
        events=events,
        measures=measures(events),
        verdicts=verdicts(events),
    )


def parse_formats(text: str) -> tuple[str, ...]:
    """`md,json` -> ("md", "json"); an unknown name is bad input."""
    formats = tuple(f.strip() for f in text.split(",") if f.strip())
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        found = repr(unknown[0]) if unknown else "nothing"
        raise InputError(f"--format: unknown report format {found}; choose from {', '.join(FORMATS)}")
    return formats


def render(folder: Path, formats: tuple[str, ...] | list[str]) -> list[Path]:
    """Write the requested formats into the run folder; returns the paths written."""

    formats = parse_formats(",".join(formats))
    if folder.is_file():
        folder = folder.parent
    if not (folder / JOURNAL_NAME).exists():
        raise InputError(f"{folder}: no {JOURNAL_NAME} here")
    data = collect(folder)
    ctx = _template_context(data)
    written = []
    for fmt in formats:
        path = folder / FORMATS[fmt]
        if fmt == "json":
            text = json.dumps(data.to_json(), indent=2) + "\n"
        else:
            text = _environment(fmt).get_template(FORMATS[fmt] + ".j2").render(**ctx)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|#])")


def _environment(fmt: str) -> Any:
    """The template environment of one format. HTML and XML escape every value (scenario text,
    reasons and errors are not ours to trust) and drop characters XML cannot carry; Markdown
    neutralises its own control characters in every value, except code spans made by `code`."""
    import jinja2
    from markupsafe import Markup

    def md_value(value: Any) -> Any:
        if isinstance(value, Markup):
            return value
        return _MD_SPECIAL.sub(r"\\\1", " ".join(str(value).splitlines()))

    def code(value: Any) -> Markup:
        """`value` as one inline code span, whatever backticks it holds."""
        text = " ".join(str(value).splitlines())
        fence = "`" * (max((len(run) for run in re.findall("`+", text)), default=0) + 1)
        pad = " " if text.startswith("`") or text.endswith("`") else ""
        return Markup(f"{fence}{pad}{text}{pad}{fence}")

    markdown = fmt == "md"
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("drillkit", "templates"),
        autoescape=not markdown,
        finalize=md_value if markdown else (lambda v: _XML_INVALID.sub("", v) if isinstance(v, str) else v),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["dur"] = format_duration
    env.filters["time"] = lambda at: at.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"
    env.filters["code"] = code
    return env


def _template_context(d: ReportData) -> dict[str, Any]:
    start = d.events[0]
    end = first(d.events, "finished") or d.events[-1]
    injected = first(d.events, "injected")
    timeline = [
        {"at": e.at, "offset": e.mono - start.mono, "text": _event_text(e)}
        for e in d.events
        if e.kind in TIMELINE_KINDS
    ]
    missed = [v for v in d.verdicts if v.met is False]
    met = [v for v in d.verdicts if v.met is True]
    went_well = [v.summary() for v in met]
    went_wrong = [v.summary() for v in missed]
    went_wrong += [_event_text(e) for e in d.events if e.kind in ("revert_failed", "error", "aborted")]
    if any(e.kind == "resolved" for e in d.events):
        went_well.append("The fault was reverted and the system verified healthy afterwards")
    actions = [_action_for(v) for v in missed]
    actions += [f"Investigate: {_event_text(e)}" for e in d.events if e.kind in ("revert_failed", "error")]
    return {
        "d": d,
        "s": d.scenario,
        "date": start.at,
        "duration": (end.mono - (injected or start).mono),
        "timeline": timeline,
        "went_well": went_well,
        "went_wrong": went_wrong,
        "actions": actions,
        "due": (start.at + timedelta(days=14)).strftime("%Y-%m-%d"),
        "detected": first(d.events, "detected"),
        "injected": injected,
        "acknowledged": first(d.events, "acknowledged"),
        "mitigated": first(d.events, "mitigated"),
        "resolved": first(d.events, "resolved"),
        "plans": [e.data.get("plan", []) for e in d.events if e.kind == "fault_injecting"],
        "verdict_classes": {True: "met", False: "missed", None: "unmeasured"},
    }


def _event_text(e: Event) -> str:
    text = EVENT_TEXT.get(e.kind, e.kind.replace("_", " "))
    detail = {
        "injected": e.data.get("fault"),
        "detected": e.data.get("alert"),
        "alert_pending": e.data.get("alert"),
        "acknowledged": e.data.get("by"),
        "aborted": e.data.get("reason"),
        "not_started": e.data.get("reason"),
        "error": e.data.get("error"),
        "revert_failed": e.data.get("error"),
        "status_update": e.data.get("message"),
        "status_page": e.data.get("message"),
        "finished": e.data.get("status"),
    }.get(e.kind)
    return f"{text}: {detail}" if detail else text


def _action_for(v: Verdict) -> str:
    fixes = {
        "detect": "Tune the detection alert (threshold, `for:`, scrape/evaluation interval) so it fires "
        "within the target",
        "acknowledge": "Review paging and on-call routing so the alert is acknowledged within the target",
        "mitigate": "Improve automated recovery or the runbook's mitigation steps",
        "resolve": "Shorten resolution: automate the fix and the verification",
        "status_page": "Practise updating the status page within the target after detection",
        "status_updates": "Practise regular status updates at the severity's cadence",
        "classification": "Review the playbook's severity table (impact assessment) with the responder",
    }
    return f"{fixes.get(v.target, 'Review')} ({v.summary()})"
