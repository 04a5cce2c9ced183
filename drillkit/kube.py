"""Kubernetes access: the one module that imports `kubernetes`.

Why it exists: every call a drill makes to a cluster goes through one facade, so that
- the kubeconfig context is checked against an allowlist before any client exists (by default
  only `kind-*` contexts; anything else needs `--allow-context NAME`),
- there is one written-down retry policy (`drillkit.retry.retrying`): 429 (honouring
  Retry-After), 5xx and connection errors are retried; other 4xx never are,
- third-party exceptions (`ApiException`, urllib3, websocket) are turned into drillkit's own
  errors here and nowhere else (`NotFound`, `Conflict`, `Forbidden`, `KubeTransient`, ...),
- waits use watches with a server-side `timeoutSeconds` rather than tight polling.

Objects come back as plain JSON (the API's own camelCase shape) for the few places that must
save or re-send a manifest (journal data), and as small frozen dataclasses (`Pod`, `Workload`,
`Node`, `ObjRef`) everywhere else. `kubernetes` is imported lazily so `drillkit --help` and
`drillkit validate` stay fast.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from drillkit.errors import (
    InputError,
    PermanentError,
    PreflightError,
    TransientError,
    UnavailableError,
)
from drillkit.retry import retrying

if TYPE_CHECKING:
    from drillkit.scenario import Scenario

log = logging.getLogger("drillkit.kube")


class StopFlag(Protocol):
    """Anything with `is_set()`: the run's stop flag, or a fault's own stop event."""

    def is_set(self) -> bool: ...


T = TypeVar("T")

RUN_LABEL = "drillkit.io/run-id"
"""Label on every object drillkit creates; `drillkit cleanup` and `Kube.leftovers` find them."""
BACKUP_OF = "drillkit.io/backup-of"
"""Annotation on a backup Secret: the Secret (same namespace) it holds original data of."""
RESTART = "drillkit.io/restart"
"""Annotation on a backup Secret: workloads (`deployment/NAME,...`) to restart after restoring."""
RESTARTED_AT = "drillkit.io/restartedAt"
"""Pod-template annotation patched to make a workload roll its pods (like `kubectl rollout restart`)."""
CORDONED_BY = "drillkit.io/cordoned-by"
"""Annotation on a node drillkit cordoned (value: run id), so cleanup can find it without a journal."""
MODIFIED_BY = "drillkit.io/modified-by"
"""Label on a Deployment/StatefulSet a fault changed in place (value: run id): found by cleanup
and by the leftover check, and refused as a target by other runs until it is restored. A label,
not an annotation: the Deployment controller copies annotations onto ReplicaSets (and `rollout
undo` copies them back), never the Deployment's own labels."""
REVERT_OF = "drillkit.io/revert-of"
"""Annotation on a revert-record Secret (run-labelled, next to the workload): `Kind/name` of the
workload whose previous state (replica count, pod template) it keeps, so cleanup can restore it
when the journal is lost."""
REVERT_FAULT = "drillkit.io/revert-fault"
"""Annotation on a revert-record Secret: the fault whose revert data it holds (key `revert`, JSON)."""
PROTECTED_NAMESPACES = ("kube-system", "kube-public", "kube-node-lease", "local-path-storage")
IN_CLUSTER = "in-cluster"
"""Context name used for in-cluster service-account config (must be allowed explicitly)."""

REQUEST_TIMEOUT = (5.0, 30.0)  # seconds: (connect, read) for every non-watch call


# --- errors --------------------------------------------------------------------------------


class KubeError(PermanentError):
    """A Kubernetes API call failed in a way retrying cannot fix."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class NotFound(KubeError):
    """404: the object does not exist (for a revert: already gone, which is success)."""


class Conflict(KubeError):
    """409: already exists, or modified concurrently."""


class Forbidden(KubeError):
    """403: RBAC (or an admission policy) does not allow the verb on the resource."""


class KubeTransient(TransientError):
    """429, 5xx or a connection problem: retried by the policy in drillkit.retry."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ExecFailed(KubeError):
    """A command run in a container could not be started (no shell, container not running)."""


def _status_message(body: object) -> str:
    if isinstance(body, bytes):
        body = body.decode(errors="replace")
    if isinstance(body, str):
        try:
            data = json.loads(body)
        except ValueError:
            return body.strip()[:300]
        if isinstance(data, dict):
            return str(data.get("message") or data.get("reason") or "").strip()
    return ""


