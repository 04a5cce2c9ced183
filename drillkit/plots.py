"""Pictures for report.html and trends.html: each query's values around the fault, the response
timeline, and the history's trends.

Written as SVG by hand (string building, every text escaped), because no light charting
library draws what these charts need — shaded target windows, milestone markers, floating
bars — with reproducible output (pygal stamps a random id and the date in every chart and
links a script by default; leather has no spans, markers or log scale), and matplotlib, which
did, cost a drill about 42 MiB of memory. Output is inline SVG: text kept as text, no ids, no
date, no script or stylesheet fetched, so a report is one self-contained file that re-renders
byte for byte. Free text (titles, series labels) is only ever element text, never an attribute
value. Elements carry a class saying what they show (`series`, `threshold`, `window`,
`milestone`, `limit`, `taken`, `quarter`, `rate`) so tests can read a chart back. It draws
plain data handed over by drillkit.report and drillkit.history and judges nothing.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

COLORS = {"met": "#1a7f37", "missed": "#b00020", "window": "#0969da"}
# matplotlib's default cycle, so a chart's colours read as before
CYCLE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
WIDTH = 800.0  # SVG user units (px); the report's CSS scales the chart to the page width
FONT = 11.0  # px
CHAR = 0.62 * FONT  # a rough average glyph width (DejaVu Sans), for laying out labels and legends
GRID = "#e1e4e8"


@dataclass(frozen=True)
class Milestone:
    name: str
    at: float  # seconds from the drill's reference time (the injection)


@dataclass(frozen=True)
class Window:
    """A target's window: from `start` until `start + limit`, and when it was reached (or None)."""

    name: str
    start: float
    limit: float
    reached: float | None


@dataclass(frozen=True)
class Line:
    labels: str
    points: list[tuple[float, float]]  # (seconds from the reference time, value)


@dataclass(frozen=True)
class Panel:
    title: str
    lines: list[Line]
    threshold: str = ""  # the probe's healthy comparison, e.g. ">= 3": in the title, and a line at 3


@dataclass(frozen=True)
class TrendLine:
    name: str
    points: list[tuple[datetime, float]]  # (when the run started, seconds)


# -- SVG text -----------------------------------------------------------------------------------

_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")  # characters XML 1.0 forbids


def _esc(text: str) -> str:
    """Text or an attribute value, safe inside SVG inlined in HTML and in a standalone XML file."""
    text = _NOT_XML.sub("\ufffd", text)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _n(v: float) -> str:
    """A coordinate: one decimal, no "-0.0", so output is stable."""
    s = f"{v:.1f}"
    return "0.0" if s == "-0.0" else s


def _attrs(**kw: str | float) -> str:
    return "".join(
        f' {k.rstrip("_").replace("_", "-")}="{_esc(v) if isinstance(v, str) else _n(v)}"' for k, v in kw.items()
    )


def _el(tag: str, **kw: str | float) -> str:
    return f"<{tag}{_attrs(**kw)}/>"


def _text(x: float, y: float, text: str, **kw: str | float) -> str:
    return f"<text{_attrs(x=x, y=y, **kw)}>{_esc(text)}</text>"


def _svg(height: float, body: Iterable[str]) -> str:
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="drillkit-chart" width="{_n(WIDTH)}" height="{_n(height)}"'
        f' viewBox="0 0 {_n(WIDTH)} {_n(height)}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif"'
        f' font-size="{FONT:g}" role="img">'
    )
    return "\n".join([head, *body, "</svg>\n"])


# -- scales and ticks ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Scale:
    """Maps the domain [lo, hi] linearly onto [a, b] (pixels)."""

    lo: float
    hi: float
    a: float
    b: float

    def __call__(self, v: float) -> float:
        return self.a + (v - self.lo) * (self.b - self.a) / (self.hi - self.lo)

    def has(self, v: float) -> bool:
        return self.lo - 1e-9 <= v <= self.hi + 1e-9


