"""Scenario loading: good input builds typed objects; bad input is one located line."""

from __future__ import annotations

from pathlib import Path

import pytest

from drillkit.errors import ScenarioError
from drillkit.model import Comparator, Count, format_duration, parse_duration
from drillkit.scenario import AckSource, Severity, load_scenario

GOOD = """\
name: api-kill
title: API process killed
incident: service-outage
severity: P2
description: The API process dies.
target:
  local: {}
guardrails:
  max_targets: 50%
  abort_when:
    - expr: sum(up) == 0
steady_state:
  - name: api up
    expr: up{job="api"}
    expect: ">= 1"
faults:
  - kind: process-kill
    pattern: "demo-api"
    count: 1
    restart: [/bin/true]
detection:
  alert: ApiDown
  labels: {severity: P2}
  within: 5m
response:
  acknowledge: command
recovery:
  within: 1h30m
  action: revert
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "drill.yaml"
    p.write_text(text)
    return p


def test_good_scenario_loads_typed(tmp_path: Path) -> None:
    sc = load_scenario(write(tmp_path, GOOD))
    assert sc.severity is Severity.P2
    assert sc.response.acknowledge is AckSource.COMMAND
    assert sc.detection.within == 300.0
    assert sc.recovery.within == 5400.0
    assert sc.guardrails.max_targets == Count(50, percent=True)
    assert sc.steady_state[0].expect == Comparator(">=", 1.0)
    assert sc.faults[0].kind == "process-kill"
    assert sc.faults[0].params.pattern == "demo-api"
    assert sc.faults[0].params.restart == ("/bin/true",)


# (replace this, with that, expected line, expected key path, expected words in the message)
BAD = [
    ("severity: P2", "severity: P5", 4, "severity", "expected one of P1, P2, P3, P4"),
    ("severity: P2", "severty: P2", 4, "severty", "did you mean 'severity'"),
    ("incident: service-outage", "incident: outage", 3, "incident", "expected one of service-outage"),
    ("name: api-kill", "name: API Kill", 1, "", "lowercase slug"),
    ("title: API process killed\n", "", 1, "title", "required key is missing"),
    ("  local: {}", "  local: {}\n  kubernetes: {namespace: x}", 6, "target", "exactly one of"),
    ("  local: {}", "  locl: {}", 7, "target.locl", "did you mean 'local'"),
    ("  max_targets: 50%", "  max_targets: half", 9, "guardrails.max_targets", "percentage"),
    ("  max_targets: 50%", "  max_targets: 150%", 9, "guardrails.max_targets", "percentage"),
    ("  max_targets: 50%", "  max_targets: 0", 9, "guardrails.max_targets", "positive integer"),
    ("    - expr: sum(up) == 0", "    - exp: sum(up) == 0", 11, "guardrails.abort_when[0].exp", "did you mean 'expr'"),
    ('    expect: ">= 1"', '    expect: "about 1"', 15, "steady_state[0].expect", "comparison"),
    ('    expect: ">= 1"', '    expect: "=> 1"', 15, "steady_state[0].expect", "comparison"),
    ('    expect: ">= 1"', "    expect: true", 15, "steady_state[0].expect", "comparison"),
    ('    expr: up{job="api"}\n', "", 13, "steady_state[0].expr", "required key is missing"),
    ("  - kind: process-kill", "  - kind: proces-kill", 17, "faults[0].kind", "did you mean 'process-kill'"),
    ("  - kind: process-kill", "  - kind: teleport", 17, "faults[0].kind", "unknown fault kind"),
    ("  - kind: process-kill", "  - kind: [process-kill]", 17, "faults[0].kind", "expected a fault kind name"),
    ("  within: 5m", "  within: .nan", 24, "detection.within", "finite duration"),
    ('    pattern: "demo-api"', '    pattern: "demo-api"\n    pidfile: /x.pid', 17, "faults[0]", "exactly one of"),
    ('    pattern: "demo-api"', '    pattern: "(unclosed"', 17, "faults[0]", "regular expression"),
    ("    count: 1", "    count: two", 19, "faults[0].count", "positive integer"),
    ("    count: 1", "    cont: 1", 19, "faults[0].cont", "did you mean 'count'"),
    ("    restart: [/bin/true]", "    restart: /bin/true", 20, "faults[0].restart", "expected a list"),
    ("  within: 5m", "  within: 5 minutes", 24, "detection.within", "duration like 90s"),
    ("  within: 5m", "  within: -5", 24, "detection.within", "non-negative"),
    ("  within: 1h30m", "  within: 1h30", 28, "recovery.within", "duration like"),
    ("  acknowledge: command", "  acknowledge: pager", 26, "response.acknowledge", "prompt, command"),
    ("  action: revert", "  action: pray", 29, "recovery.action", "expected one of wait, revert"),
    ("  alert: ApiDown", "  alert: ''", 22, "detection.alert", "non-empty string"),
    ("  labels: {severity: P2}", "  labels: [P2]", 23, "detection.labels", "expected a mapping"),
    (
        'faults:\n  - kind: process-kill\n    pattern: "demo-api"\n    count: 1\n    restart: [/bin/true]\n',
        "faults: []\n",
        16,
        "faults",
        "non-empty list",
    ),
    ("steady_state:", "steady_state: []\nx_steady:", 12, "steady_state", "non-empty list"),
    ("response:\n", "response:\n  acknowledge: auto\n", 27, "", "duplicate key 'acknowledge'"),
    ("name: api-kill", "name: [api", 2, "", "invalid YAML"),
    ("  local: {}", "  local: {lab_dir: [a]}", 7, "target.local.lab_dir", "non-empty string"),
    ("    restart: [/bin/true]", "    restart: &r\n      - *r", 20, "", "unconstructable recursive node"),
]


@pytest.mark.parametrize(
    ("old", "new", "line", "path", "words"), BAD, ids=[f"{b[3] or 'top'}-{i}" for i, b in enumerate(BAD)]
)
def test_bad_scenario_is_one_located_line(tmp_path: Path, old: str, new: str, line: int, path: str, words: str) -> None:
    assert old in GOOD, f"test table out of date: {old!r}"
    p = write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(ScenarioError) as info:
        load_scenario(p)
    msg = str(info.value)
    assert "\n" not in msg, msg
    assert msg.startswith(f"{p}:{line}: "), f"expected line {line}: {msg}"
    if path:
        assert f": {path}: " in msg, f"expected key path {path!r}: {msg}"
    assert words in msg, msg


def test_bad_inputs_table_is_large_and_distinct() -> None:
    assert len({(b[0], b[1]) for b in BAD}) >= 25


def test_fault_kind_must_match_target(tmp_path: Path) -> None:
    text = GOOD.replace("  local: {}", "  kubernetes: {namespace: chatbot}")
    p = write(tmp_path, text)
    with pytest.raises(ScenarioError, match=r"faults\[0\]\.kind: fault 'process-kill' needs a `local` target"):
        load_scenario(p)


def test_unsafe_yaml_tags_are_refused(tmp_path: Path) -> None:
    p = write(tmp_path, GOOD.replace("title: API process killed", "title: !!python/object/apply:os.system [id]"))
    with pytest.raises(ScenarioError, match="invalid YAML"):
        load_scenario(p)


def test_missing_file_and_top_level_list(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="cannot read file"):
        load_scenario(tmp_path / "nope.yaml")
    with pytest.raises(ScenarioError, match="expected a mapping at the top level"):
        load_scenario(write(tmp_path, "- a\n- b\n"))


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("5m", 300),
        ("1h30m", 5400),
        ("500ms", 0.5),
        ("2d", 172800),
        ("1w", 604800),
        ("1.5s", 1.5),
        (30, 30),
        (0, 0),
        ("1h0m5s", 3605),
    ],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "bad", ["", "5", "5 m", "m5", "5mins", "1h30", "-5s", True, "5s5", float("nan"), float("inf"), -1]
)
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


def test_format_duration() -> None:
    assert format_duration(None) == "-"
    assert format_duration(2.345) == "2.35s"
    assert format_duration(3725) == "1h2m5s"
    assert format_duration(-90) == "-1m30s"


@pytest.mark.parametrize(
    ("expr", "value", "holds"),
    [
        (">= 3", 3, True),
        (">= 3", 2.99, False),
        ("> 3", 3, False),
        ("< 0.05", 0.049, True),
        ("<= 0", 0, True),
        ("== 1", 1.0, True),
        ("!= 1", 1, False),
        ("> -1", 0, True),
        ("< 1e-3", 0.0001, True),
    ],
)
def test_comparators(expr: str, value: float, holds: bool) -> None:
    assert Comparator.parse(expr).holds(value) is holds


@pytest.mark.parametrize(
    ("raw", "total", "allowed"),
    [(2, 10, 2), ("50%", 3, 1), ("50%", 10, 5), ("100%", 4, 4), ("10%", 3, 1), ("10%", 0, 0)],
)
def test_counts(raw: object, total: int, allowed: int) -> None:
    assert Count.parse(raw).of(total) == allowed


# --- ${...} variables ----------------------------------------------------------------------------


def test_env_variables_are_substituted_then_typed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRILL_COUNT", "2")
    monkeypatch.setenv("DRILL_PATTERN", "demo-api")
    monkeypatch.delenv("DRILL_UNSET", raising=False)
    text = (
        GOOD.replace('pattern: "demo-api"', "pattern: ${env.DRILL_PATTERN}")
        .replace("count: 1", "count: ${env.DRILL_COUNT}")
        .replace(
            "description: The API process dies.", "description: ${env.DRILL_UNSET:-nobody set it} $${env.DRILL_COUNT}"
        )
    )
    sc = load_scenario(write(tmp_path, text))
    params = sc.faults[0].params
    assert params.pattern == "demo-api"  # type: ignore[attr-defined]
    assert params.count == Count(2, False), params.count  # type: ignore[attr-defined]  # an int again
    assert sc.description == "nobody set it ${env.DRILL_COUNT}", sc.description


@pytest.mark.parametrize(
    ("pattern_line", "message"),
    [
        (
            "pattern: x-${env.DRILL_UNSET}",
            "faults[0].pattern: ${env.DRILL_UNSET} is not set (give a default: ${env.DRILL_UNSET:-value})",
        ),
        ("pattern: ${lab.nope}", "faults[0].pattern: ${lab.nope}: no such lab variable"),
        ("pattern: ${lab.port.api-7}", "faults[0].pattern: ${lab.port.api-7}: the lab in"),
        ("pattern: ${HOME:-x}", "faults[0].pattern: ${HOME}: not a variable: expected env.NAME"),
        ("pattern: ${env.A:-${env.B}}", "faults[0].pattern: a `${` without its `}` or with another `${` inside"),
        ("pattern: ab${env.A", "faults[0].pattern: a `${` without its `}`"),
    ],
)
def test_a_bad_variable_is_one_located_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pattern_line: str, message: str
) -> None:
    monkeypatch.delenv("DRILL_UNSET", raising=False)
    monkeypatch.chdir(tmp_path)  # no lab here: the default layout (2 API replicas)
    path = write(tmp_path, GOOD.replace('pattern: "demo-api"', pattern_line))
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}:18: {message}"), msg
    assert "\n" not in msg


def test_substituted_text_stays_text_where_a_string_is_expected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`1.10`, `0123`, `no` or a date from a variable are the same text in a string field (no
    YAML re-typing); typed fields parse the text; anchors are substituted once."""
    monkeypatch.setenv("DRILL_TAG", "1.10")
    text = GOOD.replace('pattern: "demo-api"', "pattern: &p v${env.DRILL_TAG}-$${literal}")
    text = text.replace("restart: [/bin/true]", "restart:\n      - ${env.DRILL_TAG}\n      - *p")
    for value in ("1.10", "0123", "no", "2024-01-01"):
        monkeypatch.setenv("DRILL_TAG", value)
        params = load_scenario(write(tmp_path, text)).faults[0].params
        assert params.restart == (value, f"v{value}-${{literal}}"), params.restart  # type: ignore[attr-defined]
        assert params.pattern == f"v{value}-${{literal}}"  # type: ignore[attr-defined]
    monkeypatch.setenv("DRILL_COUNT", "three")
    with pytest.raises(ScenarioError, match=r":19: faults\[0\]\.count: expected a positive integer .*'three'"):
        load_scenario(write(tmp_path, GOOD.replace("count: 1", "count: ${env.DRILL_COUNT}")))


