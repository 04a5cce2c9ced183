"""A Kubernetes API test server the real `kubernetes` client talks HTTP to.

Plain HTTP on 127.0.0.1 (ephemeral port), `http.server` in background threads. See
`KubeServer` for the test-facing API and `tests/kubeserver/fixture.py` for the fixtures.
"""

from __future__ import annotations

import contextlib
import copy
import json
import socket
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlsplit

import yaml

from .admission import admit_pod, check_ephemeral_update, check_field_selector
from .controllers import Controllers, pdb_numbers, pod_ready
from .execsim import ExecRecord, builtin_exec, serve_exec
from .rbac import Rbac
from .store import (
    HAS_STATUS,
    KIND_TO_RESOURCE,
    RESOURCES,
    ApiError,
    Obj,
    Store,
    api_version,
    json_patch,
    labels_match,
    merge_patch,
    not_found,
    now_rfc3339,
    qualified,
    random_suffix,
    selector_requirements,
    selector_string,
)
from .watch import stream_watch

DEMO_MANIFESTS = Path(__file__).with_name("demo.yaml")
RBAC_MANIFEST = Path(__file__).parents[2] / "deploy" / "rbac.yaml"
CONTEXT = "kind-drillkit-test"
PROD_CONTEXT = "prod-cluster"
VERSION = {
    "major": "1",
    "minor": "31",
    "gitVersion": "v1.31.0",
    "gitCommit": "kubeserver",
    "gitTreeState": "clean",
    "buildDate": "2024-08-13T07:28:49Z",
    "goVersion": "go1.22.5",
    "compiler": "gc",
    "platform": "linux/amd64",
}
SUBRESOURCES = {
    "pods": ["status", "exec", "eviction", "ephemeralcontainers", "log"],
    "deployments": ["status", "scale"],
    "statefulsets": ["status", "scale"],
    "replicasets": ["status", "scale"],
    "jobs": ["status"],
    "nodes": ["status"],
    "namespaces": ["status"],
    "poddisruptionbudgets": ["status"],
    "services": ["status"],
}
PATCH_TYPES = ("application/json-patch+json", "application/merge-patch+json", "application/strategic-merge-patch+json")

ExecResult = tuple[str | bytes, str | bytes, int]
ExecHandler = Callable[[Obj, str, list[str]], ExecResult]


class RequestRecord(NamedTuple):
    method: str
    path: str
    query: dict[str, Any]  # single values as str, repeated ones (exec `command`) as list
    body: Any
    headers: dict[str, str]


@dataclass
class Injection:
    method: str | None
    path_contains: str | None
    status: int | None
    times: int
    retry_after: int | None
    drop_connection: bool
    delay: float
    message: str | None
    hits: int = 0

    @property
    def remaining(self) -> int:
        return self.times - self.hits


