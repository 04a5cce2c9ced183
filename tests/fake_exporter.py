"""A real metrics-exporting process for integration tests: serves `demo_up 1` on /metrics.

Run as `python tests/fake_exporter.py PORT PIDFILE`; it writes its pid file at start.
"""

import os
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"# TYPE demo_up gauge\ndemo_up 1\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


if __name__ == "__main__":
    port, pidfile = int(sys.argv[1]), sys.argv[2]
    server = HTTPServer(("127.0.0.1", port), Handler)
    with open(pidfile, "w") as fh:
        fh.write(str(os.getpid()))
    server.serve_forever()
