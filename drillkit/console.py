"""The trainee's terminal during `drillkit train`: a header fitted to the terminal's width in
the top row, the latest notice in the second, and the scrolling text below them with the input
on the last row. Pages and hints are written into the scrolling text at once, never into what
the trainee is typing; text people typed reaches the terminal only through
`redact.for_terminal`. Without a tty, everything is plain lines.
"""

from __future__ import annotations

import select
import shutil
from dataclasses import dataclass
from typing import IO

from drillkit.redact import for_terminal
from drillkit.respond import tolerate_bytes


@dataclass(frozen=True)
class Part:
    """One field of the header, with a shorter form for a narrow terminal."""

    long: str
    short: str = ""


def fit(parts: list[Part], width: int) -> str:
    """The header in `width` columns: every field in full if it fits, else the short forms from
    the right, else cut at a field boundary with `…` (never mid-word: "acknowledg")."""
    texts = [p.long for p in parts]
    for i in reversed(range(len(parts))):
        if len(" | ".join(t for t in texts if t)) <= width:
            break
        texts[i] = parts[i].short
    line = " | ".join(t for t in texts if t)
    while len(line) > width and " | " in line:
        line = line.rsplit(" | ", 1)[0]
    return line if len(line) <= width else line[: max(0, width - 1)] + "…"


class Console:
    """The trainee's terminal. On a tty, a header in the top row (fitted to the width) and the
    latest notice in the second, a scroll region below them with the input on the last row: the
    header is drawn between cursor save and restore, never on the input line. A notice (a page,
    a hint) is written at once into the scrolling text just above the input line (the region is
    narrowed to end above it while the line is written), so it stays in the scrollback and
    never lands in what the trainee is typing. Without a tty, notices are plain lines."""

    def __init__(self, inp: IO[str], out: IO[str], tty: bool) -> None:
        self.inp, self.out, self.tty = inp, out, tty
        tolerate_bytes(inp)
        self.notice_line = ""
        self.eof = False

    @property
    def size(self) -> tuple[int, int]:
        """(columns, rows) now: a resized window is followed at the next redraw."""
        cols, rows = shutil.get_terminal_size((80, 24))
        return max(cols, 20), max(rows, 6)

    def start(self) -> None:
        if self.tty:  # reserve rows 1-2, scroll below them, cursor to the bottom
            rows = self.size[1]
            self.out.write(f"\x1b[2J\x1b[3;{rows}r\x1b[{rows};1H")
            self.out.flush()

    def end(self) -> None:
        if self.tty:
            rows = self.size[1]
            self.out.write(f"\x1b7\x1b[1;1H\x1b[2K\x1b[2;1H\x1b[2K\x1b8\x1b[r\x1b[{rows};1H\n")
            self.out.flush()

    def status(self, parts: list[Part]) -> None:
        if self.tty:
            cols = self.size[0]
            shown = fit([Part(for_terminal(p.long), for_terminal(p.short)) for p in parts], cols - 1)
            notice = self.notice_line[: cols - 1]
            self.out.write(f"\x1b7\x1b[1;1H\x1b[2K{shown}\x1b[2;1H\x1b[2K{notice}\x1b8")
            self.out.flush()

    def say(self, text: str) -> None:
        """Print now: only in answer to the trainee's own command (they just pressed Enter)."""
        self.out.write(for_terminal(text) + "\n")
        self.out.flush()

    def notice(self, text: str) -> None:
        """Something happened (a page, a timed hint): written at once above the input line."""
        shown = for_terminal(f">> {text}")
        if not self.tty:
            self.say(shown)
            return
        cols, rows = self.size
        self.notice_line = shown.replace("\n", " ")
        lines = [chunk[i : i + cols - 1] for chunk in shown.split("\n") for i in range(0, max(len(chunk), 1), cols - 1)]
        body = "".join(f"\n\r\x1b[2K{line}" for line in lines)
        # save; scroll region rows 3..rows-1; bottom of it; new lines there; region back; restore
        self.out.write(f"\x1b7\x1b[3;{rows - 1}r\x1b[{rows - 1};1H{body}\x1b[3;{rows}r\x1b8")
        self.out.flush()

    def lines(self) -> list[str]:
        """Complete lines typed since the last call (never blocks)."""
        out: list[str] = []
        while not self.eof:
            ready, _, _ = select.select([self.inp], [], [], 0)
            if not ready:
                break
            line = self.inp.readline()
            if not line:
                self.eof = True
                break
            out.append(line.strip())
        return out
