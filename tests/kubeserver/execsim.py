"""Exec in the Kubernetes API test server: the WebSocket protocol the `kubernetes` client
speaks (v4.channel.k8s.io), and what the built-in handlers answer.

Why a module of its own: exec is a protocol (HTTP upgrade, framed channels, a Status on
channel 3) plus a small simulation of what runs in the containers (cgroup probes, the
memory-pressure allocator and its OOM kill, true/false/echo); tests add their own answers
with `KubeServer.on_exec`.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
import time
import traceback
from typing import TYPE_CHECKING, Any, NamedTuple

from .controllers import set_condition
from .store import ApiError, Obj, now_rfc3339

if TYPE_CHECKING:
    from .server import KubeServer


class ExecRecord(NamedTuple):
    namespace: str
    pod: str
    container: str
    command: list[str]
    exit_code: int


MEMORY_PRESSURE_MARKER = "drillkit-memory-pressure"
MEMORY_LOAD = "tail /dev/zero"
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def parse_quantity(value: Any) -> int:
    m = re.fullmatch(r"\s*([0-9.]+)\s*([a-zA-Z]*)\s*", str(value))
    if not m:
        raise ValueError(f"bad quantity {value!r}")
    units = {
        "": 1,
        "m": 1e-3,
        "k": 1e3,
        "K": 1e3,
        "M": 1e6,
        "G": 1e9,
        "T": 1e12,
        "Ki": 1024,
        "Mi": 1024**2,
        "Gi": 1024**3,
        "Ti": 1024**4,
    }
    return int(float(m[1]) * units[m[2]])


def builtin_exec(
    kube: KubeServer, pod: Obj, container: str, command: list[str], joined: str
) -> tuple[Any, Any, int, str | None]:
    """What the built-in exec handlers answer: the cgroup probes and the memory allocator of
    memory-pressure, true/false/echo; anything else `kube.unknown_exec_result`."""
    spec = next(
        (
            c
            for c in (pod["spec"].get("containers") or []) + (pod["spec"].get("ephemeralContainers") or [])
            if c["name"] == container
        ),
        {},
    )
    if "distroless" in spec.get("image", ""):
        return (
            "",
            "",
            126,
            (
                "OCI runtime exec failed: exec failed: unable to start container "
                f'process: exec: "{command[0]}": executable file not found in '
                "$PATH: unknown"
            ),
        )
    key = (pod["metadata"]["uid"], container)
    if "memory.events" in joined and "memory.oom_control" in joined:  # the cgroup probe
        kills = kube.oom_kills.get(key, 0)
        if kube.cgroup_version == 2:
            return f"cgroup v2\nlow 0\nhigh 0\nmax 3\noom 1\noom_kill {kills}\n", "", 0, None
        return f"cgroup v1\noom_kill_disable 0\nunder_oom 0\noom_kill {kills}\n", "", 0, None
    if MEMORY_PRESSURE_MARKER in joined or MEMORY_LOAD in joined:  # blind exercises mark it otherwise
        kube.oom_kills[key] = kube.oom_kills.get(key, 0) + 1
        if kube.cgroup_version == 1:  # the kernel kills `tail`; the shell goes on
            return "drillkit: allocator exited 137\n", "", 0, None
        oom_kill(kube, pod, container)
        kube.oom_kills[key] = 0  # a restarted container has a fresh cgroup
        return "", "", 137, None
    if "memory.max" in joined or "memory.limit_in_bytes" in joined:
        limit = ((spec.get("resources") or {}).get("limits") or {}).get("memory")
        return (f"{parse_quantity(limit)}\n" if limit else "max\n"), "", 0, None
    if "memory.current" in joined or "memory.usage_in_bytes" in joined:
        return "20971520\n", "", 0, None
    script = command[2].strip() if len(command) == 3 and command[1] == "-c" else None
    if command[:1] in (["true"], ["/bin/true"]) or script == "true":
        return "", "", 0, None
    if command[:1] in (["false"], ["/bin/false"]) or script == "false":
        return "", "", 1, None
    if command[:1] == ["echo"]:
        return " ".join(command[1:]) + "\n", "", 0, None
    return (*kube.unknown_exec_result, None)


def oom_kill(kube: KubeServer, pod: Obj, container: str) -> None:
    """The kernel OOM-kills a container (cgroup v2: the whole container restarts)."""
    now = now_rfc3339()

    def kill(o: Obj) -> None:
        for cs in o["status"].get("containerStatuses") or []:
            if cs["name"] == container:
                started = ((cs.get("state") or {}).get("running") or {}).get("startedAt", now)
                cs["restartCount"] = cs.get("restartCount", 0) + 1
                cs["lastState"] = {
                    "terminated": {
                        "exitCode": 137,
                        "reason": "OOMKilled",
                        "startedAt": started,
                        "finishedAt": now,
                        "containerID": cs.get("containerID"),
                    }
                }
                cs["state"] = {"running": {"startedAt": now}}
                cs["ready"] = False
        conds = o["status"].setdefault("conditions", [])
        set_condition(conds, "ContainersReady", "False", "ContainersNotReady")
        set_condition(conds, "Ready", "False", "ContainersNotReady")

    with kube.store.lock:
        kube.store.update("pods", pod["metadata"]["namespace"], pod["metadata"]["name"], kill)
        kube.controllers.ready_at[pod["metadata"]["uid"]] = time.monotonic() + kube.controllers.ready_delay


def _ws_frame(opcode: int, payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        header = bytes([0x80 | opcode, n])
    elif n < 1 << 16:
        header = bytes([0x80 | opcode, 126]) + n.to_bytes(2, "big")
    else:
        header = bytes([0x80 | opcode, 127]) + n.to_bytes(8, "big")
    return header + payload


def _ws_read_frame(rfile) -> tuple[int, bytes] | None:
    head = rfile.read(2)
    if len(head) < 2:
        return None
    opcode, masked, n = head[0] & 0x0F, head[1] & 0x80, head[1] & 0x7F
    if n == 126:
        n = int.from_bytes(rfile.read(2), "big")
    elif n == 127:
        n = int.from_bytes(rfile.read(8), "big")
    mask = rfile.read(4) if masked else b"\0\0\0\0"
    data = rfile.read(n)
    return opcode, bytes(b ^ mask[i % 4] for i, b in enumerate(data))


def serve_exec(handler: Any, kube: KubeServer, ns: str, name: str, query: dict[str, Any]) -> None:
    """Upgrade `handler`'s connection to a WebSocket (v4.channel.k8s.io) and answer the exec:
    stdout/stderr frames, then the Status on channel 3, then close."""
    with kube.store.lock:
        pod = copy.deepcopy(kube.store.must_get("pods", ns, name))
    spec = pod["spec"]
    names = [c["name"] for c in spec.get("containers") or []]
    container = query.get("container")
    if not container:
        if len(names) != 1:
            raise ApiError(
                400, f"a container name must be specified for pod {name}, choose one of: [{' '.join(names)}]"
            )
        container = names[0]
    all_names = names + [c["name"] for c in spec.get("ephemeralContainers") or []]
    if container not in all_names:
        raise ApiError(400, f"container {container} is not valid for pod {name}")
    statuses = (pod["status"].get("containerStatuses") or []) + (pod["status"].get("ephemeralContainerStatuses") or [])
    if not any(s["name"] == container and "running" in (s.get("state") or {}) for s in statuses):
        raise ApiError(400, f'unable to upgrade connection: container not found ("{container}")')
    command = query.get("command") or []
    command = [command] if isinstance(command, str) else list(command)
    if not command:
        raise ApiError(400, "you must specify at least 1 command")
    if (handler.headers.get("Upgrade") or "").lower() != "websocket":
        raise ApiError(400, "Upgrade request required")
    offered = [p.strip() for p in (handler.headers.get("Sec-WebSocket-Protocol") or "").split(",")]
    protocol = "v4.channel.k8s.io" if "v4.channel.k8s.io" in offered else offered[0]
    accept = base64.b64encode(hashlib.sha1((handler.headers["Sec-WebSocket-Key"] + WS_GUID).encode()).digest()).decode()
    handler.send_response(101, "Switching Protocols")
    handler.send_header("Upgrade", "websocket")
    handler.send_header("Connection", "Upgrade")
    handler.send_header("Sec-WebSocket-Accept", accept)
    if protocol:
        handler.send_header("Sec-WebSocket-Protocol", protocol)
    handler.end_headers()
    handler.close_connection = True
    try:
        stdout, stderr, code, message = kube.run_exec(pod, container, command)
    except Exception as e:  # a broken test handler: fail the exec and the test (fixture)
        kube.internal_errors.append(f"exec handler for {command} failed:\n{traceback.format_exc()}")
        stdout, stderr, code, message = b"", str(e).encode(), 1, f"exec handler failed: {e!r}"
    kube.execs.append(ExecRecord(ns, name, container, command, code))
    if code == 0:
        status: Obj = {"metadata": {}, "status": "Success"}
    else:
        status = {
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
        }
    try:
        for channel, data in ((1, stdout), (2, stderr)):
            if data and query.get("stdout" if channel == 1 else "stderr", "true").lower() not in ("false", "0"):
                handler.wfile.write(_ws_frame(0x2, bytes([channel]) + data))
        handler.wfile.write(_ws_frame(0x2, b"\x03" + json.dumps(status).encode()))
        handler.wfile.write(_ws_frame(0x8, (1000).to_bytes(2, "big")))
        handler.connection.settimeout(2)
        while (frame := _ws_read_frame(handler.rfile)) is not None and frame[0] != 0x8:
            pass
    except OSError:
        pass
