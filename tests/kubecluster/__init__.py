"""The real Kubernetes control plane for drillkit's wire tests (see `cluster.RealCluster`)."""

from .cluster import CONTEXT, PROD_CONTEXT, RealCluster
from .proxy import Injection, RequestRecord

KubeServer = RealCluster  # the name the wire tests grew up with

__all__ = ["CONTEXT", "PROD_CONTEXT", "Injection", "KubeServer", "RealCluster", "RequestRecord"]
