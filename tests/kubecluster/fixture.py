"""Pytest fixtures for the real control plane.

    def test_something(kube_demo):                 # the chatbot platform, 4 pods Ready
        api = kube_demo.api_client()
        ...
        assert kube_demo.get("pods", "chatbot", name) is None

One control plane per pytest worker (session scope): its start-up (a few seconds, recorded in
`control_plane.startup_seconds`) is paid once; `kube_server` resets it before each test.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from .cluster import RealCluster
from .controlplane import ControlPlane, k8s_bin_dir
from .schemas import check_requests


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    root = Path(tempfile.mkdtemp(prefix=f"drillkit-k8s-{os.getpid()}-"))
    plane = ControlPlane(root=root, bin=k8s_bin_dir())
    try:
        plane.start()
        yield plane
    finally:
        plane.stop()


@pytest.fixture
def kube_server(control_plane: ControlPlane, tmp_path: Path) -> Iterator[RealCluster]:
    """The real cluster, emptied of what earlier tests made; kubeconfig under tmp_path.

    Fails the test when it ends if a write through the proxy got an unknown-field warning from
    the apiserver, or created an object the 1.29-1.31 schemas reject (schemas.py)."""
    control_plane.check_running()
    cluster = RealCluster(control_plane, tmp_path)
    cluster.reset()
    try:
        yield cluster
    finally:
        cluster.proxy.stop()
        cluster.rbac = None
    if invalid := check_requests(cluster.requests):
        pytest.fail("writes the apiserver warned about or older versions' schemas reject:\n" + "\n".join(invalid))


@pytest.fixture
def kube_demo(kube_server: RealCluster) -> RealCluster:
    """`kube_server` with the demo platform seeded and its 4 pods Ready."""
    kube_server.seed_demo(wait=True)
    return kube_server


@pytest.fixture
def kube_api_client(kube_server: RealCluster) -> Iterator[object]:
    client = kube_server.api_client()
    try:
        yield client
    finally:
        client.close()  # type: ignore[attr-defined]
