"""Pictures for report.html: each query's values around the fault, and the response timeline.

The only matplotlib importer, and a lazy one (matplotlib costs about a second to import, so
`drillkit --help` and `validate` never load it). Output is inline SVG (text kept as text,
fixed ids, no date), so a report is one self-contained file that prints well and fetches
nothing. It draws plain data handed over by drillkit.report and judges nothing.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime
from typing import Any

COLORS = {"met": "#1a7f37", "missed": "#b00020", "window": "#0969da"}


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
    threshold: str = ""  # e.g. "< 0.5", shown in the title


def _figure(width: float, height: float) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("svg", force=False)
    from matplotlib.backends.backend_svg import FigureCanvasSVG
    from matplotlib.figure import Figure

    matplotlib.rcParams.update({"svg.fonttype": "none", "svg.hashsalt": "drillkit", "font.size": 8})
    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, FigureCanvasSVG(fig)


def _svg(fig: Any) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": "drillkit"})
    text = buf.getvalue()
    return text[text.index("<svg") :]  # inline: no XML declaration or DOCTYPE


def metrics_svg(panels: list[Panel], milestones: list[Milestone], windows: list[Window]) -> str:
    """One panel per query, sharing the time axis, milestones as dashed lines, the targets'
    windows shaded."""
    fig, _ = _figure(8.0, 1.0 + 1.6 * len(panels))
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    for ax, panel in zip(axes, panels, strict=True):
        for line in panel.lines:
            if line.points:
                xs, ys = zip(*line.points, strict=True)
                ax.plot(xs, ys, linewidth=1.2, label=line.labels or None)
        for w in windows:
            ax.axvspan(w.start, w.start + w.limit, color=COLORS["window"], alpha=0.06)
        for m in milestones:
            ax.axvline(m.at, color="#555", linewidth=0.8, linestyle="--")
        ax.set_title(panel.title + (f"  (healthy: {panel.threshold})" if panel.threshold else ""), loc="left")
        ax.grid(alpha=0.3)
        if any(line.labels for line in panel.lines) and len(panel.lines) <= 6:
            ax.legend(loc="upper right", fontsize=6)
    xs_all = [x for panel in panels for line in panel.lines for x, _ in line.points]
    if xs_all:
        axes[0].set_xlim(min(xs_all), max(xs_all))
    top = axes[0]
    for m in milestones:
        top.annotate(m.name, (m.at, 1.0), xycoords=("data", "axes fraction"), rotation=45, fontsize=6, va="bottom")
    axes[-1].set_xlabel("seconds from injection (shaded: target windows)")
    return _svg(fig)


def timeline_svg(windows: list[Window]) -> str:
    """A bar per target: how long it took (green met, red missed) against its limit (outline)."""
    fig, _ = _figure(8.0, 0.6 + 0.45 * len(windows))
    ax = fig.subplots()
    for i, w in enumerate(reversed(windows)):
        ax.barh(i, w.limit, left=w.start, height=0.6, fill=False, edgecolor="#555", linestyle="--")
        if w.reached is not None:
            color = COLORS["met"] if w.reached - w.start <= w.limit else COLORS["missed"]
            ax.barh(i, w.reached - w.start, left=w.start, height=0.35, color=color)
    # the axis fits what happened (and the detection target), not an 8-hour resolve target
    reached = [w.reached for w in windows if w.reached is not None]
    right = 1.3 * max([*reached, windows[0].start + windows[0].limit] if windows else [60.0])
    ax.set_xlim(min([0.0, *(w.start for w in windows)]), right)
    for i, w in enumerate(reversed(windows)):
        if w.start + w.limit > right:  # a limit off the chart: say it in words
            ax.annotate(f"target {_short(w.limit)} →", (right * 0.99, i), ha="right", va="center", fontsize=6)
    ax.set_yticks(range(len(windows)), [w.name for w in reversed(windows)])
    ax.set_xlabel("seconds from injection (bar: time taken; dashed box: the target)")
    ax.grid(axis="x", alpha=0.3)
    return _svg(fig)


def _short(seconds: float) -> str:
    for unit, size in (("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} s"


@dataclass(frozen=True)
class TrendLine:
    name: str
    points: list[tuple[datetime, float]]  # (when the run started, seconds)


def trend_svg(title: str, lines: list[TrendLine]) -> str:
    """One scenario's times run by run (log scale: detection takes seconds, resolution minutes),
    quarter boundaries dotted."""
    fig, _ = _figure(8.0, 2.4)
    ax = fig.subplots()
    when = sorted({at for line in lines for at, _ in line.points})
    for line in lines:
        if line.points:
            xs, ys = zip(*sorted(line.points), strict=True)
            ax.plot(xs, [max(y, 0.01) for y in ys], marker="o", markersize=3, linewidth=1.2, label=line.name)
    for start in _quarter_starts(when):
        ax.axvline(start, color="#999", linewidth=0.8, linestyle=":")
    ax.set_yscale("log")
    ax.set_ylabel("seconds (log)")
    ax.set_title(title, loc="left")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=6, ncols=4)
    fig.autofmt_xdate()
    return _svg(fig)


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
    """Grouped bars: each group's pass rate per quarter (no bar: no judged run that quarter)."""
    fig, _ = _figure(8.0, 0.8 + 0.35 * max(1, len(groups)) * max(1, len(quarters)) ** 0.5)
    ax = fig.subplots()
    width = 0.8 / max(1, len(quarters))
    for j, quarter in enumerate(quarters):
        ys = [rates.get((g, quarter)) for g in groups]
        xs = [i + j * width for i, y in enumerate(ys) if y is not None]
        ax.barh(xs, [100 * y for y in ys if y is not None], height=width * 0.9, label=quarter)
    ax.set_yticks([i + 0.4 - width / 2 for i in range(len(groups))], groups)
    ax.set_xlim(0, 100)
    ax.set_xlabel("pass rate, % of the runs that started")
    ax.invert_yaxis()
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right", fontsize=6)
    return _svg(fig)
