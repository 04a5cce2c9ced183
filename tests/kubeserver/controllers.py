"""Simulated control plane: deployment, replicaset, statefulset and job controllers, a
round-robin scheduler, a kubelet that starts pods after `ready_delay`, and PDB status.

Everything runs in one background thread, one reconcile pass per tick, holding the store
lock for the pass. Writes go through the store, so they bump resourceVersions and feed
watches like real controller writes do.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import re
import threading
import time
import traceback
from typing import TYPE_CHECKING, Any

from .admission import admit_pod
from .store import NAME_ALPHABET, ApiError, Obj, labels_match, now_rfc3339, random_suffix, selector_requirements

if TYPE_CHECKING:
    from .server import KubeServer

BAD_IMAGE_MARKER = "drillkit-nonexistent"
BLIND_BAD_TAG = re.compile(r":release-[0-9a-f]{8}$")  # bad-rollout's tag in a blind exercise


def template_hash(template: Obj) -> str:
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).digest()
    return "".join(NAME_ALPHABET[b % len(NAME_ALPHABET)] for b in digest[:10])


def owner_ref(obj: Obj) -> Obj:
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "name": obj["metadata"]["name"],
        "uid": obj["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def controller_of(obj: Obj) -> Obj | None:
    return next((r for r in obj["metadata"].get("ownerReferences") or [] if r.get("controller")), None)


def pod_ready(pod: Obj) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


def int_or_percent(value: Any, total: int, round_up: bool) -> int:
    if isinstance(value, str) and value.endswith("%"):
        exact = int(value[:-1]) * total / 100
        return math.ceil(exact) if round_up else math.floor(exact)
    return int(value)


def set_condition(
    conditions: list[Obj], ctype: str, status: str, reason: str = "", message: str = "", update_time: bool = False
) -> None:
    now = now_rfc3339()
    cur = next((c for c in conditions if c.get("type") == ctype), None)
    if cur is None:
        cur = {"type": ctype, "lastTransitionTime": now}
        conditions.append(cur)
    elif cur.get("status") != status:
        cur["lastTransitionTime"] = now
    if update_time and (cur.get("status"), cur.get("reason")) != (status, reason):
        cur["lastUpdateTime"] = now
    cur.update(status=status, reason=reason, message=message)
    if update_time:
        cur.setdefault("lastUpdateTime", now)


def compact(status: Obj, keep: tuple[str, ...] = ("replicas",)) -> Obj:
    """Drop zero counters, like the real API's `omitempty`; `keep` the ones without it
    (ReplicaSetStatus and StatefulSetStatus always carry `replicas`: the schema requires it)."""
    return {k: v for k, v in status.items() if k in keep or v not in (0, None)}


def pdb_numbers(store, pdb: Obj) -> tuple[int, int, int]:
    """(currentHealthy, desiredHealthy, expectedPods) of a PodDisruptionBudget."""
    ns = pdb["metadata"]["namespace"]
    reqs = selector_requirements(pdb["spec"].get("selector"))
    pods = [
        p
        for p in store.raw_list("pods", ns)
        if labels_match(reqs, p["metadata"].get("labels")) and p["status"].get("phase") not in ("Succeeded", "Failed")
    ]
    healthy = sum(1 for p in pods if pod_ready(p))
    expected, seen = 0, set()
    for pod in pods:
        ref = controller_of(pod)
        if ref is None:
            expected += 1
        elif ref["uid"] not in seen:
            seen.add(ref["uid"])
            res = {"ReplicaSet": "replicasets", "StatefulSet": "statefulsets"}.get(ref["kind"])
            owner = store.raw(res, ns, ref["name"]) if res else None
            expected += (
                owner["spec"].get("replicas", 1)
                if owner
                else sum(1 for p in pods if (controller_of(p) or {}).get("uid") == ref["uid"])
            )
    spec = pdb["spec"]
    if spec.get("minAvailable") is not None:
        desired = int_or_percent(spec["minAvailable"], expected, round_up=True)
    elif spec.get("maxUnavailable") is not None:
        desired = expected - int_or_percent(spec["maxUnavailable"], expected, round_up=True)
    else:
        desired = expected
    return healthy, max(desired, 0), expected


class Controllers:
    def __init__(self, kube: KubeServer, ready_delay: float = 0.3, tick: float = 0.05):
        self.kube, self.store = kube, kube.store
        self.ready_delay, self.tick = ready_delay, tick
        self.ready_at: dict[str, float] = {}  # pod uid -> when its containers become ready
        self._ephemeral_at: dict[tuple[str, str], float] = {}
        self._job_started: dict[str, float] = {}
        self._rollout: dict[str, tuple[str, float]] = {}  # deployment uid -> (hash, since)
        self.terminating: dict[str, float] = {}  # pod uid -> when its grace period ends
        self._rr = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kubeserver-controllers", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.tick):
            try:
                self.reconcile()
            except Exception:
                self.kube.internal_errors.append(f"controller tick failed:\n{traceback.format_exc()}")
                self._stop.wait(0.5)

    def reconcile(self) -> None:
        with self.store.lock:
            self.finish_terminating()
            self.kubelet()
            self.deployments()
            self.replicasets()
            self.statefulsets()
            self.jobs()
            self.disruption_budgets()

    # ------------------------------------------------------------ graceful pod deletion
    def terminate(self, ns: str, name: str, grace: int) -> Obj:
        """Start a graceful deletion: `deletionTimestamp` now, the pod gone `grace` s later
        (what a DELETE with gracePeriodSeconds > 0 does; without it pods go at once here)."""
        with self.store.lock:

            def mark(o: Obj) -> None:
                o["metadata"]["deletionTimestamp"] = now_rfc3339()
                o["metadata"]["deletionGracePeriodSeconds"] = grace

            pod = self.store.update("pods", ns, name, mark)
            assert pod is not None
            self.terminating[pod["metadata"]["uid"]] = time.monotonic() + grace
            return pod

    def finish_terminating(self) -> None:
        now = time.monotonic()
        for pod in self.store.raw_list("pods"):
            meta = pod["metadata"]
            due = self.terminating.get(meta["uid"])
            if due is not None and due <= now:
                self.store.delete("pods", meta["namespace"], meta["name"])
        alive = {p["metadata"]["uid"] for p in self.store.raw_list("pods")}
        for uid in [u for u in self.terminating if u not in alive]:
            del self.terminating[uid]

    # ------------------------------------------------------------ workloads
    def _pod_from_template(
        self, owner: Obj, template: Obj, name: str | None = None, extra_labels: dict[str, str] | None = None
    ) -> Obj:
        tmeta = template.get("metadata") or {}
        meta: Obj = {
            "namespace": owner["metadata"]["namespace"],
            "labels": {**(tmeta.get("labels") or {}), **(extra_labels or {})},
            "ownerReferences": [owner_ref(owner)],
        }
        if tmeta.get("annotations"):
            meta["annotations"] = dict(tmeta["annotations"])
        if name:
            meta["name"] = name
        else:
            meta["generateName"] = owner["metadata"]["name"] + "-"
        pod = {"metadata": meta, "spec": copy.deepcopy(template.get("spec") or {})}
        return self.store.create("pods", pod)

    def _admitted_pod(self, owner: Obj, template: Obj) -> Obj | None:
        """A pod from `template`, unless Pod Security admission refuses it: then a FailedCreate
        event on the owner (what the ReplicaSet and Job controllers do) and no pod."""
        ns = self.store.raw("namespaces", None, owner["metadata"]["namespace"])
        try:
            admit_pod(ns, {"metadata": {"name": owner["metadata"]["name"]}, "spec": template.get("spec") or {}})
        except ApiError as exc:
            if not any(
                e["reason"] == "FailedCreate" and e["involvedObject"]["uid"] == owner["metadata"]["uid"]
                for e in self.store.raw_list("events", owner["metadata"]["namespace"])
            ):
                self.kube.record_event(owner, "FailedCreate", f"Error creating: {exc.message}", "Warning")
            return None
        return self._pod_from_template(owner, template)

    def deployments(self) -> None:
        for d in self.store.raw_list("deployments"):
            ns, name, uid = d["metadata"]["namespace"], d["metadata"]["name"], d["metadata"]["uid"]
            spec, replicas = d["spec"], d["spec"].get("replicas", 1)
            h = template_hash(spec.get("template") or {})
            rss = self.store.owned("replicasets", ns, uid)
            new = next((r for r in rss if r["metadata"]["labels"].get("pod-template-hash") == h), None)
            revisions = [
                int((r["metadata"].get("annotations") or {}).get("deployment.kubernetes.io/revision", 0)) for r in rss
            ]
            top = max(revisions, default=0)
            if new is None:
                tmpl = copy.deepcopy(spec.get("template") or {})
                tmpl.setdefault("metadata", {}).setdefault("labels", {})["pod-template-hash"] = h
                selector = copy.deepcopy(spec.get("selector") or {})
                selector.setdefault("matchLabels", {})["pod-template-hash"] = h
                new = self.store.create(
                    "replicasets",
                    {
                        "metadata": {
                            "name": f"{name}-{h}",
                            "namespace": ns,
                            "labels": dict(tmpl["metadata"]["labels"]),
                            "annotations": {"deployment.kubernetes.io/revision": str(top + 1)},
                            "ownerReferences": [owner_ref(d)],
                        },
                        "spec": {"replicas": 0, "selector": selector, "template": tmpl},
                    },
                )
                top += 1
            elif int(new["metadata"]["annotations"].get("deployment.kubernetes.io/revision", 0)) < top:
                top += 1  # rollback to an older template: that ReplicaSet becomes the newest revision
                self.store.update(
                    "replicasets",
                    ns,
                    new["metadata"]["name"],
                    lambda o, t=top: o["metadata"]["annotations"].__setitem__(
                        "deployment.kubernetes.io/revision", str(t)
                    ),
                )
            if self._rollout.get(uid, ("",))[0] != h:
                self._rollout[uid] = (h, time.monotonic())
            new_name = new["metadata"]["name"]
            olds = [r for r in self.store.owned("replicasets", ns, uid) if r["metadata"]["name"] != new_name]
            if not spec.get("paused"):
                self._roll(d, replicas, self.store.raw("replicasets", ns, new_name), olds)
            self._deployment_status(d, replicas, new_name, top)

    def _ready_pods(self, rs: Obj) -> int:
        return sum(
            1 for p in self.store.owned("pods", rs["metadata"]["namespace"], rs["metadata"]["uid"]) if pod_ready(p)
        )

    def _scale_rs(self, rs: Obj, replicas: int) -> None:
        if rs["spec"].get("replicas") != replicas:
            self.store.update(
                "replicasets",
                rs["metadata"]["namespace"],
                rs["metadata"]["name"],
                lambda o: o["spec"].__setitem__("replicas", replicas),
            )

    def _roll(self, d: Obj, replicas: int, new: Obj, olds: list[Obj]) -> None:
        strategy = d["spec"].get("strategy") or {}
        old_total = sum(r["spec"].get("replicas", 0) for r in olds)
        if strategy.get("type") == "Recreate":
            for rs in olds:
                self._scale_rs(rs, 0)
            old_pods = sum(
                len(self.store.owned("pods", r["metadata"]["namespace"], r["metadata"]["uid"])) for r in olds
            )
            if old_pods == 0:
                self._scale_rs(new, replicas)
            return
        rolling = strategy.get("rollingUpdate") or {}
        surge = int_or_percent(rolling.get("maxSurge", "25%"), replicas, round_up=True)
        unavailable = int_or_percent(rolling.get("maxUnavailable", "25%"), replicas, round_up=False)
        if surge == 0 and unavailable == 0:
            unavailable = 1
        current = new["spec"].get("replicas", 0)
        target = replicas if current >= replicas else min(replicas, max(current, replicas + surge - old_total))
        self._scale_rs(new, target)
        ready_total = self._ready_pods(new) + sum(self._ready_pods(r) for r in olds)
        can_remove = max(0, ready_total - (replicas - unavailable))
        for rs in olds:
            cur = rs["spec"].get("replicas", 0)
            if cur == 0:
                continue
            unhealthy = max(0, cur - self._ready_pods(rs))
            dec = min(cur, unhealthy + can_remove)
            can_remove -= max(0, dec - unhealthy)
            if dec:
                self._scale_rs(rs, cur - dec)

    def _deployment_status(self, d: Obj, replicas: int, new_name: str, revision: int) -> None:
        ns, uid = d["metadata"]["namespace"], d["metadata"]["uid"]
        pods, new_pods = [], []
        for rs in self.store.owned("replicasets", ns, uid):
            owned = self.store.owned("pods", ns, rs["metadata"]["uid"])
            pods += owned
            if rs["metadata"]["name"] == new_name:
                new_pods = owned
        ready = sum(1 for p in pods if pod_ready(p))
        rolling = (d["spec"].get("strategy") or {}).get("rollingUpdate") or {}
        max_unavailable = int_or_percent(rolling.get("maxUnavailable", "25%"), replicas, False)
        complete = len(new_pods) == replicas == len(pods) and sum(1 for p in new_pods if pod_ready(p)) == replicas
        since = self._rollout.get(uid, ("", time.monotonic()))[1]
        deadline = d["spec"].get("progressDeadlineSeconds", 600)

        def mutate(o: Obj) -> None:
            o["metadata"].setdefault("annotations", {})["deployment.kubernetes.io/revision"] = str(revision)
            conds = copy.deepcopy(o["status"].get("conditions") or [])
            if ready >= replicas - max_unavailable:
                set_condition(
                    conds, "Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.", True
                )
            else:
                set_condition(
                    conds,
                    "Available",
                    "False",
                    "MinimumReplicasUnavailable",
                    "Deployment does not have minimum availability.",
                    True,
                )
            if complete:
                set_condition(
                    conds,
                    "Progressing",
                    "True",
                    "NewReplicaSetAvailable",
                    f'ReplicaSet "{new_name}" has successfully progressed.',
                    True,
                )
            elif time.monotonic() - since > deadline:
                set_condition(
                    conds,
                    "Progressing",
                    "False",
                    "ProgressDeadlineExceeded",
                    f'ReplicaSet "{new_name}" has timed out progressing.',
                    True,
                )
            else:
                set_condition(
                    conds, "Progressing", "True", "ReplicaSetUpdated", f'ReplicaSet "{new_name}" is progressing.', True
                )
            o["status"] = compact(
                {
                    "observedGeneration": o["metadata"].get("generation", 1),
                    "replicas": len(pods),
                    "updatedReplicas": len(new_pods),
                    "readyReplicas": ready,
                    "availableReplicas": ready,
                    "unavailableReplicas": max(0, replicas - ready),
                },
                keep=(),  # DeploymentStatus.replicas is omitempty
            )
            o["status"]["conditions"] = conds

        self.store.update("deployments", ns, d["metadata"]["name"], mutate)

    def replicasets(self) -> None:
        for rs in self.store.raw_list("replicasets"):
            ns, name, uid = rs["metadata"]["namespace"], rs["metadata"]["name"], rs["metadata"]["uid"]
            reqs = selector_requirements(rs["spec"].get("selector"))
            pods = []
            for pod in self.store.owned("pods", ns, uid):
                if pod["status"].get("phase") in ("Succeeded", "Failed") or pod["metadata"].get("deletionTimestamp"):
                    continue  # finished or terminating pods no longer count as replicas
                if labels_match(reqs, pod["metadata"].get("labels")):
                    pods.append(pod)
                else:  # relabelled out of the selector: release it, like the real controller
                    self.store.update(
                        "pods",
                        ns,
                        pod["metadata"]["name"],
                        lambda o, u=uid: o["metadata"].__setitem__(
                            "ownerReferences", [r for r in o["metadata"]["ownerReferences"] if r.get("uid") != u]
                        ),
                    )
            want = rs["spec"].get("replicas", 1)
            for _ in range(want - len(pods)):
                self._admitted_pod(rs, rs["spec"].get("template") or {})
            if len(pods) > want:
                victims = sorted(pods, key=lambda p: (pod_ready(p), p["metadata"]["creationTimestamp"]))
                for pod in victims[: len(pods) - want]:
                    self.store.delete("pods", ns, pod["metadata"]["name"])
            pods = [
                p for p in self.store.owned("pods", ns, uid) if p["status"].get("phase") not in ("Succeeded", "Failed")
            ]
            ready = sum(1 for p in pods if pod_ready(p))
            status = compact(
                {
                    "replicas": len(pods),
                    "fullyLabeledReplicas": len(pods),
                    "readyReplicas": ready,
                    "availableReplicas": ready,
                    "observedGeneration": rs["metadata"].get("generation", 1),
                }
            )
            self.store.update("replicasets", ns, name, lambda o, s=status: o.__setitem__("status", s))

    def statefulsets(self) -> None:
        for ss in self.store.raw_list("statefulsets"):
            ns, name, uid = ss["metadata"]["namespace"], ss["metadata"]["name"], ss["metadata"]["uid"]
            spec, want = ss["spec"], ss["spec"].get("replicas", 1)
            revision = f"{name}-{template_hash(spec.get('template') or {})}"
            ordered = spec.get("podManagementPolicy", "OrderedReady") == "OrderedReady"
            pods = {}
            for pod in self.store.owned("pods", ns, uid):
                suffix = pod["metadata"]["name"][len(name) + 1 :]
                if suffix.isdigit():
                    pods[int(suffix)] = pod
            for i in range(want):
                if i in pods:
                    continue
                if ordered and not all(pod_ready(pods[j]) for j in range(i) if j in pods):
                    break
                pod_name = f"{name}-{i}"
                tmpl = copy.deepcopy(spec.get("template") or {})
                tmpl.setdefault("spec", {}).update(hostname=pod_name)
                if spec.get("serviceName"):
                    tmpl["spec"]["subdomain"] = spec["serviceName"]
                pods[i] = self._pod_from_template(
                    ss,
                    tmpl,
                    pod_name,
                    {
                        "statefulset.kubernetes.io/pod-name": pod_name,
                        "controller-revision-hash": revision,
                        "apps.kubernetes.io/pod-index": str(i),
                    },
                )
                if ordered:
                    break
            for i in sorted((i for i in pods if i >= want), reverse=True):
                self.store.delete("pods", ns, pods.pop(i)["metadata"]["name"])
                if ordered:
                    break
            if (
                (spec.get("updateStrategy") or {}).get("type", "RollingUpdate") == "RollingUpdate"
                and len(pods) == want
                and all(pod_ready(p) for p in pods.values())
            ):
                stale = [
                    i for i, p in pods.items() if p["metadata"]["labels"].get("controller-revision-hash") != revision
                ]
                if stale:
                    self.store.delete("pods", ns, pods.pop(max(stale))["metadata"]["name"])
            ready = sum(1 for p in pods.values() if pod_ready(p))
            updated = sum(
                1 for p in pods.values() if p["metadata"]["labels"].get("controller-revision-hash") == revision
            )
            status = compact(
                {
                    "observedGeneration": ss["metadata"].get("generation", 1),
                    "replicas": len(pods),
                    "readyReplicas": ready,
                    "availableReplicas": ready,
                    "currentReplicas": updated,
                    "updatedReplicas": updated,
                }
            )
            status.update(currentRevision=revision, updateRevision=revision, collisionCount=0)
            self.store.update("statefulsets", ns, name, lambda o, s=status: o.__setitem__("status", s))

    def jobs(self) -> None:
        for job in self.store.raw_list("jobs"):
            ns, name, uid = job["metadata"]["namespace"], job["metadata"]["name"], job["metadata"]["uid"]
            spec, status = job["spec"], copy.deepcopy(job.get("status") or {})
            finished = any(
                c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
                for c in status.get("conditions") or []
            )
            pods = self.store.owned("pods", ns, uid)
            active = [p for p in pods if p["status"].get("phase") not in ("Succeeded", "Failed")]
            if finished:
                for pod in active:
                    self.store.delete("pods", ns, pod["metadata"]["name"])
                continue
            started = self._job_started.setdefault(uid, time.monotonic())
            status.setdefault("startTime", now_rfc3339())
            succeeded = sum(1 for p in pods if p["status"].get("phase") == "Succeeded")
            failed = sum(1 for p in pods if p["status"].get("phase") == "Failed")
            deadline = spec.get("activeDeadlineSeconds")
            conds = status.setdefault("conditions", [])
            if deadline is not None and time.monotonic() - started >= deadline:
                for pod in active:
                    self.store.delete("pods", ns, pod["metadata"]["name"])
                failed, active = failed + len(active), []
                set_condition(
                    conds, "Failed", "True", "DeadlineExceeded", "Job was active longer than specified deadline"
                )
            elif succeeded >= spec.get("completions", 1):
                set_condition(conds, "Complete", "True")
                status["completionTime"] = now_rfc3339()
            else:
                want = min(spec.get("parallelism", 1), spec.get("completions", 1) - succeeded)
                for _ in range(want - len(active)):
                    if (pod := self._admitted_pod(job, spec.get("template") or {})) is not None:
                        active.append(pod)
            status.update(
                active=len(active), succeeded=succeeded, failed=failed, ready=sum(1 for p in active if pod_ready(p))
            )
            status = compact(status)
            if not status.get("conditions"):
                status.pop("conditions", None)
            self.store.update("jobs", ns, name, lambda o, s=status: o.__setitem__("status", s))

    # ------------------------------------------------------------ scheduler + kubelet
    def _pick_node(self, pod: Obj, nodes: list[Obj]) -> str | None:
        def tolerated(taint: Obj) -> bool:
            return taint.get("effect") == "PreferNoSchedule" or any(
                (t.get("operator") == "Exists" and t.get("key") in (None, "", taint.get("key")))
                or (t.get("key") == taint.get("key") and t.get("value") == taint.get("value"))
                for t in pod["spec"].get("tolerations") or []
                if t.get("effect") in (None, "", taint.get("effect"))
            )

        selector = pod["spec"].get("nodeSelector") or {}
        candidates = sorted(
            n["metadata"]["name"]
            for n in nodes
            if not n["spec"].get("unschedulable")
            and all(c.get("status") == "True" for c in n["status"].get("conditions") or [] if c.get("type") == "Ready")
            and all(tolerated(t) for t in n["spec"].get("taints") or [])
            and all((n["metadata"].get("labels") or {}).get(k) == v for k, v in selector.items())
        )
        if not candidates:
            return None
        self._rr += 1
        return candidates[self._rr % len(candidates)]

    def kubelet(self) -> None:
        nodes = self.store.raw_list("nodes")
        now = time.monotonic()
        for pod in self.store.raw_list("pods"):
            ns, name, uid = pod["metadata"]["namespace"], pod["metadata"]["name"], pod["metadata"]["uid"]
            if pod["status"].get("phase") in ("Succeeded", "Failed"):
                continue
            if not pod["spec"].get("nodeName") and nodes:
                node = self._pick_node(pod, nodes)
                if node is None:
                    message = f"0/{len(nodes)} nodes are available: no schedulable node."
                    self.store.update(
                        "pods",
                        ns,
                        name,
                        lambda o, m=message: set_condition(
                            o["status"].setdefault("conditions", []), "PodScheduled", "False", "Unschedulable", m
                        ),
                    )
                    continue
                self.store.update("pods", ns, name, lambda o, n=node: self._bind(o, n))
                self.kube.record_event(pod, "Scheduled", f"Successfully assigned {ns}/{name} to {node}")
                self.ready_at[uid] = now + self.ready_delay
                continue
            if (
                uid not in self.ready_at
                and pod["status"].get("phase") == "Pending"
                and not pod["status"].get("containerStatuses")
            ):
                self.ready_at[uid] = now + self.ready_delay
            if self.ready_at.get(uid, 0) > now:
                continue
            self.ready_at.pop(uid, None)
            before = pod
            after = self.store.update("pods", ns, name, self._run_containers)
            for cs in (after or {}).get("status", {}).get("containerStatuses") or []:
                waiting = (cs.get("state") or {}).get("waiting") or {}
                was = next((c for c in before["status"].get("containerStatuses") or [] if c["name"] == cs["name"]), {})
                if (
                    waiting.get("reason") == "ImagePullBackOff"
                    and (was.get("state") or {}).get("waiting", {}).get("reason") != "ImagePullBackOff"
                ):
                    self.kube.record_event(
                        pod,
                        "Failed",
                        f'Failed to pull image "{cs["image"]}": '
                        "rpc error: code = NotFound desc = failed to pull and "
                        "unpack image: not found",
                        "Warning",
                    )
            self._ephemeral(pod, now)
        alive = {p["metadata"]["uid"] for p in self.store.raw_list("pods")}
        for uid in [u for u in self.ready_at if u not in alive]:
            del self.ready_at[uid]

    def _bind(self, pod: Obj, node: str) -> None:
        pod["spec"]["nodeName"] = node
        status = pod["status"]
        set_condition(status.setdefault("conditions", []), "PodScheduled", "True")
        status["hostIP"] = f"172.18.0.{2 + sum(node.encode()) % 200}"
        status["containerStatuses"] = [
            {
                "name": c["name"],
                "image": c.get("image", ""),
                "imageID": "",
                "ready": False,
                "started": False,
                "restartCount": 0,
                "state": {"waiting": {"reason": "ContainerCreating"}},
            }
            for c in pod["spec"].get("containers") or []
        ]

    def _run_containers(self, pod: Obj) -> None:
        """Kubelet view: what the container statuses should be once the start delay passed."""
        status, now = pod["status"], now_rfc3339()
        override = self.kube.readiness_overrides.get(pod["metadata"]["uid"])
        statuses = []
        for c in pod["spec"].get("containers") or []:
            image = c.get("image", "")
            prev = next((s for s in status.get("containerStatuses") or [] if s["name"] == c["name"]), {})
            cs = {"name": c["name"], "image": image, "imageID": "", "restartCount": prev.get("restartCount", 0)}
            if prev.get("lastState"):
                cs["lastState"] = prev["lastState"]
            running = (prev.get("state") or {}).get("running")
            if BAD_IMAGE_MARKER in image or BLIND_BAD_TAG.search(image):
                cs.update(
                    ready=False,
                    started=False,
                    state={"waiting": {"reason": "ImagePullBackOff", "message": f'Back-off pulling image "{image}"'}},
                )
            else:
                if running and prev.get("image") != image:  # image changed: container restarted
                    cs["restartCount"] += 1
                    cs["lastState"] = {
                        "terminated": {
                            "exitCode": 0,
                            "reason": "Completed",
                            "startedAt": running.get("startedAt"),
                            "finishedAt": now,
                        }
                    }
                    running = None
                cs.update(
                    ready=override is not False,
                    started=True,
                    containerID=prev.get("containerID") or f"containerd://{random_suffix(12)}",
                    state={"running": {"startedAt": (running or {}).get("startedAt", now)}},
                )
            statuses.append(cs)
        status["containerStatuses"] = statuses
        all_ready = bool(statuses) and all(s["ready"] for s in statuses)
        if all("running" in s["state"] for s in statuses) or status.get("phase") == "Running":
            status["phase"] = "Running"  # a pod never goes back from Running to Pending
        status.setdefault("startTime", now)
        status.setdefault(
            "podIP",
            f"10.244.{sum(pod['metadata']['uid'].encode()) % 250}.{2 + int(pod['metadata']['uid'][:2], 16) % 250}",
        )
        status.setdefault("qosClass", "Burstable")
        conds = status.setdefault("conditions", [])
        set_condition(conds, "PodScheduled", "True")
        set_condition(conds, "Initialized", "True")
        reason = "" if all_ready else "ContainersNotReady"
        set_condition(conds, "ContainersReady", "True" if all_ready else "False", reason)
        set_condition(conds, "Ready", "True" if all_ready else "False", reason)

    def _ephemeral(self, pod: Obj, now: float) -> None:
        pod = self.store.raw("pods", pod["metadata"]["namespace"], pod["metadata"]["name"]) or pod
        uid, have = pod["metadata"]["uid"], {s["name"] for s in pod["status"].get("ephemeralContainerStatuses") or []}
        for ec in pod["spec"].get("ephemeralContainers") or []:
            if ec["name"] in have:
                continue
            due = self._ephemeral_at.setdefault((uid, ec["name"]), now + min(self.ready_delay, 0.2))
            if now >= due:
                entry = {
                    "name": ec["name"],
                    "image": ec.get("image", ""),
                    "imageID": "",
                    "ready": False,
                    "restartCount": 0,
                    "containerID": f"containerd://{random_suffix(12)}",
                    "state": {"running": {"startedAt": now_rfc3339()}},
                }
                self.store.update(
                    "pods",
                    pod["metadata"]["namespace"],
                    pod["metadata"]["name"],
                    lambda o, e=entry: o["status"].setdefault("ephemeralContainerStatuses", []).append(e),
                )

    def disruption_budgets(self) -> None:
        for pdb in self.store.raw_list("poddisruptionbudgets"):
            healthy, desired, expected = pdb_numbers(self.store, pdb)
            allowed = max(0, healthy - desired)

            def mutate(o: Obj, h=healthy, d=desired, e=expected, a=allowed) -> None:
                conds = copy.deepcopy(o["status"].get("conditions") or [])
                set_condition(
                    conds,
                    "DisruptionAllowed",
                    "True" if a > 0 else "False",
                    "SufficientPods" if a > 0 else "InsufficientPods",
                )
                o["status"] = {
                    "observedGeneration": o["metadata"].get("generation", 1),
                    "currentHealthy": h,
                    "desiredHealthy": d,
                    "expectedPods": e,
                    "disruptionsAllowed": a,
                    "conditions": conds,
                }

            self.store.update("poddisruptionbudgets", pdb["metadata"]["namespace"], pdb["metadata"]["name"], mutate)
