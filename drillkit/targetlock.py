"""One drill per target at a time: a second drill on the same lab (or host) or Kubernetes
namespace is refused, naming the one that runs.

Two drills on one target corrupt each other: the second journals the first's fault as the
"original state" and later "restores" it. A local target is locked with `flock` on a file in
the lab's directory (the kernel drops the lock when the drill dies, however it dies); a
Kubernetes namespace with a run-labelled Lease (see `Kube.acquire_lease`) that expires if a
killed drill never releases it.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING

from drillkit.clock import rfc3339, utcnow
from drillkit.errors import DrillkitError, PreflightError

if TYPE_CHECKING:
    from drillkit.kube import Kube
    from drillkit.scenario import Scenario

LOCK_NAME = ".drillkit-drill.lock"
log = logging.getLogger("drillkit")


class TargetBusy(PreflightError):
    """Another drill holds the target."""


def local_lock_path(lab_dir: str | None) -> Path:
    """The lock of a local target: in the lab's directory, else one per user on this host (in
    $DRILLKIT_LOCK_DIR if set, else the temp dir: drills on this host outside any lab)."""
    if lab_dir:
        return Path(lab_dir) / LOCK_NAME
    folder = os.environ.get("DRILLKIT_LOCK_DIR") or tempfile.gettempdir()
    return Path(folder) / f"drillkit-{os.getuid()}{LOCK_NAME}"


@contextmanager
def local_target(path: Path, run_id: str, scenario: str, force: bool = False) -> Iterator[None]:
    """Hold the local target's lock for the block; TargetBusy names the drill holding it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fh: IO[str] = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held for the block
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not force:
                fh.seek(0)
                holder = _holder(fh.read())
                raise TargetBusy(f"{holder} is running on this target ({path.parent}); wait for it to end") from None
            yield  # --force: run beside it, leaving its lock alone
            return
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps({"run_id": run_id, "scenario": scenario, "pid": os.getpid(), "since": rfc3339(utcnow())}))
        fh.flush()
        yield
    finally:
        fh.close()


def _holder(text: str) -> str:
    try:
        held = json.loads(text)
        return f"drill {held['scenario']} (run {held['run_id']}, pid {held['pid']}, since {held['since']})"
    except (ValueError, KeyError, TypeError):
        return "another drill"


@contextmanager
def hold_target(
    scenario: Scenario, run_id: str, kube_factory: Callable[[], Kube] | None, force: bool = False
) -> Iterator[None]:
    """Hold the scenario's target for the block (see the module docstring); `force` runs anyway."""
    local = scenario.target.local
    if local is not None:
        from drillkit.lab.layout import lab_dir_default

        lab_dir = local.lab_dir or (str(lab_dir_default()) if lab_dir_default().exists() else None)
        with local_target(local_lock_path(lab_dir), run_id, scenario.name, force):
            yield
    elif scenario.target.kubernetes is not None and kube_factory is not None:
        with kube_target(kube_factory(), kube_namespaces(scenario), run_id, scenario.name, force):
            yield
    else:
        yield


def kube_namespaces(scenario: Scenario) -> list[str]:
    """The namespaces a Kubernetes drill locks: the target's and any a fault names itself,
    except protected ones the scenario does not allow (preflight refuses those drills, and
    nothing, not even a lock, is written there)."""
    from drillkit.kube import PROTECTED_NAMESPACES

    target = scenario.target.kubernetes
    wanted = {target.namespace} if target is not None else set()
    wanted |= {ns for f in scenario.faults if isinstance(ns := getattr(f.params, "namespace", None), str) and ns}
    allowed = scenario.guardrails.allow_namespaces
    return sorted(ns for ns in wanted if ns not in PROTECTED_NAMESPACES or ns in allowed)


@contextmanager
def kube_target(kube: Kube, namespaces: list[str], run_id: str, scenario: str, force: bool = False) -> Iterator[None]:
    """Hold each namespace's drill lock (a Lease, renewed while held) for the block, taken in
    sorted order (two drills never hold one each of the other's); TargetBusy names the drill
    holding one, and the locks already taken are released. The facade is the locks' own and
    is closed at the end."""
    held: list[str] = []
    try:
        if namespaces:
            kube.verify_server()
        for namespace in namespaces:
            holder = kube.acquire_lease(namespace, run_id, scenario, force)
            if holder is not None:
                raise TargetBusy(f"drill {holder} is running on namespace {namespace}; wait for it to end")
            held.append(namespace)
        yield
    finally:
        for namespace in reversed(held):
            try:
                kube.release_lease(namespace, run_id)
            except DrillkitError as exc:  # not the drill's outcome: the lease expires by itself
                log.warning("could not release the drill lock of namespace %s (it expires): %s", namespace, exc)
        kube.close()