def _retry_after(headers: Any) -> float | None:
    value = None
    if headers is not None:
        try:
            value = headers.get("Retry-After") or headers.get("retry-after")
        except AttributeError:
            value = None
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def translate(what: str, exc: BaseException) -> Exception:
    """A drillkit error for a `kubernetes`/urllib3/websocket exception raised while doing `what`.

    `what` reads like "delete pods chatbot/chatbot-api-x": verb, resource, object.
    """
    import urllib3
    from kubernetes.client.exceptions import ApiException

    if isinstance(exc, ApiException):
        status = int(exc.status or 0)
        message = _status_message(exc.body) or str(exc.reason or "").strip()
        if status == 0:
            return _translate_websocket(what, message)
        if status == 429:
            return KubeTransient(f"{what}: 429 Too Many Requests: {message}", _retry_after(exc.headers))
        if status >= 500:
            return KubeTransient(f"{what}: HTTP {status}: {message}", _retry_after(exc.headers))
        if status == 403:
            return Forbidden(
                f"forbidden: cannot {what}: {message} (grant this verb on this "
                "resource to drillkit's user; see docs/kubernetes.md)",
                status,
            )
        if status == 404:
            return NotFound(f"{what}: not found: {message}", status)
        if status == 409:
            return Conflict(f"{what}: conflict: {message}", status)
        if status == 401:
            return KubeError(f"{what}: unauthorized (401): check the kubeconfig credentials: {message}", status)
        return KubeError(f"{what}: HTTP {status}: {message}", status)
    if isinstance(exc, urllib3.exceptions.HTTPError | ConnectionError | TimeoutError | OSError):
        return KubeTransient(f"{what}: cannot reach the Kubernetes API: {exc}")
    try:
        import websocket
    except ImportError:  # pragma: no cover - websocket-client is a kubernetes dependency
        websocket = None  # type: ignore[assignment]
    if websocket is not None and isinstance(exc, websocket.WebSocketException):
        return _translate_websocket(what, str(exc))
    if isinstance(exc, ValueError):  # the client's own JSON decoding
        return KubeError(f"{what}: unexpected answer from the Kubernetes API: {exc}")
    return KubeError(f"{what}: {type(exc).__name__}: {exc}")


def _translate_websocket(what: str, message: str) -> Exception:
    """Exec goes over a WebSocket; its failures arrive as text like 'Handshake status 404 ...'."""
    m = re.search(r"Handshake status (\d{3})", message)
    detail = message
    if m:
        tail = message.split("-+-+-")
        detail = _status_message(tail[-1].strip().lstrip("b").strip("'\"")) if len(tail) > 1 else message
        status = int(m.group(1))
        if status == 404:
            return NotFound(f"{what}: not found: {detail}", 404)
        if status == 403:
            return Forbidden(
                f"forbidden: cannot {what}: {detail} (grant `create` on pods/exec; see docs/kubernetes.md)", 403
            )
        if status == 429 or status >= 500:
            return KubeTransient(f"{what}: HTTP {status}: {detail}")
        return ExecFailed(f"{what}: HTTP {status}: {detail}", status)
    if "Connection refused" in message or "timed out" in message or "Connection reset" in message:
        return KubeTransient(f"{what}: cannot reach the Kubernetes API: {message}")
    return ExecFailed(f"{what}: {detail}")


class _Stopped(Exception):
    """Raised out of a retry back-off when the stop flag is set (never leaves this module)."""


def _stoppable_sleep(stop: StopFlag | None) -> Callable[[float], None]:
    """A sleep that notices `stop` within 0.1 s (by raising _Stopped)."""

    def sleep(seconds: float) -> None:
        end = time.monotonic() + seconds
        while True:
            if stop is not None and stop.is_set():
                raise _Stopped
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(0.1, left))

    return sleep


# --- context allowlist ---------------------------------------------------------------------


@dataclass(frozen=True)
class KubeSettings:
    """Which cluster to talk to: kubeconfig file(s) and context, or in-cluster config."""

    context: str
    kubeconfig: str | None = None  # None: $KUBECONFIG or ~/.kube/config

    @property
    def in_cluster(self) -> bool:
        return self.context == IN_CLUSTER


def context_allowed(name: str, allow: tuple[str, ...] | list[str]) -> bool:
    """`kind-*` contexts are disposable local clusters; anything else must be allowed by name."""
    return name.startswith("kind-") or name in allow


class KubeconfigError(InputError):
    """The kubeconfig file is not valid YAML, or not shaped like a kubeconfig (exit 2)."""


def _kubeconfig_name(kubeconfig: str | None) -> str:
    return kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"


