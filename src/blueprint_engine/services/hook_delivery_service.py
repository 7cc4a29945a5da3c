"""A delivery to a hook, ``POST /hooks/{workflow_id}/{token}``: find, verify, parse, start
(once per idempotency key), answer.

In order, nothing parsed or stored before the checks that come first:

1. The hook: the workflow's hook token (SHA-256, compared in constant time) while its active
   version has a webhook trigger. Anything else — an unknown or malformed workflow id, a wrong
   or rotated token, an inactive or archived workflow, another trigger — is the same 404
   ``hook_not_found``, so the answer does not tell which.
2. The signature, when the trigger names a ``credential`` (a ``webhook_secret``): HMAC-SHA256
   of the raw body with its secret, hex (``sha256=<hex>`` or ``<hex>``, any case) in
   ``signature_header`` (default ``X-Signature-256``); compared in constant time. Missing or
   wrong: 401 ``invalid_signature``.
3. The body, by content type: JSON (``application/json``, ``application/*+json``: any JSON
   value), a form (``application/x-www-form-urlencoded``, ``multipart/form-data``: fields;
   a repeated field becomes a list; files: 415 ``files_not_accepted``) or ``text/plain`` (a
   string); an empty body is null; any other type is 415 ``unsupported_media_type``. What the
   database cannot hold is 400 ``invalid_payload`` naming the field. Size: the API's body
   limit (413).
4. ``Idempotency-Key`` (optional, up to 200 printable ASCII characters): the run is keyed
   ``hook:<workflow id>:<key>`` in the runs' unique (owner, idempotency key), so the same key
   starts one run however many deliveries race, and a repeat gets that run (as long as it is
   kept: retention) whatever its body.

The run's trigger data is ``{"body", "headers", "query", "method": "POST"}``: headers
lower-case, without those that carry the caller's credentials (:data:`WITHHELD`); query
parameters like form fields. It is queued like any run (``run_service.start``), so either
engine runs it.

The answer follows the trigger's ``respond``: ``immediately`` (default) is 202 ``{"run_id",
"created", "status_url"}``; ``when_finished`` waits (:meth:`ProgressHub.finished`) up to
``response_timeout`` seconds (default 10, cut to ``HOOK_RESPONSE_MAX_SECONDS``) and answers
200 with the run's output, 502 ``run_failed`` / ``run_cancelled`` with the run id (a failed
run is the workflow's answer, not the server's fault), or 202 as above when time is up.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from starlette.datastructures import FormData, UploadFile

from blueprint_engine import boundary, metrics
from blueprint_engine.config import Settings
from blueprint_engine.errors import AppError, InvalidHeader, InvalidPayload, SignatureInvalid
from blueprint_engine.integrations.credentials import WebhookSecretCredential
from blueprint_engine.services import credential_service, hook_service, run_service
from blueprint_engine.services.progress_hub import ProgressHub
from blueprint_engine.store import hooks as store
from blueprint_engine.store.db import Pool
from blueprint_engine.workflows.runners import Dispatcher

DEFAULT_SIGNATURE_HEADER = "X-Signature-256"
DEFAULT_RESPONSE_TIMEOUT = 10.0
MAX_IDEMPOTENCY_KEY = 200
#: Request headers never copied into the trigger data: they carry the caller's credentials
#: (or a proxy's), and the trigger data is stored and shown with the run.
WITHHELD = frozenset(
    {"authorization", "proxy-authorization", "cookie", "x-api-key", "x-user-id", "x-auth-token"}
)
_JSON = ("application/json",)
_FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")
_TEXT = ("text/plain",)
#: A hash no token has, compared when the hook is missing: every 404 costs the same.
_NO_HASH = "0" * 64


class HookUnavailable(AppError):
    """No hook answers at this URL (404 ``hook_not_found``); deliberately says no more."""

    status_code = 404
    code = "hook_not_found"


class SignatureRequired(SignatureInvalid):
    """A signed hook's delivery whose signature is missing or wrong (401); nothing stored."""

    status_code = 401


class UnsupportedMediaType(AppError):
    """A body of a type a hook does not take (415)."""

    status_code = 415
    code = "unsupported_media_type"


