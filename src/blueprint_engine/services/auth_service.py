"""Who is calling: Supabase Auth access tokens, personal API keys, service keys, or nobody.

- **Supabase Auth access tokens** (``Authorization: Bearer <JWT>``), verified with PyJWT:
  ``HS256`` with ``SUPABASE_JWT_SECRET``, or an asymmetric key (``ES256``/``RS256``/``EdDSA``)
  from the project's JWKS at ``SUPABASE_URL/auth/v1/.well-known/jwks.json`` (cached, fetched
  again for an unknown ``kid`` at most every :data:`JWKS_MIN_REFRESH_SECONDS`). ``exp``,
  ``aud`` = ``authenticated`` and, with ``SUPABASE_URL``, ``iss`` = ``<SUPABASE_URL>/auth/v1``
  are checked; the user is ``sub`` (https://supabase.com/docs/guides/auth/jwts,
  https://supabase.com/docs/guides/auth/signing-keys). ``alg: none`` and any other algorithm
  are refused.
- **Personal API keys** (``X-API-Key`` or Bearer, ``bpk_…``): created over the API, shown once,
  stored as their SHA-256.
- **Service keys** (``API_KEYS``): the deployment's own; they act for the user named by
  ``X-User-Id`` (or a body's ``user_id``), else for the local user.
- **Nobody**, when no identity is configured at all (no ``SUPABASE_URL``,
  ``SUPABASE_JWT_SECRET`` or ``API_KEYS``): the local user owns everything (development).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any, Literal
from uuid import UUID

import httpx
import jwt

from blueprint_engine.config import Settings
from blueprint_engine.errors import (
    Forbidden,
    IdentityUnavailable,
    InvalidHeader,
    Unauthorized,
    ValidationFailed,
)
from blueprint_engine.store import accounts as store
from blueprint_engine.store.accounts import LOCAL_USER_ID
from blueprint_engine.store.db import Pool

log = logging.getLogger(__name__)

AUDIENCE = "authenticated"
ASYMMETRIC = ("ES256", "RS256", "EdDSA")
JWKS_TTL_SECONDS = 600.0
JWKS_MIN_REFRESH_SECONDS = 30.0
LEEWAY_SECONDS = 30.0
KEY_PREFIX = "bpk_"

Via = Literal["token", "api_key", "service_key", "local"]


@dataclass(frozen=True)
class Caller:
    """The user a request acts for, and how that was established."""

    user_id: UUID
    via: Via

    @property
    def may_act_for_others(self) -> bool:
        """A deployment service key, or anyone when no identity is configured (development):
        may act for any user."""
        return self.via in ("service_key", "local")

    def require_not_personal_key(self, what: str) -> None:
        """Refuse ``what`` (a new credential: an API key, a linked WhatsApp number) to a
        personal API key, so that a leaked key cannot make itself a successor that outlives
        its revocation. A signed-in user, a service key and local mode may.

        Raises:
            Forbidden: 403, the caller authenticated with a personal API key.
        """
        if self.via == "api_key":
            raise Forbidden(
                f"a personal API key cannot {what}; sign in (a Supabase access token) to do it"
            )


async def owner_for(pool: Pool, caller: Caller, user_id: str | None, loc: list[str | int]) -> UUID:
    """The owner for a body's ``user_id`` field (at ``loc``): the caller, unless a service key
    (or a deployment without identity) names another user, who is created on first use.

    Raises:
        ValidationFailed: 422, ``user_id`` is not a UUID, or names someone else without the
            right to.
    """
    if user_id is None:
        return caller.user_id
    try:
        named = UUID(user_id)
    except ValueError:
        raise ValidationFailed(loc, "must be a user id (a UUID)") from None
    if named != caller.user_id:
        if not caller.may_act_for_others:
            raise ValidationFailed(loc, "only a service key may act for another user")
        async with pool.connection() as conn:
            await store.ensure_user(conn, named)
    return named


def new_api_key() -> tuple[str, str, str]:
    """A fresh personal API key: ``(key, prefix, sha256)``; the key itself is shown once."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    return key, key[:12], key_hash(key)


def key_hash(key: str) -> str:
    """How a personal API key is stored and looked up (SHA-256; the key has 256 random bits)."""
    return hashlib.sha256(key.encode()).hexdigest()