def malformed_kubeconfig(kubeconfig: str | None, exc: BaseException) -> KubeconfigError | None:
    """A one-line KubeconfigError naming the file for what the client raises on a malformed
    kubeconfig (a YAML error, or a TypeError/KeyError/... from a wrongly shaped document);
    None for anything else."""
    import yaml

    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        name = (
            str(mark.name)
            if mark is not None and mark.name and not str(mark.name).startswith("<")
            else _kubeconfig_name(kubeconfig)
        )
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what = " ".join(str(exc.problem or exc.context or "").split())
        return KubeconfigError(f"kubeconfig {name} is not valid YAML{where}: {what}")
    if isinstance(exc, yaml.YAMLError):
        detail = " ".join(str(exc).splitlines()[0].split())
        return KubeconfigError(f"kubeconfig {_kubeconfig_name(kubeconfig)} is not valid YAML: {detail}")
    if isinstance(exc, TypeError | KeyError | AttributeError | ValueError | IndexError):
        return KubeconfigError(
            f"kubeconfig {_kubeconfig_name(kubeconfig)} is malformed (not a "
            f"kubeconfig document): {type(exc).__name__}: {exc}"
        )
    return None


def _kubeconfig_contexts(kubeconfig: str | None) -> tuple[list[str], str | None]:
    from kubernetes import config

    try:
        contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)
    except config.ConfigException as exc:
        raise UnavailableError(f"cannot read kubeconfig {kubeconfig or '$KUBECONFIG'}: {exc}") from None
    except OSError as exc:
        raise UnavailableError(f"cannot read kubeconfig: {exc}") from None
    except Exception as exc:
        bad = malformed_kubeconfig(kubeconfig, exc)
        if bad is None:
            raise
        raise bad from None
    try:
        names = [c["name"] for c in contexts or []]
        return names, (active or {}).get("name")
    except (TypeError, KeyError, AttributeError) as exc:
        raise malformed_kubeconfig(kubeconfig, exc) or exc from None


def resolve_settings(
    context: str | None,
    scenario_context: str | None,
    allow_contexts: tuple[str, ...] | list[str],
    kubeconfig: str | None,
) -> KubeSettings:
    """Pick the context (`--context`, else the scenario's, else the kubeconfig's current one)
    and refuse it unless allowed. Raises InputError for a disallowed or unknown context."""
    wanted = context or scenario_context
    if wanted == IN_CLUSTER or (wanted is None and _in_cluster_available() and not _has_kubeconfig(kubeconfig)):
        if not context_allowed(IN_CLUSTER, allow_contexts):
            raise InputError(
                "refusing the in-cluster service account: pass "
                "`--allow-context in-cluster` to run drills from inside a cluster"
            )
        return KubeSettings(IN_CLUSTER, None)
    names, active = _kubeconfig_contexts(kubeconfig)
    name = wanted or active
    if not name:
        raise InputError("no kubeconfig context: pass --context NAME or set target.kubernetes.context in the scenario")
    if name not in names:
        raise InputError(f"kubeconfig context {name!r} not found; available: {', '.join(names) or 'none'}")
    if not context_allowed(name, allow_contexts):
        raise InputError(
            f"refusing kubeconfig context {name!r}: only kind-* contexts are allowed by default; "
            f"pass `--allow-context {name}` if you really mean to run this drill there"
        )
    if context and scenario_context and context != scenario_context:
        log.warning("using context %s (--context) instead of the scenario's %s", context, scenario_context)
    return KubeSettings(name, kubeconfig)


def _in_cluster_available() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and os.path.exists(
        "/var/run/secrets/kubernetes.io/serviceaccount/token"
    )


def _has_kubeconfig(kubeconfig: str | None) -> bool:
    if kubeconfig or os.environ.get("KUBECONFIG"):
        return True
    return os.path.exists(os.path.expanduser("~/.kube/config"))


def kube_factory_for(
    scenario: Scenario, context: str | None, allow_contexts: tuple[str, ...], kubeconfig: str | None
) -> Callable[[], Kube]:
    """Check the context now (before anything runs) and return a factory for the facade."""
    target = scenario.target.kubernetes
    settings = resolve_settings(context, target.context if target else None, allow_contexts, kubeconfig)
    return lambda: Kube(settings)


# --- typed views -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ObjRef:
    """One object: enough to name it in a plan line and find it again."""

    kind: str
    namespace: str | None
    name: str
    uid: str = ""

    def __str__(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.kind} {where}" + (f" (uid {self.uid})" if self.uid else "")


@dataclass(frozen=True)
class Owner:
    """The controller that will bring a pod back (top of the chain: RS -> Deployment)."""

    kind: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind.lower()}/{self.name}"


