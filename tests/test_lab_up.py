"""Integration: `drillkit lab up | status | logs | down` with real processes, and the lab's
DB proxy and supervisor on their own.

The lab is what the README demo and every lab drill stand on, so these tests start the real
thing (PostgreSQL, exporter, proxy, supervised replicas, traffic, Alertmanager, Prometheus) on
non-default ports in a temp dir, and prove by pid that `lab down` leaves nothing running.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from drillkit.errors import UnavailableError
from drillkit.lab.lab import new_state, wait_ready
from drillkit.lab.layout import API_OFFSET
from drillkit.lab.postgres import bootstrap_db, run_pg
from drillkit.lab.services import port_in_use
from drillkit.lab.state import LabState, lab_url, load_state
from drillkit.procs import alive, cmdline, group_members, stop_own_group
from tests.helpers import run_cli, write_scenario

pytestmark = pytest.mark.integration


def free_block(replicas: int = 2) -> int:
    """A base port whose whole lab block (base .. base+10+replicas) is free, below the kernel's
    ephemeral range: there any outgoing connection of another test may take a port between our
    check and PostgreSQL's bind (seen in CI)."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(200):
        base = random.randrange(20000, min(low, 32768) - 100, 50)
        if not any(port_in_use(p) for p in range(base, base + API_OFFSET + replicas)):
            return base
    raise AssertionError("no free block of ports found")


def all_pids(state: LabState) -> list[int]:
    return [p.pid for p in state.procs.values()] + [p for p in state.replica_pids().values() if p]


def lab_down(lab_dir: Path) -> None:
    """Stop the lab and delete its data (PostgreSQL may live outside the temp dir)."""
    r = run_cli("lab", "down", "--purge", "--dir", str(lab_dir), timeout=120)
    assert r.returncode == 0, r.stderr


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, int, float]]:
    lab_dir = tmp_path_factory.mktemp("lab") / "lab"
    base = free_block()
    t0 = time.monotonic()
    r = run_cli("lab", "up", "--dir", str(lab_dir), "--base-port", str(base), timeout=180)
    took = time.monotonic() - t0
    try:
        assert r.returncode == 0, f"lab up exited {r.returncode}\n{r.stdout}\n{r.stderr}"
        yield lab_dir, base, took
    finally:
        lab_down(lab_dir)


def prom_get(state: LabState, path: str, **params: str) -> Any:
    r = requests.get(f"{state.urls['prometheus']}{path}", params=params, timeout=5)
    r.raise_for_status()
    return r.json()["data"]


def test_lab_up_starts_every_component(lab: tuple[Path, int, float]) -> None:
    lab_dir, base, took = lab
    print(f"lab up took {took:.1f}s")
    state = load_state(lab_dir)
    assert state is not None
    assert state.ports.prometheus == base and state.ports.api == (base + 10, base + 11)
    assert set(state.procs) == {"postgres", "exporter", "proxy", "api", "traffic", "node", "alertmanager", "prometheus"}
    dead = {c: p.pid for c, p in state.procs.items() if not alive(p.pid)}
    assert not dead, f"recorded processes not alive: {dead}"
    # every target up and the lab's rules evaluated, per Prometheus itself
    targets = prom_get(state, "/api/v1/targets")["activeTargets"]
    jobs = {t["labels"]["job"]: t["health"] for t in targets}
    assert jobs == {
        j: "up"
        for j in (
            "chatbot-api",
            "postgres",
            "chatbot-db-proxy",
            "chatbot-traffic",
            "node",
            "alertmanager",
            "prometheus",
        )
    }, jobs
    groups = prom_get(state, "/api/v1/rules")["groups"]
    chatbot = next(g for g in groups if g["name"] == "chatbot")
    assert not chatbot["lastEvaluation"].startswith("0001"), chatbot["lastEvaluation"]
    assert len(chatbot["rules"]) == 7 and all(r["health"] == "ok" for r in chatbot["rules"])
    # the app really serves users through PostgreSQL behind the proxy
    ok = prom_get(
        state, "/api/v1/query", query='sum(increase(chatbot_http_requests_total{route="/chat",code="200"}[1m]))'
    )
    assert ok["result"] and float(ok["result"][0]["value"][1]) > 0, ok
    assert requests.get(f"{state.urls['alertmanager']}/-/ready", timeout=5).status_code == 200
    # state.json says where everything is
    raw = json.loads((lab_dir / "state.json").read_text())
    for key in ("urls", "ports", "procs", "dsn", "jwt_secret_file", "latency_file", "pid_files"):
        assert key in raw, key
    assert Path(state.jwt_secret_file).stat().st_mode & 0o077 == 0, "JWT secret readable by others"
    r = run_cli("lab", "status", "--dir", str(lab_dir))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "DOWN" not in r.stdout and r.stdout.count(" up ") == 10, r.stdout
    r = run_cli("lab", "logs", "supervisor", "--dir", str(lab_dir), "-n", "5")
    assert r.returncode == 0 and "api-1 started" in r.stdout, r.stdout + r.stderr


