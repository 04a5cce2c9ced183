"""`drillkit cleanup`: finish the reverts of a drill that could not finish them itself.

Why it exists: a runner killed with SIGKILL (or a machine that died) leaves harm in place. Two
independent records let another process undo it:

1. the run's journal: every revert is journalled as data *before* the harm, so the pending ones
   (`drillkit.journal.pending_reverts`) are run through the fault registry, newest first, and
   marked done in that journal;
2. the cluster itself: every object drillkit creates carries `drillkit.io/run-id`, nodes it
   cordoned carry `drillkit.io/cordoned-by`, and workloads it changed in place carry
   `drillkit.io/modified-by`, their previous state (replica count, pod template) kept in a
   run-labelled revert-record Secret. Whatever is still there after step 1 (or whose journal is
   lost — a CI runner's workspace, say) is found by label: records restore their workloads,
   backup Secrets put their original value back and restart the workloads that use it, and the
   rest is deleted.

Both steps are idempotent; running cleanup twice is harmless. A running drill holds its
journal's lock, and cleanup leaves a locked journal alone.

A journal is evidence, not a command: anyone who can write a reports folder can write one. A
revert runs only if its record and the run's `started` event carry this user's MAC
(`drillkit.hostkey`), and only after its fault's `check` found it within what the run's scenario
allowed; otherwise it is a located FAILED line and nothing of it runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drillkit import hostkey
from drillkit.errors import DrillkitError, InputError
from drillkit.faults import Allowed, OutOfBounds, RevertContext, fault_class, load_record
from drillkit.journal import (
    JOURNAL_NAME,
    Event,
    Journal,
    JournalBusy,
    PendingRevert,
    pending_reverts,
    read_journal,
    verify,
)
from drillkit.kube import Forbidden, KubeconfigError
from drillkit.model import Where
from drillkit.signals import StopFlag

if TYPE_CHECKING:
    from drillkit.kube import Kube, KubeSettings


@dataclass
class CleanupReport:
    """What cleanup did, one line per action, and what it could not do."""

    done: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return (
            [f"done: {x}" for x in self.done]
            + [f"FAILED: {x}" for x in self.failed]
            + [f"note: {x}" for x in self.notes]
        )


@dataclass(frozen=True)
class _Run:
    run_id: str
    folder: Path
    target: str  # local | kubernetes
    context: str | None
    scenario_path: str
    finished: bool  # the journal has its `finished` event
    namespaces: tuple[str, ...] = ()  # the target's and those its faults name (kubernetes runs)
    untrusted: str | None = None  # why its `started` event is not this host's: no revert of it runs
    tainted: tuple[tuple[int, str], ...] = ()  # revert id -> a line of its record that is not ours
    allowed: Allowed = field(default_factory=lambda: Allowed("", None))

    def tainted_by(self, rid: int) -> str | None:
        return next((why for i, why in self.tainted if i == rid), None)


@dataclass(frozen=True)
class _Key:
    """This user's journal key, or why there is none to trust."""

    key: bytes | None
    problem: str | None


def _journal_key(report_dir: Path) -> _Key:
    try:
        key = hostkey.existing()
    except hostkey.KeyRefused as exc:
        return _Key(None, f"not authenticated: the journal key is refused: {exc}")
    path = hostkey.key_path()
    if path.resolve().is_relative_to(report_dir.resolve()):
        return _Key(None, f"not authenticated: the journal key {path} lies inside the reports folder; move it out")
    return _Key(key, None)


def _trust(events: list[Event], key: _Key) -> tuple[str | None, tuple[tuple[int, str], ...]]:
    """Why the run's `started` event is not ours (None: it is), and each revert id with the
    first line of its record that does not carry our MAC."""
    started = events[0]
    run_id = str(started.data.get("run_id", ""))
    problem = key.problem or verify(started, run_id, key.key)
    if problem:
        return f"its started event (line {started.line}) is {problem}", ()
    tainted: dict[int, str] = {}
    for e in events:
        if e.kind in ("revert_registered", "revert_updated") and (why := verify(e, run_id, key.key)):
            try:
                tainted.setdefault(int(e.data.get("id", -1)), f"line {e.line} is {why}")
            except (TypeError, ValueError):
                continue  # pending_reverts refuses such a line itself
    return None, tuple(tainted.items())


