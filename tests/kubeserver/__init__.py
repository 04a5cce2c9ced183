"""Kubernetes API test server for drillkit's wire tests (see `server.KubeServer`)."""

from .server import CONTEXT, PROD_CONTEXT, ExecRecord, Injection, KubeServer, RequestRecord

__all__ = ["CONTEXT", "PROD_CONTEXT", "ExecRecord", "Injection", "KubeServer", "RequestRecord"]
