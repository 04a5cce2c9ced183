"""Start-up and input edge cases of `drillkit run` (issue 8, case 10): each a clean exit code."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.helpers import drillkit_cmd, run_cli, write_scenario
from tests.promfixture import PromEnv

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize("url", ["htp://127.0.0.1:9090", "127.0.0.1:9090", "http://", "http://h:port/"])
def test_a_malformed_prometheus_url_is_bad_input_before_anything_is_created(tmp_path: Path, url: str) -> None:
    path = write_scenario(tmp_path / "d.yaml", yaml.safe_load((DATA / "exporter-kill.yaml").read_text()))
    r = run_cli("run", str(path), "--prometheus-url", url, "--report-dir", str(tmp_path / "r"), timeout=60)
    assert r.returncode == 2, r.stderr
    assert "--prometheus-url: expected http(s)://" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "r").exists(), "no report folder for bad input"


def test_a_password_in_the_prometheus_url_never_reaches_stderr(tmp_path: Path) -> None:
    path = write_scenario(tmp_path / "d.yaml", yaml.safe_load((DATA / "exporter-kill.yaml").read_text()))
    r = run_cli("run", str(path), "--prometheus-url", "htp://me:Hunter2@h", "--report-dir", str(tmp_path), timeout=60)
    assert r.returncode == 2 and "Hunter2" not in r.stderr + r.stdout, r.stderr


def test_sigterm_during_start_up_exits_130(tmp_path: Path) -> None:
    fifo = tmp_path / "slow.yaml"
    os.mkfifo(fifo)  # loading blocks until a writer comes: the run is in start-up for sure
    proc = subprocess.Popen(drillkit_cmd("run", str(fifo), "--report-dir", str(tmp_path / "r")), stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while Path(f"/proc/{proc.pid}/wchan").read_text() not in ("wait_for_partner", "fifo_open"):
            assert time.monotonic() < deadline, "drillkit never opened the scenario"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert b"Traceback" not in err


def test_yaml_nested_20000_deep_is_one_line(tmp_path: Path) -> None:
    deep = tmp_path / "deep.yaml"
    deep.write_text("a: " + "[" * 20000 + "]" * 20000 + "\n")
    r = run_cli("validate", str(deep), timeout=60)
    assert r.returncode == 2 and f"{deep}:1: invalid YAML: nested too deeply" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_a_zero_detection_target_is_refused(tmp_path: Path) -> None:
    data = yaml.safe_load((DATA / "exporter-kill.yaml").read_text())
    data["detection"]["within"] = "0s"
    r = run_cli("validate", str(write_scenario(tmp_path / "z.yaml", data)), timeout=60)
    assert r.returncode == 2 and "detection.within: expected a duration above zero" in r.stderr, r.stderr


@pytest.mark.integration
def test_a_report_that_cannot_be_written_is_exit_4(prom_env: PromEnv, tmp_path: Path) -> None:
    """Issue 8, case 10: the journal fits (files may grow to 12 KB: it is ~4 KB) but report.html with its
    charts does not: the drill still ran and reverted, the journal says so, and the exit code
    is 4 (documented: ran, but its report could not be written), never 0."""
    import resource

    from tests.test_drill_prometheus import scenario

    prom_env.ensure_exporter()
    prom_env.wait_up()
    path = write_scenario(tmp_path / "drill.yaml", scenario(prom_env, "DemoExporterDown"))

    def small_files() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of death, like ENOSPC
        resource.setrlimit(resource.RLIMIT_FSIZE, (12_000, 12_000))  # report.html is ~18 KB

    reports = tmp_path / "reports"
    r = subprocess.run(
        drillkit_cmd("run", str(path), "--prometheus-url", prom_env.url, "--report-dir", str(reports)),
        capture_output=True,
        text=True,
        timeout=240,
        preexec_fn=small_files,
    )
    assert r.returncode == 4, f"exit {r.returncode}:\n{r.stderr}"
    assert "rendering the report failed" in r.stderr and "drillkit report" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    (folder,) = reports.iterdir()
    assert '"kind": "revert_done"' in (folder / "journal.jsonl").read_text()
