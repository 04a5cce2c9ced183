"""Start the lab's real services (Prometheus, Alertmanager) as plain processes.

Used by `drillkit lab`, by the demo drill and by the project's own integration tests, so a
drill in the lab and a drill in the tests see the same Prometheus setup: 1 s scrape and
evaluation intervals, storage in a scratch folder, loopback only.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from drillkit.errors import PreflightError, UnavailableError
from drillkit.procs import spawn, stop_own_group
from drillkit.signals import wait_until

PACKAGES = {
    "prometheus": "prometheus",
    "promtool": "prometheus",
    "prometheus-alertmanager": "prometheus-alertmanager",
    "prometheus-postgres-exporter": "prometheus-postgres-exporter",
    "prometheus-node-exporter": "prometheus-node-exporter",
    "stress-ng": "stress-ng",
    "initdb": "postgresql",
    "pg_ctl": "postgresql",
}
# Prometheus' own default: at a long interval a hung target shows as down after this, not a
# whole interval later (the timeout may not exceed the interval).
SCRAPE_TIMEOUT_S = 10


def binary(name: str) -> str:
    """Path of a required program, or a clear error naming the Debian package."""
    found = shutil.which(name)
    if not found and name in ("initdb", "pg_ctl", "postgres"):
        candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
        found = str(candidates[-1]) if candidates else None
    if not found:
        raise PreflightError(f"`{name}` not found: install it with `apt-get install {PACKAGES.get(name, name)}`")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_in_use(port: int) -> bool:
    """Something listens on 127.0.0.1:`port`."""
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def port_taken(port: int) -> bool:
    """A lab component could not bind 127.0.0.1:`port`: something listens there, or holds it
    without listening (a socket bound but not listening, an outgoing connection's local port),
    which a connect test misses. Bound with SO_REUSEADDR, as the components do, so a port a
    stopped lab left in TIME_WAIT counts as free."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return port_in_use(port)


@dataclass
class Service:
    """A started process with its log file."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    url: str = ""

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def stop_group(self) -> None:
        """Stop the process and all it started (its process group: a supervisor's replicas too)."""
        args = self.proc.args  # the last argument guards against a reused pid
        stop_own_group(self.proc.pid, self.proc.pid, str(args[-1] if isinstance(args, list) else args), grace=5.0)


def start_service(
    name: str, argv: list[str], workdir: Path, url: str = "", env: dict[str, str] | None = None
) -> Service:
    """`procs.spawn` (own session, reaped) with its output in `<workdir>/<name>.log`."""
    log = workdir / f"{name}.log"
    return Service(name, spawn(argv, log_file=log, env=env), log, url)


def wait_up(service: Service, check: Callable[[], bool], timeout: float, what: str) -> None:
    """The lab's one readiness wait: until `check()` holds; fail early, with the log's tail, if
    the process died, and with the log's path at the deadline. A service that never gets ready
    is stopped with its whole group, so a failed start leaves nothing running."""

    def up() -> bool:
        if service.proc.poll() is not None:
            tail = service.log.read_text(errors="replace")[-1500:]
            raise UnavailableError(f"{service.name} exited with {service.proc.returncode}:\n{tail}")
        return check()

    try:
        ready = wait_until(up, time.monotonic() + timeout, 0.1)
        if not ready:
            raise UnavailableError(f"{service.name} not {what} within {timeout:g}s (log: {service.log})")
    except BaseException:
        service.stop_group()
        raise


def wait_http(service: Service, path: str, timeout: float) -> None:
    """Wait for HTTP 200 on `path`."""

    def answers() -> bool:
        try:
            with urllib.request.urlopen(service.url + path, timeout=1) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    wait_up(service, answers, timeout, f"answering {path}")


def wait_port(service: Service, port: int, timeout: float) -> None:
    """Wait until something listens on 127.0.0.1:`port`."""
    wait_up(service, lambda: port_in_use(port), timeout, f"listening on port {port}")


@dataclass
class PrometheusSetup:
    """What the lab's Prometheus scrapes and evaluates."""

    scrape: dict[str, list[str]] = field(default_factory=dict)  # job -> ["127.0.0.1:port"]
    rule_files: list[Path] = field(default_factory=list)
    alertmanager: str | None = None  # "127.0.0.1:port"
    interval_s: int = 1  # seconds between scrapes, and between rule evaluations


def start_prometheus(workdir: Path, setup: PrometheusSetup, port: int | None = None) -> Service:
    """Start Prometheus with a generated config; returns once `/-/ready` answers."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    config: dict[str, Any] = {
        "global": {
            "scrape_interval": f"{setup.interval_s}s",
            "evaluation_interval": f"{setup.interval_s}s",
            "scrape_timeout": f"{min(setup.interval_s, SCRAPE_TIMEOUT_S)}s",
        },
        "rule_files": [str(p) for p in setup.rule_files],
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": targets}]} for job, targets in setup.scrape.items()
        ],
    }
    if setup.alertmanager:
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [setup.alertmanager]}]}]}
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    argv = [
        binary("prometheus"),
        f"--config.file={workdir / 'prometheus.yml'}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--web.enable-lifecycle",
        "--storage.tsdb.retention.time=1d",
    ]
    service = start_service("prometheus", argv, workdir, url=f"http://127.0.0.1:{port}")
    return _ready(service)


def _ready(service: Service) -> Service:
    """Wait for `/-/ready` (wait_up stops the process if it never gets there)."""
    wait_http(service, "/-/ready", 30)
    return service


def start_alertmanager(workdir: Path, port: int | None = None) -> Service:
    """Start Alertmanager with a receiver that sends nothing: drills read its API (alerts and
    silences). Group wait 0 s so the page 'goes out' as soon as Prometheus sends the alert."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    config = {
        "route": {
            "receiver": "drill",
            "group_by": ["alertname"],
            "group_wait": "0s",
            "group_interval": "1s",
            "repeat_interval": "1h",
        },
        "receivers": [{"name": "drill"}],
    }
    (workdir / "alertmanager.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    addr = f"127.0.0.1:{port}"
    argv = [
        binary("prometheus-alertmanager"),
        f"--config.file={workdir / 'alertmanager.yml'}",
        f"--storage.path={workdir / 'data'}",
        f"--web.listen-address={addr}",
        "--cluster.listen-address=",
        "--log.level=warn",
    ]
    service = start_service("alertmanager", argv, workdir, url=f"http://{addr}")
    return _ready(service)
