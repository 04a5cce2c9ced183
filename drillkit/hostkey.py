"""This host's journal key: what makes a journal's revert records provably drillkit's own.

Why it exists: `drillkit cleanup` acts on revert records it reads from a reports folder, and
anyone who can write there could otherwise write a record that kills processes, runs commands
or rewrites files. The writer seals its `started` event and every revert record with an HMAC
under a key that lives outside any reports folder, in drillkit's state directory
(`$DRILLKIT_STATE_DIR`, else `$XDG_STATE_HOME/drillkit`, else `~/.local/state/drillkit`): a 0600
file of the user who runs the drills, created on first use. Cleanup executes only records that
carry that user's MAC; a journal copied from elsewhere, forged, or written by an older drillkit
is reported, never executed.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from pathlib import Path
from typing import Any

from drillkit.errors import InputError

KEY_NAME = "journal.key"
KEY_BYTES = 32


class KeyRefused(InputError):
    """The key file exists but cannot be trusted (loose permissions, another owner, not a
    regular file) or cannot be made: no journal is sealed or believed with it."""


def state_dir() -> Path:
    """drillkit's per-user state directory (not created here)."""
    if explicit := os.environ.get("DRILLKIT_STATE_DIR"):
        return Path(explicit)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "drillkit"


def key_path() -> Path:
    return state_dir() / KEY_NAME


def _read(path: Path) -> bytes | None:
    """The key in `path` (None if there is none), after refusing a file another user could
    have written or read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:  # ELOOP: a symbolic link, which anyone able to write the folder could plant
        raise KeyRefused(f"{path}: cannot open the journal key: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise KeyRefused(f"{path}: the journal key is not a regular file")
        if st.st_uid != os.geteuid():
            raise KeyRefused(
                f"{path}: the journal key belongs to uid {st.st_uid}, not to this user ({os.geteuid()}); "
                "run drillkit as the user that owns it"
            )
        if st.st_mode & 0o077:
            raise KeyRefused(
                f"{path}: the journal key has mode {stat.S_IMODE(st.st_mode):04o}; it must be 0600 "
                f"(chmod 600 {path}, if nobody else could have written it)"
            )
        key = fh.read()
    if len(key) != KEY_BYTES:
        raise KeyRefused(f"{path}: not a drillkit journal key ({len(key)} bytes, expected {KEY_BYTES})")
    return key


def existing() -> bytes | None:
    """This user's journal key, if there is one (cleanup never makes one: it has nothing to check)."""
    return _read(key_path())


def key() -> bytes:
    """This user's journal key, made on first use.

    Creation is atomic and race-free: the key is written to a private temporary file and
    hard-linked into place, so two drills starting at once end up with the same key, and a
    reader never sees a partial one."""
    import secrets  # here, as hashlib and hmac below: re-rendering a report seals nothing

    path = key_path()
    found = _read(path)
    if found is not None:
        return found
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        tmp = path.with_name(f".{KEY_NAME}.{secrets.token_hex(8)}")
        try:
            with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600), "wb") as fh:
                fh.write(secrets.token_bytes(KEY_BYTES))
                fh.flush()
                os.fsync(fh.fileno())
            with contextlib.suppress(FileExistsError):  # another process made it first: use theirs
                os.link(tmp, path)
            os.fsync(fd)
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()
            os.close(fd)
    except OSError as exc:
        raise KeyRefused(
            f"cannot create the journal key {path}: {exc.strerror or exc}; set DRILLKIT_STATE_DIR to a "
            "private folder of this user"
        ) from None
    found = _read(path)
    if found is None:
        raise KeyRefused(f"{path}: the journal key vanished as it was made")
    return found


def seal(key: bytes, run_id: str, kind: str, data: dict[str, Any]) -> str:
    """The MAC of one journal event of run `run_id`, over its data as a reader will parse it
    (JSON-normalised, `mac` itself left out): binding the run id means a record copied into
    another run's journal does not verify."""
    import hashlib
    import hmac

    plain = json.loads(json.dumps({k: v for k, v in data.items() if k != "mac"}, default=str))
    text = json.dumps([run_id, kind, plain], sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def sealed(key: bytes, run_id: str, kind: str, data: dict[str, Any]) -> bool:
    """Whether `data` carries this key's MAC for run `run_id` (constant-time comparison)."""
    import hmac

    mac = data.get("mac")
    return isinstance(mac, str) and hmac.compare_digest(mac, seal(key, run_id, kind, data))
