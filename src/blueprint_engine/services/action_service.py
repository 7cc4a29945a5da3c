"""Carry out an understood command: one tool task, or a whole intent-triggered workflow; and
look up what a command's confirmation must state (its read-only :class:`Lookup` task).

A tool command runs as a small run of its own (trigger -> ``act``), so it gets the engine's
retries, idempotency key, logs and trace like any workflow; so does a lookup. The caller waits
up to ``CHANNEL_REPLY_WAIT_SECONDS`` to answer inline, with the :class:`Replies` it brought
(already in the user's language). For WhatsApp the run also carries a late reply: ``hold``
(a durable delay just past the inline wait) -> ``channel.reply``, which delivers the answer
only if the webhook could not (see ``integrations/channel_tool.py``). That answer's words
travel in the trigger data (never evaluated as a template); the reply step's template only
picks success or failure and puts the task's outputs (the link) or the failure's reason in.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from blueprint_engine.config import Settings
from blueprint_engine.integrations import TOOL_REGISTRY, Lookup
from blueprint_engine.services import run_service
from blueprint_engine.services.intent_service import Intent
from blueprint_engine.services.replies import MARK, REASON, Said, fill
from blueprint_engine.store.db import Pool
from blueprint_engine.workflows.runners import Dispatcher

log = logging.getLogger(__name__)

ACT = "act"
#: Where a tool command's params are in its run's trigger data.
PARAMS = "command_params"
#: Where a late answer's words are in its run's trigger data.
REPLY = "command_reply"
#: Error codes of a lookup that mean the remote service refused the details (no such
#: payment), not that it could not answer.
REFUSED = frozenset({"razorpay_bad_request", "http_status", "invalid_params"})


@dataclass(frozen=True)
class LateReply:
    """Where a late answer goes: the pre-created outbound message and the user's number, sent
    through the user's ``twilio`` credential ``via`` when the message came in on their own
    number (else the deployment's)."""

    message_id: int
    to: str
    via: str | None = None


@dataclass(frozen=True)
class Replies:
    """What to tell the user, in their language: ``done`` (the task's outputs as
    :data:`~replies.MARK` s of their field names), ``failed`` (its reason marked), ``started``
    (the action outlived the inline wait), and every error code's ``reasons``."""

    done: Said
    failed: Said
    started: Said
    reasons: dict[str, str]

    def failure(self, code: str | None) -> Said:
        """``failed`` with the reason for ``code``."""
        return fill(self.failed, {REASON: self.reasons.get(code or "", self.reasons[""])})


@dataclass
class ActionOutcome:
    """Result of carrying out a command. ``done`` False: still running, answered later.
    ``run_id`` is None when no run was started."""

    status: str  # completed | failed
    reply: Said
    run_id: UUID | None
    done: bool


def _task_nodes(service: str, task: str, name: str, params: dict[str, Any]) -> list[Any]:
    """Trigger -> ``act`` running ``service.task``. The params (built from what the user said)
    travel in the trigger data, under :data:`PARAMS`, and the action refers to them: put in
    the blueprint itself, a message such as "meet at {{ 6*7 }}" would be evaluated as a
    template."""
    return [
        {"id": "command", "type": "trigger", "trigger": "manual", "name": name},
        {
            "id": ACT,
            "type": "action",
            "service": service,
            "task": task,
            "name": name,
            "params": {key: f"{{{{ trigger_data.{PARAMS}.{key} }}}}" for key in params},
        },
    ]


def _late_text(intent: Intent) -> str:
    """The reply step's template: the words are :data:`REPLY` data; it only chooses them and
    puts the outputs or the reason in."""
    words = f"trigger_data.{REPLY}"
    done = f"{words}.done"
    for field in sorted(set(intent.outputs.values())):
        done += (
            f" | replace({json.dumps(MARK.format(field))},"
            f" steps.act.output.get({json.dumps(field)}, '') | string)"
        )
    why = f"{words}.reasons.get(steps.act.output.error.code, {words}.reasons[''])"
    failed = f"{words}.failed | replace({json.dumps(MARK.format(REASON))}, {why})"
    return (
        f"{{% if steps.act.output.error is defined %}}{{{{ {failed} }}}}"
        f"{{% else %}}{{{{ {done} }}}}{{% endif %}}"
    )


def command_blueprint(
    intent: Intent, params: dict[str, Any], late: LateReply | None, settings: Settings
) -> dict[str, Any]:
    """The run a tool command becomes (see :func:`_task_nodes`), with the late reply's steps
    when ``late`` says where it goes."""
    assert intent.command is not None and intent.service and intent.task
    nodes = _task_nodes(intent.service, intent.task, intent.description, params)
    nodes[0]["name"] = intent.name
    edges = [{"source": "command", "target": ACT}]
    if late is not None and late.via and TOOL_REGISTRY[intent.service].accepts("twilio"):
        nodes[1]["credential"] = late.via  # "send a WhatsApp" from the number it was asked on
    if late is not None:
        nodes[1]["on_error"] = "continue"  # a failure is still reported to the user
        nodes += [
            {"id": "hold", "type": "delay", "duration": settings.channel_reply_wait_seconds + 2},
            {
                "id": "reply",
                "type": "action",
                "service": "channel",
                "task": "reply",
                "params": {
                    "message_id": late.message_id,
                    "to": late.to,
                    "text": _late_text(intent),
                },
                **({"credential": late.via} if late.via else {}),
            },
        ]
        edges += [{"source": ACT, "target": "hold"}, {"source": "hold", "target": "reply"}]
    return {"name": f"command {intent.name}", "nodes": nodes, "edges": edges}


async def _wait(
    pool: Pool, run_id: UUID, settings: Settings, node: str | None, owner: UUID
) -> dict[str, Any]:
    """Poll the run until ``node`` (or the whole run) finished, or the inline wait is over;
    then return the full run once."""
    deadline = time.monotonic() + settings.channel_reply_wait_seconds
    while True:
        status, states = await run_service.progress(pool, run_id, owner=owner)
        if status in ("succeeded", "failed", "cancelled"):
            break
        if node is not None and states.get(node) in ("succeeded", "failed"):
            break
        if time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.05)
    return await run_service.get(pool, run_id, owner=owner)


