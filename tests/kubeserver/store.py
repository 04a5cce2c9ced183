"""In-memory object store of the Kubernetes API test server.

Resources, metadata bookkeeping, label/field selectors, the three patch flavours and the
event log that watches read from. Stored objects are never mutated in place: every write
stores a fresh dict, so the event log can keep references to old versions.
"""

from __future__ import annotations

import base64
import bisect
import copy
import random
import re
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

Obj = dict[str, Any]

# resource -> (group, version, kind, namespaced)
RESOURCES: dict[str, tuple[str, str, str, bool]] = {
    "namespaces": ("", "v1", "Namespace", False),
    "nodes": ("", "v1", "Node", False),
    "pods": ("", "v1", "Pod", True),
    "secrets": ("", "v1", "Secret", True),
    "events": ("", "v1", "Event", True),
    "services": ("", "v1", "Service", True),
    "configmaps": ("", "v1", "ConfigMap", True),
    "deployments": ("apps", "v1", "Deployment", True),
    "statefulsets": ("apps", "v1", "StatefulSet", True),
    "replicasets": ("apps", "v1", "ReplicaSet", True),
    "jobs": ("batch", "v1", "Job", True),
    "poddisruptionbudgets": ("policy", "v1", "PodDisruptionBudget", True),
    "leases": ("coordination.k8s.io", "v1", "Lease", True),
}
KIND_TO_RESOURCE = {v[2]: k for k, v in RESOURCES.items()}
# Resources whose status is only writable through the status subresource.
HAS_STATUS = {
    "namespaces",
    "nodes",
    "pods",
    "services",
    "deployments",
    "statefulsets",
    "replicasets",
    "jobs",
    "poddisruptionbudgets",
}
NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"

REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Gone",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def api_version(resource: str) -> str:
    group, version = RESOURCES[resource][:2]
    return f"{group}/{version}" if group else version


def qualified(resource: str) -> str:
    """`pods`, `deployments.apps`: how the real API names a resource in messages."""
    group = RESOURCES[resource][0] if resource in RESOURCES else ""
    return f"{resource}.{group}" if group else resource


def random_suffix(n: int = 5) -> str:
    return "".join(random.choice(NAME_ALPHABET) for _ in range(n))


class ApiError(Exception):
    """An error the server answers with a `Status` object."""

    def __init__(
        self,
        code: int,
        message: str,
        reason: str | None = None,
        details: Obj | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.code, self.message = code, message
        self.reason = reason or REASONS.get(code, "Unknown")
        self.details, self.headers = details, headers or {}

    def status(self) -> Obj:
        out: Obj = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            out["details"] = self.details
        return out


def not_found(resource: str, name: str) -> ApiError:
    group = RESOURCES.get(resource, ("",))[0]
    return ApiError(
        404, f'{qualified(resource)} "{name}" not found', "NotFound", {"name": name, "group": group, "kind": resource}
    )


# ---------------------------------------------------------------- selectors

_LABEL_REQ = re.compile(
    r"^\s*(?P<neg>!)?\s*(?P<key>[A-Za-z0-9_./-]+)\s*"
    r"(?:(?P<op>==|=|!=)\s*(?P<val>[A-Za-z0-9_.-]*)|\s+(?P<setop>in|notin)\s*\((?P<vals>[^)]*)\))?\s*$"
)

Requirement = tuple[str, str, set[str]]


def parse_label_selector(text: str | None) -> list[Requirement]:
    reqs: list[Requirement] = []
    for part in re.split(r",(?![^(]*\))", text or ""):
        if not part.strip():
            continue
        m = _LABEL_REQ.match(part)
        if not m or (m["neg"] and (m["op"] or m["setop"])):
            raise ApiError(400, f"unable to parse requirement: {part!r}")
        if m["neg"]:
            reqs.append((m["key"], "!", set()))
        elif m["op"]:
            reqs.append((m["key"], "!=" if m["op"] == "!=" else "in", {m["val"]}))
        elif m["setop"]:
            reqs.append((m["key"], m["setop"], {v.strip() for v in m["vals"].split(",") if v.strip()}))
        else:
            reqs.append((m["key"], "exists", set()))
    return reqs


def selector_requirements(selector: Obj | None) -> list[Requirement]:
    """A LabelSelector object (matchLabels / matchExpressions) as requirements."""
    selector = selector or {}
    reqs = [(k, "in", {v}) for k, v in (selector.get("matchLabels") or {}).items()]
    ops = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}
    for e in selector.get("matchExpressions") or []:
        reqs.append((e["key"], ops[e["operator"]], set(e.get("values") or [])))
    return reqs


