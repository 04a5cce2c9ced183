"""`drillkit train`: a drill run as an exercise for a responder, not as a demonstration.

Blind by default: the trainee's terminal gets a symptom report (as if from customer support),
a page when the alert fires, and answers to their own commands, never the fault: the runner's
own lines (scenario name, fault kind, plan) go to the run folder's `facilitator.log`, which a
facilitator follows with `drillkit watch RUN_ID`, and faults that show up in the system under
names the trainee would see are disguised as the platform's own.

The trainee mitigates with their own tools within the time limit (30 minutes unless the
scenario's `training.time_limit` or `--time-limit` says otherwise). Once the steady state is
back the exercise stays open for the close-out window (post `resolved`, declare the channel)
until the trainee types `done`; drillkit reverts then, when time runs out, when the trainee
gives up, or on interrupt. A fault that heals within SELF_HEAL_S of the page, before anyone did
anything, ends the exercise as "no response needed". Runbook steps are revealed as hints, one
at a time, on request (`hint`, here or `drillkit hint RUN_ID`) or on a timer counted from the
page; each hint shown is journalled. Everything the trainee does goes through
`drillkit.respond` (the same actions file other shells write), so the scorecard sees one record.

Blind, what the trainee's own account can read names neither the fault nor the run: the run
folder is `<time>-exercise-<id>`, mode 0700, and the lab's lock file holds a digest of the run
id. The terminal is `drillkit.console`'s. Text people typed reaches the console and the
facilitator log only through `redact.for_terminal`, and text that is not UTF-8 is refused,
never fatal.
"""

from __future__ import annotations

import dataclasses
import os
import random
import shlex
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from drillkit.clock import utcnow
from drillkit.console import Console, Part
from drillkit.engine import Drill, RunOptions, RunResult, report_folder
from drillkit.errors import InputError
from drillkit.faults import FaultContext, Made, Naming, run_tag
from drillkit.journal import Journal
from drillkit.model import format_duration
from drillkit.redact import for_terminal
from drillkit.respond import (
    ROLE_ALIASES,
    Action,
    ActionKind,
    first_ack,
    read_actions,
    record,
)
from drillkit.scenario import AckSource, Incident, RecoveryAction, Scenario, Severity, load_scenario, scenario_paths
from drillkit.signals import StopFlag

FACILITATOR_LOG = "facilitator.log"
LAB_PLATFORM = "chatbot"  # the local lab's prefix (a Kubernetes exercise takes its namespace's)
LOCK_NAME = "training-exercise"  # what the drill lock says is running, blind (a Lease anyone can read)
DISGUISED_DB_CLIENT = Naming(LAB_PLATFORM).head(Made.DB_CLIENT)  # chatbot-batch
# What a blind exercise calls the local faults' helpers: the holder's connections and process,
# stress-ng and its workers (field names of the faults' parameters); the same words as
# `Naming` gives the Kubernetes faults' objects.
DISGUISES = {
    "db-connection-exhaustion": {"application_name": DISGUISED_DB_CLIENT, "process_name": DISGUISED_DB_CLIENT},
    "cpu-pressure": {"process_name": Naming(LAB_PLATFORM).head(Made.LOAD)},
}

# What customer support reports, a few ways per incident type (one picked at random, unless the
# scenario writes its own under `training.symptoms`): after one exercise a trainee must not know
# the incident from the wording. Each is something users feel, never a cause.
SYMPTOMS = {
    Incident.SERVICE_OUTAGE: (
        "Customer support: users say the chat does not load at all; every request fails.",
        "Customer support: several customers sent screenshots of an error page instead of the chat.",
        "Customer support: the chat seems to be down for some users and flaky for the rest.",
    ),
    Incident.HIGH_LATENCY: (
        "Customer support: users say the chat has become very slow and messages sometimes time out.",
        "Customer support: customers complain that opening a conversation takes ages.",
        "Customer support: some users see their messages fail to send; others say it all feels sluggish.",
    ),
    Incident.AUTH_FAILURE: (
        "Customer support: users are being logged out and many cannot log back in.",
        "Customer support: customers say the chat keeps asking them to sign in again.",
        "Customer support: some users see an error page; others say the chat worked a minute ago.",
    ),
    Incident.DATABASE: (
        "Customer support: users say messages fail to send and conversations do not load ('service unavailable').",
        "Customer support: customers see 'service unavailable' on and off; some messages go through.",
        "Customer support: users say the chat is very slow, then shows an error page.",
    ),
    Incident.MEMORY_LEAK: (
        "Customer support: users say the chat keeps dropping out for a few seconds, again and again.",
        "Customer support: a few customers say the chat froze briefly; most noticed nothing.",
        "Customer support: users report short errors now and then; it seems to come and go.",
    ),
    Incident.OTHER: ("Customer support: users report that something is wrong with the chat.",),
}
SELF_HEAL_S = 10.0  # service back this soon after the page, untouched: nobody could have acted

