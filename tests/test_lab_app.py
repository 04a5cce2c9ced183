"""The demo chat API and traffic generator, as real processes against a real PostgreSQL.

Drills only mean something if the victim behaves like a service: answers, stores, rejects bad
tokens, fails fast (503, not a hang) when its database goes away, recovers when it returns,
exposes the metrics the alert rules use, and stops cleanly.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import jwt
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.helpers import reaped
from tests.pgutil import PG_BIN, Postgres, free_port, start_postgres

pytestmark = pytest.mark.integration

SECRET = "s3cret-" + "x" * 40
OTHER_SECRET = "another-" + "y" * 40
POOL_SIZE = 4


@dataclass
class Replica:
    name: str
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)


def start_replica(tmp: Path, dsn: str, secret_file: Path, name: str) -> Replica:
    port, log = free_port(), tmp / f"app-{name}.log"
    argv = [
        sys.executable,
        "-m",
        "drillkit.lab.app",
        "--port",
        str(port),
        "--dsn",
        dsn,
        "--jwt-secret-file",
        str(secret_file),
        "--replica",
        name,
        "--pool-size",
        str(POOL_SIZE),
        "--pool-timeout",
        "0.5",
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    return Replica(name, f"http://127.0.0.1:{port}", proc, log)


def wait_status(url: str, status: int, timeout: float = 15.0) -> float:
    """Poll until ``url`` answers ``status``; returns the seconds it took."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            if requests.get(url, timeout=1).status_code == status:
                return time.monotonic() - start
        except requests.RequestException:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{url} did not answer {status} within {timeout}s")


