"""The fault contract and registry.

A fault is a class with typed `Params`, a `preflight` that resolves its targets inside the
guardrails and returns them as a frozen value, a `plan` and an `inject` that take that value,
and a frozen revert-record dataclass (`Record`) that `inject` registers with `Undo` *before*
doing harm. The record is journalled as data and rebuilt through the same typed loader as
scenarios, so `drillkit cleanup` can finish the job in another process after a crash, and a
damaged journal gets a located error. Before any revert runs, in the engine and in cleanup
alike, its fault's `check` holds the record to what the run was `Allowed` (a journal is
evidence, not a command). Third-party faults register through the `drillkit.faults`
entry-point group.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from drillkit.errors import DrillkitError, PreflightError
from drillkit.model import Where, build

if TYPE_CHECKING:
    from drillkit.journal import Journal
    from drillkit.kube import Kube
    from drillkit.model import Count
    from drillkit.scenario import Scenario
    from drillkit.signals import StopFlag

P = TypeVar("P")  # the fault's Params
F = TypeVar("F")  # what preflight found
R = TypeVar("R")  # the revert record


class Made(enum.Enum):
    """What a fault makes that people can see, with its name's head outside an exercise and in
    a blind one (`{p}`: the platform's prefix)."""

    DB_CLIENT = ("drillkit-dbconn", "{p}-batch")  # the Job holding connections; local holder
    LOAD = ("drillkit-stress", "{p}-worker")  # stress pods, in-container loads, local stress-ng
    NETEM = ("drillkit-netem", "debugger")  # network-latency's ephemeral container (kubectl debug's word)
    BACKUP = ("drillkit-backup", "{p}-config")  # auth-secret-corruption's backup Secret
    BAD_TAG = ("drillkit-nonexistent", "release")  # bad-rollout's image tag
    CGROUP = ("drillkit", "{p}-app")  # the memory-leak drill's cgroup


@dataclass(frozen=True)
class Naming:
    """How faults name what they create where people look: objects, containers, descriptive
    labels, process markers, cgroups. Outside an exercise (`platform` None) every name says
    drillkit and what it is for (`drillkit-dbconn-<run>-…`), so an operator sees at once what a
    drill made. In a blind exercise the names are the platform's own (`chatbot-batch-<run>-…`)
    and a fault parameter in a name becomes a digest: nothing a trainee lists names the fault.
    Either way the run-id label stays (cleanup finds objects by it) and revert records journal
    the names used, so a revert never needs to know which naming its run had."""

    platform: str | None = None

    @property
    def blind(self) -> bool:
        return self.platform is not None

    def head(self, made: Made) -> str:
        plain, disguised = made.value
        return plain if self.platform is None else disguised.format(p=self.platform)

    def name(self, made: Made, *parts: str, params: tuple[str, ...] = ()) -> str:
        """`<head>-<params>-<parts>`; blind, the params (a fault's parameters, such as the
        Secret it corrupts) are replaced by a short digest of them."""
        shown = params if self.platform is None or not params else (digest(*params, length=6),)
        return "-".join((self.head(made), *shown, *parts))

    def tag(self, run_id: str) -> str:
        """What stands for the run in names a local fault makes: the run id, or blind a digest
        of it, so no folder, cgroup or file a trainee can list carries the id their header shows."""
        return run_id if self.platform is None else run_tag(run_id)


def run_tag(run_id: str) -> str:
    """The blind stand-in for `run_id` in names (see `Naming.tag`)."""
    return digest("run", run_id, length=8)


def run_tags(run_id: str) -> tuple[str, str]:
    """Both names a run may have used (plain and blind), for the checks of a journalled record."""
    return run_id, run_tag(run_id)


def digest(*parts: str, length: int = 10) -> str:
    """A short stable hex digest of `parts` (names that must be derivable again, but say nothing)."""
    import hashlib  # here: ~3 ms at start-up, and `drillkit validate` never needs it

    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:length]


@dataclass
class RevertContext:
    """What a revert may use: the run's identity, journal, stop flag and target access. This is
    all `drillkit cleanup` has after a crash, so a revert never needs the scenario."""

    run_id: str
    journal: Journal
    stop: StopFlag
    log: Callable[[str], None] = print
    kube_factory: Callable[[], Kube] | None = None
    _kube: Kube | None = field(default=None, repr=False)

    @property
    def kube(self) -> Kube:
        if self._kube is None:
            if self.kube_factory is None:
                raise DrillkitError("this drill has no Kubernetes target")
            self._kube = self.kube_factory()
        return self._kube

    def close(self) -> None:
        """Release the Kubernetes client, if one was made."""
        if self._kube is not None:
            self._kube.close()
            self._kube = None


