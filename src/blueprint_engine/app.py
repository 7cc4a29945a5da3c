"""FastAPI application factory: lifespan (migrations, pool, embedded runner), CORS, errors."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

from asgi_correlation_id import CorrelationIdMiddleware
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from blueprint_engine import logs
from blueprint_engine.agents.architect import WorkflowArchitect
from blueprint_engine.agents.llm import build_chat_model
from blueprint_engine.config import Settings, get_settings
from blueprint_engine.http import BodyLimitMiddleware, install_error_handlers
from blueprint_engine.integrations import ToolResources, load_settings
from blueprint_engine.routers import (
    account_data,
    accounts,
    channels,
    credentials,
    dashboard,
    drafting,
    events,
    health,
    hooks,
    metrics,
    public_config,
    retention,
    runs,
    sessions,
    tools,
    webhooks,
    workflows,
)
from blueprint_engine.services import i18n, intent_service
from blueprint_engine.services.auth_service import Authenticator
from blueprint_engine.services.intent_service import IntentService
from blueprint_engine.services.progress_hub import ProgressHub
from blueprint_engine.services.retention_service import Pruner
from blueprint_engine.services.schedule_service import Scheduler
from blueprint_engine.store import database, migrations, vault
from blueprint_engine.store.db import open_pool
from blueprint_engine.workflows.runners import Dispatcher, EmbeddedDispatcher
from blueprint_engine.workflows.runners.embedded import EmbeddedRunner

log = logging.getLogger(__name__)

#: The header that carries a request's id, both ways.
REQUEST_ID = "X-Request-ID"


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the API. ``settings`` defaults to the environment's; an unset database URL is
    chosen as :func:`blueprint_engine.store.database.choose` says."""
    settings = database.choose(settings) if settings else get_settings()
    load_settings(settings)  # an invalid tool setting stops start-up, not a step
    auth = Authenticator(settings)
    if auth.open:
        _check_open_access(settings)
        log.warning(
            "no identity is configured (SUPABASE_URL, SUPABASE_JWT_SECRET, API_KEYS): every "
            "request without credentials acts as the local user, who owns everything"
        )
    if settings.credentials_key is None:
        log.warning("connections are off: %s", vault.NEW_KEY_HINT)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The embedded server (if that is the database) stays up while the API runs.
        hold = await asyncio.to_thread(database.attach, settings)
        log.info("database: %s", database.describe(settings))
        try:
            async with serving(app):
                yield
        finally:
            await asyncio.to_thread(hold.release)

    @asynccontextmanager
    async def serving(app: FastAPI) -> AsyncIterator[None]:
        if settings.auto_migrate:
            await asyncio.to_thread(migrations.ensure_database, settings.database_url)
            await asyncio.to_thread(migrations.migrate, settings.database_url)
        await asyncio.to_thread(intent_service.warm_up_dates)
        await asyncio.to_thread(i18n.load_catalogs)  # the replies' translations, compiled
        pool = await open_pool(
            settings.database_url,
            min_size=settings.db_pool_min,
            max_size=settings.db_pool_max,
            acquire_timeout=settings.db_acquire_timeout_seconds,
        )
        # One database pool and one HTTP client for every tool call of the process.
        tools = ToolResources(settings, pool.connection)
        runner = EmbeddedRunner(pool, settings, tools=tools)
        hub = ProgressHub(pool, settings.database_url, buffer=settings.sse_watcher_buffer)
        await hub.start()
        app.state.pool = pool
        app.state.hub = hub
        app.state.runner = runner
        app.state.tools = tools
        if settings.engine == "inngest":
            app.state.inngest.tools = tools
        embedded = settings.engine == "embedded" and settings.run_worker
        if embedded:
            await runner.start()
        scheduler = Scheduler(pool, app.state.dispatcher, settings.scheduler_poll_seconds)
        if settings.run_scheduler:
            scheduler.start()
        # Pruning runs beside the processes' background work (runner, scheduler), not in a
        # process that only serves requests.
        pruner = Pruner(pool, settings)
        if settings.run_pruner and (embedded or settings.run_scheduler):
            pruner.start()
        try:
            yield
        finally:
            await pruner.stop()
            await scheduler.stop()
            if embedded:
                await runner.stop()
            await hub.stop()
            await tools.aclose()
            await pool.close()

    app = FastAPI(
        title="Blueprint engine",
        version="0.1.0",
        summary="Durable workflow automation with visual blueprints.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.auth = auth
    if settings.cors_origins:  # none by default: the dashboard is same-origin
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=[REQUEST_ID],
        )
    # Outermost: every response carries its X-Request-ID (the caller's UUID, else a new one),
    # and every log line written while serving it (src/blueprint_engine/logs.py).
    app.add_middleware(CorrelationIdMiddleware, header_name=REQUEST_ID)
    # Inngest's signed requests carry step memos and may exceed the API's body limit; voice
    # uploads may be as large as the transcription API accepts.
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        overrides={"/api/inngest": None, "/intent-parser": settings.max_audio_bytes + 65536},
    )
    install_error_handlers(app)
    for module in (
        health,
        public_config,
        accounts,
        account_data,
        retention,
        credentials,
        tools,
        workflows,
        drafting,
        runs,
        events,
        webhooks,
        hooks,
        channels,
        sessions,
    ):
        app.include_router(module.router)
    app.include_router(
        metrics.router, dependencies=[] if settings.metrics_public else [metrics.OPERATOR_ONLY]
    )
    app.state.dispatcher = _serve_engine(app, settings)
    model = build_chat_model(settings)
    app.state.architect = None if model is None else WorkflowArchitect(model, settings)
    app.state.intents = IntentService(model, settings)
    dashboard.install(app)  # last: it answers only what no API route matched
    return app


def _check_open_access(settings: Settings) -> None:
    """Without identity, anyone who reaches the API is the local user. That is development on
    one's own machine; a deployment with a public ``PUBLIC_BASE_URL`` must configure identity
    or say ``ALLOW_OPEN_ACCESS=true`` (an empty ``SUPABASE_JWT_SECRET=`` would otherwise open
    it silently).

    Raises:
        RuntimeError: open access with a public ``PUBLIC_BASE_URL`` and no opt-in.
    """
    host = urlsplit(settings.public_base_url).hostname or ""
    if settings.allow_open_access or host in ("localhost", "127.0.0.1", "::1"):
        return
    raise RuntimeError(
        f"PUBLIC_BASE_URL is {settings.public_base_url} but no identity is configured, so "
        "anyone reaching the API would act as the local user: set SUPABASE_URL, "
        "SUPABASE_JWT_SECRET or API_KEYS, or ALLOW_OPEN_ACCESS=true to run open on purpose"
    )


def _serve_engine(app: FastAPI, settings: Settings) -> Dispatcher:
    """Pick the engine: embedded (in-process) or Inngest (served at ``/api/inngest``).

    Raises:
        RuntimeError: Inngest in production mode without ``INNGEST_SIGNING_KEY``.
    """
    if settings.engine == "embedded":
        return EmbeddedDispatcher()
    import inngest.fast_api

    from blueprint_engine.workflows.runners import inngest as inngest_runner

    inngest_runner.check_config(settings)
    runner = inngest_runner.InngestRunner(settings)
    inngest.fast_api.serve(app, runner.client, [runner.function])
    app.state.inngest = runner
    return inngest_runner.InngestDispatcher(runner.client)


_settings = get_settings()
logs.configure(_settings.log_format, _settings.log_level)
app = create_app(_settings)
