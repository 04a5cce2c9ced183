"""Prometheus access: probes, rule checks and the alert's own firing time.

The only module importing `prometheus_api_client` (lazily, to keep `drillkit --help` fast): its
`custom_query` runs the PromQL queries; the rules and alerts endpoints, which it lacks, are
plain GETs. Both go through one `HttpApi` session, so one status mapping and one retry policy
cover every call (see docs/design-notes.md, "Prometheus access").
The detection time is Prometheus's: `activeAt` + the rule's `for` while the alert is firing,
or the first raw `ALERTS{alertstate="firing"}` sample once it has resolved — never the moment
our poll loop noticed. Several rules may share an alert name (a warning/critical pair with
different `for:`): the drill's `detection.labels` choose among them by their static labels
(`AlertTarget`), and each alert is timed with the `for:` of the rule it came from.
"""

from __future__ import annotations

import difflib
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from drillkit.clock import parse_time
from drillkit.errors import Aborted, PreflightError, RejectedRequest, TransientError, UnavailableError
from drillkit.httpapi import HttpApi
from drillkit.matchers import LabelMatcher, all_match, describe
from drillkit.scenario import Scenario, query_sites
from drillkit.signals import StopFlag, wait_until

if TYPE_CHECKING:
    from prometheus_api_client import PrometheusConnect

_ZERO_TIME = "0001-01-01T00:00:00Z"


@dataclass(frozen=True)
class PromConfig:
    """How to reach Prometheus; auth and CA for real deployments."""

    url: str = "http://127.0.0.1:9090"
    bearer_token: str | None = None
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None
    timeout: float = 10.0  # seconds, per request


@dataclass(frozen=True)
class Sample:
    labels: dict[str, str]
    value: float


@dataclass(frozen=True)
class Series:
    labels: dict[str, str]
    points: list[tuple[float, float]]  # (unix time, value)


@dataclass(frozen=True)
class AlertRule:
    name: str
    for_seconds: float
    query: str
    labels: dict[str, str]
    group: str
    last_evaluation: datetime | None
    interval: float = 0.0  # the group's evaluation interval (s)
    file: str = ""  # the rule file Prometheus read it from

    def could_match(self, matchers: Sequence[LabelMatcher]) -> bool:
        """Its static labels do not contradict `matchers` (labels it does not set come from
        the series, so only the alert can tell)."""
        return all(m.matches(self.labels) for m in matchers if m.name in self.labels)

    def made(self, labels: dict[str, str]) -> bool:
        """An alert with `labels` can come from this rule: it carries the rule's static labels
        (a templated one, `{{ ... }}`, is not compared)."""
        return all(labels.get(k) == v for k, v in self.labels.items() if "{{" not in v)

    @property
    def fires_after(self) -> float:
        """Seconds from `activeAt` to firing: the first evaluation at or after `for`."""
        if self.interval <= 0:
            return self.for_seconds
        return math.ceil(self.for_seconds / self.interval - 1e-9) * self.interval


@dataclass(frozen=True)
class AlertTarget:
    """The alert a drill waits for: the rules of that name whose static labels fit the
    scenario's matchers (usually one), and the matchers every alert of it must satisfy."""

    name: str
    matchers: tuple[LabelMatcher, ...]
    rules: tuple[AlertRule, ...]

    @property
    def rule(self) -> AlertRule:
        """The rule that fires first (the slowest tier of a pair never fires before it)."""
        return min(self.rules, key=lambda r: r.fires_after)

    @property
    def fires_after(self) -> float:
        return self.rule.fires_after

    def rule_of(self, labels: dict[str, str]) -> AlertRule:
        """The rule an alert with `labels` came from: the one whose static labels it carries
        (the most specific), else the first to fire."""
        made = [r for r in self.rules if r.made(labels)]
        return max(made, key=lambda r: len(r.labels)) if made else self.rule

    def describe(self) -> str:
        return f"{self.name}{describe(self.matchers) if self.matchers else ''}"


@dataclass(frozen=True)
class ActiveAlert:
    name: str
    labels: dict[str, str]
    state: str  # pending | firing
    active_at: datetime


