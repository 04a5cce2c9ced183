"""Policy verdicts, the journal, and the report rendered from a fixed journal (golden files)."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from drillkit.errors import InputError, ScenarioError
from drillkit.journal import Journal, measures, pending_reverts, read_journal
from drillkit.policy import Policy, judge, limits_for, load_policy, status_update_verdict, verdicts
from drillkit.report import load_events, render
from drillkit.scenario import Impact, Severity, load_scenario

GOLDEN = Path(__file__).parent / "golden"
SCENARIO = Path(__file__).parent / "data" / "exporter-kill.yaml"


def test_policy_defaults_follow_the_playbook() -> None:
    p = Policy()
    assert (p.P1.acknowledge, p.P1.resolve, p.P1.status_update_every) == (300, 4 * 3600, 1800)
    assert (p.P2.acknowledge, p.P2.resolve, p.P2.status_update_every) == (1800, 8 * 3600, 1800)
    assert (p.P3.acknowledge, p.P3.resolve, p.P3.status_update_every) == (7200, 24 * 3600, 7200)
    assert (p.P4.acknowledge, p.P4.resolve, p.P4.status_update_every) == (86400, 7 * 86400, 7200)
    assert p.status_page_within == 600
    assert p.for_severity(Severity.P3) is p.P3


def test_policy_file_overrides_and_errors(tmp_path: Path) -> None:
    f = tmp_path / "policy.yaml"
    f.write_text("P1: {acknowledge: 2m}\nP2:\n  resolve: 4h\nstatus_page_within: 5m\n")
    p = load_policy(f)
    assert p.P1.acknowledge == 120 and p.P1.resolve == 4 * 3600
    assert p.P2.resolve == 4 * 3600 and p.P2.acknowledge == 1800
    assert p.status_page_within == 300
    f.write_text("P1:\n  acknowledge: 2m\n  respond: 1m\n")
    with pytest.raises(ScenarioError, match=r"policy.yaml:3: P1.respond: unknown target"):
        load_policy(f)
    f.write_text("P9: {acknowledge: 2m}\n")
    with pytest.raises(ScenarioError, match=r"policy.yaml:1: P9: unknown key"):
        load_policy(f)
    f.write_text("P1: {acknowledge: soon}\n")
    with pytest.raises(ScenarioError, match=r"policy.yaml:1: P1.acknowledge: expected a duration"):
        load_policy(f)


def test_scenario_overrides_beat_policy() -> None:
    sc = load_scenario(SCENARIO)
    lim = limits_for(sc, Policy())
    assert lim.acknowledge == 1800 and lim.detect == 30 and lim.resolve == 8 * 3600
    sc2 = replace(sc, response=replace(sc.response, within=60.0), targets=replace(sc.targets, resolve=600.0))
    lim2 = limits_for(sc2, Policy())
    assert lim2.acknowledge == 60 and lim2.resolve == 600


@pytest.mark.parametrize(
    ("limit", "actual", "met", "margin"),
    [
        (300, 299.999, True, 0.001),
        (300, 300, True, 0),
        (300, 300.001, False, -0.001),
        (0, 0, True, 0),
    ],
)
def test_verdict_boundaries(limit: float, actual: float, met: bool, margin: float) -> None:
    v = judge("acknowledge", "ack", limit, actual, "", True)
    assert v.met is met
    assert v.margin_seconds == pytest.approx(margin)


def test_unmeasured_verdicts() -> None:
    assert judge("detect", "d", 30, None, "never fired", True).met is False
    v = judge("status_page", "s", 600, None, "no update recorded", False)
    assert v.met is None and v.outcome == "not measured" and "no update recorded" in v.summary()


def test_status_update_cadence() -> None:
    assert status_update_verdict(1800, 0, 600, []).met is None  # shorter than the cadence
    assert status_update_verdict(1800, 0, 3000, []).met is False
    v = status_update_verdict(1800, 0, 3000, [1500])
    assert v.met is True and v.actual_seconds == 1500
    assert status_update_verdict(1800, 0, 4000, [1000]).met is False
    assert status_update_verdict(1800, None, 10, []).met is None


def test_journal_round_trip_and_pending_reverts(tmp_path: Path) -> None:
    j = Journal(tmp_path / "journal.jsonl")
    j.append("started", run_id="abc123", scenario={}, limits={})
    inj = j.append("injected", fault="process-kill")
    later = inj.at + timedelta(seconds=2.5)
    j.append("detected", at=later, alert="X")
    j.append("revert_registered", id=1, fault="process-kill", data={"killed": []})
    j.append("revert_updated", id=1, fault="process-kill", data={"killed": [42]})
    j.append("revert_registered", id=2, fault="process-kill", data={"killed": [7]})
    j.append("revert_done", id=2, fault="process-kill", result={})
    j.close()
    events = read_journal(tmp_path / "journal.jsonl")
    assert [e.kind for e in events] == [e.kind for e in j.events]
    assert all(e.at.tzinfo is not None and e.at.utcoffset() == timedelta(0) for e in events)
    assert measures(events).time_to_detect == pytest.approx(2.5, abs=1e-3)  # two clocks, read apart
    pending = pending_reverts(tmp_path)
    assert [(p.id, p.data) for p in pending] == [(1, {"killed": [42]})]
    assert pending[0].run_id == "abc123"


def test_second_process_appends_on_the_first_ones_time_axis(tmp_path: Path) -> None:
    """`drillkit cleanup` appends to a journal a killed runner left: its events must sort after."""
    path = tmp_path / "journal.jsonl"
    t0 = datetime.now(UTC) - timedelta(hours=1)
    path.write_text(
        json.dumps(
            {
                "kind": "started",
                "at": t0.isoformat().replace("+00:00", "Z"),
                "mono": 12345.0,
                "run_id": "r",
                "scenario": {},
                "limits": {},
            }
        )
        + "\n"
    )
    j = Journal(path)
    ev = j.append("revert_done", id=1, fault="x", result={})
    j.close()
    assert ev.mono == pytest.approx(12345.0 + 3600, abs=5), ev.mono
    kinds = [e.kind for e in sorted(read_journal(path), key=lambda e: e.mono)]
    assert kinds == ["started", "revert_done"]


def test_command_ack_before_detection_counts_from_the_firing(tmp_path: Path) -> None:
    """An ack sent before the alert fired is kept (not ignored while `drillkit ack` said it was
    recorded): it counts from the firing and says how early it came."""
    import time as _time

    from drillkit.respond import Action, ActionKind, CommandAck, record
    from drillkit.signals import StopFlag

    detected = datetime.now(UTC)
    waiter = CommandAck(tmp_path)
    assert waiter.wait(detected, _time.monotonic() + 0.3, StopFlag(), lambda: None) is None
    record(tmp_path, Action(ActionKind.ACK, detected - timedelta(seconds=5), "eager", "on it"))
    ack = waiter.wait(detected, _time.monotonic() + 0.5, StopFlag(), lambda: None)
    assert ack is not None and ack.by == "eager" and ack.at == detected, ack
    assert ack.note == "on it (acknowledged 5.00s before the alert fired)", ack.note


def test_malformed_status_update_lines_are_skipped(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    fixed_journal(folder, datetime(2026, 11, 29, 9, 30, tzinfo=UTC))
    (folder / "updates.jsonl").write_text(
        '{"kind": "status_update"\n[1, 2]\n{"kind": "status_update", "at": "2026-11-29T09:30:03Z", "message": "ok"}\n'
    )
    render(folder, ("json",))
    rep = json.loads((folder / "report.json").read_text())
    assert [e["message"] for e in rep["events"] if e["kind"] == "status_update"] == ["ok"]


def test_journal_survives_a_torn_last_line(tmp_path: Path) -> None:
    j = Journal(tmp_path / "journal.jsonl")
    j.append("started", run_id="r", scenario={}, limits={})
    j.append("injected")
    j.close()
    with open(tmp_path / "journal.jsonl", "a") as fh:
        fh.write('{"kind": "detec')
    assert [e.kind for e in read_journal(tmp_path)] == ["started", "injected"]
    (tmp_path / "other.jsonl").write_text('{"kind": "injected", "at": "2026-01-01T00:00:00Z", "mono": 1}\n')
    with pytest.raises(InputError, match="not a drillkit journal"):
        read_journal(tmp_path / "other.jsonl")


def fixed_journal(folder: Path, t0: datetime, enrich: bool = False) -> None:
    """A complete passed run with fixed times, as the engine would journal it. `enrich` adds
    what a staffed drill has: impact queries (and their saved series), a channel name, status
    updates and status-page entries with states from people in the playbook's roles."""
    sc = load_scenario(SCENARIO)
    from drillkit.evidence import scenario_record as _scenario_record

    if enrich:
        impact = Impact('sum(rate(demo_requests_total{code=~"5.."}[5s]))', "sum(rate(demo_requests_total[5s]))", 0.05)
        sc = replace(sc, impact=impact, channel="exporter-down")
    record = _scenario_record(replace(sc, path="tests/data/exporter-kill.yaml"))
    limits = limits_for(sc, Policy()).to_dict()

    def ev(kind: str, offset: float, **data: object) -> str:
        at = (t0 + timedelta(seconds=offset)).isoformat(timespec="microseconds").replace("+00:00", "Z")
        return json.dumps({"kind": kind, "at": at, "mono": 1000 + offset, **data})

    lines = [
        ev("started", 0, run_id="0123abcd", scenario=record, limits=limits, prometheus="http://prom:9090"),
        ev("steady_state_ok", 0.02, probes=["exporter up"]),
        ev("fault_injecting", 0.03, fault="process-kill", plan=["send SIGKILL to pid 4242: demo-exporter"]),
        ev("revert_registered", 0.031, id=1, fault="process-kill", data={"killed": []}),
        ev("revert_updated", 0.032, id=1, fault="process-kill", data={"killed": [4242]}),
        ev("injected", 0.04, fault="process-kill"),
        ev("alert_pending", 0.9, alert="DemoExporterDown", source="prometheus activeAt"),
        ev("detected", 2.9, alert="DemoExporterDown", for_seconds=2.0, source="prometheus"),
        ev("acknowledged", 2.9, by="auto", note="", source="auto"),
        ev("revert_done", 4.0, id=1, fault="process-kill", result={"back": [], "restarted": [4300]}),
        ev("reverted", 4.01),
        ev("mitigated", 4.6, probes=["exporter up"]),
        ev("resolved", 5.1, verified="steady state holds after revert"),
        ev("finished", 5.2, status="passed", reason=""),
    ]
    folder.mkdir(parents=True)
    (folder / "journal.jsonl").write_text("\n".join(lines) + "\n")
    if enrich:
        enrich_run(folder, t0)


