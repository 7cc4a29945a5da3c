"""Live progress for SSE watchers (and for hooks waiting on a run's end,
:meth:`ProgressHub.finished`): one LISTEN connection per process, each changed row read once,
fanned out in memory.

Triggers announce every change on the channel ``workflow_progress`` (migration
``20261122130000_live_progress.sql``), whoever wrote it: this process's runner, another
process, the Inngest runner. The hub listens once; for a *topic* somebody here watches — a run's
log rows and status, a run's end, a workflow's runs, a session's messages — it reads the
announced rows once and offers the same encoded SSE frame to every watcher of the topic.
Nobody polls.

- A watcher has a bounded buffer (``SSE_WATCHER_BUFFER`` events). One that falls that far behind
  is dropped rather than slowing the others: its stream ends with a ``retry:`` hint, and the
  client resumes from the table with ``Last-Event-ID``.
- A stream subscribes before it replays from the table, so nothing committed in between is
  missed, and it skips what it already sent: every event has a key and an order (a log row's id,
  a run's or message's ``change_seq``), and an event no newer than the last one sent for its key
  is not sent again.
- If the LISTEN connection or a read fails, the affected watchers are dropped the same way, so
  a gap in announcements never becomes a gap in a stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import DictRow
from psycopg_pool import PoolTimeout
from typing_extensions import override

from blueprint_engine.store import logs as logs_store
from blueprint_engine.store import runs as runs_store
from blueprint_engine.store import sessions as sessions_store
from blueprint_engine.store.db import Conn, Pool

log = logging.getLogger(__name__)

CHANNEL = "workflow_progress"
#: Rows read per query, when replaying or catching up.
PAGE = 500
#: What a dropped client is told to wait before it reconnects, in milliseconds.
RETRY_MS = 1000
#: Pauses between reads of a run's row while :meth:`ProgressHub.finished` hears no
#: announcements: the first, and the longest (it doubles), in seconds.
_POLL_FIRST, _POLL_MAX = 0.25, 2.0
#: How many keys a stream remembers for skipping what it sent (a workflow's runs, a session's
#: messages); a key forgotten only risks sending a snapshot twice.
_SEEN_KEYS = 10_000


@dataclass(frozen=True, slots=True)
class Event:
    """One SSE event, encoded once for all watchers.

    ``key``/``order``: what the event is about and how new it is (see the module docstring);
    ``final``: the stream ends after it (a run's terminal status).
    """

    key: str
    order: int
    frame: bytes
    final: bool = False


def _event(
    kind: str,
    sse_id: int | None,
    data: dict[str, Any],
    *,
    key: str,
    order: int,
    final: bool = False,
) -> Event:
    lines = [f"event: {kind}"]
    if sse_id is not None:
        lines.append(f"id: {sse_id}")
    lines.append("data: " + json.dumps(data, default=str, separators=(",", ":")))
    return Event(key, order, ("\r\n".join(lines) + "\r\n\r\n").encode(), final)


def log_event(row: DictRow) -> Event:
    """A ``workflow_logs`` row as a ``log`` event; its SSE id is the row id."""
    return _event("log", row["id"], dict(row), key="log", order=row["id"])


def run_status_event(run: DictRow) -> Event:
    """A run's status as a ``run`` event of its own stream (no SSE id: a run stream resumes on
    log ids); final when the run has finished."""
    data = {k: run[k] for k in ("status", "output", "error", "wake_at")}
    final = run["status"] in runs_store.TERMINAL
    return _event("run", None, data, key="run", order=run["change_seq"], final=final)


def run_change_event(row: DictRow) -> Event:
    """A run of a workflow stream, as it is now; its SSE id is the run's ``change_seq``."""
    data = dict(row)
    return _event("run", row["change_seq"], data, key=str(row["id"]), order=row["change_seq"])


def message_event(row: DictRow) -> Event:
    """A session message, as it is now; its SSE id is the message's ``change_seq``."""
    data = dict(row)
    return _event("message", row["change_seq"], data, key=str(row["id"]), order=row["change_seq"])


DROPPED_FRAME = f"retry: {RETRY_MS}\r\n\r\n".encode()


