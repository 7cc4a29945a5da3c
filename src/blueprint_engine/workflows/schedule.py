"""Cron arithmetic for schedule triggers (croniter), time-zone aware."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from croniter import croniter


def next_fire_time(cron: str, timezone: str, after: datetime) -> datetime:
    """The first time strictly after ``after`` that ``cron`` matches in ``timezone``, in UTC.

    Five fields are minute hour day month weekday; a sixth field is seconds.

    Raises:
        ValueError: invalid expression (the blueprint validator rejects those first).
    """
    local = after.astimezone(ZoneInfo(timezone))
    upcoming: datetime = croniter(cron, local).get_next(datetime)
    return upcoming.astimezone(UTC)