def test_lab_up_twice_changes_nothing(lab: tuple[Path, int, float]) -> None:
    lab_dir, base, _ = lab
    before = load_state(lab_dir)
    assert before is not None
    r = run_cli("lab", "up", "--dir", str(lab_dir), timeout=60)
    assert r.returncode == 0, r.stderr
    assert "already running" in r.stdout and "nothing changed" in r.stdout, r.stdout
    after = load_state(lab_dir)
    assert after is not None
    assert all_pids(after) == all_pids(before), (all_pids(before), all_pids(after))
    r = run_cli("lab", "up", "--dir", str(lab_dir), "--base-port", str(base + 1), timeout=60)
    assert r.returncode == 2 and "lab down" in r.stderr, r.stderr


def test_supervisor_restarts_a_killed_replica(lab: tuple[Path, int, float]) -> None:
    lab_dir, _, _ = lab
    state = load_state(lab_dir)
    assert state is not None
    old = state.replica_pids()["api-1"]
    assert old is not None
    os.kill(old, signal.SIGKILL)
    deadline = time.monotonic() + 15
    new = None
    while time.monotonic() < deadline:
        new = state.replica_pids()["api-1"]
        if new and new != old and alive(new):
            try:
                if requests.get(f"{state.urls['api-1']}/healthz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
        time.sleep(0.1)
    else:
        raise AssertionError(f"api-1 not restarted: pid file says {new} (killed {old})")
    log = (lab_dir / "logs" / "supervisor.log").read_text()
    assert f"api-1 (pid {old}) killed by SIGKILL" in log, log[-500:]


def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    base = free_block()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", base + 2))  # PostgreSQL's port
        squatter.listen()
        r = run_cli("lab", "up", "--dir", str(tmp_path / "lab"), "--base-port", str(base))
    assert r.returncode == 3, f"exit {r.returncode}: {r.stderr}"
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and f"port {base + 2} (postgres) already in use" in lines[0], r.stderr
    state = load_state(tmp_path / "lab")
    assert state is None or not state.procs, "something was started despite the busy port"


def test_missing_program_names_the_package(tmp_path: Path) -> None:
    path = str(Path(sys.executable).parent)  # no /usr/bin: no prometheus
    r = run_cli("lab", "up", "--dir", str(tmp_path / "lab"), "--base-port", str(free_block()), env_extra={"PATH": path})
    assert r.returncode == 3, r.stderr
    assert "`prometheus` not found: install it with `apt-get install prometheus`" in r.stderr, r.stderr
    assert load_state(tmp_path / "lab") is None, "something was set up without its programs"


def test_lab_down_leaves_no_process(lab: tuple[Path, int, float]) -> None:
    lab_dir, _, _ = lab
    state = load_state(lab_dir)
    assert state is not None
    pids = all_pids(state)
    postgres_backends = [
        int(p.name)
        for p in Path("/proc").iterdir()
        if p.name.isdigit() and str(Path(state.pg_root) / "data") in _cmdline(int(p.name))
    ]
    assert len(pids) == 10, pids  # 8 components (node_exporter included) + 2 replicas
    r = run_cli("lab", "down", "--purge", "--dir", str(lab_dir), timeout=120)
    assert r.returncode == 0, r.stderr
    assert not Path(state.pg_root).exists() and not (lab_dir / "logs").exists(), "--purge left data"
    survivors = [pid for pid in pids + postgres_backends if alive(pid)]
    assert not survivors, f"still alive after lab down: {survivors}"
    for port in [*state.ports.owned_by("postgres"), *state.ports.api, state.ports.prometheus]:
        assert not port_in_use(port), f"port {port} still served after lab down"
    r = run_cli("lab", "status", "--dir", str(lab_dir))
    assert r.returncode == 3 and "no lab" in r.stdout, r.stdout
    r = run_cli("lab", "down", "--dir", str(lab_dir))
    assert r.returncode == 0 and "nothing to stop" in r.stdout, r.stdout


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


# --- the DB proxy on its own -------------------------------------------------------------------


def _echo_server() -> tuple[socket.socket, int]:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()

    def serve() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=_echo, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return srv, srv.getsockname()[1]


def _echo(conn: socket.socket) -> None:
    with conn:
        while data := conn.recv(65536):
            conn.sendall(data)


def _round_trip(sock: socket.socket, payload: bytes = b"ping") -> float:
    t0 = time.perf_counter()
    sock.sendall(payload)
    got = b""
    while len(got) < len(payload):
        got += sock.recv(65536)
    assert got == payload
    return time.perf_counter() - t0


def test_proxy_delays_both_directions_and_follows_the_control_file(tmp_path: Path) -> None:
    srv, upstream = _echo_server()
    control = tmp_path / "latency.json"
    listen, metrics = free_block(0), free_block(0) + 1
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "drillkit.lab.proxy",
            "--listen",
            f"127.0.0.1:{listen}",
            "--upstream",
            f"127.0.0.1:{upstream}",
            "--control",
            str(control),
            "--metrics-port",
            str(metrics),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not port_in_use(listen):
            assert time.monotonic() < deadline and proc.poll() is None, "proxy did not start"
            time.sleep(0.05)
        with socket.create_connection(("127.0.0.1", listen)) as sock:
            fast = min(_round_trip(sock) for _ in range(5))
            assert fast < 0.15, f"no control file: round trip {fast:.3f}s"
            control.write_text('{"delay_ms": 150}')
            time.sleep(0.25)  # re-read at most every 200 ms: the open connection slows down
            slow = [_round_trip(sock) for _ in range(3)]
            assert all(0.29 <= s < 1.0 for s in slow), f"150 ms each way: round trips {slow}"
            body = requests.get(f"http://127.0.0.1:{metrics}/metrics", timeout=2).text
            assert "chatbot_db_proxy_delay_ms 150" in body, body
            control.write_text("not json")  # unreadable = no delay, never a crash
            time.sleep(0.25)
            assert min(_round_trip(sock) for _ in range(3)) < 0.15
            control.write_text('{"delay_ms": 0}')
            time.sleep(0.25)
            assert min(_round_trip(sock) for _ in range(3)) < 0.15
            big = os.urandom(3 * 65536 + 17)  # chunks arrive complete and in order
            assert _round_trip(sock, big) < 1
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(10)
        srv.close()


# --- errors are one line, never a traceback ----------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param({"dir": "/somewhere", "base_port": 19090}, id="missing-keys"),
        pytest.param({"ports": "19090"}, id="ports-not-a-mapping"),
        pytest.param([1, 2], id="not-an-object"),
    ],
)
def test_malformed_state_is_a_one_line_error(tmp_path: Path, raw: Any) -> None:
    lab_dir = tmp_path / "lab"
    lab_dir.mkdir()
    (lab_dir / "state.json").write_text(json.dumps(raw))
    with pytest.raises(UnavailableError, match="malformed lab state"):
        load_state(lab_dir)
    assert lab_url("prometheus", lab_dir) is None
    r = run_cli("lab", "status", "--dir", str(lab_dir))
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 3 and len(lines) == 1 and "malformed lab state" in lines[0], r.stderr
    # `drillkit run` of a local scenario looks for the lab's Alertmanager there: not a crash
    scenario = write_scenario(
        tmp_path / "drill.yaml",
        {
            "name": "malformed-lab",
            "title": "t",
            "severity": "P3",
            "target": {"local": {"lab_dir": str(lab_dir)}},
            "steady_state": [{"name": "up", "expr": "up", "expect": "== 1"}],
            "faults": [{"kind": "process-kill", "pattern": "^no-such-process-anywhere$"}],
            "detection": {"alert": "X", "within": "10s"},
            "recovery": {"within": "10s"},
        },
    )
    r = run_cli(
        "run",
        str(scenario),
        "--dry-run",
        "--prometheus-url",
        f"http://127.0.0.1:{free_block(0)}",
        "--ready-timeout",
        "0",
        "--report-dir",
        str(tmp_path / "reports"),
        timeout=60,
    )
    assert "Traceback" not in r.stderr and r.returncode == 3, f"exit {r.returncode}\n{r.stderr}"


