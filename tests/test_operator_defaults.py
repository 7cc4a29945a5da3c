"""Defaults an operator gets without configuring anything, through the API: no CORS (the
dashboard is same-origin), and the API's description (``/openapi.json``, ``/docs``) open to
anyone even when identity is configured, since it describes no user's data."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from blueprint_engine.app import create_app
from tests.conftest import make_settings

SERVICE_KEY = "service-key-of-the-deployment"
DASHBOARD = "https://app.example.com"


def preflight(client: TestClient, origin: str) -> Any:
    """A browser's CORS preflight for a cross-origin ``POST /workflows``."""
    return client.options(
        "/workflows",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, x-api-key",
        },
    )


def test_the_api_description_is_open_when_identity_is_configured(database_url: str) -> None:
    settings = make_settings(database_url, api_keys=[SERVICE_KEY])
    with TestClient(create_app(settings)) as client:
        assert client.get("/me").status_code == 401  # identity is on: credentials are needed
        schema = client.get("/openapi.json")
        assert schema.status_code == 200 and "/workflows" in schema.json()["paths"]
        docs = client.get("/docs")
        assert docs.status_code == 200 and "swagger-ui" in docs.text


def test_no_origin_is_allowed_cross_origin_by_default(database_url: str) -> None:
    with TestClient(create_app(make_settings(database_url))) as client:
        answer = preflight(client, "https://elsewhere.example")
        assert "access-control-allow-origin" not in answer.headers
        simple = client.get("/health", headers={"Origin": "https://elsewhere.example"})
        assert "access-control-allow-origin" not in simple.headers


def test_cors_origins_lists_the_origins_allowed(database_url: str) -> None:
    settings = make_settings(database_url, cors_origins=[DASHBOARD])
    with TestClient(create_app(settings)) as client:
        allowed = preflight(client, DASHBOARD)
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == DASHBOARD
        other = preflight(client, "https://elsewhere.example")
        assert "access-control-allow-origin" not in other.headers