HELP = """commands (also from another shell: drillkit ack|channel|step|note|handover|hint|give-up RUN_ID …):
  ack [P1-P4] [note]             acknowledge the page, with the severity you assign
  update [STATE] message         post a status update (STATE: investigating|identified|monitoring|resolved)
  page [STATE] message           post a status page update
  channel #incident-…            declare the incident channel
  done N [N…]                    mark runbook steps done (numbers as the hints show them)
  done                           once the service is back: close the exercise out
  note text                      write a note into the timeline
  handover ic|tech|comms|ops WHO hand a role over
  hint                           reveal the next runbook step
  give up                        end the exercise now (drillkit reverts)
  (Enter on an empty line shows the time; `help` this text)"""

STATES = ("investigating", "identified", "monitoring", "resolved")


@dataclass(frozen=True)
class TrainOptions:
    trainee: str = field(default_factory=lambda: os.environ.get("USER", "trainee"))
    hint_every: float | None = None  # seconds between automatic hints (None: on request only)
    blind: bool = True
    alertmanager_url: str | None = None  # shown with the page: the trainee's tool, not a giveaway
    time_limit: float | None = None  # seconds to restore service (None: the scenario's training.time_limit)
    close_out: float | None = None  # seconds open after the service is back (None: the scenario's)


def pick_scenario(paths: list[str], incident: Incident | None, rng: random.Random | None = None) -> Path:
    """A random scenario among `paths` (files and folders), of `incident` type if given."""
    candidates = []
    for p in scenario_paths(paths):
        sc = load_scenario(p)
        if incident is None or sc.incident is incident:
            candidates.append(p)
    if not candidates:
        kind = f" of incident type {incident.value}" if incident else ""
        raise InputError(f"no scenario{kind} in {', '.join(paths)}")
    return (rng or random.Random()).choice(candidates)


def as_exercise(scenario: Scenario, blind: bool, train: TrainOptions | None = None) -> Scenario:
    """The scenario as an exercise: the trainee acknowledges and mitigates (the revert is the
    fallback, not the mitigation) within the exercise's time limit, and, blind, faults visible
    to the trainee look like the platform's own."""
    faults = scenario.faults
    if blind and scenario.target.local is not None:
        faults = tuple(_disguised(f) for f in faults)
    training = scenario.training
    if train is not None and train.time_limit is not None:
        training = dataclasses.replace(training, time_limit=train.time_limit)
    if train is not None and train.close_out is not None:
        training = dataclasses.replace(training, close_out=train.close_out)
    return dataclasses.replace(
        scenario,
        response=dataclasses.replace(scenario.response, acknowledge=AckSource.COMMAND),
        recovery=dataclasses.replace(scenario.recovery, action=RecoveryAction.WAIT),
        faults=faults,
        training=training,
        exercise=True,
    )


def symptom_for(scenario: Scenario, rng: random.Random | None = None) -> str:
    """What customer support reports: one of the scenario's own, or of its incident type's."""
    return (rng or random.Random()).choice(scenario.training.symptoms or SYMPTOMS[scenario.incident])


def _disguised(fault: Any) -> Any:
    """A local fault whose helpers show up in `ps` or `pg_stat_activity`, named like the
    platform's own (names the scenario set itself are kept)."""
    names = DISGUISES.get(fault.kind, {})
    fields = {f.name for f in dataclasses.fields(fault.params)}
    change = {k: v for k, v in names.items() if k in fields and getattr(fault.params, k) is None}
    return dataclasses.replace(fault, params=dataclasses.replace(fault.params, **change)) if change else fault