class Watcher:
    """One SSE client's buffer. The hub offers events; the stream takes them."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self.dropped = False

    def offer(self, event: Event) -> None:
        """Buffer ``event``; a watcher ``limit`` events behind is dropped instead."""
        if self.dropped:
            return
        if self._queue.qsize() >= self._limit:
            self.drop()
        else:
            self._queue.put_nowait(event)

    def drop(self) -> None:
        """End this watcher's stream with a ``retry:`` hint; what it had not sent yet is
        replayed from the table when the client resumes."""
        if self.dropped:
            return
        self.dropped = True
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(None)

    async def next(self) -> Event | None:
        """The next event, or None once dropped."""
        return await self._queue.get()


class Topic:
    """What a group of watchers follows. Subclasses say how to replay it from the table and how
    to read what an announcement names."""

    def __init__(self, key: tuple[str, UUID]) -> None:
        self.key = key
        self.watchers: set[Watcher] = set()
        self.reader: asyncio.Task[None] | None = None

    def note(self, payload: dict[str, Any]) -> None:
        """Remember an announcement until the next read (coalesced)."""
        raise NotImplementedError

    def pending(self) -> bool:
        """Whether announcements are waiting to be read."""
        raise NotImplementedError

    async def read(self, conn: Conn) -> list[Event]:
        """Read what the pending announcements name, as events in order; clears them."""
        raise NotImplementedError

    def replay(self, pool: Pool, after: int | None) -> AsyncIterator[Event]:
        """Events already in the table after the cursor ``after`` (None: none), read a page
        at a time (no connection is held while the client is slow)."""
        raise NotImplementedError


class RunTopic(Topic):
    """A run's ``workflow_logs`` rows and status changes. Log ids follow commit order within a
    run (rows are written under the run's row lock), so reading after the last id read misses
    nothing."""

    def __init__(self, run_id: UUID) -> None:
        super().__init__(("run", run_id))
        self.run_id = run_id
        self._last_log: int | None = None
        self._first_noted: int | None = None
        self._status_noted = False

    @override
    def note(self, payload: dict[str, Any]) -> None:
        if "log" in payload:
            log_id = int(payload["log"])
            if self._first_noted is None or log_id < self._first_noted:
                self._first_noted = log_id
        else:
            self._status_noted = True

    @override
    def pending(self) -> bool:
        return self._first_noted is not None or self._status_noted

    @override
    async def read(self, conn: Conn) -> list[Event]:
        events: list[Event] = []
        run = None
        if self._status_noted:
            self._status_noted = False
            # The status first: the log rows read next include every row committed before it.
            run = await runs_store.get(conn, self.run_id, owner=None)
        if self._first_noted is not None:
            after = self._first_noted - 1 if self._last_log is None else self._last_log
            self._first_noted = None
            async for event in self._logs(conn, after):
                events.append(event)
        if run is not None:
            events.append(run_status_event(run))
        return events

    async def _logs(self, conn: Conn, after: int) -> AsyncIterator[Event]:
        while True:
            rows = await logs_store.page(conn, self.run_id, after_id=after, limit=PAGE)
            for row in rows:
                after = row["id"]
                yield log_event(row)
            self._last_log = max(self._last_log or 0, after)
            if len(rows) < PAGE:
                return

    @override
    async def replay(self, pool: Pool, after: int | None) -> AsyncIterator[Event]:
        async with pool.connection() as conn:
            run = await runs_store.get(conn, self.run_id, owner=None)
        assert run is not None, "the caller checked the run exists"
        last = after or 0
        while True:
            async with pool.connection() as conn:
                rows = await logs_store.page(conn, self.run_id, after_id=last, limit=PAGE)
            for row in rows:
                last = row["id"]
                yield log_event(row)
            if len(rows) < PAGE:
                break
        yield run_status_event(run)


class RunEndTopic(Topic):
    """A run's end, for a caller waiting on it (a hook answering with the run's output): only
    status announcements, and an event only once the status is terminal. No log rows are read."""

    def __init__(self, run_id: UUID) -> None:
        super().__init__(("run_end", run_id))
        self.run_id = run_id
        self._noted = False

    @override
    def note(self, payload: dict[str, Any]) -> None:
        self._noted = True

    @override
    def pending(self) -> bool:
        return self._noted

    @override
    async def read(self, conn: Conn) -> list[Event]:
        self._noted = False
        run = await runs_store.get(conn, self.run_id, owner=None)
        if run is None or run["status"] not in runs_store.TERMINAL:
            return []
        return [run_status_event(run)]

    @override
    async def replay(self, pool: Pool, after: int | None) -> AsyncIterator[Event]:
        async with pool.connection() as conn:
            for event in await self.read(conn):
                yield event


class _KeyedTopic(Topic):
    """Rows announced by id, read as they are now (a workflow's runs, a session's messages)."""

    def __init__(self, key: tuple[str, UUID]) -> None:
        super().__init__(key)
        self._noted: set[Any] = set()

    @override
    def pending(self) -> bool:
        return bool(self._noted)

    @override
    async def read(self, conn: Conn) -> list[Event]:
        ids, self._noted = list(self._noted), set()
        return [self.event(row) for row in await self.rows(conn, ids)]

    @override
    async def replay(self, pool: Pool, after: int | None) -> AsyncIterator[Event]:
        while after is not None:
            async with pool.connection() as conn:
                rows = await self.changes(conn, after)
            for row in rows:
                after = row["change_seq"]
                yield self.event(row)
            if len(rows) < PAGE:
                return

    def event(self, row: DictRow) -> Event:
        """A row as an event."""
        raise NotImplementedError

    async def rows(self, conn: Conn, ids: list[Any]) -> list[DictRow]:
        """The rows with these ids, as they are now, in change order."""
        raise NotImplementedError

    async def changes(self, conn: Conn, after: int) -> list[DictRow]:
        """A page of rows changed after ``after``, in change order."""
        raise NotImplementedError


class RunsTopic(_KeyedTopic):
    """Runs as they are queued, start, wait and finish: a workflow's (``workflow_id``), or all
    of an owner's of the workflows they made (``owner``)."""

    def __init__(self, *, workflow_id: UUID | None = None, owner: UUID | None = None) -> None:
        if workflow_id is not None:
            super().__init__(("workflow", workflow_id))
        else:
            assert owner is not None, "a workflow or an owner"
            super().__init__(("owner", owner))
        self.scope = {"workflow_id": workflow_id, "owner": owner}

    @override
    def note(self, payload: dict[str, Any]) -> None:
        self._noted.add(UUID(payload["run"]))

    @override
    def event(self, row: DictRow) -> Event:
        return run_change_event(row)

    @override
    async def rows(self, conn: Conn, ids: list[Any]) -> list[DictRow]:
        return await runs_store.summaries(conn, ids, **self.scope)

    @override
    async def changes(self, conn: Conn, after: int) -> list[DictRow]:
        return await runs_store.changes(conn, after_seq=after, limit=PAGE, **self.scope)


