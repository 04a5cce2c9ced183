"""Keep the lab's chat API replicas running: the local analogue of a Deployment.

Drills kill, OOM and restart replicas; something has to bring them back the way a Deployment
controller would, so recovery is real and measurable. supervisord could do it, but faults need
to find the *current* replica process, so this supervisor writes one pid file per program
(``api-1.pid``...) atomically at every start and removes it when the process dies. A program
that dies is restarted after a back-off (1 s, doubling up to 8 s while it keeps dying within
10 s of its start — a crash loop), whatever the reason: a crash, SIGKILL, an OOM kill or a
deliberate SIGTERM to make it re-read its configuration.

    python -m drillkit.lab.supervise --config .drillkit/lab/supervise.json

The config is JSON: ``{"programs": [{"name", "argv", "pidfile", "log"}], "backoff": 1.0}``.
Children stay in the supervisor's process group, so stopping the group stops everything; on
SIGTERM/SIGINT the supervisor stops its children (SIGTERM, then SIGKILL after 5 s) and exits.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drillkit.files import write_atomically
from drillkit.signals import on_signals

log = logging.getLogger("drillkit.lab.supervise")

POLL_S = 0.05  # how often children are checked, seconds
STOP_GRACE_S = 5.0  # SIGTERM -> SIGKILL, seconds


@dataclass(frozen=True)
class Program:
    name: str
    argv: tuple[str, ...]
    pidfile: Path
    log: Path
    cwd: str | None = None


@dataclass(frozen=True)
class Config:
    programs: tuple[Program, ...]
    backoff: float = 1.0  # first restart delay, seconds
    max_backoff: float = 8.0  # seconds
    stable_after: float = 10.0  # a run this long resets the back-off, seconds

    @classmethod
    def load(cls, path: Path) -> Config:
        raw: dict[str, Any] = json.loads(path.read_text())
        programs = tuple(
            Program(p["name"], tuple(p["argv"]), Path(p["pidfile"]), Path(p["log"]), p.get("cwd"))
            for p in raw["programs"]
        )
        names = [p.name for p in programs]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate program names in {path}: {names}")
        knobs = {k: float(raw[k]) for k in ("backoff", "max_backoff", "stable_after") if k in raw}
        return cls(programs, **knobs)


@dataclass
class Slot:
    """One program and its current process, if any."""

    program: Program
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    restart_at: float = 0.0
    delay: float = 0.0
    restarts: int = 0


def write_pidfile(path: Path, pid: int) -> None:
    write_atomically(path, f"{pid}\n", durable=False)  # readers never see a half-written pid


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with {code}"


class Supervisor:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.slots = [Slot(p) for p in cfg.programs]
        self.stop = threading.Event()

    def start(self, slot: Slot) -> None:
        p = slot.program
        with open(p.log, "ab") as out:
            slot.proc = subprocess.Popen(
                list(p.argv), cwd=p.cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
            )
        slot.started = time.monotonic()
        write_pidfile(p.pidfile, slot.proc.pid)
        log.info("%s started, pid %d", p.name, slot.proc.pid)

    def check(self, slot: Slot, now: float) -> None:
        if slot.proc is None:
            if now >= slot.restart_at:
                slot.restarts += 1
                self.start(slot)
            return
        code = slot.proc.poll()
        if code is None:
            return
        uptime = now - slot.started
        with contextlib.suppress(FileNotFoundError):
            if slot.program.pidfile.read_text().strip() == str(slot.proc.pid):
                slot.program.pidfile.unlink()
        crash_loop = uptime < self.cfg.stable_after and slot.delay > 0
        slot.delay = min(slot.delay * 2, self.cfg.max_backoff) if crash_loop else self.cfg.backoff
        slot.restart_at = now + slot.delay
        log.warning(
            "%s (pid %d) %s after %.1fs; restarting in %.1fs",
            slot.program.name,
            slot.proc.pid,
            describe_exit(code),
            uptime,
            slot.delay,
        )
        slot.proc = None

    def run(self) -> None:
        for slot in self.slots:
            self.start(slot)
        while not self.stop.wait(POLL_S):
            now = time.monotonic()
            for slot in self.slots:
                self.check(slot, now)
        self.shutdown()

    def shutdown(self) -> None:
        live = [s.proc for s in self.slots if s.proc is not None and s.proc.poll() is None]
        for proc in live:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
                os.kill(proc.pid, signal.SIGCONT)  # a SIGSTOPped child must see the SIGTERM
        deadline = time.monotonic() + STOP_GRACE_S
        for proc in live:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for slot in self.slots:
            slot.program.pidfile.unlink(missing_ok=True)
        log.info("stopped %d program(s)", len(live))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m drillkit.lab.supervise",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", type=Path, required=True, help="JSON file naming the programs")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    sup = Supervisor(Config.load(args.config))
    with on_signals(lambda _name: sup.stop.set()):
        sup.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
