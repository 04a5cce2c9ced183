"""The drills workflow's own steps, run twice on the real lab: two quarters of history that
survive the runner.

tests/ghrunner.py runs the `run:` blocks of .github/workflows/drills.yml in order, as GitHub
would (job `drills`, then job `history`), with the `GITHUB_*` variables pointing at files of the
test and a local bare git repository standing in for origin. The `uses:` steps need GitHub and
have local equivalents there: checkout clones the bare repository (the drill-history branch too,
which fails on the first run as on GitHub, where the step may fail), setup-python puts this
Python on PATH (and .venv sees the test's installed packages, so setup.sh's pip install does not
download them), upload/download-artifact copy through a directory, the JUnit action parses the
file it would publish.

Quarter one's clock is shifted back, honestly and only in the test: the lab's Prometheus and
Alertmanager are Go programs that read the clock through the vDSO (libfaketime cannot reach
them) and Linux time namespaces do not move the wall clock, and a drillkit-only fake clock would
disagree with Prometheus's firing times. So quarter one runs for real, now, and right after its
suite step (before anything reads the runs) the test ages the new run folders by whole days into
the previous quarter: every date of the run in every file, the folder names, and the Prometheus
sample times in series.json move back together, monotonic times and durations stay as measured;
then `drillkit report` re-renders each report from the aged record. The result is what a run a
quarter ago would have left; the second quarter then runs on the real clock and its trends page
compares both.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from drillkit.history import quarter_of
from tests.ghrunner import JobResult, Runner, base_environment
from tests.helpers import run_cli
from tests.test_lab_up import free_block

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "drills.yml"
SCENARIO = "lab-high-latency"
# a shell-injection attempt as the owner input: through env: it is one literal argument
OWNER = 'sre"; touch "$GITHUB_WORKSPACE/pwned"; echo "$(touch pwned2)'
SLOWER_SUITE = (
    "# quarter two: high-latency's detection target tightened to what p95 cannot do (a missed target)\n"
    "drills:\n"
    "  - scenario: ../scenarios/lab/high-latency.yaml\n"
    "    overrides: {detection: {within: 1s}}\n"
    "  - scenario: ../scenarios/lab/database-exhaustion.yaml\n"
)
STEADY = "lab-database-exhaustion"


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def make_origin(tmp: Path) -> Path:
    """A bare repository holding the tree under test (its uncommitted edits included) on main."""
    src = tmp / "src"
    src.mkdir()
    tracked = git("ls-files", "-c", "-z", cwd=ROOT).split("\0")
    # new files not committed yet, but no tool caches (.hypothesis and the like)
    new = [n for n in git("ls-files", "-o", "--exclude-standard", "-z", cwd=ROOT).split("\0") if n[:1] != "."]
    for name in filter(None, tracked + new):
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    git("init", "-q", "-b", "main", cwd=src)
    git("-c", "user.name=t", "-c", "user.email=t@t", "add", "-A", cwd=src)
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "drillkit", cwd=src)
    origin = tmp / "origin.git"
    git("clone", "-q", "--bare", str(src), str(origin), cwd=tmp)
    return origin


def commit_to_origin(origin: Path, tmp: Path, path: str, text: str) -> None:
    work = tmp / "change"
    git("clone", "-q", str(origin), str(work), cwd=tmp)
    (work / path).parent.mkdir(parents=True, exist_ok=True)
    (work / path).write_text(text)
    git("add", path, cwd=work)
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", f"add {path}", cwd=work)
    git("push", "-q", "origin", "HEAD:main", cwd=work)
    shutil.rmtree(work)


def history_branch(origin: Path, tmp: Path) -> Path:
    out = tmp / "history-view"
    shutil.rmtree(out, ignore_errors=True)
    git("clone", "-q", "--branch", "drill-history", str(origin), str(out), cwd=tmp)
    return out


# --- ageing quarter one -----------------------------------------------------------------------


def days_back(now: datetime) -> int:
    """Whole days (91 or more) that move `now` into the previous quarter."""
    days = 91
    while quarter_of(now - timedelta(days=days)) == quarter_of(now):
        days += 1
    return days


def age_folder(folder: Path, days: int, run_dates: list[date]) -> Path:
    """Move one report folder `days` back: each date of the run in every file (RFC 3339 times,
    folder-name stamps, the dates of the pages), the folder's name, series.json's sample times."""
    swaps = {d.isoformat(): (d - timedelta(days=days)).isoformat() for d in run_dates}

    def aged(text: str) -> str:
        for old, new in swaps.items():
            text = text.replace(old, new)
        return text

    for f in folder.rglob("*"):
        if f.is_file():
            f.write_text(aged(f.read_text(encoding="utf-8")), encoding="utf-8")
    series = folder / "series.json"
    if series.exists():
        doc = json.loads(series.read_text())
        for q in doc["queries"]:
            for s in q["series"]:
                s["points"] = [[t - days * 86400, v] for t, v in s["points"]]
        series.write_text(json.dumps(doc))
    moved = folder.with_name(aged(folder.name))
    folder.rename(moved)
    return moved


def age_new_runs(reports: Path, days: int, outputs: dict[str, str]) -> list[Path]:
    """Every folder in `reports` aged (quarter one restores nothing), each run's report re-rendered
    from its aged record; the suite step's output follows its folder."""
    today = datetime.now(UTC).date()
    run_dates = [today, today - timedelta(days=1)]  # a run that started before midnight
    moved = []
    for folder in sorted(p for p in reports.iterdir() if p.is_dir()):
        new = age_folder(folder, days, run_dates)
        for key, value in outputs.items():
            outputs[key] = value.replace(str(folder), str(new))
        moved.append(new)
    for folder in moved:
        if (folder / "journal.jsonl").exists():
            r = run_cli("report", str(folder), timeout=120)
            assert r.returncode == 0, f"re-rendering {folder.name}: {r.stderr}"
    leftovers = [
        f for m in moved for f in m.rglob("*") if f.is_file() and any(d.isoformat() in f.read_text() for d in run_dates)
    ]
    assert not leftovers, f"dates of the real run left in the aged folders: {leftovers}"
    return moved


