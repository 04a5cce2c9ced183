"""The lab's recorded state (``<dir>/state.json``) and its components' process groups.

Everything the faults, `drillkit run` and `lab down/status/logs` need to find the lab is here
(`LabState`): URLs, ports, pids, DSNs, the JWT secret file, the latency control file and the
replicas' pid files. A component is a `Proc`: a process group, recognised by a marker in its
leader's command line so a reused pid is never mistaken for it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from drillkit.errors import UnavailableError
from drillkit.files import write_atomically
from drillkit.lab.layout import DEFAULT_DIR, STATE_FILE, Ports, lab_dir_default
from drillkit.lab.services import Service
from drillkit.procs import is_ours, read_pid, stop_own_group


@dataclass
class Proc:
    """A started process group: the leader's pid, its group, and how to recognise it."""

    pid: int
    pgid: int
    marker: str  # a substring of its command line (guards against pid reuse)
    log: str


@dataclass
class LabState:
    """What `lab up` started and where; read by `lab down/status/logs`, faults and `run`."""

    dir: str
    base_port: int
    replicas: int
    ports: Ports
    urls: dict[str, str]
    dsn: str  # what the app replicas use: through the delaying proxy, as the app user
    dsn_direct: str  # the app user straight to PostgreSQL (bypasses the proxy)
    dsn_admin: str  # the superuser (the exporter's connection)
    pg_root: str  # holds data/ and postgres.log (outside `dir` if `postgres` can't reach it)
    pg_user: str | None  # the OS user PostgreSQL runs as (when drillkit runs as root)
    jwt_secret_file: str
    latency_file: str
    pid_files: dict[str, str]  # replica name -> pid file written by the supervisor
    procs: dict[str, Proc] = field(default_factory=dict)
    scrape_interval: int = 1  # seconds: Prometheus' scrape and evaluation interval, the rules' scale
    rules: list[str] = field(default_factory=list)  # `lab up --rules` files, copied into prometheus/rules/

    @property
    def path(self) -> Path:
        return Path(self.dir) / STATE_FILE

    def save(self) -> None:
        write_atomically(self.path, json.dumps(asdict(self), indent=2) + "\n", durable=False)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> LabState:
        values = {f.name: raw[f.name] for f in fields(cls) if f.name in raw}
        values["ports"] = Ports.from_dict(raw["ports"])
        values["procs"] = {k: Proc(**v) for k, v in raw.get("procs", {}).items()}
        return cls(**values)

    def replica_pids(self) -> dict[str, int | None]:
        return {name: read_pid(Path(path)) for name, path in self.pid_files.items()}


def load_state(lab_dir: str | Path = DEFAULT_DIR) -> LabState | None:
    """The lab's recorded state, or None if `lab up` never ran there (or `lab down` did)."""
    path = Path(lab_dir) / STATE_FILE
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise UnavailableError(f"{path}: unreadable lab state ({exc}); run `drillkit lab down`") from None
    try:
        return LabState.from_dict(raw)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        what = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
        raise UnavailableError(
            f"{path}: malformed lab state ({what}); stop what it started by hand "
            "and delete it, or start over in another --dir"
        ) from None


def lab_url(service: str, lab_dir: str | Path | None = None) -> str | None:
    """A lab service's URL (prometheus, alertmanager) if a lab was brought up in `lab_dir`
    (default: `lab_dir_default()`)."""
    try:
        state = load_state(lab_dir or lab_dir_default())
    except UnavailableError:
        return None
    return state.urls.get(service) if state else None


def running(proc: Proc | None) -> bool:
    return proc is not None and is_ours(proc.pid, proc.marker)


# Reached over HTTP under the retry policy, which rides through a short restart (a new pid):
# their loss shows as failing requests, not here.
OBSERVERS = ("prometheus", "alertmanager")


@dataclass(frozen=True)
class LabWatch:
    """The lab components a drill must not lose: those running once its faults took effect.
    One that dies later was not killed by the drill (a fault kills while it is injected), and
    whatever the drill measures from then on is that failure, not the fault's."""

    procs: tuple[tuple[str, Proc], ...]

    @classmethod
    def now(cls, lab_dir: str | Path) -> LabWatch | None:
        """The lab in `lab_dir` as it runs now; None if there is none (or it cannot be read)."""
        try:
            state = load_state(lab_dir)
        except UnavailableError:
            return None
        if state is None:
            return None
        return cls(tuple((c, p) for c, p in state.procs.items() if c not in OBSERVERS and running(p)))

    def lost(self) -> list[str]:
        """Each watched component that is gone: `postgres (pid 123)`."""
        return [f"{c} (pid {p.pid})" for c, p in self.procs if not running(p)]


def stop_proc(proc: Proc, sig: signal.Signals = signal.SIGTERM, grace: float = 10.0) -> None:
    """Signal the component's leader, then SIGKILL its whole group (supervised children too)."""
    stop_own_group(proc.pid, proc.pgid, proc.marker, sig, grace)


def started(service: Service | subprocess.Popen[bytes], marker: str, log: Path) -> Proc:
    p = service.proc if isinstance(service, Service) else service
    return Proc(pid=p.pid, pgid=os.getpgid(p.pid), marker=marker, log=str(log))
