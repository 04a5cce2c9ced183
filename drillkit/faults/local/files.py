"""The run's scratch folder: status files and logs of the helpers local faults start detached
(the connection holder, stress-ng), named after the run so a later `drillkit cleanup` finds
them, and removed by the revert that no longer needs them. Also what a revert record keeps of
a file a fault made (`FileId`), so a revert deletes that file and never another one found at
the same path."""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from drillkit.faults import OutOfBounds, run_tag


@dataclass(frozen=True)
class FileId:
    """A file as a fault made it (device and inode): the path may since name another file."""

    dev: int
    ino: int


def file_id(path: str | Path) -> FileId | None:
    """The id of the regular file at `path` (not following a link), or None."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return FileId(st.st_dev, st.st_ino) if stat.S_ISREG(st.st_mode) else None


def scratch_name(run_id: str, name: str | None = None) -> str:
    """`drillkit-<run id>`, or for a helper disguised as `name` (a blind exercise)
    `<name>-<digest of the run id>`: nothing in it a trainee could match to their exercise."""
    return f"{name}-{run_tag(run_id)}" if name else f"drillkit-{run_id}"


def helper_files(name: str | None, plain: str) -> tuple[str, str]:
    """The status and log file names of a detached helper: `<plain>.json`/`.log`, or disguised
    (`name` set) the words any batch job would use."""
    return ("state.json", "job.log") if name else (f"{plain}.json", f"{plain}.log")


def state_dir(run_id: str, name: str | None = None) -> Path:
    """A private scratch folder of the run (status files, logs of detached helpers), mode 0700,
    named by `scratch_name`."""
    import tempfile  # as in drillkit.files

    d = Path(tempfile.gettempdir()) / scratch_name(run_id, name)
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


def check_scratch(field: str, folder: str | None) -> None:
    """A recorded scratch folder must be an absolute path without `..`, and if it exists a
    folder of this user's that is not a link (what `state_dir` makes): the revert deletes in it."""
    if folder is None:
        return
    path = Path(folder)
    if not path.is_absolute() or ".." in path.parts or str(path) != folder:
        raise OutOfBounds(field, f"{folder!r} is not an absolute, normal path")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise OutOfBounds(field, f"{folder}: {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        raise OutOfBounds(field, f"{folder} is not a scratch folder of this user (a link, a file or another's)")
