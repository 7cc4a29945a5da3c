"""Build an object from templates, e.g. to reshape a webhook payload for later steps."""

from __future__ import annotations

from typing import Any

from pydantic import Field, RootModel

from blueprint_engine.integrations.base import BaseTool, TaskParams, ToolContext, task


class Build(TaskParams):
    """Params of ``transform.build``: any object; its templates are resolved by the engine."""

    fields: dict[str, Any] = Field(description="The object to output; values may be templates.")


class Built(RootModel[dict[str, Any]]):
    """The resolved ``fields``: each of their keys is an output field."""


class TransformTool(BaseTool):
    """A local tool with no side effects: its output is its resolved ``fields``, in sandbox
    mode too."""

    service = "transform"
    description = "Reshape data: output an object whose values are built from templates."
    side_effects = False

    @task(params=Build, result=Built, description="Output `fields` with every template resolved.")
    async def build(self, params: Build, context: ToolContext) -> Built:
        """Return the resolved fields."""
        return Built(params.fields)
