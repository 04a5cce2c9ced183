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
stay fast. This module re-exports what the rest of drillkit uses.
"""

from drillkit.kube.api import REQUEST_TIMEOUT, KubeApi
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
