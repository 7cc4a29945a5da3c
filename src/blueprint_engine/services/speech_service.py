"""Audio in and out with the openai SDK: Whisper transcription and text-to-speech.

Accepted uploads follow OpenAI's speech-to-text limits (https://platform.openai.com/docs/guides/
speech-to-text): flac, mp3, mp4, mpeg, mpga, m4a, ogg, wav, webm, at most 25 MB.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import PurePath
from typing import Any

import openai

from blueprint_engine import metrics
from blueprint_engine.config import Settings
from blueprint_engine.errors import (
    AppError,
    LLMNotConfigured,
    LLMTimeout,
    LLMUnavailable,
    PayloadTooLarge,
    ValidationFailed,
)
from blueprint_engine.integrations.llm_tool import openai_client

FORMATS = ("flac", "mp3", "mp4", "mpeg", "mpga", "m4a", "ogg", "wav", "webm")
_CONTENT_TYPES = {
    "audio/flac": "flac",
    "audio/x-flac": "flac",
    "audio/mpeg": "mp3",
    "audio/mp3": "mp3",
    "audio/mp4": "m4a",
    "audio/x-m4a": "m4a",
    "audio/m4a": "m4a",
    "video/mp4": "mp4",
    "audio/ogg": "ogg",
    "audio/opus": "ogg",
    "audio/wav": "wav",
    "audio/x-wav": "wav",
    "audio/wave": "wav",
    "audio/webm": "webm",
    "video/webm": "webm",
    "video/mpeg": "mpeg",
}


class UnsupportedMedia(AppError):
    """Audio in a format the transcription API does not take (415)."""

    status_code = 415
    code = "unsupported_media_type"


def audio_format(filename: str | None, content_type: str | None) -> str:
    """The upload's format from its extension, else its content type.

    Raises:
        UnsupportedMedia: 415, naming the accepted formats.
    """
    suffix = PurePath(filename or "").suffix.lstrip(".").lower()
    if suffix in FORMATS:
        return suffix
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind in _CONTENT_TYPES:
        return _CONTENT_TYPES[kind]
    raise UnsupportedMedia(
        f"audio must be one of {', '.join(FORMATS)}; got {filename or '?'} ({kind or 'no type'})",
        details=[{"loc": ["body", "audio_file"], "message": "unsupported audio format"}],
    )


def check_size(data: bytes, settings: Settings) -> None:
    """Reject empty audio (422) and audio over ``MAX_AUDIO_BYTES`` (413).

    Raises:
        ValidationFailed: empty. PayloadTooLarge: too big.
    """
    if not data:
        raise ValidationFailed(["body", "audio_file"], "the audio file is empty")
    if len(data) > settings.max_audio_bytes:
        raise PayloadTooLarge(
            f"audio is over the {settings.max_audio_bytes // (1024 * 1024)} MB "
            "limit of the transcription API"
        )


def _client(settings: Settings) -> openai.AsyncOpenAI:
    if settings.openai_api_key is None and settings.openai_base_url is None:
        raise LLMNotConfigured(
            "no speech model is configured: set OPENAI_API_KEY (or OPENAI_BASE_URL)"
        )
    return openai_client(settings, max_retries=2)


@asynccontextmanager
async def _speech(settings: Settings, what: str, purpose: str) -> AsyncIterator[openai.AsyncOpenAI]:
    """A client for one call, with the SDK's failures turned into 504/502 errors; the call is
    counted and timed as ``purpose`` (:func:`metrics.llm_call`)."""
    client = _client(settings)
    try:
        with metrics.llm_call(purpose):
            try:
                yield client
            except openai.APITimeoutError:
                raise LLMTimeout(f"{what} timed out; try again") from None
            except openai.APIError as exc:
                raise LLMUnavailable(f"{what} failed: {type(exc).__name__}: {exc}") from None
    finally:
        await client.close()


async def transcribe(
    data: bytes, settings: Settings, *, filename: str | None, content_type: str | None
) -> str:
    """Speech -> text with ``TRANSCRIPTION_MODEL`` (default whisper-1), after checking the
    upload's format and size.

    Raises:
        UnsupportedMedia: 415. ValidationFailed: empty (422). PayloadTooLarge: 413.
        LLMNotConfigured: 503. LLMTimeout: 504. LLMUnavailable: 502.
    """
    fmt = audio_format(filename, content_type)
    check_size(data, settings)
    async with _speech(settings, "transcription", "transcription") as client:
        result = await client.audio.transcriptions.create(
            model=settings.transcription_model, file=(f"audio.{fmt}", data)
        )
    return str(result.text).strip()


def voice_for(language: str, settings: Settings) -> str:
    """The voice for a reply in ``language`` (a BCP 47 tag: ``hi``, ``hi-Latn``):
    ``SPEECH_VOICES``' for the tag, else for its language (``hi``), else ``SPEECH_VOICE``."""
    voices = settings.speech_voices
    return voices.get(language) or voices.get(language.split("-")[0]) or settings.speech_voice


async def speak(text: str, settings: Settings, *, language: str = "en") -> dict[str, Any]:
    """Text -> speech with ``SPEECH_MODEL`` in the voice for ``language``
    (:func:`voice_for`): ``{"format": "mp3", "base64", "voice"}``.

    Raises:
        LLMNotConfigured: 503. LLMTimeout: 504. LLMUnavailable: 502.
    """
    voice = voice_for(language, settings)
    async with _speech(settings, "speech synthesis", "speech") as client:
        response = await client.audio.speech.create(
            model=settings.speech_model, voice=voice, input=text, response_format="mp3"
        )
    return {"format": "mp3", "base64": base64.b64encode(response.content).decode(), "voice": voice}