def _runs(report_dir: Path, run_id: str | None, report: CleanupReport, key: _Key) -> list[_Run]:
    """The runs under `report_dir` (one, with `run_id`). A journal that cannot be read is a
    FAILED line, never skipped in silence: it may hold a fault nobody else knows about."""
    if not report_dir.is_dir():
        return []
    out = []
    for journal in sorted(report_dir.glob(f"*/{JOURNAL_NAME}")):
        try:
            events = read_journal(journal, damage=[])
            started = events[0]
        except InputError as exc:
            if not run_id or run_id in journal.parent.name:
                report.failed.append(f"{exc}; its faults, if any, must be checked by hand")
            continue
        rid = str(started.data.get("run_id", ""))
        if run_id and rid != run_id:
            continue
        scenario = started.data.get("scenario")
        scenario = scenario if isinstance(scenario, dict) else {}
        target = scenario.get("target")
        kube = target.get("kubernetes") if isinstance(target, dict) else None
        context = kube.get("context") if isinstance(kube, dict) else None
        untrusted, tainted = _trust(events, key)
        out.append(
            _Run(
                rid,
                journal.parent,
                "kubernetes" if kube else "local",
                str(context) if context else None,
                str(scenario.get("path", "")),
                any(e.kind == "finished" for e in events),
                _journal_namespaces(scenario) if kube else (),
                untrusted,
                tainted,
                Allowed.of_started(started.data),
            )
        )
    return out


def _journal_namespaces(scenario: dict[str, Any]) -> tuple[str, ...]:
    """Where a run's Kubernetes drill wrote: its target namespace and any a fault names."""
    target = scenario.get("target")
    kube = target.get("kubernetes") if isinstance(target, dict) else None
    found = {kube.get("namespace") if isinstance(kube, dict) else None}
    for f in scenario.get("faults") or []:
        params = f.get("params") if isinstance(f, dict) else None
        found.add(params.get("namespace") if isinstance(params, dict) else None)
    return tuple(sorted(ns for ns in found if isinstance(ns, str) and ns))


class _Kubes:
    """One Kube facade per context, created only when needed (the allowlist applies).

    Settings are resolved once per journal context, not once per run: resolving parses the
    kubeconfig, and a reports folder of 10,000 runs names a handful of contexts. A refusal is
    kept too, so every run of a refused context gets the same error."""

    def __init__(self, context: str | None, allow: tuple[str, ...], kubeconfig: str | None) -> None:
        self.context, self.allow, self.kubeconfig = context, allow, kubeconfig
        self._made: dict[str, Kube] = {}
        self._settings: dict[str | None, KubeSettings | DrillkitError] = {}

    def settings(self, journal_context: str | None) -> KubeSettings:
        from drillkit.kube import resolve_settings

        if journal_context not in self._settings:
            try:
                found: KubeSettings | DrillkitError = resolve_settings(
                    self.context, journal_context, self.allow, self.kubeconfig
                )
            except DrillkitError as exc:
                found = exc
            self._settings[journal_context] = found
        found = self._settings[journal_context]
        if isinstance(found, DrillkitError):
            raise found.with_traceback(None)
        return found

    def get(self, settings: KubeSettings) -> Kube:
        from drillkit.kube import Kube

        if settings.context not in self._made:
            self._made[settings.context] = Kube(settings)
        return self._made[settings.context]

    def factory(self, journal_context: str | None) -> Callable[[], Kube]:
        settings = self.settings(journal_context)
        return lambda: self.get(settings)

    def close(self) -> None:
        for kube in self._made.values():
            kube.close()


