"""Hooks: ``POST /hooks/{workflow_id}/{token}`` starts a webhook-triggered workflow.

No API credentials: the token in the path is the credential (and, for a signed hook, the
signature). A plain ``APIRoute``: the hook and its signature are checked before the body is
parsed or anything stored, then the body passes the input boundary as 400 ``invalid_payload``
(:mod:`blueprint_engine.services.hook_delivery_service`).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse

from blueprint_engine import metrics
from blueprint_engine.http import DispatcherDep, HubDep, PoolDep, SettingsDep
from blueprint_engine.routers.schemas import ErrorOut, ExecuteOut
from blueprint_engine.services import hook_delivery_service

router = APIRouter(tags=["hooks"])


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorOut, "description": description}


@router.post(
    "/hooks/{workflow_id}/{token}",
    status_code=202,
    response_model=ExecuteOut,
    responses={
        200: {
            "description": "respond: when_finished, and the run succeeded in time: its output "
            "(any JSON value) is the body.",
            "content": {"application/json": {"schema": {}}},
        },
        202: {"model": ExecuteOut, "description": "The run is queued (or still going)."},
        400: _error(
            "invalid_payload: the body (or a query parameter) cannot be stored, naming the "
            "field; malformed_body: a form that cannot be parsed; invalid_header: a bad "
            "Idempotency-Key."
        ),
        401: _error("invalid_signature: a signed hook's signature is missing or wrong."),
        404: _error(
            "hook_not_found: no live hook has this workflow id and token (unknown, rotated, "
            "inactive workflow, or not a webhook trigger: the answer does not say which)."
        ),
        409: _error("workflow_archived: the workflow was archived meanwhile."),
        413: _error("payload_too_large: the body is over MAX_BODY_BYTES."),
        415: _error(
            "unsupported_media_type: not JSON, a form or text/plain; files_not_accepted: a "
            "multipart form with files."
        ),
        502: _error(
            "run_failed / run_cancelled: respond: when_finished, and the run did not "
            "succeed (details: run_id, status_url, error_code)."
        ),
        503: _error(
            "webhook_not_configured / credential_unreadable: the signing credential is gone "
            "or unreadable; engine_unavailable; database_unavailable."
        ),
    },
)
async def hook(
    workflow_id: Annotated[str, Path(description="The workflow's id")],
    token: Annotated[str, Path(description="The hook's token")],
    request: Request,
    pool: PoolDep,
    settings: SettingsDep,
    dispatcher: DispatcherDep,
    hub: HubDep,
) -> JSONResponse:
    """Start the workflow with ``{"body", "headers", "query", "method"}`` as trigger data.
    JSON (any value), form fields (urlencoded or multipart, no files) or text/plain; optional
    ``Idempotency-Key`` (same key, same run); HMAC-SHA256 signature when the trigger names a
    ``webhook_secret`` credential. 202 ``{"run_id", "created", "status_url"}``, or with
    ``respond: when_finished`` the run's output (200) or 502 when it failed."""
    with metrics.webhook_delivery("hook"):
        delivery = hook_delivery_service.Delivery(
            body=await request.body(),
            content_type=request.headers.get("content-type", ""),
            headers=request.headers.items(),
            query=request.query_params.multi_items(),
            form=request.form,
        )
        answer = await hook_delivery_service.receive(
            pool, settings, dispatcher, hub, workflow_id, token, delivery
        )
    return JSONResponse(answer.body, status_code=answer.status)
