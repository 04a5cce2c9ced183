"""One drill per Kubernetes namespace: a coordination.k8s.io/v1 Lease as the drill lock.

Why it exists: two drills on one namespace corrupt each other (the second saves the first's
harm as "the state to restore"). The lock must live in the cluster, where every runner sees
it, and it must not outlive a runner that was killed: a Lease `drillkit-drill-lock` whose
`holderIdentity` is the run id, labelled `drillkit.io/run-id=<run>`, with
`leaseDurationSeconds` and a `renewTime` that a daemon thread refreshes while the drill holds
it. A runner killed with SIGKILL stops renewing, so its lease expires after
`LEASE_SECONDS` and the next drill takes it over (optimistic concurrency: an update carrying
the resourceVersion that was read; whoever loses the race gets 409 and reads again).

Why a daemon thread renews it, and not a lease as long as the longest drill: a drill has no
upper bound (recovery.within can be an hour), and a long lease would lock a namespace that
long after a crash. The thread renews every `LEASE_SECONDS / 3` with single, unretried calls
(the next renewal is the retry), so a stop request or an API hiccup during the reverts never
blocks on it. Expiry compares the lease's `renewTime` with this machine's clock: a runner
whose clock is more than a lease duration off could take over a live lock.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from drillkit.kube.errors import Conflict, KubeError, NotFound
from drillkit.kube.views import RUN_LABEL

if TYPE_CHECKING:
    from drillkit.kube.api import KubeApi

log = logging.getLogger("drillkit.kube")

LEASE_NAME = "drillkit-drill-lock"
LEASE_SECONDS = 60
"""Seconds a lease stays valid without renewal: how long a killed drill locks its namespace."""
SCENARIO_ANNOTATION = "drillkit.io/scenario"


def micro_time(at: datetime) -> str:
    """A Kubernetes MicroTime (RFC 3339 with microseconds, UTC)."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_time(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _holder(lease: dict[str, Any], now: datetime) -> tuple[str, str] | None:
    """(run id, description) of the lease's live holder, or None if it is free or expired."""
    spec = lease.get("spec") or {}
    holder = spec.get("holderIdentity")
    renewed = _parse_time(spec.get("renewTime")) or _parse_time(spec.get("acquireTime"))
    seconds = spec.get("leaseDurationSeconds") or LEASE_SECONDS
    if not holder or renewed is None or renewed + timedelta(seconds=int(seconds)) <= now:
        return None
    scenario = ((lease.get("metadata") or {}).get("annotations") or {}).get(SCENARIO_ANNOTATION, "a drill")
    since = spec.get("acquireTime") or spec.get("renewTime")
    return str(holder), f"{scenario} (run {holder}, since {since})"


