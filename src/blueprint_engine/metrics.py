"""Every Prometheus metric of the process, declared once, and the small helpers the hook points
call (one line each). ``GET /metrics`` (:mod:`blueprint_engine.routers.metrics`) serves them.

Metrics are module-level objects in prometheus-client's default registry, so they are
registered once per process however many apps a process builds (the tests build many). They
are deployment-wide: labels are bounded sets chosen in code (statuses, outcomes, registered
``service.task`` names, providers, purposes), never ids, owners, phone numbers or event names.

Processes: the default deployment is one API process per container, and each process exports
its own figures (scrape each). With several workers in one container (``uvicorn --workers``),
set ``PROMETHEUS_MULTIPROC_DIR`` to an empty directory, the same for every worker and emptied
before they start: prometheus-client then keeps the figures in files there and ``/metrics``
sums counters, histograms and the watcher gauge over the workers (see :func:`registry`). A
worker that dies keeps its last watcher count until the directory is emptied:
prometheus-client forgets a process only when told (``multiprocess.mark_process_dead``), which
uvicorn does not do.

This module is a leaf: it imports nothing of the app but :mod:`blueprint_engine.errors`, so the
store, engine, services and routers may all call it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Literal, TypeVar

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, multiprocess
from starlette.exceptions import HTTPException

from blueprint_engine.errors import (
    AppError,
    LLMBadOutput,
    LLMTimeout,
    NotConfigured,
    SignatureInvalid,
)

#: Seconds; from a template-only step (milliseconds) to a slow HTTP call (the tools' 30 s).
_STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
#: Seconds; language-model calls take from a fraction of a second to a minute (with retries).
_LLM_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120)

RUNS_STARTED = Counter(
    "blueprint_runs_started",
    "Runs handed to the engine after their queuing committed (POST /workflow/execute, "
    "events, webhooks, schedules, channel commands); start=retry for POST /runs/{id}/retry.",
    ["engine", "start"],
)
RUNS_FINISHED = Counter(
    "blueprint_runs_finished",
    "Runs that reached a terminal status (succeeded, failed, cancelled), counted where the "
    "status is written, once per run (and again after a retry).",
    ["status"],
)
STEP_DURATION = Histogram(
    "blueprint_step_duration_seconds",
    "Duration of one attempt of an action node (templates, params check, the tool call), by "
    "step (the registered service.task, else 'other'). Checkpoint writes are not included.",
    ["step"],
    buckets=_STEP_BUCKETS,
)
STEP_ATTEMPTS = Counter(
    "blueprint_step_attempts",
    "Attempts of action nodes by step and outcome: ok, retryable_error (may be tried again "
    "if attempts are left), error (not retryable).",
    ["step", "outcome"],
)
STEP_RETRIES = Counter(
    "blueprint_step_retries",
    "Attempts of action nodes after the first (retries, including after a crash).",
    ["step"],
)
QUEUE_DEPTH = Gauge(
    "blueprint_queue_depth",
    "Runs ready to be claimed now: queued (past any back-off) or waiting on a timer that is "
    "due. Read from the database at scrape time; NaN when it did not answer in time.",
    multiprocess_mode="mostrecent",
)
QUEUE_OLDEST_AGE = Gauge(
    "blueprint_queue_oldest_age_seconds",
    "Seconds the longest-ready of those runs has been ready (0 when none). Read from the "
    "database at scrape time; NaN when it did not answer in time.",
    multiprocess_mode="mostrecent",
)
SSE_WATCHERS = Gauge(
    "blueprint_sse_watchers",
    "Open server-sent-event streams by stream: run (GET /runs/{id}/stream), runs (GET "
    "/runs/stream), workflow, session.",
    ["stream"],
    multiprocess_mode="livesum",
)
WEBHOOK_DELIVERIES = Counter(
    "blueprint_webhook_deliveries",
    "Webhook deliveries by provider (razorpay, twilio, hook: a workflow's own hook URL) and "
    "outcome: accepted, duplicate, unlinked (a WhatsApp sender with no linked account), "
    "not_found (no live hook at that URL), invalid_signature, invalid_payload, "
    "not_configured, error.",
    ["provider", "outcome"],
)
LLM_CALLS = Counter(
    "blueprint_llm_calls",
    "Language-model calls by purpose (architect, intent, transcription, speech) and outcome: "
    "ok, bad_output (an answer that does not fit the schema), timeout, error.",
    ["purpose", "outcome"],
)
LLM_DURATION = Histogram(
    "blueprint_llm_call_duration_seconds",
    "Duration of a language-model call by purpose, retries of transient failures included.",
    ["purpose"],
    buckets=_LLM_BUCKETS,
)

PRUNED_ROWS = Counter(
    "blueprint_pruned_rows",
    "Rows the retention pruner deleted, by table (workflow_runs, workflow_logs, "
    "step_checkpoints, step_attempts, run_waits, sessions, session_messages, events, "
    "webhook_deliveries, workflows, workflow_versions).",
    ["table"],
)
PRUNE_BATCH_DURATION = Histogram(
    "blueprint_prune_batch_duration_seconds",
    "Duration of one pruning batch (scan, lock, delete, commit), by table family.",
    ["family"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
PRUNE_PASSES = Counter(
    "blueprint_prune_passes",
    "Pruning passes by outcome: complete, time_limit (stopped by PRUNE_PASS_SECONDS, goes "
    "on at the next interval), error (the database failed; retried at the next interval).",
    ["outcome"],
)
ERASURES = Counter(
    "blueprint_erasures",
    "Users whose data was erased (DELETE /me/data, wf users erase), repeats included.",
)

# Series that exist from the start, at 0, so that rates and sums see the first event.
for _status in ("succeeded", "failed", "cancelled"):
    RUNS_FINISHED.labels(_status)
for _kind in ("run", "runs", "workflow", "session"):
    SSE_WATCHERS.labels(_kind)
for _outcome in ("complete", "time_limit", "error"):
    PRUNE_PASSES.labels(_outcome)


def registry() -> CollectorRegistry:
    """The registry ``/metrics`` exposes: the default one (this process, plus the process and
    GC collectors), or with ``PROMETHEUS_MULTIPROC_DIR`` set, a fresh one that reads every
    worker's files there."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    merged = CollectorRegistry()
    multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
    return merged