def selector_string(selector: Obj | None) -> str:
    parts = [f"{k}={v}" for k, v in ((selector or {}).get("matchLabels") or {}).items()]
    for e in (selector or {}).get("matchExpressions") or []:
        op, key, vals = e["operator"], e["key"], ",".join(e.get("values") or [])
        parts.append(
            {"In": f"{key} in ({vals})", "NotIn": f"{key} notin ({vals})", "Exists": key, "DoesNotExist": f"!{key}"}[op]
        )
    return ",".join(parts)


def labels_match(reqs: list[Requirement], labels: dict[str, str] | None) -> bool:
    labels = labels or {}
    for key, op, vals in reqs:
        has = key in labels
        if op == "in" and (not has or labels[key] not in vals):
            return False
        if op in ("!=", "notin") and has and labels[key] in vals:
            return False
        if (op == "exists" and not has) or (op == "!" and has):
            return False
    return True


def parse_field_selector(text: str | None) -> list[tuple[str, str, str]]:
    reqs = []
    for part in (text or "").split(","):
        if not part.strip():
            continue
        m = re.match(r"^\s*([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*?)\s*$", part)
        if not m:
            raise ApiError(400, f"invalid field selector: {part!r}")
        reqs.append((m[1], "!=" if m[2] == "!=" else "=", m[3]))
    return reqs


def fields_match(reqs: list[tuple[str, str, str]], obj: Obj) -> bool:
    for path, op, value in reqs:
        cur: Any = obj
        for key in path.split("."):
            cur = cur.get(key) if isinstance(cur, dict) else None
        text = "" if cur is None else str(cur).lower() if isinstance(cur, bool) else str(cur)
        if (text == value) != (op == "="):
            return False
    return True


# ---------------------------------------------------------------- patches

# Strategic-merge list merge keys (a pragmatic subset of the real schema).
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "imagePullSecrets": "name",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
    "conditions": "type",
    "ownerReferences": "uid",
    "containerStatuses": "name",
    "tolerations": "key",
}


