"""Run a Kubernetes drill through the real engine against the real control plane (tests/kubecluster).

Why: the wire tests must exercise faults exactly as `drillkit run` does (preflight, journal,
revert on the ExitStack, leftovers check), with a real Prometheus deciding steady state and
detection, and with only the permissions deploy/rbac.yaml grants (the server enforces them;
any 403 fails the test). Detection uses the prom_env rule `DemoNeverFires` with a 0.5 s target, so each drill
injects, waits half a second, reverts and verifies; the tests then assert on the server's state.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drillkit.engine import Drill, RunOptions, RunResult
from drillkit.faults import Fault, FaultContext, fault_class
from drillkit.journal import Event, Journal, read_journal
from drillkit.kube import kube_factory_for
from drillkit.prometheus import PromConfig
from drillkit.scenario import load_scenario
from drillkit.signals import StopFlag
from tests.helpers import drillkit_cmd, write_scenario
from tests.kubecluster import CONTEXT, KubeServer
from tests.promfixture import PromEnv

RBAC_NODE_DRAIN = Path(__file__).resolve().parents[1] / "deploy" / "rbac-node-drain.yaml"
RBAC_NODE_MEMORY = RBAC_NODE_DRAIN.with_name("rbac-node-memory.yaml")


def scenario(
    faults: list[dict[str, Any]],
    alert: str = "DemoNeverFires",
    within: str = "2s",  # DemoNeverFires: for 1s plus one evaluation, or the dry run refuses it
    namespace: str = "chatbot",
    context: str = CONTEXT,
    **extra: Any,
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "kube-wire-drill",
        "title": "Wire drill",
        "severity": "P3",
        "target": {"kubernetes": {"namespace": namespace, "context": context}},
        "steady_state": [{"name": "exporter up", "expr": 'up{job="demo"}', "expect": "== 1"}],
        "faults": faults,
        "detection": {"alert": alert, "within": within},
        "recovery": {"within": "30s", "verify_within": "10s"},
    }
    data.update(extra)
    return data


@dataclass
class DrillRun:
    result: RunResult
    events: list[Event]
    output: list[str]

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]

    def event(self, kind: str) -> Event:
        found = [e for e in self.events if e.kind == kind]
        assert found, f"no {kind!r} event in {self.kinds()}\n" + "\n".join(self.output)
        return found[0]

    def reverts(self) -> list[dict[str, Any]]:
        return [e.data for e in self.events if e.kind == "revert_done"]

    def journal_text(self) -> str:
        assert self.result.folder is not None
        return (self.result.folder / "journal.jsonl").read_text()


def start_run(
    server: KubeServer, prom: PromEnv, tmp_path: Path, faults: list[dict[str, Any]]
) -> tuple[subprocess.Popen[str], Path]:
    """A real `drillkit run` subprocess of `faults`, and its report dir. The alert takes 60 s to
    fire, so the drill is still in its detect phase (harm in place) when a test interrupts it."""
    prom.ensure_exporter()
    prom.wait_up()
    path = write_scenario(
        tmp_path / "drill.yaml",
        scenario(faults, alert="DemoSlowToFire", within="90s", guardrails={"max_targets": "100%"}),
    )
    reports = tmp_path / "reports"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "KUBECONFIG": server.kubeconfig_path}
    proc = subprocess.Popen(
        drillkit_cmd("run", str(path), "--prometheus-url", prom.url, "--report-dir", str(reports), "--format", "json"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    return proc, reports


def run_drill(
    server: KubeServer,
    prom: PromEnv,
    tmp_path: Path,
    data: dict[str, Any],
    dry_run: bool = False,
    allow: tuple[str, ...] = (),
    admission: bool = True,
) -> DrillRun:
    """Run `data` through the engine as the ServiceAccount, under deploy/admission-policy.yaml
    unless `admission` is False (pod-kill re-creating an owner-less pod: the policy refuses that)."""
    prom.ensure_exporter()
    prom.wait_up()
    path = write_scenario(tmp_path / f"{data['name']}.yaml", data)
    sc = load_scenario(path)
    lines: list[str] = []
    stop = StopFlag()
    opts = RunOptions(
        prometheus=PromConfig(url=prom.url),
        report_root=tmp_path / "reports",
        formats=("json",),
        dry_run=dry_run,
        out=lines.append,
        kube_factory=kube_factory_for(sc, None, allow, server.kubeconfig_path, stop),
    )
    server.enforce_rbac(admission=admission)  # the faults run as deploy/rbac.yaml's ServiceAccount
    if any(f.kind == "node-drain" for f in sc.faults):  # its cluster-wide rights are opt-in
        server.kubectl("apply", "-f", str(RBAC_NODE_DRAIN))
    if any(f.kind == "node-memory-pressure" for f in sc.faults):  # so are its cluster-wide reads
        server.kubectl("apply", "-f", str(RBAC_NODE_MEMORY))
    try:
        result = Drill(sc, opts, stop).run()
    finally:
        server.rbac = None
    refused = rbac_denials(server)
    assert not refused, f"RBAC (deploy/rbac.yaml) refused: {refused}"
    events = read_journal(result.folder) if result.folder else []
    return DrillRun(result, events, lines)


def rbac_denials(server: KubeServer) -> list[str]:
    """The apiserver's 403s that RBAC gave (`User "…" cannot …`), not an admission plugin's
    (Pod Security's `violates PodSecurity`, which a test may provoke on purpose)."""
    return [m for m in server.denied if " cannot " in m and "User " in m]


def no_secret_values(text: str, *values: str) -> None:
    """Assert none of the secret values (plain or base64) appear in `text`."""
    import base64

    for v in values:
        for form in (v, base64.b64encode(v.encode()).decode()):
            assert form not in text, f"secret value {form!r} leaked into the journal/report"


def report(run: DrillRun) -> dict[str, Any]:
    assert run.result.folder is not None
    return json.loads((run.result.folder / "report.json").read_text())


@dataclass
class Direct:
    """A fault driven without the engine: preflight/inject/revert under the test's control."""

    ctx: FaultContext
    fault: Fault[Any, Any, Any]
    journal: Journal

    @property
    def folder(self) -> Path:
        return self.journal.path.parent

    def events(self) -> list[Event]:
        return read_journal(self.folder)


def direct_fault(
    server: KubeServer,
    tmp_path: Path,
    fault: dict[str, Any],
    run_id: str = "deadbeef",
    stop: StopFlag | None = None,
    **extra: Any,
) -> Direct:
    """The first fault of a one-fault scenario with a journal under tmp_path/reports/<run id>
    (the caller closes it) and its own stop flag."""
    sc = load_scenario(write_scenario(tmp_path / f"direct-{run_id}.yaml", scenario([fault], **extra)))
    journal = Journal(tmp_path / "reports" / run_id / "journal.jsonl")
    journal.append("started", run_id=run_id, scenario={})
    stop = stop or StopFlag()
    ctx = FaultContext(
        run_id=run_id,
        scenario=sc,
        journal=journal,
        stop=stop,
        log=lambda _: None,
        kube_factory=kube_factory_for(sc, None, (), server.kubeconfig_path, stop),
    )
    spec = sc.faults[0]
    return Direct(ctx, fault_class(spec.kind, "kubernetes")(spec.params, ctx), journal)
