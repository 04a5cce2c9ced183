"""`drillkit lab up | down | status | logs`: the demo platform as plain local processes.

Drills need something real to break and a real Prometheus to catch it, on any Debian/Ubuntu
machine without Docker or Kubernetes. The lab is PostgreSQL, its exporter, a delaying DB proxy
(the `latency` fault's lever), N chat API replicas kept alive by `drillkit.lab.supervise` (the
Deployment analogue), a traffic generator, node_exporter (the host's memory, CPU and disks),
Alertmanager and Prometheus with the lab's alert rules and your own (`--rules`,
`drillkit.lab.userrules`) — each a process group started here, on 127.0.0.1, at fixed offsets from a base port.

Everything the faults and `drillkit run` need to find the lab is in ``<dir>/state.json``
(`drillkit.lab.state`); PostgreSQL's own set-up is `drillkit.lab.postgres`. `up` is
idempotent: components already running are kept, dead ones are started again. `down` stops
every recorded process group and leaves nothing running.
"""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import json
import os
import secrets
import shutil
import signal
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from drillkit.errors import InputError, UnavailableError
from drillkit.lab import ruleset, services, userrules
from drillkit.lab.layout import (
    DEFAULT_BASE_PORT,
    DEFAULT_DIR,
    Ports,
)
from drillkit.lab.layout import lab_dir_default as lab_dir_default  # re-exported for the CLI
from drillkit.lab.postgres import APP_DB, APP_USER, PG_SUPERUSER, cluster_root, os_user, start_postgres, stop_postgres
from drillkit.lab.services import (
    PrometheusSetup,
    Service,
    binary,
    port_taken,
    start_prometheus,
    start_service,
    wait_http,
    wait_port,
)
from drillkit.lab.state import LabState, Proc, running, started, stop_proc
from drillkit.lab.state import lab_url as lab_url  # re-exported: the CLI finds the lab's URLs here
from drillkit.lab.state import load_state as load_state
from drillkit.procs import alive, cmdline
from drillkit.signals import wait_until

READY_TIMEOUT_S = 90.0  # plus READY_SCRAPES intervals: the first scrapes and evaluation
READY_SCRAPES = 3
LOCK_FILE = ".lab.lock"  # held by `lab up` and `lab down` while they run
# another `up` may take its whole readiness wait, and more
LOCK_WAIT_S = READY_TIMEOUT_S + READY_SCRAPES * ruleset.MAX_INTERVAL_S + 120.0

COMPONENTS = ("postgres", "exporter", "proxy", "api", "traffic", "node", "alertmanager", "prometheus")


# --- the other components -------------------------------------------------------------------


def _logs(state: LabState) -> Path:
    path = Path(state.dir) / "logs"
    path.mkdir(exist_ok=True)
    return path


def start_exporter(state: LabState) -> Proc:
    addr = f"127.0.0.1:{state.ports.exporter}"
    argv = [binary("prometheus-postgres-exporter"), f"--web.listen-address={addr}", "--log.level=warn"]
    svc = start_service(
        "exporter", argv, _logs(state), url=f"http://{addr}", env={**os.environ, "DATA_SOURCE_NAME": state.dsn_admin}
    )
    wait_http(svc, "/metrics", 20)
    return started(svc, f"--web.listen-address={addr}", svc.log)


def start_node(state: LabState) -> Proc:
    """node_exporter: the host's memory, CPU, disks and pressure, so host rules (the node-exporter
    mixin) see what the memory and CPU faults do. It sees the whole host, not the lab alone (see
    docs/lab.md)."""
    addr = f"127.0.0.1:{state.ports.node}"
    argv = [binary("prometheus-node-exporter"), f"--web.listen-address={addr}", "--log.level=warn"]
    svc = start_service("node", argv, _logs(state), url=f"http://{addr}")
    wait_http(svc, "/metrics", 20)
    return started(svc, f"--web.listen-address={addr}", svc.log)


def start_proxy(state: LabState) -> Proc:
    p = state.ports
    listen = f"127.0.0.1:{p.proxy}"
    argv = [
        sys.executable,
        "-m",
        "drillkit.lab.proxy",
        "--listen",
        listen,
        "--upstream",
        f"127.0.0.1:{p.postgres}",
        "--control",
        state.latency_file,
        "--metrics-port",
        str(p.proxy_metrics),
    ]
    svc = start_service("proxy", argv, _logs(state))
    wait_port(svc, p.proxy, 20)
    return started(svc, f"--listen {listen}", svc.log)


