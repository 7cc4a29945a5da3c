"""Where voice notes and spoken replies are kept, and the links to them.

Audio is kept in Supabase Storage (the ``supabase`` client, bucket ``AUDIO_BUCKET``, private)
when ``SUPABASE_URL`` and ``SUPABASE_SERVICE_ROLE_KEY`` are set, else in ``AUDIO_DIR`` on this
machine. The message it belongs to holds the reference in its ``media`` (``{"audio": {"store":
"supabase" | "local", "key", "content_type", "bytes"}}``); :func:`link` turns it into a URL for
``GET /sessions/{id}``: a signed URL valid ``AUDIO_URL_TTL_SECONDS`` on Supabase, else the API's
own ``/sessions/{id}/messages/{message_id}/audio``. What is kept is what the transcription API
accepts (``speech_service``: its formats, at most ``MAX_AUDIO_BYTES``), stored under one content
type per format.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal
from uuid import UUID, uuid4

import httpx
from supabase import AsyncClientOptions, acreate_client

from blueprint_engine.config import Settings
from blueprint_engine.errors import NotFound
from blueprint_engine.services import speech_service

log = logging.getLogger(__name__)

#: The content type each kept format is stored and served as (the bucket's allowed types).
CONTENT_TYPES = {
    "flac": "audio/flac",
    "mp3": "audio/mpeg",
    "mpeg": "audio/mpeg",
    "mpga": "audio/mpeg",
    "mp4": "audio/mp4",
    "m4a": "audio/mp4",
    "ogg": "audio/ogg",
    "wav": "audio/wav",
    "webm": "audio/webm",
}


def where(settings: Settings) -> Literal["supabase", "local"]:
    """Which store new audio goes to."""
    if settings.supabase_url and settings.supabase_service_role_key is not None:
        return "supabase"
    return "local"


async def keep(
    settings: Settings,
    owner: UUID,
    data: bytes,
    *,
    filename: str | None = None,
    content_type: str | None,
) -> dict[str, Any] | None:
    """Store one voice note or spoken reply of ``owner``; the reference to put in the message's
    ``media["audio"]``, or None (logged) when the store failed: the conversation goes on
    without it.

    Raises:
        UnsupportedMedia: 415, a format the transcription API does not take.
        ValidationFailed, PayloadTooLarge: empty, or over ``MAX_AUDIO_BYTES``.
    """
    fmt = speech_service.audio_format(filename, content_type)
    speech_service.check_size(data, settings)
    stored_type = CONTENT_TYPES[fmt]
    key = f"{owner}/{uuid4()}.{fmt}"
    store = where(settings)
    try:
        if store == "supabase":
            async with _bucket(settings) as bucket:
                await bucket.upload(key, data, {"content-type": stored_type, "upsert": "false"})
        else:
            await asyncio.to_thread(_write, _local_path(settings, key), data)
    except Exception as exc:  # a storage outage must not lose the turn itself
        log.warning("audio not kept (%s store): %s: %s", store, type(exc).__name__, exc)
        return None
    return {"store": store, "key": key, "content_type": stored_type, "bytes": len(data)}


async def link(settings: Settings, session_id: UUID, message: dict[str, Any]) -> str | None:
    """A URL of the message's kept audio, else None (none kept, or no signed URL could be made:
    logged)."""
    media = message.get("media")
    audio = media.get("audio") if isinstance(media, dict) else None
    if not isinstance(audio, dict) or not isinstance(audio.get("key"), str):
        return None
    if audio.get("store") == "local":
        return f"/sessions/{session_id}/messages/{message['id']}/audio"
    if where(settings) != "supabase":
        return None  # kept in a Supabase project this deployment no longer names
    try:
        async with _bucket(settings) as bucket:
            signed = await bucket.create_signed_url(audio["key"], settings.audio_url_ttl_seconds)
    except Exception as exc:
        log.warning("no signed URL for %s: %s: %s", audio["key"], type(exc).__name__, exc)
        return None
    url = signed.get("signedURL") or signed.get("signedUrl")
    return str(url) if url else None


async def link_all(settings: Settings, session: dict[str, Any]) -> dict[str, Any]:
    """``session`` with ``audio_url`` on each of its messages (None when it has no audio)."""
    messages = session.get("messages") or []
    urls = await asyncio.gather(*(link(settings, session["id"], m) for m in messages))
    linked = [{**m, "audio_url": u} for m, u in zip(messages, urls, strict=True)]
    return {**session, "messages": linked}


def local_file(settings: Settings, message: dict[str, Any]) -> tuple[Path, str]:
    """The file and content type of a message's audio kept in ``AUDIO_DIR``.

    Raises:
        NotFound: 404, the message has no audio kept on this machine (or the file is gone).
    """
    media = message.get("media")
    audio = media.get("audio") if isinstance(media, dict) else None
    if not isinstance(audio, dict) or audio.get("store") != "local":
        raise NotFound("audio", message.get("id", "?"))
    path = _local_path(settings, str(audio.get("key", "")))
    if not path.is_file():
        raise NotFound("audio", message.get("id", "?"))
    return path, str(audio.get("content_type") or "application/octet-stream")


#: Keys removed from Storage per request, and the most listed per owner when erasing.
_REMOVE_CHUNK = 100
_MAX_LISTED = 100_000


async def forget(settings: Settings, keys: list[str]) -> int:
    """Delete kept audio by key (the pruner's, after their messages went); returns how many
    were deleted. A store that fails is logged: a file outliving its message is harmless, and
    the owner's erasure removes it for good."""
    local = [k for k in keys if isinstance(k, str) and k]
    if not local:
        return 0
    try:
        if where(settings) == "supabase":
            for start in range(0, len(local), _REMOVE_CHUNK):
                async with _bucket(settings) as bucket:
                    await bucket.remove(local[start : start + _REMOVE_CHUNK])
            return len(local)
        return await asyncio.to_thread(_unlink_all, settings, local)
    except Exception as exc:
        log.warning("kept audio not deleted: %s: %s", type(exc).__name__, exc)
        return 0


async def forget_owner(settings: Settings, owner: UUID) -> int:
    """Delete every audio file kept for ``owner`` (erasure): their prefix in the bucket and
    their folder under ``AUDIO_DIR`` alike (a deployment may have used both). Returns the count.

    Raises:
        Exception: the bucket could not be listed or emptied (erasure reports it; calling
            again finishes it).
    """
    removed = await asyncio.to_thread(_remove_folder, settings, owner)
    if where(settings) != "supabase":
        return removed
    async with _bucket(settings) as bucket:
        for _ in range(_MAX_LISTED // _REMOVE_CHUNK):  # bounded: each round removes what it listed
            listed = await bucket.list(str(owner), {"limit": _REMOVE_CHUNK})
            names = [f"{owner}/{item['name']}" for item in listed if item.get("name")]
            if not names:
                break
            await bucket.remove(names)
            removed += len(names)
    return removed


def _unlink_all(settings: Settings, keys: list[str]) -> int:
    count = 0
    for key in keys:
        try:
            _local_path(settings, key).unlink()
            count += 1
        except (FileNotFoundError, NotFound):
            pass
    return count


def _remove_folder(settings: Settings, owner: UUID) -> int:
    folder = settings.audio_dir.resolve() / str(owner)
    if not folder.is_dir():
        return 0
    files = [path for path in folder.rglob("*") if path.is_file()]
    shutil.rmtree(folder, ignore_errors=True)
    return len(files)


def _local_path(settings: Settings, key: str) -> Path:
    """``key`` under ``AUDIO_DIR``; a key that would leave it is refused (not found)."""
    root = settings.audio_dir.resolve()
    path = (root / key).resolve()
    if not path.is_relative_to(root) or path == root:
        raise NotFound("audio", key)
    return path


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(path.suffix + ".part")
    partial.write_bytes(data)
    partial.replace(path)


@asynccontextmanager
async def _bucket(settings: Settings) -> AsyncIterator[Any]:
    """The audio bucket of the Supabase project, as the service role (which bypasses the
    bucket's row-level security: the API itself decides who may see what), over an HTTP client
    closed afterwards, with ``HTTP_TIMEOUT_SECONDS``."""
    assert settings.supabase_url and settings.supabase_service_role_key is not None
    async with httpx.AsyncClient(timeout=settings.http_timeout_seconds) as http:
        client = await acreate_client(
            settings.supabase_url,
            settings.supabase_service_role_key.get_secret_value(),
            AsyncClientOptions(httpx_client=http),
        )
        yield client.storage.from_(settings.audio_bucket)