def merge_patch(target: Any, patch: Any, strategic: bool = False) -> Any:
    """RFC 7386 JSON merge patch; `strategic` merges known lists by key and honours $patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if strategic and patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if strategic and key.startswith("$"):
            continue
        if value is None:
            out.pop(key, None)
        elif strategic and key in MERGE_KEYS and isinstance(value, list) and isinstance(out.get(key), list):
            out[key] = _merge_list(out[key], value, MERGE_KEYS[key])
        else:
            out[key] = merge_patch(out.get(key), value, strategic)
    return out


def _merge_list(current: list, patch: list, key: str) -> list:
    if not all(isinstance(i, dict) and key in i for i in patch):
        return copy.deepcopy(patch)
    out = copy.deepcopy(current)
    for item in patch:
        idx = next((i for i, x in enumerate(out) if isinstance(x, dict) and x.get(key) == item[key]), None)
        if item.get("$patch") == "delete":
            if idx is not None:
                del out[idx]
        elif idx is None:
            out.append(merge_patch({}, item, True))
        else:
            out[idx] = merge_patch(out[idx], item, True)
    return out


def json_patch(doc: Obj, ops: list[Obj]) -> Obj:
    """RFC 6902 JSON patch."""
    doc = copy.deepcopy(doc)

    def tokens(path: str) -> list[str]:
        if path == "":
            return []
        if not path.startswith("/"):
            raise ValueError(f"invalid JSON pointer {path!r}")
        return [t.replace("~1", "/").replace("~0", "~") for t in path[1:].split("/")]

    def get(node: Any, toks: list[str]) -> Any:
        for t in toks:
            node = node[int(t)] if isinstance(node, list) else node[t]
        return node

    def remove(toks: list[str]) -> Any:
        parent = get(doc, toks[:-1])
        return parent.pop(int(toks[-1])) if isinstance(parent, list) else parent.pop(toks[-1])

    def add(toks: list[str], value: Any) -> None:
        parent = get(doc, toks[:-1])
        if isinstance(parent, list):
            parent.append(value) if toks[-1] == "-" else parent.insert(int(toks[-1]), value)
        else:
            parent[toks[-1]] = value

    try:
        for op in ops:
            kind, toks = op["op"], tokens(op["path"])
            if not toks:
                raise ValueError("operations on the document root are not supported")
            if kind == "add":
                add(toks, copy.deepcopy(op["value"]))
            elif kind == "remove":
                remove(toks)
            elif kind == "replace":
                remove(toks)
                add(toks, copy.deepcopy(op["value"]))
            elif kind in ("move", "copy"):
                src = tokens(op["from"])
                value = remove(src) if kind == "move" else copy.deepcopy(get(doc, src))
                add(toks, value)
            elif kind == "test":
                if get(doc, toks) != op["value"]:
                    raise ValueError(f"test failed at {op['path']}")
            else:
                raise ValueError(f"unknown op {kind!r}")
    except (KeyError, IndexError, ValueError, TypeError, AttributeError) as e:
        raise ApiError(
            422, f"the server rejected our request due to an error in our request: {type(e).__name__}: {e}"
        ) from None
    return doc


# ---------------------------------------------------------------- store


def _defaults(resource: str, obj: Obj) -> None:
    spec, meta = obj.setdefault("spec", {}), obj["metadata"]
    if resource in ("secrets", "configmaps", "events"):
        if not spec:
            obj.pop("spec")
        if resource == "secrets":
            obj.setdefault("type", "Opaque")
        return
    if resource == "namespaces":
        meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
        spec.setdefault("finalizers", ["kubernetes"])
        obj.setdefault("status", {}).setdefault("phase", "Active")
    elif resource == "nodes":
        labels = meta.setdefault("labels", {})
        labels.setdefault("kubernetes.io/hostname", meta["name"])
        labels.setdefault("kubernetes.io/os", "linux")
        status = obj.setdefault("status", {})
        status.setdefault(
            "conditions",
            [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "lastTransitionTime": meta["creationTimestamp"],
                }
            ],
        )
        status.setdefault("capacity", {"cpu": "8", "memory": "16Gi", "pods": "110"})
        status.setdefault("allocatable", dict(status["capacity"]))
        status.setdefault(
            "nodeInfo",
            {
                "kubeletVersion": "v1.31.0",
                "kubeProxyVersion": "v1.31.0",
                "operatingSystem": "linux",
                "containerRuntimeVersion": "containerd://1.7.18",
                "architecture": "amd64",
                "osImage": "Debian GNU/Linux 12 (bookworm)",
                "kernelVersion": "6.8.0",
                "bootID": meta["uid"],
                "machineID": meta["uid"].replace("-", ""),
                "systemUUID": meta["uid"],
            },
        )
        status.setdefault("addresses", [{"type": "Hostname", "address": meta["name"]}])
    elif resource == "pods":
        spec.setdefault("restartPolicy", "Always")
        spec.setdefault("schedulerName", "default-scheduler")
        spec.setdefault("terminationGracePeriodSeconds", 30)
        spec.setdefault("serviceAccountName", "default")
        obj.setdefault("status", {}).setdefault("phase", "Pending")
    elif resource == "services":
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("clusterIP", f"10.96.{random.randint(0, 255)}.{random.randint(1, 254)}")
    elif resource == "deployments":
        spec.setdefault("replicas", 1)
        spec.setdefault(
            "strategy", {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}
        )
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
    elif resource == "statefulsets":
        obj.setdefault("status", {}).setdefault("replicas", 0)  # required by StatefulSetStatus
        spec.setdefault("replicas", 1)
        spec.setdefault("podManagementPolicy", "OrderedReady")
        spec.setdefault("updateStrategy", {"type": "RollingUpdate"})
    elif resource == "replicasets":
        spec.setdefault("replicas", 1)
    elif resource == "jobs":
        spec.setdefault("parallelism", 1)
        spec.setdefault("completions", 1)
        spec.setdefault("backoffLimit", 6)
        job_labels = {
            "batch.kubernetes.io/controller-uid": meta["uid"],
            "batch.kubernetes.io/job-name": meta["name"],
            "controller-uid": meta["uid"],
            "job-name": meta["name"],
        }
        spec.setdefault("selector", {"matchLabels": {"batch.kubernetes.io/controller-uid": meta["uid"]}})
        tmeta = spec.setdefault("template", {}).setdefault("metadata", {})
        tmeta["labels"] = {**(tmeta.get("labels") or {}), **job_labels}
        spec["template"].setdefault("spec", {}).setdefault("restartPolicy", "Never")
    if resource in HAS_STATUS:
        obj.setdefault("status", {})


def _normalize(resource: str, obj: Obj) -> None:
    if resource == "secrets" and "stringData" in obj:
        data = obj.setdefault("data", {}) or {}
        for k, v in (obj.pop("stringData") or {}).items():
            data[k] = base64.b64encode(str(v).encode()).decode()
        obj["data"] = data


def _body(obj: Obj) -> Obj:
    """Everything except metadata and status (a change bumps metadata.generation)."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


