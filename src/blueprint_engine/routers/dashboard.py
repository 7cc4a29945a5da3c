"""Serves the dashboard's production build (``dashboard/dist``) beside the API.

The API's routes are untouched: the dashboard only answers what no route matched. A GET for an
unknown path outside the API's namespaces gets a file of the build (``/assets/...``,
``/favicon.svg``) or ``index.html`` (the single-page app routes it: ``/ui/runs/<id>``); an
unknown path inside an API namespace (``/runs/x/y``, ``/workflows/x/nope``) keeps its 404 JSON
error, and a wrong method on an API path keeps its 405.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.responses import FileResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from blueprint_engine import resources
from blueprint_engine.http import error_response

#: Where ``vite build`` writes the app (``./scripts/serve.sh`` builds it when sources change;
#: the container image has it in ``DASHBOARD_DIST``).
DIST = resources.dashboard_dist()


def install(app: FastAPI, dist: Path = DIST) -> None:
    """Answer unmatched GET/HEAD requests outside the API's namespaces with the dashboard.

    The API's namespaces are the first path segments of its OpenAPI paths and of the routes
    registered on the app itself (``docs``, ``openapi.json``, ``api``), read on the first
    unmatched request, when every route is in place. Without a build (``dist/index.html``
    missing) such a request is a 404 ``dashboard_not_built`` naming the command that builds it.
    """
    app.router.default = _Fallback(app, app.router.default, dist.resolve())


def _first_segment(path: str) -> str:
    return path.lstrip("/").split("/", 1)[0]


class _Fallback:
    """The router's ``default`` handler (no route matched): the dashboard, else ``not_found``."""

    def __init__(self, app: FastAPI, not_found: ASGIApp, dist: Path) -> None:
        self.app = app
        self.not_found = not_found
        self.dist = dist
        self._api_segments: frozenset[str] | None = None

    @property
    def api_segments(self) -> frozenset[str]:
        """First path segments of the API's routes (``runs``, ``workflows``, ``docs``...)."""
        if self._api_segments is None:
            paths = list(self.app.openapi().get("paths", {}))
            paths += [getattr(route, "path", "") for route in self.app.router.routes]
            self._api_segments = frozenset(_first_segment(p) for p in paths) - {""}
        return self._api_segments

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "/")
        wanted = (
            scope["type"] == "http"
            and scope.get("method") in ("GET", "HEAD")
            and _first_segment(path) not in self.api_segments
        )
        if not wanted:
            await self.not_found(scope, receive, send)
            return
        index = self.dist / "index.html"
        if not index.is_file():
            missing = error_response(
                404,
                "dashboard_not_built",
                "the dashboard is not built: ./scripts/serve.sh builds it (Node.js 18 or newer)",
            )
            await missing(scope, receive, send)
            return
        file = self._file(path)
        if file is not None:
            immutable = file.parent.name == "assets"  # content-hashed names
            cache = "public, max-age=31536000, immutable" if immutable else "no-cache"
            page = FileResponse(file, headers={"cache-control": cache})
        else:
            page = FileResponse(index, headers={"cache-control": "no-cache"})
        await page(scope, receive, send)

    def _file(self, path: str) -> Path | None:
        """The build's file at ``path``, if there is one (never outside ``dist``)."""
        relative = path.lstrip("/")
        if not relative:
            return None
        candidate = (self.dist / relative).resolve()
        if candidate.is_file() and candidate.is_relative_to(self.dist):
            return candidate
        return None
