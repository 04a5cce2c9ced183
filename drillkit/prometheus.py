"""Prometheus access: probes, rule checks and the alert's own firing time.

The only module importing `prometheus_api_client` (lazily, to keep `drillkit --help` fast).
The detection time is Prometheus's: `activeAt` + the rule's `for` while the alert is firing,
or the first raw `ALERTS{alertstate="firing"}` sample once it has resolved — never the moment
our poll loop noticed. Errors are wrapped: connection errors and 5xx are transient (retried),
other 4xx are permanent.
"""

from __future__ import annotations

import difflib
import math
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import requests

from drillkit.clock import parse_time
from drillkit.errors import Aborted, PermanentError, PreflightError, TransientError, UnavailableError
from drillkit.retry import retrying
from drillkit.signals import StopFlag

_ZERO_TIME = "0001-01-01T00:00:00Z"
# A malformed URL or a certificate our CA setting does not verify is our input: never retried.
_BAD_URL = (
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidSchema,
    requests.exceptions.InvalidURL,
    requests.exceptions.SSLError,
)


@dataclass(frozen=True)
class PromConfig:
    """How to reach Prometheus; auth and CA for real deployments."""

    url: str = "http://127.0.0.1:9090"
    bearer_token: str | None = None
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None
    insecure: bool = False
    timeout: float = 10.0


@dataclass(frozen=True)
class Sample:
    labels: dict[str, str]
    value: float


@dataclass(frozen=True)
class AlertRule:
    name: str
    for_seconds: float
    query: str
    labels: dict[str, str]
    group: str
    last_evaluation: datetime | None
    interval: float = 0.0  # the group's evaluation interval (s)

    @property
    def fires_after(self) -> float:
        """Seconds from `activeAt` to firing: the first evaluation at or after `for`."""
        if self.interval <= 0:
            return self.for_seconds
        return math.ceil(self.for_seconds / self.interval - 1e-9) * self.interval


@dataclass(frozen=True)
class ActiveAlert:
    name: str
    labels: dict[str, str]
    state: str  # pending | firing
    active_at: datetime


