"""Downloading the media of an inbound WhatsApp message (voice notes) from Twilio.

Twilio's ``MediaUrl0`` points at the Media resource on ``api.twilio.com``
(https://www.twilio.com/docs/messaging/api/media-resource), which answers with a redirect to
short-lived storage: ``mms.twiliocdn.com`` when "Enforce HTTP Auth on Media URLs" is on, else
``s3-external-1.amazonaws.com`` (https://support.twilio.com/hc/en-us/articles/223183748, now on
help.twilio.com). So:

- every hop, the first and each redirect, must be on ``TWILIO_MEDIA_HOSTS``, at most
  ``MAX_REDIRECTS`` redirects, and each goes through the outbound SSRF guard;
- the account credentials (basic auth) go only to ``TWILIO_MEDIA_AUTH_HOSTS``, and never across
  a redirect to another origin (scheme, host, port);
- the body is streamed and reading stops past ``MAX_AUDIO_BYTES``; the whole download is
  limited to ``TWILIO_MEDIA_TIMEOUT_SECONDS``.
"""

from __future__ import annotations

import asyncio

import httpx

from blueprint_engine.config import Settings
from blueprint_engine.integrations import outbound
from blueprint_engine.integrations.whatsapp import TwilioSettings

MAX_REDIRECTS = 3


class MediaUnavailable(Exception):
    """The media could not be downloaded; ``reason`` says why in a few words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _hosts(entries: list[str]) -> set[str]:
    return {e.strip().lower().rstrip(".").removeprefix("[").removesuffix("]") for e in entries}


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port


async def download(url: str, settings: Settings, *, auth: tuple[str, str] | None = None) -> bytes:
    """The bytes at ``url`` (a webhook's ``MediaUrl0``), following Twilio's redirect.
    ``auth``: ``(account_sid, auth_token)`` of the account the message came in on (a user's
    ``twilio`` credential), else the deployment's ``TWILIO_ACCOUNT_SID``/``TWILIO_AUTH_TOKEN``.

    Raises:
        MediaUnavailable: a hop's host is not allowed or its address is refused, too many
            redirects, a status that is neither 2xx nor a redirect, a network failure, the time
            limit, an empty body, or more than ``MAX_AUDIO_BYTES``.
    """
    seconds = settings.tool(TwilioSettings).media_timeout_seconds
    try:
        async with (
            asyncio.timeout(seconds),
            outbound.guarded_client(settings, timeout=seconds) as client,
        ):
            return await _follow(client, url, settings, auth)
    except TimeoutError:
        raise MediaUnavailable(f"no complete answer within {seconds:g} s") from None
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise MediaUnavailable(f"{type(exc).__name__}: {exc}") from None


async def _follow(
    client: httpx.AsyncClient, url: str, settings: Settings, account: tuple[str, str] | None
) -> bytes:
    twilio = settings.tool(TwilioSettings)
    allowed = _hosts(twilio.media_hosts)
    auth_hosts = _hosts(twilio.media_auth_hosts)
    credentials = None
    if account is not None:
        credentials = httpx.BasicAuth(*account)
    elif twilio.account_sid and twilio.auth_token:
        credentials = httpx.BasicAuth(twilio.account_sid, twilio.auth_token.get_secret_value())
    target = first = httpx.URL(url)
    for _ in range(MAX_REDIRECTS + 1):
        if target.scheme not in ("http", "https") or target.host not in allowed:
            raise MediaUnavailable(f"{target.host or url} is not on TWILIO_MEDIA_HOSTS")
        same_origin = _origin(target) == _origin(first)
        auth = credentials if same_origin and target.host in auth_hosts else None
        headers = {"Accept-Encoding": "identity"}
        async with client.stream("GET", target, auth=auth, headers=headers) as response:
            if response.is_redirect:
                target = target.join(response.headers["location"])
                continue
            if not response.is_success:
                raise MediaUnavailable(f"{target.host} answered HTTP {response.status_code}")
            return await _read(response, settings.max_audio_bytes)
    raise MediaUnavailable(f"more than {MAX_REDIRECTS} redirects")


async def _read(response: httpx.Response, limit: int) -> bytes:
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise MediaUnavailable(f"{declared} bytes is over MAX_AUDIO_BYTES ({limit})")
    data = bytearray()
    async for chunk in response.aiter_bytes():
        data += chunk
        if len(data) > limit:
            raise MediaUnavailable(f"more than MAX_AUDIO_BYTES ({limit}) bytes")
    if not data:
        raise MediaUnavailable("the media is empty")
    return bytes(data)
