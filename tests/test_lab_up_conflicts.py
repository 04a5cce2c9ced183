"""`drillkit lab up` against what is already there (issue 17): a second `lab up` at the same
time, and ports another program holds without listening on them.

Two `lab up`s at once used to both start every component: the second's Prometheus failed to
bind, after wiping the first one's TSDB, and it exited 3 with a page of Prometheus's log. A
port held without listening (a bound socket, or an outgoing connection's local port) passed the
connect-based port check, so the component failed later with its log as the error, and a
replica port left the supervisor and a replica running after `lab up` gave up.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from drillkit.lab.state import load_state
from drillkit.procs import alive, cmdline
from tests.helpers import drill_process, run_cli
from tests.test_lab_up import all_pids, free_block, lab_down

pytestmark = pytest.mark.integration


def _mentioning(*texts: str) -> dict[int, str]:
    """Live processes whose command line names one of `texts` (a lab dir, its PostgreSQL data)."""
    found = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and alive(int(d.name)):
            line = cmdline(int(d.name))
            if any(t in line for t in texts):
                found[int(d.name)] = line
    return found


@pytest.fixture
def lab_dir(tmp_path: Path) -> Iterator[Path]:
    """A lab dir that is purged (and its processes stopped) at the end, whatever the test did."""
    path = tmp_path / "lab"
    try:
        yield path
    finally:
        if (path / "state.json").exists():
            lab_down(path)


def test_two_lab_ups_at_once_start_one_lab(lab_dir: Path) -> None:
    base = free_block()
    args = ("lab", "up", "--dir", str(lab_dir), "--base-port", str(base))
    with drill_process(*args) as first, drill_process(*args) as second:
        outs = [p.communicate(timeout=240) for p in (first, second)]
        codes = [first.returncode, second.returncode]
    said = "\n".join(f"exit {c}\n{o}\n{e}" for c, (o, e) in zip(codes, outs, strict=True))
    assert codes == [0, 0], f"both must succeed, the later one finding the lab up:\n{said}"
    assert sorted("already running" in o for o, _ in outs) == [False, True], said
    assert any("waiting for another `drillkit lab` command" in e for _, e in outs), said
    state = load_state(lab_dir)
    assert state is not None and set(state.procs) == {
        "postgres", "exporter", "proxy", "api", "traffic", "node", "alertmanager", "prometheus",
    }, state  # fmt: skip
    dead = [p for p in all_pids(state) if not alive(p)]
    assert not dead, f"recorded but not running: {dead}"
    prometheus = [p for p, line in _mentioning(f"--web.listen-address=127.0.0.1:{base} ").items() if "prom" in line]
    assert prometheus == [state.procs["prometheus"].pid], f"one Prometheus, the recorded one: {prometheus}"
    assert (lab_dir / "prometheus" / "data" / "wal").is_dir(), "the running Prometheus's TSDB was wiped"
    r = requests.get(f"{state.urls['prometheus']}/api/v1/query", params={"query": "up"}, timeout=5)
    assert r.status_code == 200 and r.json()["data"]["result"], r.text

    # pinned (correct before): a lab in another dir on the same ports is refused in one line and
    # leaves this one as it was
    other = lab_dir.parent / "other"
    r2 = run_cli("lab", "up", "--dir", str(other), "--base-port", str(base), timeout=60)
    assert r2.returncode == 3 and len(r2.stderr.strip().splitlines()) == 1, r2.stderr
    assert f"port {base} (prometheus)" in r2.stderr and "already in use" in r2.stderr, r2.stderr
    assert all(alive(p) for p in all_pids(state)) and load_state(lab_dir) == state
    lab_down(other)

    pids = all_pids(state)
    lab_down(lab_dir)
    left = _mentioning(str(lab_dir), state.pg_root)
    assert not left and not [p for p in pids if alive(p)], f"left running after lab down: {left}"


@pytest.mark.parametrize(
    ("offset", "component"),
    [(0, "prometheus"), (2, "postgres"), (10, "api")],
    ids=["first-started", "middle", "replica-port"],
)
def test_a_port_held_without_listening_is_one_line_and_nothing_runs(lab_dir: Path, offset: int, component: str) -> None:
    base = free_block()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", base + offset))  # held, not listening: a connect test sees nothing
        t0 = time.monotonic()
        r = run_cli("lab", "up", "--dir", str(lab_dir), "--base-port", str(base), timeout=180)
        took = time.monotonic() - t0
        state = load_state(lab_dir)
        left = _mentioning(str(lab_dir), *([state.pg_root] if state else []))
    assert r.returncode == 3, f"exit {r.returncode}\n{r.stderr}"
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, f"one line, not a log:\n{r.stderr}"
    assert f"port {base + offset} ({component}) already in use" in lines[0], lines[0]
    assert not left, f"left running after a refused lab up: {left}"
    assert state is None or not state.procs, state.procs if state else None
    assert took < 20, f"refused after {took:.0f}s: the port must be checked before anything starts"


def test_port_check_sees_a_bound_socket_and_an_outgoing_connection() -> None:
    """The check itself, on the two ways a port is held without a listener."""
    from drillkit.lab.services import port_in_use, port_taken

    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        port = bound.getsockname()[1]
        assert port_taken(port) and not port_in_use(port)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        with socket.create_connection(server.getsockname()) as client:
            local = client.getsockname()[1]
            assert port_taken(local) and not port_in_use(local)
    assert not port_taken(port), "a port nobody holds is free"
