"""A Job's pod run for real: the kubelet's part KWOK does not play.

KWOK marks a pod Running once it is scheduled on a KWOK node, but runs nothing. For the pods of
Jobs (drillkit's db-connection-exhaustion client), this runner does what a kubelet would: it
runs the pod's real container command (`sh -c <script>`, with the real psql) on this machine as
the container's user, in a private mount namespace with its own /tmp (the container's
filesystem), with the pod's env resolved as the kubelet resolves it (`value`, and
`valueFrom.secretKeyRef` read from the real Secret). Service names are routed like cluster DNS
and kube-proxy would: an env value naming a routed Service becomes the local address, its port
the local port (`routes`). The output goes, in the CRI log format, to the file KWOK serves as
the container's log (ClusterLogs in controlplane.py), and the exit sets the pod's phase
Succeeded/Failed with the real exit code through the status subresource, so the Job controller
finishes the Job. A pod deleted (the Job deleted, or its activeDeadlineSeconds passed) has its
process group killed, as the kubelet kills the container.
"""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

import pytest

from .cluster import RealCluster
from .controlplane import JOB_LOG_CONTAINERS

CONTAINER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
"""A container's PATH (the image's, not this test process's)."""


@dataclass(frozen=True)
class Route:
    """Where a Service's name and port lead from this machine."""

    host: str
    ports: dict[int, int]  # service port -> local port


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Running:
    proc: subprocess.Popen[bytes]
    started: str
    threads: list[threading.Thread] = field(default_factory=list)
    log: IO[str] | None = None


class JobRunner:
    """Runs each Job pod's first container for real while started (see the module docstring)."""

    def __init__(self, cluster: RealCluster, routes: dict[str, Route]) -> None:
        self.cluster = cluster
        self.routes = routes
        self.logs = cluster.plane.job_logs
        self._running: dict[str, Running] = {}
        self._done: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="job-runner", daemon=True)
        self.errors: list[str] = []

    def start(self) -> JobRunner:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        for uid in list(self._running):
            self._kill(uid)
        for container in JOB_LOG_CONTAINERS:  # the next test's Job pods start with empty logs
            (self.logs / f"{container}.log").write_text("")

    # -------------------------------------------------------------------- the loop
    def _loop(self) -> None:
        while not self._stop.wait(0.2):
            try:
                self._tick()
            except Exception as exc:
                self.errors.append(f"{type(exc).__name__}: {exc}")

    def _tick(self) -> None:
        pods = {p["metadata"]["uid"]: p for p in self.cluster.list("pods")}
        for uid in list(self._running):
            pod = pods.get(uid)
            if pod is None or pod["metadata"].get("deletionTimestamp"):
                self._kill(uid)
            elif self._running[uid].proc.poll() is not None:
                self._finish(pod, self._running.pop(uid))
        for uid, pod in pods.items():
            if uid in self._running or uid in self._done or not _runnable(pod):
                continue
            self._done.add(uid)
            self._running[uid] = self._run(pod)

    def _run(self, pod: dict[str, Any]) -> Running:
        ns, spec = pod["metadata"]["namespace"], pod["spec"]
        container = spec["containers"][0]
        command = [*(container.get("command") or []), *(container.get("args") or [])]
        env = {"PATH": CONTAINER_PATH, "HOME": "/tmp"}
        env.update(self._env(ns, container.get("env") or []))
        user = (container.get("securityContext") or {}).get("runAsUser") or (spec.get("securityContext") or {}).get(
            "runAsUser"
        )
        drop = f"setpriv --reuid={int(user)} --regid={int(user)} --clear-groups -- " if user is not None else ""
        wrapper = f'mount -t tmpfs tmpfs /tmp && exec {drop}"$@"'
        proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", wrapper, "container", *command],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        if container["name"] not in JOB_LOG_CONTAINERS:
            raise AssertionError(f"KWOK serves no log for container {container['name']!r}: see JOB_LOG_CONTAINERS")
        log = open(self.logs / f"{container['name']}.log", "w", encoding="utf-8")  # noqa: SIM115
        lock = threading.Lock()
        threads = [
            threading.Thread(target=_copy, args=(stream, name, log, lock), daemon=True)
            for stream, name in ((proc.stdout, "stdout"), (proc.stderr, "stderr"))
        ]
        for t in threads:
            t.start()
        return Running(proc, _now(), threads, log)

    def _env(self, ns: str, env: list[dict[str, Any]]) -> dict[str, str]:
        out: dict[str, str] = {}
        for e in env:
            if "value" in e:
                value = str(e["value"])
            elif ref := (e.get("valueFrom") or {}).get("secretKeyRef"):
                secret = self.cluster.get("secrets", ns, ref["name"])
                data = (secret or {}).get("data") or {}
                if ref["key"] not in data:
                    continue  # the kubelet would not start the container; the test shows why
                value = base64.b64decode(data[ref["key"]]).decode()
            else:
                continue
            out[e["name"]] = value
        for name, value in list(out.items()):
            host = value.split(".")[0]
            if host in self.routes and (value == host or value.startswith(f"{host}.{ns}.")):
                out[name] = self.routes[host].host
        ports = {str(k): str(v) for r in self.routes.values() for k, v in r.ports.items()}
        for name, value in list(out.items()):
            if name.endswith("PORT") and value in ports:
                out[name] = ports[value]
        return out

    def _finish(self, pod: dict[str, Any], run: Running) -> None:
        for t in run.threads:
            t.join(5)
        if run.log is not None:
            run.log.close()
        code = run.proc.returncode
        code = 128 - code if code < 0 else code  # killed by a signal: as the kubelet reports it
        finished = _now()

        def terminated(p: dict[str, Any]) -> None:
            status = p["status"]
            status["phase"] = "Succeeded" if code == 0 else "Failed"
            for c in status.get("conditions") or []:
                if c["type"] in ("Ready", "ContainersReady"):
                    c["status"], c["lastTransitionTime"] = "False", finished
            for c in status.get("containerStatuses") or []:
                c["ready"] = False
                c["started"] = False
                c["state"] = {
                    "terminated": {
                        "exitCode": code,
                        "reason": "Completed" if code == 0 else "Error",
                        "startedAt": run.started,
                        "finishedAt": finished,
                    }
                }

        with contextlib.suppress(Exception):  # deleted meanwhile: nothing to report to
            self.cluster.update("pods", pod["metadata"]["namespace"], pod["metadata"]["name"], terminated)

    def _kill(self, uid: str) -> None:
        run = self._running.pop(uid, None)
        if run is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run.proc.pid, signal.SIGKILL)
        run.proc.wait(10)
        for t in run.threads:
            t.join(5)
        if run.log is not None:
            run.log.close()