def _span(values: Sequence[float], pad: float = 0.0) -> tuple[float, float]:
    """The range of finite values, widened when flat, plus `pad` of the range on each side."""
    finite = [v for v in values if math.isfinite(v)]
    lo, hi = (min(finite), max(finite)) if finite else (0.0, 1.0)
    if hi - lo < 1e-12:
        half = 0.5 if lo == 0 else abs(lo) * 0.1
        lo, hi = lo - half, hi + half
    return lo - pad * (hi - lo), hi + pad * (hi - lo)


def _ticks(lo: float, hi: float, most: int = 6) -> tuple[list[float], int]:
    """Round tick values (1, 2, 2.5 or 5 times a power of ten) inside [lo, hi], and the decimals
    they need."""
    raw = (hi - lo) / most
    power = math.floor(math.log10(raw))
    step = next(m * 10.0**power for m in (1, 2, 2.5, 5, 10) if m * 10.0**power >= raw)
    exponent = math.floor(math.log10(step))
    decimals = max(0, -exponent + (1 if round(step / 10.0**exponent, 6) == 2.5 else 0))  # 0.25 needs 2
    first = math.ceil(lo / step - 1e-9)
    return [round(k * step, decimals + 2) for k in range(first, math.floor(hi / step + 1e-9) + 1)], decimals


def _label(v: float, decimals: int) -> str:
    s = f"{v:.{decimals}f}"
    return s[1:] if s.startswith("-") and float(s) == 0 else s


# -- pieces shared by the charts ----------------------------------------------------------------


def _x_axis(x: _Scale, top: float, bottom: float, ticks: list[tuple[float, str]], labels: bool) -> list[str]:
    """Vertical grid lines at the ticks, with the tick labels under `bottom` if asked."""
    out = []
    for v, name in ticks:
        out.append(_el("line", class_="grid", x1=x(v), y1=top, x2=x(v), y2=bottom, stroke=GRID))
        if labels:
            out.append(_text(x(v), bottom + FONT + 3, name, text_anchor="middle"))
    return out


def _y_axis(y: _Scale, left: float, right: float, ticks: list[tuple[float, str]]) -> list[str]:
    out = []
    for v, name in ticks:
        out.append(_el("line", class_="grid", x1=left, y1=y(v), x2=right, y2=y(v), stroke=GRID))
        out.append(_text(left - 4, y(v) + FONT / 3, name, text_anchor="end"))
    return out


def _frame(left: float, top: float, right: float, bottom: float) -> str:
    return _el(
        "rect", class_="frame", x=left, y=top, width=right - left, height=bottom - top, fill="none", stroke="#888"
    )


def _path(points: Iterable[tuple[float, float]], x: _Scale, y: _Scale) -> tuple[str, list[tuple[float, float]]]:
    """SVG path data through the finite points (a gap where a value is NaN or infinite), and the
    points that stand alone (drawn as dots: a one-point segment has no length)."""
    d: list[str] = []
    run: list[tuple[float, float]] = []
    alone: list[tuple[float, float]] = []

    def close() -> None:
        if len(run) == 1:
            alone.append(run[0])
        elif run:
            d.append("M" + " L".join(f"{_n(px)} {_n(py)}" for px, py in run))
        run.clear()

    for px, py in points:
        if math.isfinite(px) and math.isfinite(py):
            run.append((x(px), y(py)))
        else:
            close()
    close()
    return " ".join(d), alone