@dataclass(frozen=True)
class Container:
    name: str
    image: str
    memory_limit: str | None
    restart_count: int = 0
    running: bool = False
    last_terminated_reason: str | None = None


@dataclass(frozen=True)
class Pod:
    namespace: str
    name: str
    uid: str
    node: str | None
    created: str
    phase: str
    ready: bool
    terminating: bool
    labels: dict[str, str]
    controller: ObjRef | None  # the direct controller (ReplicaSet, StatefulSet, Job, ...)
    containers: tuple[Container, ...]
    ephemeral: tuple[Container, ...] = ()
    mirror: bool = False
    deletion_grace: int | None = None  # metadata.deletionGracePeriodSeconds of a terminating pod

    @property
    def ref(self) -> ObjRef:
        return ObjRef("Pod", self.namespace, self.name, self.uid)

    def container(self, name: str | None) -> Container | None:
        if name is None:
            return self.containers[0] if self.containers else None
        return next((c for c in (*self.containers, *self.ephemeral) if c.name == name), None)

    @classmethod
    def from_json(cls, o: dict[str, Any]) -> Pod:
        meta, spec, status = o.get("metadata") or {}, o.get("spec") or {}, o.get("status") or {}
        ctrl = next((r for r in meta.get("ownerReferences") or [] if r.get("controller")), None)

        def containers(
            specs: list[dict[str, Any]] | None, statuses: list[dict[str, Any]] | None
        ) -> tuple[Container, ...]:
            by_name = {s.get("name"): s for s in statuses or []}
            out = []
            for c in specs or []:
                s = by_name.get(c.get("name"), {})
                last = ((s.get("lastState") or {}).get("terminated") or {}).get("reason")
                limit = ((c.get("resources") or {}).get("limits") or {}).get("memory")
                out.append(
                    Container(
                        c.get("name", ""),
                        c.get("image", ""),
                        limit,
                        int(s.get("restartCount") or 0),
                        "running" in (s.get("state") or {}),
                        last,
                    )
                )
            return tuple(out)

        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
        return cls(
            namespace=meta.get("namespace", ""),
            name=meta.get("name", ""),
            uid=meta.get("uid", ""),
            node=spec.get("nodeName"),
            created=meta.get("creationTimestamp") or "",
            phase=status.get("phase") or "",
            ready=ready,
            terminating=bool(meta.get("deletionTimestamp")),
            labels=dict(meta.get("labels") or {}),
            controller=ObjRef(ctrl["kind"], meta.get("namespace"), ctrl["name"], ctrl.get("uid", "")) if ctrl else None,
            containers=containers(spec.get("containers"), status.get("containerStatuses")),
            ephemeral=containers(spec.get("ephemeralContainers"), status.get("ephemeralContainerStatuses")),
            mirror="kubernetes.io/config.mirror" in (meta.get("annotations") or {}),
            deletion_grace=None
            if meta.get("deletionGracePeriodSeconds") is None
            else int(meta["deletionGracePeriodSeconds"]),
        )


@dataclass(frozen=True)
class Workload:
    """A Deployment or StatefulSet, as much as faults need."""

    kind: str  # Deployment | StatefulSet
    namespace: str
    name: str
    uid: str
    replicas: int
    ready_replicas: int
    selector: str
    containers: tuple[Container, ...]
    template: dict[str, Any] = field(repr=False, default_factory=dict)
    labels: dict[str, str] = field(repr=False, default_factory=dict)

    @property
    def ref(self) -> ObjRef:
        return ObjRef(self.kind, self.namespace, self.name, self.uid)

    def mounts_secret(self, secret: str) -> bool:
        """Whether the pod template uses Secret `secret` (volume, env or envFrom)."""
        spec = self.template.get("spec") or {}
        for vol in spec.get("volumes") or []:
            if (vol.get("secret") or {}).get("secretName") == secret:
                return True
            for src in (vol.get("projected") or {}).get("sources") or []:
                if (src.get("secret") or {}).get("name") == secret:
                    return True
        for c in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]:
            for env in c.get("env") or []:
                if ((env.get("valueFrom") or {}).get("secretKeyRef") or {}).get("name") == secret:
                    return True
            for src in c.get("envFrom") or []:
                if (src.get("secretRef") or {}).get("name") == secret:
                    return True
        return False


@dataclass(frozen=True)
class Node:
    name: str
    uid: str
    unschedulable: bool
    ready: bool
    annotations: dict[str, str]

    @property
    def ref(self) -> ObjRef:
        return ObjRef("Node", None, self.name, self.uid)


