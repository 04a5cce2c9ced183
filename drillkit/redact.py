"""One scrubbing layer for what drillkit writes and shows: passwords and tokens never reach a
journal, report, log line, error message or child process's command line, and what people
typed never reaches a file as text that cannot be written, nor a terminal as control codes.

Secrets come in through DSNs (URL and libpq key=value forms), URLs with userinfo (a
Prometheus URL), query parameters, HTTP headers and mappings with secret-looking keys. Each
is replaced by `***` where it stands, so the rest (host, user, database) still helps a reader.

People's text (responders' notes and names, a trainee's console, scenario text) may hold bytes
that were not UTF-8 (Python keeps them as lone surrogates, which UTF-8 cannot encode:
`is_text`) and escape sequences that would clear or rewrite a facilitator's screen
(`for_terminal`, the one function everything shown on a terminal goes through).
"""

from __future__ import annotations

import re
from typing import Any

MASK = "***"

_SECRET_NAMES = (
    r"(?:password|passwd|pwd|sslpassword|token|api[_-]?key|access[_-]?token|auth[_-]?token"
    r"|bearer[_-]?token|client[_-]?secret)"
)
# scheme://user:password@host — the password is whatever sits between the first ':' after the
# scheme's '//' and the last '@' before the host (a password may itself hold '@' or ':').
_USERINFO = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@?#]*:)(?P<secret>[^\s/?#]*)(?P<at>@)")
# ?password=… / &token=… in a URL query
_QUERY = re.compile(rf"(?P<head>[?&;]{_SECRET_NAMES}=)(?P<secret>[^&#\s'\"]*)", re.IGNORECASE)
# libpq key=value DSN: password=secret or password='with spaces'
_KEYWORD = re.compile(
    rf"(?P<head>(?:^|(?<=[\s,{{(]))[\"']?{_SECRET_NAMES}[\"']?\s*[=:]\s*)(?P<secret>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[^\s,;&'\"}})]+)",
    re.IGNORECASE,
)
# Authorization: Bearer xyz / Basic xyz, also in a header dict's repr
_AUTH = re.compile(r"(?P<head>\b(?:Bearer|Basic|Token)\s+)(?P<secret>[A-Za-z0-9._~+/=-]{4,})", re.IGNORECASE)
_SECRET_KEY = re.compile(rf"^{_SECRET_NAMES}$", re.IGNORECASE)


def _mask(m: re.Match[str]) -> str:
    return m.group("head") + (MASK if m.group("secret") else "") + (m.groupdict().get("at") or "")


def _credential(word: str) -> bool:
    """`word` after Bearer/Basic/Token looks like a credential, not prose ("If token issue,
    rotate keys"): it has a digit or a symbol, mixes cases inside, or is long."""
    return (
        len(word) >= 16
        or any(not c.isalpha() for c in word)
        or (any(c.isupper() for c in word[1:]) and any(c.islower() for c in word))
    )


def _mask_auth(m: re.Match[str]) -> str:
    return _mask(m) if _credential(m.group("secret")) else m.group(0)


def redact(text: str) -> str:
    """`text` with every secret it carries replaced by `***`."""
    if not text:
        return text
    for pattern in (_USERINFO, _QUERY, _KEYWORD):
        text = pattern.sub(_mask, text)
    return _AUTH.sub(_mask_auth, text)


def redact_data(value: Any) -> Any:
    """JSON-like data with secrets masked: strings scrubbed, values of secret-named keys masked."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {
            k: (MASK if isinstance(k, str) and _SECRET_KEY.search(k) and isinstance(v, str) and v else redact_data(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact_data(v) for v in value]
    return value


# --- people's text ----------------------------------------------------------------------------

# A lone surrogate: what Python makes of a byte that was not UTF-8 (argv, the environment, a
# terminal read with surrogateescape), or what a JSON `\udcff` escape decodes to.
_SURROGATE = re.compile("[\ud800-\udfff]")
# What a terminal acts on instead of showing: CSI sequences (cursor moves, clearing), OSC, DCS,
# SOS, PM and APC strings up to their terminator (window titles, hyperlinks, clipboard writes),
# their 8-bit C1 forms, any other escape, the C0 controls but tab and newline, DEL and C1.
_CONTROL = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]|\x9b[0-?]*[ -/]*[@-~]"
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)"
    r"|\x1b[ -/]*[0-~]?"
    r"|[\x00-\x08\x0b-\x1f\x7f-\x9f]"
)
REPLACEMENT = "\ufffd"


def is_text(text: str) -> bool:
    """False if `text` holds a lone surrogate: bytes that were not UTF-8, which a UTF-8 file
    or terminal cannot take."""
    return _SURROGATE.search(text) is None


def for_terminal(text: str) -> str:
    """`text` as a terminal may show it: no escape sequences or control characters (tab and
    newline kept), each lone surrogate U+FFFD. Everything drillkit shows on a terminal that a
    person may have typed goes through here: `watch`, the trainee's console, every stderr and
    log line."""
    return _CONTROL.sub("", _SURROGATE.sub(REPLACEMENT, text))
