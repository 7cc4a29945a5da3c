"""Credentials (connections): a user's vendor secrets, stored encrypted, named by blueprints.

``data`` is validated by the type's model (declared by the tool that uses it), encrypted with
the vault, and never returned: listings show a masked hint. Blueprints name a credential in an
action node's ``credential`` (or a webhook trigger's, its signing secret);
:func:`check_references` makes sure each exists, is the caller's and has a type the node takes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar
from uuid import UUID

from pydantic import ValidationError

from blueprint_engine.config import Settings
from blueprint_engine.errors import (
    Conflict,
    InvalidBlueprint,
    NotConfigured,
    NotFound,
    ValidationFailed,
)
from blueprint_engine.integrations import (
    CREDENTIAL_TYPES,
    TRIGGER_CREDENTIAL_TYPES,
    BaseTool,
    public_tools,
)
from blueprint_engine.integrations.credentials import CredentialData
from blueprint_engine.store import credentials as store
from blueprint_engine.store.db import Conn, Pool
from blueprint_engine.store.vault import NEW_KEY_HINT, Unreadable, Vault
from blueprint_engine.workflows.nodes import ActionNode, WebhookTrigger
from blueprint_engine.workflows.schema import Blueprint

CredentialDataT = TypeVar("CredentialDataT", bound=CredentialData)


def _vault(settings: Settings) -> Vault:
    """The vault, or a 503 that says how to configure it.

    Raises:
        NotConfigured: ``credentials_key_missing`` when ``CREDENTIALS_KEY`` is unset.
    """
    vault = Vault(settings.credentials_key)
    if not vault.configured:
        raise NotConfigured(NEW_KEY_HINT, code="credentials_key_missing")
    return vault


def parse_data(kind: str, data: Any) -> CredentialData:
    """``data`` as the model of credential type ``kind``.

    Raises:
        ValidationFailed: 422, unknown type (``loc: [body, type]``) or data the type refuses
            (``loc: [body, data, field]``). Messages never quote the submitted values.
    """
    model = CREDENTIAL_TYPES.get(kind)
    if model is None:
        known = ", ".join(sorted(CREDENTIAL_TYPES))
        raise ValidationFailed(
            ["body", "type"], f"unknown credential type {kind!r}; one of {known}"
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        problems: list[dict[str, Any]] = [
            {"loc": ["body", "data", *err["loc"]], "message": err["msg"]} for err in errors
        ]
        first_loc: list[str | int] = ["body", "data", *errors[0]["loc"]]
        raise ValidationFailed(first_loc, errors[0]["msg"], more=problems[1:]) from None


#: Where a provider posts to reach its credential's owner: razorpay webhooks, twilio's
#: inbound WhatsApp messages.
_WEBHOOK_PATHS = {"razorpay": "/webhooks/razorpay/{id}", "twilio": "/whatsapp/{id}"}


def _public(row: Any, settings: Settings) -> dict[str, Any]:
    """A listing row, with the URL the provider should post to for this credential."""
    out = dict(row)
    path = _WEBHOOK_PATHS.get(row["type"])
    if path is not None:
        out["webhook_url"] = settings.public_base_url.rstrip("/") + path.format(id=row["id"])
    return out


async def create(
    pool: Pool, settings: Settings, owner: UUID, *, name: str, kind: str, data: Any
) -> dict[str, Any]:
    """Validate, encrypt and store a new credential of ``owner``.

    Returns:
        ``{id, name, type, hint, created_at, updated_at, last_used_at, webhook_url?}``.

    Raises:
        ValidationFailed: 422 (see :func:`parse_data`). NotConfigured: 503
        ``credentials_key_missing``. Conflict: 409 ``credential_exists``.
    """
    parsed = parse_data(kind, data)
    secret = _vault(settings).encrypt(parsed.plain())
    async with pool.connection() as conn:
        row = await store.create(
            conn, owner, name=name, kind=kind, secret=secret, hint=parsed.hint()
        )
    if row is None:
        raise Conflict(
            f"you already have a credential named '{name}'; PUT /credentials/{name} replaces "
            "its data",
            code="credential_exists",
        )
    return _public(row, settings)


async def replace(
    pool: Pool, settings: Settings, owner: UUID, name: str, *, data: Any
) -> dict[str, Any]:
    """Rotate: put new data (same type) in the owner's credential ``name``; workflows that
    name it use the new data from their next step on.

    Raises:
        NotFound: 404. ValidationFailed: 422. NotConfigured: 503.
    """
    async with pool.connection() as conn:
        current = await store.get(conn, owner, name)
        if current is None:
            raise NotFound("credential", name)
        parsed = parse_data(current["type"], data)
        secret = _vault(settings).encrypt(parsed.plain())
        row = await store.replace_secret(conn, owner, name, secret=secret, hint=parsed.hint())
    if row is None:
        raise NotFound("credential", name)
    return _public(row, settings)


async def list_for(pool: Pool, settings: Settings, owner: UUID) -> list[dict[str, Any]]:
    """The owner's credentials (never their data), by name."""
    async with pool.connection() as conn:
        rows = await store.list_for(conn, owner)
    return [_public(row, settings) for row in rows]


