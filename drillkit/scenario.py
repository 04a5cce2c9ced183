"""The drill scenario format: frozen dataclasses, the loader, and its JSON Schema.

A scenario says what incident to inject, what "healthy" means (steady-state probes), which
alert must catch it, how the response is acknowledged and which targets apply. Loading is the
only place YAML is touched; everything past it is typed.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from drillkit.errors import ScenarioError
from drillkit.matchers import LabelMatcher, parse_labels
from drillkit.model import (
    Comparator,
    Count,
    LocMap,
    PositiveDuration,
    Where,
    build,
    dataclass_schema,
    doc,
    load_yaml,
)


class Severity(StrEnum):
    """The playbook's severity levels."""

    P1 = "P1"
    P2 = "P2"
    P3 = "P3"
    P4 = "P4"


class Incident(StrEnum):
    """The playbook's common incidents (plus `other` for ad hoc experiments)."""

    SERVICE_OUTAGE = "service-outage"
    HIGH_LATENCY = "high-latency"
    AUTH_FAILURE = "auth-failure"
    DATABASE = "database"
    MEMORY_LEAK = "memory-leak"
    OTHER = "other"


class AckSource(StrEnum):
    """Where the acknowledgement comes from: a person at the terminal, another shell,
    Alertmanager (a silence), or automatically at detection (unattended CI runs)."""

    PROMPT = "prompt"
    COMMAND = "command"
    ALERTMANAGER = "alertmanager"
    AUTO = "auto"


class RecoveryAction(StrEnum):
    """How service is restored: wait for self-healing / human mitigation, or revert the fault."""

    WAIT = "wait"
    REVERT = "revert"


@dataclass(frozen=True)
class Probe:
    """A steady-state check: the PromQL result must satisfy `expect` (every sample)."""

    name: str = doc("what healthy means, in words, e.g. every API replica is up")
    expr: str = doc("PromQL, run as an instant query; it must return at least one sample")
    expect: Comparator = doc('comparison every sample must satisfy, e.g. ">= 3"')


@dataclass(frozen=True)
class AbortCondition:
    """A PromQL expression that, when it returns any sample, aborts the drill (and reverts)."""

    expr: str = doc("PromQL; the drill stops and reverts as soon as it returns any sample")
    name: str = doc("what the condition means, for the report", default="")


@dataclass(frozen=True)
class KubernetesTarget:
    """A Kubernetes namespace reached through a kubeconfig context."""

    namespace: str
    context: str | None = doc("kubeconfig context; must be allowed (kind-* by default)", default=None)


@dataclass(frozen=True)
class LocalTarget:
    """Processes on this host (the embedded lab, or anything you run locally)."""

    lab_dir: str | None = doc(
        "state directory of `drillkit lab` (default $DRILLKIT_LAB_DIR, else .drillkit/lab)", default=None
    )


@dataclass(frozen=True)
class Target:
    """What the drill breaks: a Kubernetes namespace or this host (exactly one)."""

    kubernetes: KubernetesTarget | None = None
    local: LocalTarget | None = None

    def __post_init__(self) -> None:
        if (self.kubernetes is None) == (self.local is None):
            raise ValueError("expected exactly one of `kubernetes` or `local`")


@dataclass(frozen=True)
class Guardrails:
    """Limits that keep the drill safe: blast radius, abort conditions, protected namespaces."""

    max_targets: Count = doc("blast radius: most targets one fault may touch", default=Count(50, True))
    abort_when: tuple[AbortCondition, ...] = ()
    allow_namespaces: tuple[str, ...] = doc("protected namespaces this drill may touch anyway", default=())


@dataclass(frozen=True)
class FaultSpec:
    """One fault: its kind and that kind's typed parameters."""

    kind: str
    params: Any
    line: int = 0


@dataclass(frozen=True)
class Detection:
    """The Prometheus alert that must catch the incident, and how fast."""

    alert: str = doc("name of the Prometheus alerting rule that must fire")
    labels: dict[str, str] = doc(
        "labels the firing alert must carry, matched against each rule's static labels (which rule of "
        "that name is drilled) and the alert's own: a value, or one starting with !=, =~ or !~, e.g. "
        '{severity: critical, instance: "=~db-.*"}',
        default_factory=dict,
    )
    within: PositiveDuration = doc("detection target: injected -> firing", default=300.0)

    def __post_init__(self) -> None:
        try:
            parse_labels(self.labels)
        except ValueError as exc:
            raise ValueError(f"labels: {exc}") from None

    @property
    def matchers(self) -> tuple[LabelMatcher, ...]:
        return parse_labels(self.labels)