def _legend(names: list[str], right: float, top: float, *, rows: bool = True) -> list[str]:
    """Colour keys, top-right aligned at (right, top): one per row, or all in one row."""
    if not names:
        return []
    sizes = [30 + CHAR * len(n) for n in names]
    width = (max(sizes) if rows else sum(sizes)) + 8
    height = (FONT + 4) * (len(names) if rows else 1) + 6
    out = [
        '<g class="legend">',
        _el(
            "rect", x=right - width, y=top, width=width, height=height, fill="#fff", fill_opacity="0.85", stroke="#ccc"
        ),
    ]
    cx, cy = right - width + 4, top + 3 + FONT / 2 + 2
    for i, name in enumerate(names):
        color = CYCLE[i % len(CYCLE)]
        out.append(_el("line", x1=cx, y1=cy, x2=cx + 16, y2=cy, stroke=color, stroke_width="2"))
        out.append(_text(cx + 20, cy + FONT / 3, name))
        if rows:
            cy += FONT + 4
        else:
            cx += sizes[i]
    out.append("</g>")
    return out


_COMPARISON = re.compile(r"^\s*(?:==|!=|<=|>=|<|>)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")


def _threshold_value(threshold: str) -> float | None:
    found = _COMPARISON.match(threshold)
    return float(found.group(1)) if found else None


def _milestone_tags(milestones: list[Milestone], x: _Scale) -> list[tuple[float, str]]:
    """The milestones' names at their x, one label for those a few pixels apart (an automatic
    acknowledgement lands on the detection), so names never print over each other."""
    tags: list[tuple[float, list[str]]] = []
    for m in milestones:
        if tags and x(m.at) - tags[-1][0] < FONT:
            tags[-1][1].append(m.name)
        else:
            tags.append((x(m.at), [m.name]))
    return [(px, ", ".join(names)) for px, names in tags]


