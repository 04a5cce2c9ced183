"""Exercises as a facilitator runs them, on a real lab of their own, with the trainee as another
user: the runner runs as root (the facilitator's account), the trainee reads as `nobody`.

- blind for real: everything the trainee's user can read while the fault is in place (`ps`,
  every readable /proc/<pid>/cmdline and environ, the lab folder, the reports folder, $TMPDIR's
  names, Prometheus' labels, rules and alerts, Alertmanager's alerts) names neither the fault's
  kind, the scenario, nor the run id; the helpers are not the runner's children;
- humane: a 30-minute default time limit; a close-out window after the service is back, in
  which a `resolved` update still counts; over-classifying the severity is a point to discuss,
  not a failure; a fault that heals before anyone could act needs no response;
- the facilitator's `drillkit watch` shows each action's detail and the service coming back;
- the trainee's terminal at 80 columns (rendered with pyte): the header fits, and the page is
  in the scrolling text at once, before the trainee presses Enter;
- `report trends`/`index` leave exercises out unless `--include-training`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pexpect
import psutil
import pytest
import requests
import yaml

from drillkit.faults import run_tag
from drillkit.lab.state import load_state
from drillkit.procs import alive
from drillkit.scenario import load_scenario
from drillkit.train import SELF_HEAL_S
from tests.helpers import drillkit_cmd, run_cli
from tests.test_lab_e2e import SCENARIOS, Lab, wait_steady
from tests.test_lab_up import free_block
from tests.test_train import HOLDER, _Collect, held, terminate_holder
from tests.trainee import journal_kinds, line, scorecard, wait_event

pytestmark = pytest.mark.integration
TRAINEE_USER = "nobody"  # any account that is not the runner's: the trainee's shell


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    """A lab in a folder the trainee's user may enter (as a lab set up for trainees is): the
    pytest temp folders are the runner's alone, which would make the giveaway grep vacuous."""
    work = Path(tempfile.mkdtemp(prefix="chat-"))
    work.chmod(0o755)
    base = free_block()
    r = run_cli("lab", "up", "--base-port", str(base), cwd=work, timeout=180)
    state = load_state(work / ".drillkit" / "lab")
    try:
        assert r.returncode == 0 and state is not None, f"lab up failed:\n{r.stdout}\n{r.stderr}"
        yield Lab(work, state)
    finally:
        pids = [p.pid for p in state.procs.values()] if state else []
        pids += [p for p in state.replica_pids().values() if p] if state else []
        down = run_cli("lab", "down", "--purge", cwd=work, timeout=120)
        shutil.rmtree(work, ignore_errors=True)
        assert down.returncode == 0, down.stderr
        assert not [p for p in pids if alive(p)], "lab processes left behind"


