"""Alertmanager (API v2): did the page go out, and who acknowledged it with a silence.

On-call engineers acknowledge by silencing the alert; the acknowledgement time is the
silence's `updatedAt`, set by Alertmanager when it stored the silence — not our poll loop's.
Alertmanager keeps no per-alert notification log, so `notified` is the first time its API
listed the alert (checked at most every 0.25 s while the drill waits, at least every 0.5 s);
the journal says so.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import requests

from drillkit.clock import parse_time, utcnow
from drillkit.errors import Aborted, PermanentError, TransientError, UnavailableError
from drillkit.prometheus import escape
from drillkit.respond import Ack
from drillkit.retry import retrying
from drillkit.signals import StopFlag


@dataclass(frozen=True)
class Matcher:
    name: str
    value: str
    is_regex: bool = False
    is_equal: bool = True

    def matches(self, labels: dict[str, str]) -> bool:
        actual = labels.get(self.name, "")
        hit = re.fullmatch(self.value, actual) is not None if self.is_regex else actual == self.value
        return hit if self.is_equal else not hit


@dataclass(frozen=True)
class Silence:
    id: str
    matchers: tuple[Matcher, ...]
    created_by: str
    comment: str
    updated_at: datetime
    state: str

    def covers(self, labels: dict[str, str]) -> bool:
        return all(m.matches(labels) for m in self.matchers)


@dataclass
class Alertmanager:
    url: str
    bearer_token: str | None = None
    timeout: float = 5.0
    _session: requests.Session = field(default_factory=requests.Session, repr=False)

    def __post_init__(self) -> None:
        self.url = self.url.rstrip("/")
        if self.bearer_token:
            self._session.headers["Authorization"] = f"Bearer {self.bearer_token}"

    def close(self) -> None:
        self._session.close()

    def _get(self, path: str, params: dict[str, Any] | None = None) -> object:
        def once() -> object:
            try:
                r = self._session.get(f"{self.url}{path}", params=params, timeout=self.timeout)
            except requests.RequestException as exc:
                raise TransientError(f"Alertmanager at {self.url} unreachable: {exc}") from None
            if r.status_code >= 500 or r.status_code == 429:
                raise TransientError(f"Alertmanager GET {path}: HTTP {r.status_code}")
            if r.status_code >= 400:
                raise PermanentError(f"Alertmanager GET {path}: HTTP {r.status_code}: {r.text[:200]}")
            try:
                return r.json()
            except ValueError as exc:
                raise TransientError(f"Alertmanager GET {path}: bad response: {exc}") from None

        return retrying(f"Alertmanager GET {path}", attempts=4, max_delay=15)(once)

    def wait_ready(self, stop: StopFlag, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not stop.is_set():
            try:
                if self._session.get(f"{self.url}/-/ready", timeout=self.timeout).status_code == 200:
                    return
            except requests.RequestException:
                pass
            stop.wait(0.25)
        if stop.is_set():
            raise Aborted(stop.reason, by_signal=True)
        raise UnavailableError(f"Alertmanager at {self.url} not ready within {timeout:g}s")

    def alert_labels(self, alert: str, labels: dict[str, str]) -> list[dict[str, str]]:
        """Label sets of the matching alerts Alertmanager holds (active or silenced)."""
        matchers = [f'alertname="{escape(alert)}"', *(f'{k}="{escape(v)}"' for k, v in sorted(labels.items()))]
        data = self._get(
            "/api/v2/alerts", {"filter": matchers, "active": "true", "silenced": "true", "inhibited": "true"}
        )
        return [dict(a.get("labels", {})) for a in data] if isinstance(data, list) else []

    def silences(self) -> list[Silence]:
        data = self._get("/api/v2/silences")
        out = []
        for s in data if isinstance(data, list) else []:
            matchers = tuple(
                Matcher(m["name"], m["value"], bool(m.get("isRegex")), bool(m.get("isEqual", True)))
                for m in s.get("matchers", [])
            )
            out.append(
                Silence(
                    s["id"],
                    matchers,
                    s.get("createdBy", ""),
                    s.get("comment", ""),
                    parse_time(s["updatedAt"]),
                    s.get("status", {}).get("state", ""),
                )
            )
        return out


@dataclass
class AlertmanagerAck:
    """Acknowledged when a silence covering the alert is created after detection."""

    am: Alertmanager
    alert: str
    labels: dict[str, str]

    def wait(self, detected_at: datetime, deadline: float, stop: StopFlag, tick: Callable[[], None]) -> Ack | None:
        target = {"alertname": self.alert, **self.labels}
        while time.monotonic() < deadline:
            held = self.am.alert_labels(self.alert, self.labels) or [target]
            for s in self.am.silences():
                if s.state == "active" and s.updated_at >= detected_at and any(s.covers(lb) for lb in held):
                    return Ack(s.updated_at, s.created_by or "alertmanager", f"silence {s.id}: {s.comment}".strip())
            tick()
            if stop.wait(0.25):
                return None
        return None


@dataclass
class NotificationWatch:
    """Records when Alertmanager first lists the alert: the page went out."""

    am: Alertmanager
    alert: str
    labels: dict[str, str]
    seen_at: datetime | None = None
    _last: float = 0.0

    def poll(self) -> datetime | None:
        """Check at most every 0.25 s; returns the first-seen time once, then None."""
        if self.seen_at is not None or time.monotonic() - self._last < 0.25:
            return None
        self._last = time.monotonic()
        if self.am.alert_labels(self.alert, self.labels):
            self.seen_at = utcnow()
            return self.seen_at
        return None