@pytest.fixture
def bare_state(tmp_path: Path) -> Iterator[LabState]:
    """A lab's state with nothing started: every port of its block is free."""
    (tmp_path / "lab").mkdir()
    state = new_state(tmp_path / "lab", free_block(1), 1)
    try:
        yield state
    finally:
        shutil.rmtree(state.pg_root, ignore_errors=True)


def test_database_bootstrap_failure_is_unavailable(bare_state: LabState) -> None:
    """PostgreSQL not answering at the DSN: UnavailableError, not a psycopg exception."""
    with pytest.raises(
        UnavailableError,
        match=r"PostgreSQL: cannot create the app's role and database .*"
        r"(refused|failed)",
    ):
        bootstrap_db(bare_state)


def test_postgres_command_timeout_is_unavailable(bare_state: LabState) -> None:
    t0 = time.monotonic()
    with pytest.raises(UnavailableError, match=r"`sleep 30` did not finish within 0.5s"):
        run_pg(bare_state, "sleep", "30", timeout=0.5)
    assert time.monotonic() - t0 < 5


class _HalfPrometheus(http.server.BaseHTTPRequestHandler):
    """Rules evaluated and targets up, but every query fails with HTTP 500."""

    def do_GET(self) -> None:
        if self.path.startswith("/api/v1/rules"):
            body: Any = {"data": {"groups": [{"name": "chatbot", "lastEvaluation": "2024-01-01T00:00:00Z"}]}}
        elif self.path.startswith("/api/v1/targets"):
            body = {"data": {"activeTargets": [{"labels": {"job": "x"}, "scrapeUrl": "u", "health": "up"}]}}
        else:
            self.send_error(500, "query failed")
            return
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


