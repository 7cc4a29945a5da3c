"""Runners execute runs; a :class:`Dispatcher` tells the active one that work arrived.

- ``embedded`` (default): runs execute in this process; a Postgres ``NOTIFY`` on every queued
  run wakes the runner, so its dispatcher has nothing to do.
- ``inngest``: runs execute in Inngest functions; its dispatcher sends events to Inngest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol
from uuid import UUID


@dataclass(frozen=True)
class QueuedRun:
    """A run that was just queued (committed) and should start."""

    run_id: UUID
    workflow_id: UUID
    version: int
    owner: UUID
    #: 0 for the first start; a retry of a failed run gets a new, larger number, so engines
    #: that dedupe starts (Inngest's idempotency) treat it as a new start of the same run.
    dispatch: int = 0


class Dispatcher(Protocol):
    """Hands queued work to the engine. Called after the queuing transaction commits."""

    engine: str

    async def run_queued(self, runs: list[QueuedRun]) -> None:
        """Start these runs.

        Raises:
            EngineUnavailable: the engine did not accept them.
        """
        ...

    async def run_cancelled(self, run_id: UUID) -> None:
        """Stop a run the API marked cancelled."""
        ...

    async def wait_resolved(self, run_id: UUID, step_id: str, event: dict[str, Any]) -> None:
        """Deliver an event to a run's wait the API resolved."""
        ...


class EmbeddedDispatcher:
    """The embedded runner watches Postgres itself (LISTEN + leases), so nothing to send."""

    engine = "embedded"

    async def run_queued(self, runs: list[QueuedRun]) -> None:
        """Nothing to do: the insert's NOTIFY wakes the runners."""

    async def run_cancelled(self, run_id: UUID) -> None:
        """Nothing to do: the lease fence stops the run at its next step."""

    async def wait_resolved(self, run_id: UUID, step_id: str, event: dict[str, Any]) -> None:
        """Nothing to do: the resolved wait makes the run claimable."""
