"""Integration: the local lab faults against a real PostgreSQL, real cgroups, real processes and
real files — no mocks. Each fault is injected through the Fault API (a real `Undo` on an
`ExitStack`, a real `Journal`), its harm is shown with evidence, and the revert must put the
system back exactly; the revert is run again (a no-op), from journal data in a fresh process (what
`drillkit cleanup` does), by a real `drillkit run` that receives SIGTERM mid-drill, and by the real
`drillkit cleanup` after the runner was SIGKILLed.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest

from drillkit.errors import Aborted, PreflightError, ScenarioError
from drillkit.faults import Fault, FaultContext, Undo, fault_class, load_record
from drillkit.faults.local import cgroups as cg
from drillkit.faults.local.latency import revision
from drillkit.faults.local.secrets import backup_of
from drillkit.journal import JOURNAL_NAME, Journal, pending_reverts, read_journal
from drillkit.model import Where
from drillkit.procs import alive, cmdline, group_members, status
from drillkit.scenario import load_scenario
from drillkit.signals import StopFlag
from tests.helpers import drill_process, run_cli, wait_for_event, write_scenario
from tests.pgutil import Postgres, free_port, start_postgres
from tests.promfixture import PromEnv

pytestmark = pytest.mark.integration

MAX_CONNECTIONS = 12
T = TypeVar("T")


# --- plumbing ---------------------------------------------------------------------------------


def wait_for(check: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def http(method: str, url: str, token: str | None = None, body: dict[str, Any] | None = None) -> int:
    data = json.dumps(body).encode() if body is not None else (b"" if method == "POST" else None)
    req = urllib.request.Request(
        url, data=data, method=method, headers={"Authorization": f"Bearer {token}"} if token else {}
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


def login(base: str) -> str:
    req = urllib.request.Request(
        f"{base}/login", method="POST", data=json.dumps({"user": "alice", "password": "drill"}).encode()
    )
    with urllib.request.urlopen(req, timeout=5) as r:
        return str(json.loads(r.read())["token"])


def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def scenario_dict(fault: dict[str, Any], name: str = "lab-fault", max_targets: str = "100%") -> dict[str, Any]:
    """A minimal local scenario; the alert needs 60 s to fire, so a drill sits in `detect`."""
    return {
        "name": name,
        "title": f"Lab fault {fault['kind']}",
        "severity": "P3",
        "target": {"local": {}},
        "guardrails": {"max_targets": max_targets},
        "steady_state": [{"name": "exporter up", "expr": 'up{job="demo"}', "expect": "== 1"}],
        "faults": [fault],
        "detection": {"alert": "DemoSlowToFire", "within": "90s"},
        "recovery": {"within": "2m", "verify_within": "10s"},
    }


@dataclass
class Drill:
    """One fault ready to inject: context, journal and the scenario file it came from."""

    fault: Fault
    ctx: FaultContext
    journal: Journal
    scenario: Path
    found: Any = None  # what preflight returned

    def preflight(self) -> Any:
        self.found = self.fault.preflight()
        return self.found

    def inject(self, stack: ExitStack) -> None:
        self.fault.inject(self.found, Undo(stack, self.ctx))

    def revert(self, data: dict[str, Any]) -> dict[str, Any] | None:
        """The fault's revert from journal-shaped data, rebuilt as `drillkit cleanup` does."""
        cls = type(self.fault)
        return cls.revert(self.ctx, load_record(cls, data, Where(str(self.path), 0, "revert data")))

    @property
    def path(self) -> Path:
        return self.journal.path

    def revert_data(self) -> dict[str, Any]:
        pending = pending_reverts(self.path)
        assert len(pending) == 1, pending
        return pending[0].data

    def results(self) -> list[dict[str, Any]]:
        return [e.data["result"] for e in read_journal(self.path) if e.kind == "revert_done"]


_OPEN: list[Journal] = []


@pytest.fixture(autouse=True)
def _close_journals() -> Iterator[None]:
    """Journals `prepare` opened are closed after each test (they hold a lock and a file)."""
    yield
    while _OPEN:
        _OPEN.pop().close()


def prepare(tmp_path: Path, fault: dict[str, Any], max_targets: str = "100%") -> Drill:
    path = write_scenario(tmp_path / "drill.yaml", scenario_dict(fault, max_targets=max_targets))
    sc = load_scenario(path)
    run_id = secrets.token_hex(4)
    journal = Journal(tmp_path / f"run-{run_id}" / JOURNAL_NAME)
    _OPEN.append(journal)
    journal.append("started", run_id=run_id)
    ctx = FaultContext(run_id=run_id, scenario=sc, journal=journal, stop=StopFlag(), log=print)
    spec = sc.faults[0]
    return Drill(fault_class(spec.kind, "local")(spec.params, ctx), ctx, journal, path)


CLEANUP = """
import json, sys
from pathlib import Path
from drillkit.faults import RevertContext, fault_class, load_record
from drillkit.journal import Journal, pending_reverts
from drillkit.model import Where
from drillkit.signals import StopFlag

journal_path, target = Path(sys.argv[1]), sys.argv[2]
pending = pending_reverts(journal_path)
journal = Journal(journal_path)
ctx = RevertContext(run_id=pending[0].run_id, journal=journal, stop=StopFlag())
for p in pending:
    cls = fault_class(p.fault, target)
    record = load_record(cls, p.data, Where(str(p.journal), p.line, f"revert #{p.id} data"))
    result = cls.revert(ctx, record)
    journal.append("revert_done", id=p.id, fault=p.fault, result=result or {})
    print(json.dumps(result))
"""


def cleanup_in_fresh_process(drill: Drill) -> list[dict[str, Any]]:
    """What `drillkit cleanup` does, in another process: pending_reverts, then the class's revert.
    The runner "crashed", so its journal is closed (its lock released)."""
    drill.journal.close()
    r = subprocess.run(
        [sys.executable, "-c", CLEANUP, str(drill.path), "local"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).parent.parent,
    )
    assert r.returncode == 0, f"cleanup process failed:\n{r.stdout}\n{r.stderr}"
    assert pending_reverts(drill.path) == [], "cleanup left reverts pending"
    return [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]


