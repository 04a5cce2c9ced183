"""`drillkit train`: a drill run as an exercise for a responder, not as a demonstration.

Blind by default: the trainee's terminal gets a symptom report (as if from customer support),
a page when the alert fires, and answers to their own commands, never the fault: the runner's
own lines (scenario name, fault kind, plan) go to the run folder's `facilitator.log`, which a
facilitator follows with `drillkit watch RUN_ID`, and faults that show up in the system under
names the trainee would see are disguised as the platform's own.

The trainee mitigates with their own tools. drillkit watches the steady state come back and
reverts only when that happened, when time runs out, when the trainee gives up, or on
interrupt. Runbook steps are revealed as hints, one at a time, on request (`hint`, here or
`drillkit hint RUN_ID`) or on a timer; each hint shown is journalled. Everything the trainee
does goes through `drillkit.respond` (the same actions file other shells write), so the
scorecard sees one record.

On a terminal the progress sits in the top two rows (a scroll region below them): it is redrawn
with the cursor saved and restored, so it never touches the line the trainee is typing; notices
that arrive meanwhile are printed after their next Enter. Text people typed reaches the console
and the facilitator log only through `redact.for_terminal` (no escape sequence of a responder's
can clear or retitle a screen), and text that is not UTF-8 is refused, never fatal.
"""

from __future__ import annotations

import dataclasses
import os
import random
import select
import shlex
import shutil
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from drillkit.engine import Drill, RunOptions, RunResult
from drillkit.errors import InputError
from drillkit.faults import FaultContext, Made, Naming
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
    tolerate_bytes,
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

SYMPTOMS = {
    Incident.SERVICE_OUTAGE: "Customer support: users say the chat does not load at all; every request fails.",
    Incident.HIGH_LATENCY: "Customer support: users say the chat has become very slow and messages sometimes time out.",
    Incident.AUTH_FAILURE: "Customer support: users are being logged out and many cannot log back in.",
    Incident.DATABASE: "Customer support: users say messages fail to send and conversations do not "
    "load ('service unavailable').",
    Incident.MEMORY_LEAK: "Customer support: users say the chat keeps dropping out for a few seconds, again and again.",
    Incident.OTHER: "Customer support: users report that something is wrong with the chat.",
}

HELP = """commands (also from another shell: drillkit ack|channel|step|note|handover|hint|give-up RUN_ID …):
  ack [P1-P4] [note]             acknowledge the page, with the severity you assign
  update [STATE] message         post a status update (STATE: investigating|identified|monitoring|resolved)
  page [STATE] message           post a status page update
  channel #incident-…            declare the incident channel
  done N [N…]                    mark runbook steps done (numbers as the hints show them)
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


def as_exercise(scenario: Scenario, blind: bool) -> Scenario:
    """The scenario as an exercise: the trainee acknowledges and mitigates (the revert is the
    fallback, not the mitigation), and, blind, faults visible to the trainee look like the
    platform's own."""
    faults = scenario.faults
    if blind and scenario.target.local is not None:
        faults = tuple(_disguised(f) for f in faults)
    return dataclasses.replace(
        scenario,
        response=dataclasses.replace(scenario.response, acknowledge=AckSource.COMMAND),
        recovery=dataclasses.replace(scenario.recovery, action=RecoveryAction.WAIT),
        faults=faults,
    )


def _disguised(fault: Any) -> Any:
    """A local fault whose helpers show up in `ps` or `pg_stat_activity`, named like the
    platform's own (names the scenario set itself are kept)."""
    names = DISGUISES.get(fault.kind, {})
    fields = {f.name for f in dataclasses.fields(fault.params)}
    change = {k: v for k, v in names.items() if k in fields and getattr(fault.params, k) is None}
    return dataclasses.replace(fault, params=dataclasses.replace(fault.params, **change)) if change else fault


