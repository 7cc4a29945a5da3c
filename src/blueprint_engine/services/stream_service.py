"""Live streams (SSE) of a run, a workflow's runs and a session's messages: check that the
caller may see what they ask for, then follow it on the process's
:class:`~blueprint_engine.services.progress_hub.ProgressHub`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from uuid import UUID

from blueprint_engine.errors import NotFound
from blueprint_engine.services.progress_hub import ProgressHub, RunsTopic, RunTopic, SessionTopic
from blueprint_engine.store import runs as runs_store
from blueprint_engine.store import sessions as sessions_store
from blueprint_engine.store import workflows as workflows_store
from blueprint_engine.store.db import Pool


async def run(
    pool: Pool, hub: ProgressHub, run_id: UUID, *, after_id: int, owner: UUID
) -> AsyncIterator[bytes]:
    """SSE frames of the owner's run: ``log`` for every ``workflow_logs`` row after
    ``after_id`` in write order (SSE id: the row id), ``run`` for its status (``status``,
    ``output``, ``error``, ``wake_at``) now and whenever it changes; ends after the run has
    finished and its last rows were sent.

    Raises:
        NotFound: unknown run, or another user's.
    """
    async with pool.connection() as conn:
        if await runs_store.get(conn, run_id, owner=owner) is None:
            raise NotFound("run", run_id)
    return hub.stream(RunTopic(run_id), after_id)


async def workflow(
    pool: Pool, hub: ProgressHub, workflow_id: UUID, *, after_seq: int | None, owner: UUID
) -> AsyncIterator[bytes]:
    """SSE frames of the owner's workflow: ``run`` whenever one of its runs is queued or
    changes status, with the run as it is then (SSE id: its ``change_seq``). With
    ``after_seq``, first every run that changed since, each once; without, live only.

    Raises:
        NotFound: unknown workflow, or another user's.
    """
    async with pool.connection() as conn:
        if await workflows_store.get(conn, workflow_id, owner) is None:
            raise NotFound("workflow", workflow_id)
    return hub.stream(RunsTopic(workflow_id=workflow_id), after_seq)


async def owner_runs(
    hub: ProgressHub, *, owner: UUID, after_seq: int | None
) -> AsyncIterator[bytes]:
    """SSE frames of all the owner's runs (of the workflows they made): ``run`` whenever one is
    queued or changes status, as it is then (SSE id: its ``change_seq``). With ``after_seq``,
    first every run that changed since, each once; without, live only."""
    return hub.stream(RunsTopic(owner=owner), after_seq)


async def session(
    pool: Pool, hub: ProgressHub, session_id: UUID, *, after_seq: int, owner: UUID
) -> AsyncIterator[bytes]:
    """SSE frames of the owner's session: ``message`` whenever a message is added (inbound text
    or transcript, the question asked, the reply) or filled in (what was understood, the
    delivered reply), with the message as it is then (SSE id: its ``change_seq``); first every
    message that changed after ``after_seq`` (0: the whole conversation).

    Raises:
        NotFound: unknown session, or another user's.
    """
    async with pool.connection() as conn:
        if await sessions_store.get(conn, session_id, owner=owner) is None:
            raise NotFound("session", session_id)
    return hub.stream(SessionTopic(session_id), after_seq)