async def _run_task(
    pool: Pool,
    dispatcher: Dispatcher,
    settings: Settings,
    blueprint: dict[str, Any],
    payload: dict[str, Any],
    idempotency_key: str,
    trace_id: str,
    owner: UUID,
) -> tuple[UUID, dict[str, Any], dict[str, Any]]:
    """Start a system blueprint whose task node is :data:`ACT`, in the conversation's trace, and
    wait (inline) for that node: ``(run_id, run, act node)``.

    Raises:
        EngineUnavailable: the engine did not take the run (503).
    """
    run_id, _ = await run_service.start(
        pool,
        dispatcher,
        workflow_id=None,
        version=None,
        blueprint=blueprint,
        payload=payload,
        idempotency_key=idempotency_key,
        trace_id=trace_id,
        origin="channel",
        owner=owner,
        system=True,
    )
    run = await _wait(pool, run_id, settings, ACT, owner)
    return run_id, run, next(n for n in run["nodes"] if n["id"] == ACT)


async def execute(
    pool: Pool,
    dispatcher: Dispatcher,
    settings: Settings,
    intent: Intent,
    slots: dict[str, Any],
    trace_id: str,
    replies: Replies,
    *,
    owner: UUID,
    late: LateReply | None = None,
) -> ActionOutcome:
    """Start the command's run, for ``owner``, and answer with ``replies`` within the inline
    wait if it finishes in time.

    Raises:
        EngineUnavailable: the engine did not take the run (503).
    """
    if intent.workflow_id is not None:
        run_id, _ = await run_service.start(
            pool,
            dispatcher,
            workflow_id=intent.workflow_id,
            version=intent.version,
            blueprint=None,
            payload=slots,
            idempotency_key=f"command:{trace_id}",
            trace_id=trace_id,
            owner=owner,
        )
        run = await _wait(pool, run_id, settings, None, owner)
        if run["status"] == "succeeded":
            return ActionOutcome("completed", replies.done, run_id, True)
        if run["status"] == "failed":
            log.warning("run %s (%s) failed: %s", run_id, intent.name, run["error"])
            code = (run["error"] or {}).get("code")
            return ActionOutcome("failed", replies.failure(code), run_id, True)
        return ActionOutcome("completed", replies.started, run_id, False)

    assert intent.command is not None
    params = intent.command.build_params(slots)
    words = {"done": replies.done.text, "failed": replies.failed.text, "reasons": replies.reasons}
    run_id, run, act = await _run_task(
        pool,
        dispatcher,
        settings,
        command_blueprint(intent, params, late, settings),
        {**slots, PARAMS: params, **({REPLY: words} if late else {})},
        f"command:{trace_id}",
        trace_id,
        owner,
    )
    if act["status"] == "succeeded":
        return ActionOutcome("completed", fill(replies.done, act["output"] or {}), run_id, True)
    if act["status"] == "failed" or run["status"] == "failed":
        error = act.get("error") or run["error"] or {}
        log.warning("run %s (%s) failed: %s", run_id, intent.name, error.get("message"))
        return ActionOutcome("failed", replies.failure(error.get("code")), run_id, True)
    return ActionOutcome("completed", replies.started, run_id, False)


@dataclass(frozen=True)
class Found:
    """What a lookup found: its ``facts``; else the error ``code`` and whether the remote
    service ``refused`` the details (so the slot is asked for again)."""

    facts: dict[str, Any] | None
    code: str | None = None
    refused: bool = False


async def look_up(
    pool: Pool,
    dispatcher: Dispatcher,
    settings: Settings,
    intent: Intent,
    slots: dict[str, Any],
    trace_id: str,
    *,
    owner: UUID,
) -> Found:
    """Run the command's :class:`Lookup` task (a run of its own, in the command's trace) and
    read its facts, within the inline wait (past it: ``timeout``).

    Raises:
        EngineUnavailable: the engine did not take the run (503).
    """
    lookup: Lookup | None = intent.lookup
    assert lookup is not None and intent.service is not None
    params = lookup.build_params(slots)
    run_id, run, act = await _run_task(
        pool,
        dispatcher,
        settings,
        {
            "name": f"lookup {intent.name}",
            "nodes": _task_nodes(intent.service, lookup.task, f"Look up for {intent.name}", params),
            "edges": [{"source": "command", "target": ACT}],
        },
        {PARAMS: params},
        f"lookup:{trace_id}:{uuid.uuid4().hex}",
        trace_id,
        owner,
    )
    if act["status"] == "succeeded":
        return Found(lookup.facts(act["output"] or {}))
    if act["status"] == "failed" or run["status"] == "failed":
        code = (act.get("error") or run["error"] or {}).get("code")
        log.warning("lookup run %s (%s) failed: %s", run_id, intent.name, code)
        return Found(None, code, code in REFUSED)
    return Found(None, "timeout")
