"""The `drillkit` command: parse options, wire the pieces, map errors to exit codes.

Exit codes: 0 every target met; 1 a target missed (or the drill failed / hit an abort
condition); 2 bad input; 3 target system or Prometheus unavailable; 4 the drill ran but its
journal or report could not be written; 5 not started (steady state, alert already active or
target busy: retry later); 130 interrupted (after reverting). A suite exits with its drills'
most serious code (drillkit.suite). Logic lives below this module; heavy imports are lazy.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from drillkit import __version__
from drillkit.errors import DrillkitError, InputError

EXIT_BAD_INPUT = 2


def _say(line: str) -> None:
    """A progress line on stderr, secrets masked (see drillkit.redact)."""
    from drillkit.redact import redact

    click.echo(redact(line), err=True)


def _fail(exc: DrillkitError) -> None:
    _say(f"drillkit: {exc}")
    sys.exit(exc.exit_code)


def _guard(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn drillkit errors into one line on stderr and the documented exit code."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except DrillkitError as exc:
            _fail(exc)

    wrapper.__name__, wrapper.__doc__ = fn.__name__, fn.__doc__
    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="drillkit")
@click.option("-v", "--verbose", is_flag=True, help="Log retries and API calls.")
def main(verbose: bool) -> None:
    """Rehearse incidents: inject a playbook fault, time detection and response with
    Prometheus, always revert, and write the post-mortem report."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="drillkit: %(message)s")


