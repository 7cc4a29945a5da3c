"""Encryption at rest for credentials: Fernet (AES-128-CBC + HMAC-SHA256, from ``cryptography``)
with key rotation through ``MultiFernet``.

``CREDENTIALS_KEY`` holds one Fernet key, or several separated by commas: the first encrypts,
every one decrypts, so a new key goes first and the old ones stay until ``wf credentials
rotate-key`` has re-encrypted everything with the new one. A key is 32 url-safe base64-encoded
bytes; ``wf credentials new-key`` prints a fresh one.
Source: https://cryptography.io/en/latest/fernet/#cryptography.fernet.MultiFernet
"""

from __future__ import annotations

import json
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pydantic import SecretStr

NEW_KEY_HINT = (
    "set CREDENTIALS_KEY to a Fernet key to store credentials; make one with "
    "`wf credentials new-key` and keep it secret (losing it loses every stored credential)"
)


class VaultNotConfigured(Exception):
    """No ``CREDENTIALS_KEY`` is set: credentials can be neither stored nor read."""


class Unreadable(Exception):
    """A stored secret does not decrypt with any configured key (its key was dropped from
    ``CREDENTIALS_KEY``) or was altered."""


def parse_keys(value: str) -> list[Fernet]:
    """The Fernet keys in a comma-separated ``CREDENTIALS_KEY``, first one first.

    Raises:
        ValueError: a part is not a Fernet key (32 url-safe base64-encoded bytes), or none given.
    """
    parts = [part.strip() for part in value.split(",") if part.strip()]
    if not parts:
        raise ValueError("CREDENTIALS_KEY is empty")
    keys = []
    for position, part in enumerate(parts, start=1):
        try:
            keys.append(Fernet(part))
        except (ValueError, TypeError):
            raise ValueError(
                f"CREDENTIALS_KEY key {position} is not a Fernet key (32 url-safe base64 bytes); "
                "make one with `wf credentials new-key`"
            ) from None
    return keys


def new_key() -> str:
    """A fresh random Fernet key, as text."""
    return Fernet.generate_key().decode()


class Vault:
    """Encrypts and decrypts credential data with the configured keys.

    Args:
        keys: ``CREDENTIALS_KEY`` (None: not configured; every call raises VaultNotConfigured).
    """

    def __init__(self, keys: SecretStr | None) -> None:
        self._fernet = None if keys is None else MultiFernet(parse_keys(keys.get_secret_value()))

    @property
    def configured(self) -> bool:
        """True when a key is set."""
        return self._fernet is not None

    def _require(self) -> MultiFernet:
        if self._fernet is None:
            raise VaultNotConfigured(NEW_KEY_HINT)
        return self._fernet

    def encrypt(self, data: dict[str, Any]) -> str:
        """A Fernet token (text) of ``data`` as JSON, under the first key.

        Raises:
            VaultNotConfigured: no key.
        """
        plain = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
        return self._require().encrypt(plain).decode()

    def decrypt(self, token: str) -> dict[str, Any]:
        """The data a token holds.

        Raises:
            VaultNotConfigured: no key. Unreadable: no key decrypts it.
        """
        try:
            plain = self._require().decrypt(token.encode())
        except InvalidToken:
            raise Unreadable("the credential does not decrypt with any CREDENTIALS_KEY") from None
        data = json.loads(plain)
        assert isinstance(data, dict)
        return data

    def rotate(self, token: str) -> str:
        """The token re-encrypted under the first key (its timestamp kept).

        Raises:
            VaultNotConfigured: no key. Unreadable: no key decrypts it.
        """
        try:
            return self._require().rotate(token.encode()).decode()
        except InvalidToken:
            raise Unreadable("the credential does not decrypt with any CREDENTIALS_KEY") from None
