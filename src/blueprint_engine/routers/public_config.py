"""What a client needs before it signs in (the dashboard asks first)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from blueprint_engine.http import CheckedRoute, SettingsDep
from blueprint_engine.routers.schemas import PublicConfigOut
from blueprint_engine.services.auth_service import Authenticator

router = APIRouter(route_class=CheckedRoute, tags=["health"])


@router.get("/config/public", response_model=PublicConfigOut)
async def public_config(request: Request, settings: SettingsDep) -> dict[str, Any]:
    """How to sign in — ``local`` (no identity configured: nothing to do), ``supabase``
    (Supabase Auth with the project URL and its anon key, both public by design; API keys work
    too) or ``api_key`` — and which engine runs. Needs no credentials and holds no secret."""
    auth: Authenticator = request.app.state.auth
    if auth.open:
        mode = "local"
    elif settings.supabase_url and settings.supabase_anon_key:
        mode = "supabase"
    else:
        mode = "api_key"
    supabase = mode == "supabase"
    return {
        "auth": {
            "mode": mode,
            "supabase_url": settings.supabase_url if supabase else None,
            "supabase_anon_key": settings.supabase_anon_key if supabase else None,
        },
        "engine": settings.engine,
        "version": request.app.version,
    }
