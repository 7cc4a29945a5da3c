"""Integrations and ``TOOL_REGISTRY``: adding a tool is one file and one line here."""

from backend.app.integrations.base import BaseTool, Task, TaskParams, ToolContext, ToolError
from backend.app.integrations.http_tool import HttpTool
from backend.app.integrations.razorpay_tool import RazorpayTool
from backend.app.integrations.transform import TransformTool
from backend.app.integrations.whatsapp import WhatsAppTool

TOOL_REGISTRY: dict[str, BaseTool] = {
    tool.service: tool for tool in (WhatsAppTool(), RazorpayTool(), HttpTool(), TransformTool())
}

__all__ = ["TOOL_REGISTRY", "BaseTool", "Task", "TaskParams", "ToolContext", "ToolError"]