class Prometheus:
    """The Prometheus HTTP API. `stop` cuts retry back-offs and `wait_ready` short (None: no
    drill to stop, e.g. in tools and tests)."""

    def __init__(self, config: PromConfig, stop: StopFlag | None = None) -> None:
        from prometheus_api_client import PrometheusConnect
        from urllib3.util.retry import Retry

        self.config, self.stop = config, stop
        self.api = HttpApi(
            "Prometheus",
            config.url,
            timeout=config.timeout,
            stop=stop,
            attempts=5,
            max_delay=30,
            hint="check the URL and --prometheus-ca",
        )
        self.url = self.api.url
        session = self.api.session
        if config.bearer_token:
            session.headers["Authorization"] = f"Bearer {config.bearer_token}"
        if config.username is not None:
            session.auth = (config.username, config.password or "")
        if config.ca_file:
            session.verify = config.ca_file
        # The client uses our session (auth, CA, status hook); our tenacity policy is the only
        # retry layer, so its own urllib3 retries are off.
        self._client: PrometheusConnect = PrometheusConnect(
            url=self.url,
            session=session,
            retry=Retry(total=0),
            timeout=config.timeout,
        )

        self._one_by_one = False  # query_many: an expression could not be tagged, so never batch
        self._ready_rules: list[AlertRule] | None = None  # what wait_ready last read

    def close(self) -> None:
        self.api.close()

    def _data(
        self, path: str, params: dict[str, str] | None = None, retry: bool = True, timeout: float | None = None
    ) -> Any:
        """The `data` of a GET of the API's JSON envelope (`timeout` s, default the config's)."""
        run = self.api.call if retry else self.api.once
        return run(f"GET {path}", lambda: self.api.get(path, params, timeout)["data"])

    # --- queries --------------------------------------------------------------------------

    def _query(self, expr: str) -> Any:
        return self.api.call("GET /api/v1/query", lambda: self._client.custom_query(expr))

    def query(self, expr: str) -> list[Sample]:
        """Instant query, now; scalars come back as one unlabelled sample."""
        data = self._query(expr)
        # custom_query returns only `result`: a scalar's is [time, "value"], a vector's a list
        if isinstance(data, list) and len(data) == 2 and not isinstance(data[0], dict):
            return [Sample({}, float(data[1]))]
        return [Sample(dict(r.get("metric", {})), float(r["value"][1])) for r in data]

    def query_range_many(self, exprs: list[str], start: datetime, end: datetime, step: float) -> list[list[Series]]:
        """`query_range` of several expressions in one request (tagged and joined as in
        `query_many`; one request each if one cannot be tagged)."""
        if len(exprs) <= 1 or self._one_by_one:
            return [self.query_range(e, start, end, step) for e in exprs]
        tagged = " or ".join(f'label_replace(({e}), "{_TAG}", "{i}", "", "")' for i, e in enumerate(exprs))
        try:
            series = self.query_range(tagged, start, end, step)
        except RejectedRequest:
            self._one_by_one = True
            return [self.query_range(e, start, end, step) for e in exprs]
        out: list[list[Series]] = [[] for _ in exprs]
        for one in series:
            labels = dict(one.labels)
            out[int(labels.pop(_TAG))].append(replace(one, labels=labels))
        return out

    def query_many(self, exprs: list[str]) -> list[list[Sample]]:
        """Several instant queries in one request: each expression tagged with its own label
        (`label_replace`) and joined with `or`, so a drill's probes cost one request per check.
        An expression that cannot be tagged (a scalar) makes it fall back to one request each."""
        if len(exprs) <= 1 or self._one_by_one:
            return [self.query(e) for e in exprs]
        tagged = " or ".join(f'label_replace(({e}), "{_TAG}", "{i}", "", "")' for i, e in enumerate(exprs))
        try:
            samples = self.query(tagged)
        except RejectedRequest:
            self._one_by_one = True
            return [self.query(e) for e in exprs]
        out: list[list[Sample]] = [[] for _ in exprs]
        for sample in samples:
            labels = dict(sample.labels)
            out[int(labels.pop(_TAG))].append(Sample(labels, sample.value))
        return out

    def check(self, expr: str, needs_data: bool) -> str:
        """'' if Prometheus accepts `expr` (and, with `needs_data`, it returns samples now);
        otherwise what is wrong, in Prometheus's own words for a rejected query."""
        try:
            samples = self.query(expr)
        except RejectedRequest as exc:
            return f"Prometheus rejects this PromQL: {exc.detail}"
        if needs_data and not samples:
            return "returns no data now (a typo in a metric or label name?); a probe needs samples to hold"
        return ""

    def query_range(self, expr: str, start: datetime, end: datetime, step: float) -> list[Series]:
        """A range query (aligned to `step` seconds): enough for plotting, not for timing."""
        params = {"query": expr, "start": f"{start.timestamp():.3f}", "end": f"{end.timestamp():.3f}"}
        data = self._data("/api/v1/query_range", {**params, "step": f"{step:g}"})
        return [
            Series(dict(r.get("metric", {})), [(float(t), float(v)) for t, v in r.get("values", [])])
            for r in data.get("result", [])
        ]

    def query_problems(self, scenario: Scenario) -> list[str]:
        """`FILE:LINE: key.path: …` for each PromQL expression of the scenario that Prometheus
        rejects, or (for a probe, which must return samples to hold) that returns no data."""
        return [str(s.where.error(why)) for s in query_sites(scenario) if (why := self.check(s.expr, s.needs_data))]

    def raw_samples(self, expr: str, seconds: float) -> list[tuple[dict[str, str], float]]:
        """Raw (labels, timestamp) of every sample of a selector within the last `seconds`."""
        window = max(1, int(seconds) + 1)
        data = self._query(f"{expr}[{window}s]")
        return [(dict(r.get("metric", {})), float(ts)) for r in data for ts, _ in r.get("values", [])]

    def series(self, selector: str, seconds: float) -> list[dict[str, str]]:
        """The label sets of the series `selector` matched within the last `seconds`."""
        end = time.time()
        params = {"match[]": selector, "start": f"{end - seconds:.3f}", "end": f"{end:.3f}"}
        return [dict(s) for s in self._data("/api/v1/series", params) or []]

    # --- readiness and rules --------------------------------------------------------------

    def rules(self, retry: bool = True, timeout: float | None = None) -> list[AlertRule]:
        data = self._data("/api/v1/rules", {"type": "alert"}, retry, timeout)
        out = []
        for group in data.get("groups", []):
            for rule in group.get("rules", []):
                if rule.get("type") != "alerting":
                    continue
                last = rule.get("lastEvaluation") or group.get("lastEvaluation")
                out.append(
                    AlertRule(
                        name=rule["name"],
                        for_seconds=float(rule.get("duration", 0)),
                        query=rule.get("query", ""),
                        labels=dict(rule.get("labels") or {}),
                        group=group.get("name", ""),
                        last_evaluation=None if not last or last.startswith("0001") else parse_time(last),
                        interval=float(group.get("interval") or 0),
                        file=group.get("file", ""),
                    )
                )
        return out

    def rule(self, name: str) -> AlertRule:
        """The named alert rule (the first to fire if several share the name)."""
        return self.target(name, ()).rule

    def target(self, name: str, matchers: Sequence[LabelMatcher]) -> AlertTarget:
        """The rules named `name` whose static labels fit `matchers`, or a PreflightError
        saying which exist (did you mean) or what their labels are."""
        rules, self._ready_rules = self._ready_rules or self.rules(), None
        return choose(rules, name, matchers, f"Prometheus at {self.url}")

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait up to `timeout` s until Prometheus has evaluated every alert rule once since it
        started: that needs it ready (`/-/ready` alone comes seconds before the first
        evaluation), so one rules request per try says both. A permanent error (bad URL,
        certificate, credentials, a web page instead of the API) ends the wait at once. Each
        request is cut to the time left: a server that never answers holds the drill no longer
        than `timeout`."""
        last_error = ["not checked"]
        deadline = time.monotonic() + timeout

        def ready() -> bool:
            try:
                rules = self.rules(retry=False, timeout=self.api.timeout_within(deadline))
                if all(r.last_evaluation is not None for r in rules):
                    self._ready_rules = rules  # rule() needs no second request
                    return True
                last_error[0] = "alert rules not evaluated yet"
            except TransientError as exc:  # not up yet, or still starting (503)
                last_error[0] = str(exc)
            return False

        if wait_until(ready, deadline, 0.25, self.stop):
            return
        if self.stop is not None and self.stop.interrupts():
            raise Aborted(self.stop.reason, by_signal=True)
        raise UnavailableError(f"Prometheus at {self.url} not ready within {timeout:g}s: {last_error[0]}")

    # --- alerts ---------------------------------------------------------------------------

    def alerts(self, name: str, matchers: Sequence[LabelMatcher]) -> list[ActiveAlert]:
        """The pending and firing alerts named `name` whose labels satisfy `matchers`."""
        data = self._data("/api/v1/alerts")
        out = []
        for a in data.get("alerts", []):
            al = dict(a.get("labels", {}))
            if al.get("alertname") != name or not all_match(matchers, al):
                continue
            active = a.get("activeAt")
            if not active or active.startswith(_ZERO_TIME[:4]):
                continue
            out.append(ActiveAlert(name, al, a.get("state", ""), parse_time(active)))
        return out

    def firing_time(self, target: AlertTarget, since: datetime) -> tuple[datetime, str] | None:
        """When Prometheus itself moved the alert to firing, for an episode that began after
        `since`, and how that was read; None if it has not fired (yet)."""
        return self.active_firing(self.alerts(target.name, target.matchers), target, since) or (
            self.resolved_firing_time(target, since)
        )

    @staticmethod
    def active_firing(alerts: list[ActiveAlert], target: AlertTarget, since: datetime) -> tuple[datetime, str] | None:
        """The earliest firing time of the firing `alerts` that became active after `since`,
        each by the `for:` of its own rule."""
        times = [
            a.active_at + timedelta(seconds=target.rule_of(a.labels).fires_after)
            for a in alerts
            if a.state == "firing" and a.active_at >= since
        ]
        return (min(times), "activeAt + for") if times else None

    def resolved_firing_time(self, target: AlertTarget, since: datetime) -> tuple[datetime, str] | None:
        """An episode that fired after `since` and already resolved: the first raw firing sample
        of it (a sample right after another belongs to an episode that began earlier)."""
        gap = 1.5 * (target.rule.interval or 1.0)
        seconds = (datetime.now(UTC) - since).total_seconds() + 3 * gap
        series: dict[tuple[tuple[str, str], ...], list[float]] = {}
        for lbls, ts in self.raw_samples(_selector(target.name, target.matchers, "firing"), seconds):
            series.setdefault(tuple(sorted(lbls.items())), []).append(ts)
        starts = []
        for stamps in series.values():
            stamps.sort()
            starts += [
                ts for i, ts in enumerate(stamps) if ts >= since.timestamp() and (i == 0 or ts - stamps[i - 1] > gap)
            ]
        if not starts:
            return None
        return datetime.fromtimestamp(min(starts), UTC), "first raw ALERTS firing sample"

    def pending_time(self, target: AlertTarget, since: datetime) -> datetime | None:
        """When the alert's condition first held (`activeAt`), for an episode after `since`."""
        times = [a.active_at for a in self.alerts(target.name, target.matchers) if a.active_at >= since]
        return min(times) if times else None

    def pending_episodes(self, target: AlertTarget, since: datetime) -> list[tuple[datetime, datetime, bool]]:
        """Each episode of the alert since `since` from its raw `ALERTS` samples: (first sample,
        last sample, whether it reached firing). A pending episode that never fired is one the
        condition held for less than `for:` (or a fault that stopped too soon)."""
        gap = 1.5 * (target.rule.interval or 1.0)
        seconds = (datetime.now(UTC) - since).total_seconds() + 3 * gap
        series: dict[tuple[tuple[str, str], ...], list[tuple[float, bool]]] = {}
        data = self._query(f"{_selector(target.name, target.matchers, None)}[{max(1, int(seconds) + 1)}s]")
        for r in data:
            labels = dict(r.get("metric", {}))
            firing = labels.pop("alertstate", "") == "firing"
            key = tuple(sorted(labels.items()))
            series.setdefault(key, []).extend((float(ts), firing) for ts, _ in r.get("values", []))
        out = []
        for samples in series.values():
            samples.sort()
            start = prev = None
            fired = False
            for ts, firing in [*samples, (math.inf, False)]:
                if start is not None and prev is not None and ts - prev > gap:
                    if start >= since.timestamp():
                        out.append((datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(prev, UTC), fired))
                    start, fired = None, False
                if ts == math.inf:
                    break
                start = ts if start is None else start
                fired, prev = fired or firing, ts
        return sorted(out)

    @staticmethod
    def firing_selector(name: str, matchers: Sequence[LabelMatcher]) -> str:
        """The PromQL of the alert's firing series (non-empty exactly while it fires), so "is it
        firing?" can share a batched query (`query_many`) with the steady-state probes."""
        return _selector(name, matchers, "firing")


