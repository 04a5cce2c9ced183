"""The `drillkit` command group and what its commands share: option sets, error mapping, URLs.

Exit codes: 0 every target met; 1 a target missed (or the drill failed / hit an abort
condition); 2 bad input; 3 target system or Prometheus unavailable; 4 the drill ran but its
journal or report could not be written; 5 not started (steady state, alert already active or
target busy: retry later); 130 interrupted (after reverting). A suite exits with its drills'
most serious code (drillkit.suite). Logic lives below this module; heavy imports are lazy.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
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
