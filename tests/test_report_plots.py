"""Plots in report.html: drawn from the series saved in the run folder (offline), inline SVG,
seen by a real headless Chromium that draws them and fetches nothing, read back as XML to check
each point, window, milestone and threshold sits where its value says; no plotting library
(matplotlib, numpy) is loaded to draw them, and drillkit.plots stays out of `drillkit validate`."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

import pytest

from drillkit import plots
from drillkit.report import SERIES_NAME, render
from tests.browser import open_page
from tests.helpers import run_cli, run_folder, write_scenario
from tests.promfixture import PromEnv
from tests.test_policy_journal_report import fixed_journal

T0 = datetime(2026, 11, 29, 9, 30, tzinfo=UTC)


def plotted_run(tmp_path: Path) -> Path:
    folder = tmp_path / "run"
    fixed_journal(folder, T0)
    zero = T0.timestamp()
    up = [(zero + t, 0.0 if 0.5 <= t <= 4.3 else 1.0) for t in range(-30, 11)]
    alert = [(zero + t, 1.0) for t in range(1, 5)]
    (folder / SERIES_NAME).write_text(
        json.dumps(
            {
                "step": 1.0,
                "queries": [
                    {
                        "label": "probe: exporter up",
                        "expr": 'up{job="demo"}',
                        "series": [{"labels": {"job": "demo"}, "points": up}],
                    },
                    {
                        "label": "alert DemoExporterDown: up == 0",
                        "expr": "up == 0",
                        "series": [{"labels": {}, "points": alert}],
                    },
                ],
            }
        )
    )
    return folder


def test_report_html_draws_the_plots_offline_in_chromium(tmp_path: Path) -> None:
    (html,) = render(plotted_run(tmp_path), ("html",))
    text = html.read_text()
    assert text.count("<svg") == 2, "a timeline chart and a metrics chart, inline"
    assert "What Prometheus Saw" in text and "probe: exporter up" in text and "firing" in text
    # links (<a href>, to Prometheus) fetch nothing; sources, stylesheets and imports would
    fetches = r"""\bsrc\s*=\s*["']?https?:|<link\b[^>]*href\s*=\s*["']?https?:|url\(\s*["']?https?:|@import"""
    assert not re.search(fetches, text), "an external fetch"
    page = open_page(html, tmp_path / "browser", screenshot=True)
    assert "</html>" in page.dom and page.dom.count("<svg") == 2, "chromium did not keep both SVGs"
    drawn = re.findall(r"<(?:path|line|rect|circle|text)\b", page.dom)
    assert len(drawn) > 60, f"the SVGs hold no drawing: {len(drawn)} elements"
    control = tmp_path / "control.html"
    control.write_text('<html><body><img src="http://example.invalid/x.png"></body></html>')
    seen = open_page(control, tmp_path / "control").requests
    assert seen == ["http://example.invalid/x.png"], f"the net log check itself does not work: {seen}"
    external = [u for u in page.requests if not u.startswith(("file:", "data:", "about:", "chrome"))]
    assert not external, f"report.html fetched {external}"
    from PIL import Image

    assert page.screenshot is not None
    colors = Image.open(page.screenshot).convert("RGB").getcolors(maxcolors=1 << 20) or []
    green = sum(n for n, (r, g, b) in colors if abs(r - 0x1A) < 12 and abs(g - 0x7F) < 12 and abs(b - 0x37) < 12)
    assert len(colors) > 50 and green > 200, f"{len(colors)} colors, {green} green pixels: nothing drawn?"


def test_the_series_are_re_rendered_by_drillkit_report_without_prometheus(tmp_path: Path) -> None:
    folder = plotted_run(tmp_path)
    (html,) = render(folder, ("html",))
    first = html.read_text()
    (html,) = render(folder, ("html",))
    assert html.read_text() == first, "re-rendering is deterministic (fixed SVG ids, no date)"
    (folder / SERIES_NAME).unlink()
    (html,) = render(folder, ("html",))
    assert html.read_text().count("<svg") == 1, "without saved series: the timeline chart only"


NS = "{http://www.w3.org/2000/svg}"


def charts(html: str) -> list[ET.Element]:
    """Each inline SVG of a page, parsed as standalone XML (which also proves it well-formed)."""
    return [ET.fromstring(svg) for svg in re.findall(r"<svg\b.*?</svg>", html, re.S)]


def of_class(root: ET.Element, tag: str, cls: str) -> list[ET.Element]:
    return [e for e in root.iter(NS + tag) if e.get("class") == cls]


def path_points(d: str) -> list[tuple[float, float]]:
    nums = [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?", d)]
    return list(zip(nums[::2], nums[1::2], strict=True))


def panel(root: ET.Element, title: str) -> ET.Element:
    for g in of_class(root, "g", "panel"):
        heading = of_class(g, "text", "title")
        if heading and (heading[0].text or "").startswith(title):
            return g
    raise AssertionError(f"no panel titled {title!r}")


def test_each_point_window_milestone_and_threshold_sits_where_its_value_says(tmp_path: Path) -> None:
    """The probe's 41 samples (1 except an outage from 0.5 s to 4.3 s), read back from the
    metrics chart: x grows linearly with time, 1 is drawn above 0 on one level each, the
    threshold (`== 1`) is the line through the healthy samples, the detection window starts at
    the x of the injection and `firing` sits at the x of 2.86 s after it."""
    (html,) = render(plotted_run(tmp_path), ("html",))
    timeline, metrics = charts(html.read_text())
    up = panel(metrics, "probe: exporter up")
    assert "(healthy: == 1)" in (of_class(up, "text", "title")[0].text or "")
    (path,) = of_class(up, "path", "series")
    points = path_points(path.get("d", ""))
    times = [t - 0.04 for t in range(-30, 11)]  # seconds from the injection (journalled 0.04 s in)
    values = [0.0 if 0.5 <= t <= 4.3 else 1.0 for t in range(-30, 11)]
    assert len(points) == len(times), f"{len(points)} points drawn for {len(times)} samples"
    (x0, _), (x1, _) = points[0], points[-1]

    def px(t: float) -> float:
        return x0 + (t - times[0]) * (x1 - x0) / (times[-1] - times[0])

    off = [(t, x) for t, (x, _) in zip(times, points, strict=True) if abs(x - px(t)) > 0.1]
    assert x1 > x0 and not off, f"x is not linear in time: {off}"
    levels = {v: {round(y, 1) for (_, y), w in zip(points, values, strict=True) if w == v} for v in (0.0, 1.0)}
    assert len(levels[0.0]) == 1 and len(levels[1.0]) == 1, f"one y per value: {levels}"
    (y_down,), (y_up,) = levels[0.0], levels[1.0]
    assert y_up < y_down, f"1 must be drawn above 0 (SVG y grows downwards): {y_up} vs {y_down}"
    (threshold,) = of_class(up, "line", "threshold")
    assert float(threshold.get("y1", "nan")) == float(threshold.get("y2", "nan")) == y_up, "threshold not at 1"
    windows = {w.get("data-name"): w for w in of_class(up, "rect", "window")}
    assert set(windows) == {"detect", "mitigate"}, windows
    assert math.isclose(float(windows["detect"].get("x", "nan")), px(0.0), abs_tol=0.1)
    milestones = {m.get("data-name"): float(m.get("x1", "nan")) for m in of_class(up, "line", "milestone")}
    assert math.isclose(milestones["injected"], px(0.0), abs_tol=0.1), milestones
    assert math.isclose(milestones["firing"], px(2.86), abs_tol=0.1), milestones
    assert math.isclose(milestones["resolved"], px(5.06), abs_tol=0.1), milestones
    names = " ".join(t.text or "" for t in of_class(metrics, "text", "milestone-name"))
    assert "injected" in names and "firing, acknowledged" in names, f"coinciding names merged: {names}"
    alert = panel(metrics, "alert DemoExporterDown")
    assert len(path_points(of_class(alert, "path", "series")[0].get("d", ""))) == 4

    taken = {g.get("data-name"): of_class(g, "rect", "taken") for g in of_class(timeline, "g", "target")}
    assert list(taken) == ["detect", "acknowledge", "mitigate", "resolve"], "first target on top"
    widths = {name: float(r[0].get("width", "nan")) for name, r in taken.items()}
    assert math.isclose(widths["mitigate"] / widths["detect"], 4.56 / 2.86, rel_tol=0.01), widths
    assert {r[0].get("fill") for r in taken.values()} == {plots.COLORS["met"]}


def test_a_missed_target_is_red_and_a_limit_off_the_chart_is_said_in_words() -> None:
    root = ET.fromstring(plots.timeline_svg([plots.Window("detect", 0, 10, 12), plots.Window("resolve", 0, 14400, 20)]))
    targets = {g.get("data-name"): g for g in of_class(root, "g", "target")}
    assert of_class(targets["detect"], "rect", "taken")[0].get("fill") == plots.COLORS["missed"]
    assert of_class(targets["resolve"], "rect", "taken")[0].get("fill") == plots.COLORS["met"]
    words = [t.text for t in targets["resolve"].iter(NS + "text")]
    assert "target 4 h →" in words, words
    limit = of_class(targets["detect"], "rect", "limit")[0]
    bar = of_class(targets["detect"], "rect", "taken")[0]
    ratio = float(bar.get("width", "nan")) / float(limit.get("width", "nan"))
    assert math.isclose(ratio, 1.2, rel_tol=0.01), f"12 s taken against a 10 s limit drawn as {ratio:.3f}"


def test_gaps_and_single_samples() -> None:
    """A NaN sample breaks the line (no segment drawn through it); a lone sample is a dot."""
    line = plots.Line("x", [(0, 1.0), (1, 2.0), (2, math.nan), (3, 2.0), (4, 1.0), (5, math.inf), (6, 3.0)])
    root = ET.fromstring(plots.metrics_svg([plots.Panel("q", [line])], [], []))
    (path,) = of_class(root, "path", "series")
    assert path.get("d", "").count("M") == 2, path.get("d")
    assert len(of_class(root, "circle", "series-point")) == 1


def test_a_long_query_title_is_cut_to_the_chart_and_kept_whole_in_the_tooltip() -> None:
    expr = "sum(pg_stat_activity_count) / " * 12
    root = ET.fromstring(
        plots.metrics_svg([plots.Panel(expr, [plots.Line("", [(0, 1.0), (1, 2.0)])], "< 0.85")], [], [])
    )
    (g,) = of_class(root, "g", "panel")
    shown = of_class(g, "text", "title")[0].text or ""
    width = float(root.get("width", "nan"))
    assert shown.endswith("…  (healthy: < 0.85)") and len(shown) * plots.CHAR < width, shown
    assert g.findtext(NS + "title") == expr + "  (healthy: < 0.85)"


def test_trend_chart_log_scale_and_quarters() -> None:
    start = datetime(2026, 3, 20, tzinfo=UTC)
    lines = [plots.TrendLine("detect", [(start, 1.0), (start.replace(month=4, day=10), 10.0)])]
    root = ET.fromstring(plots.trend_svg("s", lines))
    (path,) = of_class(root, "path", "series")
    (a, b) = path_points(path.get("d", ""))
    ticks = {t.text: float(t.get("y", "nan")) for t in root.iter(NS + "text") if t.text in ("1", "10", "100")}
    assert b[1] < a[1] and math.isclose(a[1] - b[1], ticks["1"] - ticks["10"], abs_tol=0.2), (a, b, ticks)
    (quarter,) = of_class(root, "line", "quarter")
    assert quarter.get("data-start") == "2026-04-01" and a[0] < float(quarter.get("x1", "nan")) < b[0]


def test_rendering_loads_no_plotting_library_and_validate_not_even_the_charts(tmp_path: Path) -> None:
    render_code = (
        "import sys; from pathlib import Path; from drillkit.report import render; "
        f"render(Path({str(plotted_run(tmp_path))!r}), ('html',)); "
        "print(sorted({'drillkit.plots', 'matplotlib', 'numpy', 'PIL'} & set(sys.modules)))"
    )
    validate_code = (
        "import sys; from click.testing import CliRunner; from drillkit.cli import main; "
        "r = CliRunner().invoke(main, ['validate', 'tests/data/exporter-kill.yaml']); "
        "assert r.exit_code == 0, r.output; print(sorted({'drillkit.plots', 'matplotlib'} & set(sys.modules)))"
    )
    for code, expected in ((render_code, "['drillkit.plots']"), (validate_code, "[]")):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        assert out.strip() == expected


@pytest.mark.integration
def test_a_real_drill_saves_its_series_and_plots_them(prom_env: PromEnv, tmp_path: Path) -> None:
    prom_env.ensure_exporter()
    prom_env.wait_up()
    path = write_scenario(tmp_path / "d.yaml", prom_env.scenario())
    r = run_cli("run", str(path), "--prometheus-url", prom_env.url, "--report-dir", str(tmp_path / "r"))
    assert r.returncode == 0, r.stderr
    folder = run_folder(tmp_path / "r")
    saved = json.loads((folder / SERIES_NAME).read_text())
    labels = [q["label"] for q in saved["queries"]]
    assert labels == ["probe: exporter up", 'alert DemoExporterDown: up{job="demo"} == 0'], labels
    values = [v for _, v in saved["queries"][0]["series"][0]["points"]]
    assert 0.0 in values and 1.0 in values, f"the probe's series shows no outage: {values}"
    assert (folder / "report.html").read_text().count("<svg") == 2
