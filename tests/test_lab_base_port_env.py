"""`DRILLKIT_LAB_BASE_PORT` sets the local lab's `--base-port` (a CI runner whose default block is
taken; tests/test_workflow_history.py runs the workflow's `lab up` with it) and is no refusal for
`lab up --kind`, which refuses only a `--base-port` given on its command line."""

from __future__ import annotations

from tests.helpers import run_cli
from tests.test_lab_kind import FakeTools, tools  # noqa: F401 - `tools` is that module's fixture


def test_the_variable_is_the_local_labs_not_a_refusal_for_kind(tools: FakeTools) -> None:  # noqa: F811
    tools.install("kind", "kubectl")  # no docker: `lab up --kind` stops at the tool check, past the options
    env = {"DRILLKIT_LAB_BASE_PORT": "20000"}
    r = run_cli("lab", "up", "--kind", env_extra=env)
    assert r.returncode == 3 and "needs `docker` or `podman`" in r.stderr, r.stderr
    r = run_cli("lab", "up", "--kind", "--base-port", "20000", env_extra=env)
    assert r.returncode == 2 and "--replicas, --base-port and --rules are for the local lab" in r.stderr, r.stderr