@dataclass(frozen=True)
class ExecResult:
    code: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class Labelled:
    """An object drillkit created or changed, found by its label (what `cleanup` deletes or restores)."""

    ref: ObjRef
    run_id: str
    annotations: dict[str, str]
    terminating: bool = False


_WORKLOAD_KINDS = {
    "deployment": "Deployment",
    "deployments": "Deployment",
    "deploy": "Deployment",
    "statefulset": "StatefulSet",
    "statefulsets": "StatefulSet",
    "sts": "StatefulSet",
}


def workload_kind(text: str) -> str:
    """'deployment' / 'sts' / ... -> 'Deployment' | 'StatefulSet' (ValueError otherwise)."""
    try:
        return _WORKLOAD_KINDS[text.lower()]
    except KeyError:
        raise ValueError(f"expected deployment/NAME or statefulset/NAME, got kind {text!r}") from None


def strip_for_create(manifest: dict[str, Any]) -> dict[str, Any]:
    """A pod manifest that can be POSTed again: no status, uid, resourceVersion, nodeName."""
    meta = dict(manifest.get("metadata") or {})
    for key in (
        "uid",
        "resourceVersion",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
        "managedFields",
        "selfLink",
    ):
        meta.pop(key, None)
    spec = dict(manifest.get("spec") or {})
    spec.pop("nodeName", None)
    spec.pop("ephemeralContainers", None)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


# --- the facade -------------------------------------------------------------------------------


