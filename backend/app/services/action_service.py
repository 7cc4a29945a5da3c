"""Carry out an understood command: one tool task, or a whole intent-triggered workflow.

A tool command runs as a small run of its own (trigger -> ``act``), so it gets the engine's
retries, idempotency key, logs and trace like any workflow. The caller waits up to
``CHANNEL_REPLY_WAIT_SECONDS`` to answer inline. For WhatsApp the run also carries a late reply:
``hold`` (a durable delay just past the inline wait) -> ``channel.reply``, which delivers the
answer only if the webhook could not (see ``integrations/channel_tool.py``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from backend.app.config import Settings
from backend.app.integrations import TOOL_REGISTRY
from backend.app.services import replies, run_service
from backend.app.services.intent_service import Intent
from backend.app.store.db import Pool
from backend.app.workflows import expressions
from backend.app.workflows.runners import Dispatcher

log = logging.getLogger(__name__)

ACT = "act"
#: Where a tool command's params are in its run's trigger data.
PARAMS = "command_params"


@dataclass(frozen=True)
class LateReply:
    """Where a late answer goes: the pre-created outbound message and the user's number, sent
    through the user's ``twilio`` credential ``via`` when the message came in on their own
    number (else the deployment's)."""

    message_id: int
    to: str
    via: str | None = None


@dataclass
class ActionOutcome:
    """Result of carrying out a command. ``done`` False: still running, answered later.
    ``run_id`` is None when no run was started."""

    status: str  # completed | failed
    reply: str
    run_id: UUID | None
    done: bool


def command_blueprint(
    intent: Intent, params: dict[str, Any], late: LateReply | None, settings: Settings
) -> dict[str, Any]:
    """The run a tool command becomes. The task's ``params`` (built from what the user said)
    travel in the trigger data, under :data:`PARAMS`, and the action refers to them: put in the
    blueprint itself, a message such as "meet at {{ 6*7 }}" would be evaluated as a template."""
    assert intent.command is not None and intent.service and intent.task
    nodes: list[dict[str, Any]] = [
        {"id": "command", "type": "trigger", "trigger": "manual", "name": intent.name},
        {
            "id": ACT,
            "type": "action",
            "service": intent.service,
            "task": intent.task,
            "name": intent.description,
            "params": {key: f"{{{{ trigger_data.{PARAMS}.{key} }}}}" for key in params},
        },
    ]
    edges = [{"source": "command", "target": ACT}]
    if late is not None and late.via and TOOL_REGISTRY[intent.service].accepts("twilio"):
        nodes[1]["credential"] = late.via  # "send a WhatsApp" from the number it was asked on
    if late is not None:
        nodes[1]["on_error"] = "continue"  # a failure is still reported to the user
        text = (
            "{% if steps.act.output.error is defined %}"
            + replies.failed_template("steps.act.output.error.code")
            + "{% else %}"
            + intent.command.reply
            + "{% endif %}"
        )
        nodes += [
            {"id": "hold", "type": "delay", "duration": settings.channel_reply_wait_seconds + 2},
            {
                "id": "reply",
                "type": "action",
                "service": "channel",
                "task": "reply",
                "params": {"message_id": late.message_id, "to": late.to, "text": text},
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


async def execute(
    pool: Pool,
    dispatcher: Dispatcher,
    settings: Settings,
    intent: Intent,
    slots: dict[str, Any],
    trace_id: str,
    *,
    owner: UUID,
    late: LateReply | None = None,
) -> ActionOutcome:
    """Start the command's run, for ``owner``, and answer within the inline wait if it finishes
    in time.

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
            return ActionOutcome("completed", f"Done: {intent.description}", run_id, True)
        if run["status"] == "failed":
            log.warning("run %s (%s) failed: %s", run_id, intent.name, run["error"])
            return ActionOutcome(
                "failed", replies.failed((run["error"] or {}).get("code")), run_id, True
            )
        return ActionOutcome(
            "completed",
            f"Started: {intent.description}. It carries on in the background (run {run_id}).",
            run_id,
            False,
        )

    assert intent.command is not None
    params = intent.command.build_params(slots)
    run_id, _ = await run_service.start(
        pool,
        dispatcher,
        workflow_id=None,
        version=None,
        blueprint=command_blueprint(intent, params, late, settings),
        payload={**slots, PARAMS: params},
        idempotency_key=f"command:{trace_id}",
        trace_id=trace_id,
        origin="channel",
        owner=owner,
        system=True,
    )
    run = await _wait(pool, run_id, settings, ACT, owner)
    act = next(n for n in run["nodes"] if n["id"] == ACT)
    if act["status"] == "succeeded":
        assert intent.command is not None
        context = {"trigger_data": slots, "steps": {ACT: {"output": act["output"]}}}
        try:
            reply = str(expressions.render(intent.command.reply, context))
        except expressions.ExpressionError:
            reply = f"Done: {intent.description}"
        return ActionOutcome("completed", reply, run_id, True)
    if act["status"] == "failed" or run["status"] == "failed":
        error = act.get("error") or run["error"] or {}
        log.warning("run %s (%s) failed: %s", run_id, intent.name, error.get("message"))
        return ActionOutcome("failed", replies.failed(error.get("code")), run_id, True)
    return ActionOutcome(
        "completed", "I'm working on it and will message you when it's done.", run_id, False
    )