def latest_data(journal: Path) -> dict[str, Any]:
    """The revert data as last journalled (what a cleanup would get)."""
    data: dict[str, Any] = {}
    for e in read_journal(journal):
        if e.kind in ("revert_registered", "revert_updated"):
            data = e.data["data"]
    return data


def run_id_of(journal: Path) -> str:
    return str(read_journal(journal)[0].data["run_id"])


# --- rigs: each sets up a victim, proves the harm, proves the restore -----------------------


class Rig:
    """A real victim for one fault, with evidence checks used by every test style below."""

    def fault(self) -> dict[str, Any]:
        raise NotImplementedError

    def harmed(self, journal: Path) -> None:
        """Assert the harm is real, with evidence (called while the fault is in effect)."""

    def restored(self, journal: Path) -> None:
        """Assert the revert put the system back exactly."""

    def close(self) -> None:
        """Remove the victim itself."""


def client_backends(pg: Postgres) -> list[tuple[int, str]]:
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid, application_name FROM pg_stat_activity"
            " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
        ).fetchall()
    return [(int(p), str(a)) for p, a in rows]


@dataclass
class DbRig(Rig):
    pg: Postgres
    reserve: int = 1
    others: list[tuple[int, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.others = client_backends(self.pg)

    def fault(self) -> dict[str, Any]:
        return {
            "kind": "db-connection-exhaustion",
            "dsn": self.pg.dsn(),
            "connections": "all",
            "reserve": self.reserve,
            "connect_timeout": "2s",
        }

    def harmed(self, journal: Path) -> None:
        tag, data = f"drillkit-{run_id_of(journal)}-hold", latest_data(journal)
        with psycopg.connect(self.pg.dsn(), autocommit=True) as probe:  # takes the reserved slot
            rows = probe.execute(
                "SELECT pid, application_name FROM pg_stat_activity WHERE backend_type = 'client backend'"
            ).fetchall()
            held = sorted(pid for pid, app in rows if app == tag)
            expected = MAX_CONNECTIONS - self.reserve - len(self.others)
            assert len(held) == expected, (
                f"pg_stat_activity shows {len(held)} backends of {tag}, expected max_connections "
                f"{MAX_CONNECTIONS} - reserve {self.reserve} - {len(self.others)} others = {expected}: {rows}"
            )
            assert len(rows) == MAX_CONNECTIONS, f"every slot is taken now: {rows}"
            assert held == sorted(data["backend_pids"]), (held, data["backend_pids"])
            with pytest.raises(psycopg.OperationalError, match="too many clients"):
                psycopg.connect(self.pg.dsn(), autocommit=True).close()
        assert "remaining connection slots" in data["refused"] or "too many clients" in data["refused"]

    def restored(self, journal: Path) -> None:
        data = latest_data(journal)
        tag = f"drillkit-{run_id_of(journal)}-hold"
        now = client_backends(self.pg)
        assert not [p for p, app in now if app == tag or p in data["backend_pids"]], (
            f"backends of the holder still in pg_stat_activity: {now}"
        )
        assert data["holder_pid"] and not alive(int(data["holder_pid"])), "holder process still running"
        conns = [psycopg.connect(self.pg.dsn(), autocommit=True) for _ in range(5)]  # room again
        for c in conns:
            c.close()


@dataclass
class MemoryRig(Rig):
    pg: Postgres
    tmp: Path
    leak: bool = True
    proc: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        h = cg.hierarchy("memory")
        if h is None or cg.parent_for_new(os.getpid(), h, "memory")[0] is None:
            pytest.skip("no writable memory cgroup on this host")
        self.h = h
        self.port = free_port()
        secret = self.tmp / "mem.secret"
        secret.write_text(secrets.token_hex(32))
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "drillkit.lab.app",
                "--port",
                str(self.port),
                "--dsn",
                self.pg.dsn(),
                "--jwt-secret-file",
                str(secret),
                "--replica",
                "mem",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.pidfile = self.tmp / "mem.pid"
        self.pidfile.write_text(str(self.proc.pid))
        wait_for(lambda: http("GET", f"http://127.0.0.1:{self.port}/healthz") == 200, 20, "the app")
        self.origin = cg.cgroup_of(self.proc.pid, h, "memory")
        self.parent = cg.parent_for_new(self.proc.pid, h, "memory")[0]

    def fault(self) -> dict[str, Any]:
        f: dict[str, Any] = {
            "kind": "memory-pressure",
            "pidfile": str(self.pidfile),
            "limit": "+48Mi",
            "oom_within": "30s",
        }
        if self.leak:
            f |= {"leak_url": f"http://127.0.0.1:{self.port}/debug/leak?mb=16", "leak_every": "50ms"}
        return f

    def group(self, journal: Path) -> Path:
        assert self.parent is not None
        return self.parent / f"drillkit-{run_id_of(journal)}"

    def harmed(self, journal: Path) -> None:
        assert self.proc is not None
        group = self.group(journal)
        assert group.is_dir(), f"{group} not created"
        limit = int((group / cg.limit_file(self.h.version)).read_text())
        assert limit == latest_data(journal)["limit_bytes"] and limit < 1 << 30, limit
        if not self.leak:
            where = cg.cgroup_of(self.proc.pid, self.h, "memory")
            assert where == group, f"pid {self.proc.pid} is in {where}, not {group}"
            return
        code = self.proc.wait(10)
        kills = cg.oom_kills(group, self.h.version)
        assert code == -signal.SIGKILL, f"app exited with {code}, expected an OOM kill (SIGKILL)"
        assert kills is not None and kills >= 1, f"oom_kill counter of {group}: {kills}"
        # `injected` is journalled at the first leak request; the fault records the kill after
        wait_for(lambda: latest_data(journal)["target_gone"], 10, "the OOM kill in the journal")
        assert latest_data(journal)["oom_kill"] >= 1

    def restored(self, journal: Path) -> None:
        group = self.group(journal)
        assert not group.exists(), f"{group} still exists"
        if not self.leak:
            assert self.proc is not None and alive(self.proc.pid)
            assert cg.cgroup_of(self.proc.pid, self.h, "memory") == self.origin, "not back in its cgroup"
            assert http("GET", f"http://127.0.0.1:{self.port}/healthz") == 200

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError):
            f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(f[11]) + int(f[12])
    return total / os.sysconf("SC_CLK_TCK")


@dataclass
class CpuRig(Rig):
    tmp: Path
    in_cgroup: bool = False
    workers: int = 2

    def __post_init__(self) -> None:
        self.target: subprocess.Popen[bytes] | None = None
        self.group: Path | None = None
        if self.in_cgroup:  # a target in its own cpu cgroup, so "inside it" is observable
            h = cg.hierarchy("cpu")
            self.target = subprocess.Popen(["sleep", "600"])
            parent = cg.parent_for_new(self.target.pid, h, "cpu")[0] if h else None
            if h is None or parent is None:
                pytest.skip("no writable cpu cgroup on this host")
            self.h, self.group = h, parent / f"drillkit-test-{secrets.token_hex(3)}"
            self.group.mkdir()
            cg.move(self.target.pid, self.group)
            self.pidfile = self.tmp / "target.pid"
            self.pidfile.write_text(str(self.target.pid))

    def fault(self) -> dict[str, Any]:
        f: dict[str, Any] = {"kind": "cpu-pressure", "workers": self.workers, "duration": "5m"}
        if self.in_cgroup:
            f["pidfile"] = str(self.pidfile)
        return f

    def harmed(self, journal: Path) -> None:
        # `injected` is journalled when stress-ng starts; its workers are journalled once all run
        wait_for(lambda: latest_data(journal)["processes"], 10, "the stress-ng workers in the journal")
        pgid = int(latest_data(journal)["pgid"])
        members = [p for p in group_members(pgid) if "stress-ng" in cmdline(p)]
        assert len(members) >= self.workers + 1, f"stress-ng group {pgid}: {members}"
        before = cpu_seconds(members)
        time.sleep(1.0)
        burnt = cpu_seconds(members) - before
        # a loose bound: this host's 2 CPUs are shared with whatever else runs meanwhile
        assert burnt > 0.4, f"stress-ng used only {burnt:.2f} CPU-s in 1 s"
        if self.group is not None:
            where = {p: cg.cgroup_of(p, self.h, "cpu") for p in members}
            assert all(d == self.group for d in where.values()), f"not inside {self.group}: {where}"

    def restored(self, journal: Path) -> None:
        data = latest_data(journal)
        pgid = int(data["pgid"])
        assert group_members(pgid) == [], f"group {pgid} still has {group_members(pgid)}"
        assert not [p for p in data["processes"] if alive(p)], "a stress-ng process survived"
        if self.target is not None:
            assert self.target.poll() is None, "the target itself must not be touched"

    def close(self) -> None:
        if self.target is not None:
            self.target.kill()
            self.target.wait()
        if self.group is not None:
            cg.remove(self.group)


@dataclass
class LatencyRig(Rig):
    pg: Postgres
    tmp: Path
    previous: bytes | None = None  # content of the control file before the drill, if any
    delay_ms: int = 300

    def __post_init__(self) -> None:
        self.control = self.tmp / "latency.json"
        if self.previous is not None:
            self.control.write_bytes(self.previous)
        self.port = free_port()
        self.proxy = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "drillkit.lab.proxy",
                "--listen",
                f"127.0.0.1:{self.port}",
                "--upstream",
                f"127.0.0.1:{self.pg.port}",
                "--control",
                str(self.control),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: port_open(self.port), 20, "the proxy")
        self.conn = psycopg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/postgres", autocommit=True)
        assert self.fastest() < 0.3, "proxy slow before the drill"

    def round_trip(self) -> float:
        start = time.monotonic()
        self.conn.execute("SELECT 1").fetchone()
        return time.monotonic() - start

    def fastest(self) -> float:
        """Best of three: a busy CI host can stall one query, never all three by 600 ms."""
        return min(self.round_trip() for _ in range(3))

    def fault(self) -> dict[str, Any]:
        return {"kind": "latency", "control": str(self.control), "delay": f"{self.delay_ms}ms", "proxy_port": self.port}

    def harmed(self, journal: Path) -> None:
        content = json.loads(self.control.read_text())
        assert content == {"delay_ms": self.delay_ms, "revision": revision(run_id_of(journal))}, content
        assert run_id_of(journal) not in self.control.read_text(), "the run id in the lab's control file"
        rt = self.round_trip()
        assert rt >= 2 * self.delay_ms / 1000 * 0.9, f"SELECT 1 through the proxy took {rt:.3f}s"

    def restored(self, journal: Path) -> None:
        if self.previous is None:
            assert not self.control.exists(), f"{self.control} left behind: {self.control.read_text()}"
        else:
            assert self.control.read_bytes() == self.previous, self.control.read_bytes()
        time.sleep(0.3)  # the proxy re-reads every 200 ms
        assert self.fastest() < 0.3, "still slow after the revert"

    def close(self) -> None:
        self.conn.close()
        self.proxy.terminate()
        self.proxy.wait(10)