class Store:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.objects: dict[str, dict[tuple[str, str], Obj]] = {r: {} for r in RESOURCES}
        self.rv = 0
        # Watch event log: (resourceVersion, resource, type, object, previous object or None).
        self.log: list[tuple[int, str, str, Obj, Obj | None]] = []
        self._log_rvs: list[int] = []
        self.compacted = 0
        """Watches from a resourceVersion below this get 410 Gone (etcd compacted it away)."""

    # -- reads (copies) --
    def raw(self, resource: str, namespace: str | None, name: str) -> Obj | None:
        return self.objects[resource].get((namespace or "", name))

    def get(self, resource: str, namespace: str | None, name: str) -> Obj | None:
        with self.lock:
            obj = self.raw(resource, namespace, name)
            return copy.deepcopy(obj) if obj is not None else None

    def must_get(self, resource: str, namespace: str | None, name: str) -> Obj:
        obj = self.raw(resource, namespace, name)
        if obj is None:
            raise not_found(resource, name)
        return obj

    def list(
        self,
        resource: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[Obj]:
        lreqs, freqs = parse_label_selector(label_selector), parse_field_selector(field_selector)
        with self.lock:
            out = [
                copy.deepcopy(o)
                for o in self.raw_list(resource, namespace)
                if labels_match(lreqs, o["metadata"].get("labels")) and fields_match(freqs, o)
            ]
        return sorted(out, key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))

    def raw_list(self, resource: str, namespace: str | None = None) -> list[Obj]:
        return [o for (ns, _), o in list(self.objects[resource].items()) if namespace is None or ns == namespace]

    def owned(self, resource: str, namespace: str, owner_uid: str) -> list[Obj]:
        return [
            o
            for o in self.raw_list(resource, namespace)
            if any(r.get("uid") == owner_uid for r in o["metadata"].get("ownerReferences") or [])
        ]

    # -- writes --
    def _emit(self, resource: str, kind: str, obj: Obj, old: Obj | None) -> None:
        rv = int(obj["metadata"]["resourceVersion"])
        self.log.append((rv, resource, kind, obj, old))
        self._log_rvs.append(rv)
        if len(self.log) > 20_000:  # bounded history, as etcd compacts every few minutes
            self.compact(self._log_rvs[len(self.log) // 2])
        self.changed.notify_all()

    def compact(self, rv: int | None = None) -> None:
        """Forget the watch history up to `rv` (default: all of it), like etcd's compaction."""
        with self.lock:
            rv = self.rv if rv is None else rv
            cut = bisect.bisect_right(self._log_rvs, rv)
            del self.log[:cut], self._log_rvs[:cut]
            self.compacted = max(self.compacted, rv)

    def events_after(self, rv: int) -> list[tuple[int, str, str, Obj, Obj | None]]:
        return self.log[bisect.bisect_right(self._log_rvs, rv) :]

    def create(self, resource: str, obj: Obj, namespace: str | None = None, dry_run: bool = False) -> Obj:
        obj = copy.deepcopy(obj)
        group, _, kind, namespaced = RESOURCES[resource]
        obj["apiVersion"], obj["kind"] = api_version(resource), kind
        meta = obj.setdefault("metadata", {})
        if namespaced:
            meta["namespace"] = namespace or meta.get("namespace") or "default"
        else:
            meta.pop("namespace", None)
        for key in ("uid", "resourceVersion", "creationTimestamp", "deletionTimestamp"):
            meta.pop(key, None)
        with self.lock:
            ns = meta.get("namespace", "")
            if not meta.get("name"):
                if not meta.get("generateName"):
                    raise ApiError(
                        422, f"{kind} is invalid: metadata.name: Required value: name or generateName is required"
                    )
                meta["name"] = meta["generateName"] + random_suffix()
                while (ns, meta["name"]) in self.objects[resource]:
                    meta["name"] = meta["generateName"] + random_suffix()
            if (ns, meta["name"]) in self.objects[resource]:
                raise ApiError(
                    409,
                    f'{qualified(resource)} "{meta["name"]}" already exists',
                    "AlreadyExists",
                    {"name": meta["name"], "group": group, "kind": resource},
                )
            meta.update(uid=str(uuid.uuid4()), creationTimestamp=now_rfc3339(), generation=1)
            _defaults(resource, obj)
            _normalize(resource, obj)
            if dry_run:
                return obj
            self.rv += 1
            meta["resourceVersion"] = str(self.rv)
            self.objects[resource][(ns, meta["name"])] = obj
            self._emit(resource, "ADDED", obj, None)
            return copy.deepcopy(obj)

    def commit(self, resource: str, current: Obj, new: Obj, dry_run: bool = False) -> Obj:
        """Store `new` as the next version of `current` (keeps identity metadata)."""
        with self.lock:
            meta, cmeta = new.setdefault("metadata", {}), current["metadata"]
            for key in ("name", "namespace", "uid", "creationTimestamp", "generation", "resourceVersion"):
                if key in cmeta:
                    meta[key] = cmeta[key]
                else:
                    meta.pop(key, None)
            new["apiVersion"], new["kind"] = current["apiVersion"], current["kind"]
            _normalize(resource, new)
            if _body(new) != _body(current):
                meta["generation"] = cmeta.get("generation", 1) + 1
            if new == current:
                return copy.deepcopy(current)
            if dry_run:
                return new
            key = (cmeta.get("namespace", ""), cmeta["name"])
            if self.objects[resource].get(key) is not current:
                raise ApiError(
                    409,
                    f"Operation cannot be fulfilled on {qualified(resource)} "
                    f'"{cmeta["name"]}": the object has been modified; please '
                    "apply your changes to the latest version and try again",
                )
            self.rv += 1
            meta["resourceVersion"] = str(self.rv)
            self.objects[resource][key] = new
            self._emit(resource, "MODIFIED", new, current)
            return copy.deepcopy(new)

    def update(self, resource: str, namespace: str | None, name: str, fn) -> Obj | None:
        """Apply `fn(obj)` (mutating a copy) and store the result; None if missing."""
        with self.lock:
            current = self.raw(resource, namespace, name)
            if current is None:
                return None
            new = copy.deepcopy(current)
            fn(new)
            return self.commit(resource, current, new)

    def delete(
        self, resource: str, namespace: str | None, name: str, propagation: str | None = None, dry_run: bool = False
    ) -> Obj:
        with self.lock:
            current = self.must_get(resource, namespace, name)
            gone = copy.deepcopy(current)
            gone["metadata"]["deletionTimestamp"] = now_rfc3339()
            if dry_run:
                return gone
            meta = current["metadata"]
            del self.objects[resource][(meta.get("namespace", ""), meta["name"])]
            self.rv += 1
            gone["metadata"]["resourceVersion"] = str(self.rv)
            self._emit(resource, "DELETED", gone, current)
            self._collect_garbage(resource, current, propagation)
            return copy.deepcopy(gone)

    def _collect_garbage(self, resource: str, owner: Obj, propagation: str | None) -> None:
        meta = owner["metadata"]
        ns, uid = meta.get("namespace", ""), meta["uid"]
        if resource == "namespaces":
            for res in RESOURCES:
                for obj in self.raw_list(res, meta["name"]) if RESOURCES[res][3] else []:
                    self._delete_if_exists(res, meta["name"], obj["metadata"]["name"])
            return
        if not ns:
            return
        cascade = propagation in ("Background", "Foreground") or (propagation is None and resource != "jobs")
        for res in ("replicasets", "pods", "events"):
            for dep in self.owned(res, ns, uid):
                dname = dep["metadata"]["name"]
                if cascade:
                    self._delete_if_exists(res, ns, dname)
                else:
                    self.update(
                        res,
                        ns,
                        dname,
                        lambda o: o["metadata"].__setitem__(
                            "ownerReferences", [r for r in o["metadata"]["ownerReferences"] if r.get("uid") != uid]
                        ),
                    )
        if resource == "jobs" and cascade:
            for pod in self.raw_list("pods", ns):
                if (pod["metadata"].get("labels") or {}).get("job-name") == meta["name"]:
                    self._delete_if_exists("pods", ns, pod["metadata"]["name"])

    def _delete_if_exists(self, resource: str, namespace: str, name: str) -> None:
        if self.raw(resource, namespace, name) is not None:
            self.delete(resource, namespace, name, "Background")
