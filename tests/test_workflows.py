"""Every workflow under .github/workflows passes actionlint (with shellcheck on its `run:`
blocks), and keeps the hardening rules GitHub's guide gives: no `${{ }}` expression inside a
`run:` (inputs reach the shell through `env:`), `permissions:` on every job with write access only
where it is needed, every action pinned to a full commit SHA with its version in a comment.

actionlint is built by scripts/setup.sh from the Go module proxy into ~/.cache/drillkit."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).parent.parent
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
ACTIONLINT_VERSION = re.search(r"^ACTIONLINT_VERSION=(\S+)$", (ROOT / "scripts" / "setup.sh").read_text(), re.M)
PINNED = re.compile(r"^\s*(?:-\s+)?uses:\s+([\w.-]+/[\w./-]+)@([0-9a-f]{40})\s+#\s+v\d+(?:\.\d+)*\s*$")
# the jobs that may write, and what: the JUnit check run; the push of the drill-history branch
WRITERS = {("drills.yml", "drills"): {"checks": "write"}, ("drills.yml", "history"): {"contents": "write"}}


def actionlint() -> Path:
    assert ACTIONLINT_VERSION, "scripts/setup.sh pins ACTIONLINT_VERSION"
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    binary = cache / "drillkit" / f"actionlint-{ACTIONLINT_VERSION.group(1)}" / "actionlint"
    assert binary.is_file(), f"{binary}: missing; scripts/setup.sh builds it (needs Go)"
    return binary


def lint(*paths: Path) -> subprocess.CompletedProcess[str]:
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is not installed (scripts/setup.sh installs it): run: blocks would go unchecked"
    return subprocess.run(
        [str(actionlint()), "-shellcheck", shellcheck, "-no-color", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def load(path: Path) -> dict[Any, Any]:
    data: dict[Any, Any] = yaml.safe_load(path.read_text())
    return data


def test_there_are_workflows() -> None:
    assert {p.name for p in WORKFLOWS} >= {"drills.yml", "kind.yml"}


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_actionlint_finds_nothing(path: Path) -> None:
    r = lint(path)
    assert r.returncode == 0 and not r.stdout.strip(), f"actionlint on {path.name}:\n{r.stdout}{r.stderr}"


def test_actionlint_catches_a_broken_workflow(tmp_path: Path) -> None:
    """The lint can fail: an unquoted variable (shellcheck) and an unknown context (actionlint)."""
    wf = tmp_path / ".github" / "workflows" / "bad.yml"
    wf.parent.mkdir(parents=True)
    wf.write_text(
        "on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n"
        "      - run: echo ${{ inptus.owner }}\n      - run: rm -rf $DIR/x\n"
    )
    r = lint(wf)
    assert r.returncode != 0, r.stdout
    assert "inptus" in r.stdout and "SC2086" in r.stdout, r.stdout


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_no_expression_inside_a_run_block(path: Path) -> None:
    for job_name, job in load(path)["jobs"].items():
        for step in job["steps"]:
            run = step.get("run", "")
            where = f"{path.name}: job {job_name}, step {step.get('name', run[:40])!r}"
            assert "${{" not in run, f"{where}: pass the value through env:"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_least_permissions(path: Path) -> None:
    wf = load(path)
    top = wf.get("permissions")
    assert top is not None, f"{path.name}: no top-level permissions (the default token may write everything)"
    assert all(v in ("read", "none") for v in (top or {}).values()), f"{path.name}: top-level permissions {top}"
    for name, job in wf["jobs"].items():
        perms = job.get("permissions", top)
        writes = {k: v for k, v in (perms or {}).items() if v == "write"}
        allowed = WRITERS.get((path.name, name), {})
        assert writes == allowed, f"{path.name}: job {name} writes {writes}, only {allowed} is allowed"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_action_is_pinned_to_a_commit_with_its_version(path: Path) -> None:
    lines = [line for line in path.read_text().splitlines() if re.match(r"^\s*(?:-\s+)?uses:", line)]
    assert lines, f"{path.name} uses no action?"
    for line in lines:
        assert PINNED.match(line), f"{path.name}: {line.strip()!r} is not `owner/repo@<40-hex sha>  # vX.Y.Z`"


def test_the_pin_check_rejects_tags() -> None:
    assert not PINNED.match("      - uses: actions/checkout@v4")
    assert not PINNED.match("      - uses: actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683")
    assert PINNED.match("      - uses: actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683  # v4.2.2")
