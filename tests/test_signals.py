"""SIGINT/SIGTERM raise the stop flag without deadlocking, whenever they land.

Python runs a signal handler in the main thread between two bytecodes, possibly while that
thread holds the lock `threading.Event.set` takes (inside `Event.wait`, which every drillkit
wait calls): a handler raising the flag itself then waits forever for its own thread. This
happened in CI (a SIGTERMed drill hung until killed). Each case runs in a child process with a
timeout, so a deadlock fails the test instead of hanging it."""

from __future__ import annotations

import subprocess
import sys

import pytest

LANDS_WHILE_THE_LOCK_IS_HELD = """
import os, signal, time
from drillkit.signals import StopFlag, handle_signals

flag = StopFlag()
with handle_signals(flag):
    with flag._event._cond:  # this thread holds the Event's lock, as inside Event.wait
        os.kill(os.getpid(), signal.{sig})
        time.sleep(0.1)  # the handler runs here, with the lock held
    print(flag.wait(5), flag.reason, flag.signals)
"""

A_SECOND_SIGNAL_KILLS = """
import os, signal, time
from drillkit.signals import StopFlag, handle_signals

flag = StopFlag()
with handle_signals(flag):
    os.kill(os.getpid(), signal.SIGTERM)
    print(flag.wait(5), flag.reason, flag.signals, flush=True)
    os.kill(os.getpid(), signal.SIGTERM)  # second: the default handlers are back
    os.kill(os.getpid(), signal.SIGTERM)  # third: the default action, death
    time.sleep(5)
    print("still alive")
"""


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20)


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_a_signal_landing_while_the_flags_lock_is_held_raises_it(sig: str) -> None:
    r = _run(LANDS_WHILE_THE_LOCK_IS_HELD.format(sig=sig))
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", "received", sig, "1"], r.stdout


def test_the_handlers_go_back_after_the_second_signal() -> None:
    r = _run(A_SECOND_SIGNAL_KILLS)
    assert r.stdout.splitlines() == ["True received SIGTERM 1"], r.stdout + r.stderr
    assert r.returncode == -15, r.returncode


def test_the_previous_handlers_and_wakeup_fd_are_restored() -> None:
    code = """
import signal
from drillkit.signals import StopFlag, handle_signals
before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
with handle_signals(StopFlag()):
    pass
print(before == (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)), signal.set_wakeup_fd(-1))
"""
    r = _run(code)
    assert r.stdout.split() == ["True", "-1"], r.stdout + r.stderr
