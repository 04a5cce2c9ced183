"""Shared fixtures: real Prometheus for integration tests; options for the opt-in kind suite."""

from __future__ import annotations

import pytest

from tests.kubeserver.fixture import kube_api_client, kube_demo, kube_server, kube_server_options  # noqa: F401
from tests.promfixture import prom_env  # noqa: F401 - fixture


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--kind",
        action="store_true",
        default=False,
        help="run the opt-in suite against a real kind cluster (kind-* context)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--kind"):
        return
    skip = pytest.mark.skip(reason="needs a real kind cluster: run with --kind")
    for item in items:
        if "kind" in item.keywords:
            item.add_marker(skip)