def start_api(state: LabState) -> Proc:
    logs = _logs(state)
    programs = []
    for i, port in enumerate(state.ports.api, start=1):
        name = f"api-{i}"
        programs.append(
            {
                "name": name,
                "pidfile": state.pid_files[name],
                "log": str(logs / f"{name}.log"),
                "argv": [
                    sys.executable,
                    "-m",
                    "drillkit.lab.app",
                    "--port",
                    str(port),
                    "--dsn",
                    state.dsn,
                    "--jwt-secret-file",
                    state.jwt_secret_file,
                    "--replica",
                    name,
                ],
            }
        )
    config = Path(state.dir) / "supervise.json"
    config.write_text(json.dumps({"programs": programs, "backoff": 1.0}, indent=2) + "\n")
    svc = start_service("supervisor", [sys.executable, "-m", "drillkit.lab.supervise", "--config", str(config)], logs)
    for port in state.ports.api:
        replica = Service(f"api on port {port}", svc.proc, svc.log, f"http://127.0.0.1:{port}")
        wait_http(replica, "/healthz", 30)
    return started(svc, f"--config {config}", svc.log)


def start_traffic(state: LabState) -> Proc:
    targets = ",".join(f"http://127.0.0.1:{port}" for port in state.ports.api)
    port = state.ports.traffic_metrics
    argv = [
        sys.executable,
        "-m",
        "drillkit.lab.traffic",
        "--targets",
        targets,
        "--rps",
        "10",
        "--metrics-port",
        str(port),
    ]
    svc = start_service("traffic", argv, _logs(state), url=f"http://127.0.0.1:{port}")
    wait_http(svc, "/metrics", 20)
    return started(svc, f"--metrics-port {port}", svc.log)


def start_alertmanager(state: LabState) -> Proc:
    # no real receivers: drills read alerts (and silences) from its API
    svc = services.start_alertmanager(Path(state.dir) / "alertmanager", state.ports.alertmanager)
    return started(svc, f"--web.listen-address=127.0.0.1:{state.ports.alertmanager}", svc.log)


def prometheus_setup(state: LabState) -> PrometheusSetup:
    p = state.ports
    local = "127.0.0.1:{}".format
    return PrometheusSetup(
        scrape={
            "chatbot-api": [local(port) for port in p.api],
            "postgres": [local(p.exporter)],
            "chatbot-db-proxy": [local(p.proxy_metrics)],
            "chatbot-traffic": [local(p.traffic_metrics)],
            "node": [local(p.node)],
            "alertmanager": [local(p.alertmanager)],
            "prometheus": [local(p.prometheus)],
        },
        rule_files=[rules_file(state), *userrules.rule_globs(state.dir)],
        alertmanager=local(p.alertmanager),
        interval_s=state.scrape_interval,
    )


def rules_file(state: LabState) -> Path:
    """Where the lab's Prometheus reads the shipped rules, derived for its scrape interval."""
    return Path(state.dir) / "prometheus" / ruleset.RULES.name


def start_prom(state: LabState) -> Proc:
    # A fresh TSDB: old series of the same instances would make `changes()`/`deriv()` rules
    # (ChatbotMemoryLeak) fire on a restarted lab, and drills would refuse to start.
    shutil.rmtree(Path(state.dir) / "prometheus" / "data", ignore_errors=True)
    rules = rules_file(state)
    rules.parent.mkdir(parents=True, exist_ok=True)
    rules.write_text(ruleset.rules_at(state.scrape_interval))
    svc = start_prometheus(Path(state.dir) / "prometheus", prometheus_setup(state), state.ports.prometheus)
    return started(svc, f"--web.listen-address=127.0.0.1:{state.ports.prometheus}", svc.log)


STARTERS: dict[str, Callable[[LabState], Proc]] = {
    "postgres": start_postgres,
    "exporter": start_exporter,
    "proxy": start_proxy,
    "api": start_api,
    "traffic": start_traffic,
    "node": start_node,
    "alertmanager": start_alertmanager,
    "prometheus": start_prom,
}
# Prometheus first: its first scrape and rule evaluation come seconds after it starts, so
# that wait overlaps with starting everything else. Dependencies before dependents otherwise.
START_ORDER = ("prometheus", "alertmanager", "postgres", "exporter", "proxy", "api", "traffic", "node")


