"""What re-rendering a report costs in structure (speed is benchmarks/' job): no HTTP client is
imported to render saved evidence, and templates compiled by one process are reused by the next
with byte-identical output, even when the cache holds garbage."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from tests.test_policy_journal_report import fixed_journal

ROOT = Path(__file__).resolve().parent.parent
FILES = ("report.md", "report.html", "report.json", "junit.xml")


def _report(folder: Path, cache: Path) -> set[str]:
    """`drillkit report` of `folder` in a fresh process; the modules it loaded."""
    code = (
        "import sys\n"
        "from drillkit.cli import main\n"
        "try:\n"
        f"    main(['report', '--format', 'md,html,json,junit', {str(folder)!r}])\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "print(' '.join(sorted(sys.modules)))\n"
    )
    env = {**os.environ, "XDG_CACHE_HOME": str(cache), "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    return set(out.splitlines()[-1].split())


def test_rendering_a_report_loads_no_http_client(tmp_path: Path) -> None:
    fixed_journal(tmp_path / "run", datetime(2026, 11, 29, 9, 30, tzinfo=UTC), enrich=True)
    loaded = _report(tmp_path / "run", tmp_path / "cache")
    unwanted = {"requests", "urllib3", "http.client", "drillkit.prometheus", "drillkit.httpapi"} & loaded
    assert not unwanted, f"drillkit report imported {sorted(unwanted)}"


def test_compiled_templates_are_reused_and_change_nothing(tmp_path: Path) -> None:
    run, cache = tmp_path / "run", tmp_path / "cache"
    fixed_journal(run, datetime(2026, 11, 29, 9, 30, tzinfo=UTC), enrich=True)
    _report(run, cache)
    first = {name: (run / name).read_bytes() for name in FILES}
    compiled = sorted(cache.rglob("*.cache"))
    assert len(compiled) >= 3, f"no compiled templates kept under {cache}: {compiled}"
    stamps = {p: p.stat().st_mtime_ns for p in compiled}
    _report(run, cache)
    assert {p: p.stat().st_mtime_ns for p in compiled} == stamps, "the second process compiled again"
    assert {name: (run / name).read_bytes() for name in FILES} == first
    for p in compiled:  # a torn or foreign file: compiled again, never trusted
        p.write_bytes(b"garbage")
    _report(run, cache)
    assert {name: (run / name).read_bytes() for name in FILES} == first


def test_a_cache_that_cannot_be_written_costs_a_compile_not_the_report(tmp_path: Path) -> None:
    """Each format's cache folder made a link to /proc/self, where nobody (root neither) can
    create a file: templates are compiled again and the report is the same."""
    run, cache = tmp_path / "run", tmp_path / "cache"
    fixed_journal(run, datetime(2026, 11, 29, 9, 30, tzinfo=UTC), enrich=True)
    _report(run, cache)
    first = {name: (run / name).read_bytes() for name in FILES}
    keys = sorted({p.parent for p in cache.rglob("*.cache")})
    assert keys, f"no compiled templates kept under {cache}"
    for folder in keys:
        for p in folder.iterdir():
            p.unlink()
        folder.rmdir()
        folder.symlink_to("/proc/self")
    _report(run, cache)
    assert {name: (run / name).read_bytes() for name in FILES} == first