def describe(action: Action, hints: list[str]) -> str:
    """An action as the facilitator reads it in `watch`: with its severity, step, text or state."""
    k = action.kind
    if k is ActionKind.ACK:
        sev = f" as {action.severity.value}" if action.severity else " (no severity)"
        return f"acknowledged{sev}" + (f": {action.message}" if action.message else "")
    if k is ActionKind.STEP_DONE:
        n = action.step
        return f"step {n} done" + (f": {hints[n - 1]}" if 0 < n <= len(hints) else " (no such step)")
    if k in (ActionKind.STATUS_UPDATE, ActionKind.STATUS_PAGE):
        what = "status page" if k is ActionKind.STATUS_PAGE else "status update"
        return f"{what}{' (' + action.state + ')' if action.state else ''}: {action.message}"
    if k is ActionKind.CHANNEL:
        return f"declared channel {action.message}"
    if k is ActionKind.HANDOVER:
        return f"handed {action.role.value if action.role else 'a role'} over to {action.to}"
    if k is ActionKind.HINT_REQUEST:
        return "asked for a hint"
    if k is ActionKind.GIVE_UP:
        return "gave up"
    return f"{k.value.replace('_', ' ')}: {action.message}".rstrip(": ")


def naming_for(scenario: Scenario) -> Naming:
    """A blind exercise's names: the platform's own prefix, the Kubernetes target's namespace
    (the kind platform's `chatbot`), or the lab's."""
    kube = scenario.target.kubernetes
    return Naming(kube.namespace if kube is not None and kube.namespace else LAB_PLATFORM)


def runbook_steps(scenario: Scenario) -> list[str]:
    """The hints, numbered from 1: the initial response, the resolution steps, then the branches."""
    rb = scenario.runbook
    return (
        [f"initial response: {s}" for s in rb.initial_response]
        + [f"resolution: {s}" for s in rb.resolution]
        + [f"resolution: {b.text}" for b in rb.branches]
    )


