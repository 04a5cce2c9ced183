"""Typed views of Kubernetes objects, and the marks drillkit leaves on them.

Why it exists: faults and cleanup work with small frozen dataclasses (`Pod`, `Workload`,
`Node`, `ObjRef`, ...) parsed once from the API's JSON here, not with nested dicts; only the
few places that must save or re-send a manifest (journal data) keep the API's own JSON shape.
The label and annotation names are how `drillkit cleanup` finds what a run created or changed
without its journal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

REQUEST_TIMEOUT = (5.0, 30.0)
"""Seconds: (connect, read) for every non-watch call (here, not in `api`, because the faults
derive their stop timeouts from it at import, and validating them must not load the client)."""
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
NETEM_BY = "drillkit.io/netem-by"
"""Label on a pod network-latency added its ephemeral container to (value: run id): the pod is
not drillkit's (cleanup never deletes it), but cleanup finds it without a journal and removes
the delay."""
NETEM_CONTAINER = "drillkit.io/netem"
"""Annotation on such a pod: `<ephemeral container>/<interface>` holding the delay."""
PROTECTED_NAMESPACES = ("kube-system", "kube-public", "kube-node-lease", "local-path-storage")


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
class Ended:
    """A container's `state.terminated`, as the kubelet reports it: exit code, reason
    (`Error`, `Completed`, `OOMKilled`, ...) and message (with `FallbackToLogsOnError`, the tail
    of its output)."""

    exit_code: int
    reason: str = ""
    message: str = ""

    def __str__(self) -> str:
        message = " ".join(self.message.split())
        return (
            f"exited {self.exit_code}"
            + (f" ({self.reason})" if self.reason else "")
            + (f": {message}" if message else "")
        )


@dataclass(frozen=True)
class Container:
    name: str
    image: str
    memory_limit: str | None
    restart_count: int = 0
    running: bool = False
    last_terminated_reason: str | None = None
    ended: Ended | None = None  # state.terminated: it ran and exited (not restarted, or not yet)
    waiting: str | None = None  # state.waiting's `reason: message` (ErrImagePull, ContainerCreating, ...)
    memory_request: str | None = None  # resources.requests.memory (a quantity)


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
    empty_dirs: tuple[str, ...] = ()  # names of emptyDir volumes (their data dies with the pod)
    reason: str = ""  # status.reason: `Evicted` once the kubelet evicted it (phase Failed)

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
                state = s.get("state") or {}
                term, wait = state.get("terminated"), state.get("waiting")
                ended = (
                    Ended(int(term.get("exitCode") or 0), term.get("reason") or "", term.get("message") or "")
                    if isinstance(term, dict)
                    else None
                )
                waiting = (
                    ": ".join(x for x in (wait.get("reason"), wait.get("message")) if x) or "waiting"
                    if isinstance(wait, dict)
                    else None
                )
                out.append(
                    Container(
                        c.get("name", ""),
                        c.get("image", ""),
                        limit,
                        int(s.get("restartCount") or 0),
                        "running" in state,
                        last,
                        ended,
                        waiting,
                        ((c.get("resources") or {}).get("requests") or {}).get("memory"),
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
            empty_dirs=tuple(v.get("name", "") for v in spec.get("volumes") or [] if "emptyDir" in v),
            reason=status.get("reason") or "",
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

    @classmethod
    def from_json(cls, kind: str, o: dict[str, Any]) -> Workload:
        meta, spec, status = o.get("metadata") or {}, o.get("spec") or {}, o.get("status") or {}
        template = spec.get("template") or {}
        pod = Pod.from_json({"metadata": {}, "spec": template.get("spec") or {}, "status": {}})
        return cls(
            kind,
            meta.get("namespace", ""),
            meta.get("name", ""),
            meta.get("uid", ""),
            int(spec.get("replicas", 1)),
            int(status.get("readyReplicas") or 0),
            selector_text(spec.get("selector") or {}),
            pod.containers,
            template,
            dict(meta.get("labels") or {}),
        )

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
    labels: dict[str, str] = field(default_factory=dict)
    allocatable_memory: str | None = None  # status.allocatable.memory (a quantity)
    memory_pressure: bool = False  # the kubelet's MemoryPressure condition is True

    @property
    def ref(self) -> ObjRef:
        return ObjRef("Node", None, self.name, self.uid)

    @classmethod
    def from_json(cls, o: dict[str, Any]) -> Node:
        meta, spec, status = o.get("metadata") or {}, o.get("spec") or {}, o.get("status") or {}
        conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
        return cls(
            meta.get("name", ""),
            meta.get("uid", ""),
            bool(spec.get("unschedulable")),
            conditions.get("Ready") == "True",
            dict(meta.get("annotations") or {}),
            dict(meta.get("labels") or {}),
            (status.get("allocatable") or {}).get("memory"),
            conditions.get("MemoryPressure") == "True",
        )


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
    mark: str = RUN_LABEL  # the label or annotation it was found by
    keys: tuple[str, ...] = ()  # a Secret's data keys (a blind exercise's backup is known by them)

    @classmethod
    def from_json(cls, kind: str, o: dict[str, Any], mark: str) -> Labelled:
        """An object listed by its `mark` (a label or, for nodes, an annotation)."""
        meta = o.get("metadata") or {}
        where = "annotations" if kind == "Node" else "labels"
        return cls(
            ObjRef(kind, meta.get("namespace"), meta.get("name", ""), meta.get("uid", "")),
            (meta.get(where) or {}).get(mark, ""),
            dict(meta.get("annotations") or {}),
            bool(meta.get("deletionTimestamp")),
            mark,
            tuple(o.get("data") or ()) if kind == "Secret" else (),
        )


_WORKLOAD_KINDS = {
    "deployment": "Deployment",
    "deployments": "Deployment",
    "deploy": "Deployment",
    "statefulset": "StatefulSet",
    "statefulsets": "StatefulSet",
    "sts": "StatefulSet",
}


def selector_text(selector: dict[str, Any]) -> str:
    """A label selector (`matchLabels`, `matchExpressions`) as the API's query text."""
    match = selector.get("matchLabels") or {}
    parts = [f"{k}={v}" for k, v in sorted(match.items())]
    for e in selector.get("matchExpressions") or []:
        op, vals = e.get("operator"), ",".join(e.get("values") or [])
        parts.append(
            {
                "In": f"{e['key']} in ({vals})",
                "NotIn": f"{e['key']} notin ({vals})",
                "Exists": e["key"],
                "DoesNotExist": f"!{e['key']}",
            }.get(op, "")
        )
    return ",".join(p for p in parts if p)


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
