"""The drill report in the playbook's post-mortem format: Markdown, HTML, JSON, JUnit XML.

The only jinja2 importer. It renders the verdicts `drillkit.policy.verdicts` computes and judges
nothing itself. Everything comes from the run folder (journal plus the status updates written
by `drillkit update`), so `drillkit report` re-renders any run identically.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drillkit import postmortem
from drillkit.clock import rfc3339
from drillkit.errors import InputError
from drillkit.evidence import SERIES_NAME, load_series
from drillkit.journal import (
    JOURNAL_NAME,
    KEEP_FIRST,
    KEEP_LAST,
    MAX_LINE,
    Event,
    Measures,
    Omitted,
    digest,
    first,
    held,
    iter_journal,
    measures,
    printable,
)
from drillkit.model import format_duration
from drillkit.policy import ActionDefaults, Verdict, verdicts
from drillkit.updates import read_updates

__all__ = [
    "SERIES_NAME",
    "collect",
    "load_events",
    "render",
    "render_page",
    "render_summary",
    "summary_row",
    "write_page",
]

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
    "detected_late": "Alert firing (after the detection target)",
    "acknowledge_missed": "No acknowledgement in time",
    "mitigation_missed": "Service not restored in time",
    "verify_failed": "Not healthy after revert",
    "revert_failed": "Revert failed",
    "error": "Error",
    "finished": "Drill finished",
}
TIMELINE_KINDS = set(EVENT_TEXT) - {"fault_injecting"}


def load_events(folder: Path) -> list[Event]:
    """Journal events plus status updates from other processes, on one time axis (a journal's
    floods counted, not kept: see _read)."""
    return _read(folder)[0]


def _read(folder: Path) -> tuple[list[Event], list[Omitted]]:
    """What a report reads from a run folder, in memory bounded whatever the journal's size:
    the journal streamed into a digest (each kind's first and latest events, the rest counted),
    plus the status updates; text made fit to write out as UTF-8."""
    kept = digest(iter_journal(folder, max_line=MAX_LINE))
    events = kept.events + read_updates(folder if folder.is_dir() else folder.parent, kept.events[0])
    shown = [Event(printable(e.kind), e.at, e.mono, printable(e.data), e.line) for e in events]
    return sorted(shown, key=lambda e: e.mono), kept.omitted


@dataclass(frozen=True)
class ReportData:
    run_id: str
    status: str
    reason: str
    scenario: dict[str, Any]
    events: list[Event]
    measures: Measures
    verdicts: list[Verdict]
    omitted: tuple[Omitted, ...] = ()  # the journal's floods, counted (see journal.digest)

    def to_json(self) -> dict[str, Any]:
        start = self.events[0]
        doc = {
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
        if self.omitted:  # only a flooded journal has this key: every other report.json stays as it was
            doc["omitted_events"] = [
                {
                    "kind": o.kind,
                    "count": o.count,
                    "first_at": rfc3339(o.first_at),
                    "last_at": rfc3339(o.last_at),
                    "first_offset_seconds": round(o.first_mono - start.mono, 6),
                    "last_offset_seconds": round(o.last_mono - start.mono, 6),
                }
                for o in self.omitted
            ]
        return doc


def _public(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    """Event data fit for a shared report: revert data (saved manifests, templates) stays in
    the journal, where `drillkit cleanup` needs it; the report keeps what happened."""
    hidden = {"scenario", "limits"} | ({"data"} if kind.startswith("revert_") else set())
    return {k: v for k, v in data.items() if k not in hidden}


UNFINISHED = {True: "the drill is still running", False: "the run did not finish (crashed or killed)"}


def collect(folder: Path) -> ReportData:
    events, omitted = _read(folder)
    start, end = events[0], first(events, "finished")
    live = end is None and held(folder / JOURNAL_NAME)  # a drill still running: `index` says so
    return ReportData(
        run_id=str(start.data["run_id"]),
        status=str(end.data["status"]) if end else ("running" if live else "inconclusive"),
        reason=str(end.data.get("reason", "")) if end else UNFINISHED[live],
        scenario=start.data["scenario"],
        events=events,
        measures=measures(events),
        verdicts=verdicts(events),
        omitted=tuple(omitted),
    )


def parse_formats(text: str) -> tuple[str, ...]:
    """`md,json` -> ("md", "json"); an unknown name is bad input."""
    formats = tuple(f.strip() for f in text.split(",") if f.strip())
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        found = repr(unknown[0]) if unknown else "nothing"
        raise InputError(f"--format: unknown report format {found}; choose from {', '.join(FORMATS)}")
    return formats


def render(
    folder: Path, formats: tuple[str, ...] | list[str], owner: str | None = None, due_in: float | None = None
) -> list[Path]:
    """Write the requested formats into the run folder; returns the paths written. `owner` and
    `due_in` (seconds) override the action items' defaults the drill journalled."""

    formats = parse_formats(",".join(formats))
    if folder.is_file():
        folder = folder.parent
    if not (folder / JOURNAL_NAME).exists():
        raise InputError(f"{folder}: no {JOURNAL_NAME} here")
    data = collect(folder)
    actions = ActionDefaults.from_dict(data.events[0].data.get("actions"))
    actions = ActionDefaults(actions.owner if owner is None else owner, actions.due_in if due_in is None else due_in)
    ctx = _template_context(data, folder, actions)
    written = []
    for fmt in formats:
        path = folder / FORMATS[fmt]
        if fmt == "json":
            doc = data.to_json() | {"post_mortem": _post_mortem_json(ctx)}
            text = json.dumps(doc, indent=2) + "\n"
        else:
            extra = _plots(folder, data) if fmt == "html" else {}
            text = _environment(fmt).get_template(FORMATS[fmt] + ".j2").render(**ctx, **extra)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|#])")


def _xml_value(value: Any) -> Any:
    """Drop characters XML cannot carry from a value; markup we built (already escaped) stays."""
    from markupsafe import Markup

    if isinstance(value, str) and not isinstance(value, Markup):
        return _XML_INVALID.sub("", value)
    return value


@functools.cache
def _environment(fmt: str) -> Any:
    """The template environment of one format, made once a process. HTML and XML escape every
    value (scenario text, reasons and errors are not ours to trust) and drop characters XML
    cannot carry; Markdown neutralises its own control characters in every value, except code
    spans made by `code`. Compiled templates are kept between processes (`_bytecode_cache`)."""
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
        finalize=md_value if markdown else _xml_value,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    env.bytecode_cache = _bytecode_cache(fmt, env)
    env.filters["dur"] = format_duration
    env.filters["time"] = lambda at: at.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"
    env.filters["code"] = code
    env.filters["url"] = _md_link(safe_link) if markdown else safe_link
    env.filters["relpath"] = _md_link(path_link) if markdown else path_link
    env.filters["prose"] = _prose_md if markdown else _prose_html
    return env


def _bytecode_cache(fmt: str, env: Any) -> Any:
    """jinja2's cache of compiled templates, in the user's cache folder (0700, as jinja2's own
    default): compiling the templates was half of a small report's time, in every process.
    jinja2 recompiles a template whose source changed (its checksum is kept with the code); the
    folder's name carries the format, jinja2's version and the environment's options, which
    shape the compiled code too. None (compile every time) where no cache folder can be made."""
    import hashlib

    import jinja2

    options = (
        fmt,
        jinja2.__version__,
        env.autoescape,
        env.trim_blocks,
        env.lstrip_blocks,
        env.keep_trailing_newline,
        env.undefined.__name__,
        env.finalize is not None,
    )
    key = hashlib.sha256(repr(options).encode()).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "drillkit" / "templates"
    try:
        (cache / key).mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError:
        return None

    class Kept(jinja2.FileSystemBytecodeCache):
        """A cache that cannot be written (read-only, full) costs a compile, never the report."""

        def dump_bytecode(self, bucket: Any) -> None:
            with contextlib.suppress(OSError):
                super().dump_bytecode(bucket)

    return Kept(str(cache / key))


_CODE_SPAN = re.compile(r"`([^`]+)`")


# A link target is spelt with URL characters only: browsers drop whitespace and controls from
# a URL and read a backslash as a slash, so `java\tscript:` or `\\host` would pass a looser check.
_LINK_CHARS = re.compile(r"[A-Za-z0-9\-._~%!$&'*+,;=:@/?#\[\]]+")
_WEB_URL = re.compile(r"(?i)https?://[^/?#]+")


def safe_link(value: Any) -> str:
    """A target fit for every href and src of every page: an http(s) URL with a host, or a
    relative reference (no scheme, no `//host`); anything else (`javascript:`, `data:`…) is
    `#`. Run folder names and the journal's `prometheus` value are data, not ours to trust."""
    text = str(value)
    if not _LINK_CHARS.fullmatch(text) or text.startswith("//"):
        return "#"
    if ":" not in re.split(r"[/?#]", text, maxsplit=1)[0]:
        return text
    return text if _WEB_URL.match(text) else "#"


def path_link(value: Any) -> str:
    """A filesystem path relative to the page (a run folder's report) as a link: every
    character but letters, digits, `-._~` and `/` percent-encoded, so a folder named
    `javascript:…` or `a (b)` stays a path to that folder."""
    from urllib.parse import quote

    return safe_link(quote(str(value), safe="/"))


def _md_link(link: Callable[[Any], str]) -> Callable[[Any], Any]:
    """A link filter for Markdown: its result is inserted as written (already safe)."""
    from markupsafe import Markup

    return lambda value: Markup(link(value))


def _prose_md(value: Any) -> Any:
    """Our own sentences with `code spans` (verdict reasons, action items): the spans stay code,
    everything else is escaped like any value."""
    from markupsafe import Markup

    parts = _CODE_SPAN.split(" ".join(str(value).splitlines()))
    out = [f"`{p}`" if i % 2 else _MD_SPECIAL.sub(r"\\\1", p) for i, p in enumerate(parts)]
    return Markup("".join(out))


def _prose_html(value: Any) -> Any:
    """The same sentences in HTML: escaped, with `code spans` as <code>, never literal backticks."""
    from markupsafe import Markup, escape

    parts = _CODE_SPAN.split(_XML_INVALID.sub("", str(value)))
    return Markup("".join(f"<code>{escape(p)}</code>" if i % 2 else str(escape(p)) for i, p in enumerate(parts)))


def render_page(template: str, fmt: str, svgs: dict[str, Any] | None = None, **ctx: Any) -> str:
    """Render one of drillkit's templates (the history pages use this: jinja2 stays here).
    `svgs` holds drillkit.plots output (a string, or a dict of them), inserted as markup."""
    return "".join(_page(template, fmt, svgs, ctx))


def write_page(path: Path, template: str, fmt: str, svgs: dict[str, Any] | None = None, **ctx: Any) -> Path:
    """render_page straight into `path`, piece by piece as the template yields them: a page of
    10,000 runs is never one string in memory."""
    with open(path, "w", encoding="utf-8") as fh:
        fh.writelines(_page(template, fmt, svgs, ctx))
    return path


def _page(template: str, fmt: str, svgs: dict[str, Any] | None, ctx: dict[str, Any]) -> Iterator[str]:
    from markupsafe import Markup

    def safe(value: Any) -> Any:
        return {k: safe(v) for k, v in value.items()} if isinstance(value, dict) else Markup(value)

    pieces: Iterator[str] = _environment(fmt).get_template(template).generate(**ctx, svgs=safe(svgs or {}))
    return pieces


def _template_context(d: ReportData, folder: Path, actions: ActionDefaults) -> dict[str, Any]:
    start = d.events[0]
    end = first(d.events, "finished") or d.events[-1]
    injected = first(d.events, "injected")
    timeline = [
        {"at": e.at, "offset": e.mono - start.mono, "text": _event_text(e)}
        for e in d.events
        if e.kind in TIMELINE_KINDS
    ]
    saved = load_series(folder)
    measured = postmortem.impact(d.events, saved)
    return {
        "d": d,
        "s": d.scenario,
        "date": start.at,
        "duration": (end.mono - (injected or start).mono),
        "timeline": timeline,
        "glance": postmortem.glance(d.status, d.verdicts),
        "channel": postmortem.channel(d.events),
        "declared": postmortem.declared_channel(d.events),
        "responders": postmortem.responders(d.events),
        "roles_untaken": postmortem.roles_untaken(d.events),
        "status_page": postmortem.status_page(d.events),
        "impact": measured,
        "impact_text": postmortem.impact_text(measured) if measured else "",
        "queries": postmortem.queries(d.events, saved),
        "went_well": postmortem.went_well(d.events, d.verdicts, measured),
        "went_wrong": postmortem.went_wrong(d.events, d.verdicts, measured),
        "actions": postmortem.action_items(d.events, d.verdicts, actions),
        "detected": first(d.events, "detected"),
        "injected": injected,
        "acknowledged": first(d.events, "acknowledged"),
        "mitigated": first(d.events, "mitigated"),
        "resolved": first(d.events, "resolved"),
        "faults": _faults_with_plans(d),
        "detected_late": first(d.events, "detected_late"),
        "omitted": d.omitted,
        "keep": {"first": KEEP_FIRST, "last": KEEP_LAST},
        "verdict_classes": {True: "met", False: "missed", None: "unmeasured"},
        "status_marks": {"green": "🟢", "red": "🔴", "orange": "🟠", "grey": "⚪", "amber": "🟡"},
    }


def _post_mortem_json(ctx: dict[str, Any]) -> dict[str, Any]:
    """The post-mortem's derived sections in report.json, for tools (history, trackers)."""
    from dataclasses import asdict

    measured = ctx["impact"]
    doc: dict[str, Any] = _rounded(
        {
            "channel": ctx["declared"].data.get("message") if ctx["declared"] else ctx["channel"],
            "responders": [asdict(r) for r in ctx["responders"]],
            "status_page": [asdict(p) | {"at": rfc3339(p.at)} for p in ctx["status_page"]],
            "impact": measured.to_dict() if measured else None,
            "queries": [asdict(q) for q in ctx["queries"]],
            "action_items": [asdict(a) for a in ctx["actions"]],
        }
    )
    return doc


def _rounded(value: Any) -> Any:
    """Floats to the microsecond, as the journal's times: no 0.6000000000000227 in report.json."""
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_rounded(v) for v in value]
    return value


