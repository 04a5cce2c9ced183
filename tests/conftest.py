"""Shared fixtures: real Prometheus for integration tests; options for the opt-in kind suite."""

from __future__ import annotations

import os
import tempfile

import pytest

from tests.kubecluster.ephemeral import ephemeral_runner  # noqa: F401
from tests.kubecluster.fixture import control_plane, kube_api_client, kube_demo, kube_server  # noqa: F401
from tests.kubecluster.jobrunner import chatbot_postgres, db_jobs  # noqa: F401
from tests.promfixture import prom_env  # noqa: F401 - fixture


def pytest_configure(config: pytest.Config) -> None:
    """Drills outside a lab lock the whole host (drillkit.targetlock): give this test session a
    host of its own, so two sessions on one machine do not refuse each other's drills."""
    os.environ.setdefault("DRILLKIT_LOCK_DIR", tempfile.mkdtemp(prefix="drillkit-locks-"))
    # and a journal key of its own (drillkit.hostkey), never the user's ~/.local/state/drillkit
    os.environ.setdefault("DRILLKIT_STATE_DIR", tempfile.mkdtemp(prefix="drillkit-state-"))


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
