"""Language-model tasks through the openai SDK (any OpenAI-compatible server)."""

from __future__ import annotations

from typing import Any

import openai
from pydantic import Field

from backend.app.config import Settings
from backend.app.integrations.base import BaseTool, Task, TaskParams, ToolContext, ToolError

SUMMARY_INSTRUCTIONS = (
    "Summarise this conversation between a user and a business assistant in 2-4 sentences: "
    "what the user wanted, what was done (with ids or links), and anything still open or "
    "needing action."
)


def openai_client(settings: Settings, *, max_retries: int = 0) -> openai.AsyncOpenAI:
    """An openai SDK client for ``OPENAI_API_KEY`` / ``OPENAI_BASE_URL`` (a base URL alone is
    enough for OpenAI-compatible servers without keys)."""
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else "unused"
    return openai.AsyncOpenAI(
        api_key=key,
        base_url=settings.openai_base_url,
        timeout=settings.llm_timeout_seconds,
        max_retries=max_retries,
    )


class Summarize(TaskParams):
    """Params of ``llm.summarize``."""

    text: str = Field(min_length=1, max_length=100_000)
    instructions: str = Field(default=SUMMARY_INSTRUCTIONS, max_length=2000)


class LLMTool(BaseTool):
    """Text tasks on the configured model (``OPENAI_API_KEY`` / ``OPENAI_BASE_URL``)."""

    service = "llm"
    description = "Summarise text with the configured language model."
    tasks = {
        "summarize": Task(
            params=Summarize,
            description="Summarise a text (e.g. a conversation) in a few sentences.",
            result={"summary": "string (null in sandbox mode)"},
        )
    }

    def has_credentials(self, settings: Settings) -> bool:
        """An API key or an OpenAI-compatible base URL."""
        return settings.openai_api_key is not None or settings.openai_base_url is not None

    def build_request(self, task: str, params: Any, context: ToolContext) -> dict[str, Any]:
        """The chat completion request."""
        base = context.settings.openai_base_url or "https://api.openai.com/v1"
        return {
            "method": "POST",
            "url": f"{base.rstrip('/')}/chat/completions",
            "body": {
                "model": context.settings.openai_model,
                "messages": [
                    {"role": "system", "content": params.instructions},
                    {"role": "user", "content": params.text},
                ],
            },
        }

    def sandbox_result(self, task: str, params: Any, context: ToolContext) -> dict[str, Any]:
        """No model: no summary."""
        return {"summary": None}

    async def send(self, task: str, params: Any, context: ToolContext) -> dict[str, Any]:
        """Ask the model.

        Raises:
            ToolError: timeouts, rate limits and 5xx are retryable; other refusals are not.
        """
        settings = context.settings
        client = openai_client(settings)
        try:
            completion = await client.chat.completions.create(
                model=settings.openai_model,
                messages=[
                    {"role": "system", "content": params.instructions},
                    {"role": "user", "content": params.text},
                ],
            )
        except (
            openai.APITimeoutError,
            openai.APIConnectionError,
            openai.RateLimitError,
            openai.InternalServerError,
        ) as exc:
            raise ToolError(
                f"language model unavailable: {exc}", code="llm_unavailable", retryable=True
            ) from None
        except openai.APIError as exc:
            raise ToolError(
                f"language model refused: {exc}", code="llm_error", retryable=False
            ) from None
        finally:
            await client.close()
        return {"summary": completion.choices[0].message.content}