def _plots(folder: Path, d: ReportData) -> dict[str, Any]:
    """Inline SVG for report.html: the saved series (if the engine could fetch them) around the
    milestones, and the targets' timeline. Drawn by drillkit.plots (lazily)."""
    from markupsafe import Markup

    from drillkit import plots

    ref = first(d.events, "injected") or d.events[0]

    def rel(e: Event | None) -> float | None:
        return None if e is None else e.mono - ref.mono

    limits: dict[str, float] = d.events[0].data["limits"]
    detected, acked = first(d.events, "detected") or first(d.events, "detected_late"), first(d.events, "acknowledged")
    windows = [plots.Window("detect", 0.0, limits["detect"], rel(detected))]
    if detected is not None:
        windows.append(plots.Window("acknowledge", rel(detected) or 0.0, limits["acknowledge"], rel(acked)))
    windows += [
        plots.Window("mitigate", 0.0, limits["mitigate"], rel(first(d.events, "mitigated"))),
        plots.Window("resolve", 0.0, limits["resolve"], rel(first(d.events, "resolved"))),
    ]
    names = {"injected": "injected", "alert_pending": "pending", "detected": "firing", "detected_late": "firing"}
    names |= {"acknowledged": "acknowledged", "mitigated": "mitigated", "resolved": "resolved"}
    milestones = [plots.Milestone(names[e.kind], e.mono - ref.mono) for e in d.events if e.kind in names]
    out: dict[str, Any] = {"metrics_svg": "", "timeline_svg": ""}
    if first(d.events, "injected") is None:
        return out
    out["timeline_svg"] = Markup(plots.timeline_svg(windows))
    saved = load_series(folder)
    if saved is not None:
        zero = ref.at.timestamp()
        expects = {f"probe: {p['name']}": p["expect"] for p in d.scenario["steady_state"]}
        panels = [
            plots.Panel(
                q["label"],
                [
                    plots.Line(
                        ", ".join(f"{k}={v}" for k, v in sorted(s["labels"].items()) if k != "__name__"),
                        [(t - zero, v) for t, v in s["points"]],
                    )
                    for s in q["series"]
                ],
                expects.get(q["label"], ""),
            )
            for q in saved["queries"]
        ]
        short = [w for w in windows if w.name in ("detect", "mitigate")]
        if panels:
            out["metrics_svg"] = Markup(plots.metrics_svg(panels, milestones, short))
    return out