class RunDidNotSucceed(AppError):
    """The run a waiting hook started ended failed or cancelled (502 ``run_failed`` /
    ``run_cancelled``): the workflow's answer, relayed, not a fault of the server."""

    status_code = 502


@dataclass(frozen=True)
class Delivery:
    """What a hook request brought: the raw body, its ``Content-Type``, the headers and query
    pairs as received, and how to parse the body as a form (the request's own parser, which
    reads the body already received)."""

    body: bytes
    content_type: str
    headers: Iterable[tuple[str, str]]
    query: Iterable[tuple[str, str]]
    form: Callable[[], Awaitable[FormData]]


@dataclass(frozen=True)
class Answer:
    """The HTTP answer: a status and a JSON body."""

    status: int
    body: Any


async def receive(
    pool: Pool,
    settings: Settings,
    dispatcher: Dispatcher,
    hub: ProgressHub,
    workflow_id: str,
    token: str,
    delivery: Delivery,
) -> Answer:
    """Handle one delivery (see the module docstring for the checks, in order, and answers).

    Raises:
        HookUnavailable: 404. SignatureRequired: 401. UnsupportedMediaType: 415.
        InvalidPayload: 400, naming the field. InvalidHeader: 400, a bad Idempotency-Key.
        NotConfigured: 503 (the signing credential is gone or unreadable).
        EngineUnavailable: 503, the run was marked failed. (A run that did not succeed is an
        answer, not an error: 502 with :class:`RunDidNotSucceed`'s body.)
    """
    hook_id, target = await _target(pool, workflow_id, token)
    trigger = target["trigger"] or {}
    headers = list(delivery.headers)
    withheld = WITHHELD
    if trigger.get("credential"):
        secret = await credential_service.owned(
            pool, settings, target["owner_id"], trigger["credential"], WebhookSecretCredential
        )
        name = trigger.get("signature_header") or DEFAULT_SIGNATURE_HEADER
        _verify(secret.secret.get_secret_value(), delivery.body, _header(headers, name), name)
        withheld = withheld | {name.lower()}  # stored, it would let a reader replay the body
    key = _idempotency_key(_header(headers, "idempotency-key"))
    trigger_data = {
        "body": await _body(delivery),
        "headers": _visible_headers(headers, withheld),
        "query": _query(delivery.query),
        "method": "POST",
    }
    async with pool.connection() as conn:
        await store.note_use(conn, hook_id)
    run_id, created = await run_service.start(
        pool,
        dispatcher,
        workflow_id=hook_id,
        version=target["version"],
        blueprint=None,
        payload=trigger_data,
        idempotency_key=None if key is None else f"hook:{hook_id}:{key}",
        owner=target["owner_id"],
    )
    if not created:
        metrics.delivery_outcome("duplicate")
    started = Answer(
        202, {"run_id": str(run_id), "created": created, "status_url": f"/runs/{run_id}"}
    )
    if trigger.get("respond") != "when_finished":
        return started
    wait = float(trigger.get("response_timeout") or DEFAULT_RESPONSE_TIMEOUT)
    try:
        async with asyncio.timeout(min(wait, settings.hook_response_max_seconds)):
            run = await hub.finished(run_id)
    except TimeoutError:
        return started
    if run is None:  # deleted meanwhile (erasure)
        return started
    if run["status"] == "succeeded":
        return Answer(200, run["output"])
    error = run["error"] if isinstance(run["error"], dict) else {}
    failed = RunDidNotSucceed(
        f"the workflow's run {run['status']}",
        code=f"run_{run['status']}",
        details={
            "run_id": str(run_id),
            "status_url": f"/runs/{run_id}",
            "error_code": error.get("code"),
        },
    )
    return Answer(failed.status_code, failed.to_body())


async def _target(pool: Pool, workflow_id: str, token: str) -> tuple[UUID, Any]:
    """The live hook ``workflow_id`` names, if ``token`` is its token.

    Raises:
        HookUnavailable: 404, whatever the reason.
    """
    try:
        hook_id = UUID(workflow_id)
    except ValueError:
        hook_id = None
    target = None
    if hook_id is not None:
        async with pool.connection() as conn:
            target = await store.target(conn, hook_id)
    expected = _NO_HASH if target is None else target["token_sha256"]
    matches = hmac.compare_digest(hook_service.token_hash(token), expected)
    if hook_id is None or target is None or not matches:
        raise HookUnavailable("no hook answers at this URL")
    return hook_id, target


