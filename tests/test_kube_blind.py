"""Kubernetes faults in a blind exercise (`drillkit train`): what they create looks like the
platform's own, keeps the run-id label, and `drillkit cleanup` still undoes all of it from the
cluster alone after a crash that also lost the journal.

Not disguised, and so not checked here: a node-mode stress pod's image and arguments
(stress-ng), and network-latency's ephemeral container command (`tc … netem`)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from drillkit.cleanup import cleanup
from drillkit.faults import Naming
from drillkit.kube import MODIFIED_BY, RUN_LABEL
from drillkit.scenario import load_scenario
from tests.helpers import write_scenario
from tests.kube_drill import scenario
from tests.kubecluster import CONTEXT, KubeServer
from tests.test_kube_cleanup import inject_then_die, jwt

pytestmark = [pytest.mark.wire, pytest.mark.integration]
NS = "chatbot"
RUN = "b11d0001"
# cpu-pressure first: its preflight needs a scheduled API pod, and the faults after it roll
# the API's pods (inject_then_die preflights each fault just before injecting it)
FAULTS: list[dict[str, Any]] = [
    {"kind": "cpu-pressure", "selector": "app=chatbot-api", "mode": "node", "wait": 5},
    {"kind": "auth-secret-corruption", "secret": "chatbot-jwt", "key": "jwt-secret"},
    {"kind": "scale-to-zero", "workload": "statefulset/chatbot-db", "wait": 0},
    {"kind": "bad-rollout", "workload": "deployment/chatbot-api", "wait": 0},
    {"kind": "db-connection-exhaustion", "service": "chatbot-db", "secret": "chatbot-db-credentials", "wait": 0},
]
GIVEAWAYS = [f["kind"] for f in FAULTS] + ["drillkit-", "backup", "corrupt", "stress", "nonexistent", "connection"]


def shown(obj: dict[str, Any], kind: str) -> str:
    """What `kubectl get/describe` shows of an object (not a stress pod's image or args)."""
    meta, spec = obj["metadata"], obj.get("spec") or {}
    pod = (spec.get("template") or {}).get("spec") or spec
    out: list[Any] = [meta["name"], meta.get("labels"), meta.get("annotations"), sorted(obj.get("data") or {})]
    out += [(spec.get("template") or {}).get("metadata")]
    for c in pod.get("containers") or []:
        out += [c["name"], c.get("env")] + ([] if kind == "stress" else [c.get("image"), c.get("command")])
    return json.dumps(out)


def test_blind_objects_look_like_the_platforms_own_and_cleanup_restores_them(
    kube_demo: KubeServer, tmp_path: Path
) -> None:
    original = jwt(kube_demo)
    api = kube_demo.get("deployments", NS, "chatbot-api")
    assert api is not None
    sc = load_scenario(write_scenario(tmp_path / "b.yaml", scenario(FAULTS, guardrails={"max_targets": "100%"})))
    folder = inject_then_die(kube_demo, sc, tmp_path, RUN, Naming("chatbot"))
    made = {
        resource: kube_demo.list(resource, NS, label_selector=f"{RUN_LABEL}={RUN}")
        for resource in ("secrets", "jobs", "pods")
    }
    names = sorted(o["metadata"]["name"] for objs in made.values() for o in objs)
    assert len(made["secrets"]) == 3 and len(made["jobs"]) == 1, names  # backup + 2 records; the Job
    assert all(n.startswith("chatbot-") for n in names), names
    changed = [kube_demo.get("deployments", NS, "chatbot-api"), kube_demo.get("statefulsets", NS, "chatbot-db")]
    texts = [shown(o, "stress" if "worker" in o["metadata"]["name"] else "") for objs in made.values() for o in objs]
    texts += [shown(o, "") for o in changed if o is not None]
    found = [g for g in GIVEAWAYS if any(g.lower() in t.lower() for t in texts)]
    assert not found, f"a blind exercise's objects show {found}:\n" + "\n".join(texts)
    assert ":release-" + RUN in json.dumps(changed[0]), "bad-rollout's tag is not the disguised one"

    shutil.rmtree(folder)  # the runner died and its report folder is gone: labels alone
    report = cleanup(
        tmp_path / "reports",
        RUN,
        context=CONTEXT,
        kubeconfig=kube_demo.kubeconfig_path,
        log=lambda _: None,
        namespaces=(NS,),
    )
    assert report.failed == [], report
    assert jwt(kube_demo) == original, report
    db, fixed = kube_demo.get("statefulsets", NS, "chatbot-db"), kube_demo.get("deployments", NS, "chatbot-api")
    assert db is not None and db["spec"]["replicas"] == 1, report
    # the pod spec as before (the template's restart annotations are the Secret's restarts)
    assert fixed is not None and fixed["spec"]["template"]["spec"] == api["spec"]["template"]["spec"], report
    for obj in (db, fixed):
        assert MODIFIED_BY not in obj["metadata"].get("labels", {}), obj["metadata"]
    left = [o["metadata"]["name"] for r in ("secrets", "jobs") for o in kube_demo.list(r, NS, label_selector=RUN_LABEL)]
    assert left == [], f"left after cleanup: {left}\n{report}"
