"""The runners' :class:`~blueprint_engine.workflows.engine.CredentialSource`: a run owner's
credentials from the ``credentials`` table, decrypted with the vault inside the step that uses
them and nowhere else."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from uuid import UUID

from pydantic import ValidationError

from blueprint_engine.integrations.credentials import (
    Credential,
    CredentialData,
    CredentialUnavailable,
)
from blueprint_engine.store import credentials as store
from blueprint_engine.store.db import Conn
from blueprint_engine.store.vault import Unreadable, Vault, VaultNotConfigured


class StoredCredentials:
    """One owner's credentials.

    Args:
        connect: opens (or lends) a database connection: ``pool.connection``.
        vault: decrypts the stored tokens.
        owner: the run's owner; a node can name only its owner's credentials.
    """

    def __init__(
        self,
        connect: Callable[[], AbstractAsyncContextManager[Conn]],
        vault: Vault,
        owner: UUID,
    ) -> None:
        self._connect = connect
        self._vault = vault
        self._owner = owner

    async def load(self, name: str, accepted: tuple[type[CredentialData], ...]) -> Credential:
        """The owner's credential ``name`` decrypted, as whichever of ``accepted`` its type is.

        Raises:
            CredentialUnavailable: ``credential_missing``, ``credential_type``,
                ``credentials_key_missing``, ``credential_unreadable`` or ``credential_invalid``
                (saved under rules the type no longer accepts).
        """
        async with self._connect() as conn:
            row = await store.secret_by_name(conn, self._owner, name)
        if row is None:
            raise CredentialUnavailable(
                "credential_missing",
                f"credential '{name}' does not exist; create it with POST /credentials",
            )
        kind = row["type"]
        model = next((m for m in accepted if m.kind == kind), None)
        if model is None:
            wanted = ", ".join(m.kind for m in accepted) or "none"
            raise CredentialUnavailable(
                "credential_type",
                f"credential '{name}' is of type {kind}; this step takes {wanted}",
            )
        try:
            plain = self._vault.decrypt(row["secret"])
        except VaultNotConfigured as exc:
            raise CredentialUnavailable("credentials_key_missing", str(exc)) from None
        except Unreadable as exc:
            raise CredentialUnavailable(
                "credential_unreadable", f"credential '{name}': {exc}"
            ) from None
        try:
            data = model.model_validate(plain)
        except ValidationError:  # the message would quote the values: say which type instead
            raise CredentialUnavailable(
                "credential_invalid",
                f"credential '{name}' no longer fits the {kind} type; "
                f"update it with PUT /credentials/{name}",
            ) from None
        return Credential(name, kind, data)