# -- runs ----------------------------------------------------------------------------------


def runs_started(engine: str, dispatches: Iterable[int]) -> None:
    """Count runs handed to ``engine`` (``embedded``/``inngest``), given by their dispatch
    numbers (:class:`~blueprint_engine.workflows.runners.QueuedRun`: 0 first start, else a
    retry)."""
    for dispatch in dispatches:
        RUNS_STARTED.labels(engine, "retry" if dispatch else "new").inc()


def run_finished(status: str) -> None:
    """Count a run that reached ``status``; non-terminal statuses (``waiting``) are ignored."""
    if status in ("succeeded", "failed", "cancelled"):
        RUNS_FINISHED.labels(status).inc()


# -- steps ---------------------------------------------------------------------------------

Result = TypeVar("Result")
_step_labels: dict[tuple[str, str], str] = {}


def step_label(service: str, task: str) -> str:
    """``service.task`` when it is a task of the tool registry, else ``other``: the label set
    stays what the code registers, whatever registry an engine was given."""
    label = _step_labels.get((service, task))
    if label is None:
        # Here, not at the top: the integrations import the store, which imports this module.
        from blueprint_engine.integrations import TOOL_REGISTRY

        tool = TOOL_REGISTRY.get(service)
        label = f"{service}.{task}" if tool is not None and task in tool.tasks else "other"
        _step_labels[(service, task)] = label
    return label


def timed_attempts(
    service: str, task: str, attempt: Callable[[int], Awaitable[Result]]
) -> Callable[[int], Awaitable[Result]]:
    """Wrap an action's step function ``attempt(number)`` (number 1 is the first attempt) so
    each call is timed and counted: :data:`STEP_DURATION`, :data:`STEP_ATTEMPTS` (an exception
    with a true ``retryable`` attribute, the engine's ``StepError``, is ``retryable_error``) and
    :data:`STEP_RETRIES`. Exceptions pass through unchanged; a cancelled attempt (its run was
    stopped) is not counted."""
    label = step_label(service, task)
    duration = STEP_DURATION.labels(label)

    async def timed(number: int) -> Result:
        if number > 1:
            STEP_RETRIES.labels(label).inc()
        started = time.perf_counter()
        try:
            result = await attempt(number)
        except Exception as exc:
            outcome = "retryable_error" if getattr(exc, "retryable", False) else "error"
            duration.observe(time.perf_counter() - started)
            STEP_ATTEMPTS.labels(label, outcome).inc()
            raise
        duration.observe(time.perf_counter() - started)
        STEP_ATTEMPTS.labels(label, "ok").inc()
        return result

    return timed