@dataclass(frozen=True)
class Response:
    """How the page is acknowledged, and the response target."""

    acknowledge: AckSource = doc(
        "who acknowledges: auto (at detection, for CI), command (`drillkit ack`), prompt (a trainee at the "
        "terminal), alertmanager (a silence)",
        default=AckSource.AUTO,
    )
    within: PositiveDuration | None = doc("override the severity's response target", default=None)


@dataclass(frozen=True)
class Recovery:
    """How service comes back, and the mitigation target."""

    within: PositiveDuration = doc("mitigation target and deadline: injected -> steady state back", default=600.0)
    action: RecoveryAction = doc(
        "wait: for self-healing or people to mitigate; revert: drillkit's revert is the mitigation",
        default=RecoveryAction.WAIT,
    )
    verify_within: PositiveDuration = doc("deadline for steady state after the revert", default=120.0)


@dataclass(frozen=True)
class TargetOverrides:
    """Per-scenario overrides of the severity policy (see policy.py)."""

    resolve: PositiveDuration | None = None
    status_update_every: PositiveDuration | None = None
    status_page_within: PositiveDuration | None = None


@dataclass(frozen=True)
class Branch:
    """A runbook step that is only right in one situation ("If traffic spike, add capacity")."""

    when: str = doc("the situation, e.g. connection pool exhaustion")
    do: str = doc("what to do then, e.g. increase the pool size")
    applies: bool = doc(
        "this scenario's fault is that situation: a trainee who skipped it is asked about it", default=False
    )

    @property
    def text(self) -> str:
        return f"if {self.when}: {self.do}"


@dataclass(frozen=True)
class Runbook:
    """Trainee hints, from the playbook's common incidents: the initial response, the resolution,
    then the branches (numbered on in that order)."""

    initial_response: tuple[str, ...] = ()
    resolution: tuple[str, ...] = ()
    branches: tuple[Branch, ...] = doc("resolution steps for one situation each (`when:`)", default=())


@dataclass(frozen=True)
class Training:
    """How the scenario runs as an exercise (`drillkit train`)."""

    time_limit: PositiveDuration = doc(
        "how long the trainee has to restore service before drillkit reverts (a Wheel of Misfortune "
        "round is about 30 minutes); `train --time-limit` overrides it",
        default=1800.0,
    )
    close_out: PositiveDuration = doc(
        "once service is back, how long the exercise stays open to post `resolved` and declare the "
        "channel (the trainee ends it sooner with `done`)",
        default=300.0,
    )
    symptoms: tuple[str, ...] = doc(
        "what customer support reports, one picked at random (default: a few per incident type)", default=()
    )


@dataclass(frozen=True)
class Impact:
    """How users were hurt, measured from the platform's own metrics: after the drill, each query
    is fetched over the drill window (query_range) and summed into failed requests, the error
    rate and how long users were affected, for the post-mortem's Impact."""

    errors: str = doc(
        'PromQL: failed requests per second, e.g. sum(rate(http_requests_total{code=~"5.."}[1m])); '
        "no data counts as none failed"
    )
    requests: str = doc("PromQL: all requests per second, for the error rate", default="")
    threshold: float = doc(
        "users count as affected while failed / all requests is above this ratio (0 to 1), or, "
        "without `requests`, while failures per second are above it",
        default=0.0,
    )

    def __post_init__(self) -> None:
        if self.requests and not 0 <= self.threshold < 1:
            raise ValueError(f"threshold: expected a ratio from 0 to 1 (0.05 is 5%), got {self.threshold:g}")
        if self.threshold < 0:
            raise ValueError(f"threshold: expected 0 or more failures per second, got {self.threshold:g}")


_NAME_RE = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


