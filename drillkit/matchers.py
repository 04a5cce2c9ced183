"""Label matchers of `detection.labels`, with PromQL's four operators.

Why one type: the same label set chooses the alert rule (against its static labels), selects
the alert's `ALERTS` series in Prometheus and its copy in Alertmanager. Written in a scenario as
a plain value (equality) or a value starting with `!=`, `=~` or `!~`, e.g.
`{severity: critical, instance: "=~db-.*", job: "!=node"}`; a leading `=` forces equality for a
value that itself starts with one of those.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

OPS = ("=", "!=", "=~", "!~")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


@dataclass(frozen=True)
class LabelMatcher:
    """One `name OP value` matcher; regexes are anchored, as in PromQL."""

    name: str
    op: str
    value: str

    @classmethod
    def parse(cls, name: str, raw: str) -> LabelMatcher:
        """`raw` as written in `detection.labels`; a ValueError saying what is accepted."""
        if not _LABEL.fullmatch(name):
            raise ValueError(f"{name!r} is not a label name (letters, digits and _)")
        op = next((o for o in ("!=", "=~", "!~", "=") if raw.startswith(o)), "")
        value = raw[len(op) :]
        matcher = cls(name, op or "=", value)
        if matcher.is_regex:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"{name}: {raw!r} is not a valid regular expression ({exc})") from None
        return matcher

    @property
    def is_regex(self) -> bool:
        return self.op in ("=~", "!~")

    @property
    def is_equal(self) -> bool:
        return self.op in ("=", "=~")

    def matches(self, labels: Mapping[str, str]) -> bool:
        """As Prometheus does: a missing label is the empty string."""
        actual = labels.get(self.name, "")
        hit = re.fullmatch(self.value, actual) is not None if self.is_regex else actual == self.value
        return hit if self.is_equal else not hit

    def promql(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"')
        return f'{self.name}{self.op}"{escaped}"'

    def __str__(self) -> str:
        return self.promql()


def parse_labels(labels: Mapping[str, str]) -> tuple[LabelMatcher, ...]:
    """`detection.labels` as matchers, sorted by name for stable selectors."""
    return tuple(LabelMatcher.parse(k, str(v)) for k, v in sorted(labels.items()))


def all_match(matchers: Iterable[LabelMatcher], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)


def describe(matchers: Iterable[LabelMatcher]) -> str:
    """`{severity="critical", job!="node"}`, or `(any labels)`."""
    text = ", ".join(m.promql() for m in matchers)
    return "{" + text + "}" if text else "(any labels)"