def _fake_lab(lab_dir: Path, base: int, replicas: int, urls: dict[str, str] | None = None) -> None:
    """A lab state file as `drillkit lab up --base-port BASE --replicas N` writes it."""
    from drillkit.lab.lab import LabState
    from drillkit.lab.layout import Ports

    lab_dir.mkdir(parents=True)
    LabState(
        dir=str(lab_dir),
        base_port=base,
        replicas=replicas,
        ports=Ports.layout(base, replicas),
        urls=urls or {},
        dsn="",
        dsn_direct="",
        dsn_admin="",
        pg_root="",
        pg_user=None,
        jwt_secret_file="",
        latency_file="",
        pid_files={},
    ).save()


def test_lab_scenarios_follow_the_lab_in_drillkit_lab_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The shipped lab scenarios name no port or path: a lab on other ports, in another
    directory, is drilled with the same files."""
    root = Path(__file__).resolve().parents[1] / "scenarios" / "lab"
    monkeypatch.chdir(tmp_path)  # no .drillkit/lab here: the default layout
    latency = load_scenario(root / "high-latency.yaml").faults[0].params
    assert (latency.proxy_port, latency.control) == (19093, str(tmp_path / ".drillkit/lab/latency.json"))  # type: ignore[attr-defined]
    lab_dir = tmp_path / "elsewhere" / "lab"
    _fake_lab(lab_dir, 25000, 3)
    monkeypatch.setenv("DRILLKIT_LAB_DIR", str(lab_dir))
    latency = load_scenario(root / "high-latency.yaml").faults[0].params
    assert (latency.proxy_port, latency.control) == (25003, f"{lab_dir}/latency.json")  # type: ignore[attr-defined]
    leak = load_scenario(root / "memory-leak.yaml")
    assert leak.target.local is not None and leak.target.local.lab_dir == str(lab_dir)
    assert leak.faults[0].params.leak_url.startswith("http://127.0.0.1:25010/")  # type: ignore[attr-defined]
    db = load_scenario(root / "database-exhaustion.yaml").faults[0].params
    assert "@127.0.0.1:25002/" in db.dsn, db.dsn  # type: ignore[attr-defined]
    auth = load_scenario(root / "auth-failures.yaml").faults[0].params
    assert auth.pidfiles == (f"{lab_dir}/api-1.pid", f"{lab_dir}/api-2.pid")  # type: ignore[attr-defined]


def test_the_lab_dir_default_follows_drillkit_lab_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`drillkit run` of a local drill (and the demo) find the lab's Prometheus there."""
    from drillkit.lab.lab import lab_url

    monkeypatch.chdir(tmp_path)
    assert lab_url("prometheus") is None  # no lab in ./.drillkit/lab
    _fake_lab(tmp_path / "lab2", 21000, 2, urls={"prometheus": "http://127.0.0.1:21000"})
    monkeypatch.setenv("DRILLKIT_LAB_DIR", str(tmp_path / "lab2"))
    assert lab_url("prometheus") == "http://127.0.0.1:21000"
