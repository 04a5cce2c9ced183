"""SIGINT/SIGTERM set a flag; the engine checks it between steps and in every wait.

No work happens in the handler, so a signal can never interrupt a revert half-way. The first
signal asks the drill to stop (it then reverts and reports); a second one puts the default
handlers back, so a third really kills the process — whatever is left unreverted is in the
journal for `drillkit cleanup`.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class StopFlag:
    """Why the run must stop, if it must; shared by every wait loop.

    While `reverting`, waits (retry back-offs included) keep going: the first signal asks for
    the reverts, it must not cut them short."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""
        self.signals = 0
        self.reverting = False

    @contextmanager
    def protect(self) -> Iterator[None]:
        """Mark a block (the reverts) that a stop request must not interrupt."""
        previous, self.reverting = self.reverting, True
        try:
            yield
        finally:
            self.reverting = previous

    def interrupts(self) -> bool:
        """True when a wait should give up now: stop requested and not reverting."""
        return self._event.is_set() and not self.reverting

    def set(self, reason: str) -> None:
        if not self._event.is_set():
            self.reason = reason
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`; True if the stop flag was raised meanwhile."""
        return self._event.wait(max(0.0, seconds))


_active: list[StopFlag] = []


def active() -> StopFlag | None:
    """The stop flag of the drill running in this process, if any (for retry back-offs)."""
    return _active[-1] if _active else None


@contextmanager
def handle_signals(flag: StopFlag) -> Iterator[StopFlag]:
    """Route SIGINT and SIGTERM to `flag` for the duration of the block (main thread only)."""
    _active.append(flag)
    try:
        if threading.current_thread() is not threading.main_thread():
            yield flag
        else:
            with _routed(flag):
                yield flag
    finally:
        _active.remove(flag)


@contextmanager
def _routed(flag: StopFlag) -> Iterator[None]:
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum: int, frame: FrameType | None) -> None:
        flag.signals += 1
        flag.set(f"received {signal.Signals(signum).name}")
        if flag.signals >= 2:
            for s, h in previous.items():
                signal.signal(s, h)

    for s in previous:
        signal.signal(s, handler)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