@dataclass
class ProcessRig(Rig):
    """A process of our own, killed (the revert restarts it) or frozen (the revert resumes it)."""

    tmp: Path
    signal: str = "SIGKILL"

    def __post_init__(self) -> None:
        self.marker = f"victim-{secrets.token_hex(4)}"
        self.argv = [sys.executable, "-c", "import time; time.sleep(600)", self.marker]
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: _pids_matching(self.marker) == [self.proc.pid], 10, "the victim")

    def fault(self) -> dict[str, Any]:
        f: dict[str, Any] = {"kind": "process-kill", "pattern": f"{self.marker}$", "signal": self.signal}
        if self.signal == "SIGKILL":
            f.update(restart=self.argv, back_within="300ms", restart_log=str(self.tmp / "restarted.log"))
        return f

    def state(self, pid: int) -> str:
        return status(pid) or "gone"

    def harmed(self, journal: Path) -> None:
        assert latest_data(journal)["killed"] == [self.proc.pid], latest_data(journal)
        if self.signal == "SIGSTOP":
            assert self.state(self.proc.pid) == "stopped", f"pid {self.proc.pid} is {self.state(self.proc.pid)}"
        else:
            assert self.proc.wait(5) == -signal.SIGKILL, self.proc.returncode
            assert _pids_matching(self.marker) == [], _pids_matching(self.marker)

    def restored(self, journal: Path) -> None:
        if self.signal == "SIGSTOP":
            state = self.state(self.proc.pid)
            assert state in ("sleeping", "running"), f"pid {self.proc.pid} is {state}"
            return
        back = wait_for(lambda: _pids_matching(self.marker), 10, "the restarted victim")
        assert len(back) == 1 and back[0] != self.proc.pid, back

    def close(self) -> None:
        for pid in _pids_matching(self.marker):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.kill()
        self.proc.wait()