class JwksCache:
    """The project's signing keys, fetched from its JWKS endpoint and kept
    :data:`JWKS_TTL_SECONDS`; an unknown ``kid`` (a rotated key) fetches again, at most every
    :data:`JWKS_MIN_REFRESH_SECONDS`, so random ``kid`` values cannot make us hammer it. A
    failed fetch keeps the keys already known."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._lock = asyncio.Lock()

    async def key(self, kid: str | None) -> jwt.PyJWK:
        """The signing key with id ``kid``.

        Raises:
            Unauthorized: 401, no such key. IdentityUnavailable: 503, no key is known because
                the JWKS cannot be fetched.
        """
        if self._due(kid):
            async with self._lock:
                if self._due(kid):  # decided again: a request queued here may find it done
                    await self._fetch()
        if not self._keys:
            raise IdentityUnavailable("the identity provider's signing keys are unavailable")
        found = self._keys.get(kid or "")
        if found is None:
            raise Unauthorized("the token's signing key is not one of the project's")
        return found

    def _due(self, kid: str | None) -> bool:
        """Whether to fetch now: never fetched, cache expired, or an unknown ``kid`` and the
        last fetch is long enough ago."""
        if self._fetched_at is None:
            return True
        age = time.monotonic() - self._fetched_at
        unknown = kid is None or kid not in self._keys
        return age > JWKS_TTL_SECONDS or (unknown and age > JWKS_MIN_REFRESH_SECONDS)

    async def _fetch(self) -> None:
        self._fetched_at = time.monotonic()
        try:
            async with httpx.AsyncClient(timeout=5) as client:
                response = await client.get(self.url)
                response.raise_for_status()
                body = response.json()
            entries = body.get("keys") if isinstance(body, dict) else None
            if not isinstance(entries, list):
                raise ValueError("not a JWK set (no 'keys' list)")
            # PyJWKSet skips keys it cannot use, but expects each entry to be an object.
            keys = jwt.PyJWKSet([entry for entry in entries if isinstance(entry, dict)])
        except (httpx.HTTPError, ValueError, jwt.PyJWTError) as exc:
            log.warning("cannot fetch the JWKS at %s: %s", self.url, exc)
            return
        self._keys = {k.key_id: k for k in keys.keys if k.key_id}


class Authenticator:
    """Turns a request's credentials into a :class:`Caller` (see the module docstring)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.secret = (
            settings.supabase_jwt_secret.get_secret_value()
            if settings.supabase_jwt_secret
            else None
        )
        base = (settings.supabase_url or "").rstrip("/")
        self.issuer = f"{base}/auth/v1" if base else None
        self.jwks = JwksCache(f"{base}/auth/v1/.well-known/jwks.json") if base else None
        self.service_keys = [k.get_secret_value().encode() for k in settings.api_keys]
        self.open = not (self.secret or self.jwks or self.service_keys)

    async def authenticate(
        self, pool: Pool, *, bearer: str | None, api_key: str | None, act_for: str | None
    ) -> Caller:
        """The caller of a request.

        Args:
            bearer: the ``Authorization: Bearer`` value; api_key: ``X-API-Key``;
            act_for: ``X-User-Id`` (service keys only).

        Raises:
            Unauthorized: 401, missing or invalid credentials. InvalidHeader: 400, a malformed
                ``X-User-Id``, or one sent without a service key. IdentityUnavailable: 503,
                the project's JWKS cannot be fetched to check a token.
        """
        presented = api_key or bearer
        if presented is None:
            if not self.open:
                raise Unauthorized(
                    "send a Supabase access token (Authorization: Bearer) or an API key (X-API-Key)"
                )
            caller = Caller(LOCAL_USER_ID, "local")
        elif presented.startswith(KEY_PREFIX):
            caller = await self._personal_key(pool, presented)
        elif any(secrets.compare_digest(presented.encode(), k) for k in self.service_keys):
            caller = Caller(LOCAL_USER_ID, "service_key")
        elif api_key is None and presented.count(".") == 2:
            caller = await self._token(pool, presented)
        else:
            raise Unauthorized("the credentials are not valid")
        if act_for is not None:
            if not caller.may_act_for_others:
                raise InvalidHeader("x-user-id", "only a service key may act for another user")
            try:
                caller = Caller(UUID(act_for), caller.via)
            except ValueError:
                raise InvalidHeader("x-user-id", "must be a user id (a UUID)") from None
            await self._remember(pool, caller.user_id, {})
        return caller

    async def _personal_key(self, pool: Pool, key: str) -> Caller:
        async with pool.connection() as conn:
            user_id = await store.user_for_key(conn, key_hash(key))
        if user_id is None:
            raise Unauthorized("the API key is not valid (revoked or unknown)")
        return Caller(user_id, "api_key")

    async def _token(self, pool: Pool, token: str) -> Caller:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthorized("the access token is malformed") from None
        alg = header.get("alg")
        key: Any
        if alg == "HS256" and self.secret:
            key = self.secret
        elif alg in ASYMMETRIC and self.jwks is not None:
            jwk = await self.jwks.key(header.get("kid"))
            if jwk.algorithm_name != alg:
                raise Unauthorized("the token's algorithm does not match its key")
            key = jwk
        else:
            raise Unauthorized(f"tokens signed with {alg!r} are not accepted here")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=AUDIENCE,
                issuer=self.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "sub", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the access token has expired") from None
        except jwt.InvalidAudienceError:
            raise Unauthorized(f"the access token is not for {AUDIENCE!r} users") from None
        except jwt.InvalidIssuerError:
            raise Unauthorized("the access token is from another project") from None
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"the access token is not valid ({type(exc).__name__})") from None
        try:
            user_id = UUID(str(claims["sub"]))
        except ValueError:
            raise Unauthorized("the access token's subject is not a user id") from None
        if user_id == LOCAL_USER_ID:  # owns everything older than accounts: no token may be it
            raise Unauthorized("the access token's subject is reserved")
        await self._remember(pool, user_id, claims)
        return Caller(user_id, "token")

    async def _remember(self, pool: Pool, user_id: UUID, claims: dict[str, Any]) -> None:
        """Create the user on first sight. Done on every request, not remembered in the
        process: a user deleted meanwhile (with everything they owned) comes back as new
        instead of failing the request."""
        email = claims.get("email") if isinstance(claims.get("email"), str) else None
        phone = claims.get("phone") if isinstance(claims.get("phone"), str) else None
        async with pool.connection() as conn:
            await store.ensure_user(conn, user_id, email=email or None, phone=phone or None)
