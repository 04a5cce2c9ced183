"""The wire under the Kubernetes facade: one retried call, watches and exec streams.

Why it exists: this is the part of drillkit that knows the `kubernetes` client's calling
conventions (raw JSON answers, `_request_timeout`, watch streams, the exec WebSocket) and
wraps each of its exceptions through `translate`. `drillkit.kube.client.Kube` builds its verbs
on pods, workloads, secrets and nodes on top of it. Every wait ends at its deadline or when
the drill's stop flag interrupts; waits use watches with a server-side timeout rather than
tight polling.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sized
from typing import Any, TypeVar

from drillkit.errors import Aborted, TransientError
from drillkit.kube.config import KubeSettings, check_kind, client_configuration
from drillkit.kube.errors import ExecFailed, KubeError, KubeTransient, translate
from drillkit.kube.views import REQUEST_TIMEOUT, ExecResult, Pod
from drillkit.retry import retrying
from drillkit.signals import StopFlag, wait_until

log = logging.getLogger("drillkit.kube")
T = TypeVar("T")

MAX_IN_FLIGHT = 16
"""Calls `concurrently` keeps in flight at most (and never more than the client's connection
pool holds, `connection_pool_maxsize`: urllib3 would open and discard extra connections)."""


class KubeApi:
    """A client for one context, calls retried by the Kubernetes API policy, errors translated."""

    def __init__(self, settings: KubeSettings, stop: StopFlag | None = None) -> None:
        from kubernetes import client

        self.settings = settings
        self.stop = stop
        """The drill's stop flag: retry back-offs and waits end early when it interrupts (None:
        no drill to stop, e.g. `drillkit cleanup`)."""
        cfg = client_configuration(settings)
        if settings.kind_named:
            check_kind(settings.context, cfg)
        self._cfg = cfg
        self.api = client.ApiClient(cfg)
        self.core = client.CoreV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)
        self.batch = client.BatchV1Api(self.api)
        self.policy = client.PolicyV1Api(self.api)
        self._exec_lock = threading.Lock()  # kubernetes.stream swaps call_api on its client
        self._exec_api: Any = None
        self._quiet_until = 0.0
        """Monotonic time before which no call starts: a 429's Retry-After holds every worker
        of `concurrently`, not just the one that got it (API Priority and Fairness sheds load
        across the whole client: the others would only collect 429s of their own)."""

    @property
    def context(self) -> str:
        return self.settings.context

    def close(self) -> None:
        self.api.close()  # type: ignore[no-untyped-call]
        if self._exec_api is not None:
            self._exec_api.api_client.close()

    # -- plumbing -------------------------------------------------------------------------------

    def _once(self, what: str, fn: Callable[..., Any], *args: Any, text: bool = False, **kwargs: Any) -> Any:
        kwargs.setdefault("_request_timeout", REQUEST_TIMEOUT)
        self._hold()
        try:
            resp = fn(*args, _preload_content=False, **kwargs)
            data = resp.data
        except Exception as exc:
            error = translate(what, exc)
            if isinstance(error, KubeTransient) and error.retry_after:  # 429 (or 503) shedding load
                self._quiet_until = max(self._quiet_until, time.monotonic() + error.retry_after)
            raise error from None
        if text:  # a pod log
            return bytes(data or b"").decode(errors="replace")
        if not data:
            return {}
        try:
            return json.loads(data)
        except ValueError as exc:
            raise KubeError(f"{what}: answer is not JSON: {exc}") from None

    def _hold(self) -> None:
        """Wait out the Retry-After of a 429 another call got (see `_quiet_until`); the drill's
        stop flag ends the wait."""
        wait = self._quiet_until - time.monotonic()
        if wait > 0:
            if self.stop is None:
                time.sleep(wait)
            elif self.stop.sleep(wait):
                raise Aborted(self.stop.reason, by_signal=True)

    def call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """`fn(*args, **kwargs)` as parsed JSON, retried on transient errors."""
        return retrying(what, self.stop)(self._once, what, fn, *args, **kwargs)

    def concurrently(self, fn: Callable[[T], Any], items: Iterable[T], stop: StopFlag | None) -> int:
        """`fn(item)` for every item, a bounded number in flight (see MAX_IN_FLIGHT): many
        deletes in the time of a few. Each call keeps its own retry policy, and a server that
        sheds load (429 with Retry-After, API Priority and Fairness) holds every worker for the
        time it asked (`_hold`). `items` may be a generator: calls start while it still yields
        (pod-kill journals its victims a chunk at a time, ahead of their deletes). Nothing new
        starts once `stop` is raised or a call failed; the first failure is re-raised once the
        calls in flight end. Returns how many calls ran."""
        from concurrent.futures import ThreadPoolExecutor

        failed: list[BaseException] = []
        ran = 0

        def one(item: T) -> None:
            nonlocal ran
            if failed or (stop is not None and stop.is_set()):
                return
            try:
                fn(item)
                ran += 1
            except BaseException as exc:
                failed.append(exc)

        known = len(items) if isinstance(items, Sized) else MAX_IN_FLIGHT
        workers = max(1, min(MAX_IN_FLIGHT, int(self._cfg.connection_pool_maxsize or 1), known))
        with ThreadPoolExecutor(workers, thread_name_prefix="drillkit-kube") as pool:
            for item in items:  # a generator's next items are not even made once a call failed
                if failed or (stop is not None and stop.is_set()):
                    break
                pool.submit(one, item)
        if failed:
            raise failed[0]
        return ran

    def exec(
        self, namespace: str, pod: str, container: str, command: list[str], timeout: float = 30.0, retry: bool = True
    ) -> ExecResult:
        """Run `command` in a container (no stdin, no tty) and wait up to `timeout` s.

        `retry=False` for commands that must not run twice (the connection of an exec that
        kills its own container drops, which would otherwise look transient). Exit code -1:
        still running at the timeout."""
        from kubernetes import client
        from kubernetes.stream import stream
        from kubernetes.stream.ws_client import ERROR_CHANNEL

        what = f"create pods/exec {namespace}/{pod} -c {container}"

        def once() -> ExecResult:
            with self._exec_lock:
                if self._exec_api is None:
                    self._exec_api = client.CoreV1Api(client.ApiClient(self._cfg))
                try:
                    ws = stream(
                        self._exec_api.connect_get_namespaced_pod_exec,
                        pod,
                        namespace,
                        container=container,
                        command=command,
                        stderr=True,
                        stdin=False,
                        stdout=True,
                        tty=False,
                        _preload_content=False,
                        _request_timeout=REQUEST_TIMEOUT[0],
                    )
                except Exception as exc:
                    raise translate(what, exc) from None
            try:
                ws.run_forever(timeout=timeout)
                still_running = ws.is_open()
                status = "" if still_running else ws.read_channel(ERROR_CHANNEL)
                out, err = ws.read_stdout(timeout=0) or "", ws.read_stderr(timeout=0) or ""
            except Exception as exc:
                raise translate(what, exc) from None
            finally:
                ws.close()
            if still_running:
                return ExecResult(-1, str(out), f"still running after {timeout:g}s")
            return ExecResult(_exit_code(what, status), str(out), str(err))

        return retrying(what, self.stop)(once) if retry else once()

    def _watch(
        self, what: str, fn: Callable[..., Any], *args: Any, timeout: float, **kwargs: Any
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """(event type, object JSON) from a watch ending after `timeout` s (server-side).

        The stream is read here, not by the client's `Watch.stream`: with `deserialize=False`
        that reads `event['raw_object']` of an ERROR event, which only its deserializing path
        sets (KeyError). An ERROR event (410 Gone: the resourceVersion is older than the
        apiserver's watch cache or etcd's compacted history) is raised as a KubeError with its
        code, so `wait_pods` lists again."""
        from kubernetes.watch.watch import iter_resp_lines

        seconds = max(1, int(timeout + 0.999))
        try:
            resp = fn(
                *args,
                watch=True,
                timeout_seconds=seconds,
                _preload_content=False,
                _request_timeout=(REQUEST_TIMEOUT[0], seconds + 10),
                **kwargs,
            )
        except Exception as exc:
            raise translate(what, exc) from None
        try:
            for line in iter_resp_lines(resp):  # type: ignore[no-untyped-call]
                event = json.loads(line) if line.strip() else None
                if not isinstance(event, dict):
                    continue
                kind, obj = str(event.get("type")), event.get("object")
                if kind == "ERROR":
                    raise _watch_error(what, obj if isinstance(obj, dict) else {})
                if isinstance(obj, dict):
                    yield kind, obj
        except KubeError:
            raise
        except Exception as exc:
            raise translate(what, exc) from None
        finally:
            resp.close()
            resp.release_conn()

    def wait_pods(
        self,
        namespace: str,
        label_selector: str | None,
        done: Callable[[list[Pod]], T | None],
        timeout: float,
        stop: StopFlag | None = None,
        field_selector: str | None = None,
    ) -> T | None:
        """List, then watch from the list's resourceVersion, until `done(current pods)` returns
        something truthy; None at the deadline or when `stop` (default: the facade's) interrupts.

        Transient errors and an expired resourceVersion (410) start over with a fresh list.
        """
        stop = stop if stop is not None else self.stop
        deadline = time.monotonic() + timeout
        kw = {k: v for k, v in (("label_selector", label_selector), ("field_selector", field_selector)) if v}
        what = f"watch pods in {namespace}"
        chunk = 5.0 if stop is not None else 30.0  # a quiet watch only notices `stop` between chunks

        def attempt() -> T | None:
            try:
                return self._list_and_watch(namespace, kw, done, deadline, chunk, stop)
            except TransientError as exc:
                log.warning("%s interrupted, listing again: %s", what, exc)
            except KubeError as exc:
                if exc.status != 410:
                    raise
                log.warning("%s: %s; listing again", what, exc)
            return None  # resourceVersion expired or connection lost: list again

        return wait_until(attempt, deadline, 0.2, stop)

    def _list_and_watch(
        self,
        namespace: str,
        kw: dict[str, str],
        done: Callable[[list[Pod]], T | None],
        deadline: float,
        chunk: float,
        stop: StopFlag | None,
    ) -> T | None:
        """One list and one watch chunk of `wait_pods`."""
        listing = self.call(f"list pods in {namespace}", self.core.list_namespaced_pod, namespace, **kw)
        pods = {p.uid: p for p in map(Pod.from_json, listing.get("items") or [])}
        if result := done(list(pods.values())):
            return result
        if stop is not None and stop.interrupts():
            return None
        rv = (listing.get("metadata") or {}).get("resourceVersion")
        for kind, obj in self._watch(
            f"watch pods in {namespace}",
            self.core.list_namespaced_pod,
            namespace,
            timeout=min(deadline - time.monotonic(), chunk),
            resource_version=rv,
            **kw,
        ):
            pod = Pod.from_json(obj)
            if kind == "DELETED":
                pods.pop(pod.uid, None)
            elif kind in ("ADDED", "MODIFIED"):
                pods[pod.uid] = pod
            if result := done(list(pods.values())):
                return result
            if time.monotonic() >= deadline or (stop is not None and stop.interrupts()):
                return None
        return None


def _watch_error(what: str, status: dict[str, Any]) -> Exception:
    """A watch's ERROR event (a Status object) as drillkit's error: 410 Gone (the
    resourceVersion was compacted away) and others keep their code; 429/5xx are transient."""
    code = int(status.get("code") or 0)
    message = f"{what}: watch ended with {code} {status.get('reason') or ''}: {status.get('message') or ''}"
    if code == 429 or code >= 500:
        return KubeTransient(message)
    return KubeError(message, code)


def _exit_code(what: str, raw: object) -> int:
    """The exit code from an exec's error channel: a Status, `Success` (0) or `Failure` with
    reason NonZeroExitCode and an `ExitCode` cause. Any other Failure (the runtime could not
    start the command, the container is gone) is ExecFailed with the Status's own message —
    never a code parsed out of text that is not one (the client's `returncode` did that)."""
    text = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw or "")
    try:
        status = json.loads(text) if text.strip() else None
    except ValueError:
        status = None
    if not isinstance(status, dict):
        raise ExecFailed(f"{what}: the exec stream ended without an exit status: {text.strip()[:200]!r}")
    if status.get("status") == "Success":
        return 0
    causes = (status.get("details") or {}).get("causes") or []
    code = next((c.get("message") for c in causes if c.get("reason") == "ExitCode"), None)
    if status.get("reason") == "NonZeroExitCode" and code is not None and str(code).isdigit():
        return int(code)
    raise ExecFailed(f"{what}: {status.get('message') or status.get('reason') or text.strip()[:200]}")
