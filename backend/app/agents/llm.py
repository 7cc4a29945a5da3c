"""The chat model from settings, and calling it with retries (tenacity) and clear errors."""

from __future__ import annotations

from typing import Any

import openai
from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from backend.app.config import Settings
from backend.app.errors import LLMTimeout, LLMUnavailable

#: Failures worth another try: timeouts, connection errors, rate limits, 5xx.
TRANSIENT = (
    openai.APITimeoutError,
    openai.APIConnectionError,
    openai.RateLimitError,
    openai.InternalServerError,
)


def build_chat_model(settings: Settings, *, http_client: Any = None) -> BaseChatModel | None:
    """``ChatOpenAI`` from settings (``OPENAI_API_KEY``, ``OPENAI_BASE_URL``, ``OPENAI_MODEL``),
    or None when neither a key nor a base URL is configured.

    ``http_client`` is the openai SDK's own async HTTP client hook (tests pass one with a mock
    transport; production leaves the SDK's default).
    """
    if settings.openai_api_key is None and settings.openai_base_url is None:
        return None
    from langchain_openai import ChatOpenAI

    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else "unused"
    return ChatOpenAI(
        model=settings.openai_model,
        api_key=key,
        base_url=settings.openai_base_url,
        timeout=settings.llm_timeout_seconds,
        max_retries=0,  # tenacity retries, so attempts and backoff are ours
        temperature=0,
        http_async_client=http_client,
    )


async def invoke(runnable: Runnable[Any, Any], messages: list[Any], settings: Settings) -> Any:
    """``runnable.ainvoke(messages)``, retried on transient failures with exponential backoff
    (``LLM_MAX_ATTEMPTS``, ``LLM_BACKOFF_SECONDS``).

    Raises:
        LLMTimeout: 504 after the attempts timed out.
        LLMUnavailable: 502 when rate limited after the attempts, or on any other API error.
    """
    retrying = AsyncRetrying(
        stop=stop_after_attempt(settings.llm_max_attempts),
        wait=wait_exponential(multiplier=settings.llm_backoff_seconds, max=30),
        retry=retry_if_exception_type(TRANSIENT),
        reraise=True,
    )
    try:
        async for attempt in retrying:
            with attempt:
                return await runnable.ainvoke(messages)
    except openai.APITimeoutError:
        raise LLMTimeout(
            f"the language model did not answer within {settings.llm_timeout_seconds:g}s "
            f"({settings.llm_max_attempts} attempts); try again"
        ) from None
    except openai.RateLimitError:
        raise LLMUnavailable(
            f"the language model is rate limited ({settings.llm_max_attempts} attempts); "
            "try again shortly"
        ) from None
    except openai.APIError as exc:
        raise LLMUnavailable(f"the language model failed: {type(exc).__name__}: {exc}") from None
    raise AssertionError("unreachable: tenacity reraises the last error")