class SessionTopic(_KeyedTopic):
    """A session's messages as they are added and filled in."""

    def __init__(self, session_id: UUID) -> None:
        super().__init__(("session", session_id))
        self.session_id = session_id

    @override
    def note(self, payload: dict[str, Any]) -> None:
        self._noted.add(int(payload["message"]))

    @override
    def event(self, row: DictRow) -> Event:
        return message_event(row)

    @override
    async def rows(self, conn: Conn, ids: list[Any]) -> list[DictRow]:
        return await sessions_store.messages_by_id(conn, self.session_id, ids)

    @override
    async def changes(self, conn: Conn, after: int) -> list[DictRow]:
        return await sessions_store.message_changes(
            conn, self.session_id, after_seq=after, limit=PAGE
        )


def _topics_of(payload: dict[str, Any]) -> Iterable[tuple[str, str]]:
    """The topics an announcement concerns, as (kind, id text)."""
    if "log" in payload:
        yield "run", payload["run"]
    elif "message" in payload:
        yield "session", payload["session"]
    else:
        yield "run", payload["run"]
        yield "run_end", payload["run"]
        yield "workflow", payload["workflow"]
        yield "owner", payload["owner"]


class ProgressHub:
    """The process's listener and its topics.

    Args:
        pool: reads the announced rows.
        database_url: for the dedicated LISTEN connection.
        buffer: events a watcher may fall behind before it is dropped.
        reconnect_seconds: pause before listening again after the connection was lost.
    """

    def __init__(
        self, pool: Pool, database_url: str, *, buffer: int, reconnect_seconds: float = 1.0
    ) -> None:
        self.pool = pool
        self.database_url = database_url
        self.buffer = buffer
        self.reconnect_seconds = reconnect_seconds
        self._topics: dict[tuple[str, str], Topic] = {}
        self._listener: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()

    @property
    def watchers(self) -> int:
        """How many watchers are subscribed now."""
        return sum(len(topic.watchers) for topic in self._topics.values())

    async def start(self) -> None:
        """Start listening; returns once the LISTEN is in place (or after 5 s without it:
        streams then drop at once and clients retry)."""
        self._listener = asyncio.create_task(self._listen(), name="progress-hub-listen")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._listening.wait(), 5)

    async def stop(self) -> None:
        """Stop listening and end every stream."""
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        self._drop_all()

    async def _listen(self) -> None:
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self.database_url, autocommit=True, connect_timeout=5
                )
                async with conn:
                    await conn.execute(f"listen {CHANNEL}")
                    self._listening.set()
                    async for notice in conn.notifies():
                        self._dispatch(notice.payload)
            except (psycopg.Error, OSError):
                log.warning("progress LISTEN connection lost; streams will resume from the table")
            self._listening.clear()
            self._drop_all()  # announcements may be lost until we listen again
            await asyncio.sleep(self.reconnect_seconds)

    def _dispatch(self, raw: str) -> None:
        try:
            payload = json.loads(raw)
            keys = list(_topics_of(payload))
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a malformed progress announcement: %.200r", raw)
            return
        for kind, key in keys:
            topic = self._topics.get((kind, key))
            if topic is not None:
                topic.note(payload)
                if topic.reader is None:
                    topic.reader = asyncio.create_task(self._read(topic))

    async def _read(self, topic: Topic) -> None:
        try:
            while topic.pending() and topic.watchers:
                async with self.pool.connection() as conn:
                    events = await topic.read(conn)
                for event in events:
                    for watcher in list(topic.watchers):
                        watcher.offer(event)
        except (psycopg.Error, OSError, PoolTimeout):
            log.warning("reading progress of %s failed; its streams will resume", topic.key)
            for watcher in list(topic.watchers):
                watcher.drop()
        finally:
            topic.reader = None

    def _drop_all(self) -> None:
        for topic in self._topics.values():
            for watcher in list(topic.watchers):
                watcher.drop()

    @contextlib.asynccontextmanager
    async def _watch(self, topic: Topic) -> AsyncIterator[tuple[Topic, Watcher]]:
        key = (topic.key[0], str(topic.key[1]))
        topic = self._topics.setdefault(key, topic)
        watcher = Watcher(self.buffer)
        topic.watchers.add(watcher)
        if not self._listening.is_set():
            watcher.drop()
        try:
            yield topic, watcher
        finally:
            topic.watchers.discard(watcher)
            if not topic.watchers and self._topics.get(key) is topic:
                del self._topics[key]

    async def finished(self, run_id: UUID) -> DictRow | None:
        """The run's row once it has ended (succeeded, failed or cancelled); None if there is
        no such run. Waits as long as that takes: bound it with ``asyncio.timeout``.

        Waits on the run's status announcements (:class:`RunEndTopic`), holding no connection
        meanwhile; the row is read once at the start (after subscribing, so an end committed in
        between is not missed) and again after each announcement. Without announcements (not
        listening, or this waiter was dropped) it reads the row again after 0.25 s, doubling to
        at most 2 s between reads."""
        pause = _POLL_FIRST
        async with self._watch(RunEndTopic(run_id)) as (_, watcher):
            while True:
                async with self.pool.connection() as conn:
                    run = await runs_store.get(conn, run_id, owner=None)
                if run is None or run["status"] in runs_store.TERMINAL:
                    return run
                if watcher.dropped:
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, _POLL_MAX)
                else:
                    await watcher.next()

    async def stream(self, topic: Topic, after: int | None) -> AsyncIterator[bytes]:
        """SSE frames of ``topic``: what the table holds after the cursor ``after``, then live
        changes; each event once, in order. Ends after a final event, or with a ``retry:``
        frame when the watcher is dropped. The caller has checked the caller may see it."""
        async with self._watch(topic) as (topic, watcher):
            seen: OrderedDict[str, int] = OrderedDict()

            def fresh(event: Event) -> bool:
                if seen.get(event.key, -1) >= event.order:
                    return False
                seen[event.key] = event.order
                seen.move_to_end(event.key)
                if len(seen) > _SEEN_KEYS:
                    seen.popitem(last=False)
                return True

            async for event in topic.replay(self.pool, after):
                if fresh(event):
                    yield event.frame
                    if event.final:
                        return
            while (live := await watcher.next()) is not None:
                if fresh(live):
                    yield live.frame
                    if live.final:
                        return
            yield DROPPED_FRAME
