"""Every link in every HTML page drillkit writes is an http(s) URL or a relative path (issue 17,
item 4): run folders are named by whoever unpacked them, and the journal's `prometheus` value
is data, so neither may become a `javascript:` (or `data:`, `vbscript:`…) link. Each page is
parsed as a browser would (entities decoded) and every `href`/`src` is checked."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from drillkit.history import write_index, write_trends
from drillkit.report import FORMATS, render, render_summary, summary_row
from drillkit.scorecard import write_attempts
from tests.test_policy_journal_report import fixed_journal

TEMPLATES = Path(__file__).parent.parent / "drillkit" / "templates"
# folder names a hostile archive could hold (a folder name cannot hold "/")
HOSTILE_FOLDERS = (
    "javascript:document.body.innerHTML='PWNED';x=1",
    "JaVaScRiPt:document.title='PWNED'",
    "data:text;html,PWNED",
    "a b (c) #d ?e %41 &amp; \\f",
)
HOSTILE_PROMETHEUS = (
    "javascript:document.body.innerHTML='PWNED'%0A//x",
    " javascript:document.title='PWNED'//",
    "java\tscript:document.title='PWNED'//",
    "data:text/html,<script>document.title='PWNED'</script>//",
    "vbscript:document.title='PWNED'//",
    "//evil.example/",
)
GOOD_PROMETHEUS = "https://prom.example:9090/sub/"
LINK_ATTRIBUTES = {"href", "src", "action", "formaction", "xlink:href", "poster", "background"}


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found += [(tag, name, value or "") for name, value in attrs if name in LINK_ATTRIBUTES]


def links(page: Path) -> list[tuple[str, str, str]]:
    """(tag, attribute, value as a browser reads it) of every link-bearing attribute."""
    parser = _Links()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser.found


def harmless(value: str) -> bool:
    """An http(s) URL with a host, a relative reference without a scheme, or `#`: no character
    a browser strips or reinterprets (whitespace, controls, backslashes)."""
    if re.search(r"[\x00-\x20\x7f\\]", value):
        return False
    parts = urlsplit(value)
    if parts.scheme:
        return parts.scheme in ("http", "https") and bool(parts.netloc)
    return not value.startswith("//") and ":" not in value.split("/")[0]


def run(root: Path, name: str, prometheus: str | None = None) -> Path:
    folder = root / name
    fixed_journal(folder, datetime(2026, 11, 29, 9, 30, tzinfo=UTC))
    if prometheus is not None:
        path = folder / "journal.jsonl"
        events = [json.loads(line) for line in path.read_text().splitlines()]
        events[0]["prometheus"] = prometheus
        path.write_text("".join(json.dumps(e) + "\n" for e in events))
    return folder


def scorecard(folder: Path) -> None:
    """The few fields the attempts page reads from an exercise's scorecard.json."""
    card = {"scenario": "exporter-kill", "trainee": "ann", "date": "2026-11-29", "outcome": "passed"}
    card |= {"met": 3, "missed": 0, "checks": [], "hints": []}
    (folder / "scorecard.json").write_text(json.dumps(card))
    (folder / "scorecard.html").write_text("<!doctype html>\n")


def every_page(tmp_path: Path) -> tuple[Path, list[Path]]:
    """A reports folder of runs with hostile names and hostile `prometheus` values, and every
    HTML page drillkit writes about them: each report, the index, trends, a suite's summary
    and the training attempts."""
    root = tmp_path / "reports"
    pages = []
    folders = [run(root, name) for name in HOSTILE_FOLDERS]
    folders += [run(root, f"prom-{i}", value) for i, value in enumerate(HOSTILE_PROMETHEUS)]
    folders.append(run(root, "prom-good", GOOD_PROMETHEUS))
    for folder in folders:
        pages += render(folder, ("html",))
        scorecard(folder)
    pages += [p for p in write_index(root) if p.suffix == ".html"]
    pages += [p for p in write_trends(root)[0] if p.suffix == ".html"]
    pages += [p for p in write_attempts(root) if p.suffix == ".html"]
    suite = root / "suite"
    suite.mkdir()
    rows = [summary_row(f.name, f"{f.name}.yaml", f, "passed", 0) for f in folders[: len(HOSTILE_FOLDERS)]]
    pages += [p for p in render_summary(suite, rows, 0) if p.suffix == ".html"]
    return root, pages


def test_every_link_of_every_page_is_http_or_relative(tmp_path: Path) -> None:
    root, pages = every_page(tmp_path)
    assert {p.name for p in pages} == {"report.html", "index.html", "trends.html", "attempts.html", "summary.html"}
    bad = [(page, tag, name, value) for page in pages for tag, name, value in links(page) if not harmless(value)]
    assert not bad, "links a click could run or send elsewhere:\n" + "\n".join(map(str, bad))
    good = [v for _, name, v in links(root / "prom-good" / "report.html") if name == "href"]
    assert good and all(v.startswith(f"{GOOD_PROMETHEUS}graph?g0.expr=") for v in good), "a good URL stays a link"


def test_links_to_hostile_folders_still_reach_their_pages(tmp_path: Path) -> None:
    """Escaped, not dropped: each folder link, percent-decoded, names the page it links to."""
    root, pages = every_page(tmp_path)
    for page in pages:
        if page.name == "report.html":
            continue
        targets = [v for _, name, v in links(page) if name == "href" and not urlsplit(v).scheme and v != "#"]
        assert targets, f"{page} links nothing"
        missing = [v for v in targets if not (page.parent / unquote(v)).exists()]
        assert not missing, f"{page}: links to no file: {missing}"
    index = [v for _, _, v in links(root / "index.html")]
    assert sum(v.endswith("/report.html") for v in index) == len(HOSTILE_FOLDERS) + len(HOSTILE_PROMETHEUS) + 1


@pytest.mark.parametrize("value", HOSTILE_PROMETHEUS)
def test_a_hostile_prometheus_value_gives_no_query_link(tmp_path: Path, value: str) -> None:
    folder = run(tmp_path, "run", value)
    render(folder, tuple(FORMATS))
    hrefs = [v for _, name, v in links(folder / "report.html") if name == "href"]
    assert hrefs and set(hrefs) == {"#"}, hrefs
    md = (folder / "report.md").read_text()
    assert re.findall(r"\]\((\S*)\)", md) and set(re.findall(r"\]\((\S*)\)", md)) == {"#"}


def test_every_link_in_every_html_template_goes_through_the_url_filter() -> None:
    """A link written from a value is filtered where it is written: `| url` (a URL or relative
    path from data) or `| relpath` (a filesystem path); only literal targets are exempt."""
    unfiltered = []
    for template in sorted(TEMPLATES.glob("*.j2")):
        for attr, value in re.findall(r"\b(href|src|action|formaction)\s*=\s*\"([^\"]*)\"", template.read_text()):
            if "{{" in value and not re.fullmatch(r"\{\{[^}]*\|\s*(url|relpath)\s*\}\}", value):
                unfiltered.append(f"{template.name}: {attr}={value}")
    assert not unfiltered, unfiltered
