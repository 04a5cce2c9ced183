"""db-connection-exhaustion: a Job holding N idle connections to the database Service.

Why it exists apart: its harm runs inside the cluster, in a Job drillkit creates and deletes,
with a dead man's switch (activeDeadlineSeconds) that ends it even if drillkit dies. The client
image is the database's own, and the credentials reach it by secretKeyRef: drillkit never reads
them. The harm is proved, not assumed: the Job's script counts the connections still open after
the connect timeout and logs `drillkit: holding N of M connections`, which inject reads; zero
held (a NetworkPolicy, a wrong DSN or password) fails the fault. The pod runs with a
`restricted`-compatible securityContext (non-root uid 999, the postgres/mysql images' user).
In a blind exercise the Job, its script, env and log use a batch job's words (`blind`).
"""

from __future__ import annotations

import contextlib
import re
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar

from drillkit.errors import Aborted, DrillkitError, PreflightError
from drillkit.faults import Made, RevertContext, Undo
from drillkit.faults.kube.base import KubeFault, note
from drillkit.kube import RUN_LABEL, Conflict, ObjRef
from drillkit.model import Duration, doc
from drillkit.signals import wait_until


class DbEngine(StrEnum):
    POSTGRESQL = "postgresql"
    MYSQL = "mysql"


@dataclass(frozen=True)
class DbConnectionParams:
    service: str = doc("Service of the database, e.g. chatbot-db")
    secret: str = doc("Secret with the database credentials (referenced, never read by drillkit)")
    engine: DbEngine = doc("postgresql or mysql", default=DbEngine.POSTGRESQL)
    port: int | None = doc("database port (default: the Service's first port)", default=None)
    connections: int = doc("idle connections to open and hold", default=100)
    user_key: str = doc("key of the user name in the Secret", default="username")
    password_key: str = doc("key of the password in the Secret", default="password")
    database: str | None = doc("database name (default: the client's default)", default=None)
    image: str | None = doc("client image (default: postgres:16 or mysql:8)", default=None)
    deadline: Duration | None = doc(
        "dead-man's switch: activeDeadlineSeconds of the Job (default: recovery.within + 2m)", default=None
    )
    wait: Duration = doc("how long to wait for the Job's pod to run (0: don't wait)", default=120.0)
    namespace: str | None = doc("namespace (default: the scenario's target namespace)", default=None)

    def __post_init__(self) -> None:
        if not 1 <= self.connections <= 10_000:
            raise ValueError("connections: expected 1..10000")
        if self.port is not None and not 0 < self.port < 65536:
            raise ValueError("port: expected 1..65535")


SETTLE = 15
"""Seconds the Job waits after opening its connections before counting those still open (the
clients' connect timeout is 10 s)."""
# Each client is the last command of a pipeline fed by `sleep` (its stdin stays open for the
# hold); the failure is recorded inside the pipeline's own group, so a refused connection is
# counted at once, not when the whole pipeline (the sleep) ends.
_COUNT = (
    f"sleep {SETTLE}; f=$(wc -l < /tmp/drillkit-failed); "
    'echo "drillkit: holding $((DRILLKIT_CONNECTIONS - f)) of $DRILLKIT_CONNECTIONS connections"; '
    'if [ "$f" -gt 0 ]; then head -n 3 /tmp/drillkit-errors; fi; wait'
)
_PG_SCRIPT = (
    ": > /tmp/drillkit-failed; : > /tmp/drillkit-errors; "
    'n=0; while [ "$n" -lt "$DRILLKIT_CONNECTIONS" ]; do '
    '(sleep "$DRILLKIT_HOLD" | { psql -q -v ON_ERROR_STOP=1 >/dev/null 2>>/tmp/drillkit-errors '
    "|| echo $n >> /tmp/drillkit-failed; }) & n=$((n+1)); done; " + _COUNT
)
_MYSQL_SCRIPT = (
    ": > /tmp/drillkit-failed; : > /tmp/drillkit-errors; "
    'n=0; while [ "$n" -lt "$DRILLKIT_CONNECTIONS" ]; do '
    '(sleep "$DRILLKIT_HOLD" | { mysql -h "$DRILLKIT_HOST" -P "$DRILLKIT_PORT" '
    '-u "$DRILLKIT_USER" ${DRILLKIT_DATABASE:+"$DRILLKIT_DATABASE"} >/dev/null 2>>/tmp/drillkit-errors '
    "|| echo $n >> /tmp/drillkit-failed; }) & n=$((n+1)); done; " + _COUNT
)
_HOLDING = re.compile(r"(?:drillkit: holding|batch:) (\d+) of (\d+) (?:connections|workers up)")
BLIND_WORDS = (
    ("DRILLKIT_CONNECTIONS", "BATCH_SIZE"),
    ("DRILLKIT_HOLD", "BATCH_TIMEOUT"),
    ("DRILLKIT_", "DB_"),
    ("/tmp/drillkit-", "/tmp/batch-"),
    ("drillkit: holding", "batch:"),
    (" connections", " workers up"),
)
"""In a blind exercise the Job's script, env and log say nothing of drillkit or connections
(`kubectl describe`/`logs` show them): these replacements, in order, applied to each."""


