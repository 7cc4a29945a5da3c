"""Integrations and ``TOOL_REGISTRY``: adding a tool is one file (its tasks, settings and
credential types, :mod:`blueprint_engine.integrations.base`) and one line here."""

from blueprint_engine.config import Settings
from blueprint_engine.integrations.base import (
    N_,
    BaseTool,
    Command,
    Lookup,
    Slot,
    Task,
    TaskParams,
    TaskResult,
    ToolContext,
    ToolError,
    Wording,
    task,
)
from blueprint_engine.integrations.channel_tool import ChannelTool
from blueprint_engine.integrations.credentials import CredentialData, WebhookSecretCredential
from blueprint_engine.integrations.email_tool import EmailTool
from blueprint_engine.integrations.http_tool import HttpTool
from blueprint_engine.integrations.instagram_tool import InstagramTool
from blueprint_engine.integrations.llm_tool import LLMTool
from blueprint_engine.integrations.razorpay_tool import RazorpayTool
from blueprint_engine.integrations.resources import ToolResources
from blueprint_engine.integrations.sessions_tool import SessionsTool
from blueprint_engine.integrations.slack_tool import SlackTool
from blueprint_engine.integrations.transform import TransformTool
from blueprint_engine.integrations.whatsapp import WhatsAppTool

TOOL_REGISTRY: dict[str, BaseTool] = {
    tool.service: tool
    for tool in (
        WhatsAppTool(),
        RazorpayTool(),
        HttpTool(),
        TransformTool(),
        LLMTool(),
        SessionsTool(),
        ChannelTool(),
        EmailTool(),
        SlackTool(),
        InstagramTool(),
    )
}


#: Credential types a trigger takes (its ``credential``), by trigger kind: a webhook trigger's
#: signing secret.
TRIGGER_CREDENTIAL_TYPES: dict[str, tuple[type[CredentialData], ...]] = {
    "webhook": (WebhookSecretCredential,),
}

#: Every credential type by its ``type`` name: those the tools declare (``razorpay``,
#: ``http_bearer``…) and the triggers' (``webhook_secret``).
CREDENTIAL_TYPES: dict[str, type[CredentialData]] = {
    model.kind: model
    for model in (
        *(model for tool in TOOL_REGISTRY.values() for model in tool.credential_types),
        *(model for models in TRIGGER_CREDENTIAL_TYPES.values() for model in models),
    )
}


def load_settings(settings: Settings) -> None:
    """Read every registered tool's own settings now, so that an invalid variable
    (``TWILIO_MEDIA_TIMEOUT_SECONDS=soon``) stops start-up rather than a step.

    Raises:
        pydantic.ValidationError: a tool's setting is invalid.
    """
    for tool in TOOL_REGISTRY.values():
        if tool.settings_type is not None:
            settings.tool(tool.settings_type)


def public_tools() -> dict[str, BaseTool]:
    """The tools users and the architect see (internal ones serve system blueprints)."""
    return {service: tool for service, tool in TOOL_REGISTRY.items() if not tool.internal}


__all__ = [
    "CREDENTIAL_TYPES",
    "N_",
    "TOOL_REGISTRY",
    "TRIGGER_CREDENTIAL_TYPES",
    "BaseTool",
    "Command",
    "Lookup",
    "Slot",
    "Task",
    "TaskParams",
    "TaskResult",
    "ToolContext",
    "ToolError",
    "ToolResources",
    "Wording",
    "load_settings",
    "public_tools",
    "task",
]
