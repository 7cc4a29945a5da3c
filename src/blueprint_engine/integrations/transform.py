"""Build an object from templates, e.g. to reshape a webhook payload for later steps."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from blueprint_engine.config import Settings
from blueprint_engine.integrations.base import BaseTool, Task, TaskParams, ToolContext


class Build(TaskParams):
    """Params of ``transform.build``: any object; its templates are resolved by the engine."""

    fields: dict[str, Any] = Field(description="The object to output; values may be templates.")


class TransformTool(BaseTool):
    """A local tool with no side effects: its output is its resolved ``fields``."""

    service = "transform"
    description = "Reshape data: output an object whose values are built from templates."
    side_effects = False
    tasks = {
        "build": Task(
            params=Build,
            description="Output `fields` with every template resolved.",
            result={"<field>": "any (each key of `fields`)"},
        )
    }

    def has_credentials(self, settings: Settings) -> bool:
        """Needs none."""
        return True

    def is_sandboxed(self, context: ToolContext) -> bool:
        """Never: it has no side effect, so a sandbox run gets its real output."""
        return False

    def build_request(self, task: str, params: Any, context: ToolContext) -> dict[str, Any]:
        """No request leaves the process."""
        return {}

    async def send(self, task: str, params: Any, context: ToolContext) -> dict[str, Any]:
        """Return the resolved fields."""
        fields: dict[str, Any] = params.fields
        return fields
