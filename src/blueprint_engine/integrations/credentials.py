"""Credential types: what a connection holds, declared by the tools that use it.

A tool lists the types it accepts in ``BaseTool.credential_types``; each type is a Pydantic model
(a :class:`CredentialData`) whose secret fields are ``SecretStr``, so ``POST /credentials``
validates ``data`` per type and nothing prints a secret by accident. The vault stores the model
encrypted (:mod:`blueprint_engine.store.vault`); a step gets it decrypted as a
:class:`Credential` in its :class:`~blueprint_engine.integrations.base.ToolContext`, and nowhere
else. One type is no tool's: :class:`WebhookSecretCredential`, the secret a webhook trigger
checks request signatures with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr

#: Where a credential's secret value is shown masked, this many trailing characters are kept,
#: and only for secrets at least :data:`_HINT_MIN_LENGTH` long (a short one shows none).
_HINT_TAIL = 4
_HINT_MIN_LENGTH = 16


class CredentialData(BaseModel):
    """Base of credential types. Subclasses set ``kind`` (the ``type`` users name, e.g.
    ``razorpay``), ``label`` and their fields; secret fields are ``SecretStr``.

    ``identity`` lists the fields that are not secret and tell connections apart (a key id, a
    sender number); they appear in the masked hint.
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    kind: ClassVar[str]
    label: ClassVar[str]
    identity: ClassVar[tuple[str, ...]] = ()

    def secrets(self) -> list[str]:
        """The plain values of the secret fields (for the vault and the step's redactor)."""
        return [
            value.get_secret_value()
            for value in (getattr(self, name) for name in type(self).model_fields)
            if isinstance(value, SecretStr) and value.get_secret_value()
        ]

    def plain(self) -> dict[str, Any]:
        """Every field as a JSON value (URLs as text), secrets revealed: what the vault
        encrypts, and what :meth:`model_validate` takes back."""
        data: dict[str, Any] = self.model_dump(mode="json")
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                data[name] = value.get_secret_value()
        return data

    def hint(self) -> str:
        """A masked description for listings: the identity fields and, for a long secret, its
        last four characters (``rzp_test_AbC · ••••wXyZ``). Never the secret itself."""
        parts = [str(getattr(self, name)) for name in self.identity if getattr(self, name)]
        secrets = self.secrets()
        if secrets:
            last = secrets[0]
            tail = last[-_HINT_TAIL:] if len(last) >= _HINT_MIN_LENGTH else ""
            parts.append("••••" + tail)
        return " · ".join(parts)


class WebhookSecretCredential(CredentialData):
    """The shared secret a webhook trigger (its ``credential``) verifies request signatures
    with: HMAC-SHA256 of the raw body, hex, in the trigger's ``signature_header``."""

    kind: ClassVar[str] = "webhook_secret"
    label: ClassVar[str] = "Webhook signing secret"

    secret: SecretStr = Field(
        min_length=16,
        max_length=512,
        description="What the sender signs with (at least 16 characters; e.g. the output of "
        "openssl rand -hex 32).",
    )


@dataclass(frozen=True)
class Credential:
    """A step's credential: the node's ``credential`` name, its type and, when the step really
    calls out, its decrypted data (``None`` in sandbox mode and dry runs, where only the
    reference is shown).
    """

    name: str
    kind: str | None = None
    data: CredentialData | None = None

    def secrets(self) -> list[str]:
        """The decrypted secret values, for the step's redactor (none without data)."""
        return [] if self.data is None else self.data.secrets()


class CredentialUnavailable(Exception):
    """A step's credential cannot be used: ``code`` is ``credential_missing``,
    ``credential_type`` (the tool takes another type), ``credentials_key_missing`` (no
    ``CREDENTIALS_KEY``) or ``credential_unreadable`` (no configured key decrypts it)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