# --- up / down / status / logs ---------------------------------------------------------------


@dataclass
class UpResult:
    state: LabState
    started: list[str]
    seconds: float
    rules_reloaded: bool = False  # `--rules` on a running lab: Prometheus reloaded them

    @property
    def already_running(self) -> bool:
        return not self.started


def new_state(
    lab_dir: Path, base_port: int, replicas: int, scrape_interval: int = ruleset.DEFAULT_INTERVAL_S
) -> LabState:
    ports = Ports.layout(base_port, replicas)
    user = os_user()
    pg_root = cluster_root(lab_dir, user)
    loc = f"127.0.0.1:{ports.postgres}"
    opts = "sslmode=disable&connect_timeout=2"
    names = [f"api-{i}" for i in range(1, replicas + 1)]
    urls = {
        "prometheus": f"http://127.0.0.1:{ports.prometheus}",
        "alertmanager": f"http://127.0.0.1:{ports.alertmanager}",
        "exporter": f"http://127.0.0.1:{ports.exporter}/metrics",
        "proxy_metrics": f"http://127.0.0.1:{ports.proxy_metrics}/metrics",
        "traffic_metrics": f"http://127.0.0.1:{ports.traffic_metrics}/metrics",
        **{name: f"http://127.0.0.1:{port}" for name, port in zip(names, ports.api, strict=True)},
    }
    return LabState(
        dir=str(lab_dir),
        base_port=base_port,
        replicas=replicas,
        ports=ports,
        urls=urls,
        dsn=f"postgresql://{APP_USER}@127.0.0.1:{ports.proxy}/{APP_DB}?{opts}",
        dsn_direct=f"postgresql://{APP_USER}@{loc}/{APP_DB}?{opts}",
        dsn_admin=f"postgresql://{PG_SUPERUSER}@{loc}/postgres?{opts}",
        pg_root=str(pg_root),
        pg_user=user,
        jwt_secret_file=str(lab_dir / "jwt.secret"),
        latency_file=str(lab_dir / "latency.json"),
        pid_files={name: str(lab_dir / f"{name}.pid") for name in names},
        scrape_interval=scrape_interval,
    )


def up(
    lab_dir: Path = DEFAULT_DIR,
    base_port: int | None = None,
    replicas: int | None = None,
    out: Callable[[str], None] = print,
    ready_timeout: float = READY_TIMEOUT_S,
    scrape_interval: int | None = None,
    rules: list[str] | None = None,
) -> UpResult:
    """Start whatever part of the lab is not running; wait until Prometheus sees it all. A
    second `up` meanwhile waits for this one, then finds the lab running (`already_running`).
    `scrape_interval` (seconds; default the running lab's, else 1) sets Prometheus' scrape and
    evaluation interval and the rules' windows. `rules` (files or folders; None: keep the
    recorded ones) are checked with promtool before anything starts, recorded, and loaded
    by every Prometheus start; a running Prometheus reloads them."""
    t0 = time.monotonic()
    lab_dir = lab_dir.absolute()
    lab_dir.mkdir(parents=True, exist_ok=True)
    with _one_at_a_time(lab_dir, out):
        return _up(lab_dir, base_port, replicas, scrape_interval, out, ready_timeout, t0, rules)