def test_wait_ready_query_failure_is_unavailable(bare_state: LabState) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HalfPrometheus)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    bare_state.urls["prometheus"] = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with pytest.raises(UnavailableError, match="lab not ready within 1s: Prometheus API: HTTPError"):
            wait_ready(bare_state, 1)
    finally:
        server.shutdown()
        server.server_close()


# --- stopping a component's process group --------------------------------------------------------

# A leader that exits on SIGTERM and leaves behind a child that ignores SIGTERM (a supervisor
# that does not stop its replicas).
CARELESS_LEADER = """
import signal, subprocess, sys, time
subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                  "time.sleep(600)", "child-of-" + sys.argv[1]])
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
time.sleep(600)
"""


def _matching(text: str) -> list[int]:
    return [int(d.name) for d in Path("/proc").iterdir() if d.name.isdigit() and text in cmdline(int(d.name))]


def test_stop_own_group_kills_the_children_the_leader_left_behind() -> None:
    marker = f"leader-{random.randrange(10**9)}"
    leader = subprocess.Popen([sys.executable, "-c", CARELESS_LEADER, marker], start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while not _matching(f"child-of-{marker}"):
            assert time.monotonic() < deadline, "the child did not start"
            time.sleep(0.05)
        child = _matching(f"child-of-{marker}")[0]
        result = stop_own_group(leader.pid, leader.pid, marker, grace=5)
        assert leader.wait(5) == 0, "the leader got SIGTERM, not SIGKILL"
        assert not alive(child) and group_members(leader.pid) == [], group_members(leader.pid)
        assert result["signalled"] == [leader.pid] and result["killed_hard"] and result["left"] == [], result
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(leader.pid, signal.SIGKILL)
        leader.wait()


def test_stop_own_group_leaves_a_reused_pid_alone() -> None:
    """The recorded leader's pid now names another process (no marker): nothing is signalled."""
    other = subprocess.Popen(["sleep", "600"], start_new_session=True)
    try:
        t0 = time.monotonic()
        result = stop_own_group(other.pid, other.pid, "--config /no/such/supervise.json", grace=5)
        assert time.monotonic() - t0 < 1, "waited for a process it did not signal"
        assert other.poll() is None and result == {"signalled": [], "killed_hard": False, "left": []}, result
    finally:
        other.kill()
        other.wait()
