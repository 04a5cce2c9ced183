"""A recording, fault-injecting TCP proxy in front of the real kube-apiserver.

What the real control plane cannot give a test, and only that: a deterministic 429/500/422, a
dropped connection or a slow answer on the Nth matching request (to prove drillkit's retry policy),
and the list of requests drillkit sent (to prove what it asked, e.g. that a revert-record Secret was
written before the harm) with the apiserver's `Warning:` headers of each answer (an unknown field
drillkit wrote: fieldValidation is Warn by default). Everything else — every answer, watch, exec
stream — is the apiserver's own, spliced byte for byte. Each request gets `Connection: close` so each is seen here.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import parse_qs, unquote, urlsplit


class RequestRecord(NamedTuple):
    method: str
    path: str
    query: dict[str, Any]  # single values as str, repeated ones (exec `command`) as list
    body: Any
    headers: dict[str, str]
    status: int
    answer: str  # the first 64 KiB of an error answer's body (4xx/5xx), else ""
    warnings: tuple[str, ...] = ()  # the apiserver's `Warning:` headers (RFC 7234 text), e.g. unknown fields
    at: float = 0.0  # time.monotonic() when the request arrived (the journal's `mono` clock)


@dataclass
class Injection:
    method: str | None
    path_contains: str | None
    status: int | None
    times: int
    retry_after: int | None
    drop_connection: bool
    delay: float
    message: str | None
    hits: int = 0

    @property
    def remaining(self) -> int:
        return self.times - self.hits


@dataclass
class FaultProxy:
    upstream_port: int
    ca: str
    port: int = 0
    requests: list[RequestRecord] = field(default_factory=list)
    _rules: list[Injection] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _sock: socket.socket | None = None
    _stopping: bool = False

    def start(self) -> FaultProxy:
        self._ctx = ssl.create_default_context(cafile=self.ca)
        pki = Path(self.ca).parent  # served over TLS as kind serves its API (proxy.crt: controlplane.make_pki)
        self._served = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._served.load_cert_chain(pki / "proxy.crt", pki / "proxy.key")
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        threading.Thread(target=self._accept, name="kube-proxy", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopping = True
        if self._sock:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self._rules.clear()

    def inject_error(
        self,
        method: str | None = None,
        path_contains: str | None = None,
        status: int | None = 500,
        times: int = 1,
        retry_after: int | None = None,
        drop_connection: bool = False,
        delay: float = 0.0,
        message: str | None = None,
    ) -> Injection:
        """The next `times` matching requests get `status` (a Status body, `Retry-After` if given),
        or their connection closed without an answer, after sleeping `delay`. `status=None` with a
        delay only slows them down (they then reach the apiserver)."""
        rule = Injection(
            method.upper() if method else None,
            path_contains,
            status,
            times,
            retry_after,
            drop_connection,
            delay,
            message,
        )
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear_injections(self) -> None:
        with self._lock:
            self._rules.clear()

    def _take(self, method: str, target: str) -> Injection | None:
        with self._lock:
            for rule in self._rules:
                if rule.remaining <= 0:
                    continue
                if rule.method and rule.method != method:
                    continue
                if rule.path_contains and rule.path_contains not in target:
                    continue
                rule.hits += 1
                return rule
        return None

    def _accept(self) -> None:
        assert self._sock is not None
        while not self._stopping:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        upstream: socket.socket | None = None
        client: socket.socket = conn
        try:
            client = self._served.wrap_socket(conn, server_side=True)
            head, rest = _read_head(client)
            if head is None:
                return
            arrived = time.monotonic()
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:] if ":" in ln)}
            length = int(headers.get("content-length", "0") or 0)
            while len(rest) < length:
                chunk = client.recv(65536)
                if not chunk:
                    break
                rest += chunk
            body_bytes = rest[:length]
            rule = self._take(method, target)
            if rule:
                time.sleep(rule.delay)
                if rule.drop_connection:
                    self._record(method, target, headers, body_bytes, 0, "", at=arrived)
                    return
                if rule.status is not None:
                    self._record(method, target, headers, body_bytes, rule.status, rule.message or "", at=arrived)
                    client.sendall(_status_answer(rule))
                    return
            upgrade = "upgrade" in headers.get("connection", "").lower()
            out = [lines[0]] + [ln for ln in lines[1:] if ln and not ln.lower().startswith("connection:")]
            out.append("Connection: Upgrade" if upgrade else "Connection: close")
            raw = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=30)
            upstream = self._ctx.wrap_socket(raw, server_hostname="127.0.0.1")
            upstream.settimeout(None)
            upstream.sendall(("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + rest)
            first = upstream.recv(65536)
            while first and b"\r\n\r\n" not in first and len(first) < 1 << 20:  # the whole head
                more = upstream.recv(65536)
                if not more:
                    break
                first += more
            status = _status_of(first)
            answer = ""
            if status >= 400:
                with contextlib.suppress(OSError):
                    first += _drain(upstream, 65536 - len(first))
                answer = first.partition(b"\r\n\r\n")[2].decode("utf-8", "replace")
            self._record(method, target, headers, body_bytes, status, answer, _warnings(first), arrived)
            client.sendall(first)
            _splice(client, upstream)
        except (OSError, ValueError):
            return
        finally:
            for s in (client, upstream, conn):
                if s is not None:
                    with contextlib.suppress(OSError):
                        s.close()

    def _record(
        self,
        method: str,
        target: str,
        headers: dict[str, str],
        body: bytes,
        status: int,
        answer: str,
        warnings: tuple[str, ...] = (),
        at: float = 0.0,
    ) -> None:
        parts = urlsplit(target)
        query = {k: (v[0] if len(v) == 1 else v) for k, v in parse_qs(parts.query).items()}
        parsed: Any = None
        if body:
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = body.decode("utf-8", "replace")
        with self._lock:
            self.requests.append(
                RequestRecord(method, unquote(parts.path), query, parsed, headers, status, answer, warnings, at)
            )


def _read_head(sock: socket.socket) -> tuple[bytes | None, bytes]:
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            return None, b""
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    return head, rest


def _warnings(first: bytes) -> tuple[str, ...]:
    """The text of each `Warning: 299 - "text"` header of an answer's head (the apiserver's
    unknown-field and deprecation warnings)."""
    out = []
    for line in first.partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() != "warning":
            continue
        text = value.strip().split(" ", 2)[-1].strip()  # `299 - "..."`: code, agent, quoted text
        if len(text) >= 2 and text[0] == text[-1] == '"':
            text = text[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        out.append(text)
    return tuple(out)


def _status_of(first: bytes) -> int:
    try:
        return int(first.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return 0


def _drain(sock: socket.socket, limit: int) -> bytes:
    """More of an error answer (the apiserver closes after it: Connection: close)."""
    sock.settimeout(2)
    data = b""
    while len(data) < limit:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    sock.settimeout(None)
    return data


def _splice(client: socket.socket, upstream: ssl.SSLSocket) -> None:
    """Copy both ways in one thread (an SSL object must not be read and written from two threads)
    until either side closes."""
    client.setblocking(False)
    upstream.setblocking(False)
    open_ = {client: True, upstream: True}
    while all(open_.values()):
        buffered = [s for s in (client, upstream) if isinstance(s, ssl.SSLSocket) and s.pending()]
        ready = buffered or select.select([client, upstream], [], [], 1.0)[0]
        for src in ready:
            dst = upstream if src is client else client
            try:
                chunk = src.recv(65536)
            except (ssl.SSLWantReadError, BlockingIOError):
                continue
            if not chunk:
                open_[src] = False
                break
            dst.setblocking(True)
            dst.sendall(chunk)
            dst.setblocking(False)


def _status_answer(rule: Injection) -> bytes:
    reason = {429: "Too Many Requests", 500: "Internal Server Error", 409: "Conflict", 422: "Unprocessable Entity"}
    status = rule.status or 500
    body = json.dumps({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": rule.message or f"injected {status}", "reason": reason.get(status, "InternalError").replace(" ", ""),
        "code": status,
    }).encode()  # fmt: skip
    head = [f"HTTP/1.1 {status} {reason.get(status, 'Error')}", "Content-Type: application/json",
            f"Content-Length: {len(body)}", "Connection: close"]  # fmt: skip
    if rule.retry_after is not None:
        head.append(f"Retry-After: {rule.retry_after}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body
