"""libpq connection strings, read without libpq: the two forms libpq documents (a
`postgresql://` URI and `keyword=value` pairs), so that loading a scenario refuses a malformed
or password-carrying `dsn` with its file and line while the runner never imports psycopg (the
connections are made by the holder program, `holder.py`; psycopg alone adds ~11 MiB to a
drill's memory).

A transcription of libpq's own parser (`conninfo_parse`, `conninfo_uri_parse_options`,
`conninfo_uri_parse_params` and `conninfo_uri_decode` in fe-connect.c, behind
`PQconninfoParse`), keywords from libpq 18's documented list; tests/test_conninfo.py holds it
to psycopg's `conninfo_to_dict` on a table of valid and invalid strings and on random ones.
"""

from __future__ import annotations

KEYWORDS = frozenset(
    {
        "application_name",
        "channel_binding",
        "client_encoding",
        "connect_timeout",
        "dbname",
        "fallback_application_name",
        "gssdelegation",
        "gssencmode",
        "gsslib",
        "host",
        "hostaddr",
        "keepalives",
        "keepalives_count",
        "keepalives_idle",
        "keepalives_interval",
        "krbsrvname",
        "load_balance_hosts",
        "max_protocol_version",
        "min_protocol_version",
        "oauth_client_id",
        "oauth_client_secret",
        "oauth_issuer",
        "oauth_scope",
        "options",
        "passfile",
        "password",
        "port",
        "replication",
        "require_auth",
        "requirepeer",
        "scram_client_key",
        "scram_server_key",
        "service",
        "ssl_max_protocol_version",
        "ssl_min_protocol_version",
        "sslcert",
        "sslcertmode",
        "sslcompression",
        "sslcrl",
        "sslcrldir",
        "sslkey",
        "sslkeylogfile",
        "sslmode",
        "sslnegotiation",
        "sslpassword",
        "sslrootcert",
        "sslsni",
        "target_session_attrs",
        "tcp_user_timeout",
        "user",
    }
)
"""libpq's connection parameters (PostgreSQL 18 documentation, "Parameter Key Words")."""
SECRETS = ("password", "sslpassword", "oauth_client_secret")
"""Parameters whose value is a secret: never in a journalled DSN."""
_SPACE = " \t\n\v\f\r"  # C isspace() in the C locale
_URI_PREFIXES = ("postgresql://", "postgres://")  # compared case-sensitively, as libpq does
_HEX = "0123456789abcdefABCDEF"


def parse(conninfo: str) -> dict[str, str]:
    """The parameters `conninfo` sets, as `psycopg.conninfo.conninfo_to_dict` gives them;
    ValueError with libpq's reason if libpq would refuse the string."""
    if "\0" in conninfo:  # libpq reads a C string: it would silently stop there
        raise ValueError("NUL character in connection info string")
    if conninfo.startswith(_URI_PREFIXES):
        return _uri(conninfo)
    return _pairs(conninfo)


def _store(found: dict[str, str], keyword: str, value: str, what: str = "connection option") -> None:
    if keyword not in KEYWORDS:
        raise ValueError(f'invalid {what} "{keyword}"')
    found[keyword] = value


def _pairs(s: str) -> dict[str, str]:
    """`keyword = value …`: values unquoted (a backslash escapes the next character) or in
    single quotes (a backslash escapes a quote or backslash)."""
    found: dict[str, str] = {}
    i, n = 0, len(s)
    while True:
        while i < n and s[i] in _SPACE:
            i += 1
        if i >= n:
            return found
        start = i
        while i < n and s[i] != "=" and s[i] not in _SPACE:
            i += 1
        name = s[start:i]
        while i < n and s[i] in _SPACE:
            i += 1
        if i >= n or s[i] != "=":
            raise ValueError(f'missing "=" after "{name}" in connection info string')
        i += 1
        while i < n and s[i] in _SPACE:
            i += 1
        value: list[str] = []
        if i < n and s[i] == "'":
            i += 1
            while True:
                if i >= n:
                    raise ValueError("unterminated quoted string in connection info string")
                if s[i] == "\\":
                    value.append(s[i + 1 : i + 2])
                    i += 2
                elif s[i] == "'":
                    i += 1
                    break
                else:
                    value.append(s[i])
                    i += 1
        else:
            while i < n and s[i] not in _SPACE:
                if s[i] == "\\":
                    value.append(s[i + 1 : i + 2])
                    i += 2
                else:
                    value.append(s[i])
                    i += 1
        _store(found, name, "".join(value))