@dataclass
class FaultContext(RevertContext):
    """What preflight, plan and inject may use: the revert context plus the scenario."""

    scenario: Scenario = field(kw_only=True)
    naming: Naming = field(default_factory=Naming, kw_only=True)
    on_harm: Callable[[datetime | None], None] | None = field(default=None, kw_only=True)

    def harm_started(self, at: datetime | None = None) -> None:
        """Faults call this right after their first harmful action, so the drill's `injected`
        time is when the harm began even if inject() goes on waiting (for an OOM kill, say).
        `at`: when it took effect, if the target reported it (the lab DB proxy does); else now."""
        if self.on_harm is not None:
            self.on_harm(at)


def _plain(value: Any) -> Any:
    """A record's value as JSON-ready data: tuples as lists, enums as values, nested records
    as mappings."""
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


class OutOfBounds(DrillkitError):
    """A revert record naming something its run was never allowed to touch: refused whole,
    before any of it runs."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"data.{field}: {message}")


@dataclass(frozen=True)
class Declared:
    """One fault as the run's scenario declared it, read the way its record holds the values."""

    params: Mapping[str, object]
    cwd: str | None

    def text(self, name: str) -> str | None:
        value = self.params.get(name)
        return value if isinstance(value, str) else None

    def argv(self, name: str) -> tuple[str, ...]:
        value = self.params.get(name)
        return tuple(str(v) for v in value) if isinstance(value, list | tuple) else ()

    def path(self, name: str) -> str | None:
        """The declared path made absolute against the folder the drill ran in, as inject did
        (`Path.absolute()`); None if undeclared, or relative with that folder unknown."""
        value = self.text(name)
        if not value:
            return None
        if os.path.isabs(value):
            return str(Path(value))
        return str(Path(self.cwd) / value) if self.cwd else None


@dataclass(frozen=True)
class Allowed:
    """What a run was allowed to touch: its id, the folder it ran in and the faults its scenario
    declared. Every revert record is held to it before it runs: the engine builds it from its
    scenario, `drillkit cleanup` from the run's authenticated `started` event."""

    run_id: str
    cwd: str | None
    faults: tuple[tuple[str, Mapping[str, object]], ...] = ()

    @classmethod
    def of_scenario(cls, run_id: str, scenario: Scenario) -> Allowed:
        return cls(run_id, os.getcwd(), tuple((f.kind, _plain(f.params)) for f in scenario.faults))

    @classmethod
    def of_started(cls, data: Mapping[str, object]) -> Allowed:
        """From a `started` event's data (the engine records `cwd` and the scenario's faults)."""
        scenario = data.get("scenario")
        faults = scenario.get("faults") if isinstance(scenario, dict) else None
        declared: list[tuple[str, Mapping[str, object]]] = []
        for f in faults if isinstance(faults, list) else []:
            params = f.get("params") if isinstance(f, dict) else None
            if isinstance(params, dict):
                declared.append((str(f.get("kind")), params))
        cwd = data.get("cwd")
        return cls(str(data.get("run_id", "")), cwd if isinstance(cwd, str) else None, tuple(declared))

    def declared(self, kind: str) -> list[Declared]:
        return [Declared(params, self.cwd) for k, params in self.faults if k == kind]

    def require(
        self, kind: str, recorded: Mapping[str, object], expect: Callable[[Declared], dict[str, object]]
    ) -> None:
        """Refuse (OutOfBounds, naming the field) unless some `kind` fault the scenario declared
        gives exactly the `recorded` values (`expect`: what a record of that fault holds)."""
        best: tuple[int, str] | None = None
        for d in self.declared(kind):
            wanted = expect(d)
            wrong = [name for name, value in recorded.items() if wanted.get(name) != value]
            if not wrong:
                return
            if best is None or len(wrong) < best[0]:
                best = (len(wrong), wrong[0])
        if best is None:
            raise OutOfBounds(next(iter(recorded), "fault"), f"the run's scenario declares no {kind} fault")
        name = best[1]
        raise OutOfBounds(name, f"{recorded[name]!r} is not what the run's scenario declared for {kind}")


def record_data(record: object) -> dict[str, Any]:
    """A revert record as journal data (JSON-ready: tuples as lists, enums as values, nested
    records as mappings)."""
    return {f.name: _plain(getattr(record, f.name)) for f in dataclasses.fields(record)}  # type: ignore[arg-type]


def load_record(cls: type[Fault[Any, Any, R]], data: object, where: Where) -> R:
    """Rebuild `cls`'s revert record from journal data; bad data is a located ScenarioError."""
    record: R = build(cls.Record, data, where)
    return record


