"""`RealCluster`: the test-facing handle on the real control plane (controlplane.py) behind the
recording proxy (proxy.py).

One control plane per pytest worker (session-scoped); `reset()` between tests deletes what a test
made (namespaced objects, nodes, non-bootstrap cluster RBAC) so each test starts from an empty or
a freshly seeded cluster without paying the apiserver's start-up again.
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from .controlplane import ADMIN_TOKEN, NODE_ANNOTATION, REPO, ControlPlane
from .proxy import FaultProxy, Injection, RequestRecord

CONTEXT = "kind-drillkit-test"
PROD_CONTEXT = "prod-cluster"
DEMO_MANIFESTS = Path(__file__).with_name("demo.yaml")
RBAC_CLUSTER = REPO / "deploy" / "rbac.yaml"
RBAC_NAMESPACE = REPO / "deploy" / "rbac-namespace.yaml"
ADMISSION_POLICY = REPO / "deploy" / "admission-policy.yaml"
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
Obj = dict[str, Any]

# resource -> (API prefix, namespaced, kind)
RESOURCES: dict[str, tuple[str, bool, str]] = {
    "pods": ("/api/v1", True, "Pod"),
    "secrets": ("/api/v1", True, "Secret"),
    "configmaps": ("/api/v1", True, "ConfigMap"),
    "services": ("/api/v1", True, "Service"),
    "serviceaccounts": ("/api/v1", True, "ServiceAccount"),
    "events": ("/api/v1", True, "Event"),
    "limitranges": ("/api/v1", True, "LimitRange"),
    "resourcequotas": ("/api/v1", True, "ResourceQuota"),
    "nodes": ("/api/v1", False, "Node"),
    "namespaces": ("/api/v1", False, "Namespace"),
    "deployments": ("/apis/apps/v1", True, "Deployment"),
    "statefulsets": ("/apis/apps/v1", True, "StatefulSet"),
    "replicasets": ("/apis/apps/v1", True, "ReplicaSet"),
    "daemonsets": ("/apis/apps/v1", True, "DaemonSet"),
    "jobs": ("/apis/batch/v1", True, "Job"),
    "leases": ("/apis/coordination.k8s.io/v1", True, "Lease"),
    "poddisruptionbudgets": ("/apis/policy/v1", True, "PodDisruptionBudget"),
    "roles": ("/apis/rbac.authorization.k8s.io/v1", True, "Role"),
    "rolebindings": ("/apis/rbac.authorization.k8s.io/v1", True, "RoleBinding"),
    "clusterroles": ("/apis/rbac.authorization.k8s.io/v1", False, "ClusterRole"),
    "clusterrolebindings": ("/apis/rbac.authorization.k8s.io/v1", False, "ClusterRoleBinding"),
    "validatingadmissionpolicies": ("/apis/admissionregistration.k8s.io/v1", False, "ValidatingAdmissionPolicy"),
    "validatingadmissionpolicybindings": (
        "/apis/admissionregistration.k8s.io/v1",
        False,
        "ValidatingAdmissionPolicyBinding",
    ),
}
KIND_TO_RESOURCE = {kind: res for res, (_, _, kind) in RESOURCES.items()}
# What a test may leave in a namespace, deleted by reset() (controllers first, so nothing is recreated).
RESET_ORDER = (
    "deployments", "statefulsets", "daemonsets", "jobs", "replicasets", "pods", "poddisruptionbudgets",
    "secrets", "configmaps", "services", "leases", "roles", "rolebindings", "limitranges", "resourcequotas", "events",
)  # fmt: skip


class ApiError(Exception):
    def __init__(self, status: int, body: str):
        super().__init__(f"HTTP {status}: {body[:500]}")
        self.status = status
        self.body = body


def pod_ready(pod: Obj) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions) and not pod["metadata"].get(
        "deletionTimestamp"
    )


class RealCluster:
    """The real apiserver, seen through the recording proxy. The kubeconfig's `kind-drillkit-test`
    context (allowed by drillkit's kind allowlist) and `prod-cluster` (refused) both lead here."""

    def __init__(self, plane: ControlPlane, kubeconfig_dir: Path):
        self.plane = plane
        self.proxy = FaultProxy(plane.api_port, str(plane.ca)).start()
        self.url = self.proxy.url
        self.kubeconfig_path = str(kubeconfig_dir / "kubeconfig")
        self._token = ADMIN_TOKEN
        self._rbac: tuple[str, str] | None = None
        self.write_kubeconfig()

    # ------------------------------------------------------------ kubeconfig and RBAC
    def write_kubeconfig(self) -> None:
        """Both contexts, with the current token (the admin's, or the ServiceAccount's under RBAC)."""
        ca = base64.b64encode(self.plane.ca.read_bytes()).decode()
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "preferences": {},
            "clusters": [
                {"name": c, "cluster": {"server": self.url, "certificate-authority-data": ca}}
                for c in (CONTEXT, PROD_CONTEXT)
            ],
            "users": [{"name": c, "user": {"token": self._token}} for c in (CONTEXT, PROD_CONTEXT)],
            "contexts": [
                {"name": c, "context": {"cluster": c, "user": c, "namespace": "default"}}
                for c in (CONTEXT, PROD_CONTEXT)
            ],
            "current-context": CONTEXT,
        }
        Path(self.kubeconfig_path).write_text(yaml.safe_dump(config, sort_keys=False))

    def kubectl(self, *args: str, token: str | None = None, check: bool = True, input: str | None = None) -> str:
        """The real kubectl, straight at the apiserver (not through the proxy)."""
        cmd = [
            str(self.plane.bin / "kubectl"),
            f"--server={self.plane.url}",
            f"--certificate-authority={self.plane.ca}",
        ]
        cmd += [f"--token={token or ADMIN_TOKEN}", *args]
        done = subprocess.run(cmd, capture_output=True, text=True, input=input, timeout=60)
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} exited {done.returncode}: {done.stderr.strip()}")
        return done.stdout + (done.stderr if not check else "")

    def enforce_rbac(
        self,
        path: str | Path = RBAC_NAMESPACE,
        sa: tuple[str, str] = ("drillkit", "drillkit"),
        targets: tuple[str, ...] = ("chatbot",),
        cluster: str | Path = RBAC_CLUSTER,
        admission: bool = True,
    ) -> str:
        """Apply the shipped RBAC as its comments tell an operator (`kubectl apply -f
        deploy/rbac.yaml`, then `kubectl apply -n <target> -f deploy/rbac-namespace.yaml` per
        target namespace), with `admission` the admission policy (`kubectl apply -f
        deploy/admission-policy.yaml`), and from now on act as the ServiceAccount, with a token
        from the TokenRequest API. `self.rbac = None` goes back to the admin (the policy stays
        until reset()). Returns the token."""
        self.kubectl("apply", "-f", str(cluster))
        if admission:
            self.kubectl("apply", "-f", str(ADMISSION_POLICY))
        for ns in targets:
            self.kubectl("apply", "-n", ns, "-f", str(path))
        token = self.kubectl("create", "token", sa[1], "-n", sa[0], "--duration=1h").strip()
        if admission and targets:  # the apiserver loads a new policy asynchronously: wait until it refuses
            probe = ("create", "secret", "generic", "drillkit-policy-probe", "-n", targets[0], "--dry-run=server")
            self.wait_for(
                lambda: "drillkit.io/run-id" in self.kubectl(*probe, token=token, check=False),
                15,
                "the admission policy to refuse an unlabelled Secret",
            )
        self._token, self._rbac = token, sa
        self.write_kubeconfig()
        return token

    @property
    def rbac(self) -> tuple[str, str] | None:
        return self._rbac

    @rbac.setter
    def rbac(self, value: None) -> None:
        assert value is None, "use enforce_rbac() to act as a ServiceAccount"
        self._token, self._rbac = ADMIN_TOKEN, None
        self.write_kubeconfig()

    @property
    def denied(self) -> list[str]:
        """The apiserver's own messages of every request it refused with 403."""
        out = []
        for r in self.proxy.requests:
            if r.status == 403:
                try:
                    out.append(json.loads(r.answer)["message"])
                except (ValueError, KeyError):
                    out.append(r.answer)
        return out

    # ------------------------------------------------------------ recorder and faults
    @property
    def requests(self) -> list[RequestRecord]:
        return list(self.proxy.requests)

    def inject_error(self, *args: Any, **kwargs: Any) -> Injection:
        return self.proxy.inject_error(*args, **kwargs)

    def clear_injections(self) -> None:
        self.proxy.clear_injections()

    # ------------------------------------------------------------ REST as the admin
    def _path(self, resource: str, namespace: str | None, name: str | None = None, sub: str | None = None) -> str:
        prefix, namespaced, _ = RESOURCES[resource]
        path = prefix + (f"/namespaces/{namespace}" if namespaced and namespace else "") + f"/{resource}"
        if name:
            path += f"/{name}"
        if sub:
            path += f"/{sub}"
        return path

    def call(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> Any:
        import ssl

        ctx = ssl.create_default_context(cafile=str(self.plane.ca))
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            self.plane.url + path,
            data=data,
            method=method,
            headers={
                "Authorization": f"Bearer {ADMIN_TOKEN}",
                "Content-Type": content_type,
                "Accept": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(req, timeout=30, context=ctx) as r:
                return json.loads(r.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise ApiError(exc.code, exc.read().decode("utf-8", "replace")) from None

    def get(self, resource: str, namespace: str | None, name: str) -> Obj | None:
        try:
            return dict(self.call("GET", self._path(resource, namespace, name)))
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def list(
        self,
        resource: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[Obj]:
        from urllib.parse import urlencode

        query = {k: v for k, v in (("labelSelector", label_selector), ("fieldSelector", field_selector)) if v}
        path = self._path(resource, namespace) + (f"?{urlencode(query)}" if query else "")
        return list(self.call("GET", path)["items"])

    def update(self, resource: str, namespace: str | None, name: str, fn: Callable[[Obj], None]) -> Obj | None:
        """Change an object through `fn(obj)` as another client would (read, change, PUT; the
        status subresource too when `fn` changed the status). Retries on 409."""
        for _ in range(10):
            obj = self.get(resource, namespace, name)
            if obj is None:
                return None
            status_before = json.dumps(obj.get("status"), sort_keys=True)
            fn(obj)
            try:
                out = self.call("PUT", self._path(resource, namespace, name), obj)
                if json.dumps(obj.get("status"), sort_keys=True) != status_before:
                    obj["metadata"]["resourceVersion"] = out["metadata"]["resourceVersion"]
                    out = self.call("PUT", self._path(resource, namespace, name, "status"), obj)
                return dict(out)
            except ApiError as exc:
                if exc.status != 409:
                    raise
        raise AssertionError(f"update of {resource}/{name} kept conflicting")

    def delete(self, resource: str, namespace: str | None, name: str, propagation: str | None = None) -> Obj:
        body = {"propagationPolicy": propagation} if propagation else None
        return dict(self.call("DELETE", self._path(resource, namespace, name), body))

    def seed(self, obj: Obj | list[Obj]) -> Any:
        """Create object(s) from manifest dicts (by `kind`); creates a missing namespace. Nodes get
        KWOK's annotation, so KWOK plays their kubelet."""
        if isinstance(obj, list):
            return [self.seed(o) for o in obj]
        obj = json.loads(json.dumps(obj))
        resource = KIND_TO_RESOURCE[obj["kind"]]
        prefix, namespaced, kind = RESOURCES[resource]
        obj.setdefault("apiVersion", prefix.removeprefix("/apis/").removeprefix("/api/"))
        meta = obj.setdefault("metadata", {})
        if kind == "Node":
            meta.setdefault("annotations", {})[NODE_ANNOTATION] = "fake"
            obj.setdefault("spec", {}).setdefault("taints", [])
        ns = meta.get("namespace") or "default" if namespaced else None
        if namespaced and ns not in SYSTEM_NAMESPACES and self.get("namespaces", None, ns) is None:
            self.ensure_namespace(ns)
        if kind == "Namespace":  # reset() keeps namespaces (deleting one takes seconds): reuse it
            self.ensure_namespace(meta["name"], meta.get("labels"))
            return self.get("namespaces", None, meta["name"])
        return self.call("POST", self._path(resource, ns), obj)

    def ensure_namespace(self, name: str, labels: dict[str, str] | None = None) -> None:
        """Create the namespace, or give an existing one exactly `labels` (and its name label)."""
        try:
            self.call("POST", "/api/v1/namespaces", {"metadata": {"name": name, "labels": labels or {}}})
        except ApiError as exc:
            if exc.status != 409:
                raise
            wanted = {**(labels or {}), "kubernetes.io/metadata.name": name}
            self.update("namespaces", None, name, lambda n: n["metadata"].__setitem__("labels", wanted))
        # pods need the namespace's `default` ServiceAccount (ServiceAccount admission)
        self.wait_for(lambda: self.get("serviceaccounts", name, "default"), 30, f"namespace {name}'s default SA")

    def seed_yaml(self, text: str) -> list[Obj]:
        return [self.seed(d) for d in yaml.safe_load_all(text) if d]

    def seed_demo(self, wait: bool = True, timeout: float = 30.0) -> None:
        """Seed `demo.yaml` (nodes, the chatbot platform); wait until its 4 pods are Ready."""
        for doc in yaml.safe_load_all(DEMO_MANIFESTS.read_text()):
            if not doc or (doc["kind"] == "Namespace" and doc["metadata"]["name"] in SYSTEM_NAMESPACES):
                continue
            resource, meta = KIND_TO_RESOURCE[doc["kind"]], doc["metadata"]
            if self.get(resource, meta.get("namespace"), meta["name"]) is None:
                self.seed(doc)
        if wait:
            self.wait_for(
                lambda: len([p for p in self.list("pods", "chatbot") if pod_ready(p)]) == 4,
                timeout,
                "the 4 chatbot pods (3 api + 1 db) to be Ready",
            )

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 10.0, message: str = "") -> Any:
        """Poll `predicate` until it returns something truthy; AssertionError on timeout."""
        deadline, value = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError(f"timed out after {timeout}s waiting for {message or predicate}; last value: {value!r}")

    def api_client(self, context: str = CONTEXT) -> Any:
        """A real `kubernetes.client.ApiClient` for this cluster (close it when done)."""
        import kubernetes

        return kubernetes.config.new_client_from_config(config_file=self.kubeconfig_path, context=context)

    # ------------------------------------------------------------ between tests
    def reset(self) -> None:
        """Delete what tests make: every object in non-system namespaces (and drillkit's in the
        system ones), the namespaces' extra labels, nodes, cluster RBAC that is not bootstrap,
        admission policies. Waits until the pods are really gone."""
        self.rbac = None
        self.proxy.reset()
        spaces = [n["metadata"]["name"] for n in self.list("namespaces")]
        for ns in spaces:
            # the system namespaces keep the control plane's own objects; only workloads and pods a
            # test made there go (a pod left bound to a deleted node comes back on its namesake)
            system = ns in ("kube-system", "kube-public", "kube-node-lease")
            for resource in RESET_ORDER[:6] if system else RESET_ORDER:
                path = self._path(resource, ns)
                if resource == "pods":
                    path += "?gracePeriodSeconds=0"
                try:
                    self.call("DELETE", path, {"propagationPolicy": "Background"} if resource != "events" else None)
                except ApiError as exc:
                    if exc.status not in (404, 405):
                        raise
            self._strip_finalizers(ns)
            if system:
                continue
            meta = self.get("namespaces", None, ns)
            if meta and set(meta["metadata"].get("labels") or {}) - {"kubernetes.io/metadata.name"}:
                only_name = {"kubernetes.io/metadata.name": ns}
                self.update("namespaces", None, ns, lambda n, keep=only_name: n["metadata"].__setitem__("labels", keep))
        for res in ("clusterrolebindings", "clusterroles"):
            for obj in self.list(res):
                labels, name = obj["metadata"].get("labels") or {}, obj["metadata"]["name"]
                if labels.get("kubernetes.io/bootstrapping") != "rbac-defaults" and not name.startswith("system:"):
                    self.call("DELETE", self._path(res, None, name))
        for res in ("validatingadmissionpolicybindings", "validatingadmissionpolicies"):
            for obj in self.list(res):
                self.call("DELETE", self._path(res, None, obj["metadata"]["name"]))
        self.call("DELETE", "/api/v1/nodes")
        self.wait_for(lambda: self._swept(spaces), 60, "pods and nodes of the previous test to be gone")

    def _swept(self, spaces: list[str]) -> list[str] | bool:
        """True when no pod and no node is left; else delete what is (again: a controller whose
        cache was stale, e.g. after an etcd restart, may have made a pod since) and name it."""
        left = [(ns, p["metadata"]["name"]) for ns in spaces for p in self.list("pods", ns)]
        nodes = [n["metadata"]["name"] for n in self.list("nodes")]
        if not left and not nodes:
            return True
        for ns, name in left:
            try:
                self.call("PATCH", self._path("pods", ns, name), {"metadata": {"finalizers": None}},
                          content_type="application/merge-patch+json")  # fmt: skip
                self.call("DELETE", self._path("pods", ns, name) + "?gracePeriodSeconds=0")
            except ApiError as exc:
                if exc.status not in (404, 409):
                    raise
        if nodes:
            self.call("DELETE", "/api/v1/nodes")
        time.sleep(0.5)
        return False

    def _strip_finalizers(self, ns: str) -> None:
        """A test may leave finalizers on pods (or drillkit may): the reset must not wait on them."""
        for res in ("pods", "jobs", "secrets"):
            for obj in self.list(res, ns):
                if obj["metadata"].get("finalizers"):
                    patch = {"metadata": {"finalizers": None}}
                    try:
                        self.call(
                            "PATCH",
                            self._path(res, ns, obj["metadata"]["name"]),
                            patch,
                            content_type="application/merge-patch+json",
                        )
                    except ApiError as exc:
                        if exc.status != 404:
                            raise