class KubeServer:
    """In-process Kubernetes API server for wire tests::

    server = KubeServer().start()          # or the `kube_server` fixture
    server.seed_demo()
    client = kubernetes.config.new_client_from_config(server.kubeconfig_path, CONTEXT)
    ...
    server.stop()
    """

    def __init__(self, ready_delay: float = 0.3, tick: float = 0.05, kubeconfig_dir: str | Path | None = None):
        self.store = self.state = Store()
        self.requests: list[RequestRecord] = []
        self.written: list[tuple[str, Obj]] = []
        """(request, object) of every successful write, checked against the official schemas."""
        self.execs: list[ExecRecord] = []
        self.internal_errors: list[str] = []
        self.readiness_overrides: dict[str, bool] = {}
        self.pod_logs: dict[tuple[str, str], str] = {}
        self.rbac: Rbac | None = None
        self.denied: list[str] = []  # 403 messages RBAC answered
        self.db_connections_held: int | None = None
        """What a db-connection-exhaustion Job's pod logs it holds (None: all it was asked for)."""
        self.ephemeral_containers_forbidden = False
        self.unknown_exec_result: ExecResult = ("", "", 0)
        self.cgroup_version = 2
        """The nodes' cgroup version: on 2 an OOM kill restarts the container (memory.oom.group),
        on 1 only the allocator dies and the cgroup's `oom_kill` counter is the evidence."""
        self.oom_kills: dict[tuple[str, str], int] = {}  # (pod uid, container) -> cgroup oom_kill
        self._injections: list[Injection] = []
        self._exec_handlers: list[tuple[str | Callable[..., bool], ExecHandler]] = []
        self._lock = threading.Lock()
        self.stopping = False
        self.httpd = _HTTPServer(self)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._tmpdir = None if kubeconfig_dir else tempfile.TemporaryDirectory(prefix="kubeserver-")
        directory = Path(kubeconfig_dir or self._tmpdir.name)  # type: ignore[union-attr]
        self.kubeconfig_path = str(directory / "kubeconfig")
        self._write_kubeconfig()
        self.controllers = Controllers(self, ready_delay, tick)
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, args=(0.05,), name="kubeserver-http", daemon=True
        )

    # ------------------------------------------------------------ lifecycle
    def start(self) -> KubeServer:
        self._thread.start()
        self.controllers.start()
        return self

    def stop(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        with self.store.lock:
            self.store.changed.notify_all()
        self.controllers.stop()
        self.httpd.shutdown()
        with self.store.lock:  # again: a watch may have been between its check and its wait
            self.store.changed.notify_all()
        self.httpd.close_all()
        self.httpd.server_close()
        self._thread.join(timeout=5)
        if self._tmpdir:
            self._tmpdir.cleanup()

    def __enter__(self) -> KubeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _write_kubeconfig(self) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "preferences": {},
            "clusters": [{"name": c, "cluster": {"server": self.url}} for c in (CONTEXT, PROD_CONTEXT)],
            "users": [{"name": c, "user": {"token": f"{c}-token"}} for c in (CONTEXT, PROD_CONTEXT)],
            "contexts": [
                {"name": c, "context": {"cluster": c, "user": c, "namespace": "default"}}
                for c in (CONTEXT, PROD_CONTEXT)
            ],
            "current-context": CONTEXT,
        }
        Path(self.kubeconfig_path).write_text(yaml.safe_dump(config, sort_keys=False))

    def enforce_rbac(
        self, path: str | Path = RBAC_MANIFEST, sa: tuple[str, str] = ("drillkit", "drillkit"), targets=("chatbot",)
    ) -> Rbac:
        """From now on, the kubeconfig's token acts as ServiceAccount `sa` with only what the
        RBAC objects in `path` grant it (namespace-less Roles and RoleBindings as applied in
        each of `targets`). `self.rbac = None` turns it off again."""
        docs = [d for d in yaml.safe_load_all(Path(path).read_text()) if d]
        self.rbac = Rbac.from_docs(docs, sa, tuple(targets))
        return self.rbac

    def api_client(self, context: str = CONTEXT):
        """A real `kubernetes.client.ApiClient` for this server (close it when done)."""
        import kubernetes

        return kubernetes.config.new_client_from_config(config_file=self.kubeconfig_path, context=context)

    # ------------------------------------------------------------ state access
    def get(self, resource: str, namespace: str | None, name: str) -> Obj | None:
        return self.store.get(resource, namespace, name)

    def list(
        self,
        resource: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[Obj]:
        return self.store.list(resource, namespace, label_selector, field_selector)

    def update(self, resource: str, namespace: str | None, name: str, fn: Callable[[Obj], None]) -> Obj | None:
        """Mutate an object in place through `fn(obj)`, bypassing API rules (status included)."""
        return self.store.update(resource, namespace, name, fn)

    def delete(self, resource: str, namespace: str | None, name: str, propagation: str | None = None) -> Obj:
        return self.store.delete(resource, namespace, name, propagation)

    def seed(self, obj: Obj | list[Obj]) -> Obj | list[Obj]:
        """Create object(s) from manifest dicts (by `kind`); creates a missing namespace."""
        if isinstance(obj, list):
            return [self.seed(o) for o in obj]  # type: ignore[misc]
        resource = KIND_TO_RESOURCE[obj["kind"]]
        ns = (obj.get("metadata") or {}).get("namespace") or "default"
        if RESOURCES[resource][3] and self.store.raw("namespaces", None, ns) is None:
            self.store.create("namespaces", {"metadata": {"name": ns}})
        return self.store.create(resource, obj, ns if RESOURCES[resource][3] else None)

    def seed_yaml(self, text: str) -> list[Obj]:
        return [self.seed(d) for d in yaml.safe_load_all(text) if d]  # type: ignore[misc]

    def set_pod_ready(self, namespace: str, name: str, ready: bool | None) -> None:
        """Force a pod's containers (un)ready; None gives readiness back to the kubelet sim."""
        pod = self.store.get("pods", namespace, name)
        if pod is None:
            raise KeyError(f"pod {namespace}/{name} not found")
        self.readiness_overrides[pod["metadata"]["uid"]] = ready  # type: ignore[assignment]
        if ready is None:
            del self.readiness_overrides[pod["metadata"]["uid"]]

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 5.0, message: str = "") -> Any:
        """Poll `predicate` until it returns something truthy; AssertionError on timeout."""
        deadline, value = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.02)
        raise AssertionError(f"timed out after {timeout}s waiting for {message or predicate}; last value: {value!r}")

    def record_event(self, obj: Obj, reason: str, message: str, type_: str = "Normal") -> None:
        meta, now = obj["metadata"], now_rfc3339()
        self.store.create(
            "events",
            {
                "metadata": {
                    "name": f"{meta['name']}.{random_suffix(10)}",
                    "namespace": meta.get("namespace") or "default",
                },
                "involvedObject": {
                    "kind": obj["kind"],
                    "apiVersion": obj["apiVersion"],
                    "name": meta["name"],
                    "namespace": meta.get("namespace"),
                    "uid": meta["uid"],
                },
                "reason": reason,
                "message": message,
                "type": type_,
                "count": 1,
                "source": {"component": "kubeserver"},
                "reportingComponent": "kubeserver",
                "firstTimestamp": now,
                "lastTimestamp": now,
            },
        )

    def record_write(self, what: str, resource: str, sub: str | None, body: Any, result: Any) -> None:
        """Keep what a write made, for the schema check (tests/kubeserver/schemas.py): a created
        object as it was sent, an eviction's body, a patched or replaced object as it is now."""
        if what.startswith("POST") and sub is None and isinstance(body, dict):
            obj = {"apiVersion": api_version(resource), "kind": RESOURCES[resource][2], **copy.deepcopy(body)}
        elif what.startswith("POST") and isinstance(body, dict):
            obj = copy.deepcopy(body)
        elif isinstance(result, dict) and result.get("kind"):
            obj = copy.deepcopy(result)
        else:
            return
        with self._lock:
            self.written.append((what, obj))

    # ------------------------------------------------------------ faults and exec
    def inject_error(
        self,
        method: str | None = None,
        path_contains: str | None = None,
        status: int | None = 500,
        times: int = 1,
        retry_after: int | None = None,
        drop_connection: bool = False,
        delay: float = 0.0,
        message: str | None = None,
    ) -> Injection:
        """The next `times` matching requests get `status` (a Status body, `Retry-After` if
        given), or their connection closed without an answer, after sleeping `delay`.
        `status=None` with a delay only slows requests down. Returns the live rule."""
        rule = Injection(
            method.upper() if method else None,
            path_contains,
            status,
            times,
            retry_after,
            drop_connection,
            delay,
            message,
        )
        with self._lock:
            self._injections.append(rule)
        return rule

    def clear_injections(self) -> None:
        with self._lock:
            self._injections.clear()

    def _take_injection(self, method: str, raw_path: str) -> Injection | None:
        with self._lock:
            for rule in self._injections:
                if (
                    rule.remaining > 0
                    and rule.method in (None, method)
                    and (rule.path_contains is None or rule.path_contains in raw_path)
                ):
                    rule.hits += 1
                    return rule
        return None

    def on_exec(self, match: str | Callable[[Obj, str, list[str]], bool], handler: ExecHandler) -> None:
        """Answer execs whose joined command contains `match` (or `match(pod, container,
        command)` is true) with `handler(pod, container, command) -> (stdout, stderr,
        exit_code)`. Newer registrations win over older ones and over the built-ins."""
        self._exec_handlers.insert(0, (match, handler))

    def run_exec(self, pod: Obj, container: str, command: list[str]) -> tuple[bytes, bytes, int, str]:
        """-> (stdout, stderr, exit code, status message on failure)."""
        joined = " ".join(command)
        out: Any
        err: Any
        for match, handler in list(self._exec_handlers):
            if match(pod, container, command) if callable(match) else match in joined:
                out, err, code = handler(pod, container, command)
                break
        else:
            out, err, code, message = self._builtin_exec(pod, container, command, joined)
            if message:
                return b"", b"", code, message
        enc = [x.encode() if isinstance(x, str) else (x or b"") for x in (out, err)]
        message = f"command terminated with non-zero exit code: error executing command {command}, exit code {code}"
        return enc[0], enc[1], int(code), message

    def _builtin_exec(self, pod: Obj, container: str, command: list[str], joined: str):
        return builtin_exec(self, pod, container, command, joined)

    # ------------------------------------------------------------ demo platform
    def seed_demo(self, wait: bool = True, timeout: float = 10.0) -> None:
        """Seed `demo.yaml` (nodes, namespaces, the chatbot platform), skipping objects that
        already exist; by default wait until the 4 chatbot pods (3 api + 1 db) are Ready."""
        for doc in yaml.safe_load_all(DEMO_MANIFESTS.read_text()):
            resource, meta = KIND_TO_RESOURCE[doc["kind"]], doc["metadata"]
            if self.store.raw(resource, meta.get("namespace"), meta["name"]) is None:
                self.seed(doc)
        if wait:
            self.wait_for(
                lambda: len([p for p in self.list("pods", "chatbot") if pod_ready(p)]) == 4,
                timeout,
                "the 4 chatbot pods (3 api + 1 db) to be Ready",
            )

    # ------------------------------------------------------------ API operations
    def handle(
        self,
        method: str,
        resource: str,
        ns: str | None,
        name: str | None,
        sub: str | None,
        query: dict[str, Any],
        body: Any,
        content_type: str,
    ):
        store, dry = self.store, query.get("dryRun") == "All"
        if name is None:
            if method == "GET":
                check_field_selector(resource, query.get("fieldSelector"))
                with store.lock:
                    items = store.list(resource, ns, query.get("labelSelector"), query.get("fieldSelector"))
                    return 200, {
                        "kind": RESOURCES[resource][2] + "List",
                        "apiVersion": api_version(resource),
                        "metadata": {"resourceVersion": str(store.rv)},
                        "items": items,
                    }
            if method == "POST":
                if ns and store.raw("namespaces", None, ns) is None:
                    raise not_found("namespaces", ns)
                if resource == "pods":  # admission runs for dry runs too
                    admit_pod(store.raw("namespaces", None, ns or ""), body or {})
                return 201, store.create(resource, body or {}, ns, dry)
            if method == "DELETE":
                with store.lock:
                    gone = [
                        store.delete(resource, ns, o["metadata"]["name"])
                        for o in store.list(resource, ns, query.get("labelSelector"), query.get("fieldSelector"))
                    ]
                return 200, {
                    "kind": RESOURCES[resource][2] + "List",
                    "apiVersion": api_version(resource),
                    "metadata": {},
                    "items": gone,
                }
        elif sub is None:
            if method == "GET":
                with store.lock:
                    return 200, copy.deepcopy(store.must_get(resource, ns, name))
            if method in ("PUT", "PATCH"):
                return 200, self._write(method, resource, ns, name, None, body, content_type, dry)
            if method == "DELETE":
                return self._delete(resource, ns, name, query, body or {}, dry)
        elif sub in SUBRESOURCES.get(resource, []):
            if sub == "ephemeralcontainers" and self.ephemeral_containers_forbidden:
                raise ApiError(
                    403,
                    f'pods "{name}" is forbidden: ephemeral containers are disabled for this cluster',
                    "Forbidden",
                    {"name": name, "kind": "pods"},
                )
            if sub in ("status", "ephemeralcontainers"):
                if method == "GET":
                    with store.lock:
                        return 200, copy.deepcopy(store.must_get(resource, ns, name))
                if method in ("PUT", "PATCH"):
                    return 200, self._write(method, resource, ns, name, sub, body, content_type, dry)
            if sub == "scale" and method in ("GET", "PUT", "PATCH"):
                return 200, self._scale(method, resource, ns, name, body, content_type)
            if sub == "eviction" and method == "POST":
                return self._evict(ns or "", name, body or {})
            if sub == "log" and method == "GET":
                with store.lock:
                    pod = copy.deepcopy(store.must_get(resource, ns, name))
                return 200, self.pod_logs.get((ns or "", name)) or self._db_job_log(pod)
        else:
            raise ApiError(404, "the server could not find the requested resource")
        raise ApiError(
            405, f"{method} is not supported on {qualified(resource)}{'/' + sub if sub else ''}", "MethodNotAllowed"
        )

    def _db_job_log(self, pod: Obj) -> str:
        """The count line drillkit's connection-holding script prints once running."""
        container = (pod["spec"].get("containers") or [{}])[0]
        command = " ".join(container.get("command") or [])
        env = {e["name"]: e.get("value") for e in container.get("env") or []}
        if "drillkit: holding" in command:
            wanted, line = int(env.get("DRILLKIT_CONNECTIONS") or 0), "drillkit: holding {} of {} connections"
        elif "batch: " in command:  # the same script in a blind exercise's words
            wanted, line = int(env.get("BATCH_SIZE") or 0), "batch: {} of {} workers up"
        else:
            return ""
        held = wanted if self.db_connections_held is None else self.db_connections_held
        errors = "" if held == wanted else "psql: error: connection to server failed: timeout expired\n"
        return line.format(held, wanted) + f"\n{errors}"

    @staticmethod
    def _apply_patch(current: Obj, body: Any, content_type: str) -> Obj:
        if content_type == "application/json-patch+json":
            if not isinstance(body, list):
                raise ApiError(400, "json patch must be a list of operations")
            return json_patch(current, body)
        if content_type in PATCH_TYPES:
            if not isinstance(body, dict):
                raise ApiError(400, "merge patch must be a JSON object")
            return copy.deepcopy(merge_patch(current, body, content_type.startswith("application/strategic")))
        raise ApiError(
            415,
            "the body of the request was in an unknown format - accepted media "
            "types include: " + ", ".join(PATCH_TYPES),
        )

    def _write(
        self,
        method: str,
        resource: str,
        ns: str | None,
        name: str,
        sub: str | None,
        body: Any,
        content_type: str,
        dry: bool,
    ) -> Obj:
        with self.store.lock:
            current = self.store.must_get(resource, ns, name)
            if method == "PATCH":
                new = self._apply_patch(current, body, content_type)
            else:
                new = copy.deepcopy(body or {})
                meta = new.get("metadata") or {}
                if meta.get("name") not in (None, name):
                    raise ApiError(
                        400, f"the name of the object ({meta['name']}) does not match the name on the URL ({name})"
                    )
                if meta.get("resourceVersion") not in (None, "", current["metadata"]["resourceVersion"]):
                    raise ApiError(
                        409,
                        f"Operation cannot be fulfilled on {qualified(resource)} "
                        f'"{name}": the object has been modified; please apply '
                        "your changes to the latest version and try again",
                        "Conflict",
                        {"name": name, "kind": resource},
                    )
            if (
                resource == "secrets"
                and current.get("immutable")
                and (new.get("data") != current.get("data") or new.get("stringData") or not new.get("immutable"))
            ):
                raise ApiError(
                    422,
                    f'Secret "{name}" is invalid: data: Forbidden: field is immutable when `immutable` is set',
                    "Invalid",
                    {"name": name, "kind": "Secret"},
                )
            if sub == "status":
                new = {**copy.deepcopy(current), "status": new.get("status") or {}}
            elif sub == "ephemeralcontainers":
                ephemeral = (new.get("spec") or {}).get("ephemeralContainers") or []
                check_ephemeral_update(current, ephemeral)
                new = copy.deepcopy(current)
                new["spec"]["ephemeralContainers"] = ephemeral
                admit_pod(self.store.raw("namespaces", None, ns or ""), new)
            elif resource in HAS_STATUS:
                new["status"] = copy.deepcopy(current.get("status") or {})
            return self.store.commit(resource, current, new, dry)

    def _delete(self, resource: str, ns: str | None, name: str, query: dict[str, Any], body: Obj, dry: bool):
        propagation = query.get("propagationPolicy") or body.get("propagationPolicy")
        if str(query.get("orphanDependents", body.get("orphanDependents"))).lower() == "true":
            propagation = "Orphan"
        grace = query.get("gracePeriodSeconds", body.get("gracePeriodSeconds"))
        with self.store.lock:
            obj = self.store.must_get(resource, ns, name)
            meta = obj["metadata"]
            if resource == "pods" and grace is None and _running(obj):  # the pod's own grace period
                grace = obj["spec"].get("terminationGracePeriodSeconds", 30)
            for key, field in (("uid", "UID"), ("resourceVersion", "ResourceVersion")):
                want = (body.get("preconditions") or {}).get(key)
                if want and want != meta[key]:
                    raise ApiError(
                        409,
                        f"Precondition failed: {field} in precondition: {want}, {field} in object meta: {meta[key]}",
                        "Conflict",
                        {"name": name, "kind": resource},
                    )
            if (
                resource == "pods"
                and not dry
                and (meta.get("deletionTimestamp") or (grace is not None and int(grace) > 0))
            ):
                if meta.get("deletionTimestamp") and (grace is None or int(grace) > 0):
                    return 200, copy.deepcopy(self.store.must_get(resource, ns, name))
                if not meta.get("deletionTimestamp"):
                    return 200, self.controllers.terminate(ns or "", name, int(grace))  # type: ignore[arg-type]
            gone = self.store.delete(resource, ns, name, propagation, dry)
        if resource == "pods":
            return 200, gone
        return 200, {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": {
                "name": name,
                "group": RESOURCES[resource][0],
                "kind": resource,
                "uid": gone["metadata"]["uid"],
            },
        }

    def _scale(self, method: str, resource: str, ns: str | None, name: str, body: Any, content_type: str) -> Obj:
        def as_scale(obj: Obj) -> Obj:
            meta = obj["metadata"]
            return {
                "kind": "Scale",
                "apiVersion": "autoscaling/v1",
                "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")},
                "spec": {"replicas": obj["spec"].get("replicas", 1)},
                "status": {
                    "replicas": obj["status"].get("replicas", 0),
                    "selector": selector_string(obj["spec"].get("selector")),
                },
            }

        with self.store.lock:
            scale = as_scale(self.store.must_get(resource, ns, name))
            if method == "GET":
                return scale
            new = self._apply_patch(scale, body, content_type) if method == "PATCH" else body or {}
            replicas = (new.get("spec") or {}).get("replicas")
            if not isinstance(replicas, int) or replicas < 0:
                raise ApiError(
                    422,
                    f'Scale.autoscaling "{name}" is invalid: spec.replicas: '
                    f"Invalid value: {replicas!r}: must be greater than or equal to 0",
                )
            obj = self.store.update(resource, ns, name, lambda o: o["spec"].__setitem__("replicas", replicas))
            return as_scale(obj)  # type: ignore[arg-type]

    def _evict(self, ns: str, name: str, body: Obj):
        with self.store.lock:
            pod = self.store.must_get("pods", ns, name)
            pdbs = [
                p
                for p in self.store.raw_list("poddisruptionbudgets", ns)
                if labels_match(selector_requirements(p["spec"].get("selector")), pod["metadata"].get("labels"))
            ]
            if len(pdbs) > 1:
                raise ApiError(
                    500,
                    "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
                )
            if pdbs and pod["status"].get("phase") == "Running":
                healthy, desired, _ = pdb_numbers(self.store, pdbs[0])
                if healthy - (1 if pod_ready(pod) else 0) < desired:
                    pdb_name = pdbs[0]["metadata"]["name"]
                    raise ApiError(
                        429,
                        "Cannot evict pod as it would violate the pod's disruption budget.",
                        "TooManyRequests",
                        {
                            "causes": [
                                {
                                    "reason": "DisruptionBudget",
                                    "message": f"The disruption budget {pdb_name} needs "
                                    f"{desired} healthy pods and has {healthy} "
                                    "currently",
                                }
                            ]
                        },
                    )
            self.store.delete("pods", ns, name)
        return 201, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}


