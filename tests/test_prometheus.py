"""The Prometheus boundary: errors are drillkit's own, retries follow the written policy."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from drillkit.errors import (
    DrillkitError,
    PermanentError,
    PreflightError,
    RejectedRequest,
    TransientError,
    UnavailableError,
)
from drillkit.lab.services import free_port
from drillkit.prometheus import PromConfig, Prometheus
from drillkit.signals import StopFlag
from tests.helpers import report_json, run_cli, run_folder, write_scenario
from tests.promfixture import PromEnv

DATA = Path(__file__).parent / "data"


class FlakyPrometheus(BaseHTTPRequestHandler):
    """Answers /api/v1/query with 503 for the first `failures` calls, then a vector."""

    failures = 2
    calls: list[str] = []
    auth: list[str | None] = []

    def do_GET(self) -> None:
        FlakyPrometheus.calls.append(self.path)
        FlakyPrometheus.auth.append(self.headers.get("Authorization"))
        if len(FlakyPrometheus.calls) <= FlakyPrometheus.failures:
            body, code = b"overloaded", 503
        else:
            body = json.dumps(
                {
                    "status": "success",
                    "data": {"resultType": "vector", "result": [{"metric": {"job": "x"}, "value": [1700000000, "3"]}]},
                }
            ).encode()
            code = 200
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def flaky() -> Iterator[str]:
    FlakyPrometheus.calls, FlakyPrometheus.auth = [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FlakyPrometheus)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_5xx_is_retried_then_succeeds_with_bearer_token(flaky: str) -> None:
    prom = Prometheus(PromConfig(url=flaky, bearer_token="s3cret"))
    samples = prom.query("up")
    prom.close()
    assert [s.value for s in samples] == [3.0]
    assert len(FlakyPrometheus.calls) == 3, FlakyPrometheus.calls
    assert set(FlakyPrometheus.auth) == {"Bearer s3cret"}


def test_connection_refused_is_transient_not_a_requests_error() -> None:
    prom = Prometheus(PromConfig(url=f"http://127.0.0.1:{free_port()}", timeout=1))
    with pytest.raises(UnavailableError, match=r"not ready within 0\.5s: Prometheus at .* unreachable"):
        prom.wait_ready(timeout=0.5)
    prom.close()


class CannedApi(BaseHTTPRequestHandler):
    """Answers every GET with the same status and body; counts the calls."""

    status = 200
    body = b""
    calls = 0

    def do_GET(self) -> None:
        CannedApi.calls += 1
        self.send_response(CannedApi.status)
        self.send_header("Content-Length", str(len(CannedApi.body)))
        self.end_headers()
        self.wfile.write(CannedApi.body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def canned() -> Iterator[str]:
    CannedApi.calls = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), CannedApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


PROM_ERROR = b'{"status": "error", "errorType": "bad_data", "error": "unknown function"}'


@pytest.mark.parametrize(
    ("status", "body", "error", "message", "calls"),
    [
        (400, PROM_ERROR, RejectedRequest, r"{api}: HTTP 400: bad_data: unknown function$", 1),
        (401, b"no", PermanentError, r"{api}: HTTP 401: check the token or credentials$", 1),
        (404, b"404 page not found", PermanentError, r"{api}: HTTP 404: 404 page not found$", 1),
        (429, b"slow down", TransientError, r"{api}: HTTP 429: slow down$", 2),
        (503, b"", TransientError, r"{api}: HTTP 503$", 2),
        (200, b"<html>a proxy login page</html>", TransientError, r"{api}: bad response: ", 2),
    ],
)
def test_one_error_mapping_for_queries_and_gets(
    canned: str, status: int, body: bytes, error: type[Exception], message: str, calls: int
) -> None:
    """custom_query (prometheus_api_client), our own GETs and Alertmanager's are classified
    alike, by status; transient errors are retried, ours never; no third-party error escapes."""
    from drillkit.alertmanager import Alertmanager
    from drillkit.retry import retrying

    CannedApi.status, CannedApi.body = status, body
    fast = {"attempts": 2, "max_delay": 5, "initial": 0.01, "maximum": 0.01}
    prom = Prometheus(PromConfig(url=canned))
    am = Alertmanager(canned)
    calls_of = {
        "Prometheus GET /api/v1/query": lambda: prom.query("up"),
        "Prometheus GET /api/v1/rules": prom.rules,
        "Alertmanager GET /api/v2/silences": am.silences,
    }
    with pytest.MonkeyPatch.context() as mp:  # the real policy, with quick back-offs
        mp.setattr("drillkit.httpapi.retrying", lambda what, stop, **kw: retrying(what, stop, **{**kw, **fast}))
        for api, call in calls_of.items():
            CannedApi.calls = 0
            with pytest.raises(DrillkitError) as caught:
                call()
            assert type(caught.value) is error, f"{api}: {caught.value!r}"
            assert re.match(message.format(api=api), str(caught.value)), f"{api}: {caught.value}"
            assert CannedApi.calls == calls, f"{api}: {CannedApi.calls} calls"
    prom.close()
    am.close()


def test_a_prometheus_body_without_data_is_a_bad_response(canned: str) -> None:
    CannedApi.status, CannedApi.body = 200, b'{"status": "success"}'
    prom = Prometheus(PromConfig(url=canned))
    with pytest.MonkeyPatch.context() as mp:
        from drillkit.retry import retrying

        mp.setattr("drillkit.httpapi.retrying", lambda what, stop, **kw: retrying(what, stop, attempts=1))
        for call in (lambda: prom.query("up"), prom.rules):
            with pytest.raises(TransientError, match=r"Prometheus GET /api/v1/\w+: bad response: KeyError\('data'\)"):
                call()
    prom.close()


def test_a_stop_request_ends_retries_and_the_ready_wait(canned: str) -> None:
    import time

    from drillkit.errors import Aborted

    CannedApi.status, CannedApi.body = 503, b"starting"
    stop = StopFlag()
    prom = Prometheus(PromConfig(url=canned), stop)
    threading.Timer(0.3, stop.set, args=("test stop",)).start()
    t = time.monotonic()
    with pytest.raises(Aborted, match="test stop"):
        prom.wait_ready(timeout=30)
    assert time.monotonic() - t < 3, "wait_ready must end when the drill is stopped"
    t = time.monotonic()
    with pytest.raises(Aborted, match="test stop"):
        prom.query("up")  # the first back-off already sees the stop request
    assert time.monotonic() - t < 3
    prom.close()


@pytest.mark.integration
def test_errors_from_a_real_prometheus_are_wrapped(prom_env: PromEnv) -> None:
    prom = Prometheus(PromConfig(url=prom_env.url))
    try:
        with pytest.raises(PermanentError, match=r"GET /api/v1/query: HTTP 400: bad_data: .*parse error"):
            prom.query("sum(up")  # a PromQL syntax error is our input: never retried
        with pytest.raises(PreflightError, match="did you mean 'DemoExporterDown'"):
            prom.rule("DemoExporterDwn")
        target = prom.target("DemoExporterDown", ())
        rule = target.rule
        assert rule.for_seconds == 2.0 and rule.last_evaluation is not None
        since = datetime.now(UTC) + timedelta(seconds=60)
        assert prom.firing_time(target, since) is None
        (now,) = prom.query("time()")  # a scalar: one unlabelled sample
        assert now.labels == {} and abs(now.value - datetime.now(UTC).timestamp()) < 5, now
    finally:
        prom.close()
    assert not issubclass(TransientError, PermanentError)


@pytest.mark.integration
def test_abort_condition_stops_and_reverts(prom_env: PromEnv, tmp_path: Path) -> None:
    prom_env.ensure_exporter()
    prom_env.wait_up()
    old = prom_env.exporter_pid()
    data = prom_env.scenario(detection={"alert": "DemoSlowToFire", "within": "60s"})
    data["guardrails"] = {"abort_when": [{"name": "exporter down", "expr": 'up{job="demo"} == 0'}]}
    path = write_scenario(tmp_path / "d.yaml", data)
    reports = tmp_path / "reports"
    r = run_cli("run", str(path), "--prometheus-url", prom_env.url, "--report-dir", str(reports))
    assert r.returncode == 1, r.stderr
    rep = report_json(run_folder(reports))
    assert rep["status"] == "aborted"
    aborted = next(e for e in rep["events"] if e["kind"] == "aborted")
    assert aborted["reason"] == "abort condition exporter down holds" and aborted["by_signal"] is False
    assert aborted["offset_seconds"] < 10, "the abort condition is checked every second during waits"
    kinds = [e["kind"] for e in rep["events"]]
    assert kinds.index("aborted") < kinds.index("revert_done") < kinds.index("reverted")
    assert prom_env.exporter_pid() != old


@pytest.mark.parametrize(("for_s", "interval", "fires"), [(2, 1, 2), (3, 2, 4), (0, 1, 0), (5, 0, 5), (2.5, 1, 3)])
def test_firing_comes_at_the_first_evaluation_after_for(for_s: float, interval: float, fires: float) -> None:
    from drillkit.prometheus import AlertRule

    assert AlertRule("A", for_s, "", {}, "g", None, interval).fires_after == fires


class RawSamplesPrometheus(BaseHTTPRequestHandler):
    """No active alert; ALERTS firing samples: an episode at 100-102 s and one from 110 s."""

    def do_GET(self) -> None:
        if self.path.startswith("/api/v1/alerts"):
            data: object = {"alerts": []}
        else:
            data = {
                "resultType": "matrix",
                "result": [
                    {"metric": {"alertname": "A"}, "values": [[t, "1"] for t in (100.0, 101.0, 102.0, 110.0, 111.0)]}
                ],
            }
        body = json.dumps({"status": "success", "data": data}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_resolved_alert_time_is_the_start_of_an_episode_after_injection() -> None:
    from drillkit.prometheus import AlertRule, AlertTarget

    server = ThreadingHTTPServer(("127.0.0.1", 0), RawSamplesPrometheus)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    prom = Prometheus(PromConfig(url=f"http://127.0.0.1:{server.server_address[1]}"))
    rule = AlertTarget("A", (), (AlertRule("A", 2.0, "", {}, "g", None, 1.0),))
    try:
        at = lambda ts: datetime.fromtimestamp(ts, UTC)  # noqa: E731
        assert prom.firing_time(rule, at(99.5)) == (at(100.0), "first raw ALERTS firing sample")
        # injected mid-episode: that episode began before the fault, the next one counts
        assert prom.firing_time(rule, at(100.5)) == (at(110.0), "first raw ALERTS firing sample")
        assert prom.firing_time(rule, at(110.5)) is None
    finally:
        prom.close()
        server.shutdown()
        server.server_close()
        thread.join()


def test_retry_backoff_gives_up_when_the_drill_is_stopped_but_not_while_reverting() -> None:
    import time

    from drillkit.errors import Aborted
    from drillkit.retry import retrying
    from drillkit.signals import StopFlag, handle_signals

    calls: list[float] = []

    def always_down() -> None:
        calls.append(time.monotonic())
        raise TransientError("down")

    flag = StopFlag()
    with handle_signals(flag):
        threading.Timer(0.3, flag.set, args=("test stop",)).start()
        t = time.monotonic()
        with pytest.raises(Aborted, match="test stop"):
            retrying("x", flag, attempts=20, max_delay=60, initial=1.0, maximum=1.0)(always_down)
        assert time.monotonic() - t < 5.0, "a stop request must cut a back-off short"
        calls.clear()
        with flag.protect(), pytest.raises(TransientError):
            retrying("x", flag, attempts=3, max_delay=60, initial=0.1, maximum=0.1)(always_down)
        assert len(calls) == 3, "reverts keep retrying after a stop request"


@pytest.mark.integration
def test_abort_condition_holding_before_injection_means_not_started(prom_env: PromEnv, tmp_path: Path) -> None:
    prom_env.ensure_exporter()
    prom_env.wait_up()
    pid = prom_env.exporter_pid()
    data = yaml.safe_load((DATA / "exporter-kill.yaml").read_text())
    data["faults"][0]["pidfile"] = str(prom_env.pidfile)
    data["guardrails"] = {"abort_when": [{"name": "exporter up", "expr": 'up{job="demo"} == 1'}]}
    path = write_scenario(tmp_path / "d.yaml", data)
    r = run_cli("run", str(path), "--prometheus-url", prom_env.url, "--report-dir", str(tmp_path / "r"))
    assert r.returncode == 5, r.stderr  # not started: retry later
    rep = report_json(run_folder(tmp_path / "r"))
    assert rep["status"] == "not-started" and "abort condition already holds" in rep["reason"]
    assert prom_env.exporter_pid() == pid and Path(f"/proc/{pid}").exists(), "nothing may be injected"


def test_sigint_while_waiting_for_prometheus_exits_130(tmp_path: Path) -> None:
    import signal
    import subprocess
    import time

    from tests.helpers import drillkit_cmd

    data = yaml.safe_load((DATA / "exporter-kill.yaml").read_text())
    path = write_scenario(tmp_path / "d.yaml", data)
    proc = subprocess.Popen(
        drillkit_cmd(
            "run",
            str(path),
            "--prometheus-url",
            f"http://127.0.0.1:{free_port()}",
            "--ready-timeout",
            "60",
            "--report-dir",
            str(tmp_path / "r"),
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.5)
    t = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert time.monotonic() - t < 5
    assert report_json(run_folder(tmp_path / "r"))["status"] == "aborted"


class AuthCheckingPrometheus(BaseHTTPRequestHandler):
    """A TLS endpoint answering one vector, recording the Authorization header."""

    seen: list[str | None] = []

    def do_GET(self) -> None:
        AuthCheckingPrometheus.seen.append(self.headers.get("Authorization"))
        body = json.dumps(
            {
                "status": "success",
                "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1700000000, "7"]}]},
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_basic_auth_and_a_custom_ca_over_tls(tmp_path: Path) -> None:
    import base64
    import ssl
    import subprocess

    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), AuthCheckingPrometheus)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"https://127.0.0.1:{server.server_address[1]}"
    AuthCheckingPrometheus.seen = []
    try:
        prom = Prometheus(PromConfig(url=url, username="drill", password="s3cret", ca_file=str(cert)))
        assert [s.value for s in prom.query("up")] == [7.0]
        prom.close()
        assert AuthCheckingPrometheus.seen == ["Basic " + base64.b64encode(b"drill:s3cret").decode()]
        untrusted = Prometheus(PromConfig(url=url))  # the system CAs do not know this certificate
        with pytest.raises(PermanentError, match="cannot be used"):
            untrusted.query("up")
        untrusted.close()
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