async def delete(pool: Pool, owner: UUID, name: str) -> None:
    """Delete the owner's credential ``name``, unless an active workflow names it.

    Raises:
        Conflict: 409 ``credential_in_use``, ``details.workflows`` lists them (deactivate them
            or point them at another credential first). NotFound: 404.
    """
    async with pool.connection() as conn, conn.transaction():
        users = await store.users_of(conn, owner, name)
        if users:
            listed = ", ".join(f"'{row['name']}'" for row in users)
            raise Conflict(
                f"credential '{name}' is used by active workflow(s) {listed}; deactivate them "
                "or change their credential first",
                code="credential_in_use",
                details={"workflows": [{"id": str(r["id"]), "name": r["name"]} for r in users]},
            )
        if not await store.delete(conn, owner, name):
            raise NotFound("credential", name)


@dataclass(frozen=True)
class _Reference:
    """A node that names a credential: at ``loc`` (``["nodes", 2]``, or inside a loop's body
    ``["nodes", 2, "body", "nodes", 0]``), with the types it takes (None: its tool is unknown,
    which the blueprint's validation reports)."""

    loc: list[str | int]
    node_id: str
    name: str
    taker: str
    accepted: tuple[str, ...] | None


def _references(
    blueprint: Blueprint, registry: dict[str, BaseTool] | None = None
) -> list[_Reference]:
    """Every credential the blueprint names: an action's (its tool's types) and a webhook
    trigger's (:data:`TRIGGER_CREDENTIAL_TYPES`)."""
    tools = registry if registry is not None else public_tools()
    found = []
    for loc, node in blueprint.walk():
        if isinstance(node, ActionNode) and node.credential is not None:
            tool = tools.get(node.service)
            accepted = None if tool is None else tuple(m.kind for m in tool.credential_types)
            found.append(_Reference(loc, node.id, node.credential, node.service, accepted))
        elif isinstance(node, WebhookTrigger) and node.credential is not None:
            kinds = tuple(m.kind for m in TRIGGER_CREDENTIAL_TYPES.get(node.trigger, ()))
            taker = f"a {node.trigger} trigger"
            found.append(_Reference(loc, node.id, node.credential, taker, kinds))
    return found


async def check_references(
    conn: Conn, blueprint: Blueprint, owner: UUID, registry: dict[str, BaseTool] | None = None
) -> None:
    """Every credential the blueprint names exists, is ``owner``'s and has a type its node
    takes (an action's tool, a webhook trigger: ``webhook_secret``).

    Raises:
        InvalidBlueprint: 422, each problem at ``nodes.<i>.credential`` with the node id.
    """
    references = _references(blueprint, registry)
    if not references:
        return
    kinds = await store.kinds(conn, owner, sorted({ref.name for ref in references}))
    issues = []
    for ref in references:
        kind = kinds.get(ref.name)
        loc: list[str | int] = [*ref.loc, "credential"]
        if kind is None:
            issues.append(
                {
                    "loc": loc,
                    "node_id": ref.node_id,
                    "message": f"you have no credential named '{ref.name}'; create it "
                    "with POST /credentials",
                }
            )
        elif ref.accepted is not None and kind not in ref.accepted:
            wanted = ", ".join(ref.accepted) or "none"
            issues.append(
                {
                    "loc": loc,
                    "node_id": ref.node_id,
                    "message": f"credential '{ref.name}' is of type {kind}; "
                    f"{ref.taker} takes {wanted}",
                }
            )
    if issues:
        raise InvalidBlueprint(issues)


