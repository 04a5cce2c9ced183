"""A real Prometheus (1 s scrape/eval) scraping a real exporter process, for integration tests."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from drillkit.lab.services import PrometheusSetup, Service, free_port, start_alertmanager, start_prometheus

HERE = Path(__file__).parent
RULES = """
groups:
  - name: demo
    interval: 1s
    rules:
      - alert: DemoExporterDown
        expr: up{job="demo"} == 0
        for: 2s
        labels: {severity: P2}
      - alert: DemoSlowToFire
        expr: up{job="demo"} == 0
        for: 60s
        labels: {severity: P3}
      - alert: DemoNeverFires
        expr: up{job="demo"} == 42
        for: 1s
        labels: {severity: P3}
"""


@dataclass
class PromEnv:
    prometheus: Service
    url: str
    alertmanager: Service | None
    exporter_port: int
    pidfile: Path
    workdir: Path

    def restart_command(self) -> list[str]:
        return [sys.executable, str(HERE / "fake_exporter.py"), str(self.exporter_port), str(self.pidfile)]

    def scenario(self, **overrides: object) -> dict[str, object]:
        """tests/data/exporter-kill.yaml aimed at this exporter, with top-level overrides."""
        import yaml

        data = yaml.safe_load((HERE / "data" / "exporter-kill.yaml").read_text())
        data["faults"][0]["pidfile"] = str(self.pidfile)
        data["faults"][0]["restart"] = self.restart_command()
        return {**data, **overrides}

    def exporter_pid(self) -> int:
        return int(self.pidfile.read_text())

    def wait_up(self, timeout: float = 20) -> None:
        """Until Prometheus sees the exporter up (steady state for the next drill)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = requests.get(f"{self.url}/api/v1/query", params={"query": 'up{job="demo"}'}, timeout=2)
            res = r.json()["data"]["result"]
            firing = requests.get(f"{self.url}/api/v1/alerts", timeout=2).json()["data"]["alerts"]
            if res and res[0]["value"][1] == "1" and not firing:
                return
            time.sleep(0.3)
        raise AssertionError(f"exporter not up in Prometheus within {timeout}s")

    def ensure_exporter(self) -> None:
        try:
            pid = self.exporter_pid()
            os.kill(pid, 0)
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                return
        except (OSError, ValueError):
            pass
        subprocess.Popen(
            self.restart_command(), start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )


@pytest.fixture(scope="session")
def prom_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PromEnv]:
    work = tmp_path_factory.mktemp("prom")
    port = free_port()
    pidfile = work / "exporter.pid"
    (work / "rules.yml").write_text(RULES)
    env = PromEnv(
        prometheus=None,
        url="",
        alertmanager=None,
        exporter_port=port,  # type: ignore[arg-type]
        pidfile=pidfile,
        workdir=work,
    )
    env.ensure_exporter()
    env.alertmanager = start_alertmanager(work / "alertmanager")
    prom = start_prometheus(
        work / "prometheus",
        PrometheusSetup(
            scrape={"demo": [f"127.0.0.1:{port}"]},
            rule_files=[work / "rules.yml"],
            alertmanager=env.alertmanager.url.removeprefix("http://"),
        ),
    )
    env.prometheus, env.url = prom, prom.url
    try:
        env.wait_up(30)
        yield env
    finally:
        prom.stop()
        env.alertmanager.stop()
        with contextlib.suppress(OSError, ValueError):
            os.kill(env.exporter_pid(), 9)
