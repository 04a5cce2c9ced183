"""One drill per target (issue 8, case 1): the lock names the drill holding it, dies with it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from drillkit.targetlock import TargetBusy, local_lock_path, local_target

HOLD = (
    "import sys, pathlib\n"
    "from drillkit.targetlock import local_target\n"
    "with local_target(pathlib.Path(sys.argv[1]), 'run111', 'lab-outage'):\n"
    "    print('held', flush=True)\n"
    "    input()\n"
)


def test_a_second_drill_is_refused_naming_the_first(tmp_path: Path) -> None:
    path = local_lock_path(str(tmp_path))
    first = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert first.stdout is not None and first.stdout.readline().strip() == "held"
        busy = r"drill lab-outage \(run run111, pid \d+, since .*Z\) is running"
        with pytest.raises(TargetBusy, match=busy), local_target(path, "run222", "lab-db"):
            pass
        with local_target(path, "run222", "lab-db", force=True):
            assert "run111" in path.read_text(), "--force must leave the holder's record alone"
    finally:
        first.kill()
        first.communicate()
    with local_target(path, "run333", "lab-db"):  # the kernel dropped the dead drill's lock
        assert "run333" in path.read_text()
