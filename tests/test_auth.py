"""API keys: required everywhere except /health and the signature-checked webhooks."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from blueprint_engine.app import create_app
from tests.conftest import make_settings


@pytest.fixture
def locked(database_url: str) -> Iterator[TestClient]:
    settings = make_settings(database_url, api_keys=["key-one", "key-two"])
    with TestClient(create_app(settings)) as client:
        yield client


def test_endpoints_need_a_key(locked: TestClient) -> None:
    for method, path in (
        ("GET", "/tools"),
        ("GET", "/blueprint/schema"),
        ("POST", "/workflow/execute"),
        ("POST", "/events"),
        ("GET", "/runs?trace_id=x"),
        ("POST", "/intent-parser"),
        ("POST", "/workflow/draft"),
    ):
        response = locked.request(method, path, json={})
        assert response.status_code == 401, (path, response.text)
        assert response.json()["error"]["code"] == "unauthorized"
    wrong = locked.get("/tools", headers={"X-API-Key": "key-three"})
    assert wrong.status_code == 401


def test_either_header_works_and_open_endpoints_stay_open(locked: TestClient) -> None:
    assert locked.get("/tools", headers={"X-API-Key": "key-two"}).status_code == 200
    assert locked.get("/tools", headers={"Authorization": "Bearer key-one"}).status_code == 200
    assert locked.get("/health").status_code == 200
    # Webhooks authenticate by signature instead: they get past the key check to it.
    assert locked.post("/webhooks/razorpay", content=b"{}").json()["error"]["code"] == (
        "invalid_signature"
    )
