"""Small additions to the Kubernetes API test server for drillkit's Kubernetes wire tests.

Why: `http.server` writes a response's headers and body in separate sends; with Nagle's
algorithm on the server socket and delayed ACKs on the client, every request then waits ~40 ms.
Setting TCP_NODELAY on the listening socket (accepted sockets inherit it on Linux) makes a
request take ~3 ms, which keeps the whole wire suite well under a minute. (Worth folding into
tests/kubeserver itself.)
"""

from __future__ import annotations

import socket

from tests.kubeserver import KubeServer


def no_delay(server: KubeServer) -> KubeServer:
    server.httpd.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return server
