"""Secrets never reach disk, terminals or command lines (issue 8, case 8).

Known secret values are planted in every input channel of a real lab drill — the database
password (environment), the Prometheus URL's userinfo and a Prometheus bearer token — and every
artefact is scanned for them: each file of the run folder, stdout, stderr, and the command line
of every process on the machine while the drill runs (the connection holder included). DSNs
carrying a password in any libpq form are refused before anything runs, without echoing it.
A Kubernetes drill's kubeconfig token and the data of the Secret it corrupts are scanned too.
"""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

import psutil
import pytest
import yaml

from tests.helpers import drillkit_cmd, run_cli, write_scenario
from tests.kube_drill import scenario as kube_scenario
from tests.kubecluster import KubeServer
from tests.promfixture import PromEnv
from tests.test_lab_e2e import Lab, lab, scenario_for, wait_steady  # noqa: F401 - the lab fixture

SHIPPED = Path(__file__).resolve().parents[1] / "scenarios" / "lab" / "database-exhaustion.yaml"
PG_PASSWORD = "Pg-S3cret-planted-1"
PROM_PASSWORD = "Prom-S3cret-planted-2"
PROM_TOKEN = "Tok-S3cret-planted-3"


@pytest.mark.parametrize(
    "dsn",
    [
        f"postgresql://chatbot:{PG_PASSWORD}@127.0.0.1/chatbot?password=&sslmode=disable",
        f"postgresql://chatbot:{PG_PASSWORD}@127.0.0.1/chatbot",
        f"postgresql://chatbot@127.0.0.1/chatbot?sslmode=disable&password={PG_PASSWORD}",
        f"host=127.0.0.1 user=chatbot password={PG_PASSWORD} dbname=chatbot",
        f"host=127.0.0.1 user=chatbot password='{PG_PASSWORD} x' dbname=chatbot",
    ],
)
def test_a_dsn_with_a_password_is_refused_without_echoing_it(tmp_path: Path, dsn: str) -> None:
    data = yaml.safe_load(SHIPPED.read_text().replace("${lab.port.postgres}", "5432"))
    data["faults"][0]["dsn"] = dsn
    r = run_cli("validate", str(write_scenario(tmp_path / "db.yaml", data)), timeout=60)
    assert r.returncode == 2 and "dsn: must not contain a password" in r.stderr, r.stderr
    assert PG_PASSWORD not in r.stdout + r.stderr


class CommandLines:
    """Every command line seen on the machine while it watches (polled every 50 ms)."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> CommandLines:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._stop.wait(0.05):
            for proc in psutil.process_iter(["cmdline"]):
                self.seen.add(" ".join(proc.info["cmdline"] or []))


@pytest.mark.integration
def test_no_planted_secret_reaches_any_artefact(lab: Lab) -> None:  # noqa: F811 - the fixture
    path = scenario_for(lab, "database-exhaustion", **{"recovery.within": "45s"})
    data = yaml.safe_load(path.read_text())
    data["faults"][0]["password_env"] = "DRILLKIT_TEST_PG_PASSWORD"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    wait_steady(lab, path)
    prom = lab.prom.replace("http://", f"http://drill:{PROM_PASSWORD}@")
    reports = lab.work / "reports" / "secrets"
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "DRILLKIT_TEST_PG_PASSWORD": PG_PASSWORD,
        "DRILLKIT_PROMETHEUS_TOKEN": PROM_TOKEN,
        "DRILLKIT_PROMETHEUS_URL": prom,  # from the environment, as a careful user passes it
    }
    with CommandLines() as cmdlines:
        r = subprocess.run(
            drillkit_cmd("run", str(path), "--report-dir", str(reports)),
            cwd=lab.work,
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
        )
    assert r.returncode in (0, 1), r.stderr  # ran to the end; the verdicts are not the point here
    (folder,) = reports.iterdir()
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert {"journal.jsonl", "report.md", "report.html", "report.json", "junit.xml"} <= {p.name for p in files}
    assert any("hold-connections" in c for c in cmdlines.seen), "the watcher never saw the connection holder"
    places = {str(p): p.read_text(errors="replace") for p in files}
    places |= {"stdout": r.stdout, "stderr": r.stderr}
    places |= {f"command line: {c[:80]}": c for c in cmdlines.seen}
    for secret in (PG_PASSWORD, PROM_PASSWORD, PROM_TOKEN):
        leaks = [where for where, text in places.items() if secret in text]
        assert not leaks, f"{secret} leaked into {leaks}"
    assert "drill:***@" in (folder / "journal.jsonl").read_text(), "the Prometheus URL is journalled, redacted"


@pytest.mark.integration
@pytest.mark.wire
def test_kubeconfig_credentials_and_secret_data_reach_no_artefact(
    kube_demo: KubeServer, prom_env: PromEnv, tmp_path: Path
) -> None:
    """A Kubernetes drill through the real CLI: the kubeconfig's token and the data of the Secret
    auth-secret-corruption backs up (plain and base64) appear in no file, no output."""
    import base64

    token = yaml.safe_load(Path(kube_demo.kubeconfig_path).read_text())["users"][0]["user"]["token"]
    secret = kube_demo.get("secrets", "chatbot", "chatbot-jwt")
    assert secret is not None and token
    value = base64.b64decode(secret["data"]["jwt-secret"]).decode()
    prom_env.ensure_exporter()
    prom_env.wait_up()
    path = write_scenario(
        tmp_path / "auth.yaml",
        kube_scenario([{"kind": "auth-secret-corruption", "secret": "chatbot-jwt", "key": "jwt-secret"}]),
    )
    reports = tmp_path / "reports"
    r = subprocess.run(
        drillkit_cmd("run", str(path), "--prometheus-url", prom_env.url, "--report-dir", str(reports)),
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "KUBECONFIG": kube_demo.kubeconfig_path},
    )
    (folder,) = reports.iterdir()
    assert "revert_done" in (folder / "journal.jsonl").read_text(), r.stderr
    places = {str(p): p.read_text(errors="replace") for p in folder.rglob("*") if p.is_file()}
    places |= {"stdout": r.stdout, "stderr": r.stderr}
    for planted in (token, value, secret["data"]["jwt-secret"]):
        leaks = [where for where, text in places.items() if planted in text]
        assert not leaks, f"{planted[:6]}… leaked into {leaks}"
