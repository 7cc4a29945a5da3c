"""``GET /metrics``: Prometheus text exposition of the deployment's metrics."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from blueprint_engine.errors import Forbidden
from blueprint_engine.http import CallerDep, CheckedRoute, PoolDep
from blueprint_engine.services import metrics_service

router = APIRouter(route_class=CheckedRoute, tags=["metrics"])


async def _operator(caller: CallerDep) -> None:
    """Metrics are the deployment's, not one user's: run counts, queue depth, webhook and
    model traffic of every user together. So they are for whoever operates the deployment —
    a service key (``API_KEYS``) or local mode (no identity configured) — and not for a
    signed-in user or a personal API key, who would otherwise learn other users' activity.

    Raises:
        Unauthorized: 401 without valid credentials. Forbidden: 403 for a user's token or
            personal API key.
    """
    if not caller.may_act_for_others:
        raise Forbidden("metrics are the deployment's: read them with a service key (API_KEYS)")


#: The dependency ``create_app`` puts on this router unless ``METRICS_PUBLIC=true``.
OPERATOR_ONLY = Depends(_operator)


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus text format 0.0.4",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    },
)
async def get_metrics(pool: PoolDep) -> Response:
    """Every metric in Prometheus' text format (see README, Metrics): runs started and
    finished, step durations, attempts and retries, queue depth and the age of its oldest run
    (read now; NaN if the database does not answer within a second), SSE watchers, webhook
    deliveries, language-model calls. Needs a service key or local mode (403 for a user's
    credentials) unless ``METRICS_PUBLIC=true``."""
    body = await metrics_service.exposition(pool)
    return Response(content=body, media_type=metrics_service.CONTENT_TYPE)
