"""The one retry policy per boundary (Kubernetes API, Prometheus API, database).

Explicit stop, exponential backoff with jitter, a log line per attempt; only errors the owning
module classified as transient are retried, never a 4xx caused by our input.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from drillkit.errors import Aborted, TransientError
from drillkit.signals import StopFlag

if TYPE_CHECKING:  # imported when a policy is made: validating a scenario needs neither
    import tenacity

F = TypeVar("F", bound=Callable[..., Any])


def _wait_with_retry_after(base: tenacity.wait.wait_base) -> Callable[[tenacity.RetryCallState], float]:
    """Honour a server's Retry-After (kept on the error) when it asks for longer than backoff."""

    def wait(state: tenacity.RetryCallState) -> float:
        delay = base(state)
        exc = state.outcome.exception() if state.outcome else None
        asked = getattr(exc, "retry_after", None)
        return max(delay, float(asked)) if asked else delay

    return wait


def _exponential_jitter(initial: float, maximum: float) -> tenacity.wait.wait_base:
    """tenacity >= 9.2 calls the first delay `multiplier` (and warns about `initial`)."""
    import tenacity

    try:
        return tenacity.wait_exponential_jitter(multiplier=initial, max=maximum)
    except TypeError:  # older tenacity
        return tenacity.wait_exponential_jitter(initial=initial, max=maximum)


def _sleeper(stop: StopFlag | None) -> Callable[[float], None]:
    """Back off, but give up at once when the drill is asked to stop (outside its reverts)."""

    def sleep(seconds: float) -> None:
        if stop is None:
            time.sleep(seconds)
        elif stop.sleep(seconds):
            raise Aborted(stop.reason, by_signal=True)

    return sleep


def retrying(
    what: str,
    stop: StopFlag | None,
    attempts: int = 6,
    max_delay: float = 60.0,
    initial: float = 0.5,
    maximum: float = 8.0,
) -> tenacity.Retrying:
    """A Retrying for one boundary: TransientError only, `attempts` tries within `max_delay` s;
    back-offs end early (Aborted) when `stop` interrupts (None: no drill to stop, e.g. tools)."""
    import logging

    import tenacity

    log = logging.getLogger("drillkit.retry")

    def before_sleep(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        sleep = state.next_action.sleep if state.next_action else 0.0
        log.warning(
            "%s: attempt %d/%d failed; retrying in %.1f s: %s", what, state.attempt_number, attempts, sleep, exc
        )

    return tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(TransientError),
        stop=tenacity.stop_after_attempt(attempts) | tenacity.stop_after_delay(max_delay),
        wait=_wait_with_retry_after(_exponential_jitter(initial, maximum)),
        before_sleep=before_sleep,
        sleep=_sleeper(stop),
        reraise=True,
    )
