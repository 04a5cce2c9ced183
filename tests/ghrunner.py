"""A small local runner for a GitHub Actions workflow's jobs, for tests/test_workflow_history.py.

It runs the workflow's own `run:` blocks as GitHub does (`bash -e`, in the job's workspace, with
the job's and the step's `env:` and the `GITHUB_*` variables pointing at files of its own), in
order, honouring `if:`, `continue-on-error`, step outputs and job outputs. The `${{ }}`
expressions are evaluated by a parser of the subset the workflows here use; anything outside it
is an error, never a silent empty string.

`uses:` steps need GitHub itself; each has a local equivalent here (EQUIVALENTS): checkout is a
`git clone` of a local bare repository standing in for origin, the artifact actions copy folders
through a directory, setup-python puts this interpreter on PATH, the JUnit action parses the file
it would publish. An action without an equivalent fails the run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# --- expressions ---------------------------------------------------------------------------

TOKEN = re.compile(r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<op>\|\||&&|==|!=|!|\(|\))|(?P<name>[A-Za-z_][\w.-]*))")
STATUS_FUNCTIONS = ("always", "success", "failure", "cancelled")


class ExpressionError(Exception):
    """An expression outside the supported subset, or a context the runner does not have."""


def _tokens(text: str) -> list[str]:
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        m = TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ExpressionError(f"cannot read {text[pos:]!r} in {text!r}")
        out.append(m.group(m.lastgroup or ""))
        pos = m.end()
    return out


def truthy(value: Any) -> bool:
    return value not in (None, False, "", 0)


def text_of(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass
class Evaluator:
    """Evaluates one expression against `contexts`; `status` answers always()/success()/…"""

    contexts: dict[str, Any]
    status: Callable[[str], bool]
    tokens: list[str] = field(default_factory=list)

    def evaluate(self, text: str) -> Any:
        self.tokens = _tokens(text)
        value = self._or()
        if self.tokens:
            raise ExpressionError(f"unexpected {self.tokens[0]!r} in {text!r}")
        return value

    def _take(self, token: str) -> bool:
        if self.tokens and self.tokens[0] == token:
            self.tokens.pop(0)
            return True
        return False

    def _or(self) -> Any:
        value = self._and()
        while self._take("||"):
            right = self._and()
            value = value if truthy(value) else right
        return value

    def _and(self) -> Any:
        value = self._compare()
        while self._take("&&"):
            right = self._compare()
            value = right if truthy(value) else value
        return value

    def _compare(self) -> Any:
        left = self._unary()
        for op in ("==", "!="):
            if self._take(op):
                right = self._unary()
                same = text_of(left).casefold() == text_of(right).casefold()  # as GitHub: strings ignore case
                return same if op == "==" else not same
        return left

    def _unary(self) -> Any:
        if self._take("!"):
            return not truthy(self._unary())
        return self._primary()

    def _primary(self) -> Any:
        if not self.tokens:
            raise ExpressionError("expression ends too early")
        tok = self.tokens.pop(0)
        if tok == "(":
            value = self._or()
            if not self._take(")"):
                raise ExpressionError("missing )")
            return value
        if tok.startswith("'"):
            return tok[1:-1].replace("''", "'")
        if tok in ("true", "false"):
            return tok == "true"
        if tok == "null":
            return None
        if self._take("("):
            if tok not in STATUS_FUNCTIONS or not self._take(")"):
                raise ExpressionError(f"unsupported function {tok}()")
            return self.status(tok)
        head, *path = tok.split(".")
        if head not in self.contexts:
            raise ExpressionError(f"unknown context {head!r} in {tok!r}")
        value = self.contexts[head]
        for part in path:
            value = value.get(part) if isinstance(value, dict) else None
        return value


def uses_status(text: str) -> bool:
    return any(re.search(rf"\b{f}\s*\(", text) for f in STATUS_FUNCTIONS)


# --- the runner -----------------------------------------------------------------------------


@dataclass
class StepResult:
    name: str
    outcome: str  # success, failure or skipped
    outputs: dict[str, str]


@dataclass
class JobResult:
    result: str  # success, failure or skipped
    outputs: dict[str, str]
    steps: list[StepResult]
    summary: str
    workspace: Path

    def step(self, name_or_id: str) -> StepResult:
        return next(s for s in self.steps if s.name == name_or_id)


@dataclass
class Runner:
    """Runs jobs of one workflow run. `root` holds every job's workspace, runner temp dir and the
    artifacts; `origin` is the bare repository the checkouts clone."""

    workflow: dict[str, Any]
    origin: Path
    root: Path
    run_id: str
    inputs: dict[str, Any]
    variables: dict[str, str] = field(default_factory=dict)
    base_env: dict[str, str] = field(default_factory=dict)
    # called after each step as hook(job, step id or name, job workspace, that step's outputs)
    after_step: Callable[[str, str, Path, dict[str, str]], None] | None = None
    log: list[str] = field(default_factory=list)
    timings: list[str] = field(default_factory=list)  # "job/step: outcome in N s"
    checks: list[tuple[str, int, list[str | None]]] = field(default_factory=list)  # what the JUnit action saw
    job_workspace: Path = Path()  # the running job's

    def run_job(self, name: str, needs: dict[str, JobResult]) -> JobResult:
        job = self.workflow["jobs"][name]
        workspace, temp = self.root / name / "ws", self.root / name / "temp"
        workspace.mkdir(parents=True)
        temp.mkdir(parents=True)
        self.job_workspace = workspace
        contexts: dict[str, Any] = {
            "github": {
                "workspace": str(workspace),
                "run_id": self.run_id,
                "repository": "drillkit/drillkit",
                "server_url": f"file://{self.origin.parent}",
            },
            "runner": {"temp": str(temp)},
            "inputs": self.inputs,
            "vars": self.variables,
            "needs": {n: {"result": r.result, "outputs": r.outputs} for n, r in needs.items()},
            "env": {},
            "steps": {},
        }
        failed = False

        def status(fn: str) -> bool:
            return {"always": True, "success": not failed, "failure": failed, "cancelled": False}[fn]

        def value(raw: Any) -> Any:
            return self.render(raw, contexts, status) if isinstance(raw, str) else raw

        def needs_status(fn: str) -> bool:
            results = [r.result for r in needs.values()]
            return {
                "always": True,
                "success": all(r == "success" for r in results),
                "failure": "failure" in results,
                "cancelled": False,
            }[fn]

        if not self.condition(job.get("if"), contexts, needs_status):
            return JobResult("skipped", {}, [], "", workspace)
        env = {**{k: text_of(value(v)) for k, v in self.workflow.get("env", {}).items()}}
        contexts["env"] = env
        env.update({k: text_of(value(v)) for k, v in job.get("env", {}).items()})
        results, summary = [], []
        for i, step in enumerate(job["steps"]):
            key = step.get("id") or step.get("name") or f"step-{i}"
            if not self.condition(step.get("if"), contexts, status):
                results.append(StepResult(key, "skipped", {}))
                contexts["steps"][key] = {"outcome": "skipped", "conclusion": "skipped", "outputs": {}}
                continue
            step_env = {**env, **{k: text_of(value(v)) for k, v in step.get("env", {}).items()}}
            files = {n: temp / f"{n.lower()}-{i}" for n in ("GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY", "GITHUB_ENV")}
            for f in files.values():
                f.touch()
            started = time.monotonic()
            if "uses" in step:
                outcome = self.uses(step["uses"], {k: text_of(value(v)) for k, v in step.get("with", {}).items()})
            else:
                outcome = self.shell(step["run"], workspace, temp, step_env, files, contexts["github"])
            outputs = parse_outputs(files["GITHUB_OUTPUT"].read_text())
            summary.append(files["GITHUB_STEP_SUMMARY"].read_text())
            env.update(parse_outputs(files["GITHUB_ENV"].read_text()))  # for the later steps, as GitHub does
            if self.after_step:
                self.after_step(name, key, workspace, outputs)
            self.timings.append(f"{name}/{key}: {outcome} in {time.monotonic() - started:.1f} s")
            self.log.append(self.timings[-1])
            results.append(StepResult(key, outcome, outputs))
            conclusion = "success" if outcome == "failure" and step.get("continue-on-error") else outcome
            contexts["steps"][key] = {"outcome": outcome, "conclusion": conclusion, "outputs": outputs}
            failed = failed or conclusion == "failure"
        outputs = {k: text_of(value(v)) for k, v in job.get("outputs", {}).items()}
        return JobResult("failure" if failed else "success", outputs, results, "".join(summary), workspace)

    def render(self, raw: str, contexts: dict[str, Any], status: Callable[[str], bool]) -> Any:
        """A string with `${{ }}` parts: the one value if it is all expression, else the text."""
        whole = re.fullmatch(r"\s*\$\{\{(.*?)\}\}\s*", raw, re.S)
        if whole:
            return Evaluator(contexts, status).evaluate(whole.group(1))
        return re.sub(r"\$\{\{(.*?)\}\}", lambda m: text_of(Evaluator(contexts, status).evaluate(m.group(1))), raw)

    def condition(self, raw: Any, contexts: dict[str, Any], status: Callable[[str], bool]) -> bool:
        """An `if:` as GitHub reads it: without a status function, `success() && (…)`."""
        if raw is None:
            return status("success")
        text = str(raw).strip()
        m = re.fullmatch(r"\$\{\{(.*)\}\}", text, re.S)
        text = m.group(1) if m else text
        if not uses_status(text):
            text = f"success() && ({text})"
        return truthy(Evaluator(contexts, status).evaluate(text))

    def shell(
        self,
        script: str,
        workspace: Path,
        temp: Path,
        step_env: dict[str, str],
        files: dict[str, Path],
        github: dict[str, str],
    ) -> str:
        path = temp / "step.sh"
        path.write_text(script)
        env = {
            **self.base_env,
            **{k: str(v) for k, v in files.items()},
            "CI": "true",
            "GITHUB_ACTIONS": "true",
            "GITHUB_WORKSPACE": github["workspace"],
            "GITHUB_RUN_ID": self.run_id,
            "GITHUB_REPOSITORY": github["repository"],
            "GITHUB_SERVER_URL": github["server_url"],
            "GITHUB_WORKFLOW": str(self.workflow.get("name", "")),
            "RUNNER_TEMP": str(temp),
            **step_env,
        }
        r = subprocess.run(["bash", "-e", str(path)], cwd=workspace, env=env, capture_output=True, text=True)
        self.log.append(f"$ {script.strip().splitlines()[0]}\n{r.stdout[-3000:]}{r.stderr[-3000:]}")
        return "success" if r.returncode == 0 else "failure"

    def uses(self, action: str, with_: dict[str, str]) -> str:
        name = action.split("@")[0]
        if name not in EQUIVALENTS:
            raise AssertionError(f"no local equivalent for {action}")
        try:
            EQUIVALENTS[name](self, with_)
        except (subprocess.CalledProcessError, OSError, ET.ParseError) as exc:
            self.log.append(f"{name}: {exc}")
            return "failure"
        return "success"


def parse_outputs(text: str) -> dict[str, str]:
    """`name=value` lines and `name<<DELIMITER` blocks, as $GITHUB_OUTPUT holds them."""
    out, lines = {}, text.splitlines()
    while lines:
        line = lines.pop(0)
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            key, delim = line.split("<<", 1)
            body = []
            while lines and lines[0] != delim:
                body.append(lines.pop(0))
            lines.pop(0)
            out[key] = "\n".join(body)
        elif "=" in line:
            key, _, val = line.partition("=")
            out[key] = val
    return out


# --- the local equivalents of the actions ----------------------------------------------------


def checkout(runner: Runner, with_: dict[str, str]) -> None:
    """`git clone` of the local origin (its default branch, or `ref`) into the workspace or `path`."""
    dest = runner.job_workspace / with_.get("path", "")
    ref = ["--branch", with_["ref"]] if with_.get("ref") else []
    subprocess.run(
        ["git", "clone", "-q", "--depth", "1", *ref, f"file://{runner.origin}", str(dest)],
        check=True,
        capture_output=True,
        text=True,
    )


def setup_python(runner: Runner, with_: dict[str, str]) -> None:
    """This interpreter first on PATH as `python` (the version asked is checked). Standing in for
    the runner downloading drillkit's dependencies from PyPI, `.venv` becomes a venv that also
    sees the test's installed packages: setup.sh's `pip install -e '.[test]'` then finds them
    present and installs drillkit itself, from the checkout."""
    want = with_.get("python-version", "")
    have = f"{sys.version_info.major}.{sys.version_info.minor}"
    if want and want != have:
        raise AssertionError(f"the workflow asks for Python {want}; this test runs {have}")
    bindir = runner.root / "toolcache" / "bin"
    bindir.mkdir(parents=True, exist_ok=True)
    base = Path(getattr(sys, "_base_executable", sys.executable))
    for name in ("python", "python3"):
        link = bindir / name
        if not link.exists():
            link.symlink_to(base)
    runner.base_env["PATH"] = f"{bindir}:{runner.base_env['PATH']}"
    venv = runner.job_workspace / ".venv"
    subprocess.run([str(base), "-m", "venv", str(venv)], check=True, capture_output=True)
    site = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(site, "_test_packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")


def upload_artifact(runner: Runner, with_: dict[str, str]) -> None:
    shutil.copytree(runner.job_workspace / with_["path"], runner.root / "artifacts" / with_["name"], symlinks=True)


def download_artifact(runner: Runner, with_: dict[str, str]) -> None:
    dest = Path(with_["path"]) if with_.get("path") else runner.job_workspace
    shutil.copytree(runner.root / "artifacts" / with_["name"], dest, symlinks=True, dirs_exist_ok=True)


def junit_report(runner: Runner, with_: dict[str, str]) -> None:
    """What the check run would show: the file must parse as JUnit XML."""
    root = ET.parse(with_["report_paths"]).getroot()
    cases = root.findall(".//testcase")
    failed = [c.get("name") for c in cases if c.find("failure") is not None]
    runner.checks.append((with_.get("check_name", ""), len(cases), failed))


EQUIVALENTS: dict[str, Callable[[Runner, dict[str, str]], None]] = {
    "actions/checkout": checkout,
    "actions/setup-python": setup_python,
    "actions/upload-artifact": upload_artifact,
    "actions/download-artifact": download_artifact,
    "mikepenz/action-junit-report": junit_report,
}


def base_environment() -> dict[str, str]:
    """This process's environment without what a runner would not have: our PYTHONPATH (the steps
    use the checkout's own .venv) and any GITHUB_*/RUNNER_* of an enclosing CI run."""
    return {
        k: v
        for k, v in os.environ.items()
        if k != "PYTHONPATH" and not k.startswith(("GITHUB_", "RUNNER_", "INPUT_")) and k != "CI"
    }