@dataclass
class AuthRig(Rig):
    """Two app replicas under the lab's own supervisor (it restarts whatever exits)."""

    pg: Postgres
    tmp: Path

    def __post_init__(self) -> None:
        self.secret = self.tmp / "jwt.secret"
        self.original = (secrets.token_hex(32) + "\n").encode()
        self.secret.write_bytes(self.original)
        self.secret.chmod(0o640)
        self.ports = [free_port(), free_port()]
        self.pidfiles = [self.tmp / f"api-{i}.pid" for i in range(2)]
        config = {
            "programs": [
                {
                    "name": f"api-{i}",
                    "pidfile": str(self.pidfiles[i]),
                    "log": str(self.tmp / f"api-{i}.log"),
                    "argv": [
                        sys.executable,
                        "-m",
                        "drillkit.lab.app",
                        "--port",
                        str(port),
                        "--dsn",
                        self.pg.dsn(),
                        "--jwt-secret-file",
                        str(self.secret),
                        "--replica",
                        f"api-{i}",
                    ],
                }
                for i, port in enumerate(self.ports)
            ],
            "backoff": 0.2,
        }
        (self.tmp / "supervise.json").write_text(json.dumps(config))
        self.supervisor = subprocess.Popen(
            [sys.executable, "-m", "drillkit.lab.supervise", "--config", str(self.tmp / "supervise.json")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.wait_serving()
        self.token = login(self.base(0))
        self.pids0 = self.pids()
        for i in range(2):
            assert http("GET", f"{self.base(i)}/conversations/alice", self.token) == 200

    def base(self, i: int) -> str:
        return f"http://127.0.0.1:{self.ports[i]}"

    def pids(self) -> list[int]:
        out = []
        for pf in self.pidfiles:
            with contextlib.suppress(OSError, ValueError):
                out.append(int(pf.read_text()))
        return out

    def wait_serving(self) -> None:
        wait_for(
            lambda: all(http("GET", f"{self.base(i)}/healthz") == 200 for i in range(2)), 30, "both replicas serving"
        )

    def fault(self) -> dict[str, Any]:
        return {
            "kind": "auth-secret-corruption",
            "secret_file": str(self.secret),
            "pidfiles": [str(p) for p in self.pidfiles],
            "back_within": "10s",
        }

    def backup(self, journal: Path) -> Path:
        return backup_of(self.secret.absolute(), run_id_of(journal))

    def harmed(self, journal: Path) -> None:
        assert self.secret.read_bytes() != self.original
        backup = self.backup(journal)
        assert backup.read_bytes() == self.original and stat.S_IMODE(backup.stat().st_mode) == 0o600
        assert self.original.strip().decode() not in journal.read_text(), "the secret leaked into the journal"
        assert latest_data(journal)["backup"] == str(backup)
        assert not backup.is_relative_to(self.secret.parent), f"the backup {backup} is in the lab, beside the secret"
        new = self.pids()
        assert len(new) == 2 and not set(new) & set(self.pids0), f"replicas not restarted: {self.pids0} -> {new}"
        self.wait_serving()
        codes = [http("GET", f"{self.base(i)}/conversations/alice", self.token) for i in range(2)]
        assert codes == [401, 401], f"old token still accepted after the corruption: {codes}"

    def restored(self, journal: Path) -> None:
        assert self.secret.read_bytes() == self.original, "secret not byte-identical to the original"
        assert stat.S_IMODE(self.secret.stat().st_mode) == 0o640
        assert not self.backup(journal).exists(), "backup not deleted"
        assert not list(self.tmp.glob(".jwt.secret.*")), list(self.tmp.glob(".jwt.secret.*"))
        self.wait_serving()
        codes = [http("GET", f"{self.base(i)}/conversations/alice", self.token) for i in range(2)]
        assert codes == [200, 200], f"old token rejected after the revert: {codes}"

    def close(self) -> None:
        self.supervisor.terminate()
        self.supervisor.wait(15)


@pytest.fixture(scope="module")
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Postgres]:
    server = start_postgres(tmp_path_factory.mktemp("pg"), free_port(), max_connections=MAX_CONNECTIONS)
    try:
        yield server
    finally:
        server.destroy()


@contextlib.contextmanager
def rig_for(name: str, pg: Postgres, tmp: Path, **kwargs: Any) -> Iterator[Rig]:
    factories: dict[str, Callable[..., Rig]] = {
        "db-connection-exhaustion": lambda: DbRig(pg, **kwargs),
        "memory-pressure": lambda: MemoryRig(pg, tmp, **kwargs),
        "cpu-pressure": lambda: CpuRig(tmp, **kwargs),
        "latency": lambda: LatencyRig(pg, tmp, **kwargs),
        "auth-secret-corruption": lambda: AuthRig(pg, tmp, **kwargs),
        "process-kill": lambda: ProcessRig(tmp, **kwargs),
        "process-stop": lambda: ProcessRig(tmp, signal="SIGSTOP", **kwargs),
    }
    rig = factories[name]()
    try:
        yield rig
    finally:
        rig.close()


# --- the Fault API: inject, evidence, revert, revert again ----------------------------------

CASES = [
    pytest.param("db-connection-exhaustion", {}, id="db-all-reserve-1"),
    pytest.param("memory-pressure", {}, id="memory-oom-kill"),
    pytest.param("memory-pressure", {"leak": False}, id="memory-limit-move-back"),
    pytest.param("cpu-pressure", {}, id="cpu"),
    pytest.param("cpu-pressure", {"in_cgroup": True}, id="cpu-in-target-cgroup"),
    pytest.param("latency", {}, id="latency-no-previous-file"),
    pytest.param("latency", {"previous": b'{"delay_ms": 0}  \n'}, id="latency-previous-file"),
    pytest.param("auth-secret-corruption", {}, id="auth-supervised-replicas"),
]


@pytest.mark.parametrize(("kind", "kwargs"), CASES)
def test_inject_harms_and_revert_restores_exactly(
    pg: Postgres, tmp_path: Path, kind: str, kwargs: dict[str, Any]
) -> None:
    with rig_for(kind, pg, tmp_path, **kwargs) as rig:
        drill = prepare(tmp_path, rig.fault())
        drill.preflight()
        assert drill.fault.plan(drill.found), "a plan names what will be done"
        with ExitStack() as stack:
            drill.inject(stack)
            data = drill.revert_data()
            rig.harmed(drill.path)
        assert pending_reverts(drill.path) == [], "revert did not complete"
        rig.restored(drill.path)
        first = drill.results()[0]
        # a second revert from the same data succeeds and leaves everything as it is
        again = drill.revert(data)
        rig.restored(drill.path)
        print(f"{kind}: first revert {first}; second {again}")


@pytest.mark.parametrize(
    ("kind", "kwargs"),
    [
        pytest.param("db-connection-exhaustion", {}, id="db"),
        pytest.param("memory-pressure", {"leak": False}, id="memory"),
        pytest.param("cpu-pressure", {}, id="cpu"),
        pytest.param("latency", {"previous": b'{"delay_ms": 5}'}, id="latency"),
        pytest.param("auth-secret-corruption", {}, id="auth"),
    ],
)
def test_revert_from_journal_in_a_fresh_process(
    pg: Postgres, tmp_path: Path, kind: str, kwargs: dict[str, Any]
) -> None:
    """As after a crash: nothing reverts in this process; `drillkit cleanup`'s steps do it."""
    with rig_for(kind, pg, tmp_path, **kwargs) as rig:
        drill = prepare(tmp_path, rig.fault())
        drill.preflight()
        with ExitStack() as stack:
            drill.inject(stack)
            rig.harmed(drill.path)
            stack.pop_all()  # the runner "crashed": its reverts never run here
        assert len(pending_reverts(drill.path)) == 1
        results = cleanup_in_fresh_process(drill)
        rig.restored(drill.path)
        print(f"{kind}: cleanup result {results}")


# --- a real `drillkit run`, interrupted --------------------------------------------------------


@pytest.mark.parametrize(
    "kind",
    [
        "db-connection-exhaustion",
        "memory-pressure",
        "cpu-pressure",
        "latency",
        "auth-secret-corruption",
        "process-kill",
        "process-stop",
    ],
)
def test_sigterm_during_fault_restores_the_system(prom_env: PromEnv, pg: Postgres, tmp_path: Path, kind: str) -> None:
    prom_env.ensure_exporter()
    prom_env.wait_up()
    with rig_for(kind, pg, tmp_path) as rig:
        path = write_scenario(tmp_path / "drill.yaml", scenario_dict(rig.fault()))
        reports = tmp_path / "reports"
        with drill_process("run", str(path), "--prometheus-url", prom_env.url, "--report-dir", str(reports)) as proc:

            def injected() -> Path | None:
                if proc.poll() is not None:
                    raise AssertionError(f"drillkit exited early with {proc.returncode}: {proc.communicate()}")
                found = list(reports.glob(f"*/{JOURNAL_NAME}")) if reports.exists() else []
                return found[0] if found and '"kind": "injected"' in found[0].read_text() else None

            journal = wait_for(injected, 90, "the injected event", interval=0.1)
            rig.harmed(journal)
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=90)
        assert proc.returncode == 130, f"exit {proc.returncode}\n{out}\n{err}"
        kinds = [e.kind for e in read_journal(journal)]
        assert "aborted" in kinds and "revert_done" in kinds and "revert_failed" not in kinds, kinds
        assert pending_reverts(journal) == []
        rig.restored(journal)


