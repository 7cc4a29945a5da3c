"""The blueprint JSON Schema and the tool catalog the dashboard and architect draw from."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from blueprint_engine.http import Authenticated, CheckedRoute, SettingsDep
from blueprint_engine.integrations import public_tools
from blueprint_engine.workflows.schema import blueprint_json_schema

router = APIRouter(route_class=CheckedRoute, tags=["catalog"], dependencies=[Authenticated])


@router.get("/blueprint/schema")
async def blueprint_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of a blueprint."""
    return blueprint_json_schema()


@router.get("/tools")
async def list_tools(settings: SettingsDep) -> dict[str, Any]:
    """Every service with its tasks: params and result JSON Schemas (a step's output is the
    result; in sandbox mode with ``sandbox: true`` and the ``request`` it would send), the
    credential types a node may name for it (``credential``; GET /credentials/types describes
    them), and whether it runs in sandbox mode without one."""
    return {
        "tools": [
            {
                "service": tool.service,
                "description": tool.description,
                "sandbox": tool.sandboxed(settings),
                "tasks": [
                    {
                        "name": name,
                        "description": task.description,
                        "params": task.params.model_json_schema(),
                        "result": task.result.model_json_schema(),
                        "credential_types": [model.kind for model in tool.credential_types],
                    }
                    for name, task in tool.tasks.items()
                ],
            }
            for tool in public_tools().values()
        ]
    }
