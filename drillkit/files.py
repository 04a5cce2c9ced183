"""Writing files so that a reader never sees half of one.

Faults replace files other programs read (the lab proxy's control file, a JWT secret), the lab
supervisor rewrites pid files that faults read, and `lab up` rewrites its state: all of them go
through `write_atomically`, one temporary file in the same folder renamed over the target.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def write_atomically(
    path: Path, content: bytes | str, mode: int = 0o644, owner: tuple[int, int] | None = None, durable: bool = True
) -> None:
    """Replace `path` with `content` in one rename: readers see the old or the new file, never
    a torn one. The temporary file has `mode` (and, as root, `owner`) from the start, so there
    is no window of wider access. `durable` also fsyncs the file and its folder (a revert's
    restore must survive a crash; a pid file need not)."""
    import tempfile  # here: it loads shutil and the compression modules, which validating never needs

    data = content.encode() if isinstance(content, str) else content
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".drillkit-tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        if owner is not None and os.geteuid() == 0:
            os.fchown(fd, *owner)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    """Make a rename, creation or deletion in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
