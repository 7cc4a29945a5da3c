"""HTTP plumbing shared by routers: the input boundary's route class, error rendering, body
limit, dependencies."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine
from typing import Annotated, Any

import psycopg
from fastapi import Depends, FastAPI, Header, Query, Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from sse_starlette import EventSourceResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from blueprint_engine import boundary, metrics
from blueprint_engine.agents.architect import WorkflowArchitect
from blueprint_engine.config import Settings
from blueprint_engine.errors import AppError, DatabaseUnavailable, PayloadTooLarge, Unauthorized
from blueprint_engine.integrations import ToolResources
from blueprint_engine.services.auth_service import Authenticator, Caller
from blueprint_engine.services.intent_service import IntentService
from blueprint_engine.services.progress_hub import ProgressHub
from blueprint_engine.store.db import Pool, check_soon
from blueprint_engine.workflows.runners import Dispatcher

log = logging.getLogger(__name__)

# The getters below are ``async def`` so that FastAPI calls them on the event loop: a plain
# ``def`` dependency is sent to the thread pool, a thread hop per dependency per request (a
# quarter of the API's CPU per webhook delivery, measured by bench/webhook_bench.py).


async def _pool(request: Request) -> Pool:
    pool: Pool = request.app.state.pool
    return pool


async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def _tools(request: Request) -> ToolResources:
    tools: ToolResources = request.app.state.tools
    return tools


async def _dispatcher(request: Request) -> Dispatcher:
    dispatcher: Dispatcher = request.app.state.dispatcher
    return dispatcher


async def _architect(request: Request) -> WorkflowArchitect | None:
    architect: WorkflowArchitect | None = request.app.state.architect
    return architect


async def _intents(request: Request) -> IntentService:
    intents: IntentService = request.app.state.intents
    return intents


async def _hub(request: Request) -> ProgressHub:
    hub: ProgressHub = request.app.state.hub
    return hub


#: Event ids are PostgreSQL bigints.
_MAX_ID = 2**63 - 1


async def stream_cursor(
    last_id: Annotated[
        int | None, Query(ge=0, le=_MAX_ID, description="Resume after this event id (the SSE id)")
    ] = None,
    last_event_id: Annotated[
        int | None,
        Header(ge=0, le=_MAX_ID, description="The last SSE id seen (EventSource sends it)"),
    ] = None,
) -> int | None:
    """Where a reconnecting SSE client resumes: ``Last-Event-ID`` if sent, else ``?last_id=``
    (the name of the seed's gateway); None when neither is given."""
    return last_event_id if last_event_id is not None else last_id


def sse(frames: AsyncIterator[bytes], kind: metrics.StreamKind) -> EventSourceResponse:
    """An SSE response of encoded frames, with a keep-alive comment every
    ``SSE_PING_SECONDS`` and a client that takes over ``SSE_SEND_TIMEOUT`` seconds to accept
    a frame cut off; counted as a ``kind`` watcher while it is open
    (``blueprint_sse_watchers``)."""
    return EventSourceResponse(
        _watched(frames, kind), ping=SSE_PING_SECONDS, send_timeout=SSE_SEND_TIMEOUT
    )


async def _watched(frames: AsyncIterator[bytes], kind: metrics.StreamKind) -> AsyncIterator[bytes]:
    """``frames`` while counted as a watcher; closing this closes ``frames`` at once (the
    response closes its iterator when a send fails), so its own clean-up is not left to GC."""
    with metrics.watching(kind):
        try:
            async for frame in frames:
                yield frame
        finally:
            if isinstance(frames, AsyncGenerator):
                await frames.aclose()


#: Seconds between keep-alive comments on an idle SSE stream (proxies close silent ones).
SSE_PING_SECONDS = 15
#: Seconds a client may take to accept one SSE frame before its stream is closed.
SSE_SEND_TIMEOUT = 30


async def current_caller(
    request: Request,
    authorization: Annotated[str | None, Header()] = None,
    x_api_key: Annotated[str | None, Header()] = None,
    x_user_id: Annotated[str | None, Header()] = None,
) -> Caller:
    """The user a request acts for (:mod:`blueprint_engine.services.auth_service`): a Supabase
    access token or an API key as ``Authorization: Bearer``, or an API key as ``X-API-Key``;
    service keys may add ``X-User-Id``.

    Raises:
        Unauthorized: 401. InvalidHeader: 400 (a malformed or unauthorised ``X-User-Id``).
    """
    bearer = None
    if authorization is not None:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthorized("the Authorization header must be 'Bearer <token or API key>'")
        bearer = value.strip()
    authenticator: Authenticator = request.app.state.auth
    return await authenticator.authenticate(
        request.app.state.pool, bearer=bearer, api_key=x_api_key, act_for=x_user_id
    )


PoolDep = Annotated[Pool, Depends(_pool)]
CallerDep = Annotated[Caller, Depends(current_caller)]
#: For routes that need a caller but not which one (the tool catalog).
Authenticated = Depends(current_caller)
IntentsDep = Annotated[IntentService, Depends(_intents)]
ArchitectDep = Annotated[WorkflowArchitect | None, Depends(_architect)]
DispatcherDep = Annotated[Dispatcher, Depends(_dispatcher)]
SettingsDep = Annotated[Settings, Depends(_settings)]
#: The process's database and HTTP client for tool calls (dry runs).
ToolsDep = Annotated[ToolResources, Depends(_tools)]
HubDep = Annotated[ProgressHub, Depends(_hub)]
CursorDep = Annotated[int | None, Depends(stream_cursor)]


class CheckedRequest(Request):
    """A request whose JSON body is parsed by the input boundary (:func:`boundary.loads`)."""

    _checked_json: Any

    async def json(self) -> Any:
        """The body as JSON, checked; parsed once however often it is asked for.

        Raises:
            MalformedJson: 400. ValidationFailed: 422, with the path of each bad value.
        """
        if not hasattr(self, "_checked_json"):
            self._checked_json = boundary.loads(await self.body())
        return self._checked_json


class CheckedRoute(APIRoute):
    """A route whose input passes the input boundary (:mod:`blueprint_engine.boundary`) before
    FastAPI converts it: path and query parameters, the headers the route declares (its own
    and its dependencies'), and a JSON body. The body is parsed once, by the boundary; FastAPI
    and the endpoint read that parse (:class:`CheckedRequest`). An endpoint that parses a form
    itself calls :func:`boundary.check_form`. Every router uses this class except the signed
    webhooks' and the hooks', which must check their signature (and token) before anything
    else."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """Wrap FastAPI's handler with the boundary's checks."""
        handle = super().get_route_handler()
        headers = _declared_headers(self.dependant)
        takes_body = self.body_field is not None

        async def checked(request: Request) -> Response:
            request = CheckedRequest(request.scope, request.receive)
            boundary.reject(
                boundary.check_pairs("path", request.path_params.items())
                + boundary.check_pairs("query", request.query_params.multi_items())
            )
            for name in headers:
                if (value := request.headers.get(name)) is not None:
                    boundary.check_header(name, value)
            is_json = _is_json(request.headers.get("content-type", ""))
            if takes_body and is_json and await request.body():
                await request.json()  # boundary errors surface here, not as FastAPI's 400
            return await handle(request)

        return checked


def _declared_headers(dependant: Dependant) -> set[str]:
    """Lower-case names of the headers an endpoint and its dependencies declare (FastAPI reads
    ``x_api_key`` as ``x-api-key`` unless ``convert_underscores=False``)."""
    names = {
        (
            field.alias.replace("_", "-")
            if getattr(field.field_info, "convert_underscores", True)
            else field.alias
        ).lower()
        for field in dependant.header_params
    }
    for sub in dependant.dependencies:
        names |= _declared_headers(sub)
    return names


def _is_json(content_type: str) -> bool:
    """Whether FastAPI would parse a body of this type as JSON (``application/json``,
    ``application/*+json``)."""
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def error_response(status: int, code: str, message: str, details: Any = None) -> JSONResponse:
    """A JSON error body: ``{"error": {"code", "message", "details"?}}``."""
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    return JSONResponse({"error": body}, status_code=status)


def install_error_handlers(app: FastAPI) -> None:
    """Render every error as JSON with a code, a message and, for validation, field paths."""

    @app.exception_handler(AppError)
    async def _app_error(request: Request, exc: AppError) -> JSONResponse:
        headers = None if exc.retry_after is None else {"Retry-After": str(exc.retry_after)}
        return JSONResponse(exc.to_body(), status_code=exc.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = [{"loc": list(e["loc"]), "message": e["msg"]} for e in exc.errors()]
        first = details[0]
        where = ".".join(str(p) for p in first["loc"])
        if all(d["loc"][0] == "header" for d in details):  # e.g. a Last-Event-ID that is no int
            return error_response(400, "invalid_header", f"{where}: {first['message']}", details)
        return error_response(422, "validation_error", f"{where}: {first['message']}", details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {
            400: "malformed_body",  # Starlette's form parser: no multipart boundary, bad body
            404: "not_found",
            405: "method_not_allowed",
            413: "payload_too_large",
        }
        return error_response(
            exc.status_code, codes.get(exc.status_code, "http_error"), str(exc.detail)
        )

    @app.exception_handler(psycopg.OperationalError)
    async def _database(request: Request, exc: psycopg.OperationalError) -> JSONResponse:
        log.warning("database unavailable on %s %s: %s", request.method, request.url.path, exc)
        check_soon(request.app.state.pool)
        error = DatabaseUnavailable("the database is unavailable; try again in a few seconds")
        return JSONResponse(error.to_body(), status_code=503, headers={"Retry-After": "5"})

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "internal error; see the server log")


class BodyLimitMiddleware:
    """Reject request bodies over ``max_bytes`` with 413 (by header, or while reading a
    chunked body, which is buffered up to the limit and then handed on). ``overrides`` gives
    path prefixes their own limit (None: unlimited).

    The rest of a refused body is read and thrown away (up to ``DRAIN_BYTES``) before the
    answer: a server that closes a connection with unread data makes the kernel reset it, and
    a client still sending its body then sees the reset instead of the 413. A client that sent
    ``Expect: 100-continue`` has sent no body yet and is answered at once.
    """

    DRAIN_BYTES = 64 * 1024 * 1024  # past this a client has had its chance; it may see a reset

    def __init__(
        self, app: ASGIApp, max_bytes: int, overrides: dict[str, int | None] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.overrides = overrides or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit: int | None = self.max_bytes
        for prefix, override in self.overrides.items():
            if scope["path"].startswith(prefix):
                limit = override
        if limit is None:
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            waiting = headers.get(b"expect", b"").lower() == b"100-continue"
            await self._reject(receive, send, limit, more_body=not waiting)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await self._reject(receive, send, limit, message.get("more_body", False))
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        pending: list[Message] = [{"type": "http.request", "body": b"".join(chunks)}]

        async def replay() -> Message:
            return pending.pop() if pending else await receive()

        await self.app(scope, replay, send)

    async def _reject(self, receive: Receive, send: Send, limit: int, more_body: bool) -> None:
        drained = 0
        while more_body and drained <= self.DRAIN_BYTES:
            message = await receive()
            if message["type"] != "http.request":
                break
            drained += len(message.get("body", b""))
            more_body = message.get("more_body", False)
        error = PayloadTooLarge(f"request body is over the {limit}-byte limit")
        body = json.dumps(error.to_body()).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