@dataclass(frozen=True)
class Scenario:
    """A drill scenario (see scenarios/ and `drillkit schema`)."""

    name: str = doc("short lowercase name (letters, digits, dashes), used in report folder names")
    title: str = doc("the incident's title, as in the post-mortem heading")
    severity: Severity = doc("playbook severity P1-P4: picks the acknowledge, resolve and status-update targets")
    target: Target = doc("what the drill breaks")
    detection: Detection = doc("the alert that must fire")
    steady_state: tuple[Probe, ...] = doc("probes that must hold before the drill and again after the revert")
    faults: tuple[FaultSpec, ...] = field(default=(), metadata={"internal": True})
    incident: Incident = doc("the playbook's incident type, for the report and trends", default=Incident.OTHER)
    description: str = doc("what happens to users during the drill (the post-mortem's impact)", default="")
    guardrails: Guardrails = Guardrails()
    response: Response = Response()
    recovery: Recovery = Recovery()
    targets: TargetOverrides = TargetOverrides()
    runbook: Runbook = Runbook()
    training: Training = Training()
    impact: Impact | None = doc("queries that measure the harm to users (failed requests, error rate)", default=None)
    channel: str = doc(
        "short description for the incident channel #incident-{date}-{short-description} (default: the name)",
        default="",
    )
    path: str = field(default="", metadata={"internal": True})
    exercise: bool = field(default=False, metadata={"internal": True})  # run by `drillkit train`

    def __post_init__(self) -> None:
        if not _NAME_RE.fullmatch(self.name):
            raise ValueError(f"name: expected a lowercase slug like pod-kill-api, got {self.name!r}")
        if self.channel and not _NAME_RE.fullmatch(self.channel):
            raise ValueError(f"channel: expected a lowercase slug like api-down (a Slack name), got {self.channel!r}")

    @property
    def target_kind(self) -> str:
        return "kubernetes" if self.target.kubernetes else "local"


def _build_fault(raw: object, where: Where, target: str) -> FaultSpec:
    from drillkit.faults import catalogue, fault_class, registry

    if not isinstance(raw, dict) or "kind" not in raw:
        raise where.error("expected a mapping with a `kind`")
    kind = raw["kind"]
    if not isinstance(kind, str):
        raise where.key(raw, "kind").error(f"expected a fault kind name, got {kind!r}")
    try:
        cls = fault_class(kind, target)
    except KeyError:  # the slow path: every target and plugin, for a helpful message
        kinds = registry(target)
        other = next((t for t, ks in sorted(catalogue().items()) if kind in ks), None)
        if other:
            raise where.key(raw, "kind").error(
                f"fault {kind!r} needs a `{other}` target, but the scenario's target is `{target}`"
            ) from None
        import difflib  # only for an error: a valid file never needs it

        near = difflib.get_close_matches(str(kind), list(kinds), n=1)
        hint = f"did you mean {near[0]!r}?" if near else f"known kinds: {', '.join(sorted(kinds))}"
        raise where.key(raw, "kind").error(f"unknown fault kind {kind!r}; {hint}") from None
    params: Any = build(cls.Params, raw, where, skip=frozenset({"kind"}))
    return FaultSpec(kind=kind, params=params, line=where.line)


def variable(name: str) -> str | None:
    """What `${name}` in a scenario stands for: `env.NAME` is an environment variable,
    `lab.dir` / `lab.port.<component>` describe the local lab (see `drillkit.lab.layout`)."""
    if name.startswith("env.") and len(name) > 4:
        return os.environ.get(name.removeprefix("env."))
    if name.startswith("lab."):
        from drillkit.lab.layout import lab_variable

        return lab_variable(name)
    raise ValueError("not a variable: expected env.NAME (an environment variable), lab.dir or lab.port.<component>")


def _merged(base: Any, overrides: Mapping[str, Any]) -> Any:
    """`base` with `overrides` merged in, mapping by mapping (a suite's per-drill overrides);
    lists and scalars are replaced whole. Keys keep the base's line numbers where they exist."""
    if not isinstance(base, dict):
        return overrides
    out = LocMap(base)
    out.line, out.key_lines = getattr(base, "line", 1), dict(getattr(base, "key_lines", {}))
    for key, value in overrides.items():
        out[key] = _merged(base[key], value) if isinstance(value, Mapping) and key in base else value
    return out


def load_scenario(path: str | Path, overrides: Mapping[str, Any] | None = None) -> Scenario:
    """Load and validate one scenario file (`${…}` variables resolved, see `variable`), with a
    suite's `overrides` (a partial scenario) merged in before validation."""
    p = Path(path)
    data = load_yaml(p, variable)
    where = Where(str(p), getattr(data, "line", 1), "")
    if not isinstance(data, dict):
        raise where.error("expected a mapping at the top level of a scenario")
    if overrides:
        data = _merged(data, overrides)
    faults_raw = data.get("faults")
    if not isinstance(faults_raw, list) or not faults_raw:
        raise where.key(data, "faults").error("expected a non-empty list of faults")
    fw = where.key(data, "faults")
    raw_target = data.get("target")
    given = [t for t in ("kubernetes", "local") if isinstance(raw_target, dict) and t in raw_target]
    if len(given) != 1:  # report the target problem first: fault kinds depend on the target
        build(Scenario, data, where, skip=frozenset({"faults"}))
    target = given[0] if given else "local"
    faults = tuple(_build_fault(f, fw.item(faults_raw, i), target) for i, f in enumerate(faults_raw))
    steady = data.get("steady_state")
    if not isinstance(steady, list) or not steady:
        raise where.key(data, "steady_state").error("expected a non-empty list of probes")
    scenario = build(Scenario, data, where, skip=frozenset({"faults"}))
    return dataclasses.replace(scenario, faults=faults, path=str(p))


