"""Real trainee sessions against the real local lab: `drillkit train` on the shipped
database-exhaustion scenario, the trainee acting from a second process or typing into a pty.

- a perfect run: early-enough ack with the right severity, the right channel, a status-page
  update, mitigation by hand (the holder's backends terminated with SQL) before time: the
  scorecard has everything met, and actions after the end are refused;
- a late acknowledgement with the wrong severity, then giving up: the scorecard says how late
  and how wrong, and the revert is verified (no held connection left);
- a pty session: hints on request, the progress display never overwrites what the trainee is
  typing, and the whole transcript never names the fault or its parameters.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path

import pexpect
import psycopg
import pytest
import yaml

from drillkit.faults import run_tag
from drillkit.scenario import load_scenario
from drillkit.train import SELF_HEAL_S, runbook_steps
from tests.helpers import drillkit_cmd, run_cli
from tests.test_lab_e2e import ROOT, Lab, journal_kinds, lab, scenario_for, wait_steady
from tests.trainee import giveaways, line, named, scorecard, wait_event

pytestmark = pytest.mark.integration
__all__ = ["lab"]

HOLDER = DISGUISED = "chatbot-batch"  # the disguised application_name of the held connections


def held(lab: Lab) -> int:
    with psycopg.connect(lab.state.dsn_admin) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (HOLDER,)).fetchone()
    return int(row[0]) if row else 0


def terminate_holder(lab: Lab) -> int:
    """What a trainee would do after finding the idle connections in pg_stat_activity."""
    with psycopg.connect(lab.state.dsn_admin, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = %s", (HOLDER,)
        ).fetchone()
    return int(row[0]) if row else 0


def act(lab: Lab, reports: Path, *args: str) -> subprocess.CompletedProcess[str]:
    run_id = next(reports.glob("*/journal.jsonl")).parent.name.rsplit("-", 1)[1]
    return run_cli(args[0], run_id, *args[1:], "--by", "alice", "--report-dir", str(reports), cwd=lab.work)


def start_train(lab: Lab, path: Path, reports: Path, *extra: str) -> subprocess.Popen[str]:
    """The exercise, with a short close-out window (the trainee here never types `done`)."""
    close = () if "--close-out" in extra else ("--close-out", "3s")
    return subprocess.Popen(
        drillkit_cmd("train", str(path), "--trainee", "alice", "--report-dir", str(reports), *close, *extra),
        cwd=lab.work,
        stdin=subprocess.PIPE,  # open and silent: the trainee acts from other shells
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def test_a_perfect_exercise_mitigated_by_hand(lab: Lab) -> None:
    path = scenario_for(lab, "database-exhaustion")
    wait_steady(lab, path)
    reports = lab.work / "reports" / "perfect"
    proc = start_train(lab, path, reports)
    try:
        folder = wait_event(reports, "detected")
        day = time.strftime("%Y-%m-%d", time.gmtime())
        for args in (
            ("ack", "--severity", "P2", "--note", "connections errors"),
            ("channel", f"#incident-{day}-chat-db-connections"),
            ("update", "Investigating: messages fail to send", "--status-page"),
            ("step", "1"),
        ):
            r = act(lab, reports, *args)
            assert r.returncode == 0, r.stderr
        assert held(lab) > 0, "the fault holds no connection"
        assert terminate_holder(lab) > 0
        act(lab, reports, "note", "terminated idle chatbot-batch backends")
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, f"exit {proc.returncode}\n{out}\n{err}"
    assert "service restored" in out, out
    kinds = journal_kinds(folder / "journal.jsonl")
    assert "mitigated" in kinds and kinds.index("mitigated") < kinds.index("reverted"), kinds
    card = scorecard(folder)
    assert card["missed"] == 0, json.dumps(card, indent=1)
    assert line(card, "Severity")["outcome"] == "right"
    assert line(card, "Incident channel")["outcome"] == "right"
    assert line(card, "Time to acknowledge")["outcome"] == "met"
    assert line(card, "Status page")["outcome"] == "met"
    assert card["steps"][0]["done"].startswith("by alice"), card["steps"][0]
    assert card["outcome"] == "service restored by the responders"
    assert held(lab) == 0
    # the run has ended: an action now is refused, and says so
    late = act(lab, reports, "note", "too late")
    assert late.returncode == 2 and "ended at" in late.stderr, late


def test_late_ack_wrong_severity_then_giving_up_reverts(lab: Lab) -> None:
    path = scenario_for(lab, "database-exhaustion", **{"response.within": "2s"})
    wait_steady(lab, path)
    reports = lab.work / "reports" / "late"
    proc = start_train(lab, path, reports)
    try:
        folder = wait_event(reports, "detected")
        time.sleep(4)
        assert act(lab, reports, "ack", "--severity", "P4").returncode == 0
        assert act(lab, reports, "channel", "#db-broken").returncode == 0
        assert act(lab, reports, "give-up").returncode == 0
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert "you gave up" in out, out
    assert proc.returncode == 1, f"exit {proc.returncode}\n{err}"
    kinds = journal_kinds(folder / "journal.jsonl")
    assert {"gave_up", "reverted", "resolved"} <= set(kinds), kinds
    assert held(lab) == 0, "the revert left held connections"
    card = scorecard(folder)
    ack = line(card, "Time to acknowledge")
    assert ack["outcome"] == "missed" and re.search(r"acknowledged [\d.]+s after the target", ack["detail"]), ack
    sev = line(card, "Severity")
    assert sev["outcome"] == "wrong" and "P4" in sev["detail"] and "P2" in sev["detail"], sev
    channel = line(card, "Incident channel")
    assert channel["outcome"] == "wrong" and "prefix should be `#incident-`" in channel["detail"], channel
    assert re.fullmatch(r"gave up at \+[\d.]+s; drillkit reverted the fault", card["outcome"]), card["outcome"]
    mitigate = line(card, "Time to mitigate")
    assert re.match(r"gave up at \+[\d.]+s, before the service was restored", mitigate["detail"]), mitigate


def test_mitigated_by_hand_before_time_without_a_word(lab: Lab) -> None:
    """The trainee fixes it straight away and says nothing: the exercise ends on the restored
    steady state (not on the clock), the mitigation is theirs and met, and the missing
    acknowledgement is reported, not invented."""
    path = scenario_for(lab, "database-exhaustion", **{"recovery.within": "90s"})
    wait_steady(lab, path)
    reports = lab.work / "reports" / "by-hand"
    proc = start_train(lab, path, reports)
    try:
        folder = wait_event(reports, "detected")
        assert held(lab) > 0, "the fault holds no connection"
        time.sleep(SELF_HEAL_S + 1)  # sooner, nobody could have acted: it would count as self-healed
        started = time.monotonic()
        assert terminate_holder(lab) > 0
        out, err = proc.communicate(timeout=80)
        took = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert "service restored" in out, out + err
    assert took < 60, f"the exercise ran {took:.0f}s after the mitigation: it waited for the clock"
    kinds = journal_kinds(folder / "journal.jsonl")
    assert kinds.index("mitigated") < kinds.index("reverted"), kinds
    assert "mitigation_missed" not in kinds and "gave_up" not in kinds, kinds
    mitigated = next(
        e for e in map(json.loads, (folder / "journal.jsonl").read_text().splitlines()) if e["kind"] == "mitigated"
    )
    assert mitigated["by"] == "trainee", mitigated
    card = scorecard(folder)
    assert card["outcome"] == "service restored by the responders", card["outcome"]
    assert line(card, "Time to mitigate")["outcome"] == "met", line(card, "Time to mitigate")
    ack = line(card, "Time to acknowledge")
    assert ack["outcome"] == "missed" and "no acknowledgement" in ack["detail"], ack
    assert held(lab) == 0


def test_hints_on_a_timer_then_time_runs_out_and_drillkit_reverts(lab: Lab) -> None:
    """Nobody acts: `--hint-every 2` reveals the runbook one step at a time (journalled as the
    timer's, at least 2 s apart), the time limit passes, drillkit reverts and verifies."""
    path = scenario_for(lab, "database-exhaustion")
    wait_steady(lab, path)
    steps = len(runbook_steps(load_scenario(path)))
    reports = lab.work / "reports" / "timer"
    proc = start_train(lab, path, reports, "--hint-every", "2", "--time-limit", "15s")
    try:
        folder = wait_event(reports, "detected")
        assert held(lab) > 0
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert "time ran out at 15.0s; drillkit reverted the fault" in out, out + err
    assert proc.returncode == 1, f"exit {proc.returncode}\n{err}"
    events = [json.loads(x) for x in (folder / "journal.jsonl").read_text().splitlines()]
    kinds = [e["kind"] for e in events]
    assert kinds.index("mitigation_missed") < kinds.index("reverted"), kinds
    assert "resolved" in kinds, f"the revert was not verified: {kinds}"
    assert held(lab) == 0, "the revert left held connections"
    hints = [e for e in events if e["kind"] == "hint_shown"]
    assert 2 <= len(hints) <= min(steps, 7), [h["text"] for h in hints]
    assert [h["number"] for h in hints] == list(range(1, len(hints) + 1))
    assert {h["reason"] for h in hints} == {"timer"} and {h["by"] for h in hints} == {"drillkit"}, hints
    gaps = [b["mono"] - a["mono"] for a, b in itertools.pairwise(hints)]
    assert all(g >= 1.9 for g in gaps), f"hints closer than --hint-every: {gaps}"
    for h in hints:
        assert f"HINT {h['number']}/{steps} — {h['text']}" in out, out
    card = scorecard(folder)
    assert card["outcome"] == "time ran out at 15.0s; drillkit reverted the fault", card["outcome"]
    detected = next(e for e in events if e["kind"] == "detected")
    assert hints[0]["mono"] - detected["mono"] >= 1.9, "the first timed hint came before --hint-every after the page"
    assert len(card["hints"]) == len(hints) and all("(timer," in h for h in card["hints"]), card["hints"]
    mitigate = line(card, "Time to mitigate")
    assert mitigate["outcome"] == "missed" and "time ran out at 15.0s" in mitigate["detail"], mitigate
    assert "against" not in mitigate["detail"], mitigate


def test_blind_helpers_look_like_the_platforms_own_in_ps_and_pg_stat_activity(lab: Lab) -> None:
    """While a trainee works, `ps` shows the connection holder and stress-ng (a second fault
    here) under platform names, detached from the runner (not its children, sessions of their
    own): nothing the runner started names drillkit, stress-ng or the holder module, no scratch
    folder in $TMPDIR names drillkit or the run id, and every connection in pg_stat_activity has
    a platform name. Giving up reverts both."""
    import psutil

    db_fault = yaml.safe_load((ROOT / "scenarios" / "lab" / "database-exhaustion.yaml").read_text())["faults"][0]
    cpu_fault = {"kind": "cpu-pressure", "workers": 1, "load": 5}
    path = scenario_for(lab, "database-exhaustion", faults=[db_fault, cpu_fault])
    wait_steady(lab, path)
    reports = lab.work / "reports" / "ps"
    proc = start_train(lab, path, reports)
    try:
        folder = wait_event(reports, "detected")
        run_id = folder.name.rsplit("-", 1)[1]
        tag = run_tag(run_id)
        helpers = [p for p in psutil.process_iter(["cmdline"]) if f"-{tag}/" in " ".join(p.info["cmdline"] or ())]
        seen = {h.pid: f"{h.name()} | {' '.join(h.cmdline())}" for h in helpers if h.is_running()}
        parents = {h.pid: (h.ppid(), os.getsid(h.pid)) for h in helpers if h.is_running()}
        children = {c.pid for c in psutil.Process(proc.pid).children(recursive=True)}
        runner_sid = os.getsid(proc.pid)
        ps = subprocess.run(["ps", "-eo", "pid,comm,args"], capture_output=True, text=True, check=True).stdout
        mine = [row for row in ps.splitlines() if row.split(None, 1)[0] in {str(pid) for pid in seen}]
        with psycopg.connect(lab.state.dsn_admin) as conn:
            names = [r[0] for r in conn.execute("SELECT DISTINCT application_name FROM pg_stat_activity").fetchall()]
        scratch = sorted(p.name for p in Path(tempfile.gettempdir()).glob(f"*{tag}*"))
        named_by_id = sorted(p.name for p in Path(tempfile.gettempdir()).glob(f"*{run_id}*"))
        assert act(lab, reports, "give-up").returncode == 0
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert any(line.split()[1] == "chatbot-batch" for line in mine), f"no holder named chatbot-batch:\n{ps}"
    assert any(line.split()[1] == "chatbot-worker" for line in mine), f"no stress-ng named chatbot-worker:\n{ps}"
    giveaways = ("drillkit", "stress-ng", "holder", "hold-connections", "exhaust")
    named = [row for row in mine if any(g in row.lower() for g in giveaways)]
    assert not named, "the trainee's `ps` shows the fault's helpers by name:\n" + "\n".join(named)
    assert DISGUISED in names and not [n for n in names if "drillkit" in n.lower()], names
    assert scratch == [f"chatbot-batch-{tag}", f"chatbot-worker-{tag}"], scratch
    assert not named_by_id, f"scratch folders name the run id the trainee's header shows: {named_by_id}"
    assert not set(seen) & children, f"helpers are the runner's children: {set(seen) & children}"
    assert all(ppid != proc.pid and sid != runner_sid for ppid, sid in parents.values()), parents
    assert proc.returncode == 1 and "you gave up" in out, out + err
    assert held(lab) == 0, "the revert left held connections"
    left = [p for p in psutil.process_iter(["cmdline"]) if f"-{tag}/" in " ".join(p.info["cmdline"] or ())]
    assert not left, f"helpers left running after the revert: {left}"
    assert not list(Path(tempfile.gettempdir()).glob(f"*{tag}*")), "scratch folders left behind"


def test_a_pty_session_with_hints_never_names_the_fault(lab: Lab) -> None:
    path = scenario_for(lab, "database-exhaustion")
    wait_steady(lab, path)
    sc = load_scenario(path)
    reports = lab.work / "reports" / "pty"
    child = pexpect.spawn(
        drillkit_cmd()[0],
        [*drillkit_cmd()[1:], "train", str(path), "--trainee", "bob", "--report-dir", str(reports)],
        cwd=str(lab.work),
        env={**os.environ, "TERM": "xterm", "PYTHONUNBUFFERED": "1"},
        dimensions=(30, 120),
        encoding="utf-8",
        timeout=90,
    )
    transcript: list[str] = []
    child.logfile_read = _Collect(transcript)
    try:
        child.expect("INCIDENT REPORT")
        child.expect("PAGE: an alert is firing")  # in the status rows
        child.sendline("hint")
        child.expect(r"HINT 1/\d+")
        # type half a command, let the progress redraw a few times, then finish it
        mark = len("".join(transcript))
        child.send("ack P2 pool is f")
        child.expect(r"\| hints 1/")
        child.expect(r"\| hints 1/")
        child.expect(r"\| hints 1/")
        during = "".join(transcript)[mark:]
        child.sendline("ull")
        child.expect("ok: ack recorded")
        assert terminate_holder(lab) > 0
        child.expect("SERVICE RESTORED", timeout=120)  # the close-out window: the trainee ends it
        child.sendline("done")
        child.expect("ok: closing the exercise")
        child.expect("Exercise .* over: service restored", timeout=60)
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    folder = next(reports.glob("*/journal.jsonl")).parent
    # every progress redraw while the trainee typed was wrapped in cursor save/restore and
    # drawn in the top rows; nothing moved the cursor on the input line or erased it
    outside = re.sub(r"\x1b7.*?\x1b8", "", during, flags=re.S)
    assert outside.replace("ack P2 pool is f", "") == "", repr(outside)
    assert "\r" not in re.sub(r"\x1b7.*?\x1b8", "", during, flags=re.S)
    card = scorecard(folder)
    assert len(card["hints"]) == 1 and card["steps"][0]["hinted"], card["hints"]
    ack = [
        e for e in map(json.loads, (folder / "journal.jsonl").read_text().splitlines()) if e["kind"] == "acknowledged"
    ]
    assert ack and ack[0]["note"] == "pool is full" and ack[0]["severity"] == "P2", ack
    # blind: nothing on the trainee's terminal names the fault or its parameters
    text = "".join(transcript)
    found = named(text, giveaways(sc, sc.faults[0].params.dsn, "exhaust", "drillkit-", "holder"))
    assert not found, f"the trainee's terminal named {found}:\n{text}"


class _Collect:
    def __init__(self, sink: list[str]) -> None:
        self.sink = sink

    def write(self, data: str) -> None:
        self.sink.append(data)

    def flush(self) -> None:
        pass


def test_a_blind_memory_leak_cgroup_is_named_like_the_platforms_own(lab: Lab) -> None:
    path = scenario_for(lab, "memory-leak")
    wait_steady(lab, path)
    reports = lab.work / "reports" / "memory"
    proc = start_train(lab, path, reports)
    try:
        folder = wait_event(reports, "injected")
        run_id = folder.name.rsplit("-", 1)[1]
        events = [json.loads(x) for x in (folder / "journal.jsonl").read_text().splitlines() if x.strip()]
        groups = {e["data"]["cgroup"] for e in events if e["kind"].startswith("revert_") and "cgroup" in e["data"]}
        existed = {g: Path(g).is_dir() for g in groups}
        act(lab, reports, "give-up")
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    (group,) = groups
    assert Path(group).name == f"chatbot-app-{run_tag(run_id)}" and "drillkit" not in group, group
    assert run_id not in group, f"the cgroup (in every /proc/<pid>/cgroup) names the run id: {group}"
    assert existed[group], f"{group} did not exist while the fault was in place"
    assert not Path(group).exists(), f"{group} left behind after the revert"
    assert not named(out + err, giveaways(load_scenario(path), "memory-pressure", "cgroup", "oom")), out + err