def _up(
    lab_dir: Path,
    base_port: int | None,
    replicas: int | None,
    scrape_interval: int | None,
    out: Callable[[str], None],
    ready_timeout: float,
    t0: float,
    rules: list[str] | None = None,
) -> UpResult:
    state = load_state(lab_dir)
    live = [c for c in COMPONENTS if state and running(state.procs.get(c))]
    interval = scrape_interval or (state.scrape_interval if state else ruleset.DEFAULT_INTERVAL_S)
    if state and live:
        wanted = (base_port or state.base_port, replicas or state.replicas, interval)
        if wanted != (state.base_port, state.replicas, state.scrape_interval):
            raise InputError(
                f"the lab in {lab_dir} runs with --base-port {state.base_port} --replicas {state.replicas} "
                f"--scrape-interval {ruleset.duration(state.scrape_interval)}; "
                "run `drillkit lab down` first to change them"
            )
    if state and live:
        ports = state.ports
    else:
        base_port = base_port or (state.base_port if state else DEFAULT_BASE_PORT)
        replicas = replicas or (state.replicas if state else 2)
        ports = Ports.layout(base_port, replicas)
    missing = [c for c in START_ORDER if c not in live]
    recorded = userrules.install(rules, lab_dir) if rules is not None else (state.rules if state else [])
    if not recorded:  # copies left by a lab that was brought down must not load
        shutil.rmtree(userrules.rules_dir(lab_dir), ignore_errors=True)
    if state and not missing:
        if rules is None:
            return UpResult(state, [], time.monotonic() - t0)
        state.rules = recorded
        state.save()
        userrules.reload(state.urls["prometheus"], ready_timeout)
        return UpResult(state, [], time.monotonic() - t0, rules_reloaded=True)
    _refuse_taken_ports(ports, missing)  # before anything is created or started
    for c in missing:  # every program, before anything is created or started
        for name in {
            "postgres": ["initdb", "pg_ctl"],
            "exporter": ["prometheus-postgres-exporter"],
            "alertmanager": ["prometheus-alertmanager"],
            "prometheus": ["prometheus"],
            "node": ["prometheus-node-exporter"],
        }.get(c, []):
            binary(name)
    if state is None or not live:
        state = new_state(lab_dir, ports.prometheus, len(ports.api), interval)
    state.rules = recorded
    _prepare_files(state)
    state.save()
    done: list[str] = []
    try:
        for c in missing:
            out(f"starting {c}")
            state.procs[c] = STARTERS[c](state)  # a component that fails stops itself (wait_up)
            done.append(c)
            state.save()
        if rules is not None and "prometheus" not in missing:  # a running Prometheus takes the new rules
            userrules.reload(state.urls["prometheus"], ready_timeout)
        wait_ready(state, ready_timeout + READY_SCRAPES * state.scrape_interval)
    except BaseException as exc:
        for c in reversed(done):
            _stop_component(state, c)
            state.procs.pop(c, None)
        state.save()
        if isinstance(exc, UnavailableError) and len(done) < len(missing):
            _refuse_taken_ports(ports, [missing[len(done)]])  # taken since the check: say so in one line
        raise
    return UpResult(state, done, time.monotonic() - t0)


def _refuse_taken_ports(ports: Ports, components: list[str]) -> None:
    """One line naming each port (and its component) that something else holds."""
    busy = [f"{port} ({c})" for c in components for port in ports.owned_by(c) if port_taken(port)]
    if busy:
        raise UnavailableError(
            f"port {', '.join(busy)} already in use on 127.0.0.1: stop what holds it or pick another --base-port"
        )


@contextmanager
def _one_at_a_time(lab_dir: Path, out: Callable[[str], None]) -> Iterator[None]:
    """`lab up` and `lab down` one at a time in a lab dir (flock, dropped by the kernel if the
    holder dies): two `up`s at once both started every component, and the second, failing to
    bind, had already wiped the first Prometheus's TSDB. The later one waits (bounded)."""
    path = lab_dir / LOCK_FILE
    said = False

    def take() -> IO[str] | None:
        nonlocal said
        fh = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held for the block
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.fstat(fh.fileno()).st_ino != os.stat(path).st_ino:  # purged while we waited
                raise BlockingIOError
        except (BlockingIOError, FileNotFoundError):
            fh.seek(0)
            holder = fh.read().strip() or "starting"
            fh.close()
            if not said:
                out(f"waiting for another `drillkit lab` command in {lab_dir} ({holder})")
                said = True
            return None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}\n")
        fh.flush()
        return fh

    held = wait_until(take, time.monotonic() + LOCK_WAIT_S, 0.2)
    if held is None:
        raise UnavailableError(f"another `drillkit lab` command in {lab_dir} still runs after {LOCK_WAIT_S:g}s")
    try:
        yield
    finally:
        held.close()


def _prepare_files(state: LabState) -> None:
    secret = Path(state.jwt_secret_file)
    if not secret.exists():
        secret.write_text(secrets.token_hex(32) + "\n")
        secret.chmod(0o600)
    latency = Path(state.latency_file)
    if not latency.exists():
        latency.write_text('{"delay_ms": 0}\n')


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=2) as r:
        return json.loads(r.read())


def traffic_flowing(interval_s: int) -> str:
    """Rate-based steady-state probes need two scrapes of successful traffic: wait for them, so
    a drill started right after `lab up` finds a measurable steady state."""
    window = ruleset.duration(ruleset.window(5, interval_s))
    return (
        f'sum(rate(chatbot_traffic_requests_total{{outcome="ok"}}[{window}])) > 0 and on() '
        f'sum(rate(chatbot_http_requests_total{{job="chatbot-api",route="/chat",code="200"}}[{window}])) > 0'
    )


