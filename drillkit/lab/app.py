"""The demo chat API that drills break and Prometheus watches.

Every common incident of the playbook gets a real, observable victim: replicas to kill
(outage), a PostgreSQL pool to exhaust or slow down (database, latency), a JWT secret file to
corrupt (auth failures) and a process whose memory can grow (memory leak). The secret is read
at startup only; one shorter than 32 bytes (RFC 7518 §3.2) is unusable, so every login and
token check then fails with 401 until a good secret is restored and the replica restarted.
`POST /debug/leak?mb=N` keeps N more MiB for good (`chatbot_debug_leaked_bytes`): the lever the
memory-pressure fault pulls until the kernel OOM-kills the replica in its memory-limited cgroup.

It logs what a real service logs, so a responder following the runbook ("review error logs")
finds evidence: every 401 with its reason, every database failure with the error, and every
request slower than `--slow-ms` with its duration. The logger is `chatbot.api`, the platform's
own name: nothing in the log names drillkit or a drill.

    python -m drillkit.lab.app --port 8081 --dsn DSN --jwt-secret-file FILE --replica a
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import jwt
import prometheus_client as prom
import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from drillkit.signals import on_signals

log = logging.getLogger("chatbot.api")

PASSWORD = "drill"
MIN_SECRET_BYTES = 32
TOKEN_TTL_S = 3600
USER_RE = re.compile(r"[\w.@-]{1,64}")
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0)
SCHEMA = """CREATE TABLE IF NOT EXISTS messages (id bigserial PRIMARY KEY, username text NOT NULL,
    role text NOT NULL, body text NOT NULL, replica text NOT NULL, created_at timestamptz NOT NULL
    DEFAULT now()); CREATE INDEX IF NOT EXISTS messages_user ON messages (username, id);"""


@dataclass(frozen=True)
class Config:
    port: int
    dsn: str
    jwt_secret_file: Path
    replica: str
    pool_size: int = 5
    pool_timeout: float = 0.5
    host: str = "127.0.0.1"
    slow_ms: float = 500.0  # requests slower than this are logged with their duration


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    content_type: str = "application/json"


def json_reply(status: int, obj: Any) -> Reply:
    return Reply(status, json.dumps(obj).encode())


def route_of(path: str) -> tuple[str, str]:
    """Metric-safe route template and its path argument (bounded label cardinality)."""
    path, _, query = path.partition("?")
    if path == "/debug/leak":
        return path, query
    if (m := re.fullmatch(r"/conversations/(.+)", path)) and USER_RE.fullmatch(m.group(1)):
        return "/conversations/{user}", m.group(1)
    return (path if path in {"/login", "/chat", "/healthz", "/readyz", "/metrics"} else "other"), ""


def read_secret(path: Path) -> bytes | None:
    """The HS256 key, or None when missing or too short to be trusted."""
    with contextlib.suppress(OSError):
        if len(secret := path.read_bytes().strip()) >= MIN_SECRET_BYTES:
            return secret
    log.error("JWT secret %s is unusable (missing or under %d bytes)", path, MIN_SECRET_BYTES)
    return None


class Metrics:
    """The app's own registry, so /metrics shows exactly this replica's series."""

    def __init__(self, replica: str, pool_size: int) -> None:
        self.registry = r = prom.CollectorRegistry()
        prom.ProcessCollector(registry=r)  # process_resident_memory_bytes, _start_time_seconds
        self.requests = prom.Counter(
            "chatbot_http_requests", "HTTP requests served", ["route", "method", "code"], registry=r
        )
        self.duration = prom.Histogram(
            "chatbot_http_request_duration_seconds", "HTTP latency", ["route"], buckets=BUCKETS, registry=r
        )
        self.auth_failures = prom.Counter("chatbot_auth_failures", "Rejected logins/tokens", registry=r)
        self.db_errors = prom.Counter("chatbot_db_errors", "Failed DB work", ["kind"], registry=r)
        self.pool_in_use = prom.Gauge("chatbot_db_pool_in_use", "Connections lent out", registry=r)
        prom.Gauge("chatbot_db_pool_size", "Pool maximum size", registry=r).set(pool_size)
        prom.Info("chatbot_replica", "Replica identity", registry=r).info({"replica": replica})
        self.leaked = prom.Gauge("chatbot_debug_leaked_bytes", "Bytes kept by /debug/leak", registry=r)
        # Pre-create the series that alert ratios divide, so the first failures count.
        for kind in ("pool_timeout", "query"):
            self.db_errors.labels(kind)
        for spec in ("/chat POST 200 401 503", "/login POST 200 401", "/conversations/{user} GET 200 401 503"):
            route, method, *codes = spec.split()
            for code in codes:
                self.requests.labels(route, method, code)


class ChatApp:
    """Routes and their work; the HTTP handler only frames requests and responses."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.secret = read_secret(cfg.jwt_secret_file)
        name = f"chatbot-{cfg.replica}"  # also the application_name in pg_stat_activity
        self.pool = ConnectionPool(  # a short reconnect_timeout makes recovery prompt
            cfg.dsn,
            min_size=1,
            max_size=cfg.pool_size,
            timeout=cfg.pool_timeout,
            open=False,
            check=ConnectionPool.check_connection,
            reconnect_timeout=3.0,
            max_idle=30,
            name=name,
            kwargs={"connect_timeout": 2, "application_name": name, "options": "-c statement_timeout=5000"},
        )
        self.metrics = Metrics(cfg.replica, cfg.pool_size)
        self.schema_ready = threading.Event()
        self._leak: list[bytearray] = []  # /debug/leak: never freed, like a real leak
        self._leak_lock = threading.Lock()

    def open(self) -> None:
        """Serve at once; create the schema in the background (and lazily, if the DB is late)."""
        self.pool.open(wait=False)
        threading.Thread(target=self._init_schema, daemon=True).start()

    def _init_schema(self, attempts: int = 10) -> None:
        for _ in range(attempts):  # ~5 s of retries at start
            with contextlib.suppress(psycopg.Error), self.db(timeout=0.5):
                return
        log.warning("no database yet; serving anyway, /readyz reports it")

    @contextlib.contextmanager
    def db(self, timeout: float | None = None) -> Iterator[psycopg.Connection[Any]]:
        with self.pool.connection(timeout) as conn, self.metrics.pool_in_use.track_inprogress():
            if not self.schema_ready.is_set():
                try:
                    conn.execute(SCHEMA)
                    conn.commit()
                except psycopg.errors.UniqueViolation:  # another replica created it first
                    conn.rollback()
                self.schema_ready.set()
            yield conn

    def handle(self, method: str, route: str, arg: str, headers: Any, body: bytes) -> Reply:
        public: dict[tuple[str, str], Callable[[], Reply]] = {
            ("GET", "/healthz"): lambda: json_reply(200, {"replica": self.cfg.replica}),
            ("GET", "/readyz"): self.readyz,
            ("GET", "/metrics"): lambda: Reply(
                200, prom.generate_latest(self.metrics.registry), prom.CONTENT_TYPE_LATEST
            ),
            ("POST", "/login"): lambda: self.login(body),
            ("POST", "/debug/leak"): lambda: self.leak(arg),
        }
        private: dict[tuple[str, str], Callable[[str], Reply]] = {
            ("POST", "/chat"): lambda user: self.chat(user, body),
            ("GET", "/conversations/{user}"): lambda user: self.conversation(user, arg),
        }
        if (method, route) in public:
            return public[method, route]()
        if (method, route) not in private:
            return json_reply(404, {"error": "not found"})
        user, reason = self.authenticate(headers.get("Authorization", ""))
        if user is None:
            log.warning("401 %s %s: %s", method, route, reason)
            return json_reply(401, {"error": "unauthorized"})
        try:
            return private[method, route](user)
        except PoolTimeout:
            self.metrics.db_errors.labels("pool_timeout").inc()
            log.error(
                "503 %s %s: database: no connection from the pool within %.1f s (%d of %d in use)",
                method,
                route,
                self.cfg.pool_timeout,
                self.pool.get_stats().get("pool_size", 0) - self.pool.get_stats().get("pool_available", 0),
                self.cfg.pool_size,
            )
            return json_reply(503, {"error": "no database connection available"})
        except psycopg.Error as exc:
            if isinstance(exc, psycopg.errors.UndefinedTable):  # a new, empty database (its pod
                self.schema_ready.clear()  # rescheduled without a volume): the next request creates it
            self.metrics.db_errors.labels("query").inc()
            detail = " ".join(str(exc).split())[:300]
            log.error("503 %s %s: database error %s: %s", method, route, type(exc).__name__, detail)
            return json_reply(503, {"error": f"database error: {type(exc).__name__}"})

    def readyz(self) -> Reply:
        """Ready only if the database answers ``SELECT 1`` within a second."""
        start = time.monotonic()
        try:
            with self.db(timeout=1.0) as conn:
                conn.execute("SELECT 1")
            error = "too slow" if time.monotonic() - start > 1.0 else None
        except psycopg.Error as exc:
            error = type(exc).__name__
            log.error("503 GET /readyz: database unavailable: %s: %s", error, " ".join(str(exc).split())[:300])
        return json_reply(503 if error else 200, {"ready": not error, "error": error})

    def leak(self, query: str) -> Reply:
        """Keep `mb` more MiB for good (the memory-pressure fault's push towards an OOM kill).

        The pages are written, so they are resident and charged to the process's cgroup."""
        try:
            mb = int(parse_qs(query).get("mb", ["1"])[0])
        except ValueError:
            mb = 0
        if not 1 <= mb <= 1024:
            return json_reply(400, {"error": "expected ?mb=N with 1 <= N <= 1024"})
        chunk = bytearray(mb << 20)
        chunk[::4096] = b"\x01" * len(chunk[::4096])  # touch every page
        with self._leak_lock:
            self._leak.append(chunk)
            total = sum(len(c) for c in self._leak)
        self.metrics.leaked.set(total)
        return json_reply(200, {"leaked_bytes": total})

    def login(self, body: bytes) -> Reply:
        try:
            creds = json.loads(body or b"{}")
            user, password = str(creds["user"]), creds["password"]
        except (ValueError, KeyError, TypeError):
            return json_reply(400, {"error": "expected JSON {user, password}"})
        reason = (
            "invalid user name"
            if not USER_RE.fullmatch(user)
            else "wrong password"
            if password != PASSWORD
            else "signing key unavailable (JWT secret unusable)"
            if self.secret is None
            else ""
        )
        if reason:
            self.metrics.auth_failures.inc()
            log.warning("401 POST /login user=%s: %s", user[:64], reason)
            return json_reply(401, {"error": "invalid credentials"})
        claims = {"sub": user, "exp": int(time.time()) + TOKEN_TTL_S}
        return json_reply(200, {"token": jwt.encode(claims, self.secret, algorithm="HS256")})

    def authenticate(self, header: str) -> tuple[str | None, str]:
        """The token's user, or None and why it was rejected (for the log)."""
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            reason = "no bearer token"
        elif self.secret is None:
            reason = "cannot verify tokens: JWT secret unusable"
        else:
            try:
                claims = jwt.decode(token, self.secret, algorithms=["HS256"], options={"require": ["exp", "sub"]})
                return str(claims["sub"]), ""
            except jwt.InvalidTokenError as exc:
                reason = f"token rejected: {exc}"
        self.metrics.auth_failures.inc()
        return None, reason

    def chat(self, user: str, body: bytes) -> Reply:
        try:
            message = str(json.loads(body or b"{}")["message"])[:2000]
        except (ValueError, KeyError, TypeError):
            return json_reply(400, {"error": "expected JSON {message}"})
        reply, replica = f"Thanks {user}, I noted: {message[:80]}", self.cfg.replica
        with self.db() as conn, conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO messages (username, role, body, replica) VALUES (%s, %s, %s, %s)",
                [(user, "user", message, replica), (user, "bot", reply, replica)],
            )
        return json_reply(200, {"reply": reply, "replica": replica})

    def conversation(self, user: str, owner: str) -> Reply:
        if user != owner:
            return json_reply(403, {"error": "not your conversation"})
        with self.db() as conn:
            rows = conn.execute(
                "SELECT role, body, replica, created_at FROM messages WHERE username = %s ORDER BY id DESC LIMIT 50",
                (owner,),
            )
            messages = [
                {"role": r, "body": b, "replica": rep, "at": at.isoformat()}
                for r, b, rep, at in reversed(rows.fetchall())
            ]
        return json_reply(200, {"user": owner, "messages": messages})


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive for the traffic generator
    server: Server

    def _dispatch(self) -> None:
        start, method, app = time.perf_counter(), self.command, self.server.app
        route, arg = route_of(self.path)
        body = self.rfile.read(min(int(self.headers.get("Content-Length") or 0), 65536))
        try:
            reply = app.handle(method, route, arg, self.headers, body)
        except Exception:
            log.exception("unhandled error on %s %s", method, self.path)
            reply = json_reply(500, {"error": "internal error"})
        with contextlib.suppress(OSError):  # a client that went away still counts
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)
        took = time.perf_counter() - start
        app.metrics.requests.labels(route, method, str(reply.status)).inc()
        app.metrics.duration.labels(route).observe(took)
        if took * 1000 >= app.cfg.slow_ms and route not in ("/metrics", "/healthz"):
            log.warning("slow request: %s %s %d took %.0f ms", method, route, reply.status, took * 1000)

    do_GET = do_POST = _dispatch

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)


class Server(ThreadingHTTPServer):
    def __init__(self, app: ChatApp) -> None:
        self.app = app
        super().__init__((app.cfg.host, app.cfg.port), Handler)


def parse_args(argv: list[str] | None = None) -> Config:
    p = argparse.ArgumentParser(
        prog="python -m drillkit.lab.app", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--dsn", required=True)
    p.add_argument("--jwt-secret-file", type=Path, required=True)
    p.add_argument("--replica", required=True)
    p.add_argument("--pool-size", type=int, default=5)
    p.add_argument("--pool-timeout", type=float, default=0.5, help="seconds to wait for a conn")
    p.add_argument("--slow-ms", type=float, default=500.0, help="log requests slower than this, milliseconds")
    return Config(**vars(p.parse_args(argv)))


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    prom.disable_created_metrics()  # type: ignore[no-untyped-call]
    app = ChatApp(parse_args(argv))
    server = Server(app)
    app.open()
    log.info("replica %s serving on %s:%d", app.cfg.replica, app.cfg.host, app.cfg.port)
    try:
        with on_signals(lambda _name: server.shutdown()):  # from the watcher thread: shutdown() blocks
            server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        app.pool.close(timeout=2.0)
        log.info("replica %s stopped", app.cfg.replica)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
