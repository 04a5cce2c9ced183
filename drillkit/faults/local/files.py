"""The run's scratch folder: status files and logs of the helpers local faults start detached
(the connection holder, stress-ng), named after the run so a later `drillkit cleanup` finds
them, and removed by the revert that no longer needs them."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path


def state_dir(run_id: str) -> Path:
    """A private scratch folder of the run (status files, logs of detached helpers)."""
    d = Path(tempfile.gettempdir()) / f"drillkit-{run_id}"
    d.mkdir(mode=0o700, exist_ok=True)
    return d


def remove_scratch(*files: str | None) -> None:
    """Delete a revert's scratch files, and the run's scratch folder once it is empty."""
    for name in files:
        if name:
            Path(name).unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                Path(name).parent.rmdir()