def cleanup(
    report_dir: Path,
    run_id: str | None,
    context: str | None = None,
    allow_contexts: tuple[str, ...] = (),
    kubeconfig: str | None = None,
    log: Callable[[str], None] = print,
    namespaces: tuple[str, ...] = (),
    cluster_wide: bool = False,
) -> CleanupReport:
    """Run pending journalled reverts, then remove run-labelled objects from the cluster.

    `run_id` None means every run found under `report_dir` and every labelled object. Labelled
    objects are listed in the namespaces the runs' journals name, plus `namespaces`; across
    all namespaces only with `cluster_wide` (a ClusterRole that deploy/rbac.yaml does not
    grant).
    """
    report = CleanupReport()
    kubes = _Kubes(context, allow_contexts, kubeconfig)
    contexts: set[str] = set()
    try:
        runs = _runs(report_dir, run_id, report, _journal_key(report_dir))
        if run_id and not runs and not report.failed:
            report.notes.append(f"no journal of run {run_id} under {report_dir}")
        for run in runs:
            try:
                _revert_run(run, kubes, report, log, contexts)
            except KubeconfigError:  # no run can reach its cluster: one line, exit 2
                raise
            except Exception as exc:  # e.g. a ValueError from odd journal data: the next run still goes
                report.failed.append(f"run {run.run_id} ({run.folder}): {_one_line(exc)}")
        trusted = [r for r in runs if not r.untrusted]  # a forged journal picks no namespace to sweep
        if context or any(r.target == "kubernetes" for r in trusted) or not trusted:
            where = _Where(_run_namespaces(kubes, trusted, contexts), tuple(namespaces), cluster_wide)
            _sweep(kubes, run_id, report, log, contexts, where)
    finally:
        kubes.close()
    return report


def _revert_run(
    run: _Run, kubes: _Kubes, report: CleanupReport, log: Callable[[str], None], contexts: set[str]
) -> None:
    damage: list[str] = []
    pending = pending_reverts(run.folder, damage)
    for d in damage:
        if ": torn line " in d:  # a revert is registered durably before its harm: none is lost here
            report.notes.append(f"run {run.run_id}: {d}")
        else:  # garbage: it may have been a revert's record
            report.failed.append(f"run {run.run_id}: {d} (if it recorded a revert, check that fault by hand)")
    if not pending and run.finished:
        return
    if run.untrusted and pending:  # nothing of it runs, and it is not ended as if it had
        for p in pending:
            report.failed.append(f"run {run.run_id}: {_refused(p, run.untrusted)}")
        return
    factory = None
    if run.target == "kubernetes" and not run.untrusted:  # a forged journal picks no cluster either
        try:
            settings = kubes.settings(run.context)
        except KubeconfigError:
            raise
        except DrillkitError as exc:
            report.failed.append(f"run {run.run_id}: {exc}")
            return
        contexts.add(settings.context)
        factory = lambda: kubes.get(settings)  # noqa: E731 - bound to this run's context
    try:
        journal = Journal(run.folder / JOURNAL_NAME)
    except JournalBusy:
        report.notes.append(f"run {run.run_id} is still running (or being cleaned up): skipped")
        return
    try:
        ctx = RevertContext(
            run_id=run.run_id,
            journal=journal,
            stop=StopFlag(),
            log=log,
            kube_factory=factory,
        )
        for p in pending:
            _revert_one(p, run, ctx, journal, report)
        if not run.finished:  # we hold its journal, so its process is gone: end it as aborted
            reason = "the drill's process died before the drill ended; drillkit cleanup reverted its faults"
            journal.append("aborted", reason=reason, by_signal=False, by="drillkit cleanup")
            journal.append("finished", status="aborted", reason=reason, by="drillkit cleanup")
    finally:
        journal.close()
        if journal.write_error is not None:  # the reverts above ran, but the journal still says pending
            report.failed.append(
                f"run {run.run_id}: could not record the reverts in {journal.path} ({journal.write_error}); "
                "the next cleanup will run them again (they are idempotent)"
            )
    if not run.finished and journal.write_error is None:
        _render_report(run, report)


def _render_report(run: _Run, report: CleanupReport) -> None:
    """The report a killed drill never wrote, from its journal as cleanup completed it."""
    from drillkit.report import FORMATS, render

    try:
        written = render(run.folder, tuple(FORMATS))
    except Exception as exc:  # the journal is complete; `drillkit report` can try again
        report.failed.append(f"run {run.run_id}: could not write its report: {_one_line(exc)}")
        return
    report.done.append(f"run {run.run_id}: report written to {written[0].parent}")


def _refused(p: PendingRevert, why: str) -> str:
    """The FAILED line of a revert whose record is not provably ours: located, and what to do."""
    return (
        f"{p.journal}:{p.line}: revert #{p.id} ({p.fault}) not executed: {why}. drillkit runs only records it "
        "wrote on this host as this user; if the drill was yours, undo by hand what the record says it changed"
    )


