"""Language-model tasks through the openai SDK (any OpenAI-compatible server)."""

from __future__ import annotations

from typing import Any

import openai
from pydantic import Field, HttpUrl, SecretStr

from blueprint_engine.config import Settings
from blueprint_engine.integrations import outbound
from blueprint_engine.integrations.base import (
    BaseTool,
    TaskParams,
    TaskResult,
    ToolContext,
    ToolError,
    retry_after_seconds,
    task,
)
from blueprint_engine.integrations.credentials import CredentialData

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


class OpenAICredential(CredentialData):
    """An OpenAI-compatible model server (type ``openai``): OpenAI itself when ``base_url`` is
    omitted. A user's base URL is reached through the outbound guard, like the http tool."""

    kind = "openai"
    label = "OpenAI-compatible model"
    identity = ("base_url", "model")

    api_key: SecretStr = Field(title="API key", min_length=1, max_length=500)
    base_url: HttpUrl | None = Field(
        default=None, title="Base URL", examples=["https://api.openai.com/v1"]
    )
    model: str | None = Field(default=None, max_length=200, description="Default: OPENAI_MODEL.")


class Summarize(TaskParams):
    """Params of ``llm.summarize``."""

    text: str = Field(min_length=1, max_length=100_000)
    instructions: str = Field(default=SUMMARY_INSTRUCTIONS, max_length=2000)


class Summary(TaskResult):
    """Result of ``llm.summarize``."""

    summary: str | None = Field(description="The summary (null in sandbox mode).")


class LLMTool(BaseTool):
    """Text tasks on the node's ``openai`` credential's model, else the deployment's
    (``OPENAI_API_KEY`` / ``OPENAI_BASE_URL``, which the architect uses too)."""

    service = "llm"
    description = "Summarise text with the configured language model."
    credential_types = (OpenAICredential,)

    def configured(self, settings: Settings) -> bool:
        """An API key or an OpenAI-compatible base URL (the deployment's model)."""
        return settings.openai_api_key is not None or settings.openai_base_url is not None

    def _model(self, context: ToolContext) -> tuple[str, str]:
        """``(base_url, model)`` of the node's credential, else of the settings."""
        settings = context.settings
        data = context.credential.data if context.credential is not None else None
        if isinstance(data, OpenAICredential):
            base = str(data.base_url) if data.base_url else "https://api.openai.com/v1"
            return base, data.model or settings.openai_model
        return settings.openai_base_url or "https://api.openai.com/v1", settings.openai_model

    @task(
        params=Summarize,
        result=Summary,
        description="Summarise a text (e.g. a conversation) in a few sentences.",
    )
    async def summarize(self, params: Summarize, context: ToolContext) -> Summary:
        """Ask the model (the openai SDK's own client: it runs on httpx2, not on the shared
        httpx client).

        Raises:
            ToolError: timeouts, rate limits and 5xx are retryable (with the ``Retry-After`` of
                a 429 or 503); other refusals are not.
        """
        settings = context.settings
        data = context.credential.data if context.credential is not None else None
        base, model = self._model(context)
        if isinstance(data, OpenAICredential):  # the user's server: vetted like the http tool's
            try:
                await outbound.vet(settings, base)
            except outbound.DestinationBlocked as exc:
                raise ToolError(str(exc), code="destination_blocked", retryable=False) from None
            except outbound.ResolutionFailed as exc:
                raise ToolError(str(exc), code="dns_error", retryable=True) from None
            client = openai.AsyncOpenAI(
                api_key=data.api_key.get_secret_value(),
                base_url=base,
                timeout=settings.llm_timeout_seconds,
                max_retries=0,
            )
        else:
            client = openai_client(settings)
        try:
            completion = await client.chat.completions.create(
                model=model,
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
            answer = exc.response if isinstance(exc, openai.APIStatusError) else None
            raise ToolError(
                f"language model unavailable: {exc}",
                code="llm_unavailable",
                retryable=True,
                retry_after=None
                if answer is None
                else retry_after_seconds(answer.status_code, answer.headers),
            ) from None
        except openai.APIError as exc:
            raise ToolError(
                f"language model refused: {exc}", code="llm_error", retryable=False
            ) from None
        finally:
            await client.close()
        return Summary(summary=completion.choices[0].message.content)

    @summarize.request
    def summarize_request(self, params: Summarize, context: ToolContext) -> dict[str, Any]:
        """The chat completion request."""
        base, model = self._model(context)
        return {
            "method": "POST",
            "url": f"{base.rstrip('/')}/chat/completions",
            "body": {
                "model": model,
                "messages": [
                    {"role": "system", "content": params.instructions},
                    {"role": "user", "content": params.text},
                ],
            },
        }

    @summarize.sandbox
    def summarize_sandbox(self, params: Summarize, context: ToolContext) -> Summary:
        """No model: no summary."""
        return Summary(summary=None)