# -- streams -------------------------------------------------------------------------------

StreamKind = Literal["run", "runs", "workflow", "session"]


@contextmanager
def watching(kind: StreamKind) -> Iterator[None]:
    """Count an open SSE stream of ``kind`` in :data:`SSE_WATCHERS` while the block runs
    (wrap the stream's event generator; it ends when the client goes)."""
    gauge = SSE_WATCHERS.labels(kind)
    gauge.inc()
    try:
        yield
    finally:
        gauge.dec()


# -- webhooks ------------------------------------------------------------------------------

WebhookOutcome = Literal["accepted", "duplicate", "unlinked"]


@dataclass
class _Delivery:
    outcome: str = "accepted"


_delivery: ContextVar[_Delivery | None] = ContextVar("webhook_delivery", default=None)
_PAYLOAD_CODES = {
    "invalid_payload",
    "invalid_header",
    "malformed_json",
    "validation_error",
    "unsupported_media_type",
    "files_not_accepted",
}


@contextmanager
def webhook_delivery(provider: Literal["razorpay", "twilio", "hook"]) -> Iterator[None]:
    """Count one webhook delivery of ``provider`` in :data:`WEBHOOK_DELIVERIES` when the block
    ends: ``accepted`` unless the handler said otherwise with :func:`delivery_outcome`, or the
    outcome of the error that ends it (re-raised): ``not_found``, ``invalid_signature``,
    ``invalid_payload``, ``not_configured`` or ``error``. A cancelled request is not
    counted."""
    delivery = _Delivery()
    token = _delivery.set(delivery)
    try:
        yield
    except Exception as exc:
        WEBHOOK_DELIVERIES.labels(provider, _error_outcome(exc)).inc()
        raise
    finally:
        _delivery.reset(token)
    WEBHOOK_DELIVERIES.labels(provider, delivery.outcome).inc()


def delivery_outcome(outcome: WebhookOutcome) -> None:
    """Set the outcome of the webhook delivery being handled (inside :func:`webhook_delivery`;
    elsewhere, e.g. in a test calling the service directly, nothing happens)."""
    delivery = _delivery.get()
    if delivery is not None:
        delivery.outcome = outcome


def _error_outcome(exc: Exception) -> str:
    if isinstance(exc, SignatureInvalid):
        return "invalid_signature"
    if isinstance(exc, AppError) and exc.code == "hook_not_found":
        return "not_found"
    if isinstance(exc, NotConfigured):
        return "not_configured"
    if isinstance(exc, AppError) and exc.code in _PAYLOAD_CODES:
        return "invalid_payload"
    if isinstance(exc, HTTPException) and exc.status_code < 500:  # a form Starlette can't parse
        return "invalid_payload"
    return "error"


# -- language models -----------------------------------------------------------------------


@contextmanager
def llm_call(purpose: str) -> Iterator[None]:
    """Time and count one language-model call for ``purpose`` (a name fixed in code, e.g.
    ``architect``): :data:`LLM_DURATION`, :data:`LLM_CALLS` with ``ok``, or the outcome of the
    error that ends the block (re-raised): ``bad_output``, ``timeout`` or ``error``. A
    cancelled call is not counted."""
    started = time.perf_counter()
    try:
        yield
    except Exception as exc:
        _llm_done(purpose, started, _llm_outcome(exc))
        raise
    _llm_done(purpose, started, "ok")


def _llm_done(purpose: str, started: float, outcome: str) -> None:
    LLM_DURATION.labels(purpose).observe(time.perf_counter() - started)
    LLM_CALLS.labels(purpose, outcome).inc()


def _llm_outcome(exc: Exception) -> str:
    if isinstance(exc, LLMBadOutput):
        return "bad_output"
    if isinstance(exc, LLMTimeout):
        return "timeout"
    return "error"


# -- retention -----------------------------------------------------------------------------


def pruned(family: str, seconds: float, counts: Mapping[str, int]) -> None:
    """Record one pruning batch of ``family`` (a table name fixed in code): its duration and
    the rows it deleted per table."""
    PRUNE_BATCH_DURATION.labels(family).observe(seconds)
    for table, rows in counts.items():
        if rows:
            PRUNED_ROWS.labels(table).inc(rows)