def _revert_one(p: PendingRevert, run: _Run, ctx: RevertContext, journal: Journal, report: CleanupReport) -> None:
    what = f"run {p.run_id}: revert {p.fault} #{p.id}"
    if why := run.tainted_by(p.id):
        journal.append("revert_failed", id=p.id, fault=p.fault, error=why, by="drillkit cleanup")
        report.failed.append(f"run {p.run_id}: {_refused(p, why)}")
        return
    try:
        cls = fault_class(p.fault, run.target)
        record = load_record(cls, p.data, Where(str(p.journal), p.line, f"revert #{p.id} data"))
        cls.check(record, run.allowed)
        result = cls.revert(ctx, record)
    except OutOfBounds as exc:
        error = f"{p.journal}:{p.line}: revert #{p.id} ({p.fault}) {exc}: not executed"
        journal.append("revert_failed", id=p.id, fault=p.fault, error=error, by="drillkit cleanup")
        report.failed.append(f"run {p.run_id}: {error}")
        return
    except Exception as exc:  # bad journal data included (KeyError, ValueError, TypeError, ...)
        error = _one_line(exc)
        if str(p.journal) not in error:  # located: the record it came from
            error = f"{p.journal}:{p.line}: {error}"
        journal.append("revert_failed", id=p.id, fault=p.fault, error=error, by="drillkit cleanup")
        report.failed.append(f"{what}: {error}")
        return
    journal.append("revert_done", id=p.id, fault=p.fault, result=result or {}, by="drillkit cleanup")
    report.done.append(f"{what}: {_short(result)}")


def _one_line(exc: BaseException) -> str:
    """drillkit's own errors as they are; anything else (bad journal data) named by type."""
    text = " ".join(str(exc).split())
    if isinstance(exc, DrillkitError):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _short(result: dict[str, Any] | None) -> str:
    return ", ".join(f"{k}={v}" for k, v in (result or {}).items()) or "ok"


@dataclass(frozen=True)
class _Where:
    """Where the sweep lists labelled objects: per context, the namespaces the journals name;
    everywhere, the ones given on the command line; all namespaces only if asked."""

    journals: dict[str, set[str]]
    given: tuple[str, ...]
    cluster_wide: bool

    def namespaces(self, context: str, touched: set[str]) -> list[str] | None:
        if self.cluster_wide:
            return None
        return sorted(touched | self.journals.get(context, set()) | set(self.given))


def _run_namespaces(kubes: _Kubes, runs: list[_Run], contexts: set[str]) -> dict[str, set[str]]:
    """context -> the namespaces its runs' journals name; their contexts join the sweep."""
    out: dict[str, set[str]] = {}
    for run in runs:
        if run.target != "kubernetes" or not run.namespaces:
            continue
        try:
            name = kubes.settings(run.context).context
        except DrillkitError:  # refused or unknown: its own revert said so already
            continue
        contexts.add(name)
        out.setdefault(name, set()).update(run.namespaces)
    return out