def _faults_with_plans(d: ReportData) -> list[dict[str, Any]]:
    """Each fault with the plan lines journalled when it was injected (faults are injected in
    the scenario's order, one `fault_injecting` event each), so a fault's pids sit under it."""
    plans = [e.data.get("plan", []) for e in d.events if e.kind == "fault_injecting"]
    return [
        {"kind": f["kind"], "params": f["params"], "plan": plans[i] if i < len(plans) else []}
        for i, f in enumerate(d.scenario["faults"])
    ]


def _event_text(e: Event) -> str:
    text = EVENT_TEXT.get(e.kind, e.kind.replace("_", " "))
    detail = {
        "injected": e.data.get("fault"),
        "detected": e.data.get("alert"),
        "detected_late": e.data.get("alert"),
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
    if e.kind in ("status_update", "status_page"):
        text += f" ({e.data['state']})" if e.data.get("state") else ""
        detail = f"{detail} ({e.data['by']})" if e.data.get("by") else detail
    return f"{text}: {detail}" if detail else text


# --- a suite's summary --------------------------------------------------------------------

SUMMARY_FILES = {"md": "summary.md", "html": "summary.html", "json": "summary.json", "junit": "junit.xml"}
EXIT_MEANINGS = {
    0: "every drill ran and met every measured target",
    1: "a drill missed a target, failed to revert, or hit an abort condition",
    2: "bad input",
    3: "Prometheus, the cluster or the target system was unavailable",
    4: "a drill ran but its journal or report could not be written",
    5: "a drill was not started (steady state did not hold, alert already active, or target busy): retry later",
    130: "interrupted",
}


@dataclass(frozen=True)
class SummaryRow:
    """One drill of a suite, as the summary shows it."""

    name: str
    title: str
    severity: str
    path: str
    status: str
    exit_code: int
    reason: str = ""
    folder: Path | None = None
    data: ReportData | None = None
    missed: tuple[str, ...] = ()
    measures: dict[str, float | None] = field(default_factory=dict)
    duration: float = 0.0
    link_md: str = ""
    link_html: str = ""

    @property
    def ran(self) -> bool:
        return self.status != "not-run"

    def measure(self, name: str) -> float | None:
        return self.measures.get(name)

    @classmethod
    def not_run(cls, name: str, title: str, severity: str, path: str, reason: str, exit_code: int = 0) -> SummaryRow:
        """A drill that never got a run folder: skipped (exit 0), or refused before starting."""
        return cls(name, title, severity, path, "not-run" if exit_code == 0 else "error", exit_code, reason)

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.name,
            "title": self.title,
            "severity": self.severity,
            "path": self.path,
            "status": self.status,
            "exit_code": self.exit_code,
            "reason": self.reason,
            "folder": str(self.folder) if self.folder else None,
            "measures": self.measures,
            "missed": list(self.missed),
        }