@dataclass
class Prometheus:
    config: PromConfig
    _client: Any = field(default=None, repr=False)
    _session: requests.Session = field(default_factory=requests.Session, repr=False)

    def __post_init__(self) -> None:
        from prometheus_api_client import PrometheusConnect
        from urllib3.util.retry import Retry

        cfg, s = self.config, self._session
        headers = {"Authorization": f"Bearer {cfg.bearer_token}"} if cfg.bearer_token else None
        if cfg.username is not None:
            s.auth = (cfg.username, cfg.password or "")
        s.verify = False if cfg.insecure else (cfg.ca_file or True)
        if headers:
            s.headers.update(headers)
        self.url = cfg.url.rstrip("/")
        # Our tenacity policy is the only retry layer: the client's own urllib3 retries are off.
        self._client = PrometheusConnect(
            url=self.url,
            headers=headers,
            session=s,
            retry=Retry(total=0),
            timeout=int(cfg.timeout),
        )
        self._client.auth = s.auth

    def close(self) -> None:
        self._session.close()

    def _unusable(self, exc: Exception) -> PermanentError:
        return PermanentError(f"Prometheus at {self.url!r} cannot be used (check the URL and --prometheus-ca): {exc}")

    # --- HTTP -----------------------------------------------------------------------------

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        from prometheus_api_client.exceptions import PrometheusApiClientException

        def once() -> Any:
            try:
                return fn(*args, **kwargs)
            except _BAD_URL as exc:
                raise self._unusable(exc) from None
            except requests.RequestException as exc:
                raise TransientError(f"Prometheus at {self.url} unreachable: {exc}") from None
            except PrometheusApiClientException as exc:
                m = re.search(r"HTTP Status Code (\d+)", str(exc))
                code = int(m.group(1)) if m else 0
                if code >= 500 or code == 429:
                    raise TransientError(f"Prometheus {what}: {exc}") from None
                raise PermanentError(f"Prometheus {what}: {exc}") from None
            except ValueError as exc:  # a body that is not JSON
                raise TransientError(f"Prometheus {what}: bad response: {exc}") from None

        result = retrying(f"Prometheus {what}", attempts=5, max_delay=30)(once)
        return result

    def _get_json(self, path: str, params: dict[str, str] | None = None) -> Any:
        def get() -> Any:
            r = self._session.get(f"{self.url}{path}", params=params, timeout=self.config.timeout)
            if r.status_code >= 500 or r.status_code == 429:
                raise TransientError(f"GET {path}: HTTP {r.status_code}")
            if r.status_code in (401, 403):
                raise PermanentError(f"GET {path}: HTTP {r.status_code}: check the token or credentials")
            if r.status_code >= 400:
                raise PermanentError(f"GET {path}: HTTP {r.status_code}: {r.text[:200]}")
            return r.json()["data"]

        def once() -> Any:
            try:
                return get()
            except _BAD_URL as exc:
                raise self._unusable(exc) from None
            except requests.RequestException as exc:
                raise TransientError(f"Prometheus at {self.url} unreachable: {exc}") from None
            except (ValueError, KeyError) as exc:
                raise TransientError(f"GET {path}: bad response: {exc}") from None

        return retrying(f"Prometheus GET {path}", attempts=5, max_delay=30)(once)

    # --- queries --------------------------------------------------------------------------

    def query(self, expr: str, at: datetime | None = None) -> list[Sample]:
        """Instant query; scalars come back as one unlabelled sample."""
        params = {"time": f"{at.timestamp():.3f}"} if at else None
        data = self._call("query", self._client.custom_query, expr, params=params)
        if isinstance(data, list) and len(data) == 2 and not isinstance(data[0], dict):
            return [Sample({}, float(data[1]))]
        return [Sample(dict(r.get("metric", {})), float(r["value"][1])) for r in data]

    def raw_samples(self, expr: str, seconds: float) -> list[tuple[dict[str, str], float]]:
        """Raw (labels, timestamp) of every sample of a selector within the last `seconds`."""
        window = max(1, int(seconds) + 1)
        data = self._call("query", self._client.custom_query, f"{expr}[{window}s]")
        return [(dict(r.get("metric", {})), float(ts)) for r in data for ts, _ in r.get("values", [])]

    def server_time(self) -> float:
        """Prometheus's clock (`time()`), to estimate skew against ours."""
        return self.query("time()")[0].value

    # --- readiness and rules --------------------------------------------------------------

    def rules(self) -> list[AlertRule]:
        data = self._get_json("/api/v1/rules", {"type": "alert"})
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
                    )
                )
        return out

    def rule(self, name: str) -> AlertRule:
        """The named alert rule, or a PreflightError saying which exist."""
        rules = self.rules()
        for r in rules:
            if r.name == name:
                return r
        names = sorted({r.name for r in rules})
        near = difflib.get_close_matches(name, names, n=1)
        hint = f"did you mean {near[0]!r}?" if near else f"loaded alert rules: {', '.join(names) or 'none'}"
        raise PreflightError(f"Prometheus at {self.url} has no alert rule {name!r}; {hint}")

    def wait_ready(self, stop: StopFlag, timeout: float = 60.0) -> None:
        """Wait until Prometheus is ready *and* has evaluated every alert rule once since it
        started; `/-/ready` alone comes seconds before the first evaluation."""
        deadline = time.monotonic() + timeout
        last_error = ""
        while time.monotonic() < deadline and not stop.is_set():
            try:
                r = self._session.get(f"{self.url}/-/ready", timeout=self.config.timeout)
                if r.status_code == 200:
                    rules = self.rules()
                    if all(x.last_evaluation is not None for x in rules):
                        return
                    last_error = "alert rules not evaluated yet"
                else:
                    last_error = f"/-/ready answered HTTP {r.status_code}"
            except _BAD_URL as exc:
                raise self._unusable(exc) from None
            except requests.RequestException as exc:
                last_error = str(exc)
            except TransientError as exc:
                last_error = str(exc)
            stop.wait(0.25)
        if stop.is_set():
            raise Aborted(stop.reason, by_signal=True)
        raise UnavailableError(f"Prometheus at {self.url} not ready within {timeout:g}s: {last_error}")

    # --- alerts ---------------------------------------------------------------------------

    def alerts(self, name: str, labels: dict[str, str]) -> list[ActiveAlert]:
        data = self._get_json("/api/v1/alerts")
        out = []
        for a in data.get("alerts", []):
            al = dict(a.get("labels", {}))
            if al.get("alertname") != name or any(al.get(k) != v for k, v in labels.items()):
                continue
            active = a.get("activeAt")
            if not active or active.startswith(_ZERO_TIME[:4]):
                continue
            out.append(ActiveAlert(name, al, a.get("state", ""), parse_time(active)))
        return out

    def firing_time(self, rule: AlertRule, labels: dict[str, str], since: datetime) -> tuple[datetime, str] | None:
        """When Prometheus itself moved the alert to firing, for an episode that began after
        `since`, and how that was read; None if it has not fired (yet)."""
        for a in sorted(self.alerts(rule.name, labels), key=lambda a: a.active_at):
            if a.state == "firing" and a.active_at >= since:
                return a.active_at + timedelta(seconds=rule.fires_after), "activeAt + for"
        # Fired and already resolved: the first raw firing sample of an episode after `since`
        # (a sample right after another belongs to an episode that began earlier).
        gap = 1.5 * (rule.interval or 1.0)
        seconds = (datetime.now(UTC) - since).total_seconds() + 3 * gap
        series: dict[tuple[tuple[str, str], ...], list[float]] = {}
        for lbls, ts in self.raw_samples(_selector(rule.name, labels, "firing"), seconds):
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

    def pending_time(self, rule: AlertRule, labels: dict[str, str], since: datetime) -> datetime | None:
        """When the alert's condition first held (`activeAt`), for an episode after `since`."""
        times = [a.active_at for a in self.alerts(rule.name, labels) if a.active_at >= since]
        return min(times) if times else None

    def firing_now(self, name: str, labels: dict[str, str]) -> bool:
        return any(a.state == "firing" for a in self.alerts(name, labels))


def _selector(alert: str, labels: dict[str, str], state: str) -> str:
    matchers = [f'alertname="{alert}"', f'alertstate="{state}"']
    matchers += [f'{k}="{escape(v)}"' for k, v in sorted(labels.items())]
    return "ALERTS{" + ",".join(matchers) + "}"


def escape(value: str) -> str:
    """A label value inside double quotes, for PromQL and Alertmanager matchers."""
    return value.replace("\\", "\\\\").replace('"', '\\"')
