"""`drillkit lab …`: the local practice platform, or the one on kind (logic in drillkit.lab)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from drillkit.cli.common import (
    _guard,
    _say,
    main,
)
from drillkit.errors import InputError

# --- the embedded lab (logic in drillkit.lab.lab) ----------------------------------------------

LAB_DIR_HELP = "State directory of the lab (relative to the working directory)."


@main.group()
def lab() -> None:
    """The local demo platform drills break: PostgreSQL, chat API replicas, Prometheus…"""


def _scrape_interval(_ctx: click.Context, _param: click.Parameter, value: str | None) -> int | None:
    """Seconds from --scrape-interval (None: the running lab's, else 1 s)."""
    from drillkit.lab.ruleset import parse_interval

    try:
        return None if value is None else parse_interval(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@lab.command("up")
@click.option(
    "--dir", "lab_dir", envvar="DRILLKIT_LAB_DIR", default=".drillkit/lab", show_default=True, help=LAB_DIR_HELP
)
@click.option("--replicas", type=click.IntRange(1, 20), default=None, help="Chat API replicas [2].")
@click.option(
    "--base-port",
    type=int,
    default=None,
    envvar="DRILLKIT_LAB_BASE_PORT",
    help="First of the lab's 127.0.0.1 ports (Prometheus) [19090].",
)
@click.option(
    "--scrape-interval",
    callback=_scrape_interval,
    default=None,
    metavar="DURATION",
    help="Prometheus' scrape and evaluation interval, e.g. 30s; the rules' windows follow it [1s: fast drills].",
)
@click.option(
    "--rules",
    "rules",
    multiple=True,
    metavar="FILE_OR_DIR",
    help="Your alert rules beside the lab's: Prometheus rule files or PrometheusRule manifests (their "
    "spec.groups), or folders of them; checked with promtool, kept for every Prometheus restart (repeatable).",
)
@click.option(
    "--kind",
    "on_kind",
    is_flag=True,
    help="The platform on a kind cluster instead (context kind-drillkit; needs docker or podman, kind, kubectl).",
)
@_guard
def lab_up(
    lab_dir: str,
    replicas: int | None,
    base_port: int | None,
    scrape_interval: int | None,
    rules: tuple[str, ...],
    on_kind: bool,
) -> None:
    """Start the lab (idempotent) and wait until Prometheus sees it all."""
    from drillkit.lab import lab as lab_mod

    if on_kind:
        given = click.get_current_context().get_parameter_source("base_port") == click.core.ParameterSource.COMMANDLINE
        # $DRILLKIT_LAB_BASE_PORT is the local lab's: only a --base-port typed here is refused
        if replicas is not None or (base_port is not None and given) or rules:
            raise click.UsageError("--replicas, --base-port and --rules are for the local lab, not --kind")
        from drillkit.lab import kindlab

        kres = kindlab.up(out=_say, scrape_interval=scrape_interval or 1)
        click.echo(f"kind lab {'created' if kres.created else 'deployed'} in {kres.seconds:.0f}s")
        for line in kindlab.summary(kres):
            click.echo(line)
        return
    res = lab_mod.up(
        Path(lab_dir), base_port, replicas, out=_say, scrape_interval=scrape_interval, rules=list(rules) or None
    )
    if res.rules_reloaded:
        click.echo(f"lab already running in {res.state.dir}; Prometheus reloaded {len(res.state.rules)} rule file(s)")
    elif res.already_running:
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
        click.echo(f"{r.name:<13} {r.state:<5} {r.pid or '-':>8}  {r.detail}")
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