def enrich_run(folder: Path, t0: datetime) -> None:
    """updates.jsonl and series.json of a staffed drill (see fixed_journal): 10 requests/s, 4 of
    them failing from +1 s to +4 s: 16 failed of 50 in the window (samples +1 s to +5 s of +0.04 s to +5.2 s)."""

    def at(offset: float) -> str:
        return (t0 + timedelta(seconds=offset)).isoformat(timespec="microseconds").replace("+00:00", "Z")

    updates = [
        {"kind": "channel", "at": at(3.1), "message": "#incident-2026-11-29-exporter-down", "by": "alice"},
        {
            "kind": "status_update",
            "at": at(3.2),
            "message": "Paged, looking",
            "by": "alice",
            "role": "incident-commander",
        },
        {
            "kind": "status_page",
            "at": at(3.5),
            "message": "Exports delayed",
            "state": "investigating",
            "by": "bob",
            "role": "communications-lead",
        },
        {
            "kind": "status_page",
            "at": at(4.2),
            "message": "Exporter restarted",
            "state": "monitoring",
            "by": "bob",
            "role": "communications-lead",
        },
        {"kind": "status_page", "at": at(5.15), "message": "All good", "state": "resolved", "by": "bob"},
    ]
    (folder / "updates.jsonl").write_text("".join(json.dumps(u) + "\n" for u in updates))
    zero = t0.timestamp()
    errors = [(zero + t, 4.0 if 1 <= t <= 4 else 0.0) for t in range(-30, 11)]
    total = [(zero + t, 10.0) for t in range(-30, 11)]
    queries = [
        {"role": "probe", "label": "probe: exporter up", "expr": 'up{job="demo"}', "series": []},
        {
            "role": "impact-errors",
            "label": "impact: failed requests per second",
            "expr": "e",
            "series": [{"labels": {}, "points": errors}],
        },
        {
            "role": "impact-requests",
            "label": "impact: requests per second",
            "expr": "r",
            "series": [{"labels": {}, "points": total}],
        },
    ]
    (folder / "series.json").write_text(json.dumps({"step": 1.0, "queries": queries}))


