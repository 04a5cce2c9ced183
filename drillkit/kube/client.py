"""The Kubernetes facade: everything a drill does to a cluster, one verb per method.

Why it exists: faults, cleanup and the engine ask for what they mean ("scale this
Deployment", "evict this pod", "what did run X leave behind?") and get typed views back
(`drillkit.kube.views`), never the client's models; retries, error translation and the stop
flag come from `drillkit.kube.api.KubeApi`, which this class extends.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from drillkit.errors import Aborted, InputError, PreflightError
from drillkit.kube.api import KubeApi
from drillkit.kube.config import KubeSettings
from drillkit.kube.errors import Conflict, KubeError, KubeTransient, NotFound, NotKubernetes
from drillkit.kube.lease import LEASE_SECONDS, DrillLocks
from drillkit.kube.views import (
    CORDONED_BY,
    MODIFIED_BY,
    NETEM_BY,
    RESTARTED_AT,
    RUN_LABEL,
    Labelled,
    Node,
    ObjRef,
    Owner,
    Pod,
    Workload,
    strip_for_create,
)
from drillkit.retry import retrying
from drillkit.signals import StopFlag, wait_until

FIELD_MANAGER = "drillkit"
"""The field manager of drillkit's cordon, so a revert can tell it from on-call's (managedFields)."""
OUR_MANAGERS = (FIELD_MANAGER, "OpenAPI-Generator")  # the latter: an older drillkit's cordon (the client's name)


class Kube(KubeApi):
    """Everything drillkit does to a cluster, with retries and errors translated.

    It remembers the namespaces it wrote to (`touched`) and whether it cordoned a node, so the
    leftover check lists only there: no cluster-wide Secret listing, which the documented Role
    does not grant (deploy/rbac.yaml)."""

    def __init__(self, settings: KubeSettings, stop: StopFlag | None = None) -> None:
        super().__init__(settings, stop)
        self.touched: set[str] = set()
        self.cordoned = False
        self._locks: DrillLocks | None = None
        self.lease_seconds: float = LEASE_SECONDS
        """How long the drill lock stays valid unrenewed (renewed every third of it)."""
        self._owners: dict[tuple[str, str, str], Owner] = {}  # (namespace, ReplicaSet, uid) -> owner

    def wrote(self, namespace: str) -> None:
        """Note a namespace drillkit created or changed something in."""
        self.touched.add(namespace)

    def close(self) -> None:
        if self._locks is not None:
            self._locks.close()
        super().close()

    # -- the drill lock (drillkit.kube.lease) -------------------------------------------------

    def acquire_lease(self, namespace: str, run_id: str, scenario_name: str, force: bool = False) -> str | None:
        """Take (or renew) the namespace's drill lock for `run_id` and keep renewing it -> None;
        or "<scenario> (run <id>, since <time>)" of another live holder, taking nothing.
        `force` proceeds (None) without taking a lock another drill holds."""
        if self._locks is None:
            self._locks = DrillLocks(self, self.lease_seconds)
        return self._locks.acquire(namespace, run_id, scenario_name, force)

    def release_lease(self, namespace: str, run_id: str) -> bool:
        """Stop renewing and delete the lock if `run_id` holds it; False if it was not ours."""
        if self._locks is None:
            self._locks = DrillLocks(self, self.lease_seconds)
        return self._locks.release(namespace, run_id)

    # -- namespaces, generic ------------------------------------------------------------------

    def verify_server(self) -> None:
        """Raise NotKubernetes unless the context's server answers `GET /version` like a
        Kubernetes API server: a proxy or web server answering 404 to everything would
        otherwise read as "namespace does not exist" (or "already reverted")."""
        from kubernetes import client

        what = f"get /version of {self.settings.context}"
        try:
            version = self.call(what, client.VersionApi(self.api).get_code)
        except KubeError as exc:
            detail = str(exc).removeprefix(f"{what}: ")
            raise NotKubernetes(self._not_kubernetes(f"GET /version answered: {detail}"), exc.status) from None
        if not isinstance(version, dict) or not version.get("gitVersion"):
            raise NotKubernetes(self._not_kubernetes(f"GET /version answered {str(version)[:120]!r}"))

    def _not_kubernetes(self, detail: str) -> str:
        return (
            f"the server of context {self.settings.context} ({self._cfg.host}) is not a Kubernetes API "
            f"server: {detail}; check the kubeconfig's server URL"
        )

    def namespace_exists(self, namespace: str) -> bool:
        try:
            self.call(f"get namespaces {namespace}", self.core.read_namespace, namespace)
        except NotFound:
            self.verify_server()  # a 404 from something that is not Kubernetes is not an answer
            return False
        return True

    # -- pods ---------------------------------------------------------------------------------

    def list_pods(
        self, namespace: str | None, label_selector: str | None = None, field_selector: str | None = None
    ) -> list[Pod]:
        kw = {k: v for k, v in (("label_selector", label_selector), ("field_selector", field_selector)) if v}
        where = namespace or "all namespaces"
        if namespace:
            data = self.call(f"list pods in {where}", self.core.list_namespaced_pod, namespace, **kw)
        else:
            data = self.call(f"list pods in {where}", self.core.list_pod_for_all_namespaces, **kw)
        return [Pod.from_json(o) for o in data.get("items") or []]

    def get_pod(self, namespace: str, name: str) -> Pod | None:
        try:
            return Pod.from_json(
                self.call(f"get pods {namespace}/{name}", self.core.read_namespaced_pod, name, namespace)
            )
        except NotFound:
            return None

    def pod_manifest(self, namespace: str, name: str) -> dict[str, Any]:
        """The pod as JSON, stripped so that it can be created again (owner-less pods)."""
        return strip_for_create(
            self.call(f"get pods {namespace}/{name}", self.core.read_namespaced_pod, name, namespace)
        )

    def create_pod(self, namespace: str, manifest: dict[str, Any], dry_run: bool = False) -> Pod:
        """Create a pod; with `dry_run`, only ask whether the apiserver would (RBAC, admission
        such as Pod Security, quotas): nothing is created."""
        if not dry_run:
            self.wrote(namespace)
        name = (manifest.get("metadata") or {}).get("name", "?")
        kw = {"dry_run": "All"} if dry_run else {}
        what = f"create pods {namespace}/{name}" + (" (dry run)" if dry_run else "")
        return Pod.from_json(self.call(what, self.core.create_namespaced_pod, namespace, manifest, **kw))

    def delete_pod(self, namespace: str, name: str, uid: str | None = None, grace_period: int | None = None) -> bool:
        """Delete (only the pod with `uid`, if given); False if it was already gone."""
        self.wrote(namespace)
        body: dict[str, Any] = {}
        if uid:
            body["preconditions"] = {"uid": uid}
        if grace_period is not None:
            body["gracePeriodSeconds"] = grace_period
        try:
            self.call(f"delete pods {namespace}/{name}", self.core.delete_namespaced_pod, name, namespace, body=body)
        except NotFound:
            return False
        except Conflict:  # the uid precondition failed: a new pod with the same name
            return False
        return True

    def pod_log(self, namespace: str, name: str, container: str | None = None) -> str:
        """The pod's log ("" if it has none yet)."""
        kw = {"container": container} if container else {}
        what = f"get pods/log {namespace}/{name}"
        return str(self.call(what, self.core.read_namespaced_pod_log, name, namespace, text=True, **kw))

    def wait_pod_gone(self, namespace: str, name: str, uid: str, timeout: float, stop: StopFlag | None = None) -> bool:
        """Until the pod `name` with `uid` no longer exists (a terminating pod finishing its
        grace period); False at the deadline or when `stop` interrupts."""
        return bool(
            self.wait_pods(
                namespace,
                None,
                lambda pods: not any(p.uid == uid for p in pods),
                timeout,
                stop,
                field_selector=f"metadata.name={name}",
            )
        )

    def owner_of(self, pod: Pod) -> Owner | None:
        """The controller that recreates `pod`: ReplicaSet -> Deployment, StatefulSet, ...

        A ReplicaSet's owner is looked up once per ReplicaSet (by uid: a new one of the same
        name is looked up again), not once per pod: 1,000 pods of one Deployment, one GET."""
        ctrl = pod.controller
        if ctrl is None:
            return None
        if ctrl.kind != "ReplicaSet":
            return Owner(ctrl.kind, ctrl.name)
        key = (pod.namespace, ctrl.name, ctrl.uid)
        if (known := self._owners.get(key)) is not None:
            return known
        try:
            rs = self.call(
                f"get replicasets {pod.namespace}/{ctrl.name}",
                self.apps.read_namespaced_replica_set,
                ctrl.name,
                pod.namespace,
            )
        except NotFound:
            return Owner("ReplicaSet", ctrl.name)
        up = next((r for r in (rs.get("metadata") or {}).get("ownerReferences") or [] if r.get("controller")), None)
        deployment = up is not None and up.get("kind") == "Deployment"
        owner = Owner("Deployment", up["name"]) if up and deployment else Owner(ctrl.kind, ctrl.name)
        self._owners[key] = owner
        return owner

    # -- workloads ----------------------------------------------------------------------------

    def _workload_fns(
        self, kind: str
    ) -> tuple[Callable[..., Any], Callable[..., Any], Callable[..., Any], Callable[..., Any]]:
        if kind == "Deployment":
            return (
                self.apps.read_namespaced_deployment,
                self.apps.patch_namespaced_deployment,
                self.apps.read_namespaced_deployment_scale,
                self.apps.patch_namespaced_deployment_scale,
            )
        if kind == "StatefulSet":
            return (
                self.apps.read_namespaced_stateful_set,
                self.apps.patch_namespaced_stateful_set,
                self.apps.read_namespaced_stateful_set_scale,
                self.apps.patch_namespaced_stateful_set_scale,
            )
        raise InputError(f"unsupported workload kind {kind!r}")

    def get_workload(self, kind: str, namespace: str, name: str) -> Workload | None:
        read = self._workload_fns(kind)[0]
        try:
            o = self.call(f"get {kind.lower()}s {namespace}/{name}", read, name, namespace)
        except NotFound:
            return None
        return Workload.from_json(kind, o)

    def get_replicas(self, kind: str, namespace: str, name: str) -> int:
        read_scale = self._workload_fns(kind)[2]
        data = self.call(f"get {kind.lower()}s/scale {namespace}/{name}", read_scale, name, namespace)
        return int((data.get("spec") or {}).get("replicas") or 0)

    def scale(self, kind: str, namespace: str, name: str, replicas: int) -> None:
        self.wrote(namespace)
        patch_scale = self._workload_fns(kind)[3]
        self.call(
            f"patch {kind.lower()}s/scale {namespace}/{name}",
            patch_scale,
            name,
            namespace,
            {"spec": {"replicas": replicas}},
        )

    def scale_from(self, kind: str, namespace: str, name: str, expected: int, replicas: int) -> bool:
        """Scale to `replicas` only if the workload still has `expected` (a JSON-patch `test`:
        optimistic concurrency); False if someone changed the count meanwhile. The patch goes to
        the workload, not its /scale: a Scale object omits `spec.replicas` when it is 0, so a
        `test` of 0 there always fails; the workload's own `spec.replicas` is always set."""
        ops = [
            {"op": "test", "path": "/spec/replicas", "value": expected},
            {"op": "replace", "path": "/spec/replicas", "value": replicas},
        ]
        try:
            self.patch_workload(kind, namespace, name, ops)
        except KubeError as exc:
            if exc.status == 422:  # the test operation failed
                return False
            raise
        return True

    def replace_if(self, kind: str, namespace: str, name: str, path: str, was: Any, value: Any) -> bool:
        """Set the value at JSON pointer `path` of a workload to `value` only if it is still
        `was` (what drillkit set): one JSON patch `test` + `replace`, so nothing else of the
        object is written; False if it was changed meanwhile."""
        ops = [{"op": "test", "path": path, "value": was}, {"op": "replace", "path": path, "value": value}]
        try:
            self.patch_workload(kind, namespace, name, ops)
        except KubeError as exc:
            if exc.status == 422:
                return False
            raise
        return True

    def patch_workload(
        self, kind: str, namespace: str, name: str, patch: dict[str, Any] | list[dict[str, Any]]
    ) -> None:
        """Strategic merge patch (a dict) or JSON patch (a list of operations)."""
        self.wrote(namespace)
        fn = self._workload_fns(kind)[1]
        self.call(f"patch {kind.lower()}s {namespace}/{name}", fn, name, namespace, patch)

    def replace_template(self, kind: str, namespace: str, name: str, template: dict[str, Any]) -> None:
        """Put back a pod template exactly (JSON patch `replace`, no merging)."""
        self.patch_workload(kind, namespace, name, [{"op": "replace", "path": "/spec/template", "value": template}])

    def label_workload(self, kind: str, namespace: str, name: str, labels: dict[str, str | None]) -> None:
        """Set (or, with None, remove) labels of the workload itself, not of its pods."""
        self.patch_workload(kind, namespace, name, {"metadata": {"labels": labels}})

    def restart_workload(self, kind: str, namespace: str, name: str, at: str, key: str = RESTARTED_AT) -> None:
        """Roll the workload's pods, like `kubectl rollout restart` (whose own annotation `key`
        is in a blind exercise: kubectl.kubernetes.io/restartedAt)."""
        self.patch_workload(kind, namespace, name, {"spec": {"template": {"metadata": {"annotations": {key: at}}}}})

    def list_workloads(self, kind: str, namespace: str) -> list[Workload]:
        fn = self.apps.list_namespaced_deployment if kind == "Deployment" else self.apps.list_namespaced_stateful_set
        data = self.call(f"list {kind.lower()}s in {namespace}", fn, namespace)
        out = []
        for o in data.get("items") or []:
            w = self.get_workload(kind, namespace, o["metadata"]["name"])
            if w:
                out.append(w)
        return out

    def wait_workload_ready(
        self,
        kind: str,
        namespace: str,
        name: str,
        timeout: float,
        stop: StopFlag | None = None,
        images: dict[str, str] | None = None,
    ) -> bool:
        """Until every desired replica of the workload is Ready (pods watched). With `images`
        (container name -> image), only pods running those images count, so pods of the
        template that was just replaced do not pass for the new one."""
        w = self.get_workload(kind, namespace, name)
        if w is None:
            return False

        def current(p: Pod) -> bool:
            return not images or all(images.get(c.name, c.image) == c.image for c in p.containers)

        def done(pods: list[Pod]) -> bool:
            ready = [p for p in pods if p.ready and not p.terminating and current(p)]
            return len(ready) >= w.replicas and len(pods) == len(ready)

        return bool(self.wait_pods(namespace, w.selector, done, timeout, stop))

    # -- secrets ------------------------------------------------------------------------------

    def secret_data(self, namespace: str, name: str) -> dict[str, str] | None:
        """The Secret's base64 data (kept in memory only), or None if it does not exist."""
        try:
            o = self.call(f"get secrets {namespace}/{name}", self.core.read_namespaced_secret, name, namespace)
        except NotFound:
            return None
        return dict(o.get("data") or {})

    def secret_annotations(self, namespace: str, name: str) -> dict[str, str] | None:
        try:
            o = self.call(f"get secrets {namespace}/{name}", self.core.read_namespaced_secret, name, namespace)
        except NotFound:
            return None
        return dict((o.get("metadata") or {}).get("annotations") or {})

    def secret_keys(self, namespace: str, name: str) -> tuple[ObjRef, list[str], bool] | None:
        """A Secret's key names (values are dropped at once) and whether it is `immutable`, or
        None if it does not exist."""
        try:
            o = self.call(f"get secrets {namespace}/{name}", self.core.read_namespaced_secret, name, namespace)
        except NotFound:
            return None
        ref = ObjRef("Secret", namespace, name, (o.get("metadata") or {}).get("uid", ""))
        return ref, sorted(o.get("data") or {}), bool(o.get("immutable"))

    def create_secret(
        self, namespace: str, name: str, data: dict[str, str], labels: dict[str, str], annotations: dict[str, str]
    ) -> None:
        self.wrote(namespace)
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {"name": name, "namespace": namespace, "labels": labels, "annotations": annotations},
            "data": data,
        }
        self.call(f"create secrets {namespace}/{name}", self.core.create_namespaced_secret, namespace, body)

    def set_secret_key(self, namespace: str, name: str, key: str, b64value: str) -> None:
        self.call(
            f"patch secrets {namespace}/{name}",
            self.core.patch_namespaced_secret,
            name,
            namespace,
            {"data": {key: b64value}},
        )

    def set_secret_key_if(self, namespace: str, name: str, key: str, expected: tuple[str, ...], b64value: str) -> bool:
        """Set `key` only while it holds one of `expected` (base64; a JSON-patch `test`, so a
        value written meanwhile is never overwritten); False if it holds something else."""
        current = (self.secret_data(namespace, name) or {}).get(key)
        if current not in expected:
            return False
        if current == b64value:
            return True
        path = "/data/" + key.replace("~", "~0").replace("/", "~1")
        ops = [{"op": "test", "path": path, "value": current}, {"op": "replace", "path": path, "value": b64value}]
        try:
            self.call(f"patch secrets {namespace}/{name}", self.core.patch_namespaced_secret, name, namespace, ops)
        except KubeError as exc:
            if exc.status == 422:  # changed between the read and the patch
                return False
            raise
        return True

    def delete_secret(self, namespace: str, name: str) -> bool:
        self.wrote(namespace)
        try:
            self.call(f"delete secrets {namespace}/{name}", self.core.delete_namespaced_secret, name, namespace)
        except NotFound:
            return False
        return True

    # -- services, jobs, bare pods drillkit creates ----------------------------------------------

    def service(self, namespace: str, name: str) -> tuple[ObjRef, list[int]] | None:
        """A Service and its ports, or None if it does not exist."""
        try:
            o = self.call(f"get services {namespace}/{name}", self.core.read_namespaced_service, name, namespace)
        except NotFound:
            return None
        ports = [int(p["port"]) for p in (o.get("spec") or {}).get("ports") or [] if "port" in p]
        return ObjRef("Service", namespace, name, (o.get("metadata") or {}).get("uid", "")), ports

    def create_job(self, namespace: str, manifest: dict[str, Any]) -> ObjRef:
        self.wrote(namespace)
        name = manifest["metadata"]["name"]
        o = self.call(f"create jobs {namespace}/{name}", self.batch.create_namespaced_job, namespace, manifest)
        return ObjRef("Job", namespace, name, (o.get("metadata") or {}).get("uid", ""))

    def delete_job(self, namespace: str, name: str) -> bool:
        """Delete a Job and (propagation Background) its pods; False if already gone."""
        self.wrote(namespace)
        try:
            self.call(
                f"delete jobs {namespace}/{name}",
                self.batch.delete_namespaced_job,
                name,
                namespace,
                body={"propagationPolicy": "Background"},
            )
        except NotFound:
            return False
        return True

    # -- ephemeral containers ---------------------------------------------------------------------

    def add_ephemeral_container(
        self, namespace: str, pod: str, container: dict[str, Any], dry_run: bool = False
    ) -> None:
        body = {"spec": {"ephemeralContainers": [container]}}
        kw = {"dry_run": "All"} if dry_run else {}
        self.call(
            f"patch pods/ephemeralcontainers {namespace}/{pod}",
            self.core.patch_namespaced_pod_ephemeralcontainers,
            pod,
            namespace,
            body,
            _content_type="application/strategic-merge-patch+json",
            **kw,
        )

    def mark_pod(
        self, namespace: str, name: str, labels: dict[str, str | None], annotations: dict[str, str | None]
    ) -> bool:
        """Set (None: remove) labels and annotations of a pod drillkit did not create; False if
        it is gone."""
        self.wrote(namespace)
        try:
            self.call(
                f"patch pods {namespace}/{name}",
                self.core.patch_namespaced_pod,
                name,
                namespace,
                {"metadata": {"labels": labels, "annotations": annotations}},
            )
        except NotFound:
            return False
        return True

    # -- nodes ----------------------------------------------------------------------------------

    def list_nodes(self) -> list[Node]:
        data = self.call("list nodes", self.core.list_node)
        return [Node.from_json(o) for o in data.get("items") or []]

    def get_node(self, name: str) -> Node | None:
        try:
            return Node.from_json(self.call(f"get nodes {name}", self.core.read_node, name))
        except NotFound:
            return None

    def cordon(self, name: str, run_id: str) -> None:
        self.cordoned = True
        self.call(
            f"patch nodes {name}",
            self.core.patch_node,
            name,
            {"spec": {"unschedulable": True}, "metadata": {"annotations": {CORDONED_BY: run_id}}},
            field_manager=FIELD_MANAGER,
        )

    def cordoned_by_other(self, name: str) -> str | None:
        """Who else set the node's `spec.unschedulable` (its field manager, e.g. kubectl:
        on-call cordoned it again after uncordoning drillkit's cordon), or None if drillkit's
        cordon is the one in place (or the node is gone, or not cordoned)."""
        try:
            node = self.call(f"get nodes {name}", self.core.read_node, name)
        except NotFound:
            return None
        if not (node.get("spec") or {}).get("unschedulable"):
            return None
        for entry in (node.get("metadata") or {}).get("managedFields") or []:
            if "f:unschedulable" in ((entry.get("fieldsV1") or {}).get("f:spec") or {}):
                manager = str(entry.get("manager") or "")
                return None if manager in OUR_MANAGERS else manager
        return None

    def uncordon(self, name: str, keep_cordoned: bool = False) -> bool:
        """Remove drillkit's mark (and the cordon unless `keep_cordoned`); False if gone."""
        patch: dict[str, Any] = {"metadata": {"annotations": {CORDONED_BY: None}}}
        if not keep_cordoned:
            patch["spec"] = {"unschedulable": None}
        try:
            self.call(f"patch nodes {name}", self.core.patch_node, name, patch)
        except NotFound:
            return False
        return True

    def evict(self, namespace: str, name: str, deadline: float, stop: StopFlag | None = None) -> str:
        """Evict through policy/v1 (PodDisruptionBudgets respected). A 429 (budget exhausted)
        is retried with backoff until the monotonic `deadline`, or until `stop` (default: the
        facade's) interrupts, during the backoff too. -> 'evicted' | 'gone' | reason."""
        stop = stop if stop is not None else self.stop
        what = f"create pods/eviction {namespace}/{name}"
        stopped = "not evicted: the drill is stopping"
        if stop is not None and stop.interrupts():
            return stopped
        body = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name, "namespace": namespace}}
        left = max(1.0, deadline - time.monotonic())
        policy = retrying(what, stop, attempts=10_000, max_delay=left, initial=0.5, maximum=5.0)
        try:
            policy(self._once, what, self.core.create_namespaced_pod_eviction, name, namespace, body)
        except NotFound:
            return "gone"
        except Aborted:  # the back-off noticed the stop request
            return stopped
        except KubeTransient as exc:
            return f"not evicted within the deadline: {exc}"
        return "evicted"

    # -- run-id labelled objects ---------------------------------------------------------------

    def labelled(
        self, run_id: str | None = None, namespaces: Iterable[str] | None = None, nodes: bool = True
    ) -> list[Labelled]:
        """Objects carrying the run-id label, pods carrying a network-latency delay, workloads
        marked modified (this run's, or every run's if None) and, with `nodes`, nodes marked
        cordoned. `namespaces` None lists across all namespaces (a cluster-wide grant, for a
        cleanup that knows no namespace); otherwise only in those namespaces."""
        lists: tuple[tuple[str, str, Callable[..., Any], Callable[..., Any], str], ...] = (
            ("Job", "jobs", self.batch.list_job_for_all_namespaces, self.batch.list_namespaced_job, RUN_LABEL),
            ("Pod", "pods", self.core.list_pod_for_all_namespaces, self.core.list_namespaced_pod, RUN_LABEL),
            ("Pod", "pods", self.core.list_pod_for_all_namespaces, self.core.list_namespaced_pod, NETEM_BY),
            (
                "Secret",
                "secrets",
                self.core.list_secret_for_all_namespaces,
                self.core.list_namespaced_secret,
                RUN_LABEL,
            ),
            (
                "Deployment",
                "deployments",
                self.apps.list_deployment_for_all_namespaces,
                self.apps.list_namespaced_deployment,
                MODIFIED_BY,
            ),
            (
                "StatefulSet",
                "statefulsets",
                self.apps.list_stateful_set_for_all_namespaces,
                self.apps.list_namespaced_stateful_set,
                MODIFIED_BY,
            ),
        )
        out = []
        where = sorted(set(namespaces)) if namespaces is not None else None
        for kind, plural, everywhere, one, label in lists:
            selector = f"{label}={run_id}" if run_id else label
            if where is None:
                pages = [self.call(f"list {plural} in all namespaces", everywhere, label_selector=selector)]
            else:
                pages = [self.call(f"list {plural} in {ns}", one, ns, label_selector=selector) for ns in where]
            out += [Labelled.from_json(kind, o, label) for data in pages for o in data.get("items") or []]
        if nodes:
            out += self.labelled_nodes(run_id)
        return out

    def labelled_nodes(self, run_id: str | None = None) -> list[Labelled]:
        """Nodes marked cordoned by the run (by any run if None); needs list on nodes."""
        out = []
        for o in self.call("list nodes", self.core.list_node).get("items") or []:
            node = Labelled.from_json("Node", o, CORDONED_BY)
            if node.run_id and (run_id is None or node.run_id == run_id):
                out.append(node)
        return out

    def leftovers(
        self, run_id: str, wait: float = 0.0, stop: StopFlag | None = None, namespaces: Iterable[str] | None = None
    ) -> list[ObjRef]:
        """What this run left behind: objects labelled with it (pods still delayed, nodes still
        marked cordoned, workloads still marked modified), listed only in `namespaces` (default:
        the namespaces this facade wrote to) and, if this facade cordoned a node, on nodes.

        Waits up to `wait` s for objects being deleted asynchronously (a Job's pods, graceful
        pod termination) to disappear, or until `stop` (default: the facade's) interrupts;
        whatever is still there then is returned. A listing that fails raises (KubeError,
        Forbidden included): the leftover state is then unknown, never "nothing left".
        """
        found: list[Labelled] = []
        where = sorted(namespaces if namespaces is not None else self.touched)

        def clean() -> bool:
            found[:] = self.labelled(run_id, where, nodes=self.cordoned)
            return not found

        wait_until(clean, time.monotonic() + wait, 0.5, stop if stop is not None else self.stop)
        return [x.ref for x in found]

    def delete(self, ref: ObjRef) -> bool:
        """Delete a labelled object by kind (Jobs with their pods); False if already gone."""
        ns = ref.namespace or ""
        if ref.kind == "Job":
            return self.delete_job(ns, ref.name)
        if ref.kind == "Pod":
            return self.delete_pod(ns, ref.name, grace_period=0)
        if ref.kind == "Secret":
            return self.delete_secret(ns, ref.name)
        if ref.kind == "Node":  # a cordon on-call set again since stays theirs: only drillkit's mark goes
            return self.uncordon(ref.name, keep_cordoned=self.cordoned_by_other(ref.name) is not None)
        raise PreflightError(f"drillkit does not delete {ref.kind} objects")