async def requirements(conn: Conn, blueprint: Blueprint, owner: UUID) -> list[dict[str, Any]]:
    """What a workflow needs: ``[{"name", "types": [accepted], "nodes": [ids], "present",
    "type": the stored one or null}]`` for each credential its blueprint names."""
    needed: dict[str, dict[str, Any]] = {}
    for ref in _references(blueprint):
        entry = needed.setdefault(ref.name, {"name": ref.name, "types": [], "nodes": []})
        entry["nodes"].append(ref.node_id)
        for kind in ref.accepted or ():
            if kind not in entry["types"]:
                entry["types"].append(kind)
    kinds = await store.kinds(conn, owner, sorted(needed))
    return [
        {**entry, "present": name in kinds, "type": kinds.get(name)}
        for name, entry in sorted(needed.items())
    ]


async def rotate_key(pool: Pool, settings: Settings, *, batch: int = 100) -> dict[str, int]:
    """Re-encrypt every stored credential under the first ``CREDENTIALS_KEY`` (after a new
    key was put first), a batch per transaction; once done, the old keys can be removed.

    Returns:
        ``{"rotated": n, "unreadable": n}``; unreadable tokens (no configured key opens them)
        are left as they are and counted.

    Raises:
        NotConfigured: 503 ``credentials_key_missing``.
    """
    vault = _vault(settings)
    rotated = unreadable = 0
    after: UUID | None = None
    while True:
        async with pool.connection() as conn, conn.transaction():
            rows = await store.page_of_secrets(conn, after, batch)
            for row in rows:
                try:
                    token = vault.rotate(row["secret"])
                except Unreadable:
                    unreadable += 1
                    continue
                await store.set_secret(conn, row["id"], token)
                rotated += 1
        if len(rows) < batch:
            return {"rotated": rotated, "unreadable": unreadable}
        after = rows[-1]["id"]


@dataclass(frozen=True)
class Addressed:
    """Whose credential a provider's webhook is addressed to (``/webhooks/razorpay/{id}``,
    ``/whatsapp/{id}``)."""

    id: UUID
    owner: UUID
    name: str


async def addressed(
    pool: Pool, settings: Settings, credential_id: UUID, model: type[CredentialDataT]
) -> tuple[Addressed, CredentialDataT]:
    """The credential ``credential_id`` of any owner, which must be of ``model``'s type.

    Raises:
        NotFound: 404, no credential of that type has this id. NotConfigured: 503
            ``credentials_key_missing``, or ``credential_unreadable`` (no configured key opens
            it, or it no longer fits its type).
    """
    async with pool.connection() as conn:
        row = await store.by_id(conn, credential_id)
    if row is None or row["type"] != model.kind:
        raise NotFound(f"{model.kind} credential", credential_id)
    try:
        data = model.model_validate(_vault(settings).decrypt(row["secret"]))
    except (Unreadable, ValidationError):
        raise NotConfigured(
            "this credential cannot be read with the configured CREDENTIALS_KEY",
            code="credential_unreadable",
        ) from None
    return Addressed(row["id"], row["owner_id"], row["name"]), data


async def owned(
    pool: Pool, settings: Settings, owner: UUID, name: str, model: type[CredentialDataT]
) -> CredentialDataT:
    """The owner's credential ``name``, decrypted as ``model`` (a webhook trigger's signing
    secret, about to check a delivery); its use is noted in ``last_used_at``.

    Raises:
        NotConfigured: 503 ``webhook_not_configured`` (no such credential, or of another
            type: it was saved as one, so it was changed since), ``credentials_key_missing``
            or ``credential_unreadable``.
    """
    async with pool.connection() as conn:
        row = await store.secret_by_name(conn, owner, name)
    if row is None or row["type"] != model.kind:
        raise NotConfigured(
            f"the {model.kind} credential this needs is missing or of another type",
            code="webhook_not_configured",
        )
    try:
        return model.model_validate(_vault(settings).decrypt(row["secret"]))
    except (Unreadable, ValidationError):
        raise NotConfigured(
            "this credential cannot be read with the configured CREDENTIALS_KEY",
            code="credential_unreadable",
        ) from None
