"""The scorecard's time axis, as inline SVG: the service's state and the alert as bars, and each
person's actions as marks on a lane of their own, all against minutes since the incident
report. A facilitator reads the exercise at a glance: when the page came, how long it took the
trainee to acknowledge, what they did while the service was down. Plain SVG text (no library),
every label escaped.
"""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

from drillkit.model import format_duration

if TYPE_CHECKING:
    from drillkit.scorecard import Scorecard

WIDTH = 860  # px
LEFT = 130  # the lanes' names
RIGHT = 20
LANE = 40  # px per lane
TOP = 32  # px above the first lane: the system's moments (report, page, restored)
TICKS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600)  # candidate tick steps, seconds
COLOURS = {"service down": "#f4a259", "alert firing": "#d1495b"}


def _step(total: float) -> int:
    """A tick step giving at most about eight ticks."""
    return next((t for t in TICKS if total / t <= 8), TICKS[-1])


def timeline_svg(card: Scorecard) -> str:
    total = max(card.ended_at_s, 1.0)
    people = list(dict.fromkeys(m.who for m in card.marks if m.who))
    lanes = ["service down", "alert firing", *people]
    height = TOP + 10 + LANE * (len(lanes) + 1)
    span = WIDTH - LEFT - RIGHT

    def x(seconds: float) -> float:
        return round(LEFT + span * min(max(seconds, 0.0), total) / total, 1)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" '
        f'height="{height}" role="img" aria-label="time axis of the exercise" font-family="sans-serif" font-size="11">'
    ]
    axis_y = TOP + LANE * len(lanes)
    for i, lane in enumerate(lanes):
        y = TOP + LANE * i
        out.append(f'<text x="4" y="{y + 16}">{escape(lane)}</text>')
        out.append(f'<line x1="{LEFT}" y1="{y + LANE - 2}" x2="{WIDTH - RIGHT}" y2="{y + LANE - 2}" stroke="#eee"/>')
    for sp in card.spans:
        y = TOP + LANE * lanes.index(sp.lane) + 6
        w = max(x(sp.end_s) - x(sp.start_s), 1.0)
        out.append(
            f'<rect x="{x(sp.start_s)}" y="{y}" width="{w:.1f}" height="16" fill="{COLOURS[sp.lane]}">'
            f"<title>{escape(sp.lane)}: +{format_duration(sp.start_s)} to +{format_duration(sp.end_s)}</title></rect>"
        )
    for i, m in enumerate(mk for mk in card.marks if not mk.who):  # a dashed line across every lane
        out.append(
            f'<line x1="{x(m.at_s)}" y1="{TOP - 4}" x2="{x(m.at_s)}" y2="{axis_y}" stroke="#555" '
            'stroke-dasharray="3,3"/>'
            f'<text x="{x(m.at_s) + 2}" y="{12 if i % 2 == 0 else 24}" font-size="10">{escape(m.label)}</text>'
        )
    for i, m in enumerate(mk for mk in card.marks if mk.who):
        y = TOP + LANE * lanes.index(m.who) + 16
        label = f"+{format_duration(m.at_s)} {m.label}"
        text_y = y - 7 if i % 2 else y + 13  # neighbours' labels alternate above and below the lane
        out.append(
            f'<circle cx="{x(m.at_s)}" cy="{y}" r="5" fill="#1f6feb"><title>{escape(m.who)}: {escape(label)}</title>'
            f'</circle><text x="{x(m.at_s) + 6}" y="{text_y}" font-size="9">{escape(m.label)}</text>'
        )
    out.append(f'<line x1="{LEFT}" y1="{axis_y}" x2="{WIDTH - RIGHT}" y2="{axis_y}" stroke="#333"/>')
    step = _step(total)
    tick = 0
    while tick <= total:
        out.append(
            f'<line x1="{x(tick)}" y1="{axis_y}" x2="{x(tick)}" y2="{axis_y + 4}" stroke="#333"/>'
            f'<text x="{x(tick)}" y="{axis_y + 16}" text-anchor="middle">+{format_duration(tick)}</text>'
        )
        tick += step
    out.append("</svg>")
    return "".join(out)
