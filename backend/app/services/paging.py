"""Keyset pagination cursors for lists ordered newest first on ``(time, id)``."""

from __future__ import annotations

import base64
from datetime import datetime
from uuid import UUID

from backend.app.errors import ValidationFailed


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
