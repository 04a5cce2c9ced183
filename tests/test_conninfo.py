"""drillkit's reading of libpq connection strings (`drillkit.faults.local.conninfo`, used when a
scenario is loaded, so that the runner never imports psycopg) agrees with libpq's own, as
psycopg's `conninfo_to_dict` gives it: the same strings accepted, with the same parameters, and
the same refused — on a table of both forms and on random strings built from their syntax."""

from __future__ import annotations

import random

import pytest
from psycopg import conninfo as pg_conninfo
from psycopg import pq

from drillkit.faults.local import conninfo


def libpq(dsn: str) -> dict[str, str] | None:
    """psycopg's parse of `dsn`, None if it refuses it (as drillkit did before it had its own)."""
    try:
        return dict(pg_conninfo.conninfo_to_dict(dsn))
    except Exception:  # ProgrammingError, or UnicodeDecodeError for a %-decoded non-UTF-8 value
        return None


def ours(dsn: str) -> dict[str, str] | None:
    try:
        return conninfo.parse(dsn)
    except ValueError:
        return None


VALID = [
    "",
    "   ",
    "host=127.0.0.1 port=5432 dbname=chatbot user=chatbot",
    "host = localhost  port= 5432\tdbname =x",
    "host=h dbname='my db' user='o\\'brien'",
    "dbname='a\\\\b' host=h",
    "dbname=a\\ b host=h",
    "dbname=\\",
    "host='a'port=5",
    "options='-c statement_timeout=5s' application_name=x",
    "sslmode=disable connect_timeout=2 target_session_attrs=read-write",
    "host=a dbname=''",
    "user=é dbname=ü",
    "postgresql://",
    "postgres://",
    "postgresql://chatbot@127.0.0.1:23502/chatbot?sslmode=disable",
    "postgresql://chatbot@127.0.0.1:23502/chatbot?sslmode=disable&connect_timeout=2",
    "postgresql://host",
    "postgresql://host:",
    "postgresql://host:5432",
    "postgresql://host/",
    "postgresql://host/db?",
    "postgresql://host/db?sslmode=disable&",
    "postgresql://user@",
    "postgresql://@host",
    "postgresql://:5432/db",
    "postgresql://h1,h2:5433,h3/db",
    "postgresql://,/db",
    "postgresql://[::1]:5432/db",
    "postgresql://[::1]/db",
    "postgresql://[::1],[fe80::1]:7/db",
    "postgresql://host/my%20db",
    "postgresql://us%40er@host/db",
    "postgresql:///db?host=/var/run/postgresql",
    "postgresql://%2Fvar%2Frun%2Fpostgresql/db",
    "postgresql://host/db?ssl=true",
    "postgresql://host/db?application_name=a%26b",
    "postgresql://host/db/with/slashes",
    "postgresql://host?dbname=x",
    "postgresql://h?x@y=1&dbname=z",
    "postgresql://host/db?target_session_attrs=any&load_balance_hosts=random",
]
INVALID = [
    "chatbot",
    "host",
    "host=h port",
    "host=h =x",
    "nosuchoption=1",
    "Host=h",
    "host='unterminated",
    "host='a\\'",
    "host=h dbname='x\\",
    "postgresql://host/db?nosuch=1",
    "postgresql://host/db?sslmode",
    "postgresql://host/db?sslmode=a=b",
    "postgresql://host/db?&",
    "postgresql://host/db?a=1&&b=2",
    "postgresql://host/db?ssl=false",
    "postgresql://host/db?ssl=1",
    "postgresql://[::1",
    "postgresql://[]/db",
    "postgresql://[::1]x/db",
    "postgresql://host/%zz",
    "postgresql://host/db%",
    "postgresql://host/db%4",
    "postgresql://host/db%00",
    "postgresql://host/%ff",
    "postgresql://us%4@host/db",
    "postgresql://host/db?sslmode=dis%able",
    "POSTGRESQL://host/db",
    "postgresql:/host/db",
    "postgresql:host/db",
    "mysql://host/db",
    "http://host/db",
]


@pytest.mark.parametrize("dsn", VALID)
def test_valid_strings_parse_as_libpq_parses_them(dsn: str) -> None:
    expected = libpq(dsn)
    assert expected is not None, f"the table is wrong: libpq refuses {dsn!r}"
    assert ours(dsn) == expected


@pytest.mark.parametrize("dsn", INVALID)
def test_invalid_strings_are_refused_as_libpq_refuses_them(dsn: str) -> None:
    assert libpq(dsn) is None, f"the table is wrong: libpq accepts {dsn!r} as {libpq(dsn)}"
    with pytest.raises(ValueError, match=r"\S"):
        conninfo.parse(dsn)


def test_a_nul_character_is_refused() -> None:
    """libpq reads a C string and would stop at the NUL; drillkit refuses the string instead."""
    with pytest.raises(ValueError, match="NUL"):
        conninfo.parse("host=h\0 dbname=x")


def test_the_keywords_are_the_ones_this_libpq_knows() -> None:
    """A libpq with new connection parameters (psycopg-binary ships its own) fails this test,
    which says to extend KEYWORDS."""
    known = {o.keyword.decode() for o in pq.Conninfo.get_defaults()}
    assert known <= conninfo.KEYWORDS, f"libpq {pq.version()} knows more: {sorted(known - conninfo.KEYWORDS)}"


# Random strings from the pieces of both syntaxes, seeded so a failure repeats.
PIECES = [
    *("host", "port", "dbname", "user", "sslmode", "ssl", "nosuch", "Host", "x", "é"),
    *("=", "=", " ", "\t", "'", "'", "\\", "%", "%2", "%41", "%00", "%ff", "%zz", "true"),
    *("@", ":", "/", "?", "&", "[", "]", ",", "::1", "5432", "%20", "''", "\\'", "\n"),
]
PREFIXES = ["", "", "postgresql://", "postgres://", "postgresql:/", "host="]


def test_random_strings_are_read_as_libpq_reads_them() -> None:
    rng = random.Random(20261130)
    disagreements = []
    for _ in range(20000):
        dsn = rng.choice(PREFIXES) + "".join(rng.choice(PIECES) for _ in range(rng.randint(0, 8)))
        if ours(dsn) != libpq(dsn):
            disagreements.append((dsn, ours(dsn), libpq(dsn)))
    assert not disagreements, f"{len(disagreements)} disagreements, e.g. {disagreements[:5]}"
