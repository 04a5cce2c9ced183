"""The runner of a database drill never imports psycopg (structure, not memory: the numbers are
in benchmarks/): the shipped lab drill's fault goes through preflight, plan, inject and revert in
a fresh interpreter against a real PostgreSQL — plainly and disguised for a blind exercise —
and psycopg is not in its `sys.modules` at the end, while the server really was exhausted and
really was released. Its helpers' answers keep drillkit's error classification, and a stop
request cuts a helper's wait short."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from drillkit.errors import Aborted, PreflightError
from drillkit.faults import FaultContext, fault_class
from drillkit.journal import JOURNAL_NAME, Journal
from drillkit.scenario import load_scenario
from drillkit.signals import StopFlag
from tests.helpers import write_scenario
from tests.pgutil import Postgres, free_port, start_postgres

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "scenarios" / "lab" / "database-exhaustion.yaml"

# preflight → plan → inject → revert (the ExitStack unwinding), as the engine does them
DRILL = """
import json, sys
from contextlib import ExitStack
from pathlib import Path
from drillkit.faults import FaultContext, Undo, fault_class
from drillkit.journal import JOURNAL_NAME, Journal, read_journal
from drillkit.scenario import load_scenario
from drillkit.signals import StopFlag

sc = load_scenario(Path(sys.argv[1]))
journal = Journal(Path(sys.argv[2]) / JOURNAL_NAME)
journal.append("started", run_id="r" + sys.argv[3])
ctx = FaultContext(run_id=sys.argv[3], scenario=sc, journal=journal, stop=StopFlag(), log=print)
spec = sc.faults[0]
fault = fault_class(spec.kind, "local")(spec.params, ctx)
found = fault.preflight()
plan = fault.plan(found)
with ExitStack() as stack:
    fault.inject(found, Undo(stack, ctx))
    print("HOLDING", flush=True)
    sys.stdin.readline()  # the test looks at the server meanwhile
journal.close()
results = [e.data["result"] for e in read_journal(journal.path) if e.kind == "revert_done"]
print(json.dumps({"psycopg": sorted(m for m in sys.modules if m.split(".")[0] == "psycopg"),
                  "plan": plan, "results": results}))
