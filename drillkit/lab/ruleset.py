"""The shipped alert rules at the scrape interval Prometheus actually runs.

Why: `rules/chatbot.rules.yml` is written for the lab's 1 s scrape, so drills detect in
seconds. At the 30 s most clusters scrape at, its `[15s]` windows hold no two samples:
`rate()`, `deriv()` and `changes()` return nothing and half the alerts can never fire. Rather
than a second copy of every rule, the rule set for another interval is derived from that one
file: every range `[N s]` becomes at least four intervals (Prometheus' advice for `rate()`),
every `for: N s` becomes N intervals (the same number of evaluations), every group evaluates at
the interval. At 1 s nothing changes, byte for byte.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from drillkit.model import parse_duration

RULES = Path(__file__).parent / "rules" / "chatbot.rules.yml"
DEFAULT_INTERVAL_S = 1
MAX_INTERVAL_S = 300  # past this Prometheus' 5 min staleness would make series vanish between scrapes
MIN_SAMPLES = 4  # a range covers at least this many intervals

_RANGE = re.compile(r"\[(\d+)s\]")
_FOR = re.compile(r"^(\s+for: )(\d+)s$", re.MULTILINE)
_GROUP_INTERVAL = re.compile(r"^(\s+interval: )1s$", re.MULTILINE)


def parse_interval(text: str) -> int:
    """Whole seconds from `1s`, `30s`, `1m`; a ValueError saying what is accepted otherwise."""
    try:
        seconds = parse_duration(text)
    except ValueError:
        seconds = -1.0
    if not seconds.is_integer() or not DEFAULT_INTERVAL_S <= seconds <= MAX_INTERVAL_S:
        raise ValueError(
            f"expected a whole number of seconds from 1s to {MAX_INTERVAL_S // 60}m (15s, 30s, 1m), got {text!r}"
        )
    return int(seconds)


def duration(seconds: int) -> str:
    """Prometheus' spelling: `2m` when whole minutes, else `90s`."""
    return f"{seconds // 60}m" if seconds >= 60 and seconds % 60 == 0 else f"{seconds}s"


def window(base_s: int, interval_s: int) -> int:
    """A range written `[base_s]` for 1 s, at `interval_s`: never fewer than MIN_SAMPLES intervals."""
    return max(base_s, MIN_SAMPLES * interval_s)


def scale(text: str, interval_s: int) -> str:
    """A rules file written for 1 s, rewritten for `interval_s` (unchanged at 1 s)."""
    if interval_s == DEFAULT_INTERVAL_S:
        return text
    text = _RANGE.sub(lambda m: f"[{duration(window(int(m[1]), interval_s))}]", text)
    text = _FOR.sub(lambda m: f"{m[1]}{duration(int(m[2]) * interval_s)}", text)
    text = _GROUP_INTERVAL.sub(lambda m: f"{m[1]}{duration(interval_s)}", text)
    return f"# Derived by drillkit.lab.ruleset for a {duration(interval_s)} scrape and evaluation interval.\n{text}"


def rules_at(interval_s: int = DEFAULT_INTERVAL_S) -> str:
    """The shipped rules (`rules/chatbot.rules.yml`) for a Prometheus scraping every `interval_s`."""
    return scale(RULES.read_text(), interval_s)


def main(argv: list[str] | None = None) -> None:
    """`python -m drillkit.lab.ruleset 30s`: print the rules for your own Prometheus."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("interval", help="your Prometheus' scrape and evaluation interval, e.g. 30s")
    args = parser.parse_args(argv)
    try:
        interval_s = parse_interval(args.interval)
    except ValueError as exc:
        parser.error(str(exc))
    print(rules_at(interval_s), end="")


if __name__ == "__main__":
    main()