# --- the two quarters ---------------------------------------------------------------------------


def run_quarter(
    origin: Path, root: Path, run_id: str, inputs: dict[str, Any], port: int, after_suite: Any = None
) -> tuple[Runner, JobResult, JobResult]:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    env = base_environment() | {"DRILLKIT_LAB_BASE_PORT": str(port)}

    def hook(job: str, step: str, workspace: Path, outputs: dict[str, str]) -> None:
        if after_suite and job == "drills" and step == "suite":
            after_suite(workspace / "reports", outputs)

    runner = Runner(workflow, origin, root, run_id, inputs, base_env=env, after_step=hook)
    try:
        drills = runner.run_job("drills", {})
    finally:  # whatever happened, no lab is left running
        lab_dir = root / "drills" / "ws" / ".drillkit" / "lab"
        if lab_dir.exists():
            run_cli("lab", "down", "--dir", str(lab_dir), timeout=120)
    history = runner.run_job("history", {"drills": drills})
    return runner, drills, history


def log(runner: Runner) -> str:
    return "\n".join(runner.log)[-12000:]


def strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return [value] if isinstance(value, str) else []


@pytest.mark.timeout(1800)
def test_two_quarters_of_the_workflow_keep_and_compare_their_history(tmp_path_factory: pytest.TempPathFactory) -> None:
    tmp = tmp_path_factory.mktemp("wf")
    origin = make_origin(tmp)
    port = free_block()
    now = datetime.now(UTC)
    days = days_back(now)
    q_then, q_now = quarter_of(now - timedelta(days=days)), quarter_of(now)

    # Quarter one (the first run ever: no drill-history branch yet), its runs aged a quarter back.
    aged: list[Path] = []
    both = "scenarios/lab/high-latency.yaml  scenarios/lab/database-exhaustion.yaml"  # split on spaces
    q1_inputs = {"scenarios": both, "owner": OWNER, "fail_on_regression": False}
    runner, drills, history = run_quarter(
        origin, tmp / "q1", "1001", q1_inputs, port, lambda reports, out: aged.extend(age_new_runs(reports, days, out))
    )
    assert drills.result == "success", f"quarter one's drills job: {drills.result}\n{log(runner)}"
    assert drills.step("earlier").outcome == "failure", "the branch does not exist yet: that checkout fails"
    assert f"127.0.0.1:{port}" in "\n".join(runner.log), "lab up took its ports from DRILLKIT_LAB_BASE_PORT"
    assert drills.outputs == {"pages": "true"}
    assert history.result == "success", f"quarter one's history job: {history.result}\n{log(runner)}"
    ws = drills.workspace
    assert not (ws / "pwned").exists() and not (ws / "pwned2").exists(), "the owner input ran as shell"
    run_folders = [f for f in aged if (f / "journal.jsonl").exists()]
    assert len(run_folders) == 2, aged
    report = json.loads((run_folders[0] / "report.json").read_text())
    assert OWNER in strings(report), (
        f"the owner input reached the report as one literal string: {report.get('action_items')}"
    )
    assert runner.checks and runner.checks[0][1] > 0 and not runner.checks[0][2], runner.checks

    branch = history_branch(origin, tmp)
    assert (branch / ".nojekyll").exists() and not (branch / "drillkit").exists(), "the branch holds history only"
    t1 = json.loads((branch / "trends.json").read_text())
    assert t1["quarters"] == [q_then], f"quarter one aged into {q_then}: {t1['quarters']}"

    # Quarter two: a tightened target misses, the run opts in to failing on a regression.
    commit_to_origin(origin, tmp, "drills/slower.suite.yaml", SLOWER_SUITE)
    q2_inputs = {"scenarios": "drills/slower.suite.yaml", "owner": "sre-oncall", "fail_on_regression": True}
    runner, drills, history = run_quarter(origin, tmp / "q2", "1002", q2_inputs, port)
    steps = {s.name: s.outcome for s in drills.steps}
    assert steps["earlier"] == "success" and steps["restore"] == "success", steps
    assert steps["suite"] == "failure" and drills.step("suite").outputs["exit_code"] == "1", steps
    assert steps["pages"] == "success", f"{steps}\n{log(runner)}"
    assert steps["Fail on a regression against the previous quarter (opt-in)"] == "failure", steps
    assert drills.result == "failure" and history.result == "success", (
        f"{drills.result} {history.result}\n{log(runner)}"
    )
    assert "regression: scenario lab-high-latency: pass rate 100% → 0%" in log(runner), log(runner)
    assert runner.checks and runner.checks[0][2], "the JUnit results carry the missed target"

    branch = history_branch(origin, tmp)
    t2 = json.loads((branch / "trends.json").read_text())
    assert t2["quarters"] == [q_then, q_now], t2["quarters"]
    cells = {c["quarter"]: c for c in t2["by_scenario"][SCENARIO]}
    assert (cells[q_then]["passed"], cells[q_now]["passed"]) == (1, 0), cells
    steady = {c["quarter"]: c["passed"] for c in t2["by_scenario"][STEADY]}
    assert steady == {q_then: 1, q_now: 1}, steady
    assert any(r["what"] == "pass rate" and r["previous"] == q_then for r in t2["regressions"]), t2["regressions"]
    page = (branch / "trends.md").read_text()
    assert f"| `{SCENARIO}` | {q_then} |" in page and f"| `{SCENARIO}` | {q_now} |" in page, page
    pages = {name: (branch / name).read_text() for name in ("trends.md", "trends.html", "trends.json")}
    assert not [n for n, text in pages.items() if str(tmp) in text], "no temp path in the published pages"
    assert len(git("log", "--format=%s", cwd=branch).splitlines()) == 2, "one commit per run on the branch"
    assert len([p for p in branch.iterdir() if (p / "journal.jsonl").exists()]) == 4
    assert "Drill trends" in drills.summary and "drill-history/trends.md" in history.summary, history.summary
    print("\n".join(runner.timings))  # quarter two's step times (pytest -s)
    example = os.environ.get("DRILLKIT_CI_EXAMPLE_DIR")  # docs/examples/ci-history is made this way
    if example:
        Path(example).mkdir(parents=True, exist_ok=True)
        for name, text in pages.items():
            Path(example, name).write_text(text)
