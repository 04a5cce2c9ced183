"""Watches of the Kubernetes API test server: `?watch=1` as a chunked stream of JSON events.

Why a module of its own: watch semantics are where drillkit's waits meet the API (list, then
watch from the list's resourceVersion; start again on 410). The stream sends the matching
objects (without a resourceVersion), then every change after the cursor, turning a MODIFIED
that moves an object in or out of the selectors into ADDED or DELETED. A resourceVersion older
than the store's compaction (`Store.compact`) gets what a real apiserver sends: HTTP 200 and
one ERROR event carrying a 410 Expired Status.
"""

from __future__ import annotations

import json
import time
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any

from .admission import check_field_selector
from .store import ApiError, Obj, fields_match, labels_match, parse_field_selector, parse_label_selector

if TYPE_CHECKING:
    from .server import KubeServer


def stream_watch(
    handler: BaseHTTPRequestHandler, kube: KubeServer, resource: str, ns: str | None, query: dict[str, Any]
) -> None:
    """Answer one watch request on `handler`'s connection until its timeout or the server stops."""
    store = kube.store
    lreqs = parse_label_selector(query.get("labelSelector"))
    check_field_selector(resource, query.get("fieldSelector"))
    freqs = parse_field_selector(query.get("fieldSelector"))
    timeout = float(query.get("timeoutSeconds") or 0)
    deadline = time.monotonic() + timeout if timeout > 0 else float("inf")
    since = query.get("resourceVersion")

    def matches(obj: Obj | None) -> bool:
        return (
            obj is not None
            and (ns is None or obj["metadata"].get("namespace") == ns)
            and labels_match(lreqs, obj["metadata"].get("labels"))
            and fields_match(freqs, obj)
        )

    gone = None
    with store.lock:
        if since not in (None, "", "0") and int(since) < store.compacted:
            cursor, initial = store.rv, []
            gone = ApiError(410, f"too old resource version: {since} ({store.compacted})", "Expired").status()
        elif since not in (None, "", "0"):
            cursor, initial = int(since), []
        else:
            cursor = store.rv
            initial = [o for o in store.raw_list(resource, ns) if matches(o)]
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()
    handler.close_connection = True

    def send(kind: str, obj: Obj) -> None:
        line = json.dumps({"type": kind, "object": obj}).encode() + b"\n"
        handler.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")

    try:
        if gone is not None:  # the real API answers 200, then one ERROR event with the 410 Status
            send("ERROR", gone)
            handler.wfile.write(b"0\r\n\r\n")
            return
        for obj in initial:
            send("ADDED", obj)
        while not kube.stopping:
            with store.changed:
                events = store.events_after(cursor)
                if not events:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    store.changed.wait(min(remaining, 1.0))
                    continue
            cursor = events[-1][0]
            for _, res, kind, obj, old in events:
                if res != resource:
                    continue
                now_in, was_in = matches(obj), kind == "MODIFIED" and matches(old)
                if kind != "MODIFIED" and now_in:
                    send(kind, obj)
                elif kind == "MODIFIED" and (now_in or was_in):
                    send("MODIFIED" if now_in and was_in else "ADDED" if now_in else "DELETED", obj)
        handler.wfile.write(b"0\r\n\r\n")
    except OSError:
        pass