class Undo:
    """Reverts as data: each record is journalled when registered and when done, and runs from
    an ExitStack so it unwinds on success, failure, abort and interrupt alike."""

    def __init__(self, stack: ExitStack, ctx: FaultContext) -> None:
        self._stack, self._ctx = stack, ctx
        self._records: dict[int, Any] = {}
        self.failures: list[str] = []

    def register(self, fault: Fault[Any, Any, R], record: R) -> RevertHandle[R]:
        """Record how to undo `fault` before touching anything; the handle adds what inject learns."""
        rid = len(self._records) + 1
        self._ctx.journal.append("revert_registered", id=rid, fault=fault.kind, data=record_data(record))
        if self._ctx.journal.write_error is not None:  # no durable record, so no harm
            raise DrillkitError(
                f"{fault.kind}: cannot journal its revert ({self._ctx.journal.write_error}): not injected"
            )
        self._records[rid] = record
        self._stack.callback(self._run, rid, type(fault))
        return RevertHandle(self, rid, fault.kind)

    def _update(self, rid: int, fault: str, changes: dict[str, Any]) -> Any:
        record = self._records[rid] = dataclasses.replace(self._records[rid], **changes)
        self._ctx.journal.append("revert_updated", id=rid, fault=fault, data=record_data(record))
        return record

    def _extend(self, rid: int, fault: str, items: dict[str, tuple[Any, ...]]) -> Any:
        record = self._records[rid]
        grown = {name: (*getattr(record, name), *more) for name, more in items.items()}
        record = self._records[rid] = dataclasses.replace(record, **grown)
        self._ctx.journal.append("revert_updated", id=rid, fault=fault, append=_plain(items))
        return record

    def _run(self, rid: int, cls: type[Fault[Any, Any, Any]]) -> None:
        try:
            cls.check(self._records[rid], Allowed.of_scenario(self._ctx.run_id, self._ctx.scenario))
            result = cls.revert(self._ctx, self._records[rid])
        except Exception as exc:  # a failed revert must not stop the others
            self.failures.append(f"{cls.kind}: {exc}")
            self._ctx.journal.append("revert_failed", id=rid, fault=cls.kind, error=str(exc))
            self._ctx.log(f"revert of {cls.kind} failed: {exc} (run `drillkit cleanup`)")
        else:
            self._ctx.journal.append("revert_done", id=rid, fault=cls.kind, result=result or {})


@dataclass
class RevertHandle(Generic[R]):
    undo: Undo
    rid: int
    fault: str

    def update(self, **changes: Any) -> R:
        """Replace fields of the record with what inject learnt (e.g. the name of an object it
        just created); journalled at once. Returns the new record."""
        record: R = self.undo._update(self.rid, self.fault, changes)
        return record

    def extend(self, **items: tuple[Any, ...]) -> R:
        """Append to tuple fields of the record (e.g. the pods just about to be deleted);
        journalled at once as the new items only, so a record that grows by many steps costs
        a journal linear in its size (`journal.pending_reverts` appends them again)."""
        record: R = self.undo._extend(self.rid, self.fault, items)
        return record


class Fault(ABC, Generic[P, F, R]):
    """Base class of every fault kind: `Params` (scenario input), `F` (what preflight found,
    frozen), `Record` (the frozen revert record, R)."""

    kind: ClassVar[str]
    target: ClassVar[str]  # "local" or "kubernetes"
    Params: ClassVar[type]
    Record: ClassVar[type]

    def __init__(self, params: P, ctx: FaultContext) -> None:
        self.params, self.ctx = params, ctx

    @abstractmethod
    def preflight(self) -> F:
        """Resolve targets and check guardrails; raise PreflightError. Touches nothing."""

    @abstractmethod
    def plan(self, found: F) -> list[str]:
        """What inject would do, one line per action, naming the exact objects."""

    @abstractmethod
    def inject(self, found: F, undo: Undo) -> None:
        """Register the revert record with `undo`, then do the harm."""

    @classmethod
    @abstractmethod
    def revert(cls, ctx: RevertContext, record: R) -> dict[str, Any] | None:
        """Undo from the record. Idempotent: 'already gone' is success."""

    @classmethod
    def check(cls, record: R, allowed: Allowed) -> None:
        """Refuse (OutOfBounds) a record that names anything beyond what its run was allowed:
        called before every revert, so a record read from a journal is evidence, not a
        command. What a revert checks as it acts (a pid's start time, a file's inode) stays in
        `revert`."""

    def prepare(self) -> Prepared:
        """Preflight, keeping what it found with the fault for plan and inject."""
        return Prepared(self, self.preflight())


FaultClass = type[Fault[Any, Any, Any]]


@dataclass(frozen=True)
class Prepared:
    """A fault whose preflight passed, with what it found."""

    fault: Fault[Any, Any, Any]
    found: Any

    @property
    def kind(self) -> str:
        return self.fault.kind

    def plan(self) -> list[str]:
        return self.fault.plan(self.found)

    def inject(self, undo: Undo) -> None:
        self.fault.inject(self.found, undo)


