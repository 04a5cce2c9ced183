"""The report bugs of issue 10, each pinned: plan lines under their own fault (Markdown and
HTML), no literal backticks in HTML, a badge color per status, command lines cut between
arguments, the classification row, a late detection shown, a not-started run that injected
nothing, the cadence wording, and the drill's verdict judged from the same events as the report."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from drillkit.procs import brief_cmdline
from drillkit.report import render
from tests.helpers import report_json, run_cli, run_folder, write_scenario
from tests.promfixture import PromEnv
from tests.test_policy_journal_report import fixed_journal

T0 = datetime(2026, 11, 29, 9, 30, tzinfo=UTC)


def edited_run(tmp_path: Path, edit: object) -> Path:
    """The fixed passed run, with its journal's events passed through `edit(events)`."""
    folder = tmp_path / "run"
    fixed_journal(folder, T0)
    path = folder / "journal.jsonl"
    events = [json.loads(line) for line in path.read_text().splitlines()]
    events = edit(events)  # type: ignore[operator]
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    return folder


def _two_faults(events: list[dict]) -> list[dict]:
    start = events[0]
    fault = start["scenario"]["faults"][0]
    start["scenario"]["faults"] = [fault, {**fault, "params": {**fault["params"], "pidfile": "/run/b.pid"}}]
    i = next(i for i, e in enumerate(events) if e["kind"] == "fault_injecting")
    second = {**events[i], "plan": ["send SIGSTOP to pid 5555: api-2"], "mono": events[i]["mono"] + 0.001}
    events[i]["plan"] = ["send SIGSTOP to pid 4444: api-1"]
    return [*events[: i + 1], second, *events[i + 1 :]]


def test_plan_lines_sit_under_their_own_fault(tmp_path: Path) -> None:
    md_path, html_path = render(edited_run(tmp_path, _two_faults), ("md", "html"))
    md = md_path.read_text()
    root = md[md.index("## Root Cause") : md.index("## Detection")]
    lines = [line for line in root.splitlines() if "pid" in line]
    assert lines[0].startswith("- `process-kill`") and "/tmp/demo-exporter.pid" in lines[0], root
    assert lines[1] == "  - send SIGSTOP to pid 4444: api-1", root
    assert lines[2].startswith("- `process-kill`") and "/run/b.pid" in lines[2], root
    assert lines[3] == "  - send SIGSTOP to pid 5555: api-2", root
    html = html_path.read_text()
    first, second = html.index("pid 4444"), html.index("pid 5555")
    assert html.index("/tmp/demo-exporter.pid") < first < html.index("/run/b.pid") < second, "HTML keeps the plans"


def test_html_has_no_literal_markdown_backticks(tmp_path: Path) -> None:
    (html,) = render(edited_run(tmp_path, lambda e: e), ("html",))
    text = html.read_text()
    assert "`" not in text, [line for line in text.splitlines() if "`" in line]
    assert "<code>drillkit update RUN_ID --status-page</code>" in text


def _failed(events: list[dict]) -> list[dict]:
    for e in events:
        if e["kind"] == "finished":
            e["status"], e["reason"] = "failed", "a target was missed"
    return events


def test_status_badge_color_differs_between_passed_and_failed(tmp_path: Path) -> None:
    (passed,) = render(edited_run(tmp_path / "a", lambda e: e), ("html",))
    (failed,) = render(edited_run(tmp_path / "b", _failed), ("html",))
    css = passed.read_text()

    def badge_background(html: str) -> str:
        cls = re.search(r'<span class="status (status-[a-z-]+)">', html)
        assert cls, "no status badge"
        rule = re.search(rf"\.{cls.group(1)} {{ background: (#[0-9a-f]+)", css)
        assert rule, f"no color for {cls.group(1)}"
        return rule.group(1)

    assert badge_background(passed.read_text()) != badge_background(failed.read_text())


def test_command_lines_are_cut_between_arguments_never_inside_a_dsn() -> None:
    dsn = "postgresql://chatbot@127.0.0.1:19095/chatbot?sslmode=disable&application_name=drillkit-holder"
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "--dsn", dsn, "--tail", "x" * 40])
    try:
        time.sleep(0.2)
        for limit in range(20, 200, 7):
            line = brief_cmdline(proc.pid, limit)
            assert dsn in line or "postgresql://" not in line, f"limit {limit}: DSN cut: {line}"
            assert line.endswith(" …") or line.endswith("x" * 40), line
    finally:
        proc.kill()
        proc.wait()


