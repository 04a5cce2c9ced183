"""Just enough PromQL reading for the checks before a drill: the vector selectors an alert
rule's expression reads, and the labels its top-level aggregation keeps.

Why not Prometheus: the versions drills run against (2.42 in Debian) have no parse endpoint,
and `promtool` only says whether a rule file is valid. This lexer skips strings, comments,
durations and the label lists of `by`/`without`/`on`/`ignoring`/`group_*`; anything it cannot
place makes the label check lenient (None), never a false error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

AGGREGATIONS = {"sum", "min", "max", "avg", "count", "stddev", "stdvar", "group", "quantile", "count_values"}
# `topk`/`bottomk`/`limitk` keep each series' labels: not a label-changing aggregation here
KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "atan2",
    "inf",
    "nan",
}
_LABEL_LISTS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
# label_replace, label_join and the like make labels the lexer cannot follow
_MAKES_LABELS = ("label_replace", "label_join", "count_values", "vector", "scalar")

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+|\#[^\n]*)
  | (?P<str>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
  | (?P<braces>\{(?:"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`|[^{}"'`])*\})
  | (?P<range>\[[^\]]*\])
  | (?P<num>(?:0x[0-9a-fA-F]+|\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+)(?:ms|[smhdwy])?(?:\d+(?:ms|[smhdwy]))*)
  | (?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
  | (?P<open>\()
  | (?P<close>\))
  | (?P<op>.)
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    start: int = 0  # offsets in the expression
    end: int = 0


def tokens(expr: str) -> list[Token]:
    return [
        Token(m.lastgroup or "op", m.group(), m.start(), m.end()) for m in _TOKEN.finditer(expr) if m.lastgroup != "ws"
    ]


def or_branches(expr: str) -> list[str]:
    """The operands of the expression's top-level `or` (itself if there is none), each
    unwrapped from enclosing parentheses and split again: a union fires when any branch does,
    so a metric missing from one branch does not stop it."""
    toks = tokens(expr)
    if toks and toks[0].kind == "open" and _close(toks, 0) == len(toks) - 1:
        return or_branches(expr[toks[0].end : toks[-1].start])
    cuts, depth = [], 0
    for i, t in enumerate(toks):
        depth += {"open": 1, "close": -1}.get(t.kind, 0)
        if depth == 0 and t.kind == "ident" and t.text.lower() == "or":
            cuts.append(i)
    if not cuts:
        return [expr.strip()]
    bounds = [0, *(toks[i].start for i in cuts), len(expr)]
    starts = [0, *(toks[i].end for i in cuts)]
    return [b for start, end in zip(starts, bounds[1:], strict=True) for b in or_branches(expr[start:end])]


def selectors(expr: str) -> list[str]:
    """Each vector selector of `expr` as written (`metric{matchers}`, `{__name__=~"x"}`, or a
    bare metric name), in order, without duplicates."""
    toks = tokens(expr)
    out: list[str] = []
    i = 0
    while i < len(toks):
        t = toks[i]
        nxt = toks[i + 1] if i + 1 < len(toks) else None
        if t.kind == "ident" and t.text.lower() in _LABEL_LISTS and nxt is not None and nxt.kind == "open":
            i = _close(toks, i + 1) + 1  # a label list, not selectors
            continue
        if t.kind == "ident" and t.text in AGGREGATIONS and nxt is not None and nxt.text.lower() in ("by", "without"):
            i += 1  # `sum by (...)`: the aggregation, then its label list
            continue
        sel = None
        if t.kind == "ident" and t.text.lower() not in KEYWORDS and not (nxt and nxt.kind == "open"):
            sel = t.text + (nxt.text if nxt is not None and nxt.kind == "braces" else "")
            i += 2 if nxt is not None and nxt.kind == "braces" else 1
        elif t.kind == "braces":
            sel, i = t.text, i + 1
        else:
            i += 1
        if sel is not None and sel not in out:
            out.append(sel)
    return out


def _close(toks: list[Token], i: int) -> int:
    """The index of the `)` matching the `(` at `i` (the last token if unbalanced)."""
    depth = 0
    for j in range(i, len(toks)):
        depth += {"open": 1, "close": -1}.get(toks[j].kind, 0)
        if depth == 0:
            return j
    return len(toks) - 1


def _labels(toks: list[Token], i: int) -> tuple[str, ...]:
    """The label names of the list whose `(` is at `i`."""
    return tuple(t.text for t in toks[i + 1 : _close(toks, i)] if t.kind in ("ident", "str"))


@dataclass(frozen=True)
class Output:
    """What labels the expression's result carries: `by` (exactly these), `without` (the
    series' labels less these), or `series` (the series' labels)."""

    mode: str  # by | without | series | absent
    labels: tuple[str, ...] = ()


def output(expr: str) -> Output | None:
    """The label shape of the expression's result, from its top-level (left-most) operand; None
    when the lexer cannot tell (label_replace and the like)."""
    if any(re.search(rf"\b{f}\s*\(", expr) for f in _MAKES_LABELS):
        return None
    toks = tokens(expr)
    i = 0
    while i < len(toks) and toks[i].kind in ("open", "num", "op"):  # 100 * (1 - avg(...)), (sum(...)) > 0
        i += 1
    if i >= len(toks):
        return None
    t = toks[i]
    if t.kind == "ident" and t.text in AGGREGATIONS:
        j = i + 1
        if j < len(toks) and toks[j].text.lower() in ("by", "without"):  # sum by (a) (...)
            return Output(toks[j].text.lower(), _labels(toks, j + 1))
        if j < len(toks) and toks[j].kind == "open":  # sum(...) by (a)
            k = _close(toks, j) + 1
            if k < len(toks) and toks[k].text.lower() in ("by", "without"):
                return Output(toks[k].text.lower(), _labels(toks, k + 1))
            return Output("by", ())  # sum(...) keeps no label
        return None
    if t.kind == "ident" and t.text in ("absent", "absent_over_time"):
        inner = selectors(expr)
        eq = re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*["\'`]', inner[0]) if inner else []
        return Output("absent", tuple(eq))
    return Output("series")
