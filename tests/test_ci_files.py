"""The CI files run what exists: the drills workflow parses, is scheduled quarterly and manually,
and each `drillkit …` command it (and docs/ci.md's GitLab job) runs names a real subcommand with
real options; the CronJob validates against Kubernetes' own schema and runs the suite under the
shipped ServiceAccount."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import click
import kubernetes_validate
import pytest
import yaml

from drillkit.cli import main

ROOT = Path(__file__).parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "drills.yml"
CRONJOB = ROOT / "deploy" / "cronjob.yaml"
GITLAB = ROOT / "docs" / "ci.md"


def drillkit_commands(script: str) -> list[list[str]]:
    """Each `drillkit ARGS…` invocation in shell text (continuation lines joined, ${{ }} and $VARS
    kept as single words)."""
    text = re.sub(r"\$\{\{[^}]*\}\}", "EXPR", script.replace("\\\n", " "))
    out = []
    for line in text.splitlines():
        for m in re.finditer(r"(?:^|[\s;&|(])(?:\S*/)?drillkit\s+([^|;&#\n]+)", line):
            words = shlex.split(m.group(1).replace('"$(', '"').replace(')"', '"'))
            out.append(words)
    return out


def check_command(words: list[str]) -> None:
    """The subcommand (and sub-subcommand) exists and every --option is one of its options."""
    cmd: click.Command = main
    ctx = click.Context(main)
    i = 0
    while isinstance(cmd, click.Group) and i < len(words) and not words[i].startswith("-"):
        sub = cmd.get_command(ctx, words[i])
        if sub is None:
            if getattr(cmd, "default", None):  # `drillkit report FOLDER`
                sub = cmd.get_command(ctx, cmd.default)  # type: ignore[attr-defined]
                assert sub is not None
                cmd = sub
                break
            raise AssertionError(f"`drillkit {' '.join(words)}`: no subcommand {words[i]!r}")
        cmd, i = sub, i + 1
    assert not isinstance(cmd, click.Group), f"`drillkit {' '.join(words)}` names a group, not a command"
    known = {o for p in cmd.params for o in getattr(p, "opts", [])}
    for w in words[i:]:
        if w == "--":  # the end of the options: paths follow
            break
        if w.startswith("--"):
            assert w.split("=")[0] in known, f"`drillkit {' '.join(words)}`: {cmd.name} has no option {w}"


def workflow() -> dict[Any, Any]:
    data: dict[Any, Any] = yaml.safe_load(WORKFLOW.read_text())
    return data


def test_the_workflow_runs_quarterly_and_on_demand() -> None:
    wf = workflow()
    on = wf[True]  # YAML 1.1 reads the key `on` as a boolean
    assert on["schedule"] == [{"cron": "0 6 1 1,4,7,10 *"}] and "workflow_dispatch" in on
    steps = wf["jobs"]["drills"]["steps"]
    runs = "\n".join(s.get("run", "") for s in steps)
    assert "scripts/setup.sh" in runs and "drillkit lab up" in runs
    uses = [s.get("uses", "") for s in steps]
    assert any(u.startswith("actions/upload-artifact@") for u in uses), "report folders uploaded"
    junit = next(s for s in steps if "junit" in s.get("uses", ""))
    assert junit["with"]["report_paths"].endswith("/junit.xml")
    assert any(u.startswith("actions/checkout@") for u in uses)
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-artifact@"))
    assert upload["if"] == "always()" and upload["with"]["path"] == "reports/"


def test_every_drillkit_command_in_the_ci_files_exists() -> None:
    scripts = [s.get("run", "") for s in workflow()["jobs"]["drills"]["steps"]]
    gitlab = re.search(r"```yaml\n(.*?)```", GITLAB.read_text(), re.S)
    assert gitlab, "docs/ci.md has the GitLab CI job as a yaml block"
    job = yaml.safe_load(gitlab.group(1))
    sections = [v for v in job.values() if isinstance(v, dict)]
    scripts += [line for section in sections for key in ("script", "after_script") for line in section.get(key, [])]
    commands = [c for s in scripts for c in drillkit_commands(s)]
    names = {" ".join(c[:2]) if c[0] in ("lab", "report") else c[0] for c in commands}
    assert {"lab up", "run", "report index", "report trends", "lab down"} <= names, names
    # `drillkit X --help >/dev/null && drillkit X …`: a command the workflow runs only where it exists
    optional = {c[0] for c in commands if c[1:2] == ["--help"]}
    for words in commands:
        if words[0] in optional and main.get_command(click.Context(main), words[0]) is None:
            continue
        check_command(words)


@pytest.mark.parametrize("bad", [["rnu", "x"], ["run", "x", "--no-such-option"], ["report", "trend", "--x"]])
def test_the_command_check_catches_mistakes(bad: list[str]) -> None:
    with pytest.raises(AssertionError):  # `report trend` is a folder for `report render`, which has no --x
        check_command(bad)


def test_the_cronjob_validates_and_runs_the_suite_as_the_shipped_service_account() -> None:
    docs = list(yaml.safe_load_all(CRONJOB.read_text()))
    for doc in docs:
        kubernetes_validate.validate(doc, "1.30", strict=True)
    job = next(d for d in docs if d["kind"] == "CronJob")
    rbac = list(yaml.safe_load_all((ROOT / "deploy" / "rbac.yaml").read_text()))
    sa = next(d for d in rbac if d["kind"] == "ServiceAccount")
    pod = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == sa["metadata"]["name"]
    assert job["metadata"]["namespace"] == sa["metadata"]["namespace"]
    assert job["spec"]["schedule"] == "0 6 1 1,4,7,10 *" and job["spec"]["concurrencyPolicy"] == "Forbid"
    container = pod["containers"][0]
    assert container["command"] == ["/bin/sh", "-c"] and len(container["args"]) == 1, "one shell script"
    commands = drillkit_commands(container["args"][0])
    for words in commands:
        check_command(words)
    assert commands[0][:2] == ["run", "/scenarios"] and commands[0][2:4] == ["--report-dir", "/reports"], commands
    assert commands[1:] == [["report", "index", "/reports"], ["report", "trends", "/reports"]], commands
    assert container["args"][0].rstrip().endswith('exit "$code"'), "the Job's exit code is the suite's"
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is not installed (scripts/setup.sh installs it)"
    sc = subprocess.run([shellcheck, "-s", "sh", "-"], input=container["args"][0], capture_output=True, text=True)
    assert sc.returncode == 0, f"the CronJob's script (sh):\n{sc.stdout}"
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    claim = next(v for v in pod["volumes"] if v["name"] == mounts["/reports"])["persistentVolumeClaim"]["claimName"]
    assert any(d["kind"] == "PersistentVolumeClaim" and d["metadata"]["name"] == claim for d in docs), claim
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["DRILLKIT_CONTEXT"] == "in-cluster" and env["DRILLKIT_ALLOW_CONTEXT"] == "in-cluster"
    assert job["spec"]["jobTemplate"]["spec"]["backoffLimit"] == 0, "a retry would inject the faults again"
