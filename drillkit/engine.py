"""The drill, phase by phase: preflight, steady state, inject, detect, respond, recover,
revert, verify, report.

Reverts sit on an ExitStack from the moment each fault registers them, so they unwind on
success, failure, abort condition, SIGINT and SIGTERM alike. Every wait has a deadline, checks
the stop flag and the abort conditions, and shows progress on a terminal.
"""

from __future__ import annotations

import os
import secrets
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from drillkit.alertmanager import Alertmanager, AlertmanagerAck, NotificationWatch
from drillkit.clock import rfc3339, utcnow
from drillkit.errors import Aborted, DrillkitError, InputError, PreflightError, UnavailableError
from drillkit.evidence import save_series, scenario_record
from drillkit.faults import FaultContext, Prepared, Undo, fault_class
from drillkit.journal import JOURNAL_NAME, Journal
from drillkit.model import format_duration
from drillkit.policy import ActionDefaults, Policy, limits_for, verdicts
from drillkit.prometheus import AlertRule, AlertTarget, FiringWatch, PromConfig, Prometheus, Sample
from drillkit.respond import AckWaiter, AutoAck, CommandAck, PromptAck, check_interactive
from drillkit.scenario import AbortCondition, AckSource, Probe, RecoveryAction, Scenario
from drillkit.signals import StopFlag, wait_until

if TYPE_CHECKING:
    from drillkit.lab.state import LabWatch

T = TypeVar("T")