def _query(prom: str, expr: str) -> list[Any]:
    url = f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    return list(_get_json(url)["data"]["result"])


def _not_ready(prom: str, interval_s: int) -> str | None:
    """Why the lab is not ready yet according to Prometheus, or None when it is."""
    groups = _get_json(f"{prom}/api/v1/rules")["data"]["groups"]
    targets = _get_json(f"{prom}/api/v1/targets")["data"]["activeTargets"]
    evaluated = any(g["name"] == "chatbot" and not g["lastEvaluation"].startswith("0001") for g in groups)
    down = [f"{t['labels']['job']} {t['scrapeUrl']}" for t in targets if t["health"] != "up"]
    if not evaluated:
        return "rules not evaluated yet"
    if down or not targets:
        return f"targets not up: {', '.join(down)}"
    if not _query(prom, traffic_flowing(interval_s)):
        return "no successful traffic in Prometheus yet"
    return None


def wait_ready(state: LabState, timeout: float) -> None:
    """Until Prometheus has evaluated the lab's rules, sees every target up and successful
    traffic flowing."""
    prom = state.urls["prometheus"]
    why: str | None = "no answer yet"

    def ready() -> bool:
        nonlocal why
        try:
            why = _not_ready(prom, state.scrape_interval)
        except (OSError, ValueError, KeyError, TypeError, http.client.HTTPException) as exc:
            why = f"Prometheus API: {type(exc).__name__}: {exc}"
        return why is None

    if not wait_until(ready, time.monotonic() + timeout, 0.2):
        raise UnavailableError(f"lab not ready within {timeout:g}s: {why}")


def _stop_component(state: LabState, component: str) -> None:
    proc = state.procs.get(component)
    if proc is None:
        return
    if component == "postgres":
        stop_postgres(state, proc)
    else:
        stop_proc(proc)
    if component == "api":  # replicas a fault moved out of the group (or orphaned)
        for pid in state.replica_pids().values():
            if pid and alive(pid) and state.jwt_secret_file in cmdline(pid):
                os.kill(pid, signal.SIGKILL)
        for path in state.pid_files.values():
            Path(path).unlink(missing_ok=True)


@dataclass
class DownResult:
    stopped: list[str]
    pids: list[int]  # every process that was recorded (all are gone now)


def down(lab_dir: Path = DEFAULT_DIR, out: Callable[[str], None] = print, purge: bool = False) -> DownResult | None:
    """Stop every recorded component, dependents first; None if no lab state was found.
    `purge` also deletes what the lab wrote (databases, TSDB, logs, secret)."""
    if load_state(lab_dir) is None:
        return None
    with _one_at_a_time(Path(lab_dir).absolute(), out):
        return _down(lab_dir, purge, out)


def _down(lab_dir: Path, purge: bool, out: Callable[[str], None]) -> DownResult | None:
    state = load_state(lab_dir)
    if state is None:  # another `down` got there first
        return None
    pids = [p.pid for p in state.procs.values()] + [p for p in state.replica_pids().values() if p]
    stopped = []
    for c in reversed(START_ORDER):
        if c in state.procs:
            if running(state.procs[c]):
                out(f"stopping {c}")
                stopped.append(c)
            _stop_component(state, c)
    leftover = [pid for pid in pids if alive(pid)]
    if leftover:
        raise UnavailableError(f"processes still alive after lab down: {leftover}")
    state.path.unlink(missing_ok=True)
    if purge:
        _purge(state)
    return DownResult(stopped, pids)


def _purge(state: LabState) -> None:
    lab_dir = Path(state.dir)
    for sub in ("postgres", "prometheus", "alertmanager", "logs"):
        shutil.rmtree(lab_dir / sub, ignore_errors=True)
    shutil.rmtree(state.pg_root, ignore_errors=True)
    files = (state.jwt_secret_file, state.latency_file, str(lab_dir / "supervise.json"), *state.pid_files.values())
    for name in (*files, str(lab_dir / LOCK_FILE)):  # the lock is held: a waiter sees it was purged
        Path(name).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        lab_dir.rmdir()  # only if nothing else is in it


