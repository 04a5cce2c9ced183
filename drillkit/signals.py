"""SIGINT/SIGTERM set a flag; the engine checks it between steps and in every wait.

No work happens in the handler (not even raising the flag: a watcher thread does that), so a
signal can never interrupt a revert half-way, nor deadlock on a lock its thread holds. The first
signal asks the drill to stop (it then reverts and reports); a second one puts the default
handlers back, so a third really kills the process — whatever is left unreverted is in the
journal for `drillkit cleanup`.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TypeVar

T = TypeVar("T")


class StopFlag:
    """Why the run must stop, if it must: the one stop flag every wait in drillkit uses.

    While `reverting` (inside `protect()`), waits keep going: the first signal asks for the
    reverts, it must not cut them short. A `child()` flag is also raised when its parent is: a
    fault's background work stops when the drill stops or when its own revert begins."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._children: list[StopFlag] = []
        self._lock = threading.Lock()
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
        with self._lock:
            if not self._event.is_set():
                self.reason = reason
            self._event.set()
            children = list(self._children)
        for child in children:
            child.set(reason)

    def is_set(self) -> bool:
        return self._event.is_set()

    def child(self) -> StopFlag:
        """A flag raised with this one (and on its own), e.g. to end one fault's background work."""
        flag = StopFlag()
        flag.reverting = self.reverting
        with self._lock:
            self._children.append(flag)
            raised = self._event.is_set()
        if raised:
            flag.set(self.reason)
        return flag

    def sleep(self, seconds: float) -> bool:
        """Sleep up to `seconds`, woken early by a stop request; True if the caller should stop
        now (`interrupts()`). While reverting after a stop, sleeps the full time."""
        if self.interrupts():
            return True
        if self._event.is_set():
            time.sleep(max(0.0, seconds))
            return False
        self._event.wait(max(0.0, seconds))
        return self.interrupts()

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`; True if the flag is raised (even while reverting)."""
        return self._event.wait(max(0.0, seconds))


def wait_until(predicate: Callable[[], T], deadline: float, every: float, stop: StopFlag | None = None) -> T | None:
    """The one wait loop: call `predicate` every `every` seconds until it returns something
    truthy (returned at once), the monotonic `deadline` passes, or `stop` interrupts; then
    returns the last falsy result (None if it never ran). Always calls `predicate` at least
    once; callers that must tell a stop from a timeout ask `stop.interrupts()`."""
    result: T | None = None
    while True:
        result = predicate()
        if result:
            return result
        left = deadline - time.monotonic()
        if left <= 0:
            return result
        pause = min(every, left)
        if stop is not None:
            if stop.sleep(pause):
                return result
        else:
            time.sleep(pause)


@contextmanager
def handle_signals(flag: StopFlag) -> Iterator[StopFlag]:
    """Route SIGINT and SIGTERM to `flag` for the duration of the block (main thread only); a
    second signal puts the previous handlers back, so a third ends the process."""
    if threading.current_thread() is not threading.main_thread():
        yield flag
    else:
        with on_signals(lambda name: flag.set(f"received {name}"), counted=flag):
            yield flag


@contextmanager
def on_signals(
    act: Callable[[str], None],
    signals: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM),
    counted: StopFlag | None = None,
) -> Iterator[None]:
    """Call `act(signal name)` for each of `signals` received during the block, from a watcher
    thread woken through `signal.set_wakeup_fd` (main thread only). The handler itself only
    counts (into `counted.signals`, putting the previous handlers back at the second): acting in
    the handler could deadlock, since it runs in this thread, which may be holding the very
    lock `act` needs (`Event.set` takes the lock `Event.wait` holds, and every wait waits)."""
    previous = {s: signal.getsignal(s) for s in signals}
    import socket  # here: only a drill run watches signals, and `validate` loads this module

    reader, writer = socket.socketpair()
    writer.setblocking(False)
    wakeup = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)

    def handler(signum: int, frame: FrameType | None) -> None:
        if counted is not None:
            counted.signals += 1
            if counted.signals >= 2:
                for s, h in previous.items():
                    signal.signal(s, h)

    def watch() -> None:
        while data := reader.recv(64):  # the signal numbers; b"" once the block has ended
            for number in data:
                if number in previous:
                    act(signal.Signals(number).name)

    watcher = threading.Thread(target=watch, name="drillkit-signals", daemon=True)
    watcher.start()
    for s in previous:
        signal.signal(s, handler)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        signal.set_wakeup_fd(wakeup)
        writer.close()
        watcher.join(1.0)
        reader.close()