def _header(headers: list[tuple[str, str]], name: str) -> str | None:
    """The first value of header ``name`` (any case), or None."""
    wanted = name.lower()
    return next((value for key, value in headers if key.lower() == wanted), None)


def _verify(secret: str, body: bytes, presented: str | None, name: str) -> None:
    """Raises:
    SignatureRequired: 401, ``presented`` is missing or not the body's HMAC-SHA256."""
    if presented is None:
        raise SignatureRequired(f"missing {name} header (HMAC-SHA256 of the body)")
    value = presented.strip()
    if value[:7].lower() == "sha256=":
        value = value[7:]
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    # compare_digest raises TypeError on a non-ASCII str: never pass one
    if not (value.isascii() and hmac.compare_digest(value.lower(), expected)):
        raise SignatureRequired(f"{name} does not match the body (HMAC-SHA256, hex)")


def _idempotency_key(value: str | None) -> str | None:
    """Raises:
    InvalidHeader: 400, empty, longer than 200 characters or not printable ASCII."""
    if value is None:
        return None
    boundary.check_header("idempotency-key", value)
    if not 0 < len(value) <= MAX_IDEMPOTENCY_KEY:
        raise InvalidHeader("idempotency-key", f"1 to {MAX_IDEMPOTENCY_KEY} characters")
    return value


async def _body(delivery: Delivery) -> Any:
    """The body as trigger data (see the module docstring).

    Raises:
        UnsupportedMediaType: 415. InvalidPayload: 400.
    """
    if not delivery.body:
        return None
    media = delivery.content_type.split(";", 1)[0].strip().lower()
    if media in _JSON or (media.startswith("application/") and media.endswith("+json")):
        with boundary.webhook_payload():
            return boundary.loads(delivery.body)
    if media in _TEXT:
        try:
            text = delivery.body.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidPayload(
                "a text/plain body must be UTF-8",
                details=[{"loc": ["body"], "message": "not UTF-8"}],
            ) from None
        with boundary.webhook_payload():
            boundary.reject(boundary.check(text, ["body"]))
        return text
    if media in _FORMS:
        form = await delivery.form()
        try:
            if any(isinstance(value, UploadFile) for _, value in form.multi_items()):
                raise UnsupportedMediaType(
                    "a hook takes form fields, not files", code="files_not_accepted"
                )
            with boundary.webhook_payload():
                boundary.check_form(form)
            return _fields(form.multi_items())
        finally:
            await form.close()
    accepted = ", ".join((*_JSON, *_FORMS, *_TEXT))
    raise UnsupportedMediaType(
        f"Content-Type {media or '(none)'} is not taken here; send one of {accepted}"
    )


def _fields(pairs: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """Name-value pairs as an object; a name given more than once gets the list of values."""
    fields: dict[str, Any] = {}
    repeated: set[str] = set()
    for key, value in pairs:
        if key not in fields:
            fields[key] = value
        elif key in repeated:
            fields[key].append(value)
        else:
            fields[key] = [fields[key], value]
            repeated.add(key)
    return fields


def _query(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """The query parameters (like form fields).

    Raises:
        InvalidPayload: 400, a parameter the database cannot hold.
    """
    pairs = list(pairs)
    with boundary.webhook_payload():
        boundary.reject(boundary.check_pairs("query", pairs))
    return _fields(pairs)


def _visible_headers(headers: list[tuple[str, str]], withheld: frozenset[str]) -> dict[str, Any]:
    """The headers, lower-case, without ``withheld`` ones (:data:`WITHHELD` and the
    signature's), repeated ones as lists."""
    kept = [(k.lower(), v) for k, v in headers if k.lower() not in withheld]
    with boundary.webhook_payload():
        boundary.reject(boundary.check_pairs("header", kept))
    return _fields(kept)
