"""What tools share in one process: the database and one HTTP client.

The app (at start-up), the CLI and tests make one :class:`ToolResources` and close it when they
stop; every step's :class:`~blueprint_engine.integrations.base.ToolContext` lends it. The HTTP
client is made on first use and goes through the outbound guard
(:func:`blueprint_engine.integrations.outbound.guarded_client`), so its connections are
pooled and reused across steps and runs instead of opened per call.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from types import TracebackType

import httpx

from blueprint_engine.config import Settings
from blueprint_engine.integrations import outbound
from blueprint_engine.store.db import Conn

#: Lends a database connection: ``async with connect() as conn`` (a pool's ``connection``).
Connect = Callable[[], AbstractAsyncContextManager[Conn]]


class ToolResources:
    """The database and the HTTP client of the tools of one process.

    Args:
        settings: ``HTTP_TIMEOUT_SECONDS`` (the client's default timeout per operation) and
            ``HTTP_ALLOW_HOSTS`` (what the guard lets through besides public addresses).
        db: lends connections, e.g. ``pool.connection``.
    """

    def __init__(self, settings: Settings, db: Connect) -> None:
        self.settings = settings
        self.db = db
        self._http: httpx.AsyncClient | None = None
        self._closed = False

    @property
    def http(self) -> httpx.AsyncClient:
        """The one HTTP client, made on first use.

        Raises:
            RuntimeError: after :meth:`aclose`.
        """
        if self._closed:
            raise RuntimeError("the tools' resources are closed")
        if self._http is None:
            self._http = outbound.guarded_client(
                self.settings, timeout=self.settings.http_timeout_seconds
            )
        return self._http

    async def aclose(self) -> None:
        """Close the HTTP client (and its pooled connections); the database is its owner's."""
        self._closed = True
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def __aenter__(self) -> ToolResources:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()