def _short(seconds: float) -> str:
    for unit, size in (("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} s"


def _seconds_ticks(x: _Scale) -> list[tuple[float, str]]:
    values, decimals = _ticks(x.lo, x.hi, 10)
    return [(v, _label(v, decimals)) for v in values]


# -- the report's charts ------------------------------------------------------------------------


def metrics_svg(panels: list[Panel], milestones: list[Milestone], windows: list[Window]) -> str:
    """One panel per query, sharing the time axis, milestones as dashed lines (named over the top
    panel), the targets' windows shaded, each probe's healthy threshold as a dotted line."""
    xs_all = [t for panel in panels for line in panel.lines for t, _ in line.points if math.isfinite(t)]
    x_lo, x_hi = _span(xs_all or [m.at for m in milestones] or [0.0])
    y_ranges = []
    for panel in panels:
        values = [v for line in panel.lines for _, v in line.points]
        limit = _threshold_value(panel.threshold)
        y_ranges.append(_span([*values, *([] if limit is None else [limit])], pad=0.08))
    y_labels = [[(v, _label(v, d)) for v in vs] for vs, d in (_ticks(lo, hi, 4) for lo, hi in y_ranges)]
    left = 12 + CHAR * max([len(name) for labels in y_labels for _, name in labels] or [1])
    right = WIDTH - 12
    x = _Scale(x_lo, x_hi, left, right)
    x_ticks = _seconds_ticks(x)
    named = sorted((m for m in milestones if x.has(m.at)), key=lambda m: m.at)
    tags = _milestone_tags(named, x)
    head = 14 + (3.8 * max(len(tag) for _, tag in tags) if tags else 0)  # 9 px names at 45°
    panel_h, plot_h = 130.0, 100.0
    out: list[str] = []
    for px, tag in tags:
        spin = f"rotate(-45 {_n(px)} {_n(head - 4)})"
        out.append(_text(px, head - 4, tag, class_="milestone-name", font_size="9", transform=spin))
    for i, (panel, (lo, hi), ticks) in enumerate(zip(panels, y_ranges, y_labels, strict=True)):
        top = head + i * panel_h + 18
        bottom = top + plot_h
        y = _Scale(lo, hi, bottom, top)
        healthy = f"  (healthy: {panel.threshold})" if panel.threshold else ""
        title = panel.title + healthy
        fits = int((right - left) / CHAR)  # a long PromQL title is cut; the tooltip holds all of it
        shown = title if len(title) <= fits else panel.title[: max(0, fits - len(healthy) - 1)] + "…" + healthy
        out.append(f'<g class="panel"><title>{_esc(title)}</title>')  # free text only as text, never an attribute
        out.append(_text(left, top - 5, shown, class_="title"))
        out += _x_axis(x, top, bottom, x_ticks, labels=i == len(panels) - 1)
        out += _y_axis(y, left, right, ticks)
        for w in windows:
            a, b = max(w.start, x.lo), min(w.start + w.limit, x.hi)
            if a < b:
                out.append(
                    _el(
                        "rect",
                        class_="window",
                        data_name=w.name,
                        x=x(a),
                        y=top,
                        width=x(b) - x(a),
                        height=plot_h,
                        fill=COLORS["window"],
                        fill_opacity="0.06",
                    )
                )
        for m in named:
            out.append(
                _el(
                    "line",
                    class_="milestone",
                    data_name=m.name,
                    x1=x(m.at),
                    y1=top,
                    x2=x(m.at),
                    y2=bottom,
                    stroke="#555",
                    stroke_width="0.8",
                    stroke_dasharray="4 3",
                )
            )
        limit = _threshold_value(panel.threshold)
        if limit is not None:
            out.append(
                _el(
                    "line",
                    class_="threshold",
                    data_value=f"{limit:g}",
                    x1=left,
                    y1=y(limit),
                    x2=right,
                    y2=y(limit),
                    stroke=COLORS["met"],
                    stroke_width="1",
                    stroke_dasharray="1 3",
                )
            )
        for j, line in enumerate(panel.lines):
            color = CYCLE[j % len(CYCLE)]
            d, alone = _path(line.points, x, y)
            out.append('<g class="line">' + (f"<title>{_esc(line.labels)}</title>" if line.labels else ""))
            if d:
                out.append(_el("path", class_="series", d=d, fill="none", stroke=color, stroke_width="1.4"))
            out += [_el("circle", class_="series-point", cx=px, cy=py, r="1.8", fill=color) for px, py in alone]
            out.append("</g>")
        out.append(_frame(left, top, right, bottom))
        if any(line.labels for line in panel.lines) and len(panel.lines) <= 6:
            out += _legend([line.labels for line in panel.lines], right - 4, top + 4)
        out.append("</g>")
    bottom = head + len(panels) * panel_h + 18
    out.append(
        _text(
            (left + right) / 2,
            bottom - 2 + FONT,
            "seconds from injection (shaded: target windows)",
            text_anchor="middle",
        )
    )
    return _svg(bottom + FONT + 6, out)


def timeline_svg(windows: list[Window]) -> str:
    """A bar per target: how long it took (green met, red missed) against its limit (dashed
    outline), the first target on top."""
    reached = [w.reached for w in windows if w.reached is not None]
    # the axis fits what happened (and the detection target), not an 8-hour resolve target
    right_s = 1.3 * max([*reached, windows[0].start + windows[0].limit] if windows else [60.0])
    x_lo = min([0.0, *(w.start for w in windows)])
    left = 16 + CHAR * max([len(w.name) for w in windows] or [1])
    row, top = 28.0, 8.0
    bottom = top + row * max(1, len(windows))
    x = _Scale(x_lo, max(right_s, x_lo + 1.0), left, WIDTH - 12)
    out = _x_axis(x, top, bottom, _seconds_ticks(x), labels=True)
    for i, w in enumerate(windows):
        mid = top + row * (i + 0.5)
        out.append(f'<g class="target"{_attrs(data_name=w.name)}>')
        out.append(_text(left - 6, mid + FONT / 3, w.name, text_anchor="end"))
        a, b = max(w.start, x.lo), min(w.start + w.limit, x.hi)
        if a < b:
            out.append(
                _el(
                    "rect",
                    class_="limit",
                    x=x(a),
                    y=mid - 0.3 * row,
                    width=x(b) - x(a),
                    height=0.6 * row,
                    fill="none",
                    stroke="#555",
                    stroke_dasharray="4 3",
                )
            )
        if w.reached is not None:
            color = COLORS["met"] if w.reached - w.start <= w.limit else COLORS["missed"]
            a, b = sorted((max(w.start, x.lo), min(w.reached, x.hi)))
            out.append(
                _el(
                    "rect",
                    class_="taken",
                    x=x(a),
                    y=mid - 0.175 * row,
                    width=x(b) - x(a),
                    height=0.35 * row,
                    fill=color,
                )
            )
        if w.start + w.limit > x.hi:  # a limit off the chart: say it in words
            out.append(_text(x.b - 4, mid + FONT / 3, f"target {_short(w.limit)} →", font_size="9", text_anchor="end"))
        out.append("</g>")
    out.append(_frame(left, top, x.b, bottom))
    out.append(
        _text(
            (left + x.b) / 2,
            bottom + 2 * FONT + 6,
            "seconds from injection (bar: time taken; dashed box: the target)",
            text_anchor="middle",
        )
    )
    return _svg(bottom + 2 * FONT + 12, out)


# -- the history's charts -----------------------------------------------------------------------


def _time_ticks(lo: datetime, hi: datetime) -> list[tuple[datetime, str]]:
    """Round instants between lo and hi: minutes, hours, days or month starts, 3 to 8 of them."""
    span = (hi - lo).total_seconds()
    if span <= 3 * 86400:
        minutes = next((m for m in (1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720) if span / (m * 60) <= 8), 1440)
        midnight = lo.replace(hour=0, minute=0, second=0, microsecond=0)
        t = midnight + timedelta(minutes=minutes * ((lo - midnight) // timedelta(minutes=minutes)))
        out = []
        while t <= hi:
            if t >= lo:
                out.append((t, t.strftime("%m-%d %H:%M")))
            t += timedelta(minutes=minutes)
        return out
    if span <= 120 * 86400:
        days = next((d for d in (1, 2, 7, 14) if span / (d * 86400) <= 8), 28)
        t = lo.replace(hour=0, minute=0, second=0, microsecond=0)
        out = []
        while t <= hi:
            if t >= lo:
                out.append((t, t.strftime("%Y-%m-%d")))
            t += timedelta(days=days)
        return out
    months = next((m for m in (1, 2, 3, 6, 12) if span / (m * 30.4 * 86400) <= 8), 12)
    year, month = lo.year, lo.month
    out = []
    while True:
        t = lo.replace(year=year, month=month, day=1, hour=0, minute=0, second=0, microsecond=0)
        if t > hi:
            return out
        if t >= lo and (month - 1) % months == 0:
            out.append((t, t.strftime("%Y-%m")))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)


def trend_svg(title: str, lines: list[TrendLine]) -> str:
    """One scenario's times run by run (log scale: detection takes seconds, resolution minutes),
    quarter boundaries dotted."""
    when = sorted({at for line in lines for at, _ in line.points})
    lo, hi = (when[0], when[-1]) if when else (datetime(2000, 1, 1), datetime(2000, 1, 2))
    if hi - lo < timedelta(minutes=4):  # one round of drills: a few minutes wide, centred
        middle = lo + (hi - lo) / 2
        lo, hi = middle - timedelta(minutes=2), middle + timedelta(minutes=2)
    pad = (hi - lo) * 0.04
    lo, hi = lo - pad, hi + pad
    logs = [math.log10(max(v, 0.01)) for line in lines for _, v in line.points if math.isfinite(v)]
    y_lo, y_hi = math.floor(min(logs or [0.0]) - 0.1), math.ceil(max(logs or [1.0]) + 0.1)  # no dot on the frame
    decades = [(float(k), f"{10.0**k:g}") for k in range(y_lo, y_hi + 1)]
    left = 14 + CHAR * max(len(name) for _, name in decades) + FONT  # room for the rotated unit
    top, bottom = 28.0 + FONT + 8, 28.0 + FONT + 8 + 150.0
    x = _Scale(lo.timestamp(), hi.timestamp(), left, WIDTH - 12)
    y = _Scale(float(y_lo), float(y_hi), bottom, top)
    out = [_text(left, 16, title, class_="title")]
    out += _legend([line.name for line in lines], x.b, 22, rows=False)
    out += _x_axis(x, top, bottom, [(t.timestamp(), name) for t, name in _time_ticks(lo, hi)], labels=True)
    out += _y_axis(y, left, x.b, decades)
    out.append(
        _text(
            12,
            (top + bottom) / 2,
            "seconds (log)",
            text_anchor="middle",
            transform=f"rotate(-90 12 {_n((top + bottom) / 2)})",
        )
    )
    for start in _quarter_starts(when):
        px = x(start.timestamp())
        out.append(
            _el(
                "line",
                class_="quarter",
                data_start=start.date().isoformat(),
                x1=px,
                y1=top,
                x2=px,
                y2=bottom,
                stroke="#999",
                stroke_width="0.8",
                stroke_dasharray="1 2",
            )
        )
    for j, line in enumerate(lines):
        color = CYCLE[j % len(CYCLE)]
        points = [(at.timestamp(), math.log10(max(v, 0.01))) for at, v in sorted(line.points)]
        d, _ = _path(points, x, y)  # every run is a dot anyway
        out.append(f'<g class="trend"{_attrs(data_name=line.name)}>')
        if d:
            out.append(_el("path", class_="series", d=d, fill="none", stroke=color, stroke_width="1.4"))
        out += [_el("circle", cx=x(px), cy=y(py), r="2.5", fill=color) for px, py in points if math.isfinite(py)]
        out.append("</g>")
    out.append(_frame(left, top, x.b, bottom))
    return _svg(bottom + FONT + 10, out)


def _quarter_starts(when: list[datetime]) -> list[datetime]:
    """The first instant of every quarter after the first run's, up to the last run."""
    if not when:
        return []
    out: list[datetime] = []
    year, q = when[0].year, (when[0].month - 1) // 3
    while True:
        year, q = (year + 1, 0) if q == 3 else (year, q + 1)
        start = when[0].replace(year=year, month=3 * q + 1, day=1, hour=0, minute=0, second=0, microsecond=0)
        if start > when[-1]:
            return out
        out.append(start)


def pass_rate_svg(groups: list[str], quarters: list[str], rates: dict[tuple[str, str], float | None]) -> str:
    """Grouped bars: each group's pass rate per quarter, groups top to bottom, quarters in order
    inside a group (no bar: no judged run that quarter)."""
    bar = 12.0
    group_h = bar * max(1, len(quarters)) + 10
    left = 16 + CHAR * max([len(g) for g in groups] or [1])
    top = 8.0
    bottom = top + group_h * max(1, len(groups))
    x = _Scale(0.0, 100.0, left, WIDTH - 12)
    out = _x_axis(x, top, bottom, [(float(v), f"{v}") for v in range(0, 101, 20)], labels=True)
    for i, group in enumerate(groups):
        g_top = top + i * group_h + 5
        out.append('<g class="group">')
        out.append(_text(left - 6, g_top + bar * len(quarters) / 2 + FONT / 3, group, text_anchor="end"))
        for j, quarter in enumerate(quarters):
            rate = rates.get((group, quarter))
            if rate is not None:
                out.append(
                    _el(
                        "rect",
                        class_="rate",
                        data_quarter=quarter,
                        data_rate=f"{rate:g}",
                        x=left,
                        y=g_top + j * bar + 1,
                        width=x(100 * rate) - left,
                        height=bar - 2,
                        fill=CYCLE[j % len(CYCLE)],
                    )
                )
        out.append("</g>")
    out.append(_frame(left, top, x.b, bottom))
    out += _legend(quarters, x.b - 4, bottom + 2 * FONT + 10, rows=False)
    out.append(_text(left, bottom + 2 * FONT + 6, "pass rate, % of the runs that started"))
    return _svg(bottom + 3 * FONT + 24, out)