@dataclass(frozen=True)
class QuerySite:
    """A PromQL expression of a scenario and where it is written, for authoring checks."""

    where: Where
    expr: str
    needs_data: bool  # a probe must return samples; an abort condition normally returns none


def query_sites(scenario: Scenario) -> list[QuerySite]:
    """Every PromQL expression of the scenario with its file, line and key path (the file is
    read again for the lines; the typed scenario keeps none)."""
    p = Path(scenario.path)
    data = load_yaml(p, variable)
    top = Where(str(p), getattr(data, "line", 1), "")
    sites = []
    sections: list[tuple[str, list[str], bool]] = [
        ("steady_state", [p.expr for p in scenario.steady_state], True),
        ("guardrails.abort_when", [c.expr for c in scenario.guardrails.abort_when], False),
    ]
    for section, exprs, needs in sections:
        node, where = data, top
        for key in section.split("."):
            node, where = node.get(key, {}), where.key(node, key)
        for i, expr in enumerate(exprs):
            raw = node[i] if isinstance(node, list) and i < len(node) else {}
            sites.append(QuerySite(where.item(node, i).key(raw, "expr"), expr, needs))
    if scenario.impact is not None:  # failures may have no series yet; all requests must
        node = data.get("impact", {})
        impact = scenario.impact
        for key, expr, needs in (("errors", impact.errors, False), ("requests", impact.requests, True)):
            if expr:
                sites.append(QuerySite(top.key(data, "impact").key(node, key), expr, needs))
    return sorted(sites, key=lambda s: s.where.line)


def detection_sites(scenario: Scenario) -> dict[str, Where]:
    """Where `detection.alert`, `.within`, `.labels` and each `labels.<name>` are written, for
    the checks of the alert before a drill (the file is read again, as in `query_sites`)."""
    data = load_yaml(Path(scenario.path), variable)
    top = Where(scenario.path, getattr(data, "line", 1), "")
    node = data.get("detection", {}) if isinstance(data, dict) else {}
    det = top.key(data, "detection")
    out = {key: det.key(node, key) for key in ("alert", "within", "labels")}
    labels = node.get("labels", {}) if isinstance(node, dict) else {}
    for name in scenario.detection.labels:
        out[f"labels.{name}"] = out["labels"].key(labels, name)
    return out


SUITE_SUFFIXES = (".suite.yaml", ".suite.yml")


def is_suite_file(path: Path) -> bool:
    """A suite file (`*.suite.yaml`, see drillkit.suite) lists drills; it is not a scenario."""
    return path.name.endswith(SUITE_SUFFIXES)


def scenario_paths(paths: tuple[str, ...] | list[str]) -> list[Path]:
    """Files named directly, plus every *.yaml / *.yml below folders named, leaving out hidden
    files and folders: a mounted ConfigMap holds each file twice, once in its `..<timestamp>/`
    folder and once as a link beside it (a CronJob then ran every drill twice)."""
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            out.extend(
                sorted(
                    q
                    for q in p.rglob("*")
                    if q.suffix in (".yaml", ".yml")
                    and not is_suite_file(q)
                    and not any(part.startswith(".") for part in q.relative_to(p).parts)
                )
            )
        elif p.exists():
            out.append(p)
        else:
            raise ScenarioError(raw, None, "", "no such file or directory")
    return out


def json_schema() -> dict[str, Any]:
    """JSON Schema of the scenario format, with one `anyOf` branch per fault kind and target
    (a kind both targets implement has two branches)."""
    from drillkit.faults import catalogue

    schema = dataclass_schema(Scenario)
    branches = []
    every = [fault for _, kinds in sorted(catalogue().items()) for _, fault in sorted(kinds.items())]
    for fault in every:
        branch = dataclass_schema(fault.Params)
        branch["properties"] = {"kind": {"const": fault.kind}, **branch["properties"]}
        branch["required"] = ["kind", *branch.get("required", [])]
        branch["description"] = f"{fault.target} fault: {(fault.__doc__ or '').strip().splitlines()[0]}"
        branches.append(branch)
    schema["properties"]["faults"] = {"type": "array", "minItems": 1, "items": {"anyOf": branches}}
    schema["required"] = [*schema["required"], "faults"]
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://drillkit.dev/schema/scenario.json"
    schema["title"] = "drillkit scenario"
    return schema
