"""`--prometheus-url` pointing at a server that is not (or not always) Prometheus (issue 17).

Small HTTP servers in this process stand where Prometheus should be:
- a web page (HTTP 200, text/html: a login page, Grafana): not the API, said at once in one
  line (exit 3). It used to be retried as a "bad response" for the whole --ready-timeout
  (60 s by default), then reported as a JSON decoding error;
- a server that accepts the connection and never answers: the drill ends within
  --ready-timeout (each request is cut to the time left; one used to take its full 10 s past
  it), with one line saying it timed out, not urllib3's retry dump;
- a proxy in front of the real Prometheus answering HTTP 500 for a while, before the drill and
  again mid-drill: the retry policy rides through and the drill passes (this pins behaviour
  that was already right).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from tests.helpers import drill_process, report_json, run_cli, run_folder, wait_for_event, write_scenario
from tests.promfixture import PromEnv

pytestmark = pytest.mark.integration

LOGIN_PAGE = b"<!doctype html>\n<html><head><title>Grafana</title></head>\n<body>Sign in</body></html>\n"


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """`handler` on a free 127.0.0.1 port in a thread; its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class WebPage(BaseHTTPRequestHandler):
    """A web UI: every path is the same HTML page, HTTP 200."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(LOGIN_PAGE)))
        self.end_headers()
        self.wfile.write(LOGIN_PAGE)

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def silent_server() -> Iterator[str]:
    """Accepts every connection and never sends a byte."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []
    done = threading.Event()

    def accept() -> None:
        while not done.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        done.set()
        listener.close()
        for conn in held:
            conn.close()


def _drill(prom_env: PromEnv, tmp_path: Path) -> Path:
    prom_env.ensure_exporter()
    prom_env.wait_up()
    return write_scenario(tmp_path / "d.yaml", prom_env.scenario())


def test_a_web_page_is_not_prometheus_said_at_once(prom_env: PromEnv, tmp_path: Path) -> None:
    path = _drill(prom_env, tmp_path)
    pid = prom_env.exporter_pid()
    with serving(WebPage) as url:
        t0 = time.monotonic()
        r = run_cli("run", str(path), "--prometheus-url", url, "--report-dir", str(tmp_path / "r"), timeout=120)
        took = time.monotonic() - t0
    assert r.returncode == 3, f"exit {r.returncode}\n{r.stderr}"
    assert took < 15, f"took {took:.0f}s: a web page is not Prometheus starting up, nothing to wait for"
    said = [line for line in r.stderr.splitlines() if "is not the Prometheus API" in line]
    assert len(said) == 1, r.stderr
    assert "GET /api/v1/rules answered HTTP 200 with text/html" in said[0] and "<title>Grafana" in said[0], said[0]
    assert "Traceback" not in r.stderr and "JSONDecodeError" not in r.stderr, r.stderr
    report = report_json(run_folder(tmp_path / "r"))
    assert report["status"] == "inconclusive" and "is not the Prometheus API" in report["reason"], report["reason"]
    assert prom_env.exporter_pid() == pid, "nothing may be injected"


def test_a_server_that_never_answers_ends_the_drill_within_the_ready_timeout(prom_env: PromEnv, tmp_path: Path) -> None:
    path = _drill(prom_env, tmp_path)
    pid = prom_env.exporter_pid()
    with silent_server() as url:
        t0 = time.monotonic()
        r = run_cli(
            "run", str(path), "--prometheus-url", url, "--ready-timeout", "2", "--report-dir", str(tmp_path / "r"),
            timeout=120,
        )  # fmt: skip
        took = time.monotonic() - t0
    assert r.returncode == 3, f"exit {r.returncode}\n{r.stderr}"
    assert took < 7, f"--ready-timeout 2, yet the drill took {took:.1f}s"
    report = report_json(run_folder(tmp_path / "r"))
    reason = report["reason"]
    assert report["status"] == "inconclusive" and "\n" not in reason, reason
    assert reason == f"Prometheus at {url} not ready within 2s: Prometheus at {url}: GET /api/v1/rules: " + (
        "timed out, no answer"
    ), reason
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: {reason}; reverting"], r.stderr
    assert prom_env.exporter_pid() == pid, "nothing may be injected"


class Flaky:
    """A proxy in front of the real Prometheus that answers HTTP 500 to the next `failing`
    requests, then passes them through again; counts what it failed."""

    def __init__(self, upstream: str, failing: int) -> None:
        self.upstream, self.failing, self.failed = upstream, failing, 0
        self.lock = threading.Lock()

    def handler(self) -> type[BaseHTTPRequestHandler]:
        flaky = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with flaky.lock:
                    fail = flaky.failing > 0
                    flaky.failing -= fail
                    flaky.failed += fail
                if fail:
                    status, body, kind = 500, b"upstream overloaded\n", "text/plain"
                else:
                    up = requests.get(flaky.upstream + self.path, timeout=10)
                    status, body, kind = up.status_code, up.content, up.headers.get("Content-Type", "")
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        return Handler


def _run(path: Path, url: str, reports: Path) -> list[str]:
    return ["run", str(path), "--prometheus-url", url, "--report-dir", str(reports)]


def test_http_500_for_a_while_is_ridden_through(prom_env: PromEnv, tmp_path: Path) -> None:
    """Pins correct behaviour: 500s before the drill (the ready wait keeps waiting) and a burst
    of three mid-drill (the Prometheus policy: 5 attempts within 30 s) do not end the drill."""
    path = _drill(prom_env, tmp_path)
    flaky = Flaky(prom_env.url, failing=4)
    reports = tmp_path / "r"
    with serving(flaky.handler()) as url, drill_process(*_run(path, url, reports)) as proc:
        wait_for_event(reports, "injected")
        assert flaky.failed == 4, f"the ready wait saw {flaky.failed} failures"
        with flaky.lock:
            flaky.failing = 3  # the detection polls' next three requests fail
        _, err = proc.communicate(timeout=120)
    assert flaky.failed == 7, f"{flaky.failed} requests failed, expected 4 + 3"
    assert proc.returncode == 0, f"exit {proc.returncode}\n{err}"
    retried = [line for line in err.splitlines() if "failed; retrying in" in line]
    assert len(retried) >= 3 and all("HTTP 500: upstream overloaded" in line for line in retried), err
    report = report_json(run_folder(reports))
    assert report["status"] == "passed", report["reason"]
    assert 2.0 <= report["measures"]["time_to_detect"] < 10, report["measures"]
    prom_env.wait_up(30)  # the exporter is back for the next test
