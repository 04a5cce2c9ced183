"""A context whose server is not a Kubernetes API (issue 8, case 10).

Why: a web server or proxy answering 404 to everything used to read as "namespace 'chatbot'
does not exist" (and, for a revert, as "already gone"). drillkit now asks `GET /version`
first and says the server is not Kubernetes (exit 3), before any drill lock or fault.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from drillkit.kube import Kube, NotKubernetes, resolve_settings
from tests.helpers import run_cli, write_scenario
from tests.kube_drill import scenario
from tests.promfixture import PromEnv

pytestmark = [pytest.mark.wire]


class _NotFound(BaseHTTPRequestHandler):
    """Answers 404 (text) to every request, like a web server or a misrouted ingress."""

    def _answer(self) -> None:
        body = b"404 page not found\n"
        self.send_response(404)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def not_kube(tmp_path: Path) -> Iterator[tuple[Path, list[str]]]:
    """A kubeconfig whose kind-* context points at the 404 server, and the paths it was asked."""
    asked: list[str] = []

    class Handler(_NotFound):
        def _answer(self) -> None:
            asked.append(f"{self.command} {self.path}")
            super()._answer()

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    cfg = tmp_path / "kubeconfig"
    cfg.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": url}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "kind-web", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "kind-web",
            }
        )
    )
    try:
        yield cfg, asked
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_404_server_is_not_kubernetes_not_a_missing_namespace(not_kube: tuple[Path, list[str]]) -> None:
    cfg, asked = not_kube
    kube = Kube(resolve_settings(None, "kind-web", ("kind-web",), str(cfg)))  # plain HTTP: allowed by name
    try:
        said = r"is not a Kubernetes API server: GET /version answered: not found: 404 page"
        with pytest.raises(NotKubernetes, match=said) as err:
            kube.namespace_exists("chatbot")
    finally:
        kube.close()
    assert err.value.exit_code == 3
    assert any(a.startswith("GET /version") for a in asked), asked


@pytest.mark.parametrize("dry_run", [False, True], ids=["run", "dry-run"])
def test_drill_against_a_404_server_exits_3_saying_so(
    not_kube: tuple[Path, list[str]], prom_env: PromEnv, tmp_path: Path, dry_run: bool
) -> None:
    cfg, asked = not_kube
    path = write_scenario(
        tmp_path / "d.yaml", scenario([{"kind": "pod-kill", "selector": "app=chatbot-api"}], context="kind-web")
    )
    extra = ["--dry-run"] if dry_run else []
    r = run_cli(
        "run", str(path), "--prometheus-url", prom_env.url, "--kubeconfig", str(cfg),
        "--report-dir", str(tmp_path / "r"), "--allow-context", "kind-web", *extra,
    )  # fmt: skip
    out = r.stdout + r.stderr
    assert r.returncode == 3, out
    assert "is not a Kubernetes API server" in out, out
    assert "does not exist" not in out, out
    assert not [a for a in asked if not a.startswith("GET ")], f"a write was sent to a non-Kubernetes server: {asked}"
