"""Plots in report.html: drawn from the series saved in the run folder (offline), inline SVG,
seen by a real headless Chromium that draws them and fetches nothing; matplotlib stays out of
`drillkit validate`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

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
    assert page.dom.count("<path") > 20, "the SVGs hold no drawing"
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


def test_validate_does_not_import_matplotlib() -> None:
    code = (
        "import sys; from click.testing import CliRunner; from drillkit.cli import main; "
        "r = CliRunner().invoke(main, ['validate', 'tests/data/exporter-kill.yaml']); "
        "assert r.exit_code == 0, r.output; print('matplotlib' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


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
