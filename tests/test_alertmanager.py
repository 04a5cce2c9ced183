"""Acknowledgement through Alertmanager: a silence created by on-call is the ack (real services)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from drillkit.alertmanager import Matcher
from tests.helpers import drill_process, report_json, run_folder, wait_for_event, write_scenario
from tests.promfixture import PromEnv

pytestmark = pytest.mark.integration
DATA = Path(__file__).parent / "data"


def test_silence_is_the_acknowledgement(prom_env: PromEnv, tmp_path: Path) -> None:
    assert prom_env.alertmanager is not None
    am = prom_env.alertmanager.url
    prom_env.ensure_exporter()
    prom_env.wait_up()
    data = prom_env.scenario(response={"acknowledge": "alertmanager", "within": "60s"})
    path = write_scenario(tmp_path / "d.yaml", data)
    reports = tmp_path / "reports"
    with drill_process(
        "run", str(path), "--prometheus-url", prom_env.url, "--alertmanager-url", am, "--report-dir", str(reports)
    ) as proc:
        wait_for_event(reports, "notified")
        now = datetime.now(UTC)
        silence = {
            "matchers": [{"name": "alertname", "value": "DemoExporterDown", "isRegex": False, "isEqual": True}],
            "startsAt": now.isoformat(),
            "endsAt": (now + timedelta(minutes=5)).isoformat(),
            "createdBy": "bob",
            "comment": "looking into it",
        }
        r = requests.post(f"{am}/api/v2/silences", json=silence, timeout=5)
        assert r.status_code == 200, r.text
        silence_id = r.json()["silenceID"]
        _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    rep = report_json(run_folder(reports))
    ack = next(e for e in rep["events"] if e["kind"] == "acknowledged")
    assert ack["by"] == "bob" and silence_id in ack["note"], ack
    stored = requests.get(f"{am}/api/v2/silence/{silence_id}", timeout=5).json()
    updated = datetime.fromisoformat(stored["updatedAt"].replace("Z", "+00:00"))
    detected = next(e for e in rep["events"] if e["kind"] == "detected")
    detected_at = datetime.fromisoformat(detected["at"].replace("Z", "+00:00"))
    expected = (updated - detected_at).total_seconds()
    assert rep["measures"]["time_to_acknowledge"] == pytest.approx(expected, abs=0.01), (
        f"ack time must be the silence's updatedAt ({stored['updatedAt']}), not when we polled"
    )
    notified = next(e for e in rep["events"] if e["kind"] == "notified")
    assert notified["at"] >= detected["at"]
    requests.delete(f"{am}/api/v2/silence/{silence_id}", timeout=5)


@pytest.mark.parametrize(
    ("matcher", "labels", "hit"),
    [
        (Matcher("alertname", "X"), {"alertname": "X"}, True),
        (Matcher("alertname", "X", is_equal=False), {"alertname": "X"}, False),
        (Matcher("severity", "P[12]", is_regex=True), {"severity": "P2"}, True),
        (Matcher("severity", "P[12]", is_regex=True), {"severity": "P3"}, False),
        (Matcher("team", "sre"), {"alertname": "X"}, False),
    ],
)
def test_silence_matchers(matcher: Matcher, labels: dict[str, str], hit: bool) -> None:
    assert matcher.matches(labels) is hit


def test_silence_wait_ends_at_the_deadline_or_on_a_stop_request(prom_env: PromEnv) -> None:
    import threading
    import time

    from drillkit.alertmanager import Alertmanager, AlertmanagerAck
    from drillkit.signals import StopFlag

    assert prom_env.alertmanager is not None
    stop = StopFlag()
    am = Alertmanager(prom_env.alertmanager.url, stop)
    am.wait_ready(timeout=10)
    ticks: list[float] = []
    waiter = AlertmanagerAck(am, "DemoNeverFires", ())
    t = time.monotonic()
    assert waiter.wait(datetime.now(UTC), t + 0.6, stop, lambda: ticks.append(time.monotonic())) is None
    assert 0.5 <= time.monotonic() - t < 3 and len(ticks) >= 2, f"polled {len(ticks)} times, every 0.25 s"
    threading.Timer(0.3, stop.set, args=("test stop",)).start()
    t = time.monotonic()
    assert waiter.wait(datetime.now(UTC), t + 60, stop, lambda: None) is None
    assert time.monotonic() - t < 3, "a stop request ends the wait for a silence"
    am.close()