def blind(text: str) -> str:
    """`text` (the script, an env name) in a blind exercise's words."""
    for old, new in BLIND_WORDS:
        text = text.replace(old, new)
    return text


RESTRICTED = {
    "runAsNonRoot": True,
    "runAsUser": 999,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
"""A container securityContext the `restricted` Pod Security level admits."""


@dataclass(frozen=True)
class Connections:
    """What preflight found: the database Service and port, the Secret, the Job to create."""

    namespace: str
    service: ObjRef
    port: int
    secret: ObjRef
    deadline: int  # seconds: the Job's activeDeadlineSeconds
    job: str
    image: str


@dataclass(frozen=True)
class JobRecord:
    """How to undo a db-connection-exhaustion: the Job to delete, with its pods."""

    namespace: str
    job: str


class DbConnectionExhaustion(KubeFault[DbConnectionParams, Connections, JobRecord]):
    """A Job running the database's own client image holds N idle connections (credentials by
    secretKeyRef); activeDeadlineSeconds ends it even if drillkit dies."""

    kind = "db-connection-exhaustion"
    Params = DbConnectionParams
    Record: ClassVar[type] = JobRecord
    params: DbConnectionParams

    def preflight(self) -> Connections:
        p, ns = self.params, self.namespace
        self.guard_namespace(ns)
        service = self.kube.service(ns, p.service)
        if service is None:
            raise PreflightError(f"{self.kind}: Service {ns}/{p.service} not found")
        service_ref, ports = service
        if p.port is None and not ports:
            raise PreflightError(f"{self.kind}: Service {ns}/{p.service} has no ports; set `port`")
        secret = self.kube.secret_keys(ns, p.secret)
        if secret is None:
            raise PreflightError(f"{self.kind}: Secret {ns}/{p.secret} not found")
        secret_ref, keys, _ = secret
        missing = [k for k in (p.user_key, p.password_key) if k not in keys]
        if missing:
            raise PreflightError(
                f"{self.kind}: Secret {ns}/{p.secret} has no key {', '.join(missing)} (keys: {', '.join(keys)})"
            )
        import secrets  # here: it loads hashlib, which validating a scenario never needs

        return Connections(
            namespace=ns,
            service=service_ref,
            port=p.port or ports[0],
            secret=secret_ref,
            deadline=int(p.deadline if p.deadline is not None else self.ctx.scenario.recovery.within + 120),
            job=self.ctx.naming.name(Made.DB_CLIENT, self.ctx.run_id, secrets.token_hex(2)),
            image=p.image or ("postgres:16" if p.engine is DbEngine.POSTGRESQL else "mysql:8"),
        )

    def plan(self, found: Connections) -> list[str]:
        p = self.params
        return [
            f"create Job {found.namespace}/{found.job} (image {found.image}, labelled "
            f"{RUN_LABEL}={self.ctx.run_id}) holding {p.connections} idle {p.engine} "
            f"connections to {found.service} port {found.port}",
            f"credentials by reference: {found.secret} keys "
            f"{p.user_key}/{p.password_key} (secretKeyRef; drillkit never reads the values)",
            f"dead-man's switch: activeDeadlineSeconds {found.deadline}",
            "revert: delete the Job and its pods (propagation Background)",
        ]

    def manifest(self, found: Connections) -> dict[str, Any]:
        p, naming = self.params, self.ctx.naming
        labels = self.made_labels(Made.DB_CLIENT, "drillkit-db-connections")
        words = blind if naming.blind else str
        app_name = naming.head(Made.DB_CLIENT) if naming.blind else "drillkit-connection-exhaustion"

        def ref(name: str, key: str) -> dict[str, Any]:
            return {"name": name, "valueFrom": {"secretKeyRef": {"name": p.secret, "key": key}}}

        common = [
            {"name": "DRILLKIT_CONNECTIONS", "value": str(p.connections)},
            {"name": "DRILLKIT_HOLD", "value": str(found.deadline)},
        ]
        if p.engine is DbEngine.POSTGRESQL:
            env = [
                *common,
                {"name": "PGHOST", "value": p.service},
                {"name": "PGPORT", "value": str(found.port)},
                {"name": "PGCONNECT_TIMEOUT", "value": "10"},
                {"name": "PGAPPNAME", "value": app_name},
                ref("PGUSER", p.user_key),
                ref("PGPASSWORD", p.password_key),
            ]
            if p.database:
                env.append({"name": "PGDATABASE", "value": p.database})
            script = _PG_SCRIPT
        else:
            env = [
                *common,
                {"name": "DRILLKIT_HOST", "value": p.service},
                {"name": "DRILLKIT_PORT", "value": str(found.port)},
                ref("DRILLKIT_USER", p.user_key),
                ref("MYSQL_PWD", p.password_key),
            ]
            if p.database:
                env.append({"name": "DRILLKIT_DATABASE", "value": p.database})
            script = _MYSQL_SCRIPT
        env = [{**e, "name": words(e["name"])} for e in env]
        return {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": found.job, "namespace": found.namespace, "labels": labels},
            "spec": {
                "backoffLimit": 0,
                "activeDeadlineSeconds": found.deadline,
                "ttlSecondsAfterFinished": 300,
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "restartPolicy": "Never",
                        "terminationGracePeriodSeconds": 0,
                        "containers": [
                            {
                                "name": "batch" if naming.blind else "connections",
                                "image": found.image,
                                "command": ["sh", "-c", words(script)],
                                "env": env,
                                "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}},
                                "securityContext": RESTRICTED,
                            }
                        ],
                    },
                },
            },
        }

    def inject(self, found: Connections, undo: Undo) -> None:
        ns, job, wait = found.namespace, found.job, self.params.wait
        undo.register(self, JobRecord(ns, job))
        with contextlib.suppress(Conflict):  # a retried create that had succeeded
            self.kube.create_job(ns, self.manifest(found))
        if wait > 0:
            running = self.kube.wait_pods(
                ns,
                f"job-name={job}",
                lambda pods: next((p for p in pods if p.containers and p.containers[0].running), None),
                wait,
                self.ctx.stop,
            )
            if running is None:
                self._check_stop()
                raise DrillkitError(
                    f"{self.kind}: the pod of Job {ns}/{job} did not start "
                    f"within {wait:g}s (image {found.image} pulled?)"
                )
            note(self.ctx, "note", fault=self.kind, text=f"Job {ns}/{job} pod {running.name} running on {running.node}")
            self.ctx.harm_started()  # the client pod opens the connections from here
            held = self._held(ns, running.name, wait + SETTLE)
            note(self.ctx, "connections_held", fault=self.kind, job=job, held=held, requested=self.params.connections)
            return
        self.ctx.harm_started()  # not waiting: the connections are assumed, not proved

    def _check_stop(self) -> None:
        """A wait ended by a stop request is an interruption (exit 130), not a failed fault."""
        if self.ctx.stop.interrupts():
            raise Aborted(self.ctx.stop.reason or "stop requested", by_signal=True)

    def _held(self, ns: str, pod: str, timeout: float) -> int:
        """How many connections the Job's pod reports holding; DrillkitError for none."""
        log: list[str] = [""]

        def counted() -> re.Match[str] | None:  # a match, as 0 held is falsy
            log[0] = self.kube.pod_log(ns, pod)
            return _HOLDING.search(log[0])

        m = wait_until(counted, time.monotonic() + timeout, 1.0, self.ctx.stop)
        held = int(m[1]) if m else None
        if held is None:
            self._check_stop()
            raise DrillkitError(f"{self.kind}: pod {ns}/{pod} did not report its connections within {timeout:g}s")
        if held == 0:
            errors = log[0].split("connections", 1)[-1].strip()[:300]
            raise DrillkitError(
                f"{self.kind}: pod {ns}/{pod} holds 0 of {self.params.connections} connections "
                f"(NetworkPolicy? credentials? DSN?): {errors or 'no error output'}"
            )
        return held

    @classmethod
    def revert(cls, ctx: RevertContext, record: JobRecord) -> dict[str, Any]:
        kube, ns, job = ctx.kube, record.namespace, record.job
        deleted = kube.delete_job(ns, job)
        pods = 0
        for pod in kube.list_pods(ns, f"job-name={job}"):  # don't wait for the GC
            pods += kube.delete_pod(ns, pod.name, grace_period=0)
        return {"deleted": deleted, "pods_deleted": pods}
