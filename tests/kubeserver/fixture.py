"""Pytest fixtures for the Kubernetes API test server.

Import them from ``tests/conftest.py``::

    from tests.kubeserver.fixture import (  # noqa: F401
        kube_api_client, kube_demo, kube_server, kube_server_options)

    def test_something(kube_server):
        kube_server.seed_demo()                      # nodes + chatbot platform, pods Ready
        api = kubernetes.config.new_client_from_config(
            config_file=kube_server.kubeconfig_path, context="kind-drillkit-test")
        ...
        assert kube_server.get("pods", "chatbot", name) is None

``kube_server`` fails the test at teardown if the server hit an internal error (a bug in
the server or a request it cannot handle), or if anything written to it is rejected by the
official Kubernetes 1.29-1.31 schemas (``schemas.py``), so such problems are never silent.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .schemas import check_written
from .server import CONTEXT, KubeServer


@pytest.fixture
def kube_server_options() -> dict:
    """Keyword arguments for KubeServer (`ready_delay`, `tick`); override it to change them.
    Pods become Ready after 0.05 s here (the server's default is 0.3 s) to keep suites fast."""
    return {"ready_delay": 0.05}


@pytest.fixture
def kube_server(tmp_path, kube_server_options) -> Iterator[KubeServer]:
    """A started, empty KubeServer (kubeconfig written under tmp_path)."""
    server = KubeServer(kubeconfig_dir=tmp_path, **kube_server_options).start()
    try:
        yield server
    finally:
        server.stop()
    if server.internal_errors:
        pytest.fail("kubeserver internal errors:\n" + "\n".join(server.internal_errors))
    if invalid := check_written(server.written):
        pytest.fail("objects written to kubeserver that Kubernetes' own schemas reject:\n" + "\n".join(invalid))


@pytest.fixture
def kube_demo(kube_server: KubeServer) -> KubeServer:
    """`kube_server` with `seed_demo()` done and all demo pods Ready."""
    kube_server.seed_demo(wait=True)
    return kube_server


@pytest.fixture
def kube_api_client(kube_server: KubeServer):
    """A real `kubernetes.client.ApiClient` on the `kind-drillkit-test` context, closed after."""
    client = kube_server.api_client(CONTEXT)
    try:
        yield client
    finally:
        client.close()