"""


@pytest.fixture(scope="module")
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Postgres]:
    server = start_postgres(tmp_path_factory.mktemp("pg"), free_port(), max_connections=12)
    try:
        yield server
    finally:
        server.destroy()


def shipped_drill(tmp_path: Path, dsn: str, **params: Any) -> Path:
    data = yaml.safe_load(SHIPPED.read_text().replace("${lab.dir}", str(tmp_path / "lab")))
    data["faults"][0] |= {"dsn": dsn, **params}
    return write_scenario(tmp_path / "database-exhaustion.yaml", data)


def backends(pg: Postgres) -> list[str]:
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT application_name FROM pg_stat_activity"
            " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
        ).fetchall()
    return [r[0] for r in rows]


@pytest.mark.parametrize("params", [{}, {"process_name": "chatbot-batch", "application_name": "chatbot-batch"}])
def test_a_database_drills_runner_never_imports_psycopg(pg: Postgres, tmp_path: Path, params: dict[str, str]) -> None:
    path = shipped_drill(tmp_path, pg.dsn(), reserve=1, **params)
    run_id = f"{time.time_ns() % 10**8:08x}"
    proc = subprocess.Popen(
        [sys.executable, "-c", DRILL, str(path), str(tmp_path), run_id],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        lines = []
        while not lines or lines[-1] != "HOLDING":
            line = proc.stdout.readline()
            assert line, f"the drill ended before holding:\n{''.join(lines)}\n{proc.stderr.read()}"  # type: ignore[union-attr]
            lines.append(line.strip())
        tag = params.get("application_name", f"drillkit-{run_id}-hold")
        held = backends(pg).count(tag)  # takes the slot the holder handed back (reserve: 1)…
        with psycopg.connect(pg.dsn(), autocommit=True), pytest.raises(psycopg.OperationalError, match="too many"):
            psycopg.connect(pg.dsn(), autocommit=True).close()  # …so with it taken, none is left
        out, err = proc.communicate("\n", timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    report = json.loads(out.splitlines()[-1])
    assert report["psycopg"] == [], f"the runner imported {report['psycopg']}"
    assert held >= 8, f"only {held} connections held by {tag}"
    assert tag not in backends(pg), "the revert left the holder's backends"
    (result,) = report["results"]
    assert result["remaining"] == [] and result["holder_stopped"], result
    assert "max_connections 12" in report["plan"][0], report["plan"]
    if params:  # the disguised helpers left no scratch behind either
        assert not list(Path(tempfile_dir()).glob(f"*{run_id}*"))


def tempfile_dir() -> str:
    import tempfile

    return tempfile.gettempdir()


def fault_for(tmp_path: Path, dsn: str, stop: StopFlag | None = None, **params: Any) -> Any:
    sc = load_scenario(shipped_drill(tmp_path, dsn, **params))
    journal = Journal(tmp_path / "run" / JOURNAL_NAME)
    journal.append("started", run_id="r")
    ctx = FaultContext(run_id="t1", scenario=sc, journal=journal, stop=stop or StopFlag(), log=print)
    spec = sc.faults[0]
    return fault_class(spec.kind, "local")(spec.params, ctx), journal


def test_preflight_reads_the_slots_through_the_helper(pg: Postgres, tmp_path: Path) -> None:
    fault, journal = fault_for(tmp_path, pg.dsn())
    try:
        found = fault.preflight()
    finally:
        journal.close()
    assert (found.max_connections, found.superuser) == (12, True), found
    assert found.in_use == len(backends(pg)), found


@pytest.mark.parametrize(
    ("dsn", "message"),
    [
        ("postgresql://nobody@127.0.0.1:{port}/postgres", 'role "nobody" does not exist'),
        ("postgresql://postgres@127.0.0.1:{port}/nosuchdb", 'database "nosuchdb" does not exist'),
    ],
)
def test_a_final_database_error_is_not_retried(pg: Postgres, tmp_path: Path, dsn: str, message: str) -> None:
    fault, journal = fault_for(tmp_path, dsn.format(port=pg.port))
    started = time.monotonic()
    try:
        with pytest.raises(PreflightError, match=f"cannot use the database: database: preflight: .*{message}"):
            fault.preflight()
    finally:
        journal.close()
    assert time.monotonic() - started < 5, "a final error was retried"


def test_connection_refused_is_transient_and_retried(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    fault, journal = fault_for(tmp_path, f"postgresql://postgres@127.0.0.1:{free_port()}/postgres")
    try:
        with pytest.raises(PreflightError, match=r"database: preflight: .*(refused|failed)"):
            fault.preflight()
    finally:
        journal.close()
    retries = [r.getMessage() for r in caplog.records if "attempt" in r.getMessage()]
    assert len(retries) == 2 and all("database: preflight: attempt" in m for m in retries), retries


def test_a_stop_request_cuts_a_helpers_wait_short(tmp_path: Path) -> None:
    """A server that accepts TCP and never answers keeps libpq waiting its connect_timeout (30 s
    here); the runner waits in its own loop, so the drill's stop ends it at once."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        stop = StopFlag()
        fault, journal = fault_for(
            tmp_path, f"postgresql://postgres@127.0.0.1:{port}/postgres", stop, connect_timeout="30s"
        )
        threading.Timer(1.0, stop.set, ("received SIGINT",)).start()
        started = time.monotonic()
        try:
            with pytest.raises(Aborted):
                fault.preflight()
        finally:
            journal.close()
        took = time.monotonic() - started
    assert 0.9 < took < 5, f"the stop took {took:.1f}s to end the wait"
