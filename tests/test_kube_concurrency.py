"""Reverts that meet a cluster changed during the drill, and Secrets the API will not change.

Why: a revert that overwrites what on-call did during the drill (scaled up by hand, rolled out
a hotfix) erases the incident response; it must notice (optimistic concurrency: a JSON-patch
`test` of the value drillkit set) and report "changed during the drill". An `immutable: true`
Secret cannot be corrupted nor restored, so it is refused before a backup exists.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from drillkit.errors import PreflightError
from drillkit.faults import Undo
from tests.kube_drill import direct_fault
from tests.kubecluster import KubeServer

pytestmark = [pytest.mark.wire]
NS = "chatbot"


def run_with(server: KubeServer, tmp_path: Path, fault: dict[str, Any], during) -> dict[str, Any]:
    d = direct_fault(server, tmp_path, fault, guardrails={"max_targets": "100%"})
    found = d.fault.preflight()
    with ExitStack() as stack:
        d.fault.inject(found, Undo(stack, d.ctx))
        during()
    d.journal.close()
    done = [e for e in d.events() if e.kind in ("revert_done", "revert_failed")]
    assert done and done[0].kind == "revert_done", done
    return dict(done[0].data["result"])


def test_scale_to_zero_revert_keeps_a_count_oncall_set(kube_demo: KubeServer, tmp_path: Path) -> None:
    def oncall() -> None:
        kube_demo.update("deployments", NS, "chatbot-api", lambda d: d["spec"].__setitem__("replicas", 5))

    result = run_with(
        kube_demo, tmp_path, {"kind": "scale-to-zero", "workload": "deployment/chatbot-api", "wait": 0}, oncall
    )
    replicas = (kube_demo.get("deployments", NS, "chatbot-api") or {})["spec"]["replicas"]
    assert replicas == 5, f"the revert overwrote on-call's 5 replicas with {replicas}"
    assert result["restored"] is False and "changed during the drill" in result, result
    assert "5 replicas" in result["changed during the drill"]


def test_scale_to_zero_revert_restores_when_untouched(kube_demo: KubeServer, tmp_path: Path) -> None:
    result = run_with(
        kube_demo, tmp_path, {"kind": "scale-to-zero", "workload": "deployment/chatbot-api", "wait": 0}, lambda: None
    )
    assert (kube_demo.get("deployments", NS, "chatbot-api") or {})["spec"]["replicas"] == 3, result


def test_bad_rollout_revert_keeps_a_hotfix_rolled_out_during_the_drill(kube_demo: KubeServer, tmp_path: Path) -> None:
    def hotfix() -> None:
        kube_demo.update(
            "deployments",
            NS,
            "chatbot-api",
            lambda d: d["spec"]["template"]["spec"]["containers"][0].__setitem__("image", "chatbot-api:hotfix"),
        )

    result = run_with(
        kube_demo, tmp_path, {"kind": "bad-rollout", "workload": "deployment/chatbot-api", "wait": 0}, hotfix
    )
    image = (kube_demo.get("deployments", NS, "chatbot-api") or {})["spec"]["template"]["spec"]["containers"][0][
        "image"
    ]
    assert image == "chatbot-api:hotfix", f"the revert overwrote on-call's hotfix with {image}"
    assert result["restored"] is False and "chatbot-api:hotfix" in result["changed during the drill"], result
    assert not kube_demo.list("secrets", NS, label_selector="drillkit.io/run-id"), "the revert record stayed"


def test_bad_rollout_revert_restores_the_image_and_keeps_other_template_changes(
    kube_demo: KubeServer, tmp_path: Path
) -> None:
    """On-call changed the pod template without touching the image (an env var, a memory limit)
    while the broken image was still rolled out: the revert puts the image back and keeps their
    change; restoring the whole recorded template overwrote it."""

    def tune() -> None:
        def change(d: dict[str, Any]) -> None:
            container = d["spec"]["template"]["spec"]["containers"][0]
            container.setdefault("env", []).append({"name": "POOL_SIZE", "value": "20"})

        kube_demo.update("deployments", NS, "chatbot-api", change)

    before = kube_demo.get("deployments", NS, "chatbot-api")
    assert before is not None
    result = run_with(
        kube_demo, tmp_path, {"kind": "bad-rollout", "workload": "deployment/chatbot-api", "wait": 0}, tune
    )
    container = (kube_demo.get("deployments", NS, "chatbot-api") or {})["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == before["spec"]["template"]["spec"]["containers"][0]["image"], result
    assert {"name": "POOL_SIZE", "value": "20"} in container.get("env", []), f"on-call's env change lost: {container}"
    assert result["restored"] is True, result


def test_immutable_secret_is_refused_in_preflight(kube_demo: KubeServer, tmp_path: Path) -> None:
    kube_demo.update("secrets", NS, "chatbot-jwt", lambda s: s.__setitem__("immutable", True))
    d = direct_fault(
        kube_demo, tmp_path, {"kind": "auth-secret-corruption", "secret": "chatbot-jwt", "key": "jwt-secret"}
    )
    with pytest.raises(PreflightError, match="immutable"):
        d.fault.preflight()
    d.journal.close()
    assert not kube_demo.list("secrets", NS, label_selector="drillkit.io/run-id"), "a backup was created"


def test_server_rejects_changing_an_immutable_secret(kube_demo: KubeServer, kube_api_client) -> None:
    import kubernetes

    kube_demo.update("secrets", NS, "chatbot-jwt", lambda s: s.__setitem__("immutable", True))
    core = kubernetes.client.CoreV1Api(kube_api_client)
    with pytest.raises(kubernetes.client.ApiException) as err:
        core.patch_namespaced_secret("chatbot-jwt", NS, {"data": {"jwt-secret": "eA=="}})
    assert err.value.status == 422
