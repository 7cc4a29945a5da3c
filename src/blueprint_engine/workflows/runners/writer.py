"""Group commit for the embedded runner: the step writes of all its passes, batched.

Each pass has at most one write in flight (:class:`~blueprint_engine.workflows.runners
.embedded_port.EmbeddedPort` serializes its own). The writes that passes submit while a batch
is being committed wait and go together in the next statement
(:func:`~blueprint_engine.store.steps.write`): one round trip and one WAL flush for many runs'
steps, which is what bounds a step's cost once the Python is lean (a one-row commit costs about
as much as a 20-run batch). A write alone is sent at once, so a lone run pays no extra latency.
At most :data:`BATCHES_IN_FLIGHT` statements are in flight at a time.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from blueprint_engine.store import steps as steps_store
from blueprint_engine.store.db import Pool
from blueprint_engine.store.steps import LeaseLost, Write, Written

#: Statements in flight at once; further writes queue and are batched.
BATCHES_IN_FLIGHT = 2


@dataclass
class _Queued:
    write: Write
    done: asyncio.Future[Written | None]


class StepWriter:
    """Writes :class:`~blueprint_engine.store.steps.Write` s on ``pool`` in batches."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self._queue: list[_Queued] = []
        self._in_flight: set[asyncio.Task[None]] = set()

    async def write(self, write: Write) -> Written:
        """Commit ``write`` (with whatever else is queued) and say what it did.

        Cancelling the caller does not take the write back: it is committed with its batch or
        not at all, as with a statement cancelled while in flight.

        Raises:
            LeaseLost: the write's claim no longer holds its run (nothing of it was written).
            psycopg.Error, OSError, PoolTimeout: the batch failed (nothing of it was written).
        """
        queued = _Queued(write, asyncio.get_running_loop().create_future())
        self._queue.append(queued)
        self._send()
        written = await queued.done
        if written is None:
            raise LeaseLost(str(write.run_id))
        return written

    async def wait_idle(self) -> None:
        """Return once no batch is in flight or queued (errors are the callers')."""
        while self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)

    def _send(self) -> None:
        while self._queue and len(self._in_flight) < BATCHES_IN_FLIGHT:
            batch, self._queue = self._queue, []
            task = asyncio.create_task(self._commit(batch), name="step-writer")
            self._in_flight.add(task)
            task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._send()

    async def _commit(self, batch: list[_Queued]) -> None:
        try:
            async with self.pool.connection() as conn:
                results = await steps_store.write(conn, [q.write for q in batch])
        except Exception as exc:  # each waiting pass gets the error (a failed pass)
            for queued in batch:
                if not queued.done.done():
                    queued.done.set_exception(exc)
            return
        except BaseException:
            for queued in batch:
                queued.done.cancel()
            raise
        for queued, written in zip(batch, results, strict=True):
            if not queued.done.done():
                queued.done.set_result(written)