def _runnable(pod: dict[str, Any]) -> bool:
    """A Job's pod KWOK has started (Running) and not yet deleted."""
    meta, status = pod["metadata"], pod.get("status") or {}
    owned = any(r.get("kind") == "Job" for r in meta.get("ownerReferences") or [])
    return owned and not meta.get("deletionTimestamp") and status.get("phase") == "Running"


def _copy(stream: IO[bytes] | None, name: str, log: IO[str], lock: threading.Lock) -> None:
    """Lines of a container's stdout/stderr into the CRI log file KWOK reads."""
    assert stream is not None
    for raw in iter(stream.readline, b""):
        line = raw.decode(errors="replace").rstrip("\n")
        with lock, contextlib.suppress(ValueError):  # closed: the container had ended (a child lives on)
            log.write(f"{_now()} {name} F {line}\n")
            log.flush()
    stream.close()


# -------------------------------------------------------------------------- fixtures
DB_USER, DB_PASSWORD = "chatbot", "chatbot-demo-password"  # demo.yaml's chatbot-db-credentials
DB_SLOTS = 7
"""Connections PostgreSQL accepts from the chatbot user: max_connections 10 less the 3
reserved for superusers (a database with few free slots)."""


@pytest.fixture(scope="session")
def chatbot_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real PostgreSQL standing for the demo's chatbot-db: max_connections 10, the chatbot role
    with demo.yaml's password, password authentication over TCP (the superuser keeps trust)."""
    import psycopg

    from tests.pgutil import free_port, start_postgres

    pg = start_postgres(tmp_path_factory.mktemp("chatbot-db"), free_port(), max_connections=DB_SLOTS + 3)
    try:
        (pg.datadir / "pg_hba.conf").write_text(
            "local all all trust\nhost all postgres 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n"
        )
        with psycopg.connect(pg.dsn(), autocommit=True) as conn:
            conn.execute(f"CREATE ROLE {DB_USER} LOGIN PASSWORD '{DB_PASSWORD}'")
            conn.execute(f"CREATE DATABASE {DB_USER} OWNER {DB_USER}")  # as the postgres image does
            conn.execute("SELECT pg_reload_conf()")
        yield pg
    finally:
        pg.destroy()


@pytest.fixture
def db_jobs(kube_server: RealCluster, chatbot_postgres: Any) -> Iterator[JobRunner]:
    """Job pods run for real, the Service chatbot-db routed to `chatbot_postgres`."""
    runner = JobRunner(kube_server, {"chatbot-db": Route("127.0.0.1", {5432: chatbot_postgres.port})}).start()
    try:
        yield runner
    finally:
        runner.stop()
    assert not runner.errors, f"the job runner failed: {runner.errors}"


def held_by(pg: Any, application: str) -> int:
    """Connections PostgreSQL holds now for `application` (pg_stat_activity)."""
    import psycopg

    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (application,)
        ).fetchone()
    return int(row[0]) if row else 0
