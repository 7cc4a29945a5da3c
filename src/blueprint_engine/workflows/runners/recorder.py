"""A step's protocol, shared by the runner ports: replay, attempt, retry, record.

- **replay**: a step that has a result (a checkpoint, or the runner's memo of it) returns its
  output, or raises :class:`StepFailed` with its error, the same on every replay.
- **attempt**: count the attempt (the port says how), call the step function; a
  :class:`StepError` is classified: retryable with attempts left, or a failure for good.
- **retry**: a ``retrying`` log row, then another attempt after a pause (the port says how:
  in this process after the pause, or by raising so that its runner retries); at most
  ``limit`` attempts in all. The pause is the backoff (:func:`backoff`), or the service's
  ``Retry-After`` when that is longer, cut to ``RETRY_AFTER_MAX_SECONDS``.
- **record**: a ``succeeded`` or ``failed`` log row with the step's result (the port says
  when it is written: held for a group commit, or at once inside the runner's own step).

What a port supplies is :class:`StepHooks`; :class:`StepRecorder` holds the rest.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from blueprint_engine.store.logs import LogRow
from blueprint_engine.workflows.steps import Retry, StepError, StepFailed, StepFn


class Result(Protocol):
    """A step's recorded result: a checkpoint, a memo, or the log row that records it."""

    @property
    def status(self) -> str:
        """``succeeded`` or ``failed`` (``skipped`` for a node that did not run)."""
        ...

    @property
    def output(self) -> Any:
        """The step's output (None when it failed)."""
        ...

    @property
    def error(self) -> Any:
        """The failure (``{"code", "message", …}``), or None."""
        ...


def replay(result: Result) -> Any:
    """The step's output, or its recorded failure raised again (replays are deterministic).

    Raises:
        StepFailed: the step failed for good.
    """
    if result.status == "failed":
        raise StepFailed(result.error)
    return result.output


def backoff(retry: Retry, n: int) -> float:
    """Seconds to wait before retry ``n`` (1, 2, …) of a pass: ``initial * 2**(n-1)``, capped
    at ``max_backoff``, plus ``uniform(0, jitter)``."""
    exponential = retry.initial_backoff * 2.0 ** min(n - 1, 64)
    return min(exponential, retry.max_backoff) + random.uniform(0, retry.jitter)


@dataclass(frozen=True)
class Pause:
    """How long to wait before the next attempt, in seconds: ``seconds``, the backoff or the
    (capped) ``retry_after`` when that is longer; ``retry_after`` alone for a runner that has
    a backoff of its own (None: the service asked for nothing)."""

    seconds: float
    retry_after: float | None


class StepHooks(Protocol):
    """What differs between the ports: how an attempt is counted, how a retry happens and
    how a result is written."""

    async def begin(self, step_id: str, attempt: int, *, pure: bool) -> int:
        """Count attempt number ``attempt`` of ``step_id`` before it runs; return the number
        it runs as (a port that counts attempts durably returns its own count).

        Raises:
            LeaseLost: the run is no longer this pass's.
        """
        ...

    async def retry(self, row: LogRow, pause: Pause) -> None:
        """Write the ``retrying`` row of a failed attempt; return when the next attempt may
        begin, or raise to have the runner begin it.

        Raises:
            LeaseLost: the run is no longer this pass's.
        """
        ...

    async def record(self, row: LogRow) -> Result:
        """Record the step's result (a ``succeeded`` or ``failed`` row); return the result
        that stands (a runner that re-ran a recorded step returns the first result).

        Raises:
            LeaseLost: the run is no longer this pass's.
        """
        ...


def _now() -> datetime:
    return datetime.now(UTC)


class StepRecorder:
    """Runs a step's attempts through a port's :class:`StepHooks` (see the module).

    Args:
        hooks: the port's.
        retry_after_max: the longest pause a ``Retry-After`` may ask for, in seconds.
    """

    def __init__(self, hooks: StepHooks, retry_after_max: float) -> None:
        self.hooks = hooks
        self.retry_after_max = retry_after_max

    async def run(
        self, step_id: str, fn: StepFn, retry: Retry, *, first: int, limit: int, pure: bool
    ) -> Result:
        """Attempt ``fn`` from attempt number ``first`` until it succeeds, fails for good, or
        attempt ``limit`` failed; record the result and return the one that stands (replay
        it with :func:`replay`).

        Raises:
            LeaseLost: the run is no longer this pass's (from the hooks).
            Whatever the hooks' ``retry`` raises to hand a retry to the runner.
        """
        number = first
        for n in range(1, limit + 1):  # each turn's attempt number is at least n
            number = await self.hooks.begin(step_id, number, pure=pure)
            started = _now()
            try:
                outcome = await fn(number)
            except StepError as exc:
                if not exc.retryable or number >= limit:
                    error = {**exc.to_error(), "attempts": number}
                    failed = LogRow.failed(step_id, number, started, input=exc.input, error=error)
                    return await self.hooks.record(failed)
                row = LogRow.retrying(
                    step_id, number, started, input=exc.input, error=exc.to_error()
                )
                await self.hooks.retry(row, self.pause(retry, n, exc.retry_after))
                number += 1
                continue
            row = LogRow.succeeded(
                step_id, number, started, input=outcome.input, output=outcome.output
            )
            return await self.hooks.record(row)
        raise AssertionError("unreachable: attempt number `limit` is never retried")

    def pause(self, retry: Retry, n: int, retry_after: float | None) -> Pause:
        """The pause before retry ``n`` (1, 2, …): the backoff, or ``retry_after`` (seconds;
        cut to ``retry_after_max``) when that is longer."""
        wait = backoff(retry, n)
        if retry_after is None:
            return Pause(wait, None)
        asked = min(max(retry_after, 0.0), self.retry_after_max)
        return Pause(max(wait, asked), asked)
