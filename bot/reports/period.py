"""Report periods as words secretaries type: 本周 / 上周 / 本月 / 上月 / 最近N周 / 全部 / 2026-11."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo


@dataclass(frozen=True)
class Period:
    start: datetime  # inclusive, UTC
    end: datetime  # exclusive, UTC
    label: str


_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def _local_midnight(d: datetime, tz: ZoneInfo) -> datetime:
    return d.astimezone(tz).replace(hour=0, minute=0, second=0, microsecond=0)


def parse_period(text: str, *, now: datetime, tz: ZoneInfo) -> Period | None:
    """None when `text` is not a period (callers then treat it as something else)."""
    t = text.strip()
    today = _local_midnight(now, tz)
    week_start = today - timedelta(days=today.weekday())
    month_start = today.replace(day=1)
    if t in ("本周", "这周"):
        return Period(week_start.astimezone(UTC), (week_start + timedelta(days=7)).astimezone(UTC), "本周")
    if t == "上周":
        return Period((week_start - timedelta(days=7)).astimezone(UTC), week_start.astimezone(UTC), "上周")
    if t in ("本月", "这个月"):
        nxt = (month_start + timedelta(days=32)).replace(day=1)
        return Period(month_start.astimezone(UTC), nxt.astimezone(UTC), "本月")
    if t == "上月":
        prev = (month_start - timedelta(days=1)).replace(day=1)
        return Period(prev.astimezone(UTC), month_start.astimezone(UTC), "上月")
    if t in ("全部", "累计", "所有"):
        return Period(_EPOCH, now + timedelta(days=1), "累计")
    if m := re.fullmatch(r"最近(\d{1,2})周", t):
        weeks = int(m.group(1))
        return Period((week_start - timedelta(days=7 * (weeks - 1))).astimezone(UTC),
                      (week_start + timedelta(days=7)).astimezone(UTC), f"最近{weeks}周")
    if m := re.fullmatch(r"(\d{4})-(\d{1,2})", t):
        year, month = int(m.group(1)), int(m.group(2))
        if 1 <= month <= 12:
            start = datetime(year, month, 1, tzinfo=tz)
            nxt = (start + timedelta(days=32)).replace(day=1)
            return Period(start.astimezone(UTC), nxt.astimezone(UTC), f"{year}年{month}月")
    return None
