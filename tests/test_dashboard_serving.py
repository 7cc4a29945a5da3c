"""The dashboard's build is served beside the API without changing any API answer."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from blueprint_engine.app import create_app
from blueprint_engine.config import Settings
from blueprint_engine.routers import dashboard


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text("<!doctype html><title>app</title>")
    (tmp_path / "assets" / "index-abc123.js").write_text("console.log(1)")
    (tmp_path / "favicon.svg").write_text("<svg/>")
    (tmp_path.parent / "secret.txt").write_text("outside the build")
    return tmp_path


def app_with(settings: Settings, dist: Path) -> TestClient:
    app = create_app(settings)
    dashboard.install(app, dist)  # the build under test replaces the real one
    return TestClient(app)


def test_pages_and_assets_are_served(settings: Settings, dist: Path) -> None:
    with app_with(settings, dist) as client:
        for path in ("/", "/ui/workflows", "/ui/runs/6f1c2a4e-9d3b-4c5e-8f7a-1b2c3d4e5f60", "/x"):
            response = client.get(path)
            assert response.status_code == 200, path
            assert response.text.startswith("<!doctype html>"), path
            assert response.headers["cache-control"] == "no-cache"
        asset = client.get("/assets/index-abc123.js")
        assert asset.text == "console.log(1)"
        assert "immutable" in asset.headers["cache-control"]
        assert client.get("/favicon.svg").text == "<svg/>"
        assert client.head("/ui/workflows").status_code == 200
        # A path that climbs out of the build gets the page, never the file.
        assert "outside" not in client.get("/..%2fsecret.txt").text


def test_api_answers_are_unchanged(settings: Settings, dist: Path) -> None:
    with app_with(settings, dist) as client:
        assert client.get("/health").json()["status"] == "ok"
        unknown = client.get("/runs/6f1c2a4e-9d3b-4c5e-8f7a-1b2c3d4e5f60/nope")
        assert unknown.status_code == 404
        assert unknown.json()["error"]["code"] == "not_found"
        assert client.get("/docs/nope").status_code == 404
        assert client.get("/workflow/draft").status_code == 405  # POST only
        assert client.post("/ui/workflows").status_code == 404  # pages are GET only
        assert client.get("/openapi.json").json()["openapi"]


def test_without_a_build_the_page_says_how_to_make_one(settings: Settings, tmp_path: Path) -> None:
    with app_with(settings, tmp_path / "missing") as client:
        response = client.get("/ui/workflows")
        assert response.status_code == 404
        error = response.json()["error"]
        assert error["code"] == "dashboard_not_built"
        assert "./scripts/serve.sh" in error["message"]
