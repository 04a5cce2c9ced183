"""What people type, at its worst (issue 17, items 3, 5, 6 and 8): bytes that are not UTF-8,
run ids that are paths or globs, terminal escape sequences, absurd durations, and where suite
errors and attempt pages point.

- bytes that are not UTF-8 are refused at every responder command (exit 2, one line), and a
  line already on disk with such bytes (or a lone-surrogate escape) never stops a reader:
  `drillkit report`, `scorecard`, `watch`, nor a running drill or exercise, which writes all
  of its reports (the real ones run against the real Prometheus of tests/promfixture.py);
- a run id is the exact form drillkit makes (8 lowercase hex digits) before any path is built,
  and its folder is found by exact suffix, never by glob;
- nothing a person typed reaches a terminal with its control characters: `watch`, the trainee's
  console, the facilitator log and every stderr line;
- durations are bounded (at most 365 days), `drillkit attempts` finds run folders at any depth
  as `report index|trends` do, and a suite's override error points at the suite file.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from drillkit import respond
from drillkit.cli import main
from drillkit.engine import new_run_id
from drillkit.errors import ScenarioError
from drillkit.journal import Journal
from drillkit.respond import read_actions
from drillkit.suite import load_suite
from tests.helpers import drillkit_cmd, write_scenario
from tests.promfixture import PromEnv
from tests.test_policy_journal_report import fixed_journal
from tests.test_responder_actions import RUN, started_run
from tests.test_scorecard import exercise_folder

DATA = Path(__file__).parent / "data"
# what a terminal acts on instead of showing: ESC (CSI, OSC…), BEL, CR, backspace, the other C0
# controls but newline and tab, DEL and the C1 controls (8-bit CSI is \x9b)
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
HOSTILE_NOTE = "\x1b]0;PWNED\x07\x1b[2J\x1b[Hall clear\r\x9b31mok\x7f"
HOSTILE_BY = "x\x1b[1A\x1b[2K"


def run(
    *args: str | bytes, env: dict[str, str | bytes] | None = None, **kw: object
) -> subprocess.CompletedProcess[bytes]:
    """The real CLI, its arguments passed as bytes where a test needs bytes that are not UTF-8."""
    environ: dict[str | bytes, str | bytes] = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run([*drillkit_cmd(), *args], capture_output=True, timeout=60, env=environ, **kw)  # type: ignore[call-overload,no-any-return]


def one_line_refusal(r: subprocess.CompletedProcess[bytes]) -> str:
    err = r.stderr.decode("utf-8")  # never a byte that is not UTF-8, even in the refusal
    assert r.returncode == 2, (r.returncode, err)
    assert len(err.strip().splitlines()) == 1 and err.startswith("drillkit: "), err
    assert "Traceback" not in err and not CONTROL.search(err.strip()), err
    return err


def clean_utf8(path: Path) -> str:
    """The file's text; it must decode as UTF-8, strictly."""
    return path.read_bytes().decode("utf-8")


# --- item 3: bytes that are not UTF-8 ----------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["note", RUN, b"pool full\xff"],
        ["note", RUN, "fine", "--by", b"al\xffice"],
        ["ack", RUN, "--note", b"on it\xfe"],
        ["channel", RUN, b"#incident-2026-05-04-db\xff"],
        ["handover", RUN, "comms", b"b\xffob"],
        ["update", RUN, b"investigating\xff", "--status-page"],
        ["update", RUN, "investigating", "--by", b"car\xffol"],
    ],
    ids=["note", "note-by", "ack-note", "channel", "handover-to", "update", "update-by"],
)
def test_bytes_that_are_not_utf8_are_refused_at_the_command(tmp_path: Path, args: list[str | bytes]) -> None:
    folder = started_run(tmp_path)
    err = one_line_refusal(run(*args, "--report-dir", str(tmp_path)))
    assert "not UTF-8" in err and "nothing recorded" in err, err
    assert not (folder / "updates.jsonl").exists(), "a refused action must not be written"


