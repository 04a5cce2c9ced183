"""Commands that run and report drills: run (one scenario or a suite), validate, schema, report,
update, cleanup."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from drillkit.cli.common import (
    EXIT_BAD_INPUT,
    _check_url,
    _guard,
    _interrupt_exits_130,
    _lab_url,
    _me,
    _prom_config,
    _say,
    action_options,
    kube_options,
    main,
    prometheus_options,
    report_dir_option,
    start_logging,
)
from drillkit.errors import InputError


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
@report_dir_option("Where run folders are created.")
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
    help="Also run every PromQL expression against this Prometheus (rejected queries and probes "
    "that return no data are errors) and check the alert can fire: it exists, its metrics have "
    "series, detection.labels can appear on it, detection.within covers its for:.",
)
@_guard
def validate(paths: tuple[str, ...], prometheus_url: str | None) -> None:
    """Validate scenario files and folders (exit 2 if any is bad)."""
    from drillkit.errors import ScenarioError
    from drillkit.scenario import load_scenario, scenario_paths

    prom = None
    if prometheus_url is not None:
        from drillkit.prometheus import Prometheus

        start_logging()

        prom = Prometheus(_prom_config(prometheus_url, os.environ.get("DRILLKIT_PROMETHEUS_TOKEN"), None, None))

    files = scenario_paths(paths)
    if not files:
        raise InputError(f"no *.yaml scenarios found in {', '.join(paths)}")
    errors = 0
    for path in files:
        try:
            sc = load_scenario(path)
        except ScenarioError as exc:
            _say(str(exc))
            errors += 1
            continue
        if prom is not None:
            from drillkit.alertcheck import check_alert

            problems = prom.query_problems(sc) + list(check_alert(prom, sc).problems)
            for line in problems:
                _say(line)
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
    import json

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
@click.option("--include-training", is_flag=True, help="Also list training exercises (`drillkit train`), marked.")
@_guard
def report_index(root: str, include_training: bool) -> None:
    """Every run under REPORTS in one table: index.html, index.md and index.json there.
    Training exercises are left out unless --include-training."""
    from drillkit.history import write_index

    for written in write_index(Path(root), include_training):
        click.echo(str(written))


@report.command("trends")
@click.argument("root", default="reports", type=click.Path(exists=True, file_okay=False))
@click.option("--fail-on-regression", is_flag=True, help="Exit 1 if a scenario regressed against the previous quarter.")
@click.option(
    "--include-training",
    is_flag=True,
    help="Also count training exercises (`drillkit train`), as groups of their own: `<scenario> (training)`.",
)
@_guard
def report_trends(root: str, fail_on_regression: bool, include_training: bool) -> None:
    """Times to detect/acknowledge/mitigate/resolve and pass rates per scenario and incident type,
    per quarter, with the regressions against the previous quarter: trends.html/.md/.json.
    Training exercises are left out unless --include-training (a trainee's time-out says nothing
    of the platform)."""
    from drillkit.history import write_trends

    written, regressions = write_trends(Path(root), include_training)
    for path in written:
        click.echo(str(path))
    for line in regressions:
        click.echo(f"regression: {line}", err=True)
    sys.exit(1 if fail_on_regression and regressions else 0)


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
@click.option("--by", default=_me, help="Who wrote it [default: $USER].")
@click.option(
    "--role",
    type=click.Choice(_ROLES),
    default=None,
    help="The writer's role: incident commander, tech, comms, ops lead.",
)
@report_dir_option()
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
@report_dir_option("Where run folders (journals) are.")
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
