"""`drillkit watch RUN_ID`: a facilitator follows an exercise from another terminal and sees
what drillkit did, line by line, until the run ends."""

from __future__ import annotations

import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

from drillkit.journal import Journal
from tests.helpers import drillkit_cmd


def test_watch_follows_the_facilitator_log_until_the_run_ends(tmp_path: Path) -> None:
    folder = tmp_path / f"{datetime.now(UTC):%Y-%m-%dT%H%M%SZ}-x-0a7c4123"
    journal = Journal(folder / "journal.jsonl")
    journal.append("started", run_id="0a7c4123", scenario={}, limits={})
    log = folder / "facilitator.log"
    log.write_text("injected db-connection-exhaustion\n")
    proc = subprocess.Popen(
        drillkit_cmd("watch", "0a7c4123", "--report-dir", str(tmp_path)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "injected db-connection-exhaustion"
        with log.open("a") as fh:
            fh.write("holding 13 connections\n")
        assert proc.stdout.readline().strip() == "holding 13 connections", "a line written later is followed"
        time.sleep(0.2)
        assert proc.poll() is None, "watch must go on while the run goes on"
        journal.append("finished", status="passed", reason="")
        journal.close()
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "run 0a7c4123 ended at" in out, out
