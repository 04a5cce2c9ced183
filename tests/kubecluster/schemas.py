"""Every object written to the test server, checked against the official Kubernetes OpenAPI
schemas (kubernetes-validate, strict: unknown fields are errors) for 1.29, 1.30 and 1.31.

Why: the test server accepts whatever it is sent; a real apiserver rejects a misspelt field, a
string where an integer belongs, or a field a version does not know. The server records each
write (`KubeServer.written`): a created object as sent, and a patched or replaced object as the
patch left it (ephemeral containers, scale, JSON-patch `test`+`replace` included). The
`kube_server` fixture validates them all when each test ends.
"""

from __future__ import annotations

import json
from typing import Any

import kubernetes_validate

VERSIONS = ("1.29", "1.30", "1.31")


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


def check_written(written: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """One line per distinct written object a schema rejects: what wrote it, and why."""
    seen: set[str] = set()
    out = []
    for what, obj in written:
        key = json.dumps(obj, sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        for problem in problems(obj):
            out.append(f"{what}: {obj.get('kind')} {(obj.get('metadata') or {}).get('name')}: {problem}")
    return out
