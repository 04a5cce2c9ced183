"""Alertmanager (API v2): did the page go out, and who acknowledged it with a silence.

On-call engineers acknowledge by silencing the alert; the acknowledgement time is the
silence's `updatedAt`, set by Alertmanager when it stored the silence — not our poll loop's.
Alertmanager keeps no per-alert notification log, so `notified` is the first time its API
listed the alert (checked at most every 0.25 s while the drill waits, at least every 0.5 s);
the journal says so. Only an alert with the drill's label matchers (`detection.labels`) that
started (`startsAt`, Prometheus's firing time) after the injection counts: another alert of
the same name, already firing elsewhere, is not this drill's page.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from drillkit.clock import parse_time, utcnow
from drillkit.errors import Aborted, TransientError, UnavailableError
from drillkit.httpapi import HttpApi
from drillkit.matchers import LabelMatcher
from drillkit.prometheus import escape
from drillkit.respond import Ack
from drillkit.signals import StopFlag, wait_until


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


class Alertmanager:
    """The Alertmanager API v2 at `url`. `stop` cuts retry back-offs and `wait_ready` short
    (None: no drill to stop); `timeout` is per request, in seconds."""

    def __init__(self, url: str, stop: StopFlag | None = None, timeout: float = 5.0) -> None:
        self.stop = stop
        self.api = HttpApi(
            "Alertmanager",
            url,
            timeout=timeout,
            stop=stop,
            attempts=4,
            max_delay=15,
            hint="check --alertmanager-url",
        )
        self.url = self.api.url

    def close(self) -> None:
        self.api.close()

    def _get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return self.api.call(f"GET {path}", lambda: self.api.get(path, params))

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait up to `timeout` s for `/-/ready`; a permanent error ends the wait at once, and each
        request is cut to the time left (a server that never answers holds no longer)."""
        deadline = time.monotonic() + timeout

        def ready() -> bool:
            left = self.api.timeout_within(deadline)
            try:
                self.api.once("GET /-/ready", lambda: self.api.session.get(f"{self.url}/-/ready", timeout=left))
            except TransientError:  # not up yet, or still starting (503)
                return False
            return True

        if wait_until(ready, deadline, 0.25, self.stop):
            return
        if self.stop is not None and self.stop.interrupts():
            raise Aborted(self.stop.reason, by_signal=True)
        raise UnavailableError(f"Alertmanager at {self.url} not ready within {timeout:g}s")

    def alert_labels(
        self, alert: str, matchers: Sequence[LabelMatcher], since: datetime | None = None
    ) -> list[dict[str, str]]:
        """Label sets of the matching alerts Alertmanager holds (active or silenced), only those
        that started at or after `since` if given."""
        wanted = [f'alertname="{escape(alert)}"', *(m.promql() for m in matchers)]
        data = self._get(
            "/api/v2/alerts", {"filter": wanted, "active": "true", "silenced": "true", "inhibited": "true"}
        )
        out = []
        for a in data if isinstance(data, list) else []:
            starts = a.get("startsAt")
            if since is not None and (not starts or parse_time(starts) < since):
                continue
            out.append(dict(a.get("labels", {})))
        return out

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
    matchers: Sequence[LabelMatcher]

    def wait(self, detected_at: datetime, deadline: float, stop: StopFlag, tick: Callable[[], None]) -> Ack | None:
        target = {"alertname": self.alert, **{m.name: m.value for m in self.matchers if m.op == "="}}

        def acknowledged() -> Ack | None:
            held = self.am.alert_labels(self.alert, self.matchers) or [target]
            for s in self.am.silences():
                if s.state == "active" and s.updated_at >= detected_at and any(s.covers(lb) for lb in held):
                    return Ack(s.updated_at, s.created_by or "alertmanager", f"silence {s.id}: {s.comment}".strip())
            tick()
            return None

        return wait_until(acknowledged, deadline, 0.25, stop)


@dataclass
class NotificationWatch:
    """Records when Alertmanager first lists the alert: the page went out."""

    am: Alertmanager
    alert: str
    matchers: Sequence[LabelMatcher]
    since: datetime | None = None  # the injection: an alert that started before it is not the page
    seen_at: datetime | None = None
    _last: float = 0.0

    def poll(self) -> datetime | None:
        """Check at most every 0.25 s; returns the first-seen time once, then None."""
        if self.seen_at is not None or time.monotonic() - self._last < 0.25:
            return None
        self._last = time.monotonic()
        if self.am.alert_labels(self.alert, self.matchers, self.since):
            self.seen_at = utcnow()
            return self.seen_at
        return None
