"""`drillkit coverage`: the alerts drills have proven, and those none has (logic in drillkit.coverage)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from drillkit.cli.common import _guard, _prom_config, _say, main, start_logging


def _window(_ctx: click.Context, _param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    from drillkit.model import parse_duration

    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if seconds <= 0:
        raise click.BadParameter(f"expected a duration above zero like 90d, got {value!r}")
    return seconds


@main.command()
@click.option(
    "--prometheus-url",
    envvar="DRILLKIT_PROMETHEUS_URL",
    default=None,
    help="Read the alerting rules Prometheus has loaded (/api/v1/rules).",
)
@click.option(
    "--rules",
    "rule_paths",
    multiple=True,
    metavar="FILE_OR_DIR",
    help="Read alerting rules from rule files or PrometheusRule manifests (repeatable; with or without "
    "--prometheus-url).",
)
@click.option(
    "--report-dir", default="reports", show_default=True, help="The reports folder whose run folders are read."
)
@click.option("--out", "out_dir", default=None, help="Where to write coverage.md/.html/.json [the reports folder].")
@click.option(
    "--fail-untested-since",
    callback=_window,
    default=None,
    metavar="DURATION",
    help="Exit 1 when an alert has no passing drill within this window, e.g. 90d (for CI).",
)
@_guard
def coverage(
    prometheus_url: str | None,
    rule_paths: tuple[str, ...],
    report_dir: str,
    out_dir: str | None,
    fail_untested_since: float | None,
) -> None:
    """Write coverage.md, .html and .json: every alerting rule with the scenarios that detect on it and the last
    drill's result, and the playbook's incident types with their scenarios."""
    from drillkit import coverage as cov
    from drillkit.clock import utcnow
    from drillkit.errors import InputError

    if prometheus_url is None and not rule_paths:
        raise InputError("coverage needs the rules: --prometheus-url URL, --rules FILE_OR_DIR, or both")
    rules = cov.rules_from_files(list(rule_paths)) if rule_paths else []
    if prometheus_url is not None:
        from drillkit.prometheus import Prometheus

        start_logging()
        prom = Prometheus(_prom_config(prometheus_url, os.environ.get("DRILLKIT_PROMETHEUS_TOKEN"), None, None))
        try:
            rules += prom.rules()
        finally:
            prom.close()
    since = cov.window_start(utcnow(), fail_untested_since)
    result = cov.load(rules, Path(report_dir))
    written = cov.write(result, Path(out_dir or report_dir), since)
    for line in result.problems:
        _say(line)
    proven = sum(1 for c in result.rules if c.proven_at is not None)
    click.echo(
        f"{proven} of {len(result.rules)} alerting rules proven by a passing drill; {', '.join(map(str, written))}"
    )
    if since is not None:
        untested = result.untested(since)
        for c in untested:
            _say(f"untested: {c.rule.name} ({c.rule.group}): no passing drill since {since:%Y-%m-%d}")
        if untested:
            sys.exit(1)
