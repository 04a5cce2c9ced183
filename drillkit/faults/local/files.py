"""The run's scratch folder: status files and logs of the helpers local faults start detached
(the connection holder, stress-ng), named after the run so a later `drillkit cleanup` finds
them, and removed by the revert that no longer needs them."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path


def state_dir(run_id: str, name: str | None = None) -> Path:
    """A private scratch folder of the run (status files, logs of detached helpers), named
    `drillkit-<run id>`, or `<name>-<run id>` for a helper disguised as `name` (an exercise)."""
    d = Path(tempfile.gettempdir()) / f"{name or 'drillkit'}-{run_id}"
    d.mkdir(mode=0o700, exist_ok=True)
    return d


def disguise(work: Path, name: str, program: str) -> str:
    """A link `work/name` to `program`: a process started through it is called `name` in `ps`,
    `top` and `pgrep` (its comm and argv[0]), so a trainee sees a platform process, not the
    fault's helper. The link is the process's program path, so it also finds the process again."""
    link = work / name
    link.unlink(missing_ok=True)
    link.symlink_to(program)
    return str(link)


def remove_scratch(*files: str | None) -> None:
    """Delete a revert's scratch files, and the run's scratch folder once it is empty."""
    for name in files:
        if name:
            Path(name).unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                Path(name).parent.rmdir()
