"""The post-mortem sections of the playbook's template: incident channel, responders and roles,
status-page entries with states, measured impact, runbook, a Prometheus link per query, action
items with owner and due date, the status at a glance, and a "What Went Well" that says more
than the targets table."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from drillkit.errors import ScenarioError
from drillkit.evidence import measure_impact
from drillkit.postmortem import prometheus_link
from drillkit.report import load_events, render
from drillkit.scenario import load_scenario, query_sites
from tests.helpers import report_json, run_cli, run_folder, write_scenario
from tests.promfixture import PromEnv
from tests.test_policy_journal_report import SCENARIO, fixed_journal

T0 = datetime(2026, 11, 29, 9, 30, tzinfo=UTC)


def staffed(tmp_path: Path) -> Path:
    folder = tmp_path / "reports" / "2026-11-29T093000Z-exporter-kill-0123abcd"
    fixed_journal(folder, T0, enrich=True)
    return folder


def test_channel_responders_status_page_and_runbook(tmp_path: Path) -> None:
    folder = staffed(tmp_path)
    md, html = render(folder, ("md", "html"))
    text = md.read_text()
    assert "Incident channel: `#incident-2026-11-29-exporter-down`" in text
    assert "- alice (incident-commander): opened the incident channel; posted a status update" in text
    assert "- bob (communications-lead): updated the status page (3x)" in text
    assert "roles nobody named (`drillkit update --role`): technical-lead, operations-lead" in text
    rows = [line for line in text.splitlines() if line.startswith("| 2026-11-29")]
    assert [r.split(" | ")[2] for r in rows] == ["investigating", "monitoring", "resolved"], rows
    assert "## Runbook\nInitial response:\n1. Check if recent deployment occurred" in text
    page = html.read_text()
    assert '<td class="state-monitoring">monitoring</td>' in page and "<ol><li>Check if recent deployment" in page


def test_the_channel_defaults_to_the_name_and_must_be_a_slug(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    fixed_journal(folder, T0)
    (md,) = render(folder, ("md",))
    assert "`#incident-2026-11-29-exporter-kill`" in md.read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(SCENARIO.read_text() + "channel: Exporter Down\n")
    with pytest.raises(ScenarioError, match=r"bad.yaml:\d+: .*channel: expected a lowercase slug"):
        load_scenario(bad)


def test_a_status_page_never_set_to_resolved_is_what_went_wrong(tmp_path: Path) -> None:
    folder = staffed(tmp_path)
    lines = (folder / "updates.jsonl").read_text().splitlines()
    (folder / "updates.jsonl").write_text("\n".join(lines[:-1]) + "\n")  # no `resolved` entry
    (md,) = render(folder, ("md",))
    wrong = md.read_text().split("## What Went Wrong")[1].split("##")[0]
    assert "The status page still said `monitoring` when the drill ended" in wrong, wrong
    well = md.read_text().split("## What Went Well")[1].split("##")[0]
    assert "kept current" not in well, f"What Went Well contradicts What Went Wrong:\n{well}"


def test_update_command_records_state_author_and_role(tmp_path: Path) -> None:
    folder = tmp_path / "reports" / "2026-11-29T093000Z-exporter-kill-0123abcd"
    fixed_journal(folder, T0)
    journal = folder / "journal.jsonl"
    journal.write_text("\n".join(journal.read_text().splitlines()[:-1]) + "\n")  # still running
    reports = str(tmp_path / "reports")
    r = run_cli("update", "0123abcd", "Fixed", "--state", "monitoring", "--by", "carol", "--role", "tech",
                "--report-dir", reports)  # fmt: skip
    assert r.returncode == 0 and "status page (monitoring)" in r.stdout, r.stderr
    raw = json.loads((folder / "updates.jsonl").read_text())
    assert {k: raw[k] for k in ("kind", "state", "by", "role")} == {
        "kind": "status_page",  # a state is the status page's: --state implies --status-page
        "state": "monitoring",
        "by": "carol",
        "role": "technical-lead",
    }
    bad = run_cli("update", "0123abcd", "x", "--state", "fixed", "--report-dir", reports)
    assert bad.returncode == 2 and "'fixed' is not one of" in bad.stderr, bad.stderr
    page = next(e for e in load_events(folder) if e.kind == "status_page")
    assert page.data["state"] == "monitoring"
    journal.write_text(journal.read_text() + '{"kind": "finished", "at": "2026-11-29T09:30:06Z", "mono": 1006}\n')
    late = run_cli("update", "0123abcd", "All good", "--state", "resolved", "--report-dir", reports)
    assert late.returncode == 2 and "ended" in late.stderr, late.stderr


def test_cli_choices_are_the_enums() -> None:
    from drillkit.cli import drills as cli
    from drillkit.respond import ROLE_ALIASES
    from drillkit.updates import PageState

    assert tuple(PageState) == cli._STATES and set(ROLE_ALIASES) == set(cli._ROLES)


def test_a_hand_edited_updates_line_cannot_forge_journal_events(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    fixed_journal(folder, T0)
    (folder / "updates.jsonl").write_text(
        '{"kind": "resolved", "at": "2026-11-29T09:30:01Z"}\n'
        '{"kind": "status_page", "at": "2026-11-29T09:30:04Z", "message": "m", "state": "<b>bad</b>"}\n'
    )
    events = load_events(folder)
    assert [e.kind for e in events].count("resolved") == 1
    assert "state" not in next(e for e in events if e.kind == "status_page").data


@pytest.mark.parametrize(
    ("errors", "requests", "threshold", "failed", "total", "affected"),
    [
        ([0, 4, 4, 0], [10, 10, 10, 10], 0.0, 8.0, 40.0, 2.0),
        ([0, 4, 4, 0], [10, 10, 10, 10], 0.5, 8.0, 40.0, 0.0),  # 40% is under a 50% threshold
        ([0, 4, 4, 0], None, 0.0, 8.0, None, 2.0),  # no requests query: affected while anything fails
        ([1, 1, 1, 1], [0, 0, 0, 0], 0.0, 4.0, 0.0, 0.0),  # failures with no requests: no ratio
    ],
)
def test_measured_impact(
    errors: list[float], requests: list[float] | None, threshold: float, failed: float, total: float | None,
    affected: float,
) -> None:  # fmt: skip
    step = 2.0
    t = [100.0 + step * i for i in range(4)]
    queries = [{"role": "impact-errors", "series": [{"labels": {}, "points": list(zip(t, errors, strict=True))}]}]
    if requests is not None:
        points = list(zip(t, requests, strict=True))
        queries.append({"role": "impact-requests", "series": [{"labels": {}, "points": points}]})
    m = measure_impact({"step": step, "queries": queries}, 100.0, 106.0, threshold)
    assert m is not None
    assert (m.failed, m.requests, m.affected_seconds) == (
        2 * failed,
        None if total is None else 2 * total,
        2 * affected,
    )
    assert measure_impact({"step": 1, "queries": []}, 0, 1, 0) is None


def test_impact_queries_are_checked_like_the_others(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO.read_text() + "impact:\n  errors: sum(rate(x_total[1m]))\n  requests: sum(rate(y[1m]))\n")
    sites = {s.where.path: s for s in query_sites(load_scenario(path))}
    assert sites["impact.errors"].needs_data is False and sites["impact.requests"].needs_data is True
    assert sites["impact.requests"].where.line == len(SCENARIO.read_text().splitlines()) + 3
    path.write_text(SCENARIO.read_text() + "impact:\n  errors: e\n  requests: r\n  threshold: 5\n")
    with pytest.raises(ScenarioError, match=r"threshold: expected a ratio from 0 to 1"):
        load_scenario(path)


def test_each_query_links_to_prometheus_over_the_drill_without_credentials() -> None:
    start, end = T0, T0 + timedelta(minutes=5)
    link = prometheus_link("https://user:secret@prom.example:9443/prometheus/", 'up{job="a b"} == 0', start, end)
    parts = urlsplit(link)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "prom.example:9443", "/prometheus/graph")
    q = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert q["g0.expr"] == 'up{job="a b"} == 0' and q["g0.range_input"] == "301s"
    assert q["g0.end_input"] == "2026-11-29 09:35:00" and "secret" not in link


def test_report_lists_a_link_per_query(tmp_path: Path) -> None:
    (html,) = render(staffed(tmp_path), ("html",))
    text = html.read_text()
    links = text.split('<ul class="queries">')[1].split("</ul>")[0]
    assert links.count('<a href="http://prom:9090/graph?g0.expr=') == 4, links  # alert, probe, 2 impact
    assert "ALERTS%7Balertname%3D%22DemoExporterDown%22%7D" in links


def test_action_items_take_owner_and_due_date(tmp_path: Path) -> None:
    folder = staffed(tmp_path)
    journal = folder / "journal.jsonl"
    lines = journal.read_text().splitlines()
    detected = json.loads(lines[7])
    detected["at"] = (T0 + timedelta(seconds=40)).isoformat().replace("+00:00", "Z")  # past the 30 s target
    detected["mono"] = 1040.0
    journal.write_text("\n".join([*lines[:7], json.dumps(detected), *lines[8:]]) + "\n")
    r = run_cli("report", str(folder), "--format", "md,json", "--owner", "sre-oncall", "--due-in", "3d")
    assert r.returncode == 0, r.stderr
    items = report_json(folder)["post_mortem"]["action_items"]
    assert items[0]["owner"] == "sre-oncall" and items[0]["due"] == "2026-12-02", items
    assert items[0]["text"].startswith("Tune the detection alert"), items
    md = (folder / "report.md").read_text()
    assert "(Owner: sre-oncall, Due: 2026-12-02)" in md
    bad = run_cli("report", str(folder), "--due-in", "soon")
    assert bad.returncode == 2 and "--due-in" in bad.stderr, bad.stderr


def test_status_at_a_glance(tmp_path: Path) -> None:
    folder = staffed(tmp_path)
    journal = folder / "journal.jsonl"
    journal.write_text(journal.read_text().replace('"status": "passed"', '"status": "failed"'))
    md, html = render(folder, ("md", "html"))
    assert md.read_text().splitlines()[2].startswith("> 🔴 **FAILED** (a target was missed or a revert failed)")
    assert '<div class="glance glance-failed" id="glance"><span class="status status-failed">' in html.read_text()


def test_what_went_well_does_not_repeat_the_targets_table(tmp_path: Path) -> None:
    folder = staffed(tmp_path)
    (md,) = render(folder, ("md",))
    text = md.read_text()
    well = [line[2:] for line in text.split("## What Went Well\n")[1].split("\n\n")[0].splitlines()]
    from drillkit.policy import verdicts

    summaries = {v.summary() for v in verdicts(load_events(folder))}
    assert well and not summaries & set(well), well
    assert any("pending 0.86s after the fault took effect" in w for w in well), well  # how, not only how fast
    assert any("investigating → monitoring → resolved" in w for w in well), well
    assert any("alice as incident-commander" in w for w in well), well


def test_journals_from_before_these_sections_still_render(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    fixed_journal(folder, T0)
    journal = folder / "journal.jsonl"
    first = json.loads(journal.read_text().splitlines()[0])
    for key in ("impact", "channel", "abort_when"):
        first["scenario"].pop(key)
    first.pop("actions", None)
    journal.write_text("\n".join([json.dumps(first), *journal.read_text().splitlines()[1:]]) + "\n")
    md, _ = render(folder, ("md", "json"))
    assert "Owner: [Name]" in md.read_text() and report_json(folder)["post_mortem"]["impact"] is None


@pytest.mark.integration
def test_a_real_drill_measures_impact_and_journals_the_action_owner(prom_env: PromEnv, tmp_path: Path) -> None:
    """Against real Prometheus: the impact query is fetched over the drill (series.json) and
    measured; --owner/--due-in reach the action items through the journal."""
    prom_env.ensure_exporter()
    prom_env.wait_up()
    impact = {"errors": '1 - up{job="demo"}', "threshold": 0.5}  # "failures" while the exporter is down
    path = write_scenario(tmp_path / "d.yaml", prom_env.scenario(impact=impact, channel="demo-down"))
    reports = tmp_path / "r"
    r = run_cli("run", str(path), "--prometheus-url", prom_env.url, "--report-dir", str(reports),
                "--owner", "team-a", "--due-in", "1w")  # fmt: skip
    assert r.returncode == 0, r.stderr
    folder = run_folder(reports)
    saved = json.loads((folder / "series.json").read_text())
    assert "impact-errors" in {q["role"] for q in saved["queries"]}, saved
    pm = report_json(folder)["post_mortem"]
    assert pm["impact"]["affected_seconds"] > 0 and pm["impact"]["first_affected"] is not None, pm["impact"]
    assert pm["channel"].endswith("-demo-down") and pm["action_items"][0]["owner"] == "team-a", pm
    start = datetime.fromisoformat(json.loads((folder / "journal.jsonl").read_text().splitlines()[0])["at"])
    assert pm["action_items"][0]["due"] == f"{start + timedelta(weeks=1):%Y-%m-%d}"