def prometheus_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    opts = [
        click.option(
            "--prometheus-url",
            envvar="DRILLKIT_PROMETHEUS_URL",
            default=None,
            help="Prometheus base URL [default: the lab's, if `drillkit lab up` ran in the "
            "scenario's lab dir ($DRILLKIT_LAB_DIR, else .drillkit/lab), else http://127.0.0.1:9090].",
        ),
        click.option(
            "--prometheus-token", envvar="DRILLKIT_PROMETHEUS_TOKEN", default=None, help="Bearer token for Prometheus."
        ),
        click.option(
            "--prometheus-user",
            envvar="DRILLKIT_PROMETHEUS_USER",
            default=None,
            help="Basic-auth user (password in DRILLKIT_PROMETHEUS_PASSWORD).",
        ),
        click.option(
            "--prometheus-ca",
            envvar="DRILLKIT_PROMETHEUS_CA",
            default=None,
            type=click.Path(exists=True, dir_okay=False),
            help="CA bundle for Prometheus TLS.",
        ),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def kube_options(context_help: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """--context, --allow-context and --kubeconfig: which cluster, and the allowlist."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        opts = [
            click.option("--context", envvar="DRILLKIT_CONTEXT", default=None, help=context_help),
            click.option(
                "--allow-context",
                "allow_contexts",
                envvar="DRILLKIT_ALLOW_CONTEXT",
                multiple=True,
                help="Allow a non-kind kubeconfig context (repeatable).",
            ),
            click.option("--kubeconfig", envvar="KUBECONFIG", default=None, help="kubeconfig file."),
        ]
        for opt in reversed(opts):
            fn = opt(fn)
        return fn

    return decorate


def _interrupt_exits_130() -> None:
    """Until the drill routes signals to its stop flag, SIGINT/SIGTERM end the command at once
    with the documented 130: nothing was injected yet, so there is nothing to revert."""
    import signal
    import threading

    def handler(signum: int, frame: Any) -> None:
        raise SystemExit(130)

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, handler)


def _check_url(option: str, url: str) -> str:
    """An http(s) URL with a host, or bad input (exit 2) before anything is created."""
    from urllib.parse import urlsplit

    from drillkit.redact import redact

    try:
        parts = urlsplit(url)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname) and (parts.port or 0) >= 0
    except ValueError:  # e.g. a port that is not a number
        ok = False
    if not ok:
        raise InputError(f"{option}: expected http(s)://HOST[:PORT][/path], got {redact(url)!r}")
    return url


def _prom_config(url: str, token: str | None, user: str | None, ca: str | None) -> Any:
    from drillkit.prometheus import PromConfig

    _check_url("--prometheus-url", url)
    return PromConfig(
        url=url, bearer_token=token, username=user, password=os.environ.get("DRILLKIT_PROMETHEUS_PASSWORD"), ca_file=ca
    )


def _lab_url(sc: Any, service: str) -> str | None:
    """A local-target drill defaults to the services of the lab in its lab dir, if one is up."""
    if sc.target.local is None:
        return None
    from drillkit.lab.lab import lab_url

    return lab_url(service, sc.target.local.lab_dir)


def _duration(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    from drillkit.model import parse_duration

    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def action_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Who owns the action items a report derives from each miss, and when they fall due."""
    fn = click.option(
        "--due-in",
        callback=_duration,
        default=None,
        help="Action items fall due this long after the drill, e.g. 14d or 2w [default: 14d].",
    )(fn)
    return click.option("--owner", default=None, help="Owner of the action items [default: [Name], to fill in].")(fn)


@main.command()
@click.argument("paths", nargs=-1, required=True, metavar="SCENARIO|FOLDER|SUITE...")
@click.option("--dry-run", is_flag=True, help="Run preflight, print the plan, touch nothing.")
@click.option("--stop-on-failure", is_flag=True, help="In a suite: skip the remaining drills once one does not pass.")
@click.option(
    "--settle-timeout",
    type=click.FloatRange(min=0),
    default=None,
    help="Seconds each drill waits for the steady state to hold and the previous drill's alert to "
    "resolve before it starts [default: 0 for one drill, 180 in a suite].",
)
@click.option(
    "--report-dir",
    envvar="DRILLKIT_REPORT_DIR",
    default="reports",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where run folders are created.",
)
@click.option(
    "--format",
    "formats",
    envvar="DRILLKIT_FORMAT",
    default="md,html,json,junit",
    show_default=True,
    help="Comma-separated report formats.",
)
@click.option(
    "--policy",
    envvar="DRILLKIT_POLICY",
    default=None,
    type=click.Path(dir_okay=False),
    help="Policy file overriding the P1–P4 targets.",
)
@kube_options("kubeconfig context.")
@click.option(
    "--alertmanager-url",
    envvar="DRILLKIT_ALERTMANAGER_URL",
    default=None,
    help="Alertmanager base URL: records when the page went out; needed for `acknowledge: alertmanager`.",
)
@click.option(
    "--ready-timeout",
    envvar="DRILLKIT_READY_TIMEOUT",
    default=60.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds to wait for Prometheus to be ready.",
)
@click.option("--force", is_flag=True, help="Run even if another drill holds the target (see Safety guarantees).")
@action_options
@prometheus_options
@_guard
def run(
    paths: tuple[str, ...],
    owner: str | None,
    due_in: float | None,
    dry_run: bool,
    stop_on_failure: bool,
    settle_timeout: float | None,
    force: bool,
    report_dir: str,
    formats: str,
    policy: str | None,
    context: str | None,
    allow_contexts: tuple[str, ...],
    kubeconfig: str | None,
    alertmanager_url: str | None,
    ready_timeout: float,
    prometheus_url: str | None,
    prometheus_token: str | None,
    prometheus_user: str | None,
    prometheus_ca: str | None,
) -> None:
    """Run the drill in each SCENARIO (files, folders of *.yaml, `*.suite.yaml` suite files) and
    write its report. Several drills run one after the other as a suite: one summary
    (summary.md/html, a merged junit.xml) and one exit code."""
    _interrupt_exits_130()
    from drillkit.engine import Drill, RunOptions
    from drillkit.policy import ActionDefaults, load_policy
    from drillkit.report import parse_formats
    from drillkit.scenario import Scenario
    from drillkit.signals import StopFlag, handle_signals
    from drillkit.suite import load_suite, run_suite

    fmt = parse_formats(formats)
    suite = load_suite(paths, stop_on_failure)
    pol = load_policy(policy)
    actions = ActionDefaults(owner or "", ActionDefaults.due_in if due_in is None else due_in)
    if alertmanager_url is not None:
        _check_url("--alertmanager-url", alertmanager_url)
    if prometheus_url is not None:
        _check_url("--prometheus-url", prometheus_url)
    stop = StopFlag()

    def options_for(sc: Scenario) -> RunOptions:
        kube_factory = None
        if sc.target.kubernetes:
            from drillkit.kube import kube_factory_for

            kube_factory = kube_factory_for(sc, context, allow_contexts, kubeconfig, stop)
        prom = prometheus_url or _lab_url(sc, "prometheus") or "http://127.0.0.1:9090"
        am = alertmanager_url or _lab_url(sc, "alertmanager")
        if am is not None:
            _check_url("--alertmanager-url", am)
        return RunOptions(
            prometheus=_prom_config(prom, prometheus_token, prometheus_user, prometheus_ca),
            policy=pol,
            report_root=Path(report_dir),
            formats=fmt,
            dry_run=dry_run,
            out=_say,
            tty=sys.stderr.isatty(),
            kube_factory=kube_factory,
            ready_timeout=ready_timeout,
            alertmanager_url=am,
            force=force,
            settle_timeout=settle_timeout or 0.0,
            actions=actions,
        )

    single = len(suite.drills) == 1 and not Path(paths[0]).is_dir()
    if single or dry_run:
        code = 0
        for planned in suite.drills:  # a dry run checks every drill and touches nothing
            opts = options_for(planned.scenario)
            with handle_signals(stop):
                result = Drill(planned.scenario, opts, stop).run()
            if result.folder:
                click.echo(str(result.folder))
            code = code or result.exit_code
        sys.exit(code)
    with handle_signals(stop):
        summary = run_suite(suite, options_for, stop, Path(report_dir), _say, settle_timeout)
    for row in summary.rows:
        click.echo(f"{row.status:<13} {row.name:<32} {row.folder or row.reason}")
    click.echo(f"suite: exit {summary.exit_code}; summary in {summary.folder / 'summary.md'}")
    click.echo(str(summary.folder))
    sys.exit(summary.exit_code)


@main.command()
@click.argument("paths", nargs=-1, required=True)
@click.option(
    "--prometheus-url",
    envvar="DRILLKIT_PROMETHEUS_URL",
    default=None,
    help="Also run every PromQL expression against this Prometheus: rejected queries and probes "
    "that return no data are errors.",
)
@_guard
def validate(paths: tuple[str, ...], prometheus_url: str | None) -> None:
    """Validate scenario files and folders (exit 2 if any is bad)."""
    from drillkit.errors import ScenarioError
    from drillkit.scenario import load_scenario, scenario_paths

    prom = None
    if prometheus_url is not None:
        from drillkit.prometheus import Prometheus

        prom = Prometheus(_prom_config(prometheus_url, os.environ.get("DRILLKIT_PROMETHEUS_TOKEN"), None, None))

    files = scenario_paths(paths)
    if not files:
        raise InputError(f"no *.yaml scenarios found in {', '.join(paths)}")
    errors = 0
    for path in files:
        try:
            sc = load_scenario(path)
        except ScenarioError as exc:
            click.echo(str(exc), err=True)
            errors += 1
            continue
        if prom is not None:
            problems = prom.query_problems(sc)
            for line in problems:
                click.echo(line, err=True)
            if problems:
                errors += 1
                continue
        click.echo(f"ok: {path} ({sc.name}, {sc.severity}, {', '.join(f.kind for f in sc.faults)})")
    if errors:
        click.echo(f"drillkit: {errors} of {len(files)} scenario(s) invalid", err=True)
        sys.exit(EXIT_BAD_INPUT)


@main.command()
def schema() -> None:
    """Print the JSON Schema of the scenario format (for yaml-language-server)."""
    from drillkit.scenario import json_schema

    click.echo(json.dumps(json_schema(), indent=2))


class _DefaultGroup(click.Group):
    """`drillkit report RUN_FOLDER` renders one run; `drillkit report index|trends [ROOT]` the
    history: an argument that names no subcommand goes to the default one."""

    default = "render"

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = [self.default, *args]
        return super().parse_args(ctx, args)


@main.group(cls=_DefaultGroup)
def report() -> None:
    """Re-render a run's report (`drillkit report RUN_FOLDER`), or the history of every run
    under a reports folder (`drillkit report index|trends [REPORTS]`)."""


@report.command("render")
@click.argument("path", type=click.Path(exists=True))
@click.option("--format", "formats", default="md,html,json,junit", show_default=True)
@action_options
@_guard
def report_render(path: str, formats: str, owner: str | None, due_in: float | None) -> None:
    """Re-render the report of a run from its journal (a journal file or a run folder)."""
    from drillkit.report import parse_formats, render

    for written in render(Path(path), parse_formats(formats), owner, due_in):
        click.echo(str(written))


@report.command("index")
@click.argument("root", default="reports", type=click.Path(exists=True, file_okay=False))
@_guard
def report_index(root: str) -> None:
    """Every run under REPORTS in one table: index.html, index.md and index.json there."""
    from drillkit.history import write_index

    for written in write_index(Path(root)):
        click.echo(str(written))


@report.command("trends")
@click.argument("root", default="reports", type=click.Path(exists=True, file_okay=False))
@click.option("--fail-on-regression", is_flag=True, help="Exit 1 if a scenario regressed against the previous quarter.")
@_guard
def report_trends(root: str, fail_on_regression: bool) -> None:
    """Times to detect/acknowledge/mitigate/resolve and pass rates per scenario and incident type,
    per quarter, with the regressions against the previous quarter: trends.html/.md/.json."""
    from drillkit.history import write_trends

    written, regressions = write_trends(Path(root))
    for path in written:
        click.echo(str(path))
    for line in regressions:
        click.echo(f"regression: {line}", err=True)
    sys.exit(1 if fail_on_regression and regressions else 0)


# --- responders' actions from other shells (logic in drillkit.respond) ---------------------------


def responder_command(name: str | None = None) -> Callable[[Callable[..., Any]], Any]:
    """A command that records what a responder did in running drill RUN_ID (exit 2 if the run
    has ended: the action would count for nothing)."""

    def decorate(fn: Callable[..., Any]) -> Any:
        params = getattr(fn, "__click_params__", [])
        fn = _guard(fn)
        fn.__click_params__ = params  # type: ignore[attr-defined]  # the options declared above us
        fn = click.option(
            "--report-dir", envvar="DRILLKIT_REPORT_DIR", default="reports", show_default=True, help="Where runs are."
        )(fn)
        fn = click.option("--by", default=lambda: os.environ.get("USER", "someone"), help="Who did it.")(fn)
        fn = click.argument("run_id")(fn)
        return main.command(name)(fn)

    return decorate


def _recorded(what: str, action: Any) -> None:
    click.echo(f"{what} at {action.at:%H:%M:%S} UTC (by {action.by})")


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
    from drillkit.respond import ActionKind, act

    _recorded(f"channel {channel} declared", act(Path(report_dir), run_id, ActionKind.CHANNEL, by, message=channel))


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


@main.command()
@click.argument("paths", nargs=-1, required=True, metavar="SCENARIO|FOLDER...")
@click.option("--random", "pick", is_flag=True, help="Pick one of the scenarios at random (a blind exercise).")
@click.option(
    "--incident",
    type=click.Choice(["service-outage", "high-latency", "auth-failure", "database", "memory-leak", "other"]),
    default=None,
    help="With --random: only scenarios of this incident type.",
)
@click.option("--trainee", default=lambda: os.environ.get("USER", "trainee"), help="Who is training.")
@click.option(
    "--hint-every",
    type=click.FloatRange(min=1),
    default=None,
    help="Reveal the next runbook step every this many seconds [default: only on request].",
)
@click.option("--no-blind", is_flag=True, help="Leave the fault's own names visible (a demonstration).")
@click.option(
    "--report-dir",
    envvar="DRILLKIT_REPORT_DIR",
    default="reports",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where run folders are created.",
)
@click.option("--policy", envvar="DRILLKIT_POLICY", default=None, type=click.Path(dir_okay=False))
@click.option("--alertmanager-url", envvar="DRILLKIT_ALERTMANAGER_URL", default=None, help="Alertmanager base URL.")
@prometheus_options
@_guard
def train(
    paths: tuple[str, ...],
    pick: bool,
    incident: str | None,
    trainee: str,
    hint_every: float | None,
    no_blind: bool,
    report_dir: str,
    policy: str | None,
    alertmanager_url: str | None,
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
    from drillkit.scenario import Incident, load_scenario
    from drillkit.signals import StopFlag, handle_signals
    from drillkit.train import TrainOptions, pick_scenario, run_exercise

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
    opts = RunOptions(
        prometheus=_prom_config(prom, prometheus_token, prometheus_user, prometheus_ca),
        policy=load_policy(policy),
        report_root=Path(report_dir),
        alertmanager_url=am,
    )
    stop = StopFlag()
    with handle_signals(stop):
        result = run_exercise(sc, opts, stop, TrainOptions(trainee, hint_every, not no_blind, am))
    sys.exit(result.exit_code)


@main.command()
@click.argument("run_id")
@click.option("--report-dir", envvar="DRILLKIT_REPORT_DIR", default="reports", show_default=True)
@_guard
def watch(run_id: str, report_dir: str) -> None:
    """Follow an exercise as its facilitator: what drillkit did (the fault, by name) and what the
    responders did, until the run ends."""
    import math

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
        if log.exists():
            with log.open(encoding="utf-8") as fh:
                fh.seek(offset)
                for line in fh.readlines():
                    click.echo(line.rstrip("\n"))
                offset = fh.tell()
        return over

    over = wait_until(follow, math.inf, 0.5)  # until the run ends (or Ctrl-C)
    click.echo(f"run {run_id} ended at {over}")


@main.command()
@click.argument("run", metavar="RUN_ID|RUN_FOLDER")
@click.option("--report-dir", envvar="DRILLKIT_REPORT_DIR", default="reports", show_default=True)
@_guard
def scorecard(run: str, report_dir: str) -> None:
    """(Re-)render an exercise's scorecard and print where it is."""
    from drillkit.respond import find_run_folder
    from drillkit.scorecard import write_scorecard

    folder = Path(run) if Path(run).is_dir() else find_run_folder(Path(report_dir), run)
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


_STATES = ("investigating", "identified", "monitoring", "resolved")  # drillkit.updates.PageState
_ROLES = ("ic", "tech", "comms", "ops")  # as `drillkit handover` (drillkit.respond.ROLE_ALIASES)


@main.command()
@click.argument("run_id")
@click.argument("message")
@click.option("--status-page", is_flag=True, help="This update went to the public status page.")
@click.option(
    "--state",
    type=click.Choice(_STATES),
    default=None,
    help="The incident's state on the status page as of now (implies --status-page).",
)
@click.option("--by", default=lambda: os.environ.get("USER", ""), help="Who wrote it [default: $USER].")
@click.option(
    "--role",
    type=click.Choice(_ROLES),
    default=None,
    help="The writer's role: incident commander, tech, comms, ops lead.",
)
@click.option("--report-dir", envvar="DRILLKIT_REPORT_DIR", default="reports", show_default=True)
@_guard
def update(
    run_id: str, message: str, status_page: bool, state: str | None, by: str, role: str | None, report_dir: str
) -> None:
    """Record a status update (or status-page entry, with its state) for a drill's timeline."""
    from drillkit.respond import ROLE_ALIASES
    from drillkit.updates import PageState, write_update

    status_page = status_page or state is not None  # a state is the status page's
    page_state = PageState(state) if state else None
    write_update(Path(report_dir), run_id, message, status_page, page_state, by, ROLE_ALIASES[role] if role else None)
    kind = f"status page ({state})" if state else "status page" if status_page else "status"
    click.echo(f"recorded {kind} update for run {run_id}")


@main.command()
@click.option("--run-id", default=None, help="Clean up after this run only.")
@click.option(
    "--all", "everything", is_flag=True, help="Every run under --report-dir and every drillkit-labelled object."
)
@click.option(
    "--report-dir",
    envvar="DRILLKIT_REPORT_DIR",
    default="reports",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where run folders (journals) are.",
)
@kube_options("kubeconfig context (default: the one each run used).")
@click.option(
    "--namespace",
    "namespaces",
    multiple=True,
    help="Also look for labelled objects in this namespace (repeatable; default: the journals' namespaces).",
)
@click.option(
    "--cluster-wide",
    is_flag=True,
    help="Look for labelled objects in every namespace (needs a ClusterRole; see docs/kubernetes.md).",
)
@_guard
def cleanup(
    run_id: str | None,
    everything: bool,
    report_dir: str,
    context: str | None,
    allow_contexts: tuple[str, ...],
    kubeconfig: str | None,
    namespaces: tuple[str, ...],
    cluster_wide: bool,
) -> None:
    """Finish the reverts of killed drills: pending journalled reverts, then every object
    labelled drillkit.io/run-id (exit 1 if something could not be undone)."""
    from drillkit.cleanup import cleanup as run_cleanup

    if bool(run_id) == everything:
        raise click.UsageError("pass exactly one of --run-id ID or --all")
    result = run_cleanup(Path(report_dir), run_id, context, allow_contexts, kubeconfig, _say, namespaces, cluster_wide)
    for line in result.lines():
        click.echo(line)
    sys.exit(1 if result.failed else 0)


# --- the embedded lab (logic in drillkit.lab.lab) ----------------------------------------------

LAB_DIR_HELP = "State directory of the lab (relative to the working directory)."


@main.group()
def lab() -> None:
    """The local demo platform drills break: PostgreSQL, chat API replicas, Prometheus…"""


@lab.command("up")
@click.option(
    "--dir", "lab_dir", envvar="DRILLKIT_LAB_DIR", default=".drillkit/lab", show_default=True, help=LAB_DIR_HELP
)
@click.option("--replicas", type=click.IntRange(1, 20), default=None, help="Chat API replicas [2].")
@click.option("--base-port", type=int, default=None, help="First of the lab's 127.0.0.1 ports (Prometheus) [19090].")
@click.option(
    "--kind",
    "on_kind",
    is_flag=True,
    help="The platform on a kind cluster instead (context kind-drillkit; needs docker or podman, kind, kubectl).",
)
@_guard
def lab_up(lab_dir: str, replicas: int | None, base_port: int | None, on_kind: bool) -> None:
    """Start the lab (idempotent) and wait until Prometheus sees it all."""
    from drillkit.lab import lab as lab_mod

    if on_kind:
        if replicas is not None or base_port is not None:
            raise click.UsageError("--replicas and --base-port are for the local lab, not --kind")
        from drillkit.lab import kindlab

        kres = kindlab.up(out=_say)
        click.echo(f"kind lab {'created' if kres.created else 'deployed'} in {kres.seconds:.0f}s")
        for line in kindlab.summary(kres):
            click.echo(line)
        return
    res = lab_mod.up(Path(lab_dir), base_port, replicas, out=_say)
    if res.already_running:
        click.echo(f"lab already running in {res.state.dir}; nothing changed")
    else:
        click.echo(f"lab up in {res.seconds:.1f}s ({', '.join(res.started)} started)")
    for line in lab_mod.summary(res.state):
        click.echo(line)


@lab.command("down")
@click.option(
    "--dir", "lab_dir", envvar="DRILLKIT_LAB_DIR", default=".drillkit/lab", show_default=True, help=LAB_DIR_HELP
)
@click.option("--purge", is_flag=True, help="Also delete the lab's data, logs and JWT secret.")
@click.option("--kind", "on_kind", is_flag=True, help="Delete the kind cluster of `lab up --kind` instead.")
@_guard
def lab_down(lab_dir: str, purge: bool, on_kind: bool) -> None:
    """Stop every lab process (data and logs stay unless --purge)."""
    from drillkit.lab import lab as lab_mod

    if on_kind:
        from drillkit.lab import kindlab

        deleted = kindlab.down(out=_say)
        click.echo(
            f"kind lab down: cluster {kindlab.CLUSTER} deleted"
            if deleted
            else f"no kind cluster {kindlab.CLUSTER}; nothing to delete"
        )
        return
    res = lab_mod.down(Path(lab_dir), out=_say, purge=purge)
    click.echo(
        f"no lab state in {lab_dir}; nothing to stop"
        if res is None
        else f"lab down: stopped {', '.join(res.stopped) or 'nothing (all were already gone)'}"
    )


@lab.command("status")
@click.option(
    "--dir", "lab_dir", envvar="DRILLKIT_LAB_DIR", default=".drillkit/lab", show_default=True, help=LAB_DIR_HELP
)
@_guard
def lab_status(lab_dir: str) -> None:
    """Show each component up or down (exit 3 if any is down or no lab is up)."""
    from drillkit.lab import lab as lab_mod

    rows = lab_mod.status(Path(lab_dir))
    if rows is None:
        click.echo(f"no lab in {lab_dir}: start it with `drillkit lab up`")
        sys.exit(3)
    for r in rows:
        click.echo(f"{r.name:<13} {'up' if r.up else 'DOWN':<5} {r.pid or '-':>8}  {r.detail}")
    sys.exit(0 if all(r.up for r in rows) else 3)


@lab.command("logs")
@click.argument("component", required=False)
@click.option(
    "--dir", "lab_dir", envvar="DRILLKIT_LAB_DIR", default=".drillkit/lab", show_default=True, help=LAB_DIR_HELP
)
@click.option("-n", "--lines", type=click.IntRange(1), default=20, show_default=True)
@_guard
def lab_logs(component: str | None, lab_dir: str, lines: int) -> None:
    """Print the last lines of each component's log (or of COMPONENT's)."""
    from drillkit.lab import lab as lab_mod

    state = lab_mod.load_state(lab_dir)
    if state is None:
        raise InputError(f"no lab in {lab_dir}: start it with `drillkit lab up`")
    files = lab_mod.log_files(state)
    if component is not None and component not in files:
        raise click.BadParameter(
            f"unknown component {component!r}; choose from {', '.join(files)}", param_hint="COMPONENT"
        )
    for name, path in files.items():
        if component in (None, name):
            click.echo(f"==> {name}: {path} <==")
            for line in lab_mod.tail(path, lines):
                click.echo(line)


if __name__ == "__main__":
    main()
