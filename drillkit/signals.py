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
    """Why the run must stop, if it must; shared by every wait loop."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""
        self.signals = 0

    def set(self, reason: str) -> None:
        if not self._event.is_set():
            self.reason = reason
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`; True if the stop flag was raised meanwhile."""
        return self._event.wait(max(0.0, seconds))


@contextmanager
def handle_signals(flag: StopFlag, on_signal: object = None) -> Iterator[StopFlag]:
    """Route SIGINT and SIGTERM to `flag` for the duration of the block (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
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
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
