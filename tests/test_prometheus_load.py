"""A drill is a light load on Prometheus (issue 12): at most 2 requests/s averaged over a real
lab drill, counted at a proxy in front of the lab's real Prometheus, with detection still exact
(Prometheus's own `activeAt + for`, within 5 ms of its first raw ALERTS sample)."""

from __future__ import annotations

import json
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from drillkit.prometheus import PromConfig, Prometheus
from tests.helpers import drillkit_cmd
from tests.promfixture import PromEnv
from tests.test_lab_e2e import Lab, first_firing_sample, lab, scenario_for, ts, wait_steady  # noqa: F401


@contextmanager
def counting_proxy(upstream: str) -> Iterator[tuple[str, list[str]]]:
    """An HTTP proxy to `upstream` that records the path of every request it forwards."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path.split("?")[0])
            try:
                with urllib.request.urlopen(upstream + self.path, timeout=10) as r:
                    body, status, ctype = r.read(), r.status, r.headers.get("Content-Type", "application/json")
            except urllib.error.HTTPError as err:  # a 4xx/5xx is an answer too: pass it on
                body, status, ctype = err.read(), err.code, err.headers.get("Content-Type", "application/json")
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.integration
def test_a_lab_drill_sends_at_most_two_requests_a_second(lab: Lab, tmp_path: Path) -> None:  # noqa: F811
    path = scenario_for(lab, "outage")
    wait_steady(lab, path)
    reports = tmp_path / "reports"
    with counting_proxy(lab.prom) as (url, seen):
        r = subprocess.run(
            drillkit_cmd("run", str(path), "--prometheus-url", url, "--report-dir", str(reports)),
            cwd=lab.work,
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert r.returncode == 0, r.stderr
        (folder,) = reports.iterdir()
        report = json.loads((folder / "report.json").read_text())
        events = {e["kind"]: e for e in reversed(report["events"])}
        started, finished = ts(report["started_at"]), ts(events["finished"]["at"])
        during = len(seen)
    rate = during / (finished - started)
    assert rate <= 2.0, f"{during} requests in {finished - started:.1f} s = {rate:.2f}/s: {seen}"
    injected = ts(events["injected"]["at"])
    reference = first_firing_sample(lab, "ChatbotServiceDown", injected - 0.5) - injected
    measured = report["measures"]["time_to_detect"]
    assert abs(measured - reference) < 0.005, f"detection off by {abs(measured - reference) * 1000:.1f} ms"
    print(f"{during} requests in {finished - started:.1f} s ({rate:.2f}/s); detection exact to the ms")


@pytest.mark.integration
def test_probes_are_one_request_and_scalars_fall_back(prom_env: PromEnv) -> None:
    prom = Prometheus(PromConfig(url=prom_env.url))
    try:
        with counting_proxy(prom_env.url) as (url, seen):
            proxied = Prometheus(PromConfig(url=url))
            try:
                up, count = proxied.query_many(['up{job="demo"}', 'count(up{job="demo"})'])
                assert len(seen) == 1, seen
                assert [s.value for s in up] == [s.value for s in prom.query('up{job="demo"}')]
                assert count[0].labels == {} and count[0].value == len(up)
                assert "drillkit_probe" not in up[0].labels
                scalar, vector = proxied.query_many(["time()", 'up{job="demo"}'])  # time() cannot be tagged
                assert len(scalar) == 1 and vector, (scalar, vector)
            finally:
                proxied.close()
    finally:
        prom.close()
