"""The chat model from settings, and asking it for structured answers with retries (tenacity)
and one typed error per kind of failure.

The one place that turns what the openai SDK and LangChain raise into :mod:`errors`:
timeouts -> ``LLMTimeout``; rate limits and other API errors -> ``LLMUnavailable``; an answer
that does not fit the schema (however it fails) -> ``LLMBadOutput``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Generic, TypeVar

import openai
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.runnables import Runnable
from pydantic import BaseModel, ValidationError
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from blueprint_engine import metrics
from blueprint_engine.config import Settings
from blueprint_engine.errors import LLMBadOutput, LLMTimeout, LLMUnavailable

log = logging.getLogger(__name__)

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


Answer = TypeVar("Answer", bound=BaseModel)


class StructuredModel(Generic[Answer]):
    """A chat model that answers with one ``schema`` object: OpenAI structured output
    (``json_schema``, strict) parsed into ``schema``.

    Servers that do not enforce strict schemas (and strict ones, now and then) answer prose,
    JSON with fields missing, an answer cut off at the length limit, a content-filter stop, a
    refusal or nothing; the openai SDK raises for some (``LengthFinishReasonError``,
    ``ContentFilterFinishReasonError``, pydantic ``ValidationError`` while parsing) and LangChain
    reports the others as a ``parsing_error``. All of them are one error here,
    :class:`LLMBadOutput`, whose message says what was wrong in a sentence fit to send back to
    the model.

    Each call is counted and timed as ``purpose`` (e.g. ``architect``, ``intent``:
    ``blueprint_llm_calls_total``, :func:`metrics.llm_call`).
    """

    def __init__(
        self, model: BaseChatModel, schema: type[Answer], settings: Settings, *, purpose: str
    ) -> None:
        self.schema = schema
        self.settings = settings
        self.purpose = purpose
        self._runnable = model.with_structured_output(
            schema, method="json_schema", strict=True, include_raw=True
        )

    async def ainvoke(self, messages: Sequence[BaseMessage]) -> Answer:
        """Ask the model; transient failures are retried (see :func:`_call`).

        Raises:
            LLMBadOutput: 502, the answer does not fit ``schema``.
            LLMTimeout: 504. LLMUnavailable: 502.
        """
        with metrics.llm_call(self.purpose):
            result = await _call(self._runnable, messages, self.settings)
            parsed = result["parsed"]
            if isinstance(parsed, self.schema):
                return parsed
            raise LLMBadOutput(_unparsed(result["raw"]))


def _unparsed(raw: AIMessage) -> str:
    """Why LangChain could not parse an answer the SDK let through."""
    refusal = raw.additional_kwargs.get("refusal")
    if refusal:
        return f"the model refused: {str(refusal)[:200]}"
    if not raw.content:
        return "the answer was empty"
    return "the answer does not match the schema"


def _bad_output(
    exc: openai.LengthFinishReasonError | openai.ContentFilterFinishReasonError | ValidationError,
) -> str:
    """A one-sentence account of an answer the SDK could not parse (no answer text in it)."""
    if isinstance(exc, openai.LengthFinishReasonError):
        return "the answer was cut off at the length limit (finish_reason 'length')"
    if isinstance(exc, openai.ContentFilterFinishReasonError):
        return "the answer was stopped by the content filter (finish_reason 'content_filter')"
    errors = exc.errors(include_url=False)
    if any(e["type"] == "json_invalid" for e in errors):
        return "the answer is not JSON"
    problems = "; ".join(
        f"{'.'.join(map(str, e['loc'])) or 'answer'}: {e['msg']}" for e in errors[:5]
    )
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return f"the answer does not match the schema: {problems}{more}"


async def _call(
    runnable: Runnable[Any, Any], messages: Sequence[BaseMessage], settings: Settings
) -> Any:
    """``runnable.ainvoke(messages)``, retried on transient failures with exponential backoff
    (``LLM_MAX_ATTEMPTS``, ``LLM_BACKOFF_SECONDS``).

    Raises:
        LLMBadOutput: 502 when the SDK could not parse the answer into the schema, or the
            server's answer is not a chat completion at all.
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
    except (
        openai.LengthFinishReasonError,
        openai.ContentFilterFinishReasonError,
        ValidationError,
    ) as exc:
        raise LLMBadOutput(_bad_output(exc)) from None
    except (IndexError, KeyError, AttributeError, TypeError, ValueError) as exc:
        # A server that is not quite OpenAI-compatible: a 200 with no choices, an HTML page.
        log.warning("unreadable answer from the model server: %s: %s", type(exc).__name__, exc)
        raise LLMBadOutput("the model server's answer is not a chat completion") from None
    raise AssertionError("unreachable: tenacity reraises the last error")
