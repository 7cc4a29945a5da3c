"""The redactor and the literal-secret finder, on their own (the end-to-end proof is in
tests/test_credentials.py)."""

from __future__ import annotations

from typing import Any

import pytest

from blueprint_engine.workflows.redaction import MAX_DEPTH, REDACTED, Redactor, literal_secrets


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"Authorization": "Bearer abc"}, {"Authorization": REDACTED}),
        ({"x-api-key": "k", "X-Request-Id": "r1"}, {"x-api-key": REDACTED, "X-Request-Id": "r1"}),
        (
            {"db_password": "p", "password": None, "token": ""},
            {"db_password": REDACTED, "password": None, "token": ""},
        ),
        (
            {"idempotency_key": "run:node", "token_id": "tok_1"},
            {"idempotency_key": "run:node", "token_id": "tok_1"},
        ),
        ("see https://admin:hunter2@example.com/x", f"see https://{REDACTED}@example.com/x"),
        ("https://ghp_abc@github.com/o/r.git", f"https://{REDACTED}@github.com/o/r.git"),
        ("GET /v1?api_key=abc123&page=2", f"GET /v1?api_key={REDACTED}&page=2"),
        ("mail a@b.com about x=1", "mail a@b.com about x=1"),
        ([{"nested": {"client_secret": 42}}], [{"nested": {"client_secret": REDACTED}}]),
    ],
)
def test_named_fields_urls_and_query_keys(value: Any, expected: Any) -> None:
    assert Redactor()(value) == expected


def test_credential_values_are_found_anywhere_but_short_ones_are_left_to_names() -> None:
    redact = Redactor(["s3cr3t-value", "ab"])
    assert redact({"echo": "got s3cr3t-value twice: s3cr3t-value", "n": 2}) == {
        "echo": f"got {REDACTED} twice: {REDACTED}",
        "n": 2,
    }
    assert redact("ab stays: abc") == "ab stays: abc"
    encoded = Redactor(["AbC+dEf/key=="])
    assert encoded("GET /q?x=AbC%2BdEf%2Fkey%3D%3D") == f"GET /q?x={REDACTED}"
    assert (
        redact.text("error at https://h/?token=s3cr3t-value")
        == f"error at https://h/?token={REDACTED}"
    )


def test_deep_values_are_replaced_whole_not_skipped() -> None:
    deep: Any = "s3cr3t-value"
    for _ in range(MAX_DEPTH + 5):
        deep = [deep]
    flat = Redactor(["s3cr3t-value"])(deep)
    assert "s3cr3t-value" not in repr(flat)


def test_literal_secrets_are_found_and_templates_allowed() -> None:
    params = {
        "url": "https://u:p@example.com",
        "headers": {"Authorization": "Bearer x", "X-Api-Key": "{{ trigger_data.key }}"},
        "query": {"token": "abc"},
        "maps": "https://maps.example.com/api?key=AIza123&zoom=3",
        "json": {"password": ""},
        "list": ["https://{{ trigger_data.user }}@example.com"],
    }
    found = sorted(tuple(map(str, path)) for path, _ in literal_secrets(params))
    assert found == [("headers", "Authorization"), ("maps",), ("query", "token"), ("url",)]