@pytest.mark.parametrize(
    "kind",
    [
        "db-connection-exhaustion",
        "memory-pressure",
        "cpu-pressure",
        "latency",
        "auth-secret-corruption",
        "process-kill",
        "process-stop",
    ],
)
def test_sigkilled_runner_then_drillkit_cleanup_restores(
    prom_env: PromEnv, pg: Postgres, tmp_path: Path, kind: str
) -> None:
    """The runner dies without reverting anything; the real `drillkit cleanup --run-id` finishes
    the job from the journal. (The connection holder does not even wait for it: it sees its
    owner gone and lets go by itself.)"""
    prom_env.ensure_exporter()
    prom_env.wait_up()
    with rig_for(kind, pg, tmp_path) as rig:
        path = write_scenario(tmp_path / "drill.yaml", scenario_dict(rig.fault()))
        reports = tmp_path / "reports"
        with drill_process(
            "run",
            str(path),
            "--prometheus-url",
            prom_env.url,
            "--report-dir",
            str(reports),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ) as proc:
            journal = wait_for_event(reports, "injected", 90)
            rig.harmed(journal)
            proc.kill()
            proc.wait()
        assert len(pending_reverts(journal)) == 1, "the revert is still owed in the journal"
        if kind == "db-connection-exhaustion":
            tag, data = f"drillkit-{run_id_of(journal)}-hold", latest_data(journal)
            wait_for(lambda: not [a for _, a in client_backends(pg) if a == tag], 5, "the holder to let go")
            wait_for(lambda: not alive(int(data["holder_pid"])), 5, "the holder to exit")
        r = run_cli("cleanup", "--run-id", run_id_of(journal), "--report-dir", str(reports), timeout=120)
        assert r.returncode == 0, f"cleanup exit {r.returncode}\n{r.stdout}\n{r.stderr}"
        kind = rig.fault()["kind"]
        assert f"revert {kind}" in r.stdout, r.stdout
        assert pending_reverts(journal) == []
        rig.restored(journal)
        again = run_cli("cleanup", "--run-id", run_id_of(journal), "--report-dir", str(reports), timeout=120)
        assert again.returncode == 0 and f"revert {kind}" not in again.stdout, again.stdout