def _running(pod: Obj) -> bool:
    """A pod with containers to stop: graceful deletion applies (unscheduled or finished pods
    are deleted at once, as the real API does)."""
    return bool(pod["spec"].get("nodeName")) and pod["status"].get("phase") not in ("Succeeded", "Failed")


# ---------------------------------------------------------------- discovery


def _resource_list(group: str, version: str) -> Obj | None:
    names = [r for r, (g, v, _, _) in RESOURCES.items() if (g, v) == (group, version)]
    if not names and (group, version) != ("autoscaling", "v1"):
        return None
    verbs = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
    resources = []
    for name in names:
        _, _, kind, namespaced = RESOURCES[name]
        resources.append(
            {"name": name, "singularName": kind.lower(), "namespaced": namespaced, "kind": kind, "verbs": verbs}
        )
        for sub in SUBRESOURCES.get(name, []):
            resources.append(
                {
                    "name": f"{name}/{sub}",
                    "singularName": "",
                    "namespaced": namespaced,
                    "kind": {"scale": "Scale", "eviction": "Eviction"}.get(sub, kind),
                    "verbs": ["create"] if sub in ("eviction", "exec") else ["get", "patch", "update"],
                }
            )
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": resources,
    }


def _group_list() -> Obj:
    groups = sorted({g for g, *_ in RESOURCES.values() if g} | {"autoscaling"})
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [
            {
                "name": g,
                "versions": [{"groupVersion": f"{g}/v1", "version": "v1"}],
                "preferredVersion": {"groupVersion": f"{g}/v1", "version": "v1"},
            }
            for g in groups
        ],
    }


