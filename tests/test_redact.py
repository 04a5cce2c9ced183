"""The secret-scrubbing layer: every DSN form, URL, query and header drillkit may carry."""

from __future__ import annotations

from pathlib import Path

import pytest

from drillkit.journal import Journal, read_journal
from drillkit.redact import redact, redact_data

SECRET = "S3cr-t@x:y"


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        (f"postgresql://chatbot:{SECRET}@db:5432/chat", "postgresql://chatbot:***@db:5432/chat"),
        (f"postgresql://chatbot:{SECRET}@h/db?password=&sslmode=disable", "postgresql://chatbot:***@h/db?password="),
        (f"postgres://h/db?sslmode=disable&password={SECRET}", "postgres://h/db?sslmode=disable&password=***"),
        (f"host=db user=chatbot password={SECRET} dbname=chat", "host=db user=chatbot password=*** dbname=chat"),
        (f"host=db password='{SECRET} two' port=5432", "host=db password=*** port=5432"),
        (f"http://prom:{SECRET}@127.0.0.1:9090/", "http://prom:***@127.0.0.1:9090/"),
        (f"Authorization: Bearer {SECRET}", "Authorization: Bearer ***"),
        ("{'Authorization': 'Basic S3cr3tQmFzZTY0=='}", "'Basic ***'"),
        (f"https://h/api?access_token={SECRET}", "https://h/api?access_token=***"),
        ("Authorization: Basic dXNlcjpwYXNz", "Authorization: Basic ***"),
    ],
)
def test_secrets_are_masked_where_they_stand(text: str, kept: str) -> None:
    out = redact(text)
    assert "S3cr" not in out, out
    assert kept in out, out


@pytest.mark.parametrize(
    "text",
    [
        "postgresql://chatbot@db/chat",
        "http://127.0.0.1:9090/api/v1/query?query=up",
        "a:b@c",
        # runbook prose: a word after Token/Basic/Bearer is not a credential
        "If token issue, rotate keys if compromised",
        "resolution: If token issue, rotate keys",
        "Basic checks first, then the Bearer of bad news",
    ],
)
def test_text_without_secrets_is_unchanged(text: str) -> None:
    assert redact(text) == text


def test_mappings_mask_secret_keys_and_scrub_strings() -> None:
    data = {"password": SECRET, "secret_name": "chatbot-db", "dsn": [f"postgresql://u:{SECRET}@h/d"], "n": 3}
    out = redact_data(data)
    assert out == {"password": "***", "secret_name": "chatbot-db", "dsn": ["postgresql://u:***@h/d"], "n": 3}


def test_the_journal_never_stores_a_secret(tmp_path: Path) -> None:
    j = Journal(tmp_path / "journal.jsonl")
    j.append("started", run_id="r", scenario={"dsn": f"postgresql://u:{SECRET}@h/d"}, prometheus=f"http://a:{SECRET}@p")
    j.close()
    assert "S3cr" not in (tmp_path / "journal.jsonl").read_text()
    assert read_journal(tmp_path)[0].data["prometheus"] == "http://a:***@p"
