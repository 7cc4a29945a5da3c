"""Instagram posts through the Instagram Graph API's content publishing, with httpx.

Publishing one image takes three kinds of call
(https://developers.facebook.com/docs/instagram-platform/content-publishing):

1. ``POST {graph}/{ig_user_id}/media`` with ``image_url`` and ``caption``: a container id.
   Meta downloads the image itself, so it must be a public HTTPS URL (a JPEG); it is checked
   against the outbound policy first (its host must resolve to public addresses only).
2. ``GET {graph}/{container_id}?fields=status_code`` until ``FINISHED``: publishing a container
   that is still being processed fails. At most :attr:`InstagramTool.max_polls` checks,
   :attr:`InstagramTool.poll_seconds` apart; ``ERROR`` and ``EXPIRED`` fail the step
   (https://developers.facebook.com/docs/instagram-platform/instagram-graph-api/reference/ig-container).
3. ``POST {graph}/{ig_user_id}/media_publish`` with ``creation_id``: the published media's id.

**Not idempotent.** The API takes no idempotency key: a step retried after an ambiguous failure
of ``media_publish`` (a timeout, an answer lost) can publish the post twice. A retry after a
failure before it only creates another container (they expire unpublished after 24 hours).

Limits (IG User Media reference,
https://developers.facebook.com/docs/instagram-platform/instagram-graph-api/reference/ig-user/media):
a caption has at most 2,200 characters, 30 hashtags and 20 @ tags; an account creates at most
400 containers and publishes at most 50 posts per rolling 24 hours (media_publish reference).

The token goes in an ``Authorization: Bearer`` header (never in a URL). The calls go on the
process's shared HTTP client (``context.http``: the outbound guard's, connections reused).
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx
from pydantic import Field, HttpUrl, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from blueprint_engine.config import ToolSettings
from blueprint_engine.integrations import outbound
from blueprint_engine.integrations.base import (
    BaseTool,
    TaskParams,
    TaskResult,
    ToolContext,
    ToolError,
    fake_id,
    task,
)
from blueprint_engine.integrations.credentials import CredentialData

MAX_CAPTION_CHARS = 2_200
MAX_HASHTAGS = 30
MAX_MENTIONS = 20

#: Graph API error codes (https://developers.facebook.com/docs/graph-api/guides/error-handling)
#: 4 app, 17 user, 32 page, 613 custom rate limits: wait and retry.
_RATE_LIMITS = frozenset({4, 17, 32, 613})
#: 1 unknown and 2 service: temporary. -1 and -2: Instagram's own server errors and media
#: download timeouts ("try again", https://developers.facebook.com/docs/instagram-platform/
#: instagram-graph-api/reference/error-codes).
_TEMPORARY = frozenset({1, 2, -1, -2})
#: 102 session and 190 token: expired, revoked or invalid; a person must reconnect.
_AUTH = frozenset({102, 190})


class InstagramSettings(ToolSettings):
    """``INSTAGRAM_*``: the account when a node names no ``instagram`` connection (token and
    user id both set; else sandbox mode), and the Graph API's base URL."""

    model_config = SettingsConfigDict(env_prefix="INSTAGRAM_")

    access_token: SecretStr | None = None
    user_id: str | None = Field(default=None, pattern=r"^\d{1,25}$")
    graph_url: str = Field(
        default="https://graph.facebook.com/v25.0",
        description="The Graph API's base URL with its version (graph.facebook.com for "
        "accounts with Facebook Login, graph.instagram.com for Instagram Login).",
    )

    def ready(self) -> bool:
        """An access token and an IG user id are set."""
        return self.access_token is not None and bool(self.user_id)


class InstagramCredential(CredentialData):
    """An Instagram professional account and an access token with the
    ``instagram_content_publish`` (or ``instagram_business_content_publish``) permission
    (type ``instagram``). Source:
    https://developers.facebook.com/docs/instagram-platform/content-publishing."""

    kind = "instagram"
    label = "Instagram (Graph API)"
    identity = ("ig_user_id",)

    access_token: SecretStr = Field(title="Access token", min_length=10, max_length=1000)
    ig_user_id: str = Field(
        title="Instagram user id",
        pattern=r"^\d{1,25}$",
        description="The professional account's IG user id (digits).",
        examples=["17841400000000000"],
    )

    @field_validator("access_token")
    @classmethod
    def _visible_ascii(cls, value: SecretStr) -> SecretStr:
        if re.fullmatch(r"[\x21-\x7e]+", value.get_secret_value()) is None:
            raise ValueError("only visible ASCII characters, no spaces or line breaks")
        return value


def _count(pattern: str, text: str) -> int:
    return len(re.findall(pattern, text))