def summary_row(name: str, path: str, folder: Path | None, status: str, exit_code: int) -> SummaryRow:
    """The row of a drill that ran, read back from its run folder (the journal is the record)."""
    if folder is None or not (folder / JOURNAL_NAME).exists():
        return SummaryRow(name, name, "", path, status, exit_code, "no journal was written", folder)
    d = collect(folder)
    return SummaryRow(
        name=name,
        title=str(d.scenario["title"]),
        severity=str(d.scenario["severity"]),
        path=path,
        status=d.status,
        exit_code=exit_code,
        reason=d.reason,
        folder=folder,
        data=d,
        missed=tuple(v.summary() for v in d.verdicts if v.met is False),
        measures=d.measures.to_dict(),
        duration=_duration(d),
    )


def render_summary(folder: Path, rows: list[SummaryRow], exit_code: int) -> list[Path]:
    """summary.md, summary.html, summary.json and one merged junit.xml (a testsuite per drill,
    a testcase per target) in the suite's folder."""
    linked = [r if r.folder is None else _with_links(r, os.path.relpath(r.folder, folder)) for r in rows]
    ctx = {
        "rows": linked,
        "exit_code": exit_code,
        "exit_meaning": EXIT_MEANINGS.get(exit_code, "see the README's exit codes"),
        "passed": sum(r.status == "passed" for r in rows),
    }
    written = []
    for fmt, name in SUMMARY_FILES.items():
        if fmt == "json":
            doc = {"exit_code": exit_code, "passed": ctx["passed"], "drills": [r.to_json() for r in rows]}
            text = json.dumps(doc, indent=2) + "\n"
        else:
            template = "suite-junit.xml.j2" if fmt == "junit" else name + ".j2"
            text = _environment(fmt).get_template(template).render(**ctx)
        (folder / name).write_text(text, encoding="utf-8")
        written.append(folder / name)
    return written


def _with_links(row: SummaryRow, rel: str) -> SummaryRow:
    from dataclasses import replace

    return replace(row, link_md=f"{rel}/report.md", link_html=f"{rel}/report.html")


def _duration(d: ReportData) -> float:
    """From injection (or the start, if nothing was injected) to the end of the drill."""
    start = d.events[0]
    end = first(d.events, "finished") or d.events[-1]
    return end.mono - (first(d.events, "injected") or start).mono
