"""One error base for everything the API reports.

Every 4xx/5xx body is ``{"error": {"code", "message", "details"?}}``; validation errors carry
``details: [{"loc": [...], "node_id"?: str, "message": str}]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

Loc = list[str | int]


class AppError(Exception):
    """An error with a machine-readable ``code``, an HTTP status and optional details;
    ``retry_after`` (seconds) is sent as ``Retry-After`` when set."""

    status_code: int = 400
    code: str = "bad_request"
    retry_after: int | None = None

    def __init__(self, message: str, *, details: Any = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        if code is not None:
            self.code = code

    def to_body(self) -> dict[str, Any]:
        """Render the JSON error body."""
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            body["details"] = self.details
        return {"error": body}


class Unauthorized(AppError):
    """Missing or unknown API key (401)."""

    status_code = 401
    code = "unauthorized"


class Forbidden(AppError):
    """The caller is known but their credential may not do this (403), e.g. a personal API
    key making new credentials. Never used for another user's objects: those are 404."""

    status_code = 403
    code = "forbidden"


class IdentityUnavailable(AppError):
    """The identity provider's signing keys (the Supabase project's JWKS) cannot be fetched, so
    an access token cannot be checked yet (503): the token may well be valid, and a 401 would
    tell a dashboard to sign its user out."""

    status_code = 503
    code = "identity_unavailable"
    retry_after = 30


class NotFound(AppError):
    """A referenced object does not exist (404)."""

    status_code = 404
    code = "not_found"

    def __init__(self, kind: str, ident: object) -> None:
        super().__init__(f"{kind} {ident} not found", details={"kind": kind, "id": str(ident)})


class Conflict(AppError):
    """The request conflicts with the object's current state (409)."""

    status_code = 409
    code = "conflict"


class ValidationFailed(AppError):
    """Request data is well-formed JSON but not acceptable (422); details name the field.

    ``more``: further problems, each ``{"loc", "message"}``, listed after the first.
    """

    status_code = 422
    code = "validation_error"

    def __init__(self, loc: Loc, message: str, *, more: Sequence[dict[str, Any]] = ()) -> None:
        where = ".".join(str(part) for part in loc)
        extra = f" (and {len(more)} more)" if more else ""
        super().__init__(
            f"{where}: {message}{extra}", details=[{"loc": loc, "message": message}, *more]
        )


class MalformedJson(AppError):
    """The request body is not JSON, or not UTF-8 (400)."""

    code = "malformed_json"

    def __init__(self, reason: str) -> None:
        super().__init__(
            f"request body is not valid JSON: {reason}",
            details=[{"loc": ["body"], "message": reason}],
        )


class InvalidHeader(AppError):
    """A request header the API reads is malformed (400); details name the header."""

    code = "invalid_header"

    def __init__(self, name: str, message: str) -> None:
        super().__init__(
            f"header {name}: {message}", details=[{"loc": ["header", name], "message": message}]
        )


class InvalidPayload(AppError):
    """A verified webhook's payload is not one the API can accept (400); details name the field."""

    code = "invalid_payload"


class InvalidBlueprint(AppError):
    """A blueprint failed validation (422); ``details`` lists every problem."""

    status_code = 422
    code = "invalid_blueprint"

    def __init__(self, issues: list[dict[str, Any]]) -> None:
        first = issues[0]
        where = f"node '{first['node_id']}'" if first.get("node_id") else "blueprint"
        more = f" (and {len(issues) - 1} more)" if len(issues) > 1 else ""
        super().__init__(f"{where}: {first['message']}{more}", details=issues)


class SignatureInvalid(AppError):
    """A webhook's signature did not verify (400); nothing was stored."""

    status_code = 400
    code = "invalid_signature"


class SignatureRejected(SignatureInvalid):
    """A signature did not verify, for a provider that expects 403 (Twilio); nothing stored."""

    status_code = 403


class NotConfigured(AppError):
    """The feature needs settings that are missing (503); ``code`` names the feature."""

    status_code = 503
    code = "not_configured"


class DatabaseUnavailable(AppError):
    """The database did not answer (down, restarting, or no free connection in time): 503,
    fast, so clients retry instead of waiting out a long timeout."""

    status_code = 503
    code = "database_unavailable"


class StorageUnavailable(AppError):
    """The audio store (Supabase Storage) did not answer (503); calling again finishes what was
    cut short."""

    status_code = 503
    code = "storage_unavailable"
    retry_after = 30


class EngineUnavailable(AppError):
    """The workflow engine could not be reached; the run was marked failed, not left queued."""

    status_code = 503
    code = "engine_unavailable"


class LLMNotConfigured(NotConfigured):
    """No language model is configured (503)."""

    status_code = 503
    code = "llm_not_configured"


class LLMTimeout(AppError):
    """The language model did not answer in time, after retries (504)."""

    status_code = 504
    code = "llm_timeout"


class LLMUnavailable(AppError):
    """The language model refused or failed, after retries (502)."""

    status_code = 502
    code = "llm_unavailable"


class LLMBadOutput(AppError):
    """The language model answered, but not in the requested shape (502): not JSON, fields
    missing, cut off at its length limit, stopped by its content filter, refused, or empty."""

    status_code = 502
    code = "llm_bad_output"


class PayloadTooLarge(AppError):
    """The request body is over ``MAX_BODY_BYTES`` (413)."""

    status_code = 413
    code = "payload_too_large"
