"""An unknown leftover state never passes a drill (issue 9, defect 7): when the check cannot
list what the run may have left (here RBAC refuses it), the drill is inconclusive, not passed."""

from __future__ import annotations

from pathlib import Path

import pytest

from drillkit.engine import Drill, RunOptions, Status
from drillkit.journal import read_journal
from drillkit.kube import kube_factory_for
from drillkit.prometheus import PromConfig
from drillkit.scenario import load_scenario
from drillkit.signals import StopFlag
from tests.helpers import write_scenario
from tests.kube_drill import scenario
from tests.kubecluster import KubeServer
from tests.promfixture import PromEnv
from tests.test_kube_rbac import manifest_without

pytestmark = [pytest.mark.wire, pytest.mark.integration]


def test_a_leftover_check_that_cannot_list_makes_the_drill_inconclusive(
    kube_demo: KubeServer, prom_env: PromEnv, tmp_path: Path
) -> None:
    prom_env.ensure_exporter()
    prom_env.wait_up()
    data = scenario([{"kind": "pod-kill", "selector": "app=chatbot-api", "count": 1, "grace_period": 0}])
    sc = load_scenario(write_scenario(tmp_path / "d.yaml", data))
    stop = StopFlag()
    lines: list[str] = []
    opts = RunOptions(
        prometheus=PromConfig(url=prom_env.url),
        report_root=tmp_path / "reports",
        formats=("json",),
        out=lines.append,
        kube_factory=kube_factory_for(sc, None, (), kube_demo.kubeconfig_path, stop),
    )
    kube_demo.enforce_rbac(manifest_without(tmp_path, "secrets", "list"))  # pod-kill never lists Secrets
    try:
        result = Drill(sc, opts, stop).run()
    finally:
        kube_demo.rbac = None
    assert result.folder is not None
    kinds = [e.kind for e in read_journal(result.folder)]
    assert "revert_done" in kinds and "leftovers_unknown" in kinds, kinds
    assert result.status is Status.INCONCLUSIVE and result.exit_code == 3, (result.status, "\n".join(lines))
