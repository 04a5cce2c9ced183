"""Synthetic users for the demo chat API.

Alert ratios (5xx, 401, latency) need steady, known traffic, and a drill's recovery is only
visible if clients keep trying: this generator logs a few users in, then round-robins chats
and conversation reads across the replicas at a fixed rate. It never gives up: targets that
are down or slow are counted (``chatbot_traffic_requests_total{target,outcome}``) and retried.
A token rejected with 401 is kept (like a real client's session) and replaced by a fresh
login at most every ``--relogin-after`` seconds, so a restored secret recovers on its own.

    python -m drillkit.lab.traffic --targets http://127.0.0.1:8081,http://127.0.0.1:8082 \\
        --rps 10 [--duration 60] [--metrics-port 9101]
"""

from __future__ import annotations

import argparse
import collections
import itertools
import json
import logging
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import prometheus_client as prom
import requests

from drillkit.signals import on_signals

log = logging.getLogger("drillkit.lab.traffic")
PASSWORD = "drill"


@dataclass
class User:
    """One synthetic user's session, shared by all targets (as behind a load balancer)."""

    name: str
    token: str | None = None
    rejected: bool = False  # the current token got a 401
    last_login: float = float("-inf")
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class Options:
    targets: list[str]
    rps: float = 10.0
    duration: float | None = None
    users: int = 3
    relogin_after: float = 2.0
    timeout: float = 1.0
    metrics_port: int | None = None


def outcome_of(resp: requests.Response | Exception) -> str:
    if isinstance(resp, requests.Timeout):
        return "timeout"
    if isinstance(resp, requests.ConnectionError):
        return "connection_error"
    if isinstance(resp, Exception):
        return "error"
    if resp.status_code < 400:
        return "ok"
    if resp.status_code == 401:
        return "unauthorized"
    return "client_error" if resp.status_code < 500 else "server_error"


class Traffic:
    def __init__(self, opts: Options, registry: prom.CollectorRegistry | None = None) -> None:
        self.opts = opts
        self.users = [User(f"drill-user-{i}") for i in range(1, opts.users + 1)]
        self.registry = registry or prom.CollectorRegistry()
        self.requests = prom.Counter(
            "chatbot_traffic_requests", "Requests sent by outcome", ["target", "outcome"], registry=self.registry
        )
        self.totals: collections.Counter[tuple[str, str]] = collections.Counter()
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._lock = threading.Lock()

    def _count(self, target: str, outcome: str) -> None:
        self.requests.labels(target, outcome).inc()
        with self._lock:
            self.totals[target, outcome] += 1

    def _session(self) -> requests.Session:
        if (s := getattr(self._local, "session", None)) is None:
            s = self._local.session = requests.Session()
            with self._lock:
                self._sessions.append(s)
        return s

    def _send(self, target: str, method: str, path: str, **kw: Any) -> requests.Response | None:
        """One request; counted under its outcome. None when it got no HTTP answer."""
        result: requests.Response | Exception
        try:
            result = self._session().request(method, target + path, timeout=self.opts.timeout, **kw)
            result.close()
        except requests.RequestException as exc:
            result = exc
        self._count(target, outcome_of(result))
        return result if isinstance(result, requests.Response) else None

    def _token(self, user: User, target: str) -> str | None:
        with user.lock:
            due = time.monotonic() - user.last_login >= self.opts.relogin_after
            if user.token is None or (user.rejected and due):
                user.last_login = time.monotonic()
                resp = self._send(target, "POST", "/login", json={"user": user.name, "password": PASSWORD})
                if resp is not None and resp.status_code == 200:
                    user.token, user.rejected = resp.json()["token"], False
            return user.token

    def one(self, n: int) -> None:
        """The n-th tick: every (target, user) pair in turn; chats twice as often as reads."""
        n_targets, n_users = len(self.opts.targets), len(self.users)
        target, user = self.opts.targets[n % n_targets], self.users[n // n_targets % n_users]
        if (token := self._token(user, target)) is None:
            return  # the login attempt was the request
        auth = {"Authorization": f"Bearer {token}"}
        if n // (n_targets * n_users) % 3 == 2:
            resp = self._send(target, "GET", f"/conversations/{user.name}", headers=auth)
        else:
            resp = self._send(target, "POST", "/chat", headers=auth, json={"message": f"drill message {n}"})
        if resp is not None and resp.status_code == 401:
            with user.lock:
                user.rejected = user.rejected or user.token == token

    def run(self, stop: threading.Event) -> None:
        """Fire ticks at ``rps`` until ``stop`` or ``duration``; drop ticks if all workers hang."""
        workers = max(4, min(64, int(self.opts.rps * self.opts.timeout) + 2))
        slots = threading.BoundedSemaphore(workers)
        interval, start = 1.0 / self.opts.rps, time.monotonic()

        def tick(n: int) -> None:
            try:
                self.one(n)
            except Exception:  # never die: a drill is exactly when odd things happen
                log.exception("tick %d failed", n)
            finally:
                slots.release()

        with ThreadPoolExecutor(workers, thread_name_prefix="traffic") as pool:
            for n in itertools.count():
                due = start + n * interval
                if self.opts.duration is not None and due - start >= self.opts.duration:
                    break
                if stop.wait(max(0.0, due - time.monotonic())):
                    break
                if slots.acquire(blocking=False):
                    pool.submit(tick, n)
                else:
                    self._count(self.opts.targets[n % len(self.opts.targets)], "dropped")
        for s in self._sessions:
            s.close()


def parse_args(argv: list[str] | None = None) -> Options:
    p = argparse.ArgumentParser(
        prog="python -m drillkit.lab.traffic", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--targets", required=True, help="comma-separated base URLs")
    p.add_argument("--rps", type=float, default=10.0)
    p.add_argument("--duration", type=float, help="seconds (default: until SIGTERM)")
    p.add_argument("--users", type=int, default=3)
    p.add_argument("--relogin-after", type=float, default=2.0, help="seconds between re-logins")
    p.add_argument("--timeout", type=float, default=1.0, help="per-request timeout, seconds")
    p.add_argument("--metrics-port", type=int, help="serve /metrics on 127.0.0.1:PORT")
    a = p.parse_args(argv)
    targets = [t.strip().rstrip("/") for t in a.targets.split(",") if t.strip()]
    if not targets or a.rps <= 0 or a.users < 1:
        p.error("need at least one target, --rps > 0 and --users >= 1")
    return Options(targets, a.rps, a.duration, a.users, a.relogin_after, a.timeout, a.metrics_port)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    prom.disable_created_metrics()  # type: ignore[no-untyped-call]
    opts = parse_args(argv)
    traffic, stop = Traffic(opts), threading.Event()
    server = None
    if opts.metrics_port is not None:
        server, _ = prom.start_http_server(opts.metrics_port, "127.0.0.1", traffic.registry)
    log.info("traffic: %.1f rps to %s", opts.rps, ", ".join(opts.targets))
    try:
        with on_signals(lambda _name: stop.set()):
            traffic.run(stop)
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
    summary: dict[str, dict[str, int]] = collections.defaultdict(dict)
    for (target, outcome), n in sorted(traffic.totals.items()):
        summary[target][outcome] = n
    json.dump({"requests": summary}, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