# --- specific evidence and guardrails -------------------------------------------------------


def test_db_ordinary_role_is_refused_at_the_superuser_reserve(pg: Postgres, tmp_path: Path) -> None:
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS drill_app")
        conn.execute("CREATE ROLE drill_app LOGIN")
        reserved = int(conn.execute("SHOW superuser_reserved_connections").fetchone()[0])  # type: ignore[index]
    others = client_backends(pg)
    dsn = pg.dsn().replace("postgres@", "drill_app@")
    drill = prepare(tmp_path, {"kind": "db-connection-exhaustion", "dsn": dsn, "connections": "all"})
    drill.preflight()
    with ExitStack() as stack:
        drill.inject(stack)
        data = drill.revert_data()
        assert len(data["backend_pids"]) == MAX_CONNECTIONS - reserved - len(others), data
        assert "remaining connection slots are reserved" in data["refused"], data["refused"]
        with pytest.raises(psycopg.OperationalError, match="remaining connection slots are reserved"):
            psycopg.connect(dsn, autocommit=True).close()
        with psycopg.connect(pg.dsn(), autocommit=True) as su:  # the superuser still gets in
            assert su.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                (f"drillkit-{drill.ctx.run_id}-hold",),
            ).fetchone() == (len(data["backend_pids"]),)
    assert not [p for p, _ in client_backends(pg) if p in data["backend_pids"]]


