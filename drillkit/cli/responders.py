"""Commands responders and trainees use from other shells while a drill runs (logic in
drillkit.respond, drillkit.train and drillkit.scorecard)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from drillkit.cli.common import (
    _check_url,
    _guard,
    _interrupt_exits_130,
    _lab_url,
    _me,
    _prom_config,
    kube_options,
    main,
    prometheus_options,
    report_dir_option,
)
from drillkit.errors import InputError

# --- responders' actions from other shells (logic in drillkit.respond) ---------------------------


def responder_command(name: str | None = None) -> Callable[[Callable[..., Any]], Any]:
    """A command that records what a responder did in running drill RUN_ID (exit 2 if the run
    has ended: the action would count for nothing)."""

    def decorate(fn: Callable[..., Any]) -> Any:
        params = getattr(fn, "__click_params__", [])
        fn = _guard(fn)
        fn.__click_params__ = params  # type: ignore[attr-defined]  # the options declared above us
        fn = report_dir_option()(fn)
        fn = click.option("--by", default=_me, help="Who did it [default: $USER].")(fn)
        fn = click.argument("run_id")(fn)
        return main.command(name)(fn)

    return decorate


def _recorded(what: str, action: Any) -> None:
    from drillkit.redact import for_terminal

    click.echo(for_terminal(f"{what} at {action.at:%H:%M:%S} UTC (by {action.by})"))


@responder_command()
@click.option("--severity", type=click.Choice(["P1", "P2", "P3", "P4"]), default=None, help="The severity you assign.")
@click.option("--note", default="", help="A note for the timeline.")
def ack(run_id: str, report_dir: str, by: str, note: str, severity: str | None) -> None:
    """Acknowledge the alert of a running drill, optionally with the severity you assign
    (graded in every mode; the runner waits for it with `acknowledge: command`)."""
    from drillkit.respond import ActionKind, act
    from drillkit.scenario import Severity

    action = act(Path(report_dir), run_id, ActionKind.ACK, by, message=note, severity=severity and Severity(severity))
    _recorded(f"acknowledged run {run_id}" + (f" as {severity}" if severity else ""), action)


@responder_command()
@click.argument("channel")
def channel(run_id: str, report_dir: str, by: str, channel: str) -> None:
    """Declare the incident channel, e.g. `#incident-2026-05-04-login-failures` (the playbook's
    #incident-{date}-{short-description}; the scorecard checks it)."""
    from drillkit.redact import for_terminal
    from drillkit.respond import ActionKind, act
    from drillkit.scorecard import channel_note

    action = act(Path(report_dir), run_id, ActionKind.CHANNEL, by, message=channel)
    _recorded(f"channel {channel} declared", action)
    if note := channel_note(channel, f"{action.at:%Y-%m-%d}"):
        click.echo(for_terminal(f"note: {note}"))


@responder_command()
@click.argument("steps", nargs=-1, required=True, type=click.IntRange(1))
def step(run_id: str, report_dir: str, by: str, steps: tuple[int, ...]) -> None:
    """Mark runbook steps done (numbered as `drillkit hint` shows them: the initial response
    first, then the resolution)."""
    from drillkit.respond import ActionKind, act

    for n in steps:
        _recorded(f"runbook step {n} done", act(Path(report_dir), run_id, ActionKind.STEP_DONE, by, step=n))


@responder_command()
@click.argument("text")
def note(run_id: str, report_dir: str, by: str, text: str) -> None:
    """Write a note (a finding, a decision) into the drill's timeline."""
    from drillkit.respond import ActionKind, act

    _recorded("note recorded", act(Path(report_dir), run_id, ActionKind.NOTE, by, message=text))


@responder_command()
@click.argument("role", type=click.Choice(["ic", "tech", "comms", "ops"]))
@click.argument("to")
def handover(run_id: str, report_dir: str, by: str, role: str, to: str) -> None:
    """Hand ROLE (incident commander, technical, communications or operations lead) over to TO."""
    from drillkit.respond import ROLE_ALIASES, ActionKind, act

    r = ROLE_ALIASES[role]
    _recorded(f"{r.value} handed over to {to}", act(Path(report_dir), run_id, ActionKind.HANDOVER, by, role=r, to=to))


@responder_command()
def hint(run_id: str, report_dir: str, by: str) -> None:
    """Ask for the next runbook hint in a training exercise (shown on the trainee's terminal;
    hints used are on the scorecard)."""
    from drillkit.respond import ActionKind, act

    _recorded("hint requested", act(Path(report_dir), run_id, ActionKind.HINT_REQUEST, by))


@responder_command("give-up")
def give_up(run_id: str, report_dir: str, by: str) -> None:
    """Give up a training exercise: drillkit reverts the fault and writes the scorecard."""
    from drillkit.respond import ActionKind, act

    _recorded(
        "gave up; the exercise ends and the fault is reverted", act(Path(report_dir), run_id, ActionKind.GIVE_UP, by)
    )


# --- training exercises (logic in drillkit.train and drillkit.scorecard) ------------------------


class _Duration(click.ParamType[float]):
    """`30m`, `90s`, `1h`: seconds above zero."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        from drillkit.model import parse_duration

        if isinstance(value, float):
            return value
        try:
            seconds = parse_duration(str(value))
        except ValueError as exc:
            self.fail(f"{value!r}: {exc}", param, ctx)
        if seconds <= 0:
            self.fail(f"{value!r}: expected a duration above zero, like 30m", param, ctx)
        return seconds


DURATION = _Duration()


@main.command()
@click.argument("paths", nargs=-1, required=True, metavar="SCENARIO|FOLDER...")
@click.option("--random", "pick", is_flag=True, help="Pick one of the scenarios at random (a blind exercise).")
@click.option(
    "--incident",
    type=click.Choice(["service-outage", "high-latency", "auth-failure", "database", "memory-leak", "other"]),
    default=None,
    help="With --random: only scenarios of this incident type.",
)
@click.option("--trainee", default=_me, help="Who is training [default: $USER].")
@click.option(
    "--hint-every",
    type=click.FloatRange(min=1),
    default=None,
    help="Reveal the next runbook step every this many seconds [default: only on request].",
)
@click.option(
    "--time-limit",
    type=DURATION,
    default=None,
    help="How long the trainee has to restore service, e.g. 30m [default: the scenario's training.time_limit, 30m].",
)
@click.option(
    "--close-out",
    type=DURATION,
    default=None,
    help="Once service is back, how long the exercise stays open for the close-out (the trainee "
    "ends it with `done`) [default: the scenario's training.close_out, 5m].",
)
@click.option("--no-blind", is_flag=True, help="Leave the fault's own names visible (a demonstration).")
@report_dir_option("Where run folders are created.")
@click.option("--policy", envvar="DRILLKIT_POLICY", default=None, type=click.Path(dir_okay=False))
@click.option("--alertmanager-url", envvar="DRILLKIT_ALERTMANAGER_URL", default=None, help="Alertmanager base URL.")
@kube_options("kubeconfig context (a Kubernetes scenario).")
@prometheus_options
@_guard
def train(
    paths: tuple[str, ...],
    pick: bool,
    incident: str | None,
    trainee: str,
    hint_every: float | None,
    time_limit: float | None,
    close_out: float | None,
    no_blind: bool,
    report_dir: str,
    policy: str | None,
    alertmanager_url: str | None,
    context: str | None,
    allow_contexts: tuple[str, ...],
    kubeconfig: str | None,
    prometheus_url: str | None,
    prometheus_token: str | None,
    prometheus_user: str | None,
    prometheus_ca: str | None,
) -> None:
    """Run a scenario as an exercise: a symptom report instead of the fault's name, the trainee
    mitigates, runbook hints on request (`hint`) or on a timer, a scorecard at the end. Exit
    codes as `drillkit run`."""
    _interrupt_exits_130()
    from drillkit.engine import RunOptions
    from drillkit.policy import load_policy
    from drillkit.respond import typed
    from drillkit.scenario import Incident, load_scenario
    from drillkit.signals import StopFlag, handle_signals
    from drillkit.train import TrainOptions, pick_scenario, run_exercise

    typed("--trainee", trainee)
    if pick:
        path = pick_scenario(list(paths), Incident(incident) if incident else None)
    elif len(paths) != 1 or Path(paths[0]).is_dir():
        raise click.UsageError("give one scenario file, or --random to pick among several")
    else:
        path = Path(paths[0])
    sc = load_scenario(path)
    prom = prometheus_url or _lab_url(sc, "prometheus") or "http://127.0.0.1:9090"
    am = alertmanager_url or _lab_url(sc, "alertmanager")
    if am is not None:
        _check_url("--alertmanager-url", am)
    stop = StopFlag()
    kube_factory = None
    if sc.target.kubernetes:
        from drillkit.kube import kube_factory_for

        kube_factory = kube_factory_for(sc, context, allow_contexts, kubeconfig, stop)
    opts = RunOptions(
        prometheus=_prom_config(prom, prometheus_token, prometheus_user, prometheus_ca),
        policy=load_policy(policy),
        report_root=Path(report_dir),
        alertmanager_url=am,
        kube_factory=kube_factory,
    )
    with handle_signals(stop):
        result = run_exercise(
            sc, opts, stop, TrainOptions(trainee, hint_every, not no_blind, am, time_limit, close_out)
        )
    sys.exit(result.exit_code)


WATCH_AT_MOST_S = 24 * 3600  # no drill or exercise runs this long: a run left unfinished by a crash


@main.command()
@click.argument("run_id")
@report_dir_option()
@_guard
def watch(run_id: str, report_dir: str) -> None:
    """Follow an exercise as its facilitator: what drillkit did (the fault, by name) and what the
    responders did, until the run ends."""
    import time

    from drillkit.redact import for_terminal
    from drillkit.respond import ended, find_run_folder
    from drillkit.signals import wait_until
    from drillkit.train import FACILITATOR_LOG

    folder = find_run_folder(Path(report_dir), run_id)
    offset = 0

    def follow() -> str | None:
        """Print what the facilitator log gained; the run's end time once it ended."""
        nonlocal offset
        over = ended(folder)
        log = folder / FACILITATOR_LOG
        if log.exists():  # written by the exercise, but a hand or a torn write may have been there too
            with log.open("rb") as fh:
                fh.seek(offset)
                for line in fh:
                    if not line.endswith(b"\n"):
                        break  # still being written: the whole line next time
                    click.echo(for_terminal(line.decode("utf-8", errors="replace").rstrip("\n")))
                    offset += len(line)
        return over

    over = wait_until(follow, time.monotonic() + WATCH_AT_MOST_S, 0.5)  # until the run ends (or Ctrl-C)
    if not over:
        raise InputError(f"run {run_id} still going after {WATCH_AT_MOST_S // 3600} h: stopped watching")
    click.echo(for_terminal(f"run {run_id} ended at {over}"))


@main.command()
@click.argument("run", metavar="RUN_ID|RUN_FOLDER")
@report_dir_option()
@_guard
def scorecard(run: str, report_dir: str) -> None:
    """(Re-)render an exercise's scorecard and print where it is."""
    from drillkit.respond import find_run_folder
    from drillkit.scorecard import write_scorecard

    folder = Path(run) if run and Path(run).is_dir() else find_run_folder(Path(report_dir), run)
    for path in write_scorecard(folder):
        click.echo(str(path))


@main.command()
@click.argument("root", default="reports", type=click.Path(exists=True, file_okay=False))
@_guard
def attempts(root: str) -> None:
    """Write ROOT/attempts.md and .html: every trainee's attempts at each drill."""
    from drillkit.scorecard import write_attempts

    for path in write_attempts(Path(root)):
        click.echo(str(path))