class PublishPost(TaskParams):
    """Params of ``instagram.publish_post``."""

    image_url: HttpUrl = Field(
        description="Public HTTPS URL of a JPEG image (Meta downloads it from there)."
    )
    caption: str | None = Field(
        default=None,
        max_length=MAX_CAPTION_CHARS,
        description="At most 2,200 characters, 30 hashtags and 20 @ mentions.",
    )

    @field_validator("image_url")
    @classmethod
    def _https(cls, value: HttpUrl) -> HttpUrl:
        if value.scheme != "https":
            raise ValueError("must be an https:// URL (Meta fetches the image over HTTPS)")
        if value.username or value.password:
            raise ValueError("must not carry a user name or password")
        return value

    @field_validator("caption")
    @classmethod
    def _tags_within_limits(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if (hashtags := _count(r"(?<!\w)#\w", value)) > MAX_HASHTAGS:
            raise ValueError(f"has {hashtags} hashtags; Instagram allows {MAX_HASHTAGS}")
        if (mentions := _count(r"(?<![\w@])@[\w.]", value)) > MAX_MENTIONS:
            raise ValueError(f"has {mentions} @ mentions; Instagram allows {MAX_MENTIONS}")
        return value


def graph_error(response: httpx.Response, what: str) -> ToolError:
    """Map a Graph API error answer to a ToolError (details: HTTP status, Graph ``code``,
    ``error_subcode``, ``fbtrace_id``):

    ``instagram_rate_limited`` (codes 4, 17, 32, 613; HTTP 429) and ``instagram_unavailable``
    (1, 2, -1, -2, ``is_transient``, HTTP 5xx) are retryable; ``instagram_auth_failed`` (102,
    190), ``instagram_permission_denied`` (10, 200-299), ``instagram_invalid_request`` (100)
    and ``instagram_error`` (anything else) are not.
    """
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    error = error if isinstance(error, dict) else {}
    code = error.get("code") if isinstance(error.get("code"), int) else None
    message = str(error.get("message") or f"HTTP {response.status_code}")[:500]
    details: dict[str, Any] = {"status": response.status_code, "graph_code": code}
    for name in ("error_subcode", "fbtrace_id"):
        if isinstance(error.get(name), int | str):
            details[name] = error[name]
    text = f"Instagram refused {what}: {message}"
    if code in _RATE_LIMITS or response.status_code == 429:
        return ToolError(text, code="instagram_rate_limited", retryable=True, details=details)
    if code in _AUTH:
        return ToolError(text, code="instagram_auth_failed", retryable=False, details=details)
    if code == 10 or (code is not None and 200 <= code <= 299):
        return ToolError(text, code="instagram_permission_denied", retryable=False, details=details)
    if code in _TEMPORARY or error.get("is_transient") is True or response.status_code >= 500:
        return ToolError(text, code="instagram_unavailable", retryable=True, details=details)
    if code == 100:
        return ToolError(text, code="instagram_invalid_request", retryable=False, details=details)
    return ToolError(text, code="instagram_error", retryable=False, details=details)


async def _call(
    client: httpx.AsyncClient, method: str, url: str, what: str, **kwargs: Any
) -> dict[str, Any]:
    """One Graph API call: its JSON object, or a ToolError."""
    try:
        response = await client.request(method, url, **kwargs)
    except outbound.DestinationBlocked as exc:
        raise ToolError(str(exc), code="destination_blocked", retryable=False) from None
    except outbound.ResolutionFailed as exc:
        raise ToolError(str(exc), code="dns_error", retryable=True) from None
    except httpx.TimeoutException:
        raise ToolError(
            f"Instagram did not answer in time ({what})", code="timeout", retryable=True
        ) from None
    except httpx.HTTPError as exc:
        raise ToolError(
            f"Instagram unreachable ({what}): {exc}", code="network_error", retryable=True
        ) from None
    if response.status_code >= 400:
        raise graph_error(response, what)
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise ToolError(
            f"Instagram answered {what} with something other than a JSON object",
            code="instagram_unavailable",
            retryable=True,
            details={"status": response.status_code},
        )
    return body


class Published(TaskResult):
    """Result of ``instagram.publish_post``."""

    id: str = Field(description="The published media's id.")
    container_id: str = Field(description="The media container it was published from.")


class InstagramTool(BaseTool):
    """Publish Instagram posts: the node's ``instagram`` connection, else
    ``INSTAGRAM_ACCESS_TOKEN`` and ``INSTAGRAM_USER_ID`` (at ``INSTAGRAM_GRAPH_URL``)."""

    service = "instagram"
    description = "Publish image posts to an Instagram professional account."
    credential_types = (InstagramCredential,)
    settings_type = InstagramSettings

    #: Container status checks before giving up (retryably), and the pause between them.
    max_polls: int = 10
    poll_seconds: float = 2.0

    def account(self, context: ToolContext) -> tuple[str, str]:
        """``(ig_user_id, access_token)``: the node's credential, else the deployment's
        settings (placeholders in sandbox mode, where the token is never sent)."""
        data = context.credential.data if context.credential is not None else None
        if isinstance(data, InstagramCredential):
            return data.ig_user_id, data.access_token.get_secret_value()
        instagram = context.settings.tool(InstagramSettings)
        token = instagram.access_token
        if context.credential is not None or token is None or not instagram.user_id:
            return "IG_USER_SANDBOX", ""
        return instagram.user_id, token.get_secret_value()

    def _container_body(self, params: PublishPost) -> dict[str, str]:
        body = {"image_url": str(params.image_url)}
        if params.caption is not None:
            body["caption"] = params.caption
        return body

    async def _wait_until_finished(
        self, client: httpx.AsyncClient, graph: str, container: str, headers: dict[str, str]
    ) -> None:
        """Check the container until it is ready to publish (bounded).

        Raises:
            ToolError: ``instagram_media_failed`` (ERROR, EXPIRED: not retryable),
                ``instagram_media_not_ready`` (still processing after the last check:
                retryable, with a new container), or the call's errors.
        """
        status: Any = None
        for attempt in range(self.max_polls):
            if attempt:
                await asyncio.sleep(self.poll_seconds)
            answer = await _call(
                client,
                "GET",
                f"{graph}/{container}",
                "the container status check",
                params={"fields": "status_code,status"},
                headers=headers,
            )
            status = answer.get("status_code")
            if status == "FINISHED":
                return
            if status in ("ERROR", "EXPIRED"):
                raise ToolError(
                    f"Instagram could not prepare the image ({status}): "
                    f"{str(answer.get('status') or 'no reason given')[:300]}",
                    code="instagram_media_failed",
                    retryable=False,
                    details={"container_id": container, "status_code": status},
                )
        raise ToolError(
            f"Instagram was still processing the image after {self.max_polls} checks",
            code="instagram_media_not_ready",
            retryable=True,
            details={"container_id": container, "status_code": status},
        )

    @task(
        params=PublishPost,
        result=Published,
        description="Publish an image (a public HTTPS JPEG URL) with a caption. Not "
        "idempotent: a retry after a lost answer can post twice.",
    )
    async def publish_post(self, params: PublishPost, context: ToolContext) -> Published:
        """Vet the image URL, create the container, wait for it, publish it (on the shared
        client, within ``HTTP_TIMEOUT_SECONDS`` per operation).

        Raises:
            ToolError: ``destination_blocked`` (the image URL is not public), ``dns_error``,
                :func:`graph_error`'s codes, ``timeout`` / ``network_error`` (retryable), and
                :meth:`_wait_until_finished`'s.
        """
        settings = context.settings
        try:
            await outbound.vet(settings, str(params.image_url))
        except outbound.DestinationBlocked as exc:
            raise ToolError(
                f"the image URL is not public, so Instagram cannot fetch it: {exc}",
                code="destination_blocked",
                retryable=False,
            ) from None
        except outbound.ResolutionFailed as exc:
            raise ToolError(str(exc), code="dns_error", retryable=True) from None
        graph = settings.tool(InstagramSettings).graph_url.rstrip("/")
        user, token = self.account(context)
        headers = {"Authorization": f"Bearer {token}"}
        client = context.http
        created = await _call(
            client,
            "POST",
            f"{graph}/{user}/media",
            "the media container",
            data=self._container_body(params),
            headers=headers,
        )
        container = str(created.get("id") or "")
        if not container:
            raise ToolError(
                "Instagram created no media container (no id in its answer)",
                code="instagram_unavailable",
                retryable=True,
            )
        await self._wait_until_finished(client, graph, container, headers)
        published = await _call(
            client,
            "POST",
            f"{graph}/{user}/media_publish",
            "the post",
            data={"creation_id": container},
            headers=headers,
        )
        media = str(published.get("id") or "")
        if not media:
            raise ToolError(
                "Instagram answered the publish call without a media id; the post may be "
                "published (not retried, to avoid posting twice)",
                code="instagram_error",
                retryable=False,
                details={"container_id": container},
            )
        return Published(id=media, container_id=container)

    @publish_post.request
    def publish_post_request(self, params: PublishPost, context: ToolContext) -> dict[str, Any]:
        """The container request, with the publish request that follows it (``then``)."""
        graph = context.settings.tool(InstagramSettings).graph_url.rstrip("/")
        user, _ = self.account(context)
        headers = {"Authorization": "Bearer [redacted]"}
        return {
            "method": "POST",
            "url": f"{graph}/{user}/media",
            "headers": headers,
            "body": self._container_body(params),
            "then": {
                "method": "POST",
                "url": f"{graph}/{user}/media_publish",
                "headers": headers,
                "body": {"creation_id": "<the container's id>"},
            },
        }

    @publish_post.sandbox
    def publish_post_sandbox(self, params: PublishPost, context: ToolContext) -> Published:
        """Fake media and container ids, so later steps can reference them."""
        key = context.idempotency_key
        return Published(id=fake_id("ig_media", key), container_id=fake_id("ig_container", key))