class Exercise(Drill):
    """The drill loop with the trainee in charge of the response: `_tick` (called in every wait)
    reads the trainee's commands and the actions from other shells, `_respond` does not block,
    and `_recover` waits for the trainee's mitigation (or giving up) instead of reverting."""

    def __init__(
        self, scenario: Scenario, opts: RunOptions, stop: StopFlag, train: TrainOptions, console: Console
    ) -> None:
        self.facilitator: list[str] = []
        self.folder: Path | None = None
        super().__init__(scenario, dataclasses.replace(opts, out=self._to_facilitator, tty=False), stop)
        self.train, self.console = train, console
        self.hints = runbook_steps(scenario)
        self.shown = 0
        self.seen = 0  # actions handled
        self.run_id = ""
        self.journal: Journal | None = None
        self.started_mono = 0.0
        self.fired: datetime | None = None
        self.fired_mono = 0.0
        self.acked = False
        self.gave_up = ""
        self.last_hint_mono = 0.0
        self.last_status = 0.0
        self.outcome = ""
        self.closed = False  # the trainee typed `done`: the close-out is over
        self.closing = 0.0  # monotonic end of the close-out window, once the service is back

    def _report_folder(self, run_id: str) -> Path:
        """Blind, the run folder's name says `exercise`, not the scenario, and nobody but the
        runner's user may enter it (the journal and facilitator log name the fault)."""
        if not self.train.blind:
            return super()._report_folder(run_id)
        folder = report_folder(
            self.opts.report_root, dataclasses.replace(self.scenario, name="exercise"), run_id, utcnow()
        )
        folder.chmod(0o700)
        return folder

    # --- the facilitator's view -------------------------------------------------------------

    def _to_facilitator(self, line: str) -> None:
        shown = for_terminal(line).replace("\n", " ")  # one line per entry: a typed newline forges none
        stamped = f"{time.strftime('%H:%M:%S')} {shown}"
        if self.folder is None:
            self.facilitator.append(stamped)
            return
        fd = os.open(self.folder / FACILITATOR_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as fh:
            fh.write(stamped + "\n")

    def _context(self, run_id: str, journal: Journal) -> FaultContext:
        """The run folder exists from here on: the facilitator log starts, the trainee is told
        how to act from other shells (the run id names nothing)."""
        self.run_id, self.journal, self.folder = run_id, journal, journal.path.parent
        for line in self.facilitator:
            self._to_facilitator(line.split(" ", 1)[1])
        self.facilitator.clear()
        self._to_facilitator(f"trainee {self.train.trainee}; hints available: {len(self.hints)}")
        ctx = super()._context(run_id, journal)
        if self.train.blind:  # what the faults create is named like the platform's own
            ctx.naming = naming_for(self.scenario)
        return ctx

    def _hold_target(self, run_id: str) -> ExitStack:
        """Blind, the drill lock (a Lease anyone can read, the lab's lock file) names the
        exercise, not the scenario (and on the lab, not the run id): the lock takes the name as
        it is entered, here."""
        if not self.train.blind:
            return super()._hold_target(run_id)
        scenario = self.scenario
        self.scenario = dataclasses.replace(scenario, name=LOCK_NAME)
        # the lab's lock file sits in the lab folder the trainee reads: the run's digest, not its id
        held = run_tag(run_id) if scenario.target.local is not None else run_id
        try:
            return super()._hold_target(held)
        finally:
            self.scenario = scenario

    # --- phases -------------------------------------------------------------------------------

    def _inject(self, faults: Any, undo: Any, journal: Journal) -> None:
        super()._inject(faults, undo, journal)
        self.started_mono = time.monotonic()
        symptom = symptom_for(self.scenario)
        training = self.scenario.training
        journal.append(
            "exercise_started",
            trainee=self.train.trainee,
            symptom=symptom,
            hints=len(self.hints),
            time_limit=training.time_limit,
            close_out=training.close_out,
        )
        self.console.say("")
        self.console.say(f"INCIDENT REPORT (exercise {self.run_id}, {time.strftime('%H:%M:%S')}):")
        self.console.say(f"  {symptom}")
        self.console.say(
            f"  Investigate and restore service with your own tools: you have {format_duration(training.time_limit)}."
            " Type `help` for the commands."
        )

    def _respond(self, journal: Journal, fired: datetime, folder: Path) -> None:
        self.fired, self.fired_mono = fired, journal.mono_of(fired)
        self.last_hint_mono = time.monotonic()  # `--hint-every` counts from the page
        self._to_facilitator(f"paged: {self.scenario.detection.alert} fired at {fired:%H:%M:%S} UTC")
        where = f" (see Alertmanager: {self.train.alertmanager_url})" if self.train.alertmanager_url else ""
        self.console.notice(f"PAGE: an alert is firing for the chat platform{where}")
        self._poll()

    def _recover(self, journal: Journal, reverts: ExitStack, injected_mono: float) -> None:
        """Wait for the trainee's mitigation within the time limit; then, once the service is
        back, keep the exercise open for the close-out (post `resolved`, declare the channel)
        until the trainee types `done` or the window ends. A fault that healed by itself before
        anyone could act needs no response and is not scored as a miss."""
        limit = self.scenario.training.time_limit
        deadline = injected_mono + limit
        restored = self._wait("recover", deadline, lambda: bool(self.gave_up) or self._steady_now())
        after = time.monotonic() - injected_mono
        if self.gave_up:
            journal.append(
                "mitigation_missed", within=limit, reason=f"{self.gave_up} gave up", ended="gave_up", after=after
            )
            self.outcome = f"you gave up at +{format_duration(after)}; drillkit reverted the fault"
        elif restored and self._healed_by_itself():
            journal.append("mitigated", probes=[p.name for p in self.scenario.steady_state], by="itself")
            self._to_facilitator(f"service restored by itself at +{format_duration(after)}: no response needed")
            self.outcome = "the service recovered by itself before anyone could act: no response needed"
            return
        elif restored:
            journal.append("mitigated", probes=[p.name for p in self.scenario.steady_state], by="trainee")
            self._to_facilitator(f"service restored at +{format_duration(after)}")
            took = format_duration(time.monotonic() - self.started_mono)
            self.outcome = f"service restored {took} after the report; drillkit cleaned up what was left"
            self._close_out(journal)
        else:
            journal.append("mitigation_missed", within=limit, ended="time_limit", after=after)
            self.outcome = f"time ran out at {format_duration(limit)}; drillkit reverted the fault"
        if not self.acked:
            journal.append("acknowledge_missed", source="command", within=self.limits.acknowledge)

    def _healed_by_itself(self) -> bool:
        """Service came back within SELF_HEAL_S of the page (or of the report, if nothing paged)
        and nobody had done anything: nobody could have."""
        since = self.fired_mono or self.started_mono
        return not self.seen and time.monotonic() - since <= SELF_HEAL_S

    def _close_out(self, journal: Journal) -> None:
        window = self.scenario.training.close_out
        self.closing = time.monotonic() + window
        journal.append("close_out", within=window)
        self.console.notice(
            f"SERVICE RESTORED: close the incident out (post `update resolved …`, declare the channel); "
            f"type `done` when finished ({format_duration(window)} at most)"
        )
        self._wait("close-out", self.closing, lambda: self.closed or bool(self.gave_up), check_abort=False)
        journal.append("closed_out", by="trainee" if self.closed else "time")

    # --- the trainee's side, every tick -------------------------------------------------------

    def _tick(self, phase: str, deadline: float, check_abort: bool = True) -> None:
        super()._tick(phase, deadline, check_abort)
        if self.folder is None or not self.started_mono:
            return
        self._poll()
        now = time.monotonic()
        if now - self.last_status >= 1.0:
            self.last_status = now
            self.console.status(self._status_parts(now, deadline if phase == "recover" else None))

    def _status_parts(self, now: float, deadline: float | None) -> list[Part]:
        since = format_duration(now - self.started_mono)
        parts = [Part(f"exercise {self.run_id}", self.run_id), Part(f"{since} since the report", f"+{since}")]
        if self.closing:
            left = format_duration(max(0.0, self.closing - now))
            parts.append(Part(f"restored; closing out, {left} left (`done`)", f"close-out {left} (`done`)"))
        elif deadline is not None:
            parts.append(Part(f"{format_duration(max(0.0, deadline - now))} left"))
        ack = "yes" if self.acked else "no"
        parts += [Part(f"hints {self.shown}/{len(self.hints)}", f"h {self.shown}/{len(self.hints)}")]
        parts += [Part(f"acknowledged: {ack}", f"ack: {ack}"), Part("`help`")]
        return parts

    def _status_text(self, now: float, deadline: float | None) -> str:
        return " | ".join(p.long for p in self._status_parts(now, deadline))

    def _poll(self) -> None:
        assert self.folder is not None
        for line in self.console.lines():
            self._command(line)
        actions = read_actions(self.folder)
        for action in actions[self.seen :]:
            self._handle(action)
        self.seen = len(actions)
        if self.fired is not None and not self.acked and (ack := first_ack(actions, self.fired)):
            self.acked = True
            assert self.journal is not None
            extra = {"severity": ack.severity} if ack.severity else {}
            self.journal.append("acknowledged", at=ack.at, by=ack.by, note=ack.note, source="command", **extra)
        every = self.train.hint_every
        due = every and self.fired is not None and time.monotonic() - self.last_hint_mono >= every
        if due and self.shown < len(self.hints) and not self.closing:
            self._hint("timer", "drillkit")

    def _handle(self, action: Action) -> None:
        if action.kind is ActionKind.HINT_REQUEST:
            self._hint("request", action.by)
        elif action.kind is ActionKind.GIVE_UP and not self.gave_up:
            self.gave_up = action.by
            assert self.journal is not None
            self.journal.append("gave_up", at=action.at, by=action.by)
        self._to_facilitator(f"{action.by}: {describe(action, self.hints)}")

    def _hint(self, why: str, by: str) -> None:
        self.last_hint_mono = time.monotonic()
        if self.shown >= len(self.hints):
            self.console.notice("no more hints: that was the whole runbook")
            return
        self.shown += 1
        text = self.hints[self.shown - 1]
        assert self.journal is not None
        self.journal.append("hint_shown", number=self.shown, text=text, reason=why, by=by)
        self._to_facilitator(f"hint {self.shown}/{len(self.hints)} shown ({why}): {text}")
        self.console.notice(f"HINT {self.shown}/{len(self.hints)} — {text}")

    def _command(self, line: str) -> None:
        """One line typed by the trainee: answered at once (they just pressed Enter)."""
        if not line:
            self.console.say(self._status_text(time.monotonic(), None))
            return
        try:
            words = shlex.split(line)
        except ValueError:
            words = line.split()
        verb, args = words[0].lower(), words[1:]
        rest = " ".join(args)
        if verb == "help":
            self.console.say(HELP)
            return
        if verb == "done" and not args:
            if not self.closing:
                self.console.say("?? `done` alone ends the close-out, once the service is back (`done N` marks step N)")
                return
            self.closed = True
            self.console.say("ok: closing the exercise")
            self._to_facilitator(f"{self.train.trainee}: done (closed out)")
            return
        try:
            action = self._action(verb, args, rest)
        except ValueError as exc:
            self.console.say(f"?? {exc} (type `help`)")
            return
        except InputError as exc:  # `done 1 2`: the run ended before the last step
            self.console.say(str(exc))
            return
        if action is None:
            return
        assert self.folder is not None
        try:
            record(self.folder, action)
        except InputError as exc:  # the run has ended, or the text is not UTF-8
            self.console.say(str(exc))
            return
        self.console.say(f"ok: {action.kind.value.replace('_', ' ')} recorded at {action.at:%H:%M:%S} UTC")
        if action.kind is ActionKind.CHANNEL:
            from drillkit.scorecard import channel_note

            if note := channel_note(action.message, f"{action.at:%Y-%m-%d}"):
                self.console.say(f"note: {note}")

    def _action(self, verb: str, args: list[str], rest: str) -> Action | None:
        from drillkit.clock import utcnow

        by, now = self.train.trainee, utcnow()
        if verb == "ack":
            sev = args[0].upper() if args and args[0].upper() in {s.value for s in Severity} else ""
            note = " ".join(args[1:] if sev else args)
            return Action(ActionKind.ACK, now, by, note, Severity(sev) if sev else None)
        if verb in ("update", "page"):
            state = args[0].lower() if args and args[0].lower() in STATES else ""
            message = " ".join(args[1:] if state else args)
            if not message:
                raise ValueError(f"usage: {verb} [STATE] message")
            kind = ActionKind.STATUS_PAGE if verb == "page" else ActionKind.STATUS_UPDATE
            return Action(kind, now, by, message, state=state)
        if verb == "channel" and len(args) == 1:
            return Action(ActionKind.CHANNEL, now, by, args[0])
        if verb == "done" and args and all(a.isdigit() and int(a) > 0 for a in args):
            assert self.folder is not None
            for a in args[:-1]:
                record(self.folder, Action(ActionKind.STEP_DONE, now, by, step=int(a)))
            return Action(ActionKind.STEP_DONE, now, by, step=int(args[-1]))
        if verb == "note" and rest:
            return Action(ActionKind.NOTE, now, by, rest)
        if verb == "handover" and len(args) == 2 and args[0].lower() in ROLE_ALIASES:
            return Action(ActionKind.HANDOVER, now, by, role=ROLE_ALIASES[args[0].lower()], to=args[1])
        if verb == "hint":
            return Action(ActionKind.HINT_REQUEST, now, by)
        if verb == "give" and rest.lower() == "up":
            return Action(ActionKind.GIVE_UP, now, by)
        raise ValueError(f"not understood: {verb} {rest}".strip())

    # --- the end ------------------------------------------------------------------------------

    def _render(self, folder: Path, status: Any) -> bool:
        ok = super()._render(folder, status)
        try:
            from drillkit.scorecard import write_scorecard

            for path in write_scorecard(folder):
                self._to_facilitator(f"scorecard written to {path}")
        except Exception as exc:  # the journal is the record: `drillkit scorecard` renders it later
            self._to_facilitator(f"scorecard failed: {exc}")
            return False
        return ok


def run_exercise(
    scenario: Scenario,
    opts: RunOptions,
    stop: StopFlag,
    train: TrainOptions,
    inp: IO[str] | None = None,
    out: IO[str] | None = None,
    say: Callable[[str], None] | None = None,
) -> RunResult:
    """Run `scenario` as an exercise on the trainee's terminal (`inp`/`out`, default stdin and
    stdout); returns the drill's result (the scorecard is in its folder)."""
    inp, out = inp or sys.stdin, out or sys.stdout
    console = Console(inp, out, tty=out.isatty() and inp.isatty() and os.environ.get("TERM", "") != "dumb")
    exercise = Exercise(as_exercise(scenario, train.blind, train), opts, stop, train, console)
    console.start()
    console.say("Exercise starting: drillkit checks that the platform is healthy, then the incident begins.")
    try:
        result = exercise.run()
    finally:
        console.end()
    ended = exercise.outcome or {
        "not-started": "the exercise could not start (the platform was not healthy); try again in a minute",
        "aborted": "the exercise was interrupted; drillkit reverted the fault",
    }.get(result.status.value, "the exercise ended; drillkit reverted the fault")
    console.say(f"Exercise {result.run_id} over: {ended}.")
    if result.folder is not None:
        console.say(f"Your scorecard: drillkit scorecard {result.run_id}")
    return result
