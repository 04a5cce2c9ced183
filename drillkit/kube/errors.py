"""drillkit's errors for the Kubernetes API, and `translate`, the one place that classifies
what the `kubernetes` client (and urllib3, websocket-client under it) raises.

Why it exists: faults, cleanup and the engine reason about meaning — not found (for a revert:
already gone), conflict, forbidden, transient — never about a third-party exception type or
an HTTP status read back from text. Transient errors are the ones `drillkit.retry` retries.
"""

from __future__ import annotations

import json
import re
from typing import Any

from drillkit.errors import PermanentError, TransientError

_RBAC_DENIAL = re.compile(r'forbidden: User "[^"]*" cannot ')
"""How the authorizer words a 403 (`pods is forbidden: User "…" cannot create resource …`);
admission's 403s (quota, PodSecurity, policies, webhooks) say something else."""


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


class NotKubernetes(KubeError):
    """The context's server does not speak the Kubernetes API (e.g. 404 on `/version`)."""


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
        if status == 403 and "violates PodSecurity" in message:
            # admission, not RBAC: granting verbs would not help; the namespace's level decides
            return Forbidden(
                f"forbidden: cannot {what}: {message} (the namespace's Pod Security level "
                "refuses this pod; see its pod-security.kubernetes.io/enforce label)",
                status,
            )
        if status == 403 and not _RBAC_DENIAL.search(message):
            # a quota, an admission policy or webhook: granting verbs would not help either
            return Forbidden(
                f"forbidden: cannot {what}: {message} (refused by the cluster's admission control, "
                "not by RBAC: its words say which quota, policy or webhook)",
                status,
            )
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
