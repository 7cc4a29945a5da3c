"""Drafting, revising and dry-running blueprints for dashboard users."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from blueprint_engine.agents.architect import Draft, UserWorkflow, WorkflowArchitect
from blueprint_engine.config import Settings
from blueprint_engine.errors import LLMNotConfigured, ValidationFailed
from blueprint_engine.integrations import ToolResources
from blueprint_engine.services import call_graph, workflow_service
from blueprint_engine.store import accounts as accounts_store
from blueprint_engine.store import credentials as credentials_store
from blueprint_engine.store import workflows as workflows_store
from blueprint_engine.store.db import Pool
from blueprint_engine.workflows.expressions import OWNER_FIELDS
from blueprint_engine.workflows.runners.dry_run import dry_run as dry_run_blueprint
from blueprint_engine.workflows.schema import Blueprint, validate_blueprint_async


def _check_text(text: str, field: str, settings: Settings) -> str:
    cleaned = text.strip()
    if not cleaned:
        raise ValidationFailed(["body", field], "must not be empty")
    if len(cleaned) > settings.architect_max_prompt_chars:
        raise ValidationFailed(
            ["body", field], f"at most {settings.architect_max_prompt_chars} characters"
        )
    return cleaned


def _require(architect: WorkflowArchitect | None) -> WorkflowArchitect:
    if architect is None:
        raise LLMNotConfigured(
            "no language model is configured: set OPENAI_API_KEY (and optionally "
            "OPENAI_BASE_URL for an OpenAI-compatible server, OPENAI_MODEL)"
        )
    return architect


async def _profile(pool: Pool, owner: UUID) -> dict[str, Any]:
    """The owner's profile as templates see it now: ``{"display_name", "email", "phone"}``."""
    async with pool.connection() as conn:
        user = await accounts_store.get_user(conn, owner)
    return {name: None if user is None else user[name] for name in OWNER_FIELDS}


async def _connections(pool: Pool, owner: UUID) -> list[tuple[str, str]]:
    """The owner's credentials as ``(name, type)``: what the architect may reference."""
    async with pool.connection() as conn:
        rows = await credentials_store.list_for(conn, owner)
    return [(row["name"], row["type"]) for row in rows]


#: Most of the owner's workflows the architect is told about (most recently changed first).
MAX_CALLABLE_WORKFLOWS = 200


async def _workflows(pool: Pool, owner: UUID, *, but: UUID | None = None) -> list[UserWorkflow]:
    """The owner's saved workflows that a draft may run as child runs (not ``but``, the one
    being revised: a workflow cannot run itself)."""
    async with pool.connection() as conn:
        rows = await workflows_store.callable_by(conn, owner, limit=MAX_CALLABLE_WORKFLOWS)
    return [
        UserWorkflow(r["id"], r["name"], r["description"], r["trigger_kind"], r["active"])
        for r in rows
        if r["id"] != but
    ]


def _response(workflow: dict[str, Any], draft: Draft) -> dict[str, Any]:
    return {
        "workflow_id": workflow["id"],
        "version": workflow["version"],
        "blueprint": workflow["blueprint"],
        "warnings": draft.warnings,
        "attempts": draft.attempts,
        "hook": workflow.get("hook"),
    }


async def draft(
    pool: Pool,
    architect: WorkflowArchitect | None,
    settings: Settings,
    *,
    prompt: str,
    owner: UUID,
) -> dict[str, Any]:
    """Draft a blueprint from ``prompt`` and save it as an inactive draft workflow of
    ``owner``. "Me" in the prompt is the owner (``{{ owner.phone }}``); the warnings name each
    ``owner.<field>`` the draft uses and the owner's profile lacks, each connection it names
    that the owner lacks and each workflow it runs that is not active. The architect is told
    the owner's connections (names and types) and saved workflows, which it may run as child
    runs.

    Returns:
        ``{"workflow_id", "version", "blueprint", "warnings", "attempts", "hook"}``.

    Raises:
        ValidationFailed: empty or oversize prompt. LLMNotConfigured: 503. DraftInvalid: 422.
        InvalidBlueprint: 422, a workflow it runs was archived meanwhile (or a pinned version
        does not exist). LLMTimeout: 504. LLMUnavailable: 502.
    """
    text = _check_text(prompt, "prompt", settings)
    result = await _require(architect).draft(
        text,
        owner=await _profile(pool, owner),
        connections=await _connections(pool, owner),
        workflows=await _workflows(pool, owner),
    )
    blueprint = await validate_blueprint_async(result.blueprint)
    async with pool.connection() as conn, conn.transaction():
        await call_graph.check_calls(conn, blueprint, owner)
        row = await workflow_service.create_in(
            conn, blueprint, name=None, description=None, owner=owner, origin="draft"
        )
    return _response(await workflow_service.get(pool, row["id"], owner=owner), result)


async def revise(
    pool: Pool,
    architect: WorkflowArchitect | None,
    settings: Settings,
    *,
    workflow_id: UUID,
    instruction: str,
    owner: UUID,
) -> dict[str, Any]:
    """Apply an edit instruction to the latest version of the owner's workflow and save the
    result as a new version.

    Raises:
        NotFound: 404 (also another user's). ValidationFailed, LLMNotConfigured, DraftInvalid,
        LLMTimeout, LLMUnavailable: as for :func:`draft`.
    """
    text = _check_text(instruction, "instruction", settings)
    current = await workflow_service.get(pool, workflow_id, owner=owner)
    result = await _require(architect).revise(
        current["blueprint"],
        text,
        owner=await _profile(pool, owner),
        connections=await _connections(pool, owner),
        workflows=await _workflows(pool, owner, but=workflow_id),
    )
    updated = await workflow_service.update(
        pool,
        workflow_id,
        result.blueprint,
        name=None,
        description=None,
        owner=owner,
        check_credentials=False,  # a missing connection is a warning of the draft
    )
    return _response(updated, result)


async def dry_run(
    pool: Pool,
    settings: Settings,
    tools: ToolResources,
    *,
    workflow_id: UUID,
    version: int | None,
    payload: Any,
    events: dict[str, Any],
    owner: UUID,
) -> dict[str, Any]:
    """Run a saved version of the owner's workflow in sandbox mode, in memory, and report
    every node. Templates see the owner's profile as it is now (``owner``).

    Raises:
        NotFound: 404 (also another user's). ValidationFailed: ``events`` names a node that is
            not a wait.
    """
    current = await workflow_service.get(pool, workflow_id, version, owner=owner)
    blueprint = Blueprint.model_validate(current["blueprint"])
    waits = {n.id for n in blueprint.nodes if n.type == "wait_for_event"}
    for node_id in events:
        if node_id not in waits:
            raise ValidationFailed(["body", "events", node_id], "not a wait_for_event node")
    result = await dry_run_blueprint(
        blueprint, payload, settings, owner=await _profile(pool, owner), tools=tools, events=events
    )
    return {"workflow_id": workflow_id, "version": current["version"], **result}