@pytest.mark.parametrize(
    ("fmt", "name"), [("md", "report.md"), ("junit", "junit.xml"), ("json", "report.json"), ("html", "report.html")]
)
def test_report_golden(tmp_path: Path, fmt: str, name: str) -> None:
    folder = tmp_path / "run"
    fixed_journal(folder, datetime(2026, 11, 29, 9, 30, 0, tzinfo=UTC), enrich=True)
    (written,) = render(folder, (fmt,), owner="sre-team", due_in=7 * 86400)
    text = written.read_text()
    # the inline SVG charts too: drillkit.plots writes them itself, byte for byte the same
    golden = GOLDEN / name
    if os.environ.get("DRILLKIT_UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text(), f"{name} differs from {golden}; DRILLKIT_UPDATE_GOLDEN=1 to accept"


def test_report_json_contract(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    fixed_journal(folder, datetime(2026, 11, 29, 9, 30, 0, tzinfo=UTC))
    render(folder, ("json",))
    rep = json.loads((folder / "report.json").read_text())
    assert {"run_id", "scenario", "severity", "status", "events", "measures", "verdicts"} <= set(rep)
    assert rep["measures"] == pytest.approx(
        {"time_to_detect": 2.86, "time_to_acknowledge": 0.0, "time_to_mitigate": 4.56, "time_to_resolve": 5.06}
    )
    assert all(set(v) >= {"target", "limit_seconds", "actual_seconds", "met"} for v in rep["verdicts"])
    assert all(e["at"].endswith("Z") for e in rep["events"])
    reverts = [e for e in rep["events"] if e["kind"].startswith("revert_")]
    assert reverts and all("data" not in e for e in reverts), "revert data (saved manifests) stays in the journal"
    assert '"killed"' in (folder / "journal.jsonl").read_text()


def test_the_report_renders_the_policys_verdicts(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    fixed_journal(folder, datetime(2026, 11, 29, 9, 30, 0, tzinfo=UTC))
    judged = verdicts(load_events(folder))
    outcomes = {v.target: v.outcome for v in judged}
    assert outcomes == {
        "detect": "met",
        "acknowledge": "met",
        "mitigate": "met",
        "resolve": "met",
        "status_page": "not measured",
        "status_updates": "not measured",
    }, outcomes
    render(folder, ("json",))
    rep = json.loads((folder / "report.json").read_text())
    assert rep["verdicts"] == [v.to_dict() for v in judged], "report.json must carry policy.verdicts unchanged"


def test_status_updates_from_another_process_reach_the_report(tmp_path: Path) -> None:
    folder = tmp_path / "reports" / "2026-11-29T093000Z-exporter-kill-0123abcd"
    t0 = datetime(2026, 11, 29, 9, 30, 0, tzinfo=UTC)
    fixed_journal(folder, t0)
    from drillkit.updates import write_update

    journal = folder / "journal.jsonl"
    lines = journal.read_text().splitlines()
    journal.write_text("\n".join(lines[:-1]) + "\n")  # still running: an ended run refuses updates
    write_update(tmp_path / "reports", "0123abcd", "Investigating", status_page=True)
    journal.write_text("\n".join(lines) + "\n")
    # move the update to 3 s after detection so the verdict is deterministic
    raw = json.loads((folder / "updates.jsonl").read_text())
    raw["at"] = (t0 + timedelta(seconds=5.9)).isoformat().replace("+00:00", "Z")
    (folder / "updates.jsonl").write_text(json.dumps(raw) + "\n")
    render(folder, ("json",))
    rep = json.loads((folder / "report.json").read_text())
    page = next(v for v in rep["verdicts"] if v["target"] == "status_page")
    assert page["met"] is True and page["actual_seconds"] == pytest.approx(3.0), page
