"""RBAC for the Kubernetes API test server: the verbs real Kubernetes checks, from the Role,
ClusterRole and binding objects it is given (e.g. deploy/rbac.yaml).

Why: a fault that needs a verb the documented Role lacks works against a permissive test
server and fails on a real cluster. With `KubeServer.enforce_rbac`, requests made with the
kubeconfig's token act as the ServiceAccount and get the apiserver's 403 for anything the
bound rules do not grant. Exec is checked as real Kubernetes does it for a WebSocket GET:
`get` on pods/exec, and `create` too (Kubernetes 1.30+).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def request_verbs(method: str, name: str | None, sub: str | None, watch: bool) -> list[str]:
    """The RBAC verbs one request needs."""
    if sub == "exec":
        return ["get", "create"]
    if method == "GET":
        return ["get"] if name else (["watch"] if watch else ["list"])
    return {
        "POST": ["create"],
        "PUT": ["update"],
        "PATCH": ["patch"],
        "DELETE": ["delete" if name else "deletecollection"],
    }.get(method, [method.lower()])


@dataclass
class Rbac:
    """The rules bound to one ServiceAccount, evaluated like the RBAC authorizer."""

    namespace: str  # of the ServiceAccount
    name: str
    target_namespaces: tuple[str, ...]  # where namespace-less Roles/RoleBindings were applied
    roles: dict[tuple[str | None, str], list[dict[str, Any]]] = field(default_factory=dict)
    bindings: list[tuple[str | None, str, str]] = field(default_factory=list)  # (ns, role kind, role)

    @classmethod
    def from_docs(cls, docs: list[dict[str, Any]], sa: tuple[str, str], targets: tuple[str, ...]) -> Rbac:
        rbac = cls(sa[0], sa[1], targets)
        for d in docs:
            kind, meta = d.get("kind"), d.get("metadata") or {}
            spaces: list[str | None] = [meta["namespace"]] if meta.get("namespace") else list(targets)
            if kind == "ClusterRole":
                rbac.roles[(None, meta["name"])] = d.get("rules") or []
            elif kind == "Role":
                for ns in spaces:
                    rbac.roles[(ns, meta["name"])] = d.get("rules") or []
            elif kind in ("RoleBinding", "ClusterRoleBinding"):
                subjects = d.get("subjects") or []
                if not any(
                    s.get("kind") == "ServiceAccount" and s.get("name") == sa[1] and s.get("namespace") == sa[0]
                    for s in subjects
                ):
                    continue
                ref = d["roleRef"]
                where = [None] if kind == "ClusterRoleBinding" else spaces
                for ns in where:
                    rbac.bindings.append((ns, ref["kind"], ref["name"]))
        return rbac

    def allows(self, verb: str, group: str, resource: str, namespace: str | None) -> bool:
        for bound_ns, role_kind, role in self.bindings:
            if bound_ns is not None and bound_ns != namespace:
                continue
            rules = self.roles.get((None if role_kind == "ClusterRole" else bound_ns, role), [])
            for r in rules:
                if (
                    group in (r.get("apiGroups") or [])
                    and (resource in (r.get("resources") or []) or "*" in (r.get("resources") or []))
                    and (verb in (r.get("verbs") or []) or "*" in (r.get("verbs") or []))
                ):
                    return True
        return False

    def check(
        self, method: str, group: str, resource: str, sub: str | None, ns: str | None, name: str | None, watch: bool
    ) -> str | None:
        """The apiserver's 403 message, or None if allowed."""
        full = f"{resource}/{sub}" if sub else resource
        for verb in request_verbs(method, name, sub, watch):
            if not self.allows(verb, group, full, ns):
                what = f"{full}{'.' + group if group else ''}"
                scope = f'in the namespace "{ns}"' if ns else "at the cluster scope"
                obj = f'"{name}" ' if name else ""
                return (
                    f'{what} {obj}is forbidden: User "system:serviceaccount:{self.namespace}:{self.name}" '
                    f'cannot {verb} resource "{full}" in API group "{group}" {scope}'
                )
        return None