def pool(lab: Lab, name: str, **overrides: object) -> Path:
    """A folder holding only `name`'s scenario, under a name that says nothing: the exercise is
    started with `--random` over it, as a facilitator starts a blind one (the trainee's `ps`
    then shows no scenario file)."""
    data = yaml.safe_load((SCENARIOS / f"{name}.yaml").read_text())
    for dotted, value in overrides.items():
        *parents, key = dotted.split(".")
        node = data
        for p in parents:
            node = node.setdefault(p, {})
        node[key] = value
    (lab.work / "pools").mkdir(exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="p", dir=lab.work / "pools"))
    (folder / "s.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return folder


def start(lab: Lab, folder: Path, reports: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        drillkit_cmd("train", "--random", str(folder), "--trainee", "alice", "--report-dir", str(reports), *extra),
        cwd=lab.work,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def act(lab: Lab, reports: Path, *args: str) -> subprocess.CompletedProcess[str]:
    run_id = next(reports.glob("*/journal.jsonl")).parent.name.rsplit("-", 1)[1]
    return run_cli(args[0], run_id, *args[1:], "--by", "alice", "--report-dir", str(reports), cwd=lab.work)


def finish(proc: subprocess.Popen[str], timeout: float = 180) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def as_trainee(script: str, *args: str) -> str:
    """What `script` (sh) prints when run as the trainee's user."""
    r = subprocess.run(
        ["runuser", "-u", TRAINEE_USER, "--", "sh", "-c", script, "sh", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd="/",
    )
    return r.stdout


TRAINEE_VIEW = r"""
echo '== ps'; ps -eww -o pid,ppid,sid,user,comm,args
echo '== proc'
for d in /proc/[0-9]*; do
  c=$(tr '\0' ' ' < "$d/cmdline" 2>/dev/null); e=$(tr '\0' ' ' < "$d/environ" 2>/dev/null)
  [ -n "$c$e" ] && printf '%s %s | %s\n' "${d#/proc/}" "$c" "$e"
done
echo '== names'; find "$1" "$2" 2>/dev/null
echo '== tmp'; ls -a "$3"
echo '== contents'; grep -rIiF -f "$4" "$1" "$2" 2>/dev/null
"""


def http_views(lab: Lab) -> str:
    """Prometheus' label names and values, rules and alerts, and Alertmanager's alerts: open to
    anyone on the machine."""
    prom, am = lab.state.urls["prometheus"], lab.state.urls["alertmanager"]
    parts = [requests.get(f"{prom}/api/v1/{p}", timeout=10).text for p in ("rules", "alerts", "labels")]
    for name in requests.get(f"{prom}/api/v1/labels", timeout=10).json()["data"]:
        parts.append(requests.get(f"{prom}/api/v1/label/{name}/values", timeout=10).text)
    parts.append(requests.get(f"{am}/api/v2/alerts", timeout=10).text)
    return "\n".join(parts)


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("database-exhaustion", ["db-connection-exhaustion", "hold-connections", "holder", "drillkit.faults"]),
        ("auth-failures", ["auth-secret-corruption", "backup", "drillkit.faults"]),
        # `latency` is the lab's own word (latency.json, ChatbotHighLatency): not a giveaway
        ("high-latency", ["drillkit.faults"]),
    ],
)
def test_nothing_the_trainees_user_can_read_names_the_fault(lab: Lab, name: str, words: list[str]) -> None:
    folder = pool(lab, name)
    sc = load_scenario(folder / "s.yaml")
    wait_steady(lab, folder / "s.yaml")
    (lab.work / "reports").mkdir(exist_ok=True)
    reports = Path(tempfile.mkdtemp(prefix="r", dir=lab.work / "reports"))
    reports.chmod(0o755)
    proc = start(lab, folder, reports)
    patterns = Path(tempfile.mkstemp(prefix="p-")[1])
    try:
        run = wait_event(reports, "detected")
        run_id = run.name.rsplit("-", 1)[1]
        secrets = [run_id, sc.name, *words]
        patterns.write_text("\n".join(secrets) + "\n")
        patterns.chmod(0o644)
        tmp = tempfile.gettempdir()
        lab_dir = str(lab.work / ".drillkit" / "lab")
        view = as_trainee(TRAINEE_VIEW, lab_dir, str(reports), tmp, str(patterns))
        denied = as_trainee('ls "$1" >/dev/null 2>&1 && echo READABLE || echo DENIED', str(run))
        web = http_views(lab)
        helpers = [
            p for p in psutil.process_iter(["cmdline"]) if f"-{run_tag(run_id)}/" in " ".join(p.info["cmdline"] or ())
        ]
        parents = {h.pid: (h.ppid(), os.getsid(h.pid)) for h in helpers}
        runner_sid = os.getsid(proc.pid)
        modes = {p.name: oct(p.stat().st_mode & 0o777) for p in (run, run / "facilitator.log", run / "journal.jsonl")}
        assert act(lab, reports, "give-up").returncode == 0
        out, err = finish(proc)
    finally:
        patterns.unlink(missing_ok=True)
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    sections = dict(re.findall(r"== (\w[\w ]*)\n(.*?)(?=\n== |\Z)", view, flags=re.S))
    # the grep has teeth: the trainee's user saw the machine, the lab and Prometheus
    assert len(sections["ps"].splitlines()) > 10 and "drillkit.lab.app" in sections["ps"], sections["ps"][:2000]
    assert "latency.json" in sections["names"] and "logs" in sections["names"], sections["names"][:2000]
    assert "ChatbotServiceDown" in web, web[:500]
    assert denied.strip() == "DENIED", "the trainee's user can list the run folder"
    assert modes[run.name] == "0o700" and modes["facilitator.log"] == "0o600", modes
    assert f"-exercise-{run_id}" in run.name and sc.name not in run.name, run.name
    # the run folder's own name (in reports/) holds the run id the trainee's header shows anyway
    names = [n for n in sections["names"].splitlines() if not n.endswith(f"-exercise-{run_id}")]
    seen = {
        "ps": sections["ps"],
        "/proc cmdline+environ": sections["proc"],
        "names (lab, reports)": "\n".join(names),
        "lab and reports files": sections["contents"],
        "Prometheus and Alertmanager": web,
    }
    # other people's drills run on this machine too: in `ps` and /proc, the fault's words count
    # on lines of this exercise (its lab, its scratch folders); the run id and scenario anywhere
    ours = (str(lab.work), run_tag(run_id), urlsplit(lab.state.dsn).netloc.rsplit("@", 1)[-1])
    for where in ("ps", "/proc cmdline+environ"):
        seen[where] = "\n".join(
            ln for ln in seen[where].splitlines() if any(o in ln for o in ours) or run_id in ln or sc.name in ln
        )
    found = {where: [s for s in secrets if s.lower() in text.lower()] for where, text in seen.items()}
    # $TMPDIR is everyone's: its names are searched for this run's id and scenario only
    found["$TMPDIR names"] = [s for s in (run_id, sc.name) if s in sections["tmp"]]
    found = {where: hits for where, hits in found.items() if hits}
    assert not found, (
        f"the trainee's user can read giveaways: {found}\n"
        + "\n".join(
            ln for text in seen.values() for ln in text.splitlines() if any(s.lower() in ln.lower() for s in secrets)
        )[:4000]
    )
    labels = requests.get(f"{lab.state.urls['prometheus']}/api/v1/labels", timeout=10).json()["data"]
    assert "severity" not in labels and "incident" not in labels, labels
    assert all(ppid != proc.pid and sid != runner_sid for ppid, sid in parents.values()), parents
    assert "you gave up" in out, out + err
    assert "run_id" not in (lab.work / ".drillkit" / "lab" / "latency.json").read_text()


def test_a_30_minute_default_a_close_out_window_and_over_classification(lab: Lab) -> None:
    """No --time-limit: the exercise gives 30 minutes (said on the terminal, journalled). The
    trainee acknowledges P1 for a P2 (more severe: to discuss, not a failure), mitigates by hand,
    and the exercise stays open for the close-out window: the `resolved` update posted then
    counts. `drillkit watch` shows every action's detail and the service coming back."""
    folder = pool(lab, "database-exhaustion")
    wait_steady(lab, folder / "s.yaml")
    reports = lab.work / "reports" / "close-out"
    reports.mkdir(parents=True)
    proc = start(lab, folder, reports, "--close-out", "6s")
    watch: subprocess.Popen[str] | None = None
    try:
        run = wait_event(reports, "detected")
        run_id = run.name.rsplit("-", 1)[1]
        watch = subprocess.Popen(
            drillkit_cmd("watch", run_id, "--report-dir", str(reports)),
            cwd=lab.work,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        day = time.strftime("%Y-%m-%d", time.gmtime())
        for args in (
            ("ack", "--severity", "P1", "--note", "db errors"),
            ("channel", f"#incident-{day}-chat-db"),
            ("update", "investigating", "--state", "investigating"),
            ("step", "1"),
            ("hint",),
        ):
            r = act(lab, reports, *args)
            assert r.returncode == 0, (args, r.stderr)
        time.sleep(SELF_HEAL_S)
        assert terminate_holder(lab) > 0
        mitigated = wait_event(reports, "mitigated", timeout=60)
        time.sleep(2)
        assert proc.poll() is None, "the exercise ended at once when the service came back: no close-out"
        resolved = act(lab, reports, "update", "fixed: idle connections terminated", "--state", "resolved")
        assert resolved.returncode == 0, resolved.stderr
        out, err = finish(proc)
        w_out, _ = watch.communicate(timeout=60)
    finally:
        for p in (proc, watch):
            if p is not None and p.poll() is None:
                p.kill()
                p.communicate()
    events = [json.loads(x) for x in (mitigated / "journal.jsonl").read_text().splitlines()]
    started = next(e for e in events if e["kind"] == "exercise_started")
    assert started["time_limit"] == 1800 and started["close_out"] == 6, started
    assert "you have 30m" in out, out + err
    by_kind = {e["kind"]: e for e in events}
    assert by_kind["closed_out"]["by"] == "time", by_kind["closed_out"]
    assert by_kind["closed_out"]["mono"] - by_kind["mitigated"]["mono"] >= 5.5, "the close-out window was cut short"
    assert held(lab) == 0
    card = scorecard(mitigated)
    sev = line(card, "Severity")
    assert sev["outcome"] == "to discuss" and "more severe" in sev["detail"], sev
    assert card["missed"] == 0 or "Severity" not in json.dumps([x for x in card["checks"] if x["outcome"] == "wrong"])
    updates = line(card, "Status updates")
    assert "resolved" in updates["detail"], updates
    report = json.loads((mitigated / "report.json").read_text())
    graded = next(v for v in report["verdicts"] if v["target"] == "classification")
    assert graded["met"] is None, graded
    for said in (
        "alice: acknowledged as P1: db errors",
        f"alice: declared channel #incident-{day}-chat-db",
        "alice: status page (resolved): fixed: idle connections terminated",
        "alice: step 1 done: initial response:",
        "hint 1/",
        "service restored at +",
        "paged:",
    ):
        assert said in w_out, f"watch did not show {said!r}:\n{w_out}"
    assert HOLDER not in out


def test_a_memory_leak_that_heals_before_anyone_could_act_needs_no_response(lab: Lab) -> None:
    folder = pool(lab, "memory-leak")
    wait_steady(lab, folder / "s.yaml")
    reports = lab.work / "reports" / "self-heal"
    reports.mkdir(parents=True)
    proc = start(lab, folder, reports)
    run = wait_event(reports, "injected")
    out, err = finish(proc, 240)
    kinds = journal_kinds(run / "journal.jsonl")
    if "mitigated" not in kinds:
        pytest.fail(f"the replica did not come back by itself: {kinds}\n{out}\n{err}")
    events = [json.loads(x) for x in (run / "journal.jsonl").read_text().splitlines()]
    detected = next((e for e in events if e["kind"] == "detected"), None)
    mitigated = next(e for e in events if e["kind"] == "mitigated")
    assert detected is not None and mitigated["mono"] - detected["mono"] <= SELF_HEAL_S, (detected, mitigated)
    assert mitigated["by"] == "itself", mitigated
    assert "no response needed" in out, out + err
    card = scorecard(run)
    for item in ("Time to acknowledge", "Time to mitigate", "Severity"):
        assert line(card, item)["outcome"] == "not needed", line(card, item)
    assert card["missed"] == 0, json.dumps(card, indent=1)
    assert card["badge"] == "self-healed"
    assert "acknowledge_missed" not in kinds, kinds


def test_the_trainees_terminal_at_80_columns(lab: Lab) -> None:
    """Rendered as the terminal shows it (pyte): the header fits the 80 columns with whole
    fields, and PAGE is in the scrolling text at once, before the trainee pressed Enter."""
    import pyte

    folder = pool(lab, "database-exhaustion")
    wait_steady(lab, folder / "s.yaml")
    reports = lab.work / "reports" / "eighty"
    child = pexpect.spawn(
        drillkit_cmd()[0],
        [*drillkit_cmd()[1:], "train", "--random", str(folder), "--trainee", "bob", "--report-dir", str(reports)],
        cwd=str(lab.work),
        env={**os.environ, "TERM": "xterm", "PYTHONUNBUFFERED": "1", "COLUMNS": "80", "LINES": "24"},
        dimensions=(24, 80),
        encoding="utf-8",
        timeout=120,
    )
    screen = pyte.Screen(80, 24)
    stream = pyte.Stream(screen)
    transcript: list[str] = []
    child.logfile_read = _Collect(transcript)
    try:
        child.expect("PAGE: an alert is firing")
        child.expect(r"ack(nowledged)?: no")  # a header drawn after the page
        child.expect(r"ack(nowledged)?: no")
        stream.feed("".join(transcript))
        header = screen.display[0].rstrip()
        rows = [r.rstrip() for r in screen.display]
        child.sendline("give up")
        child.expect("Exercise .* over", timeout=120)
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert len(header) <= 80 and re.search(r"\| ack(nowledged)?: no( \| `help`)?$", header), header
    assert not re.search(r"acknowledg$|acknowledge$", header), header
    assert any("PAGE: an alert is firing" in r for r in rows[2:]), "\n".join(rows)


def test_trends_and_index_leave_exercises_out_unless_asked(lab: Lab) -> None:
    """A real drill and a real exercise of the same scenario under one reports folder: by
    default trends and index count the drill only; --include-training adds the exercise, marked
    and grouped apart."""
    reports = lab.work / "reports" / "history"
    path = pool(lab, "high-latency") / "s.yaml"
    wait_steady(lab, path)
    drill = run_cli("run", str(path), "--report-dir", str(reports), cwd=lab.work, timeout=300)
    assert drill.returncode in (0, 1), drill.stderr
    wait_steady(lab, path)
    proc = start(lab, path.parent, reports)
    wait_event_exercise(reports)
    assert act_exercise(lab, reports, "give-up").returncode == 0
    finish(proc)
    assert run_cli("report", "trends", str(reports), cwd=lab.work).returncode == 0
    plain = json.loads((reports / "trends.json").read_text())
    assert run_cli("report", "index", str(reports), cwd=lab.work).returncode == 0
    index = json.loads((reports / "index.json").read_text())
    assert [r["training"] for r in index["runs"]] == [False], index["runs"]
    assert "(training)" not in json.dumps(plain), json.dumps(plain)[:2000]
    assert run_cli("report", "trends", str(reports), "--include-training", cwd=lab.work).returncode == 0
    both = (reports / "trends.json").read_text()
    assert "lab-high-latency (training)" in both and '"lab-high-latency"' in both, both[:2000]
    assert run_cli("report", "index", str(reports), "--include-training", cwd=lab.work).returncode == 0
    index = json.loads((reports / "index.json").read_text())
    assert sorted(r["training"] for r in index["runs"]) == [False, True], index["runs"]
    assert "training: alice" in (reports / "index.md").read_text()


def wait_event_exercise(reports: Path) -> Path:
    """The exercise's run folder (the one named `…-exercise-…`) once the alert fired."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for journal in reports.glob("*-exercise-*/journal.jsonl"):
            if "detected" in journal_kinds(journal):
                return journal.parent
        time.sleep(0.2)
    raise AssertionError("the exercise never paged")


def act_exercise(lab: Lab, reports: Path, *args: str) -> subprocess.CompletedProcess[str]:
    run_id = wait_event_exercise(reports).name.rsplit("-", 1)[1]
    return run_cli(args[0], run_id, *args[1:], "--by", "alice", "--report-dir", str(reports), cwd=lab.work)


def test_lab_status_answers_at_once_and_names_a_frozen_replica(lab: Lab) -> None:
    """Runbook step 2 during an outage: a frozen replica (SIGSTOP: the kernel still completes
    TCP handshakes for it) is `not responding`, and `lab status` answers within about a second
    per component instead of hanging on it."""
    import signal

    pid = lab.replica_pids()["api-2"]
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        r = run_cli("lab", "status", cwd=lab.work, timeout=60)
        took = time.monotonic() - started
    finally:
        os.kill(pid, signal.SIGCONT)
    row = next(ln for ln in r.stdout.splitlines() if ln.startswith("api-2"))
    assert "not responding" in row and "process stopped" in row, r.stdout
    others = [ln for ln in r.stdout.splitlines() if ln.split()[:1] and ln.split()[0] != "api-2"]
    assert all(" up " in f"{ln} " for ln in others), r.stdout
    assert r.returncode == 3, r
    assert took < 10, f"lab status took {took:.1f}s with one frozen replica"