class DrillLocks:
    """The drill locks one facade holds, and the thread renewing them."""

    def __init__(self, api: KubeApi, seconds: float = LEASE_SECONDS) -> None:
        from kubernetes import client

        self._api = api
        self.seconds = seconds
        self._coord = client.CoordinationV1Api(api.api)
        self._held: dict[str, str] = {}  # namespace -> run id
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self, namespace: str, run_id: str, scenario: str, force: bool = False) -> str | None:
        """Take (or renew) the namespace's lock for `run_id` -> None; or the description of the
        live holder, taking nothing. With `force`, a live holder is left alone and None is
        returned: the drill runs beside it, unlocked."""
        what = f"get leases.coordination.k8s.io {namespace}/{LEASE_NAME}"
        for _ in range(5):  # lost races read again; five in a row means something is wrong
            now = datetime.now(UTC)
            try:
                lease = self._api.call(what, self._coord.read_namespaced_lease, LEASE_NAME, namespace)
            except NotFound:
                lease = None
            if lease is not None and (holder := _holder(lease, now)) and holder[0] != run_id:
                if force:
                    log.warning("%s holds namespace %s; running beside it (--force)", holder[1], namespace)
                    return None
                return holder[1]
            try:
                self._write(namespace, run_id, scenario, lease, now)
            except Conflict:
                continue  # another runner created or took it meanwhile
            self._hold(namespace, run_id)
            return None
        raise KubeError(f"could not take lease {namespace}/{LEASE_NAME}: it kept changing under us")

    def _write(self, namespace: str, run_id: str, scenario: str, lease: dict[str, Any] | None, now: datetime) -> None:
        spec = (lease or {}).get("spec") or {}
        ours = spec.get("holderIdentity") == run_id
        body: dict[str, Any] = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": LEASE_NAME,
                "namespace": namespace,
                "labels": {RUN_LABEL: run_id},
                "annotations": {SCENARIO_ANNOTATION: scenario},
            },
            "spec": {
                "holderIdentity": run_id,
                "leaseDurationSeconds": max(1, round(self.seconds)),
                "acquireTime": spec.get("acquireTime") if ours else micro_time(now),
                "renewTime": micro_time(now),
                "leaseTransitions": int(spec.get("leaseTransitions") or 0) + (0 if ours or lease is None else 1),
            },
        }
        where = f"leases.coordination.k8s.io {namespace}/{LEASE_NAME}"
        if lease is None:
            self._api.call(f"create {where}", self._coord.create_namespaced_lease, namespace, body)
            return
        body["metadata"]["resourceVersion"] = (lease.get("metadata") or {}).get("resourceVersion")
        self._api.call(f"update {where}", self._coord.replace_namespaced_lease, LEASE_NAME, namespace, body)

    def _hold(self, namespace: str, run_id: str) -> None:
        with self._lock:
            self._held[namespace] = run_id
            if self._thread is None or not self._thread.is_alive():
                self._wake.clear()
                self._thread = threading.Thread(target=self._renew_loop, name="drillkit-lease", daemon=True)
                self._thread.start()

    def _renew_loop(self) -> None:
        while not self._wake.wait(self.seconds / 3):
            with self._lock:
                held = dict(self._held)
            for namespace, run_id in held.items():
                self.renew(namespace, run_id)

    def renew(self, namespace: str, run_id: str) -> bool:
        """One renewal, no retries (the next period retries); False if it failed or the lease
        is no longer ours (then it is dropped: renewing someone else's lock would steal it)."""
        where = f"leases.coordination.k8s.io {namespace}/{LEASE_NAME}"
        try:
            lease = self._api._once(f"get {where}", self._coord.read_namespaced_lease, LEASE_NAME, namespace)
            if (lease.get("spec") or {}).get("holderIdentity") != run_id:
                log.error("the drill lock of namespace %s was taken over by another drill", namespace)
                with self._lock:
                    self._held.pop(namespace, None)
                return False
            lease["spec"]["renewTime"] = micro_time(datetime.now(UTC))
            self._api._once(f"update {where}", self._coord.replace_namespaced_lease, LEASE_NAME, namespace, lease)
        except Exception as exc:  # logged; the lease outlives a few failed renewals
            log.warning("renewing the drill lock of namespace %s failed: %s", namespace, exc)
            return False
        return True

    def release(self, namespace: str, run_id: str) -> bool:
        """Stop renewing and delete the lease if `run_id` holds it; False if it was not ours
        (another drill's, taken over, or already gone)."""
        with self._lock:
            self._held.pop(namespace, None)
            if not self._held:
                self._wake.set()
        where = f"leases.coordination.k8s.io {namespace}/{LEASE_NAME}"
        for _ in range(5):
            try:
                lease = self._api.call(f"get {where}", self._coord.read_namespaced_lease, LEASE_NAME, namespace)
            except NotFound:
                return False
            if (lease.get("spec") or {}).get("holderIdentity") != run_id:
                return False
            meta = lease.get("metadata") or {}
            try:  # only the version we read: someone may take it over between get and delete
                self._api.call(
                    f"delete {where}",
                    self._coord.delete_namespaced_lease,
                    LEASE_NAME,
                    namespace,
                    body={"preconditions": {"uid": meta.get("uid"), "resourceVersion": meta.get("resourceVersion")}},
                )
            except NotFound:
                return False
            except Conflict:
                continue  # renewed or taken over meanwhile: read again
            return True
        return False

    def close(self) -> None:
        self._wake.set()
