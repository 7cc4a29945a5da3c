"""Hooks: the URL a webhook-triggered workflow gets, ``POST /hooks/{workflow_id}/{token}``.

Lifecycle: a workflow gets its hook the first time a version whose trigger is ``webhook`` is
saved or activated (:func:`ensure_in`); the response that made it shows the token once, in
``hook.path``. Rotating (:func:`rotate`) issues a new token and shows it; the old one stops
working at once. The token (``secrets.token_urlsafe(32)``: 256 random bits) is stored only as
its SHA-256, with its first four characters as a hint. A hook answers only while the
workflow's active version has a webhook trigger (``live``); it stays through versions with
other triggers, so switching back keeps its URL, and goes with the workflow.

Deliveries to a hook are handled by :mod:`blueprint_engine.services.hook_delivery_service`.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any
from uuid import UUID

from psycopg.rows import DictRow

from blueprint_engine.config import Settings
from blueprint_engine.errors import NotFound
from blueprint_engine.store import hooks as store
from blueprint_engine.store import workflows as workflows_store
from blueprint_engine.store.db import Conn, Pool
from blueprint_engine.workflows.nodes import TriggerNode

#: Characters of the token kept in clear, to tell tokens apart.
HINT_CHARS = 4


class HookNotFound(NotFound):
    """The owner's workflow has no hook (it never had a webhook-triggered version): 404
    ``hook_not_found``."""

    code = "hook_not_found"


def token_hash(token: str) -> str:
    """How a hook token is stored and compared: hex SHA-256 (the token has 256 random bits).
    Any text hashes, lone surrogates included (a hostile path), so a wrong token is a 404."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def new_token() -> tuple[str, str, str]:
    """A fresh hook token: ``(token, sha256, hint)``; the token itself is shown once."""
    token = secrets.token_urlsafe(32)
    return token, token_hash(token), token[:HINT_CHARS]


def path(workflow_id: UUID, token: str) -> str:
    """The hook's path (relative to the API)."""
    return f"/hooks/{workflow_id}/{token}"


async def ensure_in(conn: Conn, workflow_id: UUID, trigger: TriggerNode) -> str | None:
    """Make the workflow's hook if ``trigger`` (of the version being saved or activated) is a
    webhook trigger and it has none yet (inside the caller's transaction).

    Returns:
        The new token (to show once), or None when nothing was made.
    """
    if trigger.trigger != "webhook":
        return None
    token, digest, hint = new_token()
    made = await store.create(conn, workflow_id, token_sha256=digest, hint=hint)
    return token if made else None


def public(row: DictRow, *, token: str | None = None) -> dict[str, Any]:
    """A hook as the owner sees it: ``{path, path_hint, token_hint, live, signed, created_at,
    rotated_at, last_used_at}``; ``path`` (with the token) only when ``token`` is given (the
    response that made or rotated it), else None."""
    workflow_id = row["workflow_id"]
    return {
        "path": None if token is None else path(workflow_id, token),
        "path_hint": f"/hooks/{workflow_id}/{row['token_hint']}…",
        "token_hint": row["token_hint"],
        "live": row["live"],
        "signed": row["signed"],
        "created_at": row["created_at"],
        "rotated_at": row["rotated_at"],
        "last_used_at": row["last_used_at"],
    }


async def of(conn: Conn, workflow_id: UUID, owner: UUID) -> dict[str, Any] | None:
    """The owner's workflow's hook (:func:`public`, without the token), or None."""
    row = await store.get(conn, workflow_id, owner)
    return None if row is None else public(row)


def _with_url(hook: dict[str, Any], settings: Settings) -> dict[str, Any]:
    base = settings.public_base_url.rstrip("/")
    return {
        **hook,
        "url": None if hook["path"] is None else base + hook["path"],
        "url_hint": base + hook["path_hint"],
    }


async def describe(
    pool: Pool, settings: Settings, workflow_id: UUID, *, owner: UUID
) -> dict[str, Any]:
    """The owner's workflow's hook: :func:`public` plus ``url_hint`` (``PUBLIC_BASE_URL`` +
    ``path_hint``) and ``url`` (None: the token is never shown again; rotate for a new one).

    Raises:
        NotFound: 404 ``not_found``, unknown workflow or another user's. HookNotFound: 404
            ``hook_not_found``, the workflow has none.
    """
    async with pool.connection() as conn:
        if await workflows_store.get(conn, workflow_id, owner) is None:
            raise NotFound("workflow", workflow_id)
        hook = await of(conn, workflow_id, owner)
    if hook is None:
        raise HookNotFound("hook of workflow", workflow_id)
    return _with_url(hook, settings)


async def rotate(
    pool: Pool, settings: Settings, workflow_id: UUID, *, owner: UUID
) -> dict[str, Any]:
    """Issue a new token for the owner's workflow's hook (making the hook if the workflow's
    latest or active version has a webhook trigger and it has none, e.g. a workflow saved
    before hooks existed). The old token stops working when this returns.

    Returns:
        As :func:`describe`, with ``path`` and ``url`` holding the new token: shown this once.

    Raises:
        NotFound: 404 ``not_found``, unknown workflow or another user's. HookNotFound: 404
            ``hook_not_found``: no hook, and no version that would have one.
    """
    token, digest, hint = new_token()
    async with pool.connection() as conn, conn.transaction():
        workflow = await workflows_store.get(conn, workflow_id, owner, lock=True)
        if workflow is None:
            raise NotFound("workflow", workflow_id)
        if await store.get(conn, workflow_id, owner) is None:
            versions = {workflow["latest_version"], workflow["active_version"]} - {None}
            if not [v for v in versions if await _has_webhook_trigger(conn, workflow_id, v)]:
                raise HookNotFound("hook of workflow", workflow_id)
        await store.replace_token(conn, workflow_id, token_sha256=digest, hint=hint)
        row = await store.get(conn, workflow_id, owner)
    assert row is not None
    return _with_url(public(row, token=token), settings)


async def _has_webhook_trigger(conn: Conn, workflow_id: UUID, version: int) -> bool:
    row = await workflows_store.get_version(conn, workflow_id, version)
    return row is not None and row["trigger_kind"] == "webhook"