def test_a_user_name_that_is_not_utf8_is_refused_as_the_default_author(tmp_path: Path) -> None:
    folder = started_run(tmp_path)
    err = one_line_refusal(run("ack", RUN, "--report-dir", str(tmp_path), env={"USER": b"m\xfcller"}))
    assert "--by" in err, err
    assert not (folder / "updates.jsonl").exists()


def test_a_trainee_name_that_is_not_utf8_is_refused_before_anything_starts(tmp_path: Path) -> None:
    r = run("train", str(DATA / "exporter-kill.yaml"), "--trainee", b"al\xffice", "--report-dir", str(tmp_path))
    assert "--trainee" in one_line_refusal(r)
    assert not list(tmp_path.iterdir()), "nothing may be created"


def hostile_lines_on_disk(folder: Path) -> None:
    """Lines another program (or a hand) left: a lone-surrogate JSON escape and raw bytes that
    are not UTF-8 in the actions file, an escape in the journal (raw bytes there are a located
    damaged line: tests/test_journal_bytes.py), and a facilitator log line of such bytes."""
    with (folder / "updates.jsonl").open("ab") as fh:
        fh.write(b'{"kind": "note", "at": "2026-05-04T10:15:30Z", "by": "x\\udcff", "message": "bad\\ud800"}\n')
        fh.write(b'{"kind": "status_update", "at": "2026-05-04T10:15:31Z", "by": "y\xff", "message": "b\xfe\xff"}\n')
    lines = (folder / "journal.jsonl").read_bytes().splitlines(keepends=True)
    third = json.loads(lines[2])
    line = {"kind": "hint_request", "at": third["at"], "mono": third["mono"], "by": "j\udcff"}
    lines.insert(3, json.dumps(line).encode() + b"\n")  # json.dumps writes the lone surrogate as \\udcff
    (folder / "journal.jsonl").write_bytes(b"".join(lines))
    (folder / "facilitator.log").write_bytes(b"10:15:02 action: note by x\xff bad\xed\xa0\x80\n")


def test_readers_survive_bytes_that_are_not_utf8_already_on_disk(tmp_path: Path) -> None:
    drill = tmp_path / "reports" / "2026-11-29T093000Z-exporter-kill-0123abcd"
    fixed_journal(drill, datetime(2026, 11, 29, 9, 30, tzinfo=UTC), enrich=True)
    hostile_lines_on_disk(drill)
    assert {a.by for a in read_actions(drill)} >= {"x\ufffd", "y\ufffd"}, "mended, not dropped"
    r = run("report", str(drill))
    assert r.returncode == 0 and b"Traceback" not in r.stderr, r.stderr.decode(errors="replace")
    for name in ("report.md", "report.html", "report.json", "junit.xml"):
        clean_utf8(drill / name)
    assert "x\ufffd" in clean_utf8(drill / "report.md"), "the responder is shown, mended"

    run_id = "5c0ec0de"
    exercise = exercise_folder(tmp_path / "exercises", run_id)
    hostile_lines_on_disk(exercise)
    r = run("scorecard", run_id, "--report-dir", str(tmp_path / "exercises"))
    assert r.returncode == 0 and b"Traceback" not in r.stderr, r.stderr.decode(errors="replace")
    card = json.loads(clean_utf8(exercise / "scorecard.json"))
    assert "x\ufffd" in card["people"], card["people"]
    clean_utf8(exercise / "scorecard.html")

    r = run("watch", run_id, "--report-dir", str(tmp_path / "exercises"))
    assert r.returncode == 0 and b"Traceback" not in r.stderr, r.stderr.decode(errors="replace")
    out = r.stdout.decode("utf-8")
    assert "action: note by x\ufffd bad" in out and f"run {run_id} ended at" in out, out


def test_bytes_that_are_not_utf8_in_the_journal_are_one_located_line_for_every_reader(tmp_path: Path) -> None:
    run_id = "5c0ec0de"
    folder = exercise_folder(tmp_path, run_id)
    lines = (folder / "journal.jsonl").read_bytes().splitlines(keepends=True)
    lines.insert(3, b'{"kind": "hint_request", "at": "2026-05-04T10:15:03Z", "mono": 103.0, "by": "k\xff"}\n')
    (folder / "journal.jsonl").write_bytes(b"".join(lines))
    for args in (["report", str(folder)], ["scorecard", run_id, "--report-dir", str(tmp_path)]):
        assert "journal.jsonl:4: journal line is not UTF-8 text" in one_line_refusal(run(*args))
    r = run("watch", run_id, "--report-dir", str(tmp_path))  # the run's end is still seen
    assert r.returncode == 0 and f"run {run_id} ended at" in r.stdout.decode(), r


