"""A delaying TCP proxy between the chat API replicas and PostgreSQL.

The playbook's "high latency" incident needs a slow dependency, and this host has neither
`tc netem` nor toxiproxy. The replicas' DSN points at this pass-through forwarder; while the
control file holds ``{"delay_ms": N}`` every chunk, in both directions, is delivered N ms
after it arrived (a pipeline delay: throughput is unchanged, each round trip gets 2 x N ms
slower). The file is re-read at most every 200 ms, so existing connections slow down and
recover within that time; a missing, empty or unreadable file means no delay. The `latency`
fault writes the file; nothing else needs to know the proxy exists.

    python -m drillkit.lab.proxy --listen 127.0.0.1:19093 --upstream 127.0.0.1:19092 \\
        --control .drillkit/lab/latency.json [--metrics-port 19094]

``--metrics-port`` serves ``chatbot_db_proxy_delay_ms`` and connection gauges for Prometheus.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import prometheus_client as prom
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from drillkit.files import write_atomically

log = logging.getLogger("drillkit.lab.proxy")

REREAD_S = 0.2  # how stale the delay may be, seconds
CHUNK = 65536  # bytes read per chunk
QUEUE_CHUNKS = 256  # per direction; the reader waits when the writer is this far behind


def applied_path(control: Path) -> Path:
    """Where the proxy reports each delay it applies: `<control>.applied` holds
    `{"delay_ms": N, "revision": …, "at": <Unix seconds>}` (the revision the control file named),
    so the `latency` fault stamps `injected` when the delay took effect, not when it wrote."""
    return control.with_name(control.name + ".applied")


@dataclass
class DelayControl:
    """The current delay in milliseconds, from the control file, cached for REREAD_S; each
    change is reported in `applied_path(path)` the moment it applies."""

    path: Path
    _value: float = 0.0
    _read_at: float = float("-inf")
    _warned: str = ""
    _reported: tuple[float, str | None] | None = None

    def ms(self) -> float:
        now = time.monotonic()
        if now - self._read_at >= REREAD_S:
            self._read_at = now
            self._value, revision = self._read()
            if self._reported != (self._value, revision):
                self._report(self._value, revision)
        return self._value

    def _report(self, value: float, revision: str | None) -> None:
        body = json.dumps({"delay_ms": value, "revision": revision, "at": time.time()})
        try:
            write_atomically(applied_path(self.path), body, durable=False)
        except OSError as exc:
            log.warning("cannot report the delay in %s: %s", applied_path(self.path), exc)
        self._reported = (value, revision)

    def _read(self) -> tuple[float, str | None]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return 0.0, None
        except OSError as exc:
            return self._bad(f"cannot read {self.path}: {exc}"), None
        if not text.strip():
            return 0.0, None
        try:
            data = json.loads(text)
            value = float(data["delay_ms"])
        except (ValueError, KeyError, TypeError) as exc:
            return self._bad(f'{self.path}: expected {{"delay_ms": N}}: {exc!r}'), None
        if value < 0:
            return self._bad(f"{self.path}: delay_ms must be >= 0, got {value:g}"), None
        if value != self._value:
            log.info("delay now %g ms", value)
        self._warned = ""
        revision = data.get("revision")
        return value, revision if isinstance(revision, str) else None

    def _bad(self, why: str) -> float:
        if why != self._warned:  # once per distinct problem, not every 200 ms
            log.warning("%s; no delay", why)
            self._warned = why
        return 0.0


@dataclass
class Stats:
    open: int = 0
    total: int = 0
    bytes: dict[str, int] = field(default_factory=lambda: {"upstream": 0, "downstream": 0})


@dataclass(frozen=True)
class Options:
    listen: tuple[str, int]
    upstream: tuple[str, int]
    control: Path
    metrics_port: int | None = None


class _Collector(Collector):
    """The proxy's series, read from its live state at each scrape."""

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy

    def collect(self) -> Iterator[Metric]:
        s = self.proxy.stats
        yield GaugeMetricFamily(
            "chatbot_db_proxy_delay_ms", "Delay added to every chunk, each direction (ms).", self.proxy.delay.ms()
        )
        yield GaugeMetricFamily("chatbot_db_proxy_connections", "Open client connections.", s.open)
        yield CounterMetricFamily("chatbot_db_proxy_connections", "Client connections accepted.", s.total)
        forwarded = CounterMetricFamily("chatbot_db_proxy_bytes", "Bytes forwarded.", labels=["direction"])
        for direction, n in s.bytes.items():
            forwarded.add_metric([direction], n)
        yield forwarded


