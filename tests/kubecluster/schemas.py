"""What drillkit writes, checked twice: by the real apiserver and by older Kubernetes' schemas.

Why two checks: the 1.35 apiserver validates every write itself and, for a field it does not know
(a misspelt key), accepts the object and answers a `Warning:` header (fieldValidation defaults to
Warn), which the recording proxy keeps; an unknown field is dropped, so it is a defect. But 1.35
cannot say what an older cluster rejects (a field added since), so every object drillkit creates
(the POST bodies the proxy recorded) is also checked against the official OpenAPI schemas of
1.29, 1.30 and 1.31 (kubernetes-validate, strict: unknown fields are errors). The `kube_server`
fixture fails a test on either when it ends (`check_requests`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import kubernetes_validate

from .proxy import RequestRecord

VERSIONS = ("1.29", "1.30", "1.31")
WRITES = ("POST", "PUT", "PATCH")
# Warning texts of the apiserver's field validation (k8s.io/apiserver fieldmanager / json decoding).
FIELD_WARNINGS = ("unknown field", "duplicate field")
# A POST body without kind/apiVersion is typed by its path: plural -> (apiVersion, kind).
SUBRESOURCE_KINDS = {"eviction": ("policy/v1", "Eviction")}


def problems(obj: dict[str, Any], versions: tuple[str, ...] = VERSIONS) -> list[str]:
    """What each Kubernetes version's schema says is wrong with `obj` ([] if valid)."""
    out = []
    for version in versions:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = "/".join(str(p) for p in exc.absolute_path) or "(root)"
            out.append(f"{version}: {where}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            out.append(f"{version}: no schema: {exc.message}")
    return out


def typed(path: str, body: dict[str, Any]) -> dict[str, Any] | None:
    """`body` with the apiVersion and kind its path implies, if it lacks them (the apiserver
    defaults them from the URL); None for a path that names no kind known here."""
    if body.get("kind") and body.get("apiVersion"):
        return body
    from .cluster import RESOURCES

    parts = path.strip("/").split("/")
    if parts[-1] in SUBRESOURCE_KINDS:
        api_version, kind = SUBRESOURCE_KINDS[parts[-1]]
    elif parts[-1] in RESOURCES:
        prefix, _, kind = RESOURCES[parts[-1]]
        api_version = prefix.removeprefix("/apis/").removeprefix("/api/")
    else:
        return None
    return {"apiVersion": api_version, "kind": kind, **body}


def check_requests(requests: Iterable[RequestRecord]) -> list[str]:
    """One line per problem of the recorded writes: an unknown-field warning the apiserver
    answered, and each distinct created object an older version's schema rejects."""
    seen: set[str] = set()
    out = []
    for r in requests:
        if r.method not in WRITES:
            continue
        what = f"{r.method} {r.path}"
        out += [f"{what}: the apiserver warned: {w}" for w in r.warnings if any(f in w for f in FIELD_WARNINGS)]
        if r.method != "POST" or not isinstance(r.body, dict) or not 200 <= r.status < 300:
            continue
        obj = typed(r.path, r.body)
        if obj is None:
            continue
        key = json.dumps(obj, sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        name = (obj.get("metadata") or {}).get("name") or (obj.get("metadata") or {}).get("generateName")
        out += [f"{what}: {obj.get('kind')} {name}: {problem}" for problem in problems(obj)]
    return out
