"""Headless Chromium (Debian's `chromium`) for tests that must see a page as a browser does:
the DOM after scripts ran, a screenshot, and every network request it tried (Chromium's own
net log), with all name resolution failing so nothing can leave the machine anyway."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "Debian's chromium is needed (scripts/setup.sh installs it)"
    return found


@dataclass(frozen=True)
class Page:
    dom: str  # the serialized DOM after load (scripts ran for the virtual time budget)
    requests: list[str]  # every URL the page made Chromium try to fetch (not the page itself)
    screenshot: Path | None


def open_page(html: Path, work: Path, screenshot: bool = False, size: str = "1200,2400") -> Page:
    """Load `html` (a file) in a fresh profile; DOM, requests and optionally a PNG screenshot."""
    work.mkdir(parents=True, exist_ok=True)
    base = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--virtual-time-budget=2000",
    ]
    netlog = work / "netlog.json"
    dom = subprocess.run(
        [*base, f"--user-data-dir={work / 'profile-dom'}", f"--log-net-log={netlog}", "--dump-dom", html.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    shot = None
    if screenshot:
        shot = work / "page.png"
        subprocess.run(
            [
                *base,
                f"--user-data-dir={work / 'profile-shot'}",
                f"--screenshot={shot}",
                f"--window-size={size}",
                html.as_uri(),
            ],
            capture_output=True,
            timeout=120,
        )
        assert shot.exists(), "chromium wrote no screenshot"
    return Page(dom, _requested(netlog), shot)


def _requested(netlog: Path) -> list[str]:
    """URLs the page asked for: URL requests in Chromium's net log made on behalf of a file://
    page (Chromium's own background traffic has another network isolation key)."""
    if not netlog.exists():
        return []
    text = netlog.read_text(errors="replace").rstrip()
    try:
        events = json.loads(text).get("events", [])
    except ValueError:  # a log cut short: close it
        events = json.loads(text.rstrip(",") + "]}").get("events", [])
    return sorted(
        {
            str(e["params"]["url"])
            for e in events
            if isinstance(e.get("params"), dict)
            and "url" in e["params"]
            and str(e["params"].get("network_isolation_key", "")).startswith("file://")
        }
    )
