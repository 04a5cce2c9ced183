"""The CLI: exit codes, one-line errors, schema, dry run, ack from another process."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import jsonschema
import pytest
import yaml
from click.testing import CliRunner

from drillkit.cli import main
from tests.helpers import drill_process, report_json, run_cli, run_folder, wait_for_event, write_scenario
from tests.promfixture import PromEnv

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).parent.parent


def test_version_and_help() -> None:
    r = CliRunner().invoke(main, ["--version"])
    assert r.exit_code == 0 and "drillkit, version" in r.output
    r = CliRunner().invoke(main, ["--help"])
    assert r.exit_code == 0 and "validate" in r.output and "run" in r.output


def test_validate_good_and_bad(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["validate", str(DATA / "exporter-kill.yaml")])
    assert r.exit_code == 0, r.output
    bad = tmp_path / "bad.yaml"
    bad.write_text((DATA / "exporter-kill.yaml").read_text().replace("severity: P2", "severity: P7"))
    r = CliRunner().invoke(main, ["validate", str(bad)])
    assert r.exit_code == 2
    lines = [line for line in r.stderr.splitlines() if line.startswith(str(bad))]
    assert lines == [f"{bad}:4: severity: expected one of P1, P2, P3, P4, got 'P7'"], r.stderr
    assert "Traceback" not in r.output + r.stderr


def test_validate_missing_path_is_exit_2() -> None:
    r = CliRunner().invoke(main, ["validate", "no/such/dir"])
    assert r.exit_code == 2 and "no such file or directory" in r.stderr


def test_run_with_bad_scenario_is_one_line_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text((DATA / "exporter-kill.yaml").read_text().replace("within: 30s", "within: soon"))
    r = run_cli("run", str(bad), "--report-dir", str(tmp_path / "reports"))
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == [
        f"drillkit: {bad}:19: detection.within: expected a duration like 90s, 5m or 1h30m, got 'soon'"
    ], r.stderr
    assert not (tmp_path / "reports").exists(), "no report folder for a drill that never loaded"


def test_bad_format_is_usage_error(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["run", str(DATA / "exporter-kill.yaml"), "--format", "md,pdf"])
    assert r.exit_code == 2 and "unknown report format 'pdf'" in r.stderr


def test_schema_is_valid_and_accepts_every_shipped_scenario() -> None:
    r = CliRunner().invoke(main, ["schema"])
    schema = json.loads(r.output)
    jsonschema.Draft202012Validator.check_schema(schema)
    files = [DATA / "exporter-kill.yaml", *sorted((ROOT / "scenarios").rglob("*.yaml"))]
    for f in files:
        jsonschema.validate(yaml.safe_load(f.read_text()), schema)
    bad = yaml.safe_load((DATA / "exporter-kill.yaml").read_text())
    bad["faults"][0]["signall"] = "SIGTERM"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)
    latency = yaml.safe_load((ROOT / "scenarios" / "lab" / "high-latency.yaml").read_text())
    assert latency["faults"][0]["proxy_port"] == "${lab.port.proxy}"  # an int field, as a variable
    latency["faults"][0]["proxy_port"] = "port 19093"
    with pytest.raises(jsonschema.ValidationError):  # any other string is still no int
        jsonschema.validate(latency, schema)


def test_every_shipped_scenario_validates() -> None:
    r = CliRunner().invoke(main, ["validate", str(ROOT / "scenarios")])
    assert r.exit_code == 0, r.output + r.stderr


def test_report_rerenders_from_journal(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from tests.test_policy_journal_report import fixed_journal

    folder = tmp_path / "run"
    fixed_journal(folder, datetime(2026, 11, 29, 9, 30, tzinfo=UTC))
    r = CliRunner().invoke(main, ["report", str(folder / "journal.jsonl"), "--format", "md,json"])
    assert r.exit_code == 0, r.output
    assert (folder / "report.md").exists() and json.loads((folder / "report.json").read_text())["status"] == "passed"
    r = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert r.exit_code == 2 and "no journal.jsonl" in r.stderr


def test_ack_unknown_run_is_exit_2(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["ack", "deadbeef", "--report-dir", str(tmp_path)])
    assert r.exit_code == 2 and "no run 'deadbeef'" in r.stderr


@pytest.mark.integration
def test_unreachable_prometheus_is_exit_3(tmp_path: Path) -> None:
    from drillkit.lab.services import free_port

    path = write_scenario(tmp_path / "d.yaml", yaml.safe_load((DATA / "exporter-kill.yaml").read_text()))
    r = run_cli(
        "run",
        str(path),
        "--prometheus-url",
        f"http://127.0.0.1:{free_port()}",
        "--report-dir",
        str(tmp_path / "r"),
        timeout=180,
        env_extra={"DRILLKIT_READY_TIMEOUT": "3"},
    )
    assert r.returncode == 3, r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.integration
def test_dry_run_prints_plan_and_touches_nothing(prom_env: PromEnv, tmp_path: Path) -> None:
    prom_env.ensure_exporter()
    prom_env.wait_up()
    pid = prom_env.exporter_pid()
    data = yaml.safe_load((DATA / "exporter-kill.yaml").read_text())
    data["faults"][0]["pidfile"] = str(prom_env.pidfile)
    path = write_scenario(tmp_path / "d.yaml", data)
    r = run_cli("run", str(path), "--dry-run", "--prometheus-url", prom_env.url, "--report-dir", str(tmp_path / "r"))
    assert r.returncode == 0, r.stderr
    assert f"send SIGKILL to pid {pid}" in r.stderr, r.stderr
    assert prom_env.exporter_pid() == pid and Path(f"/proc/{pid}").exists()
    assert not (tmp_path / "r").exists()


@pytest.mark.integration
def test_command_ack_from_second_process(prom_env: PromEnv, tmp_path: Path) -> None:
    prom_env.ensure_exporter()
    prom_env.wait_up()
    data = prom_env.scenario(response={"acknowledge": "command", "within": "60s"})
    path = write_scenario(tmp_path / "d.yaml", data)
    reports = tmp_path / "reports"
    with drill_process("run", str(path), "--prometheus-url", prom_env.url, "--report-dir", str(reports)) as proc:
        journal = wait_for_event(reports, "detected")
        time.sleep(1.0)
        run_id = journal.parent.name.rsplit("-", 1)[1]
        ack = run_cli("ack", run_id, "--report-dir", str(reports), "--by", "alice")
        acked_at = time.time()
        assert ack.returncode == 0, ack.stderr
        _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    rep = report_json(run_folder(reports))
    ackev = next(e for e in rep["events"] if e["kind"] == "acknowledged")
    assert ackev["by"] == "alice"
    tta = rep["measures"]["time_to_acknowledge"]
    assert 1.0 <= tta < 10, f"time to acknowledge {tta}s should reflect the ~1 s wait before `drillkit ack`"
    assert acked_at > 0


@pytest.mark.integration
def test_prompt_ack_from_a_terminal(prom_env: PromEnv, tmp_path: Path) -> None:
    """A trainee at a real terminal (a pty) acknowledges by pressing Enter."""
    import os
    import pty

    prom_env.ensure_exporter()
    prom_env.wait_up()
    data = prom_env.scenario(response={"acknowledge": "prompt"})
    path = write_scenario(tmp_path / "d.yaml", data)
    reports = tmp_path / "reports"
    master, slave = pty.openpty()
    try:
        with drill_process(
            "run", str(path), "--prometheus-url", prom_env.url, "--report-dir", str(reports), stdin=slave
        ) as proc:
            os.close(slave)
            wait_for_event(reports, "detected")
            time.sleep(0.5)
            os.write(master, b"p3 on it\n")
            _out, err = proc.communicate(timeout=60)
    finally:
        os.close(master)
    assert proc.returncode == 1, f"an under-classified severity is a missed target\n{err}"
    assert "acknowledge by pressing Enter" in err
    rep = report_json(run_folder(reports))
    ackev = next(e for e in rep["events"] if e["kind"] == "acknowledged")
    assert ackev["note"] == "on it" and ackev["source"] == "prompt" and ackev["severity"] == "P3", ackev
    graded = next(v for v in rep["verdicts"] if v["target"] == "classification")
    assert graded["met"] is False and "P3 (playbook: P2)" in graded["description"], graded
    assert rep["status"] == "failed"
    assert rep["measures"]["time_to_acknowledge"] >= 0.5


def test_prompt_without_terminal_is_refused(tmp_path: Path) -> None:
    data = yaml.safe_load((DATA / "exporter-kill.yaml").read_text())
    data["response"] = {"acknowledge": "prompt"}
    path = write_scenario(tmp_path / "d.yaml", data)
    r = run_cli("run", str(path), "--report-dir", str(tmp_path / "r"), stdin=subprocess.DEVNULL)
    assert r.returncode == 3, r.stderr
    assert "stdin is not a terminal" in r.stderr