def login(url: str, user: str = "alice") -> str:
    resp = requests.post(f"{url}/login", json={"user": user, "password": "drill"}, timeout=2)
    assert resp.status_code == 200, resp.text
    return str(resp.json()["token"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def metrics(url: str) -> list[Sample]:
    """All samples of ``url``/metrics, parsed with prometheus_client's own text parser."""
    text = requests.get(f"{url}/metrics", timeout=2).text
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def sample(samples: list[Sample], name: str, **labels: str) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels``."""
    values = [s.value for s in samples if s.name == name and labels.items() <= s.labels.items()]
    assert values, f"no {name}{labels} in /metrics"
    return float(sum(values))


@dataclass
class Lab:
    pg: Postgres
    dsn: str
    secret_file: Path
    tmp: Path
    a: Replica
    b: Replica


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    tmp = tmp_path_factory.mktemp("lab")
    pg = start_postgres(tmp, free_port(), max_connections=20)
    replicas: list[Replica] = []
    try:
        pg.create_database("chat")
        secret_file = tmp / "jwt-secret"
        secret_file.write_text(SECRET + "\n")
        replicas = [start_replica(tmp, pg.dsn("chat"), secret_file, n) for n in ("a", "b")]
        for r in replicas:
            wait_status(f"{r.url}/readyz", 200)
        yield Lab(pg, pg.dsn("chat"), secret_file, tmp, *replicas)
    finally:
        for r in replicas:
            r.stop()
        pg.destroy()


def test_login_chat_and_read_back(lab: Lab) -> None:
    token = login(lab.a.url)
    for replica, text in ((lab.a, "hello from a"), (lab.b, "hello from b")):
        resp = requests.post(f"{replica.url}/chat", json={"message": text}, headers=bearer(token), timeout=2)
        assert resp.status_code == 200, resp.text
        assert resp.json()["replica"] == replica.name
        assert text in resp.json()["reply"]
    resp = requests.get(f"{lab.b.url}/conversations/alice", headers=bearer(token), timeout=2)
    assert resp.status_code == 200, resp.text
    messages = [(m["role"], m["body"], m["replica"]) for m in resp.json()["messages"]]
    assert ("user", "hello from a", "a") in messages
    assert ("user", "hello from b", "b") in messages
    assert sum(role == "bot" for role, _, _ in messages) >= 2
    other = requests.get(f"{lab.a.url}/conversations/bob", headers=bearer(token), timeout=2)
    assert other.status_code == 403


def test_rejects_missing_bad_foreign_and_expired_tokens(lab: Lab) -> None:
    before = sample(metrics(lab.a.url), "chatbot_auth_failures_total")
    now = int(time.time())
    foreign = jwt.encode({"sub": "alice", "exp": now + 60}, OTHER_SECRET, algorithm="HS256")
    expired = jwt.encode({"sub": "alice", "exp": now - 60}, SECRET, algorithm="HS256")
    for headers in ({}, bearer("not-a-jwt"), bearer(foreign), bearer(expired), {"Authorization": f"Basic {foreign}"}):
        resp = requests.post(f"{lab.a.url}/chat", json={"message": "x"}, headers=headers, timeout=2)
        assert resp.status_code == 401, (headers, resp.text)
    bad_login = requests.post(f"{lab.a.url}/login", json={"user": "alice", "password": "nope"}, timeout=2)
    assert bad_login.status_code == 401
    after = metrics(lab.a.url)
    assert sample(after, "chatbot_auth_failures_total") - before == 6
    assert sample(after, "chatbot_http_requests_total", route="/chat", code="401") >= 5


def test_metrics_expose_the_series_the_rules_use(lab: Lab) -> None:
    token = login(lab.b.url, "carol")
    for _ in range(3):
        requests.post(f"{lab.b.url}/chat", json={"message": "m"}, headers=bearer(token), timeout=2).raise_for_status()
    requests.get(f"{lab.b.url}/conversations/carol", headers=bearer(token), timeout=2).raise_for_status()
    m = metrics(lab.b.url)
    assert sample(m, "chatbot_http_requests_total", route="/chat", method="POST", code="200") >= 3
    assert sample(m, "chatbot_http_requests_total", route="/conversations/{user}", method="GET", code="200") >= 1
    assert sample(m, "chatbot_http_requests_total", route="/login", method="POST", code="200") >= 1
    buckets = {
        s.labels["le"]: s.value
        for s in m
        if s.labels.get("route") == "/chat" and s.name == "chatbot_http_request_duration_seconds_bucket"
    }
    assert {"0.005", "0.5", "5.0", "+Inf"} <= set(buckets)
    assert buckets["+Inf"] >= 3
    assert sample(m, "chatbot_http_request_duration_seconds_count", route="/chat") >= 3
    assert sample(m, "chatbot_db_pool_size") == POOL_SIZE
    assert sample(m, "chatbot_db_pool_in_use") == 0
    assert sample(m, "chatbot_db_errors_total") == 0
    failures = sample(m, "chatbot_auth_failures_total")  # exposed, and counts each rejection
    rejected = requests.post(f"{lab.b.url}/chat", json={"message": "m"}, headers=bearer("not-a-jwt"), timeout=2)
    assert rejected.status_code == 401, rejected.text
    assert sample(metrics(lab.b.url), "chatbot_auth_failures_total") == failures + 1
    assert sample(m, "process_resident_memory_bytes") > 10e6
    assert sample(m, "process_start_time_seconds") > 0
    assert sample(m, "chatbot_replica_info", replica="b") == 1


def test_traffic_generator_drives_requests_and_survives_dead_targets(lab: Lab) -> None:
    def served() -> float:
        return sum(sample(metrics(r.url), "chatbot_http_requests_total", route="/chat") for r in (lab.a, lab.b))

    before, dead, metrics_port = served(), f"http://127.0.0.1:{free_port()}", free_port()
    argv = [
        sys.executable,
        "-m",
        "drillkit.lab.traffic",
        "--rps",
        "10",
        "--duration",
        "3",
        "--targets",
        f"{lab.a.url},{lab.b.url},{dead}",
        "--metrics-port",
        str(metrics_port),
    ]
    with reaped(subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)) as proc:
        wait_status(f"http://127.0.0.1:{metrics_port}/metrics", 200, timeout=5)
        time.sleep(1)
        own = {
            s.labels["target"] + " " + s.labels["outcome"]: s.value
            for f in text_string_to_metric_families(
                requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2).text
            )
            for s in f.samples
            if s.name == "chatbot_traffic_requests_total"
        }
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert own.get(f"{lab.a.url} ok", 0) >= 1 and own.get(f"{dead} connection_error", 0) >= 1
    summary = json.loads(out)["requests"]
    assert summary[dead] == {"connection_error": summary[dead]["connection_error"]}
    assert summary[lab.a.url]["ok"] >= 8 and summary[lab.b.url]["ok"] >= 8, summary
    assert served() - before >= 12


def test_traffic_generator_exits_zero_on_sigterm(lab: Lab) -> None:
    argv = [sys.executable, "-m", "drillkit.lab.traffic", "--rps", "5", "--targets", lab.a.url]
    with reaped(subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)) as proc:
        time.sleep(1.5)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert json.loads(out)["requests"][lab.a.url]["ok"] >= 1


def test_unusable_secret_fails_every_auth_until_restored(lab: Lab) -> None:
    bad_file = lab.tmp / "corrupted-secret"
    bad_file.write_text("corrupted\n")
    replica = start_replica(lab.tmp, lab.dsn, bad_file, "corrupt")
    try:
        wait_status(f"{replica.url}/healthz", 200)
        good_token = login(lab.a.url)
        assert (
            requests.post(f"{replica.url}/login", json={"user": "alice", "password": "drill"}, timeout=2).status_code
            == 401
        )
        assert (
            requests.post(
                f"{replica.url}/chat", json={"message": "x"}, headers=bearer(good_token), timeout=2
            ).status_code
            == 401
        )
    finally:
        assert replica.stop() == 0


def test_sigterm_exits_zero_promptly(lab: Lab) -> None:
    replica = start_replica(lab.tmp, lab.dsn, lab.secret_file, "short-lived")
    try:
        startup = wait_status(f"{replica.url}/readyz", 200)
        assert startup < 5, f"replica took {startup:.2f}s to become ready"
    finally:
        start = time.monotonic()
        code = replica.stop()
    assert code == 0, replica.log.read_text()
    assert time.monotonic() - start < 3


def test_a_new_empty_database_gets_the_schema_again(lab: Lab) -> None:
    """The kind platform's database has no volume: after a node drain its pod starts empty
    behind the same address. The replicas, which created the schema once, create it again at
    the first `UndefinedTable` instead of answering 503 until restarted."""
    token = login(lab.a.url)
    psql = [str(PG_BIN / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", lab.pg.dsn()]
    subprocess.run([*psql, "-c", "DROP DATABASE chat WITH (FORCE)"], check=True, capture_output=True)
    subprocess.run([*psql, "-c", "CREATE DATABASE chat"], check=True, capture_output=True)
    for replica in (lab.a, lab.b):
        deadline, status = time.monotonic() + 10, 0
        while time.monotonic() < deadline and status != 200:
            resp = requests.post(f"{replica.url}/chat", json={"message": "hi"}, headers=bearer(token), timeout=5)
            status = resp.status_code
            time.sleep(0.2)
        assert status == 200, f"{replica.name} still answers {status}: {resp.text}"
        read = requests.get(f"{replica.url}/conversations/alice", headers=bearer(token), timeout=5)
        assert read.status_code == 200 and read.json(), read.text


def test_database_outage_gives_fast_503_then_recovers(lab: Lab) -> None:
    """Runs last in this module: it stops and restarts the shared PostgreSQL."""
    token = login(lab.a.url)
    lab.pg.stop()
    late: Replica | None = None
    try:
        start = time.monotonic()
        assert requests.get(f"{lab.a.url}/readyz", timeout=5).status_code == 503
        assert time.monotonic() - start < 3
        for path, call in (("/chat", requests.post), ("/conversations/alice", requests.get)):
            start = time.monotonic()
            resp = call(f"{lab.a.url}{path}", json={"message": "x"}, headers=bearer(token), timeout=5)
            assert resp.status_code == 503, resp.text
            assert time.monotonic() - start < 3
        assert requests.get(f"{lab.a.url}/healthz", timeout=2).status_code == 200
        assert sample(metrics(lab.a.url), "chatbot_db_errors_total") >= 2
        # A replica started while the database is down serves anyway and reports not-ready.
        late = start_replica(lab.tmp, lab.dsn, lab.secret_file, "late")
        wait_status(f"{late.url}/healthz", 200)
        assert requests.get(f"{late.url}/readyz", timeout=5).status_code == 503
    finally:
        lab.pg.start()
    try:
        wait_status(f"{lab.a.url}/readyz", 200, timeout=10)
        resp = requests.post(f"{lab.a.url}/chat", json={"message": "back"}, headers=bearer(token), timeout=2)
        assert resp.status_code == 200, resp.text
        assert late is not None
        wait_status(f"{late.url}/readyz", 200, timeout=10)
    finally:
        if late is not None:
            assert late.stop() == 0