def choose(rules: Sequence[AlertRule], name: str, matchers: Sequence[LabelMatcher], where: str) -> AlertTarget:
    """The `AlertTarget` of `name` among `rules` (see Prometheus.target)."""
    named = [r for r in rules if r.name == name]
    if not named:
        names = sorted({r.name for r in rules})
        near = difflib.get_close_matches(name, names, n=1)
        hint = f"did you mean {near[0]!r}?" if near else f"loaded alert rules: {', '.join(names) or 'none'}"
        raise PreflightError(f"{where} has no alert rule {name!r}; {hint}")
    fit = tuple(r for r in named if r.could_match(matchers))
    if not fit:
        have = "; ".join(f"for: {r.for_seconds:g}s {describe_static(r)}" for r in named)
        raise PreflightError(
            f"{where} has {len(named)} rule(s) named {name!r} but none whose labels fit "
            f"detection.labels {describe(matchers)}: {have}"
        )
    return AlertTarget(name, tuple(matchers), fit)


def describe_static(rule: AlertRule) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(rule.labels.items())) + "}"


def _selector(alert: str, matchers: Sequence[LabelMatcher], state: str | None) -> str:
    """The alert's ALERTS series: in `state` (pending or firing), or in either (None)."""
    parts = [f'alertname="{alert}"'] + ([f'alertstate="{state}"'] if state else [])
    parts += [m.promql() for m in matchers]
    return "ALERTS{" + ",".join(parts) + "}"


