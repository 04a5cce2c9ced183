"""The bad-input corpus (tests/data/bad/): every scenario, policy and journal there is refused
with exit 2 and one located line — no traceback, no hang — and the loader survives fuzzing."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drillkit.cli import main
from drillkit.errors import ScenarioError
from drillkit.scenario import load_scenario

BAD = Path(__file__).parent / "data" / "bad"
GOOD = Path(__file__).parent / "data" / "exporter-kill.yaml"
LOCATED = re.compile(r"^drillkit: (?P<file>[^:]+):(?P<line>\d+): ")


def _expect(path: Path) -> str:
    if path.is_dir():
        return (path / "expect.txt").read_text().strip()
    first = path.read_bytes().split(b"\n")[0].decode()  # the rest of the file may not be UTF-8
    assert first.startswith("# expect: "), f"{path} must start with '# expect: <message part>'"
    return first.removeprefix("# expect: ")


def _refused(args: list[str], path: Path, tmp_path: Path) -> None:
    started = time.monotonic()
    r = CliRunner().invoke(main, args)
    took = time.monotonic() - started
    assert isinstance(r.exception, SystemExit) and r.exit_code == 2, (r.exit_code, r.stderr, r.exception)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got {lines}"
    m = LOCATED.match(lines[0])
    assert m and Path(m["file"]).name in (path.name, "journal.jsonl"), f"not located: {lines[0]}"
    assert _expect(path) in lines[0], lines[0]
    assert "Traceback" not in r.output and took < 2.0, (took, r.output)
    assert not list(tmp_path.glob("*/journal.jsonl")), "bad input must not start a run"


CORPUS = sorted(p for p in BAD.iterdir() if p.name != "journals")  # journals/: tests/test_cleanup_trust.py


def test_the_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 40, len(CORPUS)
    assert {p.name.split("-")[0] for p in CORPUS} == {"scenario", "policy", "journal"}


@pytest.mark.parametrize("path", [p for p in CORPUS if p.name.startswith("scenario-")], ids=lambda p: p.stem)
def test_bad_scenarios(path: Path, tmp_path: Path) -> None:
    _refused(["run", str(path), "--dry-run", "--report-dir", str(tmp_path)], path, tmp_path)


@pytest.mark.parametrize("path", [p for p in CORPUS if p.name.startswith("policy-")], ids=lambda p: p.stem)
def test_bad_policies(path: Path, tmp_path: Path) -> None:
    _refused(["run", str(GOOD), "--policy", str(path), "--report-dir", str(tmp_path)], path, tmp_path)


@pytest.mark.parametrize("path", [p for p in CORPUS if p.name.startswith("journal-")], ids=lambda p: p.name)
def test_bad_journals(path: Path, tmp_path: Path) -> None:
    _refused(["report", str(path)], path, tmp_path)


_yaml_text = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20)),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(junk=st.text(max_size=300), key=st.sampled_from(GOOD.read_text().splitlines()))
def test_fuzzed_text_is_a_located_error_or_a_scenario(tmp_path: Path, junk: str, key: str) -> None:
    """Arbitrary text spliced into a good scenario: a Scenario or a ScenarioError, nothing else."""
    path = tmp_path / "fuzz.yaml"
    path.write_text(GOOD.read_text().replace(key, junk, 1), encoding="utf-8", errors="surrogatepass")
    try:
        load_scenario(path)
    except ScenarioError as exc:
        assert str(exc).startswith(str(path)), str(exc)


@settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=_yaml_text, field=st.sampled_from(["detection", "faults", "steady_state", "target", "severity", "name"]))
def test_fuzzed_values_are_a_located_error_or_a_scenario(tmp_path: Path, value: object, field: str) -> None:
    """Any YAML value in any top-level field: a Scenario or a located ScenarioError."""
    import yaml

    data = yaml.safe_load(GOOD.read_text())
    data[field] = value
    path = tmp_path / "fuzz.yaml"
    path.write_text(yaml.safe_dump(data))
    try:
        load_scenario(path)
    except ScenarioError as exc:
        assert re.match(rf"{re.escape(str(path))}:\d+: ", str(exc)), str(exc)
