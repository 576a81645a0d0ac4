"""Date groups and short times for the sidebar lists, in the browser's time zone (pure functions)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Callable, Iterable, Optional, TypeVar

R = TypeVar("R")

# In list order; "week" and "month" are the previous 7 and 30 days before yesterday.
GROUPS = ("today", "yesterday", "week", "month", "older")
MAX_OFFSET_MINUTES = 14 * 60  # UTC-12 … UTC+14 are the zones that exist


def zone(offset_minutes: Optional[float]) -> Optional[timezone]:
    """The fixed zone `offset_minutes` east of UTC; None (the server's own zone) when unknown or absurd."""
    try:
        minutes = int(offset_minutes)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return None
    return timezone(timedelta(minutes=minutes)) if abs(minutes) <= MAX_OFFSET_MINUTES else None


def _local(ts: float, tz: Optional[timezone]) -> datetime:
    return datetime.fromtimestamp(ts, tz) if tz else datetime.fromtimestamp(ts)


def date_group(ts: float, now: float, offset_minutes: Optional[float] = None) -> str:
    """Which of GROUPS a row updated at `ts` falls in, seen at `now` (calendar days in that zone)."""
    tz = zone(offset_minutes)
    days = (_local(now, tz).date() - _local(ts, tz).date()).days
    if days <= 0:  # today, or a clock that ran ahead
        return "today"
    if days == 1:
        return "yesterday"
    return "week" if days <= 7 else ("month" if days <= 30 else "older")


def short_when(ts: float, now: float, offset_minutes: Optional[float] = None) -> str:
    """A short, language-neutral stamp: 14:05 for today and yesterday, 11-28 this year, else 2025-11-28."""
    tz = zone(offset_minutes)
    when, today = _local(ts, tz), _local(now, tz)
    if (today.date() - when.date()).days <= 1:
        return when.strftime("%H:%M")
    return when.strftime("%m-%d" if when.year == today.year else "%Y-%m-%d")


def grouped(rows: Iterable[R], now: float, offset_minutes: Optional[float] = None,
            stamp: Callable[[R], float] = lambda r: r.updated) -> list[tuple[str, list[R]]]:
    """`rows` (newest first) as (group, rows) pairs in GROUPS order, empty groups left out."""
    groups: dict[str, list[R]] = {g: [] for g in GROUPS}
    for row in rows:
        groups[date_group(stamp(row), now, offset_minutes)].append(row)
    return [(g, items) for g, items in groups.items() if items]