def escape(value: str) -> str:
    """A label value inside double quotes, for PromQL and Alertmanager matchers."""
    return value.replace("\\", "\\\\").replace('"', '\\"')


class FiringWatch:
    """Detection at one request per poll, still exact (`activeAt + for`). A poll is one
    `/api/v1/alerts` request, which gives the alert's state and `activeAt` together; when abort
    conditions are due (`extra`), it is instead one batched query of the alert's `ALERTS`
    series plus those conditions, and `/api/v1/alerts` is read only once the alert shows as
    firing. The raw `ALERTS` samples are read only when the alert may have fired and resolved
    between two polls (it was active at the last poll and is no longer), every `raw_every`
    polls as a safety net, and once more at the deadline (`last_look`)."""

    def __init__(self, prom: Prometheus, target: AlertTarget, since: datetime, raw_every: int = 10) -> None:
        self.prom, self.target, self.since, self.raw_every = prom, target, since, raw_every
        self._was_active = False
        self._polls = 0
        self.pending: datetime | None = None  # the earliest activeAt seen: when the condition first held

    def poll(self, extra: Sequence[str] = ()) -> tuple[tuple[datetime, str] | None, list[list[Sample]]]:
        """(when it fired and how that was read, or None; the samples of each `extra`)."""
        self._polls += 1
        held: list[list[Sample]] = []
        if extra:
            t = self.target
            batch = self.prom.query_many([_selector(t.name, t.matchers, None), *extra])
            states, held = {s.labels.get("alertstate") for s in batch[0]}, batch[1:]
            alerts = self.prom.alerts(t.name, t.matchers) if "firing" in states else []
        else:
            alerts = self.prom.alerts(self.target.name, self.target.matchers)
            states = {a.state for a in alerts}
        found = None
        if "firing" in states:
            active = [a for a in alerts if a.active_at >= self.since]
            if active:
                first = min(a.active_at for a in active)
                self.pending = first if self.pending is None else min(self.pending, first)
            found = self.prom.active_firing(active, self.target, self.since)
        if found is None and ((self._was_active and not states) or self._polls % self.raw_every == 0):
            found = self.prom.resolved_firing_time(self.target, self.since)
        self._was_active = bool(states)
        return found, held

    def last_look(self) -> tuple[datetime, str] | None:
        return self.prom.firing_time(self.target, self.since)


_TAG = "drillkit_probe"  # query_many's label telling the batched expressions apart
