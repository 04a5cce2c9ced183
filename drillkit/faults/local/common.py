"""What the local faults share: finding their one target process, telling the host's refusal
from a bug, how long a drill may last, and starting a program again in a revert."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from drillkit.errors import Aborted, PreflightError, UnavailableError
from drillkit.faults import Fault, FaultContext, Undo
from drillkit.procs import detach, find_processes, matches_everything

if TYPE_CHECKING:
    from drillkit.signals import StopFlag

S = TypeVar("S", bound=Fault[Any, Any, Any])
Found = TypeVar("Found")


def host_errors(inject: Callable[[S, Found, Undo], None]) -> Callable[[S, Found, Undo], None]:
    """A file, cgroup or process operation that fails mid-inject is the host refusing, not a
    bug: report it as drillkit's UnavailableError (the reverts run either way)."""

    @functools.wraps(inject)
    def wrapper(self: S, found: Found, undo: Undo) -> None:
        try:
            inject(self, found, undo)
        except OSError as exc:
            raise UnavailableError(f"{self.kind}: {exc}") from exc

    return wrapper


def check_stop(stop: StopFlag) -> None:
    """Give up the inject when the drill is asked to stop (its reverts deal with the rest)."""
    if stop.interrupts():
        raise Aborted(stop.reason, by_signal=True)


def validate_target(pattern: str | None, pidfile: str | None, required: bool = True) -> None:
    """Exactly one of `pattern` and `pidfile` (at most one unless `required`); a valid regex."""
    if required and (pattern is None) == (pidfile is None):
        raise ValueError("expected exactly one of `pattern` or `pidfile`")
    if not required and pattern is not None and pidfile is not None:
        raise ValueError("expected at most one of `pattern` or `pidfile`")
    if pattern is not None:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"pattern: not a valid regular expression: {exc}") from None
        if matches_everything(pattern):
            raise ValueError(f"pattern: {pattern!r} would match every process; name the target's command line")


def one_target(kind: str, pattern: str | None, pidfile: str | None) -> int:
    """The one process `pattern` or `pidfile` names; PreflightError for none or several."""
    found = find_processes(pattern, pidfile)
    what = f"pattern {pattern!r}" if pattern else f"pid file {pidfile}"
    if not found:
        raise PreflightError(f"{kind}: no running process matches {what}")
    if len(found) > 1:
        raise PreflightError(
            f"{kind}: {what} matches {len(found)} processes ({', '.join(map(str, found))}); "
            "narrow the pattern or use a pid file"
        )
    return found[0]


def drill_length(ctx: FaultContext) -> float:
    """How long a whole drill may last: detection + recovery windows plus a minute of margin
    (the dead-man's switch of harm that could outlive drillkit). An exercise's recovery window
    is its time limit and close-out window, when those are longer."""
    s = ctx.scenario
    recovery = s.recovery.within
    if s.exercise:
        recovery = max(recovery, s.training.time_limit + s.training.close_out)
    return s.detection.within + recovery + s.recovery.verify_within + 60.0


def restart(argv: tuple[str, ...], cwd: str | None, log: str | None, times: int) -> list[int]:
    """Start `argv` `times` times (detached, output appended to `log`); their pids."""
    return [detach(list(argv), cwd, log) for _ in range(max(0, times))]