def naming_for(scenario: Scenario) -> Naming:
    """A blind exercise's names: the platform's own prefix, the Kubernetes target's namespace
    (the kind platform's `chatbot`), or the lab's."""
    kube = scenario.target.kubernetes
    return Naming(kube.namespace if kube is not None and kube.namespace else LAB_PLATFORM)


def runbook_steps(scenario: Scenario) -> list[str]:
    """The hints, numbered from 1: the initial response, then the resolution steps."""
    rb = scenario.runbook
    return [f"initial response: {s}" for s in rb.initial_response] + [f"resolution: {s}" for s in rb.resolution]


class Console:
    """The trainee's terminal. On a tty, two status rows at the top (scroll region below): the
    progress is drawn there between cursor save and restore, never on the input line; notices
    go there too and are printed in full after the trainee's next Enter. Without a tty, notices
    are plain lines."""

    def __init__(self, inp: IO[str], out: IO[str], tty: bool) -> None:
        self.inp, self.out, self.tty = inp, out, tty
        tolerate_bytes(inp)
        self.pending: list[str] = []
        self.notice_line = ""
        self.eof = False
        self.rows = shutil.get_terminal_size((80, 24)).lines if tty else 0

    def start(self) -> None:
        if self.tty:  # reserve rows 1-2, scroll below them, cursor to the bottom
            self.out.write(f"\x1b[2J\x1b[3;{self.rows}r\x1b[{self.rows};1H")
            self.out.flush()

    def end(self) -> None:
        if self.tty:
            self.out.write(f"\x1b7\x1b[1;1H\x1b[2K\x1b[2;1H\x1b[2K\x1b8\x1b[r\x1b[{self.rows};1H\n")
            self.out.flush()
        self.flush_pending()

    def status(self, text: str) -> None:
        if self.tty:
            shown, notice = for_terminal(text)[:200], self.notice_line[:200]
            self.out.write(f"\x1b7\x1b[1;1H\x1b[2K{shown}\x1b[2;1H\x1b[2K{notice}\x1b8")
            self.out.flush()

    def say(self, text: str) -> None:
        """Print now: only in answer to the trainee's own command (they just pressed Enter)."""
        self.out.write(for_terminal(text) + "\n")
        self.out.flush()

    def notice(self, text: str) -> None:
        """Something happened (a page, a timed hint): never printed over the trainee's typing."""
        if self.tty:
            self.notice_line = for_terminal(f">> {text}").replace("\n", " ")
            self.pending.append(text)
        else:
            self.say(text)

    def flush_pending(self) -> None:
        for line in self.pending:
            self.say(line)
        self.pending.clear()

    def lines(self) -> list[str]:
        """Complete lines typed since the last call (never blocks)."""
        out: list[str] = []
        while not self.eof:
            ready, _, _ = select.select([self.inp], [], [], 0)
            if not ready:
                break
            line = self.inp.readline()
            if not line:
                self.eof = True
                break
            out.append(line.strip())
        return out


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
        self.acked = False
        self.gave_up = ""
        self.last_hint_mono = 0.0
        self.last_status = 0.0
        self.outcome = ""

    # --- the facilitator's view -------------------------------------------------------------

    def _to_facilitator(self, line: str) -> None:
        shown = for_terminal(line).replace("\n", " ")  # one line per entry: a typed newline forges none
        stamped = f"{time.strftime('%H:%M:%S')} {shown}"
        if self.folder is None:
            self.facilitator.append(stamped)
            return
        with open(self.folder / FACILITATOR_LOG, "a", encoding="utf-8") as fh:
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
        exercise, not the scenario: the lock takes the name as it is entered, here."""
        if not self.train.blind:
            return super()._hold_target(run_id)
        scenario = self.scenario
        self.scenario = dataclasses.replace(scenario, name=LOCK_NAME)
        try:
            return super()._hold_target(run_id)
        finally:
            self.scenario = scenario

    # --- phases -------------------------------------------------------------------------------

    def _inject(self, faults: Any, undo: Any, journal: Journal) -> None:
        super()._inject(faults, undo, journal)
        self.started_mono = time.monotonic()
        symptom = SYMPTOMS[self.scenario.incident]
        journal.append("exercise_started", trainee=self.train.trainee, symptom=symptom, hints=len(self.hints))
        self.console.say("")
        self.console.say(f"INCIDENT REPORT (exercise {self.run_id}, {time.strftime('%H:%M:%S')}):")
        self.console.say(f"  {symptom}")
        self.console.say("  Investigate and restore service with your own tools. Type `help` for the commands.")

    def _respond(self, journal: Journal, fired: datetime, folder: Path) -> None:
        self.fired = fired
        where = f" (see Alertmanager: {self.train.alertmanager_url})" if self.train.alertmanager_url else ""
        self.console.notice(f"PAGE: an alert is firing for the chat platform{where}")
        self._poll()

    def _recover(self, journal: Journal, reverts: ExitStack, injected_mono: float) -> None:
        deadline = injected_mono + self.limits.mitigate
        restored = self._wait("recover", deadline, lambda: bool(self.gave_up) or self._steady_now())
        if self.gave_up:
            journal.append("mitigation_missed", within=self.limits.mitigate, reason=f"{self.gave_up} gave up")
            self.outcome = "you gave up; drillkit reverted the fault"
        elif restored:
            journal.append("mitigated", probes=[p.name for p in self.scenario.steady_state], by="trainee")
            took = format_duration(time.monotonic() - self.started_mono)
            self.outcome = f"service restored {took} after the report; drillkit cleaned up what was left"
        else:
            journal.append("mitigation_missed", within=self.limits.mitigate)
            self.outcome = "time ran out; drillkit reverted the fault"
        if not self.acked:
            journal.append("acknowledge_missed", source="command", within=self.limits.acknowledge)

    # --- the trainee's side, every tick -------------------------------------------------------

    def _tick(self, phase: str, deadline: float, check_abort: bool = True) -> None:
        super()._tick(phase, deadline, check_abort)
        if self.folder is None or not self.started_mono:
            return
        self._poll()
        now = time.monotonic()
        if now - self.last_status >= 1.0:
            self.last_status = now
            self.console.status(self._status_text(now, deadline if phase == "recover" else None))

    def _status_text(self, now: float, deadline: float | None) -> str:
        parts = [f"exercise {self.run_id}", f"{format_duration(now - self.started_mono)} since the report"]
        if deadline is not None:
            parts.append(f"{format_duration(max(0.0, deadline - now))} left")
        parts += [f"hints {self.shown}/{len(self.hints)}", f"acknowledged: {'yes' if self.acked else 'no'}"]
        return " | ".join(parts) + " | `help`"

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
        if every and self.shown < len(self.hints) and time.monotonic() - self.last_hint_mono >= every:
            self._hint("timer", "drillkit")

    def _handle(self, action: Action) -> None:
        if action.kind is ActionKind.HINT_REQUEST:
            self._hint("request", action.by)
        elif action.kind is ActionKind.GIVE_UP and not self.gave_up:
            self.gave_up = action.by
            assert self.journal is not None
            self.journal.append("gave_up", at=action.at, by=action.by)
        self._to_facilitator(f"action: {action.kind.value} by {action.by} {action.message}".rstrip())

    def _hint(self, why: str, by: str) -> None:
        self.last_hint_mono = time.monotonic()
        if self.shown >= len(self.hints):
            self.console.notice("no more hints: that was the whole runbook")
            return
        self.shown += 1
        text = self.hints[self.shown - 1]
        assert self.journal is not None
        self.journal.append("hint_shown", number=self.shown, text=text, reason=why, by=by)
        self.console.notice(f"HINT {self.shown}/{len(self.hints)} — {text}")

    def _command(self, line: str) -> None:
        """One line typed by the trainee: answered at once (they just pressed Enter)."""
        self.console.flush_pending()
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
    exercise = Exercise(as_exercise(scenario, train.blind), opts, stop, train, console)
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
