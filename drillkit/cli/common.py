"""The `drillkit` command group and what its commands share: option sets, error mapping, URLs.

Exit codes: 0 every target met; 1 a target missed (or the drill failed / hit an abort
condition); 2 bad input; 3 target system or Prometheus unavailable; 4 the drill ran but its
journal or report could not be written; 5 not started (steady state, alert already active or
target busy: retry later); 130 interrupted (after reverting). A suite exits with its drills'
most serious code (drillkit.suite). Logic lives below this module; heavy imports are lazy.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from typing import Any

import click

from drillkit import __version__
from drillkit.errors import DrillkitError, InputError

EXIT_BAD_INPUT = 2


def _say(line: str) -> None:
    """A progress line on stderr, secrets masked and control characters dropped (see
    drillkit.redact): it may carry what a person typed."""
    from drillkit.redact import for_terminal, redact

    click.echo(for_terminal(redact(line)), err=True)


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


# Each command: the module of this package that defines it, and its short help as `drillkit
# --help` lists it (the first sentence of its docstring), so neither `--help` nor one command
# imports every command module. tests/test_startup_imports.py checks them against the commands.
COMMANDS: dict[str, tuple[str, str]] = {
    "ack": (
        "responders",
        "Acknowledge the alert of a running drill, optionally with the severity you assign (graded in every "
        "mode; the runner waits for it with `acknowledge: command`).",
    ),
    "attempts": ("responders", "Write ROOT/attempts.md and .html: every trainee's attempts at each drill."),
    "channel": ("responders", "Declare the incident channel, e.g."),
    "cleanup": (
        "drills",
        "Finish the reverts of killed drills: pending journalled reverts, then every object labelled "
        "drillkit.io/run-id (exit 1 if something could not be undone).",
    ),
    "coverage": (
        "coveragecmd",
        "Write coverage.md, .html and .json: every alerting rule with the scenarios that detect on it and the last "
        "drill's result, and the playbook's incident types with their scenarios.",
    ),
    "give-up": ("responders", "Give up a training exercise: drillkit reverts the fault and writes the scorecard."),
    "handover": (
        "responders",
        "Hand ROLE (incident commander, technical, communications or operations lead) over to TO.",
    ),
    "hint": (
        "responders",
        "Ask for the next runbook hint in a training exercise (shown on the trainee's terminal; hints used are "
        "on the scorecard).",
    ),
    "lab": ("labcmd", "The local demo platform drills break: PostgreSQL, chat API replicas, Prometheus…"),
    "note": ("responders", "Write a note (a finding, a decision) into the drill's timeline."),
    "report": (
        "drills",
        "Re-render a run's report (`drillkit report RUN_FOLDER`), or the history of every run under a reports "
        "folder (`drillkit report index|trends [REPORTS]`).",
    ),
    "run": (
        "drills",
        "Run the drill in each SCENARIO (files, folders of *.yaml, `*.suite.yaml` suite files) and write its report.",
    ),
    "schema": ("drills", "Print the JSON Schema of the scenario format (for yaml-language-server)."),
    "scorecard": ("responders", "(Re-)render an exercise's scorecard and print where it is."),
    "step": (
        "responders",
        "Mark runbook steps done (numbered as `drillkit hint` shows them: the initial response first, then the "
        "resolution).",
    ),
    "train": (
        "responders",
        "Run a scenario as an exercise: a symptom report instead of the fault's name, the trainee mitigates, "
        "runbook hints on request (`hint`) or on a timer, a scorecard at the end.",
    ),
    "update": ("drills", "Record a status update (or status-page entry, with its state) for a drill's timeline."),
    "validate": ("drills", "Validate scenario files and folders (exit 2 if any is bad)."),
    "watch": (
        "responders",
        "Follow an exercise as its facilitator: what drillkit did (the fault, by name) and what the responders "
        "did, until the run ends.",
    ),
}


class _LazyGroup(click.Group):
    """The `drillkit` group: a command's module is imported when the command is looked up (it
    registers its commands on this group); `--help` lists the commands from COMMANDS."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            importlib.import_module(f"drillkit.cli.{COMMANDS[cmd_name][0]}")
        return self.commands.get(cmd_name)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        if args and args[0] not in COMMANDS:  # unknown: click's "did you mean" picks from loaded commands
            for module in sorted({m for m, _ in COMMANDS.values()}):
                importlib.import_module(f"drillkit.cli.{module}")
        return super().resolve_command(ctx, args)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """As click's, with the short help of a command not imported yet taken from COMMANDS."""
        names = [n for n in self.list_commands(ctx) if n not in self.commands or not self.commands[n].hidden]
        if not names:
            return
        limit = formatter.width - 6 - max(len(n) for n in names)
        rows = []
        for name in names:
            cmd = self.commands.get(name) or click.Command(name, help=COMMANDS[name][1])  # shortened as click does
            rows.append((name, cmd.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="drillkit")
@click.option("-v", "--verbose", is_flag=True, help="Log retries and API calls.")
@click.pass_context
def main(ctx: click.Context, verbose: bool) -> None:
    """Rehearse incidents: inject a playbook fault, time detection and response with
    Prometheus, always revert, and write the post-mortem report."""
    ctx.meta[_VERBOSE] = verbose
    # validate logs only with --prometheus-url (then it calls this itself); schema never logs
    if ctx.invoked_subcommand not in ("validate", "schema"):
        start_logging()


_VERBOSE = "drillkit.verbose"


def start_logging() -> None:
    """Log lines as `drillkit: …` on stderr; retries and API calls too with `-v`."""
    import logging

    from drillkit.redact import for_terminal, redact

    class Scrubbed(logging.Formatter):
        """Log lines as `_say` writes them: secrets masked, control characters dropped."""

        def format(self, record: logging.LogRecord) -> str:
            return for_terminal(redact(super().format(record)))

    handler = logging.StreamHandler()
    handler.setFormatter(Scrubbed("drillkit: %(message)s"))
    verbose = click.get_current_context().find_root().meta.get(_VERBOSE, False)
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, handlers=[handler])


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


def report_dir_option(help: str = "Where run folders are.") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """--report-dir (env DRILLKIT_REPORT_DIR, default `reports`): where run folders live."""
    return click.option(
        "--report-dir",
        envvar="DRILLKIT_REPORT_DIR",
        default="reports",
        show_default=True,
        type=click.Path(file_okay=False),
        help=help,
    )


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


def _me() -> str:
    """$USER, or the account's name when the shell has no $USER (tmux, sudo, cron)."""
    import getpass

    try:
        return os.environ.get("USER") or getpass.getuser()
    except (KeyError, OSError):
        return "someone"