def check_blast_radius(kind: str, found: int, count: Count, max_targets: Count, what: str) -> int:
    """How many of the `found` candidates (`what`, e.g. "processes matching pattern 'x'") a fault
    touches: `count` of them, refused (PreflightError) if there are fewer than that or if it
    exceeds the scenario's `guardrails.max_targets`. A percentage allows at least 1, so a
    single candidate can always be touched."""
    n = count.of(found)
    if n > found:
        raise PreflightError(f"{kind}: count {count} but only {found} {what}")
    check_max_targets(kind, n, found, max_targets, what)
    return n


def check_max_targets(kind: str, n: int, found: int, max_targets: Count, what: str) -> None:
    """Refuse (PreflightError) touching `n` of `found` candidates beyond the scenario's
    `guardrails.max_targets`: the one blast-radius rule, local and Kubernetes faults alike."""
    limit = max_targets.of(found)
    if n > limit:
        raise PreflightError(
            f"{kind}: {n} of {found} {what} exceed the blast radius "
            f"guardrails.max_targets = {max_targets} (at most {limit}); "
            "narrow the selection, lower the count, or raise max_targets"
        )


_BUILTIN_MODULES = {
    "local": "drillkit.faults.local",
    "kubernetes": "drillkit.faults.kube",
}


def _kinds(target: str) -> dict[str, str]:
    """A target's built-in kinds: `KINDS` of its package, kind -> "module:Class" (no fault
    module imported yet)."""
    import importlib

    name = _BUILTIN_MODULES.get(target)
    kinds: dict[str, str] = getattr(importlib.import_module(name), "KINDS", {}) if name else {}
    return kinds


@functools.cache
def _load(spec: str) -> FaultClass:
    import importlib

    module, _, name = spec.partition(":")
    cls: FaultClass = getattr(importlib.import_module(module), name)
    return cls


@functools.cache
def _builtins(target: str) -> dict[str, FaultClass]:
    """The built-in fault classes of one target, importing only that target's modules (so
    validating a local drill never loads the Kubernetes faults)."""
    return {kind: _load(spec) for kind, spec in _kinds(target).items()}


def _may_have_plugins() -> bool:
    """Whether an installed distribution may declare a `drillkit.faults` entry point: a look at
    the `entry_points.txt` of each metadata folder on sys.path (about a millisecond), so that
    importlib.metadata (about 20 ms: it loads the email package) is imported only when there is
    a plugin to load. Anything but a folder on sys.path (a zip, say) is not looked into: then
    importlib.metadata decides."""
    import os
    import sys

    for entry in sys.path:
        folder = entry or "."
        if not os.path.isdir(folder):
            if os.path.exists(folder):
                return True
            continue
        for name in os.listdir(folder):
            if name.endswith((".dist-info", ".egg-info")):
                try:
                    with open(os.path.join(folder, name, "entry_points.txt"), "rb") as fh:
                        if b"drillkit.faults" in fh.read():
                            return True
                except OSError:
                    continue
    return False


@functools.cache
def _plugins() -> dict[str, dict[str, FaultClass]]:
    """Fault classes of other packages (entry points `drillkit.faults`), by target and kind;
    loaded only when a kind is not built in (importlib.metadata is slow to import), and only
    if some installed package declares one."""
    found: dict[str, dict[str, FaultClass]] = {}
    if not _may_have_plugins():
        return found
    from importlib.metadata import entry_points

    for ep in entry_points(group="drillkit.faults"):
        cls = ep.load()
        found.setdefault(cls.target, {})[cls.kind] = cls
    return found


def catalogue() -> dict[str, dict[str, FaultClass]]:
    """Every fault class by target ("local", "kubernetes") and kind: built-ins plus plugins (a
    plugin cannot replace a built-in kind). One kind may exist for both targets (the playbook's
    incidents: `memory-pressure` of a local process or of a pod); the scenario's target picks."""
    found = {t: dict(ks) for t, ks in _plugins().items()}
    for target in _BUILTIN_MODULES:
        found.setdefault(target, {}).update(_builtins(target))
    return found


def registry(target: str | None = None) -> dict[str, FaultClass]:
    """Fault kinds of one target, or of all targets (a kind both have: the Kubernetes one)."""
    if target is not None:
        return dict(catalogue().get(target, {}))
    merged: dict[str, FaultClass] = {}
    for kinds in catalogue().values():
        merged.update(kinds)
    return merged


def fault_class(kind: str, target: str) -> FaultClass:
    """The class implementing `kind` for `target` (KeyError if there is none). Imports only the
    module of that kind: validating a scenario loads the faults it names, not every fault."""
    spec = _kinds(target).get(kind)
    return _load(spec) if spec is not None else _plugins()[target][kind]