def _decode(text: str) -> str:
    """Percent-decoding as libpq (17 and later) does it: `%` must be followed by two hex
    digits, never `%00`; spaces around the value are dropped, a space inside it is an error."""
    out = bytearray()
    text = text.lstrip(" ")
    i = 0
    while i < len(text):
        if text[i] == " ":
            if text[i:].strip(" "):
                raise ValueError("unexpected spaces found in a URI part, use percent-encoded spaces (%20) instead")
            break
        if text[i] != "%":
            out += text[i].encode()
            i += 1
            continue
        token = text[i + 1 : i + 3]
        if len(token) < 2 or token[0] not in _HEX or token[1] not in _HEX:
            raise ValueError("invalid percent-encoded token")
        if token == "00":
            raise ValueError("forbidden value %00 in percent-encoded value")
        out.append(int(token, 16))
        i += 3
    try:
        return out.decode()
    except UnicodeDecodeError:  # psycopg reads every value back as UTF-8
        raise ValueError("percent-encoded value is not UTF-8") from None


def _upto(s: str, i: int, stops: str) -> int:
    """The index of the first character of `stops` in `s` from `i` (or the end)."""
    while i < len(s) and s[i] not in stops:
        i += 1
    return i


def _uri(s: str) -> dict[str, str]:
    """postgresql://[user[:password]@][host][:port][,…][/dbname][?keyword=value&…]"""
    found: dict[str, str] = {}
    prefix = next(p for p in _URI_PREFIXES if s.startswith(p))
    i = len(prefix)
    at = _upto(s, i, "@/")
    if at < len(s) and s[at] == "@":
        user_end = _upto(s, i, ":@")
        if user_end > i:
            found["user"] = _decode(s[i:user_end])
        if s[user_end] == ":" and at > user_end + 1:
            found["password"] = _decode(s[user_end + 1 : at])
        i = at + 1
    hosts: list[str] = []
    ports: list[str] = []
    end = ""  # the character that ended the host list: "", "/" or "?"
    while True:
        if i < len(s) and s[i] == "[":
            close = _upto(s, i + 1, "]")
            if close >= len(s):
                raise ValueError('end of string reached when looking for matching "]" in IPv6 host address in URI')
            if close == i + 1:
                raise ValueError("IPv6 host address may not be empty in URI")
            hosts.append(s[i + 1 : close])
            i = close + 1
            if i < len(s) and s[i] not in ":/?,":
                raise ValueError(f'unexpected character "{s[i]}" at position {i + 1} in URI (expected ":" or "/")')
        else:
            stop = _upto(s, i, ":/?,")
            hosts.append(s[i:stop])
            i = stop
        end = s[i] if i < len(s) else ""
        if end == ":":
            stop = _upto(s, i + 1, "/?,")
            ports.append(s[i + 1 : stop])
            i = stop
            end = s[i] if i < len(s) else ""
        else:
            ports.append("")
        if end != ",":
            break
        i += 1
    # libpq joins the hosts and the ports with commas, so `a,b` sets port "," (empty ports)
    if host := ",".join(hosts):
        found["host"] = _decode(host)
    if port := ",".join(ports):
        found["port"] = _decode(port)
    if end == "/":
        stop = _upto(s, i + 1, "?")
        if stop > i + 1:
            found["dbname"] = _decode(s[i + 1 : stop])
        i = stop
        end = s[i] if i < len(s) else ""
    if end == "?":
        _params(s[i + 1 :], found)
    return found


def _params(query: str, found: dict[str, str]) -> None:
    params = query.split("&")
    if not params[-1]:  # libpq stops at the end of the string, so a final "&" ends nothing
        params.pop()
    for param in params:
        keyword, eq, value = param.partition("=")
        if not eq:
            raise ValueError(f'missing key/value separator "=" in URI query parameter: "{param}"')
        if "=" in value:
            raise ValueError(f'extra key/value separator "=" in URI query parameter: "{keyword}"')
        keyword, value = _decode(keyword), _decode(value)
        if keyword == "ssl" and value == "true":  # libpq's JDBC compatibility
            keyword, value = "sslmode", "require"
        _store(found, keyword, value, "URI query parameter")