ANSWER_WITHIN_S = 1.0  # `lab status`: a component that takes longer is "not responding"
HEALTH_PATHS = {"prometheus": "/-/healthy", "alertmanager": "/-/healthy"}  # and /healthz for replicas


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    up: bool
    pid: int | None
    detail: str
    condition: str = ""  # why it is not up, in words: "down", "not responding"

    @property
    def state(self) -> str:
        return "up" if self.up else (self.condition or "DOWN")


def answers(url: str | None, port: int, timeout: float = ANSWER_WITHIN_S) -> bool:
    """The component answers within `timeout`: an HTTP health check where it has one, else a
    TCP connect. A frozen process (SIGSTOP) still completes TCP handshakes from the kernel's
    backlog, so HTTP is what tells it apart; every check is bounded, never the connect's 75 s."""
    if url is not None:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r:
                return bool(200 <= r.status < 500)
        except (OSError, http.client.HTTPException):
            return False
    import socket

    with socket.socket() as s:
        s.settimeout(timeout)
        try:
            return s.connect_ex(("127.0.0.1", port)) == 0
        except OSError:
            return False


def _judge(name: str, pid: int | None, alive_: bool, url: str | None, port: int, detail: str) -> ComponentStatus:
    if not alive_:
        return ComponentStatus(name, False, pid, detail, "DOWN")
    if not answers(url, port):
        from drillkit.procs import status as proc_status

        why = " (process stopped)" if pid is not None and proc_status(pid) == "stopped" else ""
        return ComponentStatus(
            name, False, pid, f"{detail}: no answer within {ANSWER_WITHIN_S:g}s{why}", "not responding"
        )
    return ComponentStatus(name, True, pid, detail)


def status(lab_dir: Path = DEFAULT_DIR) -> list[ComponentStatus] | None:
    """Each component up, down, or not responding (alive, but no answer within a second)."""
    state = load_state(lab_dir)
    if state is None:
        return None
    rows = []
    for c in START_ORDER:
        proc = state.procs.get(c)
        if c == "api":
            ok = running(proc)
            rows.append(
                ComponentStatus(
                    "supervisor",
                    ok,
                    proc.pid if proc else None,
                    f"restarts dead replicas; config {state.dir}/supervise.json",
                )
            )
            for (name, pid), port in zip(state.replica_pids().items(), state.ports.api, strict=True):
                url = state.urls[name]
                alive_ = pid is not None and alive(pid)
                rows.append(_judge(name, pid, alive_, url.rstrip("/") + "/healthz", port, url))
            continue
        ports = state.ports.owned_by(c)
        detail = state.urls.get(c) or f"127.0.0.1:{ports[0]}"
        if c == "postgres":
            detail = f"{state.dsn_direct} (app via proxy: {state.dsn})"
        pid = proc.pid if proc else None
        health = state.urls[c].rstrip("/") + HEALTH_PATHS[c] if c in HEALTH_PATHS and c in state.urls else None
        worst = _judge(c, pid, running(proc), health, ports[0], detail)
        for port in ports[1:]:
            if worst.up:
                worst = _judge(c, pid, True, None, port, detail)
        rows.append(worst)
    return rows


def log_files(state: LabState) -> dict[str, Path]:
    files = {c: Path(p.log) for c, p in state.procs.items() if c != "api"}
    logs = Path(state.dir) / "logs"
    files["supervisor"] = logs / "supervisor.log"
    files.update({name: logs / f"{name}.log" for name in state.pid_files})
    return files


def tail(path: Path, lines: int) -> Iterator[str]:
    try:
        with path.open("rb") as f:
            start = max(0, f.seek(0, os.SEEK_END) - 300 * lines)
            f.seek(start)
            text = f.read().decode(errors="replace")
    except FileNotFoundError:
        return
    chunk = text.splitlines()
    yield from (chunk[1:] if start else chunk)[-lines:]  # the first line read may be cut


def summary(state: LabState) -> list[str]:
    """What `lab up` prints: where everything is and what to do next."""
    lines = [f"Prometheus    {state.urls['prometheus']}", f"Alertmanager  {state.urls['alertmanager']}"]
    lines += [f"{name:<13} {state.urls[name]}" for name in state.pid_files]
    lines += [f"your rules    {path}" for path in state.rules]
    lines += [
        f"PostgreSQL    {state.dsn_direct}",
        f"app DSN       {state.dsn}  (through the latency proxy)",
        f"state         {state.path}",
    ]
    return lines