def _classified(events: list[dict]) -> list[dict]:
    for e in events:
        if e["kind"] == "acknowledged":
            e["severity"] = "P1"
    return events


def test_severity_row_shows_the_severities_not_a_zero_limit(tmp_path: Path) -> None:
    (md,) = render(edited_run(tmp_path, _classified), ("md",))
    row = next(line for line in md.read_text().splitlines() if line.startswith("| Severity classified"))
    # P1 for a P2: more severe than the playbook's, a point for the debrief, not a missed target
    expected = "| Severity classified as P1 (playbook: P2) | P2 | P1 | to discuss (more severe than the playbook's: "
    assert row == expected + "a point for the debrief, not a miss) | - |", row


def _late(events: list[dict]) -> list[dict]:
    keep = [e for e in events if e["kind"] not in ("detected", "acknowledged", "alert_pending")]
    inj = next(e for e in keep if e["kind"] == "injected")
    i = keep.index(inj)
    missed = {**inj, "kind": "detection_missed", "alert": "DemoExporterDown", "within": 30.0}
    missed["mono"], missed["at"] = inj["mono"] + 30, "2026-11-29T09:30:30.040000Z"
    late = {"kind": "detected_late", "at": "2026-11-29T09:30:41.040000Z", "mono": inj["mono"] + 41}
    late |= {"alert": "DemoExporterDown", "source": "prometheus"}
    for e in keep[i + 1 :]:
        e["mono"] += 40
    return [*keep[: i + 1], missed, *keep[i + 1 :], late]


def test_a_missed_detection_says_when_the_alert_did_fire(tmp_path: Path) -> None:
    md, js = render(edited_run(tmp_path, _late), ("md", "json"))
    text = md.read_text()
    assert "did not fire within the detection target; it fired at 2026-11-29 09:30:41.040 UTC" in text, text
    assert "41.0s after the fault took effect" in text
    detect = next(v for v in json.loads(js.read_text())["verdicts"] if v["target"] == "detect")
    assert detect["met"] is False and detect["actual_seconds"] == pytest.approx(41.0), detect
    row = next(line for line in text.splitlines() if line.startswith("| Time to detect"))
    assert "| 41.0s | missed |" in row, row


def _not_started(events: list[dict]) -> list[dict]:
    kept = [e for e in events if e["kind"] in ("started",)]
    end = {**events[-1], "status": "not-started", "reason": "steady state does not hold"}
    return [*kept, {**end, "kind": "not_started", "reason": "steady state does not hold"}, end]


def test_a_not_started_run_does_not_claim_an_injection(tmp_path: Path) -> None:
    md, html = render(edited_run(tmp_path, _not_started), ("md", "html"))
    for text in (md.read_text(), html.read_text()):
        assert "Injected on purpose" not in text
        assert "Nothing was injected: the drill ended (not-started)" in text


def test_cadence_wording_names_detection_to_resolution(tmp_path: Path) -> None:
    (md,) = render(edited_run(tmp_path, lambda e: e), ("md",))
    text = md.read_text()
    assert "the incident lasted" not in text and "detection to resolution took 2.20s" in text


@pytest.mark.integration
def test_the_drill_is_judged_with_the_status_updates_the_report_shows(prom_env: PromEnv, tmp_path: Path) -> None:
    """Status updates written by another process (`drillkit update`) count for the exit code,
    not only for the report: a 1 s cadence kept by updates every 0.3 s is met, exit 0."""
    from drillkit.respond import RunEnded
    from drillkit.updates import write_update

    prom_env.ensure_exporter()
    prom_env.wait_up()
    path = write_scenario(tmp_path / "d.yaml", prom_env.scenario(targets={"status_update_every": "1s"}))
    reports = tmp_path / "r"
    done = threading.Event()

    def updates() -> None:
        while not done.is_set():
            runs = list(reports.glob("*/journal.jsonl")) if reports.exists() else []
            if runs:
                try:
                    write_update(reports, runs[0].parent.name.rsplit("-", 1)[1], "still on it", status_page=False)
                except RunEnded:  # the drill finished between two updates
                    return
            time.sleep(0.3)

    writer = threading.Thread(target=updates)
    writer.start()
    try:
        r = run_cli("run", str(path), "--prometheus-url", prom_env.url, "--report-dir", str(reports))
    finally:
        done.set()
        writer.join()
    rep = report_json(run_folder(reports))
    cadence = next(v for v in rep["verdicts"] if v["target"] == "status_updates")
    assert cadence["met"] is True, cadence
    assert r.returncode == 0 and rep["status"] == "passed", f"exit {r.returncode}, {rep['status']}:\n{r.stderr}"