class Kube:
    """Everything drillkit does to a cluster, with retries and errors translated."""

    def __init__(self, settings: KubeSettings) -> None:
        from kubernetes import client, config

        self.settings = settings
        cfg = client.Configuration()
        try:
            if settings.in_cluster:
                config.load_incluster_config(client_configuration=cfg)
            else:
                config.load_kube_config(
                    config_file=settings.kubeconfig,
                    context=settings.context,
                    client_configuration=cfg,
                    persist_config=False,
                )
        except (config.ConfigException, OSError) as exc:
            raise UnavailableError(f"cannot load Kubernetes config for context {settings.context!r}: {exc}") from None
        except Exception as exc:
            bad = malformed_kubeconfig(settings.kubeconfig, exc)
            if bad is None:
                raise
            raise bad from None
        cfg.retries = False  # one retry policy: ours (drillkit.retry), not urllib3's as well
        self._cfg = cfg
        self.api = client.ApiClient(cfg)
        self.core = client.CoreV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)
        self.batch = client.BatchV1Api(self.api)
        self.policy = client.PolicyV1Api(self.api)
        self._exec_lock = threading.Lock()  # kubernetes.stream swaps call_api on its client
        self._exec_api: Any = None

    @property
    def context(self) -> str:
        return self.settings.context

    def close(self) -> None:
        self.api.close()
        if self._exec_api is not None:
            self._exec_api.api_client.close()

    # -- plumbing ---------------------------------------------------------------------------

    def _once(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("_request_timeout", REQUEST_TIMEOUT)
        try:
            resp = fn(*args, _preload_content=False, **kwargs)
            data = resp.data
        except Exception as exc:
            raise translate(what, exc) from None
        if not data:
            return {}
        try:
            return json.loads(data)
        except ValueError as exc:
            raise KubeError(f"{what}: answer is not JSON: {exc}") from None

    def call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """`fn(*args, **kwargs)` as parsed JSON, retried on transient errors."""
        return retrying(what)(self._once, what, fn, *args, **kwargs)

    # -- namespaces, generic ------------------------------------------------------------------

    def namespace_exists(self, namespace: str) -> bool:
        try:
            self.call(f"get namespaces {namespace}", self.core.read_namespace, namespace)
        except NotFound:
            return False
        return True

    def version(self) -> str:
        from kubernetes import client

        data = self.call("get version", client.VersionApi(self.api).get_code)
        return str(data.get("gitVersion", "?"))

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

    def create_pod(self, namespace: str, manifest: dict[str, Any]) -> Pod:
        name = (manifest.get("metadata") or {}).get("name", "?")
        return Pod.from_json(
            self.call(f"create pods {namespace}/{name}", self.core.create_namespaced_pod, namespace, manifest)
        )

    def delete_pod(self, namespace: str, name: str, uid: str | None = None, grace_period: int | None = None) -> bool:
        """Delete (only the pod with `uid`, if given); False if it was already gone."""
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

    def wait_pod_gone(self, namespace: str, name: str, uid: str, timeout: float, stop: StopFlag | None = None) -> bool:
        """Until the pod `name` with `uid` no longer exists (a terminating pod finishing its
        grace period); False at the deadline or when `stop` is set."""
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
        """The controller that recreates `pod`: ReplicaSet -> Deployment, StatefulSet, ..."""
        ctrl = pod.controller
        if ctrl is None:
            return None
        if ctrl.kind == "ReplicaSet":
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
            if up and up.get("kind") == "Deployment":
                return Owner("Deployment", up["name"])
        return Owner(ctrl.kind, ctrl.name)

    def exec(
        self, namespace: str, pod: str, container: str, command: list[str], timeout: float = 30.0, retry: bool = True
    ) -> ExecResult:
        """Run `command` in a container (no stdin, no tty) and wait up to `timeout` s.

        `retry=False` for commands that must not run twice (the connection of an exec that
        kills its own container drops, which would otherwise look transient). Exit code -1:
        still running at the timeout."""
        from kubernetes import client
        from kubernetes.stream import stream

        what = f"create pods/exec {namespace}/{pod} -c {container}"

        def once() -> ExecResult:
            with self._exec_lock:
                if self._exec_api is None:
                    self._exec_api = client.CoreV1Api(client.ApiClient(self._cfg))
                try:
                    ws = stream(
                        self._exec_api.connect_get_namespaced_pod_exec,
                        pod,
                        namespace,
                        container=container,
                        command=command,
                        stderr=True,
                        stdin=False,
                        stdout=True,
                        tty=False,
                        _preload_content=False,
                        _request_timeout=REQUEST_TIMEOUT[0],
                    )
                except Exception as exc:
                    raise translate(what, exc) from None
            try:
                ws.run_forever(timeout=timeout)
                code = ws.returncode if not ws.is_open() else None
                out, err = ws.read_stdout(timeout=0) or "", ws.read_stderr(timeout=0) or ""
            except Exception as exc:
                raise translate(what, exc) from None
            finally:
                ws.close()
            if code is None:
                return ExecResult(-1, str(out), f"still running after {timeout:g}s")
            return ExecResult(int(code), str(out), str(err))

        return retrying(what)(once) if retry else once()

    # -- watches ------------------------------------------------------------------------------

    def _watch(
        self, what: str, fn: Callable[..., Any], *args: Any, timeout: float, **kwargs: Any
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """(event type, object JSON) from a watch ending after `timeout` s (server-side)."""
        from kubernetes import watch

        w = watch.Watch()
        seconds = max(1, int(timeout + 0.999))
        try:
            for event in w.stream(
                fn,
                *args,
                timeout_seconds=seconds,
                deserialize=False,
                _request_timeout=(REQUEST_TIMEOUT[0], seconds + 10),
                **kwargs,
            ):
                obj = event.get("raw_object") or event.get("object")
                if isinstance(obj, dict):
                    yield str(event.get("type")), obj
        except Exception as exc:
            raise translate(what, exc) from None
        finally:
            w.stop()

    def wait_pods(
        self,
        namespace: str,
        label_selector: str | None,
        done: Callable[[list[Pod]], T | None],
        timeout: float,
        stop: StopFlag | None = None,
        field_selector: str | None = None,
    ) -> T | None:
        """List, then watch from the list's resourceVersion, until `done(current pods)` returns
        something truthy; None at the deadline or when `stop` is set.

        Transient errors and an expired resourceVersion (410) start over with a fresh list.
        """
        deadline = time.monotonic() + timeout
        kw = {k: v for k, v in (("label_selector", label_selector), ("field_selector", field_selector)) if v}
        what = f"watch pods in {namespace}"
        chunk = 5.0 if stop is not None else 30.0  # a quiet watch only notices `stop` between chunks
        while time.monotonic() < deadline and not (stop and stop.is_set()):
            try:
                listing = self.call(f"list pods in {namespace}", self.core.list_namespaced_pod, namespace, **kw)
                pods = {p.uid: p for p in map(Pod.from_json, listing.get("items") or [])}
                if result := done(list(pods.values())):
                    return result
                rv = (listing.get("metadata") or {}).get("resourceVersion")
                for kind, obj in self._watch(
                    what,
                    self.core.list_namespaced_pod,
                    namespace,
                    timeout=min(deadline - time.monotonic(), chunk),
                    resource_version=rv,
                    **kw,
                ):
                    pod = Pod.from_json(obj)
                    if kind == "DELETED":
                        pods.pop(pod.uid, None)
                    elif kind in ("ADDED", "MODIFIED"):
                        pods[pod.uid] = pod
                    if result := done(list(pods.values())):
                        return result
                    if time.monotonic() >= deadline or (stop and stop.is_set()):
                        return None
            except TransientError as exc:
                log.warning("%s interrupted, listing again: %s", what, exc)
                time.sleep(0.5)
            except KubeError as exc:
                if exc.status != 410:
                    raise
                time.sleep(0.2)  # resourceVersion expired: list again
        return None

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
        meta, spec, status = o.get("metadata") or {}, o.get("spec") or {}, o.get("status") or {}
        match = (spec.get("selector") or {}).get("matchLabels") or {}
        exprs = (spec.get("selector") or {}).get("matchExpressions") or []
        parts = [f"{k}={v}" for k, v in sorted(match.items())]
        for e in exprs:
            op, vals = e.get("operator"), ",".join(e.get("values") or [])
            parts.append(
                {
                    "In": f"{e['key']} in ({vals})",
                    "NotIn": f"{e['key']} notin ({vals})",
                    "Exists": e["key"],
                    "DoesNotExist": f"!{e['key']}",
                }.get(op, "")
            )
        template = spec.get("template") or {}
        pod = Pod.from_json({"metadata": {}, "spec": template.get("spec") or {}, "status": {}})
        return Workload(
            kind,
            namespace,
            name,
            meta.get("uid", ""),
            int(spec.get("replicas", 1)),
            int(status.get("readyReplicas") or 0),
            ",".join(p for p in parts if p),
            pod.containers,
            template,
            dict(meta.get("labels") or {}),
        )

    def get_replicas(self, kind: str, namespace: str, name: str) -> int:
        read_scale = self._workload_fns(kind)[2]
        data = self.call(f"get {kind.lower()}s/scale {namespace}/{name}", read_scale, name, namespace)
        return int((data.get("spec") or {}).get("replicas") or 0)

    def scale(self, kind: str, namespace: str, name: str, replicas: int) -> None:
        patch_scale = self._workload_fns(kind)[3]
        self.call(
            f"patch {kind.lower()}s/scale {namespace}/{name}",
            patch_scale,
            name,
            namespace,
            {"spec": {"replicas": replicas}},
        )

    def patch_workload(
        self, kind: str, namespace: str, name: str, patch: dict[str, Any] | list[dict[str, Any]]
    ) -> None:
        """Strategic merge patch (a dict) or JSON patch (a list of operations)."""
        fn = self._workload_fns(kind)[1]
        self.call(f"patch {kind.lower()}s {namespace}/{name}", fn, name, namespace, patch)

    def replace_template(self, kind: str, namespace: str, name: str, template: dict[str, Any]) -> None:
        """Put back a pod template exactly (JSON patch `replace`, no merging)."""
        self.patch_workload(kind, namespace, name, [{"op": "replace", "path": "/spec/template", "value": template}])

    def label_workload(self, kind: str, namespace: str, name: str, labels: dict[str, str | None]) -> None:
        """Set (or, with None, remove) labels of the workload itself, not of its pods."""
        self.patch_workload(kind, namespace, name, {"metadata": {"labels": labels}})

    def restart_workload(self, kind: str, namespace: str, name: str, at: str) -> None:
        """Roll the workload's pods, like `kubectl rollout restart`."""
        self.patch_workload(
            kind, namespace, name, {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: at}}}}}
        )

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

    def secret_keys(self, namespace: str, name: str) -> tuple[ObjRef, list[str]] | None:
        """A Secret's key names (values are dropped at once), or None if it does not exist."""
        try:
            o = self.call(f"get secrets {namespace}/{name}", self.core.read_namespaced_secret, name, namespace)
        except NotFound:
            return None
        ref = ObjRef("Secret", namespace, name, (o.get("metadata") or {}).get("uid", ""))
        return ref, sorted(o.get("data") or {})

    def create_secret(
        self, namespace: str, name: str, data: dict[str, str], labels: dict[str, str], annotations: dict[str, str]
    ) -> None:
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

    def delete_secret(self, namespace: str, name: str) -> bool:
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
        name = manifest["metadata"]["name"]
        o = self.call(f"create jobs {namespace}/{name}", self.batch.create_namespaced_job, namespace, manifest)
        return ObjRef("Job", namespace, name, (o.get("metadata") or {}).get("uid", ""))

    def job_status(self, namespace: str, name: str) -> dict[str, int] | None:
        try:
            o = self.call(f"get jobs {namespace}/{name}", self.batch.read_namespaced_job, name, namespace)
        except NotFound:
            return None
        st = o.get("status") or {}
        return {k: int(st.get(k) or 0) for k in ("active", "ready", "succeeded", "failed")}

    def delete_job(self, namespace: str, name: str) -> bool:
        """Delete a Job and (propagation Background) its pods; False if already gone."""
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

    # -- nodes ----------------------------------------------------------------------------------

    def list_nodes(self) -> list[Node]:
        data = self.call("list nodes", self.core.list_node)
        return [self._node(o) for o in data.get("items") or []]

    def get_node(self, name: str) -> Node | None:
        try:
            return self._node(self.call(f"get nodes {name}", self.core.read_node, name))
        except NotFound:
            return None

    @staticmethod
    def _node(o: dict[str, Any]) -> Node:
        meta, spec, status = o.get("metadata") or {}, o.get("spec") or {}, o.get("status") or {}
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
        return Node(
            meta.get("name", ""),
            meta.get("uid", ""),
            bool(spec.get("unschedulable")),
            ready,
            dict(meta.get("annotations") or {}),
        )

    def cordon(self, name: str, run_id: str) -> None:
        self.call(
            f"patch nodes {name}",
            self.core.patch_node,
            name,
            {"spec": {"unschedulable": True}, "metadata": {"annotations": {CORDONED_BY: run_id}}},
        )

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
        is retried with backoff until the monotonic `deadline`, or until `stop` is set (checked
        between attempts, during the backoff too). -> 'evicted' | 'gone' | reason."""
        what = f"create pods/eviction {namespace}/{name}"
        stopped = "not evicted: the drill is stopping"
        if stop is not None and stop.is_set():
            return stopped
        body = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name, "namespace": namespace}}
        left = max(1.0, deadline - time.monotonic())
        policy = retrying(what, attempts=10_000, max_delay=left, initial=0.5, maximum=5.0)
        if stop is not None:
            policy = policy.copy(sleep=_stoppable_sleep(stop))
        try:
            policy(self._once, what, self.core.create_namespaced_pod_eviction, name, namespace, body)
        except NotFound:
            return "gone"
        except _Stopped:
            return stopped
        except KubeTransient as exc:
            return f"not evicted within the deadline: {exc}"
        return "evicted"

    # -- run-id labelled objects ---------------------------------------------------------------

    def labelled(self, run_id: str | None = None) -> list[Labelled]:
        """Objects carrying the run-id label, nodes marked cordoned and workloads marked modified
        (this run's, or every run's if None)."""
        lists: tuple[tuple[str, Callable[..., Any], str], ...] = (
            ("Job", self.batch.list_job_for_all_namespaces, RUN_LABEL),
            ("Pod", self.core.list_pod_for_all_namespaces, RUN_LABEL),
            ("Secret", self.core.list_secret_for_all_namespaces, RUN_LABEL),
            ("Deployment", self.apps.list_deployment_for_all_namespaces, MODIFIED_BY),
            ("StatefulSet", self.apps.list_stateful_set_for_all_namespaces, MODIFIED_BY),
        )
        out = []
        for kind, fn, label in lists:
            selector = f"{label}={run_id}" if run_id else label
            data = self.call(f"list {kind.lower()}s in all namespaces", fn, label_selector=selector)
            for o in data.get("items") or []:
                meta = o.get("metadata") or {}
                out.append(
                    Labelled(
                        ObjRef(kind, meta.get("namespace"), meta.get("name", ""), meta.get("uid", "")),
                        (meta.get("labels") or {}).get(label, ""),
                        dict(meta.get("annotations") or {}),
                        bool(meta.get("deletionTimestamp")),
                    )
                )
        nodes = self.call("list nodes", self.core.list_node)
        for o in nodes.get("items") or []:
            meta = o.get("metadata") or {}
            mark = (meta.get("annotations") or {}).get(CORDONED_BY)
            if mark and (run_id is None or mark == run_id):
                out.append(
                    Labelled(
                        ObjRef("Node", None, meta.get("name", ""), meta.get("uid", "")),
                        mark,
                        dict(meta.get("annotations") or {}),
                    )
                )
        return out

    def leftovers(self, run_id: str, wait: float = 0.0, stop: StopFlag | None = None) -> list[ObjRef]:
        """What this run left behind: objects labelled with it (nodes still marked cordoned,
        workloads still marked modified).

        Waits up to `wait` s for objects being deleted asynchronously (a Job's pods, graceful
        pod termination) to disappear; whatever is still there then is returned.
        """
        deadline = time.monotonic() + wait
        while True:
            found = self.labelled(run_id)
            if not found or time.monotonic() >= deadline:
                return [x.ref for x in found]
            if stop is not None and stop.is_set():
                return [x.ref for x in found]
            try:
                _stoppable_sleep(stop)(min(0.5, max(0.0, deadline - time.monotonic())))
            except _Stopped:
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
        if ref.kind == "Node":
            return self.uncordon(ref.name)
        raise PreflightError(f"drillkit does not delete {ref.kind} objects")