class Proxy:
    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.delay = DelayControl(opts.control)
        self.stats = Stats()
        self.registry = prom.CollectorRegistry()
        self.registry.register(_Collector(self))

    async def handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.stats.open += 1
        self.stats.total += 1
        try:
            try:
                up_r, up_w = await asyncio.open_connection(*self.opts.upstream)
            except OSError as exc:
                log.warning("upstream %s:%d unreachable: %s", *self.opts.upstream, exc)
                return
            try:
                await asyncio.gather(self._pump(client_r, up_w, "upstream"), self._pump(up_r, client_w, "downstream"))
            finally:
                up_w.close()
        finally:
            self.stats.open -= 1
            client_w.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, direction: str) -> None:
        """Copy reader to writer, each chunk delivered `delay` after it arrived, in order."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(QUEUE_CHUNKS)

        async def deliver() -> None:
            while True:
                due, data = await queue.get()
                if (wait := due - loop.time()) > 0:
                    await asyncio.sleep(wait)
                if not data:
                    with contextlib.suppress(OSError):
                        if writer.can_write_eof():
                            writer.write_eof()  # half-close: the peer may still answer
                    return
                writer.write(data)
                await writer.drain()
                self.stats.bytes[direction] += len(data)

        sender = asyncio.create_task(deliver())
        try:
            while True:
                try:
                    data = await reader.read(CHUNK)
                except OSError:
                    data = b""
                await queue.put((loop.time() + self.delay.ms() / 1000.0, data))
                if not data:
                    break
            await sender
        except (OSError, asyncio.CancelledError):
            sender.cancel()
            writer.close()
            raise
        finally:
            if not sender.done():
                sender.cancel()

    async def metrics(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Just enough HTTP for a Prometheus scrape; the body is prometheus_client's."""
        with contextlib.suppress(OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            request = await reader.readuntil(b"\r\n\r\n")
            ok = request.startswith(b"GET /metrics")
            body = prom.generate_latest(self.registry) if ok else b"not found\n"
            head = (
                f"HTTP/1.1 {'200 OK' if ok else '404 Not Found'}\r\n"
                f"Content-Type: {prom.CONTENT_TYPE_LATEST if ok else 'text/plain'}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + body)
            await writer.drain()
        writer.close()

    async def serve(self, stop: asyncio.Event) -> None:
        server = await asyncio.start_server(self.handle, *self.opts.listen)
        servers = [server]
        if self.opts.metrics_port is not None:
            servers.append(await asyncio.start_server(self.metrics, self.opts.listen[0], self.opts.metrics_port))
        log.info("proxy %s:%d -> %s:%d, delay from %s", *self.opts.listen, *self.opts.upstream, self.opts.control)
        while not stop.is_set():  # a new delay applies (and is reported) even with no traffic
            self.delay.ms()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), REREAD_S / 4)
        for s in servers:
            s.close()


def host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host or "127.0.0.1", int(port)


def parse_args(argv: list[str] | None = None) -> Options:
    p = argparse.ArgumentParser(
        prog="python -m drillkit.lab.proxy", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--listen", type=host_port, required=True, help="HOST:PORT (or PORT)")
    p.add_argument("--upstream", type=host_port, required=True, help="HOST:PORT of PostgreSQL")
    p.add_argument("--control", type=Path, required=True, help='JSON file {"delay_ms": N}')
    p.add_argument("--metrics-port", type=int, help="serve /metrics on the listen host")
    a = p.parse_args(argv)
    return Options(a.listen, a.upstream, a.control, a.metrics_port)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    opts = parse_args(argv)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await Proxy(opts).serve(stop)

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