def test_db_password_comes_from_the_environment_and_is_never_recorded(
    pg: Postgres, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A role that must authenticate (scram): the password reaches libpq through password_env
    (and PGPASSWORD for the holder), never the journal or a command line."""
    password = f"pw-{secrets.token_hex(8)}"
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS drill_pw")
        conn.execute(f"CREATE ROLE drill_pw LOGIN PASSWORD '{password}'")
        hba = Path(conn.execute("SHOW hba_file").fetchone()[0])  # type: ignore[index]
        if "drill_pw" not in hba.read_text():
            hba.write_text("host all drill_pw 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
            conn.execute("SELECT pg_reload_conf()")
    dsn = pg.dsn().replace("postgres@", "drill_pw@")
    wait_for(lambda: _refused_without_password(dsn), 5, "scram to be required")
    monkeypatch.setenv("DRILL_PG_PASSWORD", password)
    drill = prepare(
        tmp_path,
        {"kind": "db-connection-exhaustion", "dsn": dsn, "connections": 2, "password_env": "DRILL_PG_PASSWORD"},
    )
    drill.preflight()
    with ExitStack() as stack:
        drill.inject(stack)
        data = drill.revert_data()
        assert len(data["backend_pids"]) == 2
        assert password not in cmdline(int(data["holder_pid"]))
    assert not [p for p, _ in client_backends(pg) if p in data["backend_pids"]]
    assert password not in drill.path.read_text(), "the password leaked into the journal"


def _refused_without_password(dsn: str) -> bool:
    try:
        psycopg.connect(dsn, autocommit=True).close()
    except psycopg.OperationalError as exc:
        return "password" in str(exc)
    return False


def test_db_count_beyond_free_slots_is_a_preflight_error(pg: Postgres, tmp_path: Path) -> None:
    drill = prepare(tmp_path, {"kind": "db-connection-exhaustion", "dsn": pg.dsn(), "connections": 500})
    with pytest.raises(PreflightError, match="500 connections requested but only"):
        drill.preflight()


def test_db_dsn_with_a_password_is_refused_at_load(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="must not contain a password"):
        prepare(tmp_path, {"kind": "db-connection-exhaustion", "dsn": "postgresql://u:hunter2@h/db"})


def test_db_revert_terminates_backends_whose_client_is_not_ours(pg: Postgres, tmp_path: Path) -> None:
    """Backends of the run that no holder process explains (e.g. a holder in another pid
    namespace): the revert ends them with pg_terminate_backend through the DSN."""
    drill = prepare(tmp_path, {"kind": "db-connection-exhaustion", "dsn": pg.dsn(), "connections": 2})
    tag = f"drillkit-{drill.ctx.run_id}-hold"
    stray = [psycopg.connect(pg.dsn(), autocommit=True, application_name=tag) for _ in range(2)]
    try:
        pids = [c.info.backend_pid for c in stray]
        data = {
            "dsn": pg.dsn(),
            "password_env": None,
            "application_name": tag,
            "holder_pid": None,
            "backend_pids": pids,
            "status_file": None,
        }
        result = drill.revert(data)
        assert sorted(result["terminated"]) == sorted(pids), result
        assert not [p for p, _ in client_backends(pg) if p in pids]
        with pytest.raises(psycopg.OperationalError):
            stray[0].execute("SELECT 1")
    finally:
        for c in stray:
            c.close()


def test_memory_pressure_without_writable_cgroup_is_a_clear_preflight_error(tmp_path: Path) -> None:
    """For an unprivileged user the memory cgroups are read-only: preflight says so and touches
    nothing. (A child process drops to `nobody` after importing drillkit, then runs preflight.)"""
    if os.geteuid() != 0:
        pytest.skip("needs root to drop to another user")
    arg = f"600.{secrets.randbelow(10**6)}"
    victim = subprocess.Popen(["sleep", arg], user="nobody")
    code = (
        "import os, sys; from pathlib import Path\n"
        "import psutil  # imported lazily by drillkit; this interpreter lives where nobody cannot read\n"
        "from tests.test_lab_faults import prepare\n"
        "from drillkit.errors import PreflightError\n"
        "d = prepare(Path(sys.argv[1]), {'kind': 'memory-pressure', 'pattern': sys.argv[2], 'limit': '64Mi'})\n"
        "print(d.ctx.run_id)\n"
        "os.setgid(65534); os.setuid(65534)\n"
        "try:\n    d.fault.preflight()\nexcept PreflightError as e:\n    print(e); sys.exit(0)\n"
        "sys.exit('no PreflightError')\n"
    )
    try:
        r = subprocess.run(
            [sys.executable, "-c", code, str(tmp_path), f"^sleep {arg}$"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent.parent,
            timeout=60,
        )
    finally:
        victim.kill()
        victim.wait()
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr}"
    assert "memory-pressure: no writable memory cgroup (cgroup v" in r.stdout, r.stdout
    print(r.stdout)
    run_id = r.stdout.split()[0]
    assert not list(Path("/sys/fs/cgroup").glob(f"**/drillkit-{run_id}")), "preflight created a cgroup"


def test_cpu_pressure_without_stress_ng_names_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    drill = prepare(tmp_path, {"kind": "cpu-pressure", "workers": 1})
    monkeypatch.setenv("PATH", str(tmp_path))  # a host without stress-ng on its PATH
    with pytest.raises(PreflightError, match="apt-get install stress-ng"):
        drill.preflight()


def test_latency_preflight_needs_a_listening_proxy_and_a_directory(tmp_path: Path) -> None:
    port = free_port()
    drill = prepare(
        tmp_path, {"kind": "latency", "control": str(tmp_path / "latency.json"), "delay": "100ms", "proxy_port": port}
    )
    with pytest.raises(PreflightError, match=f"no proxy listening on 127.0.0.1:{port}"):
        drill.preflight()
    drill = prepare(
        tmp_path,
        {"kind": "latency", "control": str(tmp_path / "nope" / "latency.json"), "delay": "100ms", "proxy_port": port},
    )
    with pytest.raises(PreflightError, match="does not exist"):
        drill.preflight()
    assert not (tmp_path / "latency.json").exists()


def test_auth_restart_command_brings_back_an_unsupervised_replica(pg: Postgres, tmp_path: Path) -> None:
    secret = tmp_path / "jwt.secret"
    original = secrets.token_hex(32).encode()
    secret.write_bytes(original)
    port, replica = free_port(), f"solo-{secrets.token_hex(3)}"
    argv = [
        sys.executable,
        "-m",
        "drillkit.lab.app",
        "--port",
        str(port),
        "--dsn",
        pg.dsn(),
        "--jwt-secret-file",
        str(secret),
        "--replica",
        replica,
    ]
    first = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: http("GET", f"{base}/healthz") == 200, 20, "the app")
        token = login(base)
        drill = prepare(
            tmp_path,
            {
                "kind": "auth-secret-corruption",
                "secret_file": str(secret),
                "pattern": f"--replica {replica}$",
                "restart": argv,
                "back_within": "500ms",
                "restart_log": str(tmp_path / "restarted.log"),
            },
        )
        drill.preflight()
        with ExitStack() as stack:
            drill.inject(stack)
            assert first.wait(10) == 0, "SIGTERM should stop the replica cleanly"
            restarted = latest_data(drill.path)["restarted"]
            assert len(restarted) == 1 and alive(restarted[0]), restarted
            wait_for(lambda: http("GET", f"{base}/healthz") == 200, 20, "the restarted app")
            assert http("GET", f"{base}/conversations/alice", token) == 401
        result = drill.results()[0]
        assert result["restored"] and len(result["restarted"]) == 1, result
        assert secret.read_bytes() == original
        wait_for(lambda: http("GET", f"{base}/healthz") == 200, 20, "the app after the revert")
        assert http("GET", f"{base}/conversations/alice", token) == 200
    finally:
        for pid in [first.pid, *(int(p) for p in _pids_matching(f"--replica {replica}"))]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        first.wait()


def _pids_matching(text: str) -> list[int]:
    return [int(d.name) for d in Path("/proc").iterdir() if d.name.isdigit() and text in cmdline(int(d.name))]


def test_auth_guardrail_refuses_restarting_more_replicas_than_allowed(pg: Postgres, tmp_path: Path) -> None:
    rig = AuthRig(pg, tmp_path)
    try:
        raw = scenario_dict(rig.fault())
        raw["guardrails"]["max_targets"] = "50%"
        path = write_scenario(tmp_path / "narrow.yaml", raw)
        sc = load_scenario(path)
        journal = Journal(tmp_path / "j" / JOURNAL_NAME)
        ctx = FaultContext(run_id="guard", scenario=sc, journal=journal, stop=StopFlag())
        fault = fault_class("auth-secret-corruption", "local")(sc.faults[0].params, ctx)
        with pytest.raises(
            PreflightError,
            match=r"2 of 2 replica\(s\) matching .* exceed the blast radius "
            r"guardrails.max_targets = 50% \(at most 1\)",
        ):
            fault.preflight()
        assert rig.secret.read_bytes() == rig.original
    finally:
        rig.close()


# --- signals a process ignores, crashes mid-inject, a stop during a restart wait --------------

# A process that ignores (or, for SIGHUP, "reloads" on) the signals process-kill may send
# other than SIGKILL/SIGSTOP; it says when its handlers are in place.
STUBBORN = (
    "import signal, sys, time\n"
    "for s in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT): signal.signal(s, signal.SIG_IGN)\n"
    "signal.signal(signal.SIGHUP, lambda *_: print('reloaded', flush=True))\n"
    "open(sys.argv[1], 'w').close()\n"
    "time.sleep(600)\n"
)


@contextlib.contextmanager
def stubborn(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], list[str], str]]:
    """A running STUBBORN process, its argv (also the restart command) and a unique marker."""
    marker = f"stubborn-{secrets.token_hex(4)}"
    ready = tmp_path / f"{marker}.ready"
    argv = [sys.executable, "-c", STUBBORN, str(ready), marker]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(ready.exists, 10, "the stubborn process's handlers")
        yield proc, argv, marker
    finally:
        for pid in _pids_matching(marker):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGHUP", "SIGINT", "SIGQUIT"])
def test_process_kill_revert_counts_a_process_that_survived_the_signal_as_back(tmp_path: Path, sig: str) -> None:
    """The process ignored the signal (or reloaded): it keeps its pid and is still there, so the
    revert must not start `restart` next to it."""
    with stubborn(tmp_path) as (proc, argv, marker):
        drill = prepare(
            tmp_path,
            {
                "kind": "process-kill",
                "pattern": f"{marker}$",
                "signal": sig,
                "restart": argv,
                "back_within": "300ms",
                "restart_log": str(tmp_path / "restarted.log"),
            },
        )
        drill.preflight()
        with ExitStack() as stack:
            drill.inject(stack)
            assert latest_data(drill.path)["killed"] == [proc.pid]
        time.sleep(0.5)  # a duplicate, had one been started, is exec'd by now
        result = drill.results()[0]
        assert proc.poll() is None, "the stubborn process died"
        assert result["restarted"] == [] and result["survived"] == [proc.pid], result
        assert _pids_matching(marker) == [proc.pid], f"a duplicate was started: {_pids_matching(marker)}"


def test_process_kill_blast_radius(tmp_path: Path) -> None:
    """guardrails.max_targets: a percentage allows at least the one match; 2 of 2 exceed 50%."""
    marker = f"blast-{secrets.token_hex(4)}"
    argv = [sys.executable, "-c", "import time; time.sleep(600)", marker]
    procs = [subprocess.Popen(argv) for _ in range(2)]
    try:
        wait_for(lambda: len(_pids_matching(marker)) == 2, 10, "both sleeps")
        single = prepare(tmp_path, {"kind": "process-kill", "pattern": f"{marker}$", "count": 1}, max_targets="50%")
        procs[1].kill()
        procs[1].wait()
        assert single.preflight().pids == (procs[0].pid,)
        procs[1] = subprocess.Popen(argv)
        wait_for(lambda: len(_pids_matching(marker)) == 2, 10, "both sleeps")
        both = prepare(tmp_path, {"kind": "process-kill", "pattern": f"{marker}$", "count": "100%"}, max_targets="50%")
        with pytest.raises(
            PreflightError,
            match=r"process-kill: 2 of 2 process\(es\) matching pattern .* exceed "
            r"the blast radius guardrails.max_targets = 50% \(at most 1\)",
        ):
            both.preflight()
        three = prepare(tmp_path, {"kind": "process-kill", "pattern": f"{marker}$", "count": 3})
        with pytest.raises(PreflightError, match=r"process-kill: count 3 but only 2 process\(es\) matching"):
            three.preflight()
        assert all(p.poll() is None for p in procs), "preflight touched a process"
    finally:
        for p in procs:
            p.kill()
            p.wait()


def test_cpu_pressure_revert_finds_stress_ng_whose_group_was_never_journalled(tmp_path: Path) -> None:
    """A crash between starting stress-ng and journalling its group leaves the revert data as
    registered (pgid null): the revert must still find and stop it, not leave it burning CPU
    until its --timeout."""
    drill = prepare(tmp_path, {"kind": "cpu-pressure", "workers": 1, "duration": "5m"})
    drill.preflight()
    with ExitStack() as stack:
        drill.inject(stack)
        stack.pop_all()  # the runner "crashed": its reverts never run here
    registered = next(e.data["data"] for e in read_journal(drill.path) if e.kind == "revert_registered")
    pgid = int(latest_data(drill.path)["pgid"])
    try:
        assert registered["pgid"] is None
        assert [p for p in group_members(pgid) if "stress-ng" in cmdline(p)], "stress-ng not running"
        result = drill.revert(registered)
        assert group_members(pgid) == [], f"stress-ng group {pgid} left running: {group_members(pgid)}"
        assert pgid in result["signalled"], result
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)


def test_auth_inject_stops_waiting_for_replicas_when_the_drill_is_stopped(tmp_path: Path) -> None:
    """Stopped (SIGTERM to drillkit) while waiting for a replica that ignores SIGTERM: the inject
    gives up at once instead of waiting out the SIGTERM grace and back_within (~40 s here), and
    the revert restores the secret without starting a duplicate of the replica still running."""
    secret = tmp_path / "jwt.secret"
    original = secrets.token_hex(32).encode()
    secret.write_bytes(original)
    with stubborn(tmp_path) as (proc, argv, marker):
        drill = prepare(
            tmp_path,
            {
                "kind": "auth-secret-corruption",
                "secret_file": str(secret),
                "pattern": f"{marker}$",
                "restart": argv,
                "back_within": "30s",
                "restart_log": str(tmp_path / "restarted.log"),
            },
        )
        drill.preflight()

        def stop_once_signalled() -> None:
            wait_for(lambda: latest_data(drill.path).get("killed"), 10, "the replica to be signalled")
            time.sleep(0.3)
            drill.ctx.stop.set("test: stop requested")

        stopper = threading.Thread(target=stop_once_signalled, daemon=True)
        stopper.start()
        t0 = time.monotonic()
        with pytest.raises(Aborted), ExitStack() as stack:
            drill.inject(stack)
        took = time.monotonic() - t0
        stopper.join(5)
        assert took < 4, f"inject took {took:.1f}s after the stop request"
        time.sleep(0.5)  # a duplicate, had one been started, is exec'd by now
        result = drill.results()[0]
        assert result["restored"] and result["restarted"] == [] and result["survived"] == [proc.pid], result
        assert secret.read_bytes() == original
        assert not list(tmp_path.glob(".jwt.secret.*"))
        assert proc.poll() is None
        assert _pids_matching(marker) == [proc.pid], f"a duplicate was started: {_pids_matching(marker)}"