@pytest.mark.integration
def test_a_drill_with_command_acks_survives_hostile_responders(prom_env: PromEnv, tmp_path: Path) -> None:
    """`drillkit run`, acknowledged with `drillkit ack`: an update that is not UTF-8 is refused
    (exit 2), lines of such bytes already in the actions file are read through, an author's
    escape sequences never reach the drill's stderr, and the drill passes with every report."""
    prom_env.ensure_exporter()
    prom_env.wait_up()
    path = write_scenario(tmp_path / "drill.yaml", prom_env.scenario(response={"acknowledge": "command"}))
    reports = tmp_path / "reports"
    proc = subprocess.Popen(
        [*drillkit_cmd(), "run", str(path), "--prometheus-url", prom_env.url, "--report-dir", str(reports)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        folder = wait_for(reports, "detected")
        run_id = folder.name.rsplit("-", 1)[1]
        one_line_refusal(run("update", run_id, b"investigating\xff", "--status-page", "--report-dir", str(reports)))
        with (folder / "updates.jsonl").open("ab") as fh:
            fh.write(b'{"kind": "note", "at": "2026-05-04T10:15:30Z", "by": "x\\udcff", "message": "\xff\\ud800"}\n')
        ok = run("ack", run_id, "--by", HOSTILE_BY, "--note", HOSTILE_NOTE, "--report-dir", str(reports))
        assert ok.returncode == 0 and not CONTROL.search(ok.stdout.decode().strip()), ok
        _, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    text = err.decode("utf-8")
    assert proc.returncode == 0, f"exit {proc.returncode}\n{text}"
    assert "acknowledged by x" in text and not CONTROL.search(text.replace("\n", "")), text
    for name in ("report.md", "report.html", "report.json", "junit.xml"):
        clean_utf8(folder / name)
    report = json.loads(clean_utf8(folder / "report.json"))
    assert report["status"] == "passed", report["status"]


@pytest.mark.integration
def test_an_exercise_survives_hostile_responders_and_writes_every_report(prom_env: PromEnv, tmp_path: Path) -> None:
    """`drillkit train` with a responder sending bytes that are not UTF-8 and escape sequences
    from another shell, the trainee typing both at the console, and lines of such bytes already
    in the actions file: the exercise goes on to its end (the trainee gives up), writes the
    report, JUnit and the scorecard, and neither the trainee's console, nor the facilitator's
    log, nor `drillkit watch` carries a control character."""
    prom_env.ensure_exporter()
    prom_env.wait_up()
    path = write_scenario(tmp_path / "drill.yaml", prom_env.scenario())
    reports = tmp_path / "reports"
    train = ["train", str(path), "--trainee", "alice", "--report-dir", str(reports), "--prometheus-url", prom_env.url]
    proc = subprocess.Popen(
        [*drillkit_cmd(), *train],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    watch: subprocess.Popen[bytes] | None = None
    try:
        folder = wait_for(reports, "exercise_started")
        run_id = folder.name.rsplit("-", 1)[1]
        watch = subprocess.Popen(
            [*drillkit_cmd(), "watch", run_id, "--report-dir", str(reports)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        one_line_refusal(run("note", run_id, b"bad\xff", "--report-dir", str(reports)))
        ok = run("note", run_id, HOSTILE_NOTE, "--by", HOSTILE_BY, "--report-dir", str(reports))
        assert ok.returncode == 0, ok
        with (folder / "updates.jsonl").open("ab") as fh:
            fh.write(b'{"kind": "note", "at": "2026-05-04T10:15:30Z", "by": "x\\udcff", "message": "\xff\\ud800"}\n')
        assert proc.stdin is not None
        proc.stdin.write(b"note typed \xff at the console\n")
        proc.stdin.write(b"frobnicate \x1b]0;PWNED\x07\x1b[2J\n")
        proc.stdin.write(b"note \x1b[31mred\x1b[0m finding\n")
        proc.stdin.flush()
        time.sleep(1.5)  # the exercise reads the console and the actions file every tick
        assert run("give-up", run_id, "--report-dir", str(reports)).returncode == 0
        out, err = proc.communicate(timeout=180)
        watched, watch_err = watch.communicate(timeout=60)
    finally:
        for p in (proc, watch):
            if p is not None and p.poll() is None:
                p.kill()
                p.communicate()
    trainee = out.decode("utf-8")
    assert proc.returncode == 1 and "you gave up" in trainee, f"exit {proc.returncode}\n{trainee}\n{err!r}"
    assert "not UTF-8" in trainee and "not understood: frobnicate" in trainee, trainee
    assert not CONTROL.search(trainee.replace("\n", "")), repr(trainee)
    for name in ("report.md", "report.html", "report.json", "junit.xml", "scorecard.md", "scorecard.html"):
        clean_utf8(folder / name)
    card = json.loads(clean_utf8(folder / "scorecard.json"))
    assert card["outcome"].startswith("gave up"), card["outcome"]
    notes = [a.message for a in read_actions(folder) if a.kind.value == "note"]
    assert any(n.endswith("finding") for n in notes), notes
    log = clean_utf8(folder / "facilitator.log")
    assert "all clear" in log and not CONTROL.search(log.replace("\n", "")), repr(log)
    shown = watched.decode("utf-8")
    assert watch.returncode == 0 and "all clear" in shown, (shown, watch_err)
    assert not CONTROL.search(shown.replace("\n", "")), repr(shown)


def wait_for(reports: Path, kind: str, timeout: float = 60) -> Path:
    """The one run folder under `reports` once its journal has a `kind` event."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for journal in reports.glob("*/journal.jsonl") if reports.exists() else []:
            if f'"kind": "{kind}"' in journal.read_text(errors="replace"):
                return journal.parent
        time.sleep(0.1)
    raise AssertionError(f"no {kind!r} event under {reports} within {timeout}s")


# --- item 5: run ids --------------------------------------------------------------------------


def test_every_run_id_drillkit_makes_is_of_the_checked_form() -> None:
    ids = {new_run_id() for _ in range(200)}
    assert all(respond.RUN_ID.fullmatch(i) for i in ids), ids


def test_a_run_id_that_climbs_out_of_the_reports_folder_is_refused(tmp_path: Path) -> None:
    """`note '9710a4fc/../../../victim'` wrote victim/updates.jsonl outside the reports folder."""
    reports = tmp_path / "a" / "b" / "reports"
    started_run(reports, finished=True)
    victim = tmp_path / "victim"
    victim.mkdir()
    r = CliRunner().invoke(main, ["note", f"{RUN}/../../../../victim", "text", "--report-dir", str(reports)])
    assert r.exit_code == 2 and "not a run id" in r.stderr, (r.exit_code, r.stderr)
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (victim / "updates.jsonl").exists(), "written outside the reports folder"


BAD_IDS = ["*", "0badc0d?", "[0-9a-f]*", "0BADC0DE", "0badc0de0", "badc0de", "", "../x", "0badc0de/..", " 0badc0de"]


@pytest.mark.parametrize("run_id", BAD_IDS)
@pytest.mark.parametrize("command", [["ack"], ["note", "x"], ["hint"], ["give-up"], ["watch"], ["scorecard"]])
def test_a_run_id_not_of_drillkits_form_is_bad_input(tmp_path: Path, run_id: str, command: list[str]) -> None:
    started_run(tmp_path, finished=True)  # `watch` would follow a running one (for a day, before)
    args = [command[0], run_id, *command[1:], "--report-dir", str(tmp_path)]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2 and "not a run id" in r.stderr, (args, r.exit_code, r.stderr, r.exception)
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not list(tmp_path.glob("*/updates.jsonl")), "nothing recorded"


def test_ack_star_acknowledges_no_run(tmp_path: Path) -> None:
    """`drillkit ack '*'` acknowledged the newest run."""
    started_run(tmp_path)
    r = CliRunner().invoke(main, ["ack", "*", "--report-dir", str(tmp_path)])
    assert r.exit_code == 2 and "not a run id" in r.stderr, (r.exit_code, r.stderr)
    assert not list(tmp_path.glob("*/updates.jsonl")), "nothing recorded"


def test_update_refuses_a_glob_run_id(tmp_path: Path) -> None:
    started_run(tmp_path)
    r = CliRunner().invoke(main, ["update", "*", "on it", "--report-dir", str(tmp_path)])
    assert r.exit_code == 2 and "not a run id" in r.stderr, (r.exit_code, r.stderr)


def test_the_run_folder_is_found_by_exact_suffix(tmp_path: Path) -> None:
    started_run(tmp_path)
    decoy = tmp_path / f"2026-05-04T101500Z-x{RUN}"  # ends with the id, but not as its last part
    decoy.mkdir()
    (tmp_path / f"2026-05-04T101500Z-notes-{RUN}.txt").write_text("a file, not a run folder")
    r = CliRunner().invoke(main, ["note", RUN, "here", "--report-dir", str(tmp_path), "--by", "alice"])
    assert r.exit_code == 0, r.output
    (written,) = tmp_path.glob("*/updates.jsonl")
    assert written.parent.name == f"2026-05-04T101500Z-exercise-{RUN}", written


# --- item 6: terminal escape sequences ---------------------------------------------------------


def test_watch_strips_control_characters_from_what_people_typed(tmp_path: Path) -> None:
    run_id = "0a7c4123"
    folder = tmp_path / f"2026-05-04T101500Z-x-{run_id}"
    journal = Journal(folder / "journal.jsonl")
    journal.append("started", run_id=run_id, scenario={}, limits={})
    journal.append("finished", status="passed", reason="")
    journal.close()
    (folder / "facilitator.log").write_text(f"10:15:02 action: note by {HOSTILE_BY} {HOSTILE_NOTE}\n\ttabbed\n")
    r = run("watch", run_id, "--report-dir", str(tmp_path))
    out = r.stdout.decode("utf-8")
    assert r.returncode == 0, r.stderr
    assert "action: note by x" in out and "all clear" in out and "\ttabbed" in out, out
    assert not CONTROL.search(out.replace("\n", "").replace("\t", "")), repr(out)


def test_a_responder_command_echoes_no_control_characters(tmp_path: Path) -> None:
    started_run(tmp_path)
    """click strips CSI from what it echoes to a pipe, not OSC (a window title, a hyperlink)."""
    r = run("channel", RUN, "#incident\x1b]0;PWNED\x07", "--by", HOSTILE_BY, "--report-dir", str(tmp_path))
    out = r.stdout.decode("utf-8")
    assert r.returncode == 0 and "declared" in out, (out, r.stderr)
    assert not CONTROL.search(out.strip()), repr(out)


def test_an_error_line_carries_no_control_characters(tmp_path: Path) -> None:
    """Every stderr line goes through the one scrubber: an error naming a typed key too."""
    data = yaml.safe_load((DATA / "exporter-kill.yaml").read_text())
    data["detection"]["with\x1b]0;PWNED\x07in\x1b[2J"] = "30s"
    path = write_scenario(tmp_path / "x.yaml", data)
    for args in (["run", str(path), "--dry-run", "--report-dir", str(tmp_path / "r")], ["validate", str(path)]):
        r = run(*args)
        err = r.stderr.decode("utf-8")
        assert r.returncode == 2 and "detection.within: unknown key" in err, err  # the OSC string is gone
        assert not CONTROL.search(err.replace("\n", "")), repr(err)


# --- item 8: durations, attempts, suite overrides ---------------------------------------------


@pytest.mark.parametrize("within", [1.0e308, 31_622_400, "9999999d", "366d", "53w"])
def test_a_duration_beyond_a_year_is_a_located_error(tmp_path: Path, within: object) -> None:
    data = yaml.safe_load((DATA / "exporter-kill.yaml").read_text())
    data["detection"]["within"] = within
    path = write_scenario(tmp_path / "long.yaml", data)
    r = CliRunner().invoke(main, ["validate", str(path)])
    assert r.exit_code == 2, r.output
    assert re.search(r"long\.yaml:\d+: detection\.within: expected a duration of at most 365d", r.output), r.output


def test_a_year_is_still_a_duration(tmp_path: Path) -> None:
    data = yaml.safe_load((DATA / "exporter-kill.yaml").read_text())
    data["recovery"]["within"] = "365d"
    path = write_scenario(tmp_path / "year.yaml", data)
    r = CliRunner().invoke(main, ["validate", str(path)])
    assert r.exit_code == 0, r.output


def test_attempts_finds_exercises_at_any_depth_as_the_history_does(tmp_path: Path) -> None:
    from drillkit.history import find_runs
    from drillkit.scorecard import write_scorecard

    write_scorecard(exercise_folder(tmp_path, "aaaa0001", "alice"))
    write_scorecard(exercise_folder(tmp_path / "2026-Q1" / "ci-artifacts", "bbbb0002", "bob"))
    r = CliRunner().invoke(main, ["attempts", str(tmp_path)])
    assert r.exit_code == 0, r.output
    md = (tmp_path / "attempts.md").read_text()
    assert "| alice |" in md and "| bob |" in md, md
    assert "2026-Q1/ci-artifacts/2026-05-04T101500Z-lab-database-exhaustion-bbbb0002/scorecard.md" in md, md
    runs, _ = find_runs(tmp_path)
    assert sorted(r.folder for r in runs) == respond.run_folders(tmp_path), "one discovery for both"


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        (
            "      detection:\n        within: soon\n",
            r"q\.suite\.yaml:5: drills\[0\]\.overrides\.detection\.within: expected a duration",
        ),
        (
            "      faults:\n        - kind: process-kill\n          pidfile: /x.pid\n          count: two\n",
            r"q\.suite\.yaml:7: drills\[0\]\.overrides\.faults\[0\]\.count: expected a positive integer",
        ),
        (
            "      detection: {within: 1.0e+308}\n",
            r"q\.suite\.yaml:4: drills\[0\]\.overrides\.detection\.within: expected a duration of at most 365d",
        ),
    ],
)
def test_an_override_error_points_at_the_suite_file(tmp_path: Path, overrides: str, error: str) -> None:
    data = yaml.safe_load((DATA / "exporter-kill.yaml").read_text())
    write_scenario(tmp_path / "a.yaml", data)
    (tmp_path / "q.suite.yaml").write_text("drills:\n  - scenario: a.yaml\n    overrides:\n" + overrides)
    with pytest.raises(ScenarioError, match=error):
        load_suite([str(tmp_path / "q.suite.yaml")])


def test_an_error_the_overrides_only_reach_into_keeps_the_scenarios_place(tmp_path: Path) -> None:
    data = yaml.safe_load((DATA / "exporter-kill.yaml").read_text())
    data["detection"]["within"] = "soon"  # the scenario's own mistake, not the override's
    write_scenario(tmp_path / "a.yaml", data)
    suite = "drills:\n  - scenario: a.yaml\n    overrides:\n      detection: {alert: X}\n"
    (tmp_path / "q.suite.yaml").write_text(suite)
    error = r"q\.suite\.yaml:3: drills\[0\]\.overrides: with these overrides, .*a\.yaml:\d+: detection\.within: "
    with pytest.raises(ScenarioError, match=error):
        load_suite([str(tmp_path / "q.suite.yaml")])


def test_a_variable_holding_bytes_that_are_not_utf8_is_a_located_error(tmp_path: Path) -> None:
    data = yaml.safe_load((DATA / "exporter-kill.yaml").read_text())
    data["description"] = "runs on ${env.DK_HOST}"
    path = write_scenario(tmp_path / "v.yaml", data)
    r = run("run", str(path), "--dry-run", "--report-dir", str(tmp_path / "r"), env={"DK_HOST": b"h\xffst"})
    err = one_line_refusal(r)
    assert re.search(r"v\.yaml:\d+: description: not UTF-8 text", err), err