# ---------------------------------------------------------------- HTTP plumbing


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, kube: KubeServer):
        self.kube = kube
        self.conns: set[socket.socket] = set()
        self.threads: list[threading.Thread] = []
        self.conn_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def server_bind(self) -> None:
        # http.server sends headers and body separately: with Nagle's algorithm and the client's
        # delayed ACKs every request would wait ~40 ms. Accepted sockets inherit TCP_NODELAY.
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().server_bind()

    def process_request(self, request, client_address):  # type: ignore[override]
        thread = threading.Thread(
            target=self.process_request_thread, name="kubeserver-conn", args=(request, client_address), daemon=True
        )
        with self.conn_lock:
            self.conns.add(request)
            self.threads = [t for t in self.threads if t.is_alive()] + [thread]
        thread.start()

    def shutdown_request(self, request):  # type: ignore[override]
        with self.conn_lock:
            self.conns.discard(request)
        super().shutdown_request(request)

    def close_all(self) -> None:
        with self.conn_lock:
            conns, threads = list(self.conns), list(self.threads)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join(timeout=5)

    def handle_error(self, request, client_address) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], OSError):
            self.kube.internal_errors.append(traceback.format_exc())


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kubeserver/1.0"
    timeout = 60
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _send(self, code: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        if isinstance(payload, str):
            data, ctype = payload.encode(), "text/plain; charset=utf-8"
        else:
            data, ctype = json.dumps(payload).encode(), "application/json"
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _dispatch(self, method: str) -> None:
        kube = self.server.kube
        url = urlsplit(self.path)
        query = {k: v[0] if len(v) == 1 else v for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        kube.requests.append(RequestRecord(method, url.path, query, body, dict(self.headers)))
        rule = kube._take_injection(method, self.path)
        if rule:
            if rule.delay:
                time.sleep(rule.delay)
            if rule.drop_connection:
                self.close_connection = True
                return
            if rule.status:
                err = ApiError(
                    rule.status,
                    rule.message or f"injected by kubeserver: HTTP {rule.status}",
                    details={"retryAfterSeconds": rule.retry_after} if rule.retry_after else None,
                )
                headers = {"Retry-After": str(rule.retry_after)} if rule.retry_after else {}
                self._send(rule.status, err.status(), headers)
                return
        try:
            self._route(method, url.path.rstrip("/") or "/", query, body)
        except ApiError as e:
            self._send(e.code, e.status(), e.headers)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception:
            kube.internal_errors.append(f"{method} {self.path}\n{traceback.format_exc()}")
            self._send(500, ApiError(500, "kubeserver internal error").status())

    def _route(self, method: str, path: str, query: dict[str, Any], body: Any) -> None:
        kube = self.server.kube
        if path in ("/healthz", "/readyz", "/livez"):
            return self._send(200, "ok")
        if path == "/version":
            return self._send(200, VERSION)
        if path == "/api":
            return self._send(
                200,
                {
                    "kind": "APIVersions",
                    "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": kube.url[7:]}],
                },
            )
        if path == "/apis":
            return self._send(200, _group_list())
        parts = path.strip("/").split("/")
        if parts[0] == "api" and len(parts) >= 2:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[0] == "apis" and len(parts) >= 3:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise ApiError(404, "the server could not find the requested resource")
        if not rest:
            listing = _resource_list(group, version)
            if listing is None:
                raise ApiError(404, "the server could not find the requested resource")
            return self._send(200, listing)
        ns = None
        if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] in RESOURCES:
            ns, rest = rest[1], rest[2:]
        resource, name, sub = rest[0], rest[1] if len(rest) > 1 else None, rest[2] if len(rest) > 2 else None
        if (
            resource not in RESOURCES
            or RESOURCES[resource][:2] != (group, version)
            or len(rest) > 3
            or (RESOURCES[resource][3] and name and ns is None)
            or (not RESOURCES[resource][3] and ns is not None)
        ):
            raise ApiError(404, "the server could not find the requested resource")
        watch = name is None and method == "GET" and str(query.get("watch")).lower() in ("true", "1")
        if kube.rbac is not None and (denied := kube.rbac.check(method, group, resource, sub, ns, name, watch)):
            kube.denied.append(denied)
            raise ApiError(403, denied, "Forbidden", {"name": name or "", "kind": resource})
        if watch:
            return self._watch(resource, ns, query)
        if resource == "pods" and sub == "exec" and method in ("GET", "POST"):
            return self._exec(ns or "", name or "", query)
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        code, payload = kube.handle(method, resource, ns, name, sub, query, body, content_type)
        if method in ("POST", "PUT", "PATCH") and code < 300:
            kube.record_write(f"{method} {path}", resource, sub, body, payload)
        self._send(code, payload)

    # -- watch (tests/kubeserver/watch.py) ---------------------------------
    def _watch(self, resource: str, ns: str | None, query: dict[str, Any]) -> None:
        stream_watch(self, self.server.kube, resource, ns, query)

    # -- exec over WebSocket (tests/kubeserver/execsim.py) -----------------
    def _exec(self, ns: str, name: str, query: dict[str, Any]) -> None:
        serve_exec(self, self.server.kube, ns, name, query)