def _sweep(
    kubes: _Kubes,
    run_id: str | None,
    report: CleanupReport,
    log: Callable[[str], None],
    contexts: set[str],
    where: _Where,
) -> None:
    """Delete (or restore, then delete) everything labelled with the run id(s), listed where
    `where` says (never across all namespaces unless asked)."""
    from drillkit.faults.kube.network import clear_netem
    from drillkit.faults.kube.secrets import BLIND_META, restore_from_backup
    from drillkit.faults.kube.workloads import RECORDING_FAULTS, release_workload, restore_recorded
    from drillkit.kube import BACKUP_OF, NETEM_BY, NETEM_CONTAINER, REVERT_FAULT, REVERT_OF

    targets = set(contexts)
    if kubes.context or not targets:
        try:
            targets.add(kubes.settings(None).context)
        except KubeconfigError:  # broken, not absent: the user must fix it (exit 2)
            raise
        except DrillkitError as exc:
            report.notes.append(f"no Kubernetes cluster checked: {exc}")
            return
    for name in sorted(targets):
        kube = kubes.get(kubes.settings(name))
        spaces = where.namespaces(name, kube.touched)
        if spaces == []:  # a failure if a cluster was asked about (--context, a Kubernetes run)
            line = (
                f"context {name}: not checked for labelled objects: no journal names a namespace; pass "
                "--namespace NS (or --cluster-wide, which needs a ClusterRole: see docs/kubernetes.md)"
            )
            (report.failed if kubes.context or where.journals else report.notes).append(line)
            continue
        try:
            found = kube.labelled(run_id, spaces, nodes=False)
        except DrillkitError as exc:
            report.failed.append(f"context {name}: cannot list labelled objects: {exc}")
            continue
        try:
            found += kube.labelled_nodes(run_id)
        except Forbidden:  # listing nodes and cordoning them come with one ClusterRole
            report.notes.append(f"context {name}: nodes not checked (no list on nodes: this user cannot cordon)")
        except DrillkitError as exc:
            report.failed.append(f"context {name}: cannot list nodes: {exc}")
        order = {"Secret": 0, "Node": 1, "Job": 2, "Pod": 3}
        faults = {f: i for i, f in enumerate(RECORDING_FAULTS)}
        records = sorted(
            (x for x in found if x.ref.kind == "Secret" and REVERT_OF in x.annotations),
            key=lambda x: faults.get(x.annotations.get(REVERT_FAULT, ""), 9),
        )
        backups = [  # a blind exercise's backup has no annotations: its data says what it holds
            x for x in found if x.ref.kind == "Secret" and (BACKUP_OF in x.annotations or BLIND_META in x.keys)
        ]
        workloads = [x for x in found if x.ref.kind in ("Deployment", "StatefulSet")]
        delayed = [x for x in found if x.mark == NETEM_BY]  # not drillkit's pods: never deleted
        rest = sorted(
            (x for x in found if x not in records + backups + workloads + delayed),
            key=lambda x: order.get(x.ref.kind, 9),
        )
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        for x in records:  # workloads changed in place: their previous state, from the cluster
            try:
                result = restore_recorded(kube, x.ref.namespace or "", x.ref.name, x.run_id, StopFlag())
                report.done.append(f"context {name}: restored from {x.ref} (run {x.run_id}) -> {_short(result)}")
            except Exception as exc:  # one FAILED line (bad record data too); the rest still goes
                report.failed.append(f"context {name}: restore from {x.ref}: {_one_line(exc)}")
        for x in backups:
            try:
                result = restore_from_backup(kube, x.ref.namespace or "", x.ref.name, now)
                report.done.append(f"context {name}: restored {x.ref} -> {_short(result)}")
            except Exception as exc:  # as above
                report.failed.append(f"context {name}: restore from {x.ref}: {_one_line(exc)}")
        for x in workloads:  # still labelled: a restore above failed, or no record was left
            try:
                ns = x.ref.namespace or ""
                if release_workload(kube, ns, x.ref.kind, x.ref.name, x.run_id):
                    report.done.append(f"context {name}: unlabelled {x.ref} (run {x.run_id})")
                else:
                    report.failed.append(f"context {name}: {x.ref} keeps its revert record (run {x.run_id})")
            except DrillkitError as exc:
                report.failed.append(f"context {name}: {x.ref}: {exc}")
        for x in delayed:
            try:
                container, _, dev = x.annotations.get(NETEM_CONTAINER, "").partition("/")
                outcome = clear_netem(kube, x.ref.namespace or "", x.ref.name, None, container, dev or "eth0")
                report.done.append(f"context {name}: {x.ref} (run {x.run_id}): {outcome}")
            except DrillkitError as exc:
                report.failed.append(f"context {name}: {x.ref}: {exc}")
        for x in rest:
            try:
                gone = kube.delete(x.ref)
                verb = "uncordoned" if x.ref.kind == "Node" else "deleted"
                report.done.append(
                    f"context {name}: {verb} {x.ref} (run {x.run_id})" + ("" if gone else ", already gone")
                )
            except DrillkitError as exc:
                report.failed.append(f"context {name}: {x.ref}: {exc}")
        if not found:
            report.notes.append(
                f"context {name}: nothing labelled {'with run ' + run_id if run_id else 'by drillkit'} remains"
            )
        log(f"cleanup: context {name}: {len(found)} labelled object(s) handled")
