"""Hostile scenario text in every report format (issue 8): HTML escaped, JUnit well-formed,
Markdown control characters neutralised."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

from drillkit.report import SERIES_NAME, render
from tests.test_policy_journal_report import fixed_journal

HOSTILE = "<script>alert(1)</script> \"quoted\" & 'single' | `tick` *star* \x07bell"


def hostile_run(tmp_path: Path) -> Path:
    folder = tmp_path / "run"
    fixed_journal(folder, datetime(2026, 11, 29, 9, 30, 0, tzinfo=UTC))
    path = folder / "journal.jsonl"
    events = [json.loads(line) for line in path.read_text().splitlines()]
    events[0]["scenario"]["title"] = HOSTILE
    events[0]["scenario"]["name"] = 'x<y>"z'
    for e in events:
        if e["kind"] == "finished":
            e["status"], e["reason"] = "failed", f"Prometheus said {HOSTILE}"
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    return folder


def hostile_series(folder: Path, text: str) -> None:
    """Saved series whose query label and Prometheus label values carry `text` (a scraped
    target's labels are not ours to trust either): the report's metrics chart draws them."""
    t0 = datetime(2026, 11, 29, 9, 30, 0, tzinfo=UTC).timestamp()
    series = [{"labels": {"job": text}, "points": [[t0 + t, float(t > 2)] for t in range(-3, 6)]}]
    query = {"label": text, "expr": "up", "series": series}
    (folder / SERIES_NAME).write_text(json.dumps({"step": 1.0, "queries": [query]}))


def test_html_escapes_scenario_text(tmp_path: Path) -> None:
    (html,) = render(hostile_run(tmp_path), ("html",))
    text = html.read_text()
    assert "<script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text


def test_svg_charts_keep_hostile_labels_as_text(tmp_path: Path) -> None:
    """Inside the inline SVG too: each chart parses as XML on its own, the hostile label is
    text (a title and a legend entry), never an element or an attribute, and the control
    character XML forbids is replaced."""
    folder = hostile_run(tmp_path)
    hostile_series(folder, HOSTILE)
    (html,) = render(folder, ("html",))
    svgs = re.findall(r"<svg\b.*?</svg>", html.read_text(), re.S)
    assert len(svgs) == 2, "the timeline and the metrics chart"
    metrics = ET.fromstring(svgs[1])  # raises on malformed XML
    texts = [e.text or "" for e in metrics.iter() if e.tag.endswith(("}text", "}title"))]
    shown = HOSTILE.replace("\x07", "\ufffd")
    assert shown in texts, "the legend / tooltip shows the label as written"
    assert any(t.startswith(shown) for t in texts), "the panel title shows the query label as written"
    assert not [e.tag for e in metrics.iter() if e.tag.endswith(("}script", "script"))], "a label became markup"
    assert not [v for e in metrics.iter() for v in e.attrib.values() if "script" in v], "a label in an attribute"
    assert "\x07" not in svgs[1]


def test_junit_parses_whatever_the_reason_holds(tmp_path: Path) -> None:
    (junit,) = render(hostile_run(tmp_path), ("junit",))
    root = ET.parse(junit).getroot()  # raises on malformed XML
    suite = root.find("testsuite")
    assert suite is not None and suite.get("name") == 'x<y>"z'
    failure = root.find(".//testcase[@name='drill']/failure")
    assert failure is not None and "<script>alert(1)</script>" in (failure.get("message") or "")
    assert "\x07" not in junit.read_text()


def test_markdown_neutralises_control_characters(tmp_path: Path) -> None:
    (md,) = render(hostile_run(tmp_path), ("md",))
    title = md.read_text().splitlines()[0]
    assert title.startswith("# Incident Post-Mortem: \\<script\\>"), title
    assert "\\| \\`tick\\` \\*star\\*" in title, title


PAYLOADS = (
    "<script>document.title='PWNED'</script>"
    "<img src=x onerror=\"document.title='PWNED'\">"
    "<svg onload=\"document.title='PWNED'\"></svg>"
)


def test_hostile_text_runs_no_script_in_a_real_browser(tmp_path: Path) -> None:
    """report.html opened in headless Chromium: the payloads show as text, none of them runs."""
    import shutil
    import subprocess

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Debian's chromium is needed (scripts/setup.sh installs it)"
    folder = hostile_run(tmp_path)
    path = folder / "journal.jsonl"
    events = [json.loads(line) for line in path.read_text().splitlines()]
    events[0]["scenario"]["title"] = PAYLOADS
    events[0]["scenario"]["description"] = PAYLOADS
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    hostile_series(folder, PAYLOADS)
    (html,) = render(folder, ("html",))
    assert html.read_text().count("<svg") == 2, "the charts with the payload in their labels are drawn"
    dom = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--user-data-dir=" + str(tmp_path / "profile"),
            "--virtual-time-budget=2000",
            "--dump-dom",
            html.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert "</html>" in dom, "chromium rendered nothing"
    import re

    title = re.search(r"<title>(.*?)</title>", dom, re.S)
    assert title and title.group(1) != "PWNED", "a payload ran and set document.title"
    assert "&lt;script&gt;document.title=" in title.group(1), "the payload must show as text"
    assert not re.search(r"<(img|svg|script)\b[^>]*(onerror|onload|PWNED)", dom), "a payload became markup"


CLICK_EVERY_LINK = """<script>
/* the test's own script: clicks every link; a javascript: link runs in this page as on a
   real click, any other link's navigation is cancelled so the page stays to be read back */
addEventListener("click", (e) => {
  const a = e.target.closest("a");
  if (a && a.protocol !== "javascript:") e.preventDefault();
}, true);
const seen = [];
for (const a of document.querySelectorAll("a[href], area[href]")) { seen.push(a.protocol); a.click(); }
document.documentElement.setAttribute("data-clicked", seen.join(" "));
</script>"""


def test_clicking_every_link_of_every_page_runs_no_script(tmp_path: Path) -> None:
    """Every HTML page (reports, index, trends, a suite's summary, training attempts) over run
    folders named like `javascript:…` and journals whose `prometheus` is `javascript:…`,
    opened in headless Chromium with every link clicked: no click runs script, and each link
    is a web or file link."""
    from tests.browser import open_page
    from tests.test_report_links import every_page

    _, pages = every_page(tmp_path)
    for i, page in enumerate(pages):
        clicking = page.with_name(f"clicking-{page.name}")
        html = page.read_text(encoding="utf-8")
        clicking.write_text(html.replace("</body>", CLICK_EVERY_LINK + "</body>"), encoding="utf-8")
        dom = open_page(clicking, tmp_path / f"browser-{i}").dom
        assert "</html>" in dom, f"chromium rendered nothing for {page}"
        title = re.search(r"<title>(.*?)</title>", dom, re.S)
        assert "<h1>" in dom and title and title.group(1) != "PWNED", f"a click ran script in {page}: {dom[:300]}"
        clicked = re.search(r'data-clicked="([^"]*)"', dom)
        assert clicked, f"the clicks did not run in {page}"
        assert set(clicked.group(1).split()) <= {"http:", "https:", "file:"}, (page, clicked.group(1))
