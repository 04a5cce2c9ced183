"""Kubernetes access: the one package that imports `kubernetes`.

Why it exists: every call a drill makes to a cluster goes through one facade (`Kube`), so that
- the kubeconfig context is checked against an allowlist before any client exists (by default
  only `kind-*` contexts; anything else needs `--allow-context NAME`): `config`,
- there is one written-down retry policy (`drillkit.retry.retrying`): 429 (honouring
  Retry-After), 5xx and connection errors are retried; other 4xx never are: `api`,
- third-party exceptions (`ApiException`, urllib3, websocket) are turned into drillkit's own
  errors here and nowhere else (`NotFound`, `Conflict`, `Forbidden`, `KubeTransient`, ...):
  `errors`,
- objects come back as small frozen dataclasses (`Pod`, `Workload`, `Node`, `ObjRef`): `views`.

`kubernetes` is imported lazily, inside functions, so `drillkit --help` and `drillkit validate`
stay fast. This module re-exports what the rest of drillkit uses, each name loading only the
module that defines it (PEP 562): a fault module that names `RUN_LABEL` or `Pod` to validate its
parameters does not load the client, the retry policy and the kubeconfig reader.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from drillkit.kube.api import KubeApi
    from drillkit.kube.client import Kube
    from drillkit.kube.config import (
        IN_CLUSTER,
        KubeconfigError,
        KubeSettings,
        context_allowed,
        kube_factory_for,
        malformed_kubeconfig,
        resolve_settings,
    )
    from drillkit.kube.errors import (
        Conflict,
        ExecFailed,
        Forbidden,
        KubeError,
        KubeTransient,
        NotFound,
        NotKubernetes,
        translate,
    )
    from drillkit.kube.views import (
        BACKUP_OF,
        CORDONED_BY,
        MODIFIED_BY,
        NETEM_BY,
        NETEM_CONTAINER,
        PROTECTED_NAMESPACES,
        REQUEST_TIMEOUT,
        RESTART,
        RESTARTED_AT,
        REVERT_FAULT,
        REVERT_OF,
        RUN_LABEL,
        Container,
        Ended,
        ExecResult,
        Labelled,
        Node,
        ObjRef,
        Owner,
        Pod,
        Workload,
        strip_for_create,
        workload_kind,
    )

_WHERE = {
    "REQUEST_TIMEOUT": "views",
    "KubeApi": "api",
    "Kube": "client",
    "IN_CLUSTER": "config",
    "KubeconfigError": "config",
    "KubeSettings": "config",
    "context_allowed": "config",
    "kube_factory_for": "config",
    "malformed_kubeconfig": "config",
    "resolve_settings": "config",
    "Conflict": "errors",
    "ExecFailed": "errors",
    "Forbidden": "errors",
    "KubeError": "errors",
    "KubeTransient": "errors",
    "NotFound": "errors",
    "NotKubernetes": "errors",
    "translate": "errors",
    "BACKUP_OF": "views",
    "CORDONED_BY": "views",
    "MODIFIED_BY": "views",
    "NETEM_BY": "views",
    "NETEM_CONTAINER": "views",
    "PROTECTED_NAMESPACES": "views",
    "RESTART": "views",
    "RESTARTED_AT": "views",
    "REVERT_FAULT": "views",
    "REVERT_OF": "views",
    "RUN_LABEL": "views",
    "Container": "views",
    "Ended": "views",
    "ExecResult": "views",
    "Labelled": "views",
    "Node": "views",
    "ObjRef": "views",
    "Owner": "views",
    "Pod": "views",
    "Workload": "views",
    "strip_for_create": "views",
    "workload_kind": "views",
}
"""Each exported name -> the module of this package that defines it."""


def __getattr__(name: str) -> object:
    import importlib

    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "BACKUP_OF",
    "CORDONED_BY",
    "IN_CLUSTER",
    "MODIFIED_BY",
    "NETEM_BY",
    "NETEM_CONTAINER",
    "PROTECTED_NAMESPACES",
    "REQUEST_TIMEOUT",
    "RESTART",
    "RESTARTED_AT",
    "REVERT_FAULT",
    "REVERT_OF",
    "RUN_LABEL",
    "Conflict",
    "Container",
    "Ended",
    "ExecFailed",
    "ExecResult",
    "Forbidden",
    "Kube",
    "KubeApi",
    "KubeError",
    "KubeSettings",
    "KubeTransient",
    "KubeconfigError",
    "Labelled",
    "Node",
    "NotFound",
    "NotKubernetes",
    "ObjRef",
    "Owner",
    "Pod",
    "Workload",
    "context_allowed",
    "kube_factory_for",
    "malformed_kubeconfig",
    "resolve_settings",
    "strip_for_create",
    "translate",
    "workload_kind",
]
