"""How a node kind is drafted: the fields the architect's chat model writes for it.

The architect's model answers in OpenAI's strict structured-output mode, where each node is one
flat object holding every kind's fields (those of other kinds null) and no value may be a
free-form object: such a value travels as a JSON string in a field named ``<field>_json``. A
kind declares its fields (:attr:`NodeKind.draft_fields <.base.NodeKind.draft_fields>`) and
turns the model's values back into its blueprint fields
(:meth:`NodeKind.from_draft <.base.NodeKind.from_draft>`); the architect builds its answer
schema and prompt from every kind's declarations (:mod:`blueprint_engine.agents.draft_format`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

#: Suffix of a draft field whose string holds JSON (``params_json``: the node's ``params``).
JSON_SUFFIX = "_json"


@dataclass(frozen=True)
class DraftField:
    """One field of a kind's draft.

    Attributes:
        annotation: its type as the model writes it: ``str``, ``int``, ``bool``, a ``Literal``,
            a blueprint model or a list of one (the architect gives the model a strict copy:
            every field required, no defaults or constraints); the draft makes it nullable. A field
            named ``<name>_json`` is a ``str`` holding JSON.
        description: what to write, for the model (the description in its answer schema).
        to: the blueprint field it fills, dotted for a nested one (``workflow.workflow_id``);
            default: its own name without ``_json``.
    """

    annotation: Any
    description: str
    to: str | None = None

    def target(self, name: str) -> list[str]:
        """The path of the blueprint field that draft field ``name`` fills."""
        if self.to is not None:
            return self.to.split(".")
        return [name.removesuffix(JSON_SUFFIX)]


class DraftValues:
    """One node of the model's flat draft, as its kind reads it.

    Args:
        values: the node's draft fields (``{name: value}``; nested models already dumped).

    Attributes:
        problems: ``(draft field, message)`` for values the blueprint's validator cannot see
            (JSON that does not parse); the architect sends them back to the model.
    """

    def __init__(self, values: Mapping[str, Any]) -> None:
        self.values = values
        self.problems: list[tuple[str, str]] = []

    def get(self, name: str) -> Any:
        """The value of draft field ``name``: a ``_json`` one parsed (None when null, blank or
        not JSON, which is recorded in :attr:`problems`)."""
        value = self.values.get(name)
        if isinstance(value, BaseModel):
            value = value.model_dump()
        if not name.endswith(JSON_SUFFIX) or value is None:
            return value
        if not isinstance(value, str) or not value.strip():
            return None
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            self.problems.append((name, f"not valid JSON: {exc.msg}"))
            return None

    def fill(self, fields: Mapping[str, DraftField]) -> dict[str, Any]:
        """The blueprint fields that ``fields`` give: each value that is not null, at its
        target (nested targets make nested objects)."""
        node: dict[str, Any] = {}
        for name, declared in fields.items():
            value = self.get(name)
            if value is None:
                continue
            *parents, leaf = declared.target(name)
            into = node
            for key in parents:
                into = into.setdefault(key, {})
            into[leaf] = value
        return node
