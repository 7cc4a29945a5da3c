"""The step protocol between the engine (and its node kinds) and a runner.

A runner gives the engine a :class:`StepPort`; node kinds call it to run steps (replayed from
a checkpoint, else executed and recorded), sleep on durable timers, wait for events and start
child runs. The exceptions here are how a step reports back: :class:`StepError` (one attempt
failed), :class:`StepFailed` (the step failed for good), :class:`Suspended` (not in this pass).

Step ids are stable across replays: a node's id, or for a step inside a loop body
``<foreach id>.<item index>.<step id>`` (see :func:`blueprint_engine.store.logs.node_of`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from blueprint_engine.integrations.credentials import Credential, CredentialData
from blueprint_engine.store.children import ChildRun as ChildRun  # part of the step protocol
from blueprint_engine.workflows.redaction import Redactor


@dataclass(frozen=True)
class Retry:
    """Resolved retry policy: attempts in total, backoff seconds (exponential, capped, jittered)."""

    max_attempts: int
    initial_backoff: float
    max_backoff: float
    jitter: float


NO_RETRY = Retry(1, 0.0, 0.0, 0.0)


class CredentialSource(Protocol):
    """Where a run's steps get their owner's credentials (the runners pass one)."""

    async def load(self, name: str, accepted: tuple[type[CredentialData], ...]) -> Credential:
        """The owner's credential ``name``, decrypted, as one of the ``accepted`` types.

        Raises:
            CredentialUnavailable: missing, of another type, or unreadable.
        """
        ...


@dataclass
class StepOutcome:
    """What a step function returns: the resolved input (for the log) and the output."""

    input: Any
    output: Any


class StepError(Exception):
    """One attempt of a step failed. ``retryable`` lets the port try again; ``retry_after``
    (seconds, from the service's ``Retry-After``) asks it to wait at least that long first."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        retryable: bool,
        input: Any = None,
        details: dict[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable
        self.input = input
        self.details = details or {}
        self.retry_after = retry_after

    def redacted(self, redact: Redactor) -> StepError:
        """This error with its message, input and details passed through ``redact``."""
        return StepError(
            self.code,
            redact.text(self.message),
            retryable=self.retryable,
            input=redact(self.input),
            details=redact(self.details),
            retry_after=self.retry_after,
        )

    def to_error(self) -> dict[str, Any]:
        """JSON form stored in logs and on the run."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            error["details"] = self.details
        if self.retry_after is not None:
            error["retry_after"] = self.retry_after
        return error


class StepFailed(Exception):
    """A step failed for good (attempts exhausted or not retryable); replays raise it again."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error.get("message", "step failed"))
        self.error = error


def continued_output(error: dict[str, Any]) -> dict[str, Any]:
    """The output of a node with ``on_error: "continue"`` that failed for good: what later
    steps read as ``steps.<id>.output`` (``{"error": {code, message, ...}}``)."""
    return {"error": error}


class Suspended(Exception):
    """The step cannot finish in this pass: it waits on a timer or an event (the embedded runner
    resumes the run at or before ``wake_at``), or the runner must hand control back first
    (``payload`` is the runner's own, e.g. Inngest step opcodes). Other nodes keep going.

    A node that waits on several steps at once (a loop's items) raises one that holds them
    all in ``parts``; :meth:`flat` gives the single ones.
    """

    def __init__(
        self,
        wake_at: datetime | None = None,
        payload: Any = None,
        parts: list[Suspended] | None = None,
    ) -> None:
        super().__init__(f"suspended until {wake_at.isoformat()}" if wake_at else "suspended")
        self.wake_at = wake_at
        self.payload = payload
        self.parts = parts or []

    @classmethod
    def of(cls, parts: list[Suspended]) -> Suspended:
        """One suspension standing for ``parts`` (woken at the earliest of their times)."""
        flat = [single for part in parts for single in part.flat()]
        times = [s.wake_at for s in flat if s.wake_at is not None]
        return cls(min(times, default=None), parts=flat)

    def flat(self) -> list[Suspended]:
        """The single suspensions this one stands for (itself when it has no parts)."""
        return self.parts or [self]


StepFn = Callable[[int], Awaitable[StepOutcome]]


def child_error(ended: dict[str, Any] | None, seconds: float) -> dict[str, Any] | None:
    """The error a child's end (``{run_id, status, output, error}``, None when it timed out)
    means for the step that started it, None when it succeeded."""
    if ended is None:
        return {
            "code": "child_timed_out",
            "message": f"the child run did not end within {seconds:g} seconds",
        }
    if ended["status"] == "succeeded":
        return None
    cause = ended.get("error") or {}
    reason = cause.get("message") or ended["status"]
    return {
        "code": "child_failed",
        "message": f"child run {ended['run_id']} {ended['status']}: {reason}",
        "details": {"run_id": str(ended["run_id"]), "status": ended["status"], "error": cause},
    }


class StepPort(Protocol):
    """What a runner provides to the engine. Step ids are stable across replays."""

    async def run(self, step_id: str, fn: StepFn, retry: Retry, *, pure: bool = False) -> Any:
        """Return the checkpointed output, or call ``fn(attempt)`` (retrying per ``retry``),
        record the result and return its output. ``pure``: ``fn`` has no side effect (trigger,
        router, end), so a port need not count its attempts durably before running it.

        A port may hold the record back until its next write or :meth:`flush`, provided it is
        durable before any step that starts after this one returned does something outside
        the run (a crash before then is a crash while the step was in flight).

        Raises:
            StepFailed: the step failed for good (now or in an earlier replay).
        """
        ...

    async def flush(self) -> None:
        """Write what the port holds back. The engine calls it when it is about to wait for
        running steps, after the steps it just started have begun (so that their first write
        can carry it instead)."""
        ...

    async def sleep(self, step_id: str, seconds: float) -> None:
        """Return once the durable timer has fired.

        Raises:
            Suspended: not yet; the run resumes when it fires.
        """
        ...

    async def wait_for_event(
        self,
        step_id: str,
        event: str,
        match: str | None,
        context: dict[str, Any],
        timeout_seconds: float,
    ) -> dict[str, Any] | None:
        """Return the matching event, or None once ``timeout_seconds`` passed without one.

        Raises:
            Suspended: neither happened yet.
        """
        ...

    async def run_child(self, step_id: str, child: ChildRun) -> Any:
        """Start ``child`` as a run of its own (once, whatever the replays) and return its end
        output once it succeeded.

        Raises:
            Suspended: the child has not ended yet.
            StepFailed: it failed or was cancelled (``child_failed``), could not start
                (``workflow_not_found``, ``workflow_depth_exceeded``…) or did not end within
                ``timeout_seconds`` (``child_timed_out``).
        """
        ...

    async def skip(self, node_ids: list[str]) -> None:
        """Record nodes (step ids) that will not run."""
        ...