class Status(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    ABORTED = "aborted"
    NOT_STARTED = "not-started"
    INCONCLUSIVE = "inconclusive"


# A drill must be a light load on a production Prometheus (about 1-2 requests/s): detection and
# the steady state are polled at most once a second, across phases too (the first check of a
# phase waits a second after the previous phase's last poll; detection stays exact: Prometheus's
# activeAt + for, not our poll), the abort conditions every 2 s.
POLL_S = 1.0
ABORT_EVERY_S = 2.0
EXIT_NOT_RECORDED = 4  # the drill ran (and reverted) but its journal or report could not be written
EXIT_NOT_STARTED = 5  # not started: not in steady state, alert already active, or target busy; retry later


class NotStarted(DrillkitError):
    """The system was not healthy (or the target was busy) before the drill, so nothing was
    injected: a reason to retry later, unlike Prometheus or the cluster being unavailable (3)."""

    exit_code = EXIT_NOT_STARTED


@dataclass
class RunOptions:
    prometheus: PromConfig = field(default_factory=PromConfig)
    policy: Policy = field(default_factory=Policy)
    report_root: Path = Path("reports")
    formats: tuple[str, ...] = ("md", "html", "json", "junit")
    dry_run: bool = False
    out: Callable[[str], None] = print
    tty: bool = False
    kube_factory: Callable[[], Any] | None = None
    ready_timeout: float = 60.0
    alertmanager_url: str | None = None
    force: bool = False  # run even if another drill holds the target
    settle_timeout: float = 0.0  # seconds to wait for the steady state (and quiet alerts) before starting
    settle_alerts: tuple[str, ...] = ()  # alerts (e.g. the previous drill's) that must be inactive first
    actions: ActionDefaults = field(default_factory=ActionDefaults)  # owner and due date of action items


@dataclass
class RunResult:
    run_id: str
    status: Status
    folder: Path | None
    exit_code: int
    plan: list[str] = field(default_factory=list)


def exit_code_for(status: Status, by_signal: bool) -> int:
    """Documented exit codes: 0 met, 1 missed, 3 inconclusive (something unavailable),
    5 not started (retry later), 130 interrupted."""
    if status is Status.ABORTED:
        return 130 if by_signal else 1
    return {Status.PASSED: 0, Status.FAILED: 1, Status.NOT_STARTED: EXIT_NOT_STARTED, Status.INCONCLUSIVE: 3}[status]


def new_run_id() -> str:
    return secrets.token_hex(4)


def report_folder(root: Path, scenario: Scenario, run_id: str, now: datetime) -> Path:
    """`reports/<UTC time>-<scenario>-<run id>/`, created here and never reused."""
    folder = root / f"{now:%Y-%m-%dT%H%M%SZ}-{scenario.name}-{run_id}"
    try:
        folder.mkdir(parents=True, exist_ok=False)
    except OSError as exc:
        raise InputError(f"cannot create the report folder {folder}: {exc.strerror}") from None
    return folder


class Drill:
    """One run of one scenario."""

    def __init__(self, scenario: Scenario, opts: RunOptions, stop: StopFlag) -> None:
        self.scenario, self.opts, self.stop = scenario, opts, stop
        self.limits = limits_for(scenario, opts.policy)
        self.prom = Prometheus(opts.prometheus, stop)
        self.am = Alertmanager(opts.alertmanager_url, stop) if opts.alertmanager_url else None
        self._notify: NotificationWatch | None = None
        self._journal: Journal | None = None
        self._last_abort_check = 0.0
        self._last_poll = 0.0  # monotonic time of the last detection or steady-state poll
        self._phase_started = time.monotonic()
        self._ctx: FaultContext | None = None
        self._injecting = ""
        self._inject_lock = threading.Lock()
        self.rule: AlertRule | None = None  # the detection alert's rule, found in preflight
        self.target: AlertTarget | None = None  # its rules chosen by detection.labels, in preflight
        self._abort_armed = False  # the current wait checks the abort conditions
        self._lab: LabWatch | None = None  # the lab's components, once the faults took effect

    # --- the run --------------------------------------------------------------------------

    def run(self) -> RunResult:
        run_id = new_run_id()
        try:
            return self._dry_run(run_id) if self.opts.dry_run else self._run(run_id)
        finally:
            self.close()

    def close(self) -> None:
        """Release HTTP sessions and the Kubernetes client."""
        self.prom.close()
        if self.am:
            self.am.close()
        if self._ctx is not None:
            self._ctx.close()

    def _run(self, run_id: str) -> RunResult:
        folder = self._report_folder(run_id)
        journal = Journal(folder / JOURNAL_NAME)
        self.opts.out(f"drill {self.scenario.name}: run {run_id}, report folder {folder}")
        journal.append(
            "started",
            run_id=run_id,
            scenario=scenario_record(self.scenario),
            limits=self.limits.to_dict(),
            prometheus=self.opts.prometheus.url,
            actions=self.opts.actions.to_dict(),
            cwd=os.getcwd(),  # relative paths in the scenario: what cleanup holds revert records to
        )
        ctx = self._ctx = self._context(run_id, journal)
        status: Status | None = None
        reason, by_signal = "", False
        try:
            with ExitStack() as held:  # the target stays ours until the reverts are verified
                with ExitStack() as reverts:
                    undo = Undo(reverts, ctx)
                    try:
                        held.enter_context(self._hold_target(run_id))
                        faults = self._preflight(ctx)
                        self._steady_state(journal)
                        self._inject(faults, undo, journal)
                        self._watch_lab(journal)
                        self._detect_respond_recover(journal, reverts, folder)
                    except Aborted as exc:
                        status, reason, by_signal = Status.ABORTED, exc.reason, exc.by_signal
                        journal.append("aborted", reason=exc.reason, by_signal=exc.by_signal)
                        self.opts.out(f"aborted: {exc.reason}; reverting")
                    except NotStarted as exc:
                        status, reason = Status.NOT_STARTED, str(exc)
                        journal.append("not_started", reason=str(exc))
                        self.opts.out(f"not started: {exc}")
                    except Exception as exc:  # any failure, ours or a library's: revert, then report it
                        status, reason = Status.INCONCLUSIVE, str(exc)
                        journal.append("error", error=str(exc), type=type(exc).__name__)
                        self.opts.out(f"error: {exc}; reverting")
                    finally:
                        self._revert(reverts, journal)
                status, reason = self._after_revert(ctx, journal, undo, status, reason, by_signal)
        except Exception as exc:  # verification or judging failed: the reverts already ran
            journal.append("error", error=str(exc), type=type(exc).__name__)
            status, reason = Status.INCONCLUSIVE, str(exc)
        finally:
            final = status or Status.INCONCLUSIVE
            journal.append("finished", status=final.value, reason=reason)
            journal.close()
            self._save_series(journal, folder)
        code = exit_code_for(final, by_signal)
        if journal.write_error is not None:
            self._journal_lost(journal, final)
            return RunResult(run_id, final, folder, EXIT_NOT_RECORDED)
        if not self._render(folder, final):
            code = EXIT_NOT_RECORDED
        return RunResult(run_id, final, folder, code)

    def _report_folder(self, run_id: str) -> Path:
        return report_folder(self.opts.report_root, self.scenario, run_id, utcnow())

    def _save_series(self, journal: Journal, folder: Path) -> None:
        """The probes', the alert expression's and the impact queries' values around the drill,
        saved for the report (drillkit.evidence); nothing to show if nothing was injected."""
        if _has(journal, "injected") and journal.write_error is None:
            save_series(self.prom, self.scenario, self.rule, journal.events[0].at, utcnow(), folder, self.opts.out)

    def _journal_lost(self, journal: Journal, status: Status) -> None:
        """The journal could not be written (disk full…): say what happened, reverts first."""
        err = journal.write_error
        self.opts.out(f"{status.value}: the journal {journal.path} could not be written ({err}); no report")
        for e in journal.events:
            if e.kind in ("revert_done", "revert_failed"):
                self.opts.out(f"  {e.kind.replace('_', ' ')}: {e.data.get('fault')} #{e.data.get('id')}")
        rescued = journal.rescue()
        self.opts.out(
            f"  the whole journal was saved to {rescued}: `drillkit report` it once there is room"
            if rescued
            else "  the journal could not be saved anywhere; pending reverts above, if any, need `drillkit cleanup`"
        )

    def _after_revert(
        self, ctx: FaultContext, journal: Journal, undo: Undo, status: Status | None, reason: str, by_signal: bool
    ) -> tuple[Status, str]:
        """Verify the system after the reverts, then judge the targets."""
        if undo.failures:
            return Status.FAILED, "revert failed: " + "; ".join(undo.failures)
        if status in (None, Status.ABORTED) and not by_signal and _has(journal, "reverted"):
            self._verify(journal)
        self._late_detection(journal)
        if self.scenario.target.kubernetes and _has(journal, "reverted"):
            left = self._leftovers(ctx, journal)
            if left is None and status in (None, Status.PASSED):  # unknown must not pass in silence
                return Status.INCONCLUSIVE, "could not check the cluster for leftovers (run `drillkit cleanup`)"
            if left and status in (None, Status.PASSED, Status.INCONCLUSIVE):
                return Status.FAILED, f"left in the cluster after revert: {', '.join(left)}"
        return (status or self._judge(journal)), reason

    def _render(self, folder: Path, status: Status) -> bool:
        from drillkit.report import load_events, render

        try:
            for v in verdicts(load_events(folder)):
                self.opts.out(f"  {v.outcome:<12} {v.summary()}")
            written = render(folder, self.opts.formats)
        except Exception as exc:  # the journal is the record; a report can be rendered later
            self.opts.out(
                f"{status.value}: rendering the report failed ({exc}); the journal is "
                f"{folder / JOURNAL_NAME}: try `drillkit report {folder}`"
            )
            return False
        self.opts.out(f"{status.value}: report written to {', '.join(str(p) for p in written)}")
        return True

    def _context(self, run_id: str, journal: Journal) -> FaultContext:
        return FaultContext(
            run_id=run_id,
            scenario=self.scenario,
            journal=journal,
            stop=self.stop,
            log=self.opts.out,
            kube_factory=self.opts.kube_factory,
            on_harm=lambda at: self._mark_injected(journal, at),
        )

    def _hold_target(self, run_id: str) -> ExitStack:
        """The scenario's target for this drill alone (see drillkit.targetlock)."""
        from drillkit.targetlock import TargetBusy, hold_target

        try:
            return _entered(hold_target(self.scenario, run_id, self.opts.kube_factory, self.opts.force))
        except TargetBusy as exc:
            raise NotStarted(str(exc)) from None

    def _dry_run(self, run_id: str) -> RunResult:
        from drillkit.alertcheck import check_alert
        from drillkit.alertcheck import plan as alert_plan

        self.prom.wait_ready(self.opts.ready_timeout)
        checked = check_alert(self.prom, self.scenario)  # before preflight: FILE:LINE lines, exit 2
        problems = self.prom.query_problems(self.scenario) + list(checked.problems)
        for line in problems:
            self.opts.out(line)
        if problems or checked.target is None:
            self.opts.out(f"dry run: {len(problems)} problem(s); the drill would not work as written")
            return RunResult(run_id, Status.NOT_STARTED, None, InputError.exit_code, problems)
        with tempfile.TemporaryDirectory(prefix="drillkit-dry-") as tmp:
            journal = Journal(Path(tmp) / JOURNAL_NAME)
            try:
                faults = self._preflight(self._context(run_id, journal))
            finally:
                journal.close()
        plan = [f"Prometheus {self.prom.url}: alert rule {self.scenario.detection.alert} loaded"]
        plan += alert_plan(checked.target)
        plan += [f"steady state: {p.name}: {p.expr} {p.expect}" for p in self.scenario.steady_state]
        for f in faults:
            plan += [f"{f.kind}: {line}" for line in f.plan()]
        plan.append(f"detect: {self.scenario.detection.alert} within {format_duration(self.limits.detect)}")
        for line in plan:
            self.opts.out(line)
        return RunResult(run_id, Status.NOT_STARTED, None, 0, plan)

    # --- phases ---------------------------------------------------------------------------

    def _preflight(self, ctx: FaultContext) -> list[Prepared]:
        check_interactive(self.scenario.response.acknowledge.value)
        if self.scenario.response.acknowledge is AckSource.ALERTMANAGER and self.am is None:
            raise PreflightError("response.acknowledge is `alertmanager` but no --alertmanager-url was given")
        self.prom.wait_ready(self.opts.ready_timeout)
        if self.am:
            self.am.wait_ready(self.opts.ready_timeout)
        d = self.scenario.detection
        self.target = self.prom.target(d.alert, d.matchers)
        self.rule = self.target.rule
        target = self.scenario.target_kind
        faults = [fault_class(spec.kind, target)(spec.params, ctx).prepare() for spec in self.scenario.faults]
        if self.stop.is_set():
            raise Aborted(self.stop.reason, by_signal=True)
        return faults

    def _settle(self) -> float:
        """Wait (bounded by `settle_timeout`) until the steady state holds and the drill's own
        alert and `settle_alerts` are neither pending nor firing: a suite's previous drill may
        still be resolving. Returns the seconds waited; the checks below decide the rest."""
        if self.opts.settle_timeout <= 0:
            return 0.0
        d = self.scenario.detection
        started = time.monotonic()

        def settled() -> bool:
            if self.prom.alerts(d.alert, d.matchers) or any(self.prom.alerts(a, ()) for a in self.opts.settle_alerts):
                return False
            return self._steady_now()

        self._wait("settle", started + self.opts.settle_timeout, settled, interval=1.0, check_abort=False)
        return time.monotonic() - started

    def _steady_state(self, journal: Journal) -> None:
        waited = self._settle()
        probes, conditions, d = self.scenario.steady_state, self.scenario.guardrails.abort_when, self.scenario.detection
        exprs = (
            [p.expr for p in probes] + [c.expr for c in conditions] + [self.prom.firing_selector(d.alert, d.matchers)]
        )
        held = self.prom.query_many(exprs)  # the probes, the abort conditions and the alert: one request
        self._last_abort_check = time.monotonic()
        failing = [f"{p.name}: {why}" for p, samples in zip(probes, held, strict=False) if (why := _why(p, samples))]
        if failing:
            raise NotStarted("steady state does not hold: " + "; ".join(failing))
        if held[-1]:
            from drillkit.alertcheck import already_firing

            raise NotStarted(already_firing(d.alert, d.labels, [s.labels for s in held[-1]]))
        holding = [c.name or c.expr for c, samples in zip(conditions, held[len(probes) : -1], strict=True) if samples]
        if holding:
            raise NotStarted(f"abort condition already holds before the drill: {'; '.join(holding)}")
        journal.append(
            "steady_state_ok", probes=[p.name for p in self.scenario.steady_state], settled_after=round(waited, 3)
        )

    def _probe(self, probe: Probe) -> str:
        """'' when the probe holds, else why not."""
        return _why(probe, self.prom.query(probe.expr))

    def _inject(self, faults: list[Prepared], undo: Undo, journal: Journal) -> None:
        for f in faults:
            self._check_stop()
            self._injecting = f.kind
            journal.append("fault_injecting", fault=f.kind, plan=f.plan())
            f.inject(undo)  # returns once the harm has taken effect
            self._mark_injected(journal)
            self.opts.out(f"injected {f.kind}")

    def _watch_lab(self, journal: Journal) -> None:
        """A drill on the local lab watches the lab's components from here on (see _check_lab),
        and journals which: what it watched is part of the record."""
        local = self.scenario.target.local
        if local is not None and local.lab_dir:
            from drillkit.lab.state import LabWatch

            self._lab = LabWatch.now(local.lab_dir)
            if self._lab is not None:
                journal.append("lab_watched", components={c: p.pid for c, p in self._lab.procs})

    def _check_lab(self) -> None:
        """A lab component dying mid-drill (PostgreSQL, the proxy…) is not the drill's fault:
        what the drill measures from then on is that failure, so it ends inconclusive (exit 3)
        and reverts, instead of blaming the responders for a steady state that cannot return."""
        if self._lab is not None and (lost := self._lab.lost()):
            raise UnavailableError(
                f"the lab's {', '.join(lost)} stopped during the drill, not by its faults: "
                "the drill cannot measure anything now (`drillkit lab up` starts it again)"
            )

    def _mark_injected(self, journal: Journal, at: datetime | None = None) -> None:
        """Journal `injected` once: when the first fault's harm began (see harm_started; `at`:
        when the target reported it took effect)."""
        with self._inject_lock:
            if not _has(journal, "injected"):
                journal.append("injected", at=at, fault=self._injecting)

    def _detect_respond_recover(self, journal: Journal, reverts: ExitStack, folder: Path) -> None:
        injected = next(e for e in journal.events if e.kind == "injected")
        d = self.scenario.detection
        target = self.target
        if target is None:  # preflight always finds it before anything is injected
            raise DrillkitError(f"no rule for {self.scenario.detection.alert} (preflight did not run)")
        since = injected.at - timedelta(seconds=0.5)
        watch = FiringWatch(self.prom, target, since)  # exact, at ~1 request per poll
        earliest = injected.mono + target.fires_after  # firing = activeAt + for: never sooner

        def detected() -> tuple[datetime, str] | None:
            if time.monotonic() < earliest:
                return None
            conditions = self._due_conditions()
            found, held = watch.poll([c.expr for c in conditions])  # the abort check rides along
            if conditions:
                self._last_abort_check = time.monotonic()
                _abort_if_held(conditions, held)
            return found

        found = self._wait("detect", injected.mono + self.limits.detect, detected, interval=POLL_S, paced=True)
        if found is None:  # it may have fired since the last poll, right before the deadline
            found = watch.last_look()
            if found is not None and journal.mono_of(found[0]) > injected.mono + self.limits.detect:
                found = None  # fired, but late: _late_detection reports it
        if found is None:
            self._missed(journal, target, since)
            return
        fired, method = found
        pending = watch.pending or self.prom.pending_time(target, since)
        self._dropped_episodes(journal, target, since, pending or fired)
        if pending is not None and pending <= fired:
            journal.append("alert_pending", at=pending, alert=d.alert, source="prometheus activeAt")
        journal.append(
            "detected",
            at=fired,
            alert=d.alert,
            for_seconds=self._fired_rule(target).for_seconds,
            source="prometheus",
            method=method,
        )
        self.opts.out(
            f"detected: {d.alert} firing at {fired.isoformat()} "
            f"({format_duration((fired - injected.at).total_seconds())} after injection)"
        )
        if self.am:
            self._notify = NotificationWatch(self.am, d.alert, d.matchers, since)
            self._journal = journal
            self._poll_notification()
        self._respond(journal, fired, folder)
        self._recover(journal, reverts, injected.mono)

    def _fired_rule(self, target: AlertTarget) -> AlertRule:
        """The rule the firing alert came from, when several of that name fit `detection.labels`
        (one more request); the only one otherwise."""
        if len(target.rules) == 1:
            return target.rule
        try:
            firing = [a for a in self.prom.alerts(target.name, target.matchers) if a.state == "firing"]
        except DrillkitError:
            return target.rule
        return target.rule_of(firing[0].labels) if firing else target.rule

    def _dropped_episodes(self, journal: Journal, target: AlertTarget, since: datetime, before: datetime) -> None:
        """Journal the pending episodes that dropped before the one that fired (best effort)."""
        try:
            episodes = self.prom.pending_episodes(target, since)
        except DrillkitError:
            return
        for start, last, fired in episodes:
            if not fired and last < before:
                journal.append(
                    "alert_pending",
                    at=start,
                    alert=target.name,
                    source="prometheus ALERTS",
                    until=rfc3339(last),
                    fired=False,
                )

    def _missed(self, journal: Journal, target: AlertTarget, since: datetime) -> None:
        """Journal the miss with its cause (see alertcheck.explain_miss) and each pending
        episode that dropped before `for:`."""
        from drillkit.alertcheck import explain_miss

        d = self.scenario.detection
        try:
            miss = explain_miss(self.prom, target, since)
        except DrillkitError as exc:
            self.opts.out(f"could not tell why {d.alert} did not fire: {exc}")
            miss = None
        for start, last in miss.episodes if miss else ():
            journal.append(
                "alert_pending", at=start, alert=d.alert, source="prometheus ALERTS", until=rfc3339(last), fired=False
            )
        why: dict[str, object] = {"cause": miss.cause.value, "why": miss.detail} if miss else {}
        journal.append("detection_missed", None, alert=d.alert, within=self.limits.detect, **why)
        said = f": {miss.cause.value}: {miss.detail}" if miss else ""
        self.opts.out(f"alert {d.alert} did not fire within {format_duration(self.limits.detect)}{said}")

    def _respond(self, journal: Journal, fired: datetime, folder: Path) -> None:
        source = self.scenario.response.acknowledge
        waiter = self._ack_waiter(source, folder)
        deadline = journal.mono_of(fired) + self.limits.acknowledge
        self._phase_started = time.monotonic()
        ack = waiter.wait(fired, deadline, self.stop, lambda: self._tick("respond", deadline))
        self._check_stop()
        if ack is None:
            journal.append("acknowledge_missed", source=source.value, within=self.limits.acknowledge)
            return
        journal.append(
            "acknowledged",
            at=ack.at,
            by=ack.by,
            note=ack.note,
            source=source.value,
            **({"severity": ack.severity} if ack.severity else {}),
        )
        self.opts.out(f"acknowledged by {ack.by}")

    def _ack_waiter(self, source: AckSource, folder: Path) -> AckWaiter:
        if source is AckSource.COMMAND:
            return CommandAck(folder)
        if source is AckSource.PROMPT:
            return PromptAck(self.opts.out)
        if source is AckSource.ALERTMANAGER and self.am:
            d = self.scenario.detection
            return AlertmanagerAck(self.am, d.alert, d.matchers)
        return AutoAck()

    def _recover(self, journal: Journal, reverts: ExitStack, injected_mono: float) -> None:
        reverted = self.scenario.recovery.action is RecoveryAction.REVERT
        if reverted:
            self.opts.out("mitigating by reverting the fault")
            self._revert(reverts, journal)
        # abort conditions stop harm early; once the fault is reverted none is left to stop
        deadline = injected_mono + self.limits.mitigate
        ok = self._wait("recover", deadline, self._steady_now, interval=POLL_S, check_abort=not reverted, paced=True)
        if ok:
            journal.append("mitigated", probes=[p.name for p in self.scenario.steady_state])
        else:
            journal.append("mitigation_missed", within=self.limits.mitigate)

    def _revert(self, reverts: ExitStack, journal: Journal) -> None:
        if _has(journal, "reverted"):
            return
        if _has(journal, "revert_registered"):
            with self.stop.protect():  # a stop request must not cut the reverts short
                reverts.close()
            journal.append("reverted")

    def _verify(self, journal: Journal) -> None:
        kinds = [e.kind for e in journal.events]
        if "mitigated" in kinds and "reverted" in kinds and kinds.index("mitigated") > kinds.index("reverted"):
            # the revert was the mitigation and the steady state was seen back after it: that
            # observation verifies the revert (no second query for the same fact)
            journal.append("resolved", verified="steady state holds after revert")
            return
        deadline = time.monotonic() + self.scenario.recovery.verify_within
        try:
            ok = self._wait("verify", deadline, self._steady_now, interval=POLL_S, check_abort=False, paced=True)
        except Aborted as exc:
            journal.append("verify_interrupted", reason=exc.reason)
            return
        if ok:
            journal.append("resolved", verified="steady state holds after revert")
        else:
            journal.append("verify_failed", within=self.scenario.recovery.verify_within)

    def _late_detection(self, journal: Journal) -> None:
        """After a missed detection, ask Prometheus once whether the alert fired later after all
        (before the drill ended), so the report says when instead of "-"."""
        injected = next((e for e in journal.events if e.kind == "injected"), None)
        if (
            injected is None
            or self.target is None
            or not _has(journal, "detection_missed")
            or _has(journal, "detected")
        ):
            return
        d = self.scenario.detection
        try:
            found = self.prom.firing_time(self.target, injected.at - timedelta(seconds=0.5))
        except DrillkitError as exc:
            self.opts.out(f"could not check whether {d.alert} fired late: {exc}")
            return
        if found is not None:
            fired, method = found
            journal.append("detected_late", at=fired, alert=d.alert, source="prometheus", method=method)
            late = format_duration((fired - injected.at).total_seconds())
            self.opts.out(f"{d.alert} fired late: at {fired.isoformat()} ({late} after injection)")

    def _leftovers(self, ctx: FaultContext, journal: Journal) -> list[str] | None:
        """Verify, Kubernetes part: nothing labelled with this run's id remains (objects being
        deleted asynchronously, like a Job's pods, get a short grace); None if that is unknown."""
        try:
            # after a signal the check lists once; otherwise it gives deletions 30 s (stop-aware)
            left = [str(ref) for ref in ctx.kube.leftovers(ctx.run_id, wait=30.0, stop=self.stop)]
        except DrillkitError as exc:
            journal.append("leftovers_unknown", error=str(exc))
            self.opts.out(f"could not check for leftovers: {exc} (run `drillkit cleanup`)")
            return None
        journal.append("leftovers_checked", remaining=left)
        if left:
            self.opts.out(f"left in the cluster: {', '.join(left)} (run `drillkit cleanup --run-id {ctx.run_id}`)")
        return left

    def _judge(self, journal: Journal) -> Status:
        """Judge from the same events the report renders: the journal plus the status updates
        other processes wrote (`drillkit update`), so the exit code and the report agree."""
        from drillkit.report import load_events

        events = journal.events if journal.write_error is not None else load_events(journal.path.parent)
        vs = verdicts(events)
        return Status.FAILED if any(v.met is False for v in vs) else Status.PASSED

    # --- waiting --------------------------------------------------------------------------

    def _steady_now(self) -> bool:
        """Every probe holds, checked with one request for all of them (Prometheus.query_many),
        which also carries the abort conditions when their check is due."""
        probes = self.scenario.steady_state
        conditions = self._due_conditions()
        held = self.prom.query_many([p.expr for p in probes] + [c.expr for c in conditions])
        if conditions:
            self._last_abort_check = time.monotonic()
            _abort_if_held(conditions, held[len(probes) :])
        return all(not _why(p, samples) for p, samples in zip(probes, held, strict=False))

    def _due_conditions(self) -> Sequence[AbortCondition]:
        """The abort conditions, if the current wait checks them and a check is due."""
        due = self._abort_armed and time.monotonic() - self._last_abort_check >= ABORT_EVERY_S
        return self.scenario.guardrails.abort_when if due else ()

    def _wait(
        self,
        phase: str,
        deadline: float,
        check: Callable[[], T | None],
        interval: float = 0.5,
        check_abort: bool = True,
        paced: bool = False,
    ) -> T | None:
        """Call `check` every `interval` s until it returns a truthy value (returned) or the
        monotonic deadline passes (None), showing progress. With `check_abort`, a stop request
        or an abort condition raises Aborted; without (verifying after the reverts), only a
        stop request does. `paced`: `check` polls Prometheus, so its first call waits until
        `interval` after the previous phase's last poll (which also makes a verify read samples
        newer than the revert)."""
        self._phase_started = time.monotonic()
        self._abort_armed = check_abort  # _steady_now may then fold a due abort check into its request
        if paced and (gap := min(self._last_poll + interval, deadline) - time.monotonic()) > 0:
            self.stop.sleep(gap)

        def attempt() -> T | None:
            if self.stop.is_set():
                raise Aborted(self.stop.reason, by_signal=True)
            self._check_lab()  # before `check`: a lost database is not the abort condition it trips
            if paced:
                self._last_poll = time.monotonic()
            result = check()
            if not result and time.monotonic() < deadline:
                self._tick(phase, deadline, check_abort)
            return result

        try:
            found = wait_until(attempt, deadline, interval, self.stop)
        finally:
            self._clear_progress()
        if found:
            return found
        if self.stop.interrupts():
            raise Aborted(self.stop.reason, by_signal=True)
        return None

    def _poll_notification(self) -> None:
        if self._notify and self._journal and (seen := self._notify.poll()):
            self._journal.append(
                "notified",
                at=seen,
                alert=self._notify.alert,
                source="Alertmanager API: first listed (checked every 0.25-0.5 s)",
            )

    def _tick(self, phase: str, deadline: float, check_abort: bool = True) -> None:
        self._check_lab()
        if check_abort:
            self._check_stop()
        self._poll_notification()
        if self.opts.tty:
            now = time.monotonic()
            elapsed = now - self._phase_started
            left = max(0.0, deadline - now)
            sys.stderr.write(f"\r[{phase}] {format_duration(elapsed)} elapsed, {format_duration(left)} left  ")
            sys.stderr.flush()

    def _clear_progress(self) -> None:
        if self.opts.tty:
            sys.stderr.write("\r\033[K")

    def _check_stop(self) -> None:
        if self.stop.is_set():
            raise Aborted(self.stop.reason, by_signal=True)
        now = time.monotonic()
        conditions = self.scenario.guardrails.abort_when
        if conditions and now - self._last_abort_check >= ABORT_EVERY_S:
            self._last_abort_check = now
            _abort_if_held(conditions, self.prom.query_many([c.expr for c in conditions]))  # one request


def _has(journal: Journal, kind: str) -> bool:
    return any(e.kind == kind for e in journal.events)


def _entered(cm: AbstractContextManager[None]) -> ExitStack:
    """Enter `cm` now (so its errors are raised here) and return a context that exits it."""
    stack = ExitStack()
    stack.enter_context(cm)
    return stack


def _abort_if_held(conditions: Sequence[AbortCondition], held: list[list[Sample]]) -> None:
    for cond, samples in zip(conditions, held, strict=True):
        if samples:
            raise Aborted(f"abort condition {cond.name or cond.expr} holds", by_signal=False)


def _why(probe: Probe, samples: list[Sample]) -> str:
    """'' when `probe` holds for these samples, else why not."""
    if not samples:
        return f"{probe.expr} returned no data"
    bad = [s for s in samples if not probe.expect.holds(s.value)]
    if bad:
        return f"{probe.expr} = {bad[0].value:g}, expected {probe.expect}"
    return ""
