"""Small helpers shared by tests: write a scenario file, run the real CLI as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml


def write_scenario(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def drillkit_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "drillkit.cli", *args]


def run_cli(
    *args: str, timeout: float = 120, env_extra: dict[str, str] | None = None, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env_extra or {})}
    return subprocess.run(drillkit_cmd(*args), capture_output=True, text=True, timeout=timeout, env=env, **kwargs)


def run_folder(report_root: Path) -> Path:
    folders = [p for p in report_root.iterdir() if p.is_dir()]
    assert len(folders) == 1, f"expected one run folder in {report_root}, found {folders}"
    return folders[0]


def report_json(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "report.json").read_text())


def wait_for_event(reports: Path, kind: str, timeout: float = 40) -> Path:
    """The journal of the one run under `reports` once it records `kind` (polling, bounded)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        journals = list(reports.glob("*/journal.jsonl")) if reports.exists() else []
        if journals and f'"kind": "{kind}"' in journals[0].read_text():
            return journals[0]
        time.sleep(0.1)
    raise AssertionError(f"no {kind!r} event in a journal under {reports} within {timeout} s")


@contextmanager
def reaped(proc: subprocess.Popen[str]) -> Iterator[subprocess.Popen[str]]:
    """Kill and reap `proc` at the end of the block if it is still running."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def drill_process(*args: str, **popen: Any) -> Any:
    """A real `drillkit` subprocess (output piped unless given), reaped at the end of the block."""
    opts: dict[str, Any] = {
        "stdout": subprocess.PIPE,
        "stderr": subprocess.PIPE,
        "text": True,
        "env": {**os.environ, "PYTHONUNBUFFERED": "1"},
        **popen,
    }
    return reaped(subprocess.Popen(drillkit_cmd(*args), **opts))


class MetricsServer:
    """A /metrics endpoint in this process: `body` (bytes, or a function called at each scrape)
    is what Prometheus scrapes; set `body` to change it."""

    def __init__(self, body: bytes | Callable[[], bytes] = b"") -> None:
        self.body = body
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                data = owner.body() if callable(owner.body) else owner.body
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.http.serve_forever, daemon=True).start()
        self.address = f"127.0.0.1:{self.http.server_address[1]}"

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


PUBLIC_RULES = Path(
    os.environ.get("DRILLKIT_PUBLIC_RULES")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "drillkit" / "public-rules"
)
PUBLIC_RULE_SETS = {"node-mixin": "v1.12.1", "prometheus-mixin": "v0.54.1"}  # scripts/fetch-public-rules.sh


def public_rules(name: str) -> Path:
    """The folder of a public rule set (`node-mixin` or `prometheus-mixin`) rendered by
    scripts/fetch-public-rules.sh (run by scripts/setup.sh): the rule file and the module's LICENSE.
    Never committed; a missing set is a failure that names the script, not a skip."""
    folder = PUBLIC_RULES / f"{name}-{PUBLIC_RULE_SETS[name]}"
    if not any(folder.glob("*.yml")) or not (folder / "LICENSE").is_file():
        raise AssertionError(f"{folder}: public rules missing: run scripts/setup.sh (or scripts/fetch-public-rules.sh)")
    return folder
