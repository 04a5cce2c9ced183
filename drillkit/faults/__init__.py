"""The fault contract and registry.

A fault is a class with typed `Params`, a `preflight` that resolves its targets inside the
guardrails, a `plan` that says what it will do, an `inject` that registers its revert *before*
doing harm, and a classmethod `revert` that undoes it from plain data, so `drillkit cleanup`
can finish the job in another process after a crash. Third-party faults register through the
`drillkit.faults` entry-point group.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from drillkit.errors import DrillkitError, PreflightError

if TYPE_CHECKING:
    from drillkit.journal import Journal
    from drillkit.kube import Kube
    from drillkit.model import Count
    from drillkit.scenario import Scenario
    from drillkit.signals import StopFlag


@dataclass
class FaultContext:
    """What a fault may use: the run's identity, journal, stop flag, and target access."""

    run_id: str
    scenario: Scenario
    journal: Journal
    stop: StopFlag
    log: Callable[[str], None] = print
    kube_factory: Callable[[], Kube] | None = None
    on_harm: Callable[[], None] | None = None
    _kube: Kube | None = field(default=None, repr=False)

    def harm_started(self) -> None:
        """Faults call this right after their first harmful action, so the drill's `injected`
        time is when the harm began even if inject() goes on waiting (for an OOM kill, say)."""
        if self.on_harm is not None:
            self.on_harm()

    @property
    def kube(self) -> Kube:
        if self._kube is None:
            if self.kube_factory is None:
                raise DrillkitError("this drill has no Kubernetes target")
            self._kube = self.kube_factory()
        return self._kube


class Undo:
    """Reverts as data: each is journalled when registered and when done, and runs from an
    ExitStack so it unwinds on success, failure, abort and interrupt alike."""

    def __init__(self, stack: ExitStack, ctx: FaultContext) -> None:
        self._stack, self._ctx = stack, ctx
        self._data: dict[int, dict[str, Any]] = {}
        self.failures: list[str] = []

    def register(self, fault: str, **data: Any) -> RevertHandle:
        """Record how to undo `fault` before touching anything; returns a handle to add data."""
        rid = len(self._data) + 1
        self._data[rid] = dict(data)
        self._ctx.journal.append("revert_registered", id=rid, fault=fault, data=data)
        self._stack.callback(self._run, rid, fault)
        return RevertHandle(self, rid, fault)

    def _update(self, rid: int, fault: str, data: dict[str, Any]) -> None:
        self._data[rid].update(data)
        self._ctx.journal.append("revert_updated", id=rid, fault=fault, data=self._data[rid])

    def _run(self, rid: int, fault: str) -> None:
        try:
            cls = fault_class(fault, self._ctx.scenario.target_kind)
            result = cls.revert(self._ctx, self._data[rid])
        except Exception as exc:  # a failed revert must not stop the others
            self.failures.append(f"{fault}: {exc}")
            self._ctx.journal.append("revert_failed", id=rid, fault=fault, error=str(exc))
            self._ctx.log(f"revert of {fault} failed: {exc} (run `drillkit cleanup`)")
        else:
            self._ctx.journal.append("revert_done", id=rid, fault=fault, result=result or {})


@dataclass
class RevertHandle:
    undo: Undo
    rid: int
    fault: str

    def update(self, **data: Any) -> None:
        """Add data learnt while injecting (e.g. the name of an object just created)."""
        self.undo._update(self.rid, self.fault, data)


class Fault(ABC):
    """Base class of every fault kind."""

    kind: ClassVar[str]
    target: ClassVar[str]  # "local" or "kubernetes"
    Params: ClassVar[type]

    def __init__(self, params: Any, ctx: FaultContext) -> None:
        self.params, self.ctx = params, ctx

    def preflight(self) -> None:
        """Resolve targets and check guardrails; raise PreflightError. Touches nothing."""

    @abstractmethod
    def plan(self) -> list[str]:
        """What inject would do, one line per action, naming the exact objects."""

    @abstractmethod
    def inject(self, undo: Undo) -> None:
        """Register the revert with `undo`, then do the harm."""

    @classmethod
    @abstractmethod
    def revert(cls, ctx: FaultContext, data: dict[str, Any]) -> dict[str, Any] | None:
        """Undo from journalled data. Idempotent: 'already gone' is success."""


def check_blast_radius(kind: str, found: int, count: Count, max_targets: Count, what: str) -> int:
    """How many of the `found` candidates (`what`, e.g. "processes matching pattern 'x'") a fault
    touches: `count` of them, refused (PreflightError) if there are fewer than that or if it
    exceeds the scenario's `guardrails.max_targets`. A percentage allows at least 1, so a
    single candidate can always be touched."""
    n = count.of(found)
    if n > found:
        raise PreflightError(f"{kind}: count {count} but only {found} {what}")
    limit = max_targets.of(found)
    if n > limit:
        raise PreflightError(
            f"{kind}: {n} of {found} {what} exceed the blast radius "
            f"guardrails.max_targets = {max_targets} (at most {limit}); "
            "narrow the selection, lower the count, or raise max_targets"
        )
    return n


_BUILTIN_MODULES = {
    "local": ("drillkit.faults.local", "drillkit.faults.lab"),
    "kubernetes": ("drillkit.faults.kubernetes",),
}


@functools.cache
def _builtins(target: str) -> dict[str, type[Fault]]:
    """The built-in fault classes of one target, importing only that target's modules (so
    validating a local drill never loads the Kubernetes faults)."""
    import importlib

    found: dict[str, type[Fault]] = {}
    for name in _BUILTIN_MODULES.get(target, ()):
        for cls in getattr(importlib.import_module(name), "FAULTS", ()):
            found[cls.kind] = cls
    return found


@functools.cache
def _plugins() -> dict[str, dict[str, type[Fault]]]:
    """Fault classes of other packages (entry points `drillkit.faults`), by target and kind;
    loaded only when a kind is not built in (importlib.metadata is slow to import)."""
    from importlib.metadata import entry_points

    found: dict[str, dict[str, type[Fault]]] = {}
    for ep in entry_points(group="drillkit.faults"):
        cls = ep.load()
        found.setdefault(cls.target, {})[cls.kind] = cls
    return found


def catalogue() -> dict[str, dict[str, type[Fault]]]:
    """Every fault class by target ("local", "kubernetes") and kind: built-ins plus plugins (a
    plugin cannot replace a built-in kind). One kind may exist for both targets (the playbook's
    incidents: `memory-pressure` of a local process or of a pod); the scenario's target picks."""
    found = {t: dict(ks) for t, ks in _plugins().items()}
    for target in _BUILTIN_MODULES:
        found.setdefault(target, {}).update(_builtins(target))
    return found


def registry(target: str | None = None) -> dict[str, type[Fault]]:
    """Fault kinds of one target, or of all targets (a kind both have: the Kubernetes one)."""
    if target is not None:
        return dict(catalogue().get(target, {}))
    merged: dict[str, type[Fault]] = {}
    for kinds in catalogue().values():
        merged.update(kinds)
    return merged


def fault_class(kind: str, target: str) -> type[Fault]:
    """The class implementing `kind` for `target` (KeyError if there is none)."""
    builtin = _builtins(target).get(kind)
    return builtin if builtin is not None else _plugins()[target][kind]
