"""Keyset pagination cursors for lists ordered newest first on ``(time, id)``."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from blueprint_engine.errors import ValidationFailed


def encode_cursor(at: datetime, ident: UUID) -> str:
    """The opaque cursor of the page after the row ``(at, ident)``."""
    return base64.urlsafe_b64encode(f"{at.isoformat()}|{ident}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    """``(at, ident)`` of a cursor from :func:`encode_cursor`.

    Raises:
        ValidationFailed: 422 at ``["query", "cursor"]``, not a cursor this API returned.
    """
    try:
        at, ident = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        return datetime.fromisoformat(at), UUID(ident)
    except (ValueError, UnicodeDecodeError):
        raise ValidationFailed(["query", "cursor"], "not a cursor this API returned") from None


def page_of(rows: Sequence[Mapping[str, Any]], limit: int, at: str, name: str) -> dict[str, Any]:
    """``{name: the first limit rows, "next_cursor": str | None}`` from ``limit + 1`` rows
    fetched newest first on ``(row[at], row["id"])``; a cursor only when there is more."""
    page = [dict(row) for row in rows[:limit]]
    more = len(rows) > limit
    return {
        name: page,
        "next_cursor": encode_cursor(page[-1][at], page[-1]["id"]) if more else None,
    }
