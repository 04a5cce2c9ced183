"""One secret-scrubbing layer: passwords and tokens never reach a journal, report, log line,
error message or child process's command line.

Secrets come in through DSNs (URL and libpq key=value forms), URLs with userinfo (a
Prometheus URL), query parameters, HTTP headers and mappings with secret-looking keys. Each
is replaced by `***` where it stands, so the rest (host, user, database) still helps a reader.
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


def redact(text: str) -> str:
    """`text` with every secret it carries replaced by `***`."""
    if not text:
        return text
    for pattern in (_USERINFO, _QUERY, _KEYWORD, _AUTH):
        text = pattern.sub(_mask, text)
    return text


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
