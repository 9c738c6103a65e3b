"""Report periods as words secretaries type.

本周 / 上周 / 本月 / 上月 / 最近N周 / 全部 / 2026-11 / 2026-11-01~2026-11-30 / 第12轮.
A period selects rounds by the time they opened, so a round belongs to exactly one period
however late its answers came in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo


@dataclass(frozen=True)
class Period:
    start: datetime  # inclusive, UTC
    end: datetime  # exclusive, UTC
    label: str
    round_id: int | None = None  # set: exactly this round (start/end then only bound it loosely)

    @property
    def is_open_ended(self) -> bool:
        """累计: everything so far; there is no earlier period to compare with."""
        return self.start <= EPOCH

    def local_dates(self, tz: ZoneInfo) -> tuple[date, date]:
        """First and last local day covered (the end is exclusive, so step back a moment)."""
        return self.start.astimezone(tz).date(), (self.end - timedelta(microseconds=1)).astimezone(tz).date()

    def describe(self, tz: ZoneInfo) -> str:
        if self.round_id is not None or self.is_open_ended:
            return self.label
        first, last = self.local_dates(tz)
        if first == last:
            return f"{self.label}（{first.year}年{first.month}月{first.day}日）"
        tail = f"{last.month}月{last.day}日" if last.year == first.year else f"{last.year}年{last.month}月{last.day}日"
        return f"{self.label}（{first.year}年{first.month}月{first.day}日至{tail}）"


EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_FAR = datetime(9999, 1, 1, tzinfo=UTC)
_EPOCH = EPOCH  # older name, kept for importers

# Words meaning "the latest round" (the default when no period is given).
LATEST_ROUND_WORDS = ("本轮", "最近一轮", "最新一轮")


def _local_midnight(d: datetime, tz: ZoneInfo) -> datetime:
    return d.astimezone(tz).replace(hour=0, minute=0, second=0, microsecond=0)


def _month_start(year: int, month: int, tz: ZoneInfo) -> datetime:
    return datetime(year, month, 1, tzinfo=tz)


def _add_months(d: datetime, months: int, tz: ZoneInfo) -> datetime:
    index = d.year * 12 + (d.month - 1) + months
    return _month_start(index // 12, index % 12 + 1, tz)


def round_period(round_id: int, label: str | None = None) -> Period:
    return Period(EPOCH, _FAR, label or f"第{round_id}轮", round_id=round_id)


_DATE = r"(\d{4})[-/.年](\d{1,2})[-/.月](\d{1,2})日?"


def _parse_date(y: str, m: str, d: str) -> date | None:
    try:
        return date(int(y), int(m), int(d))
    except ValueError:
        return None


def parse_period(text: str, *, now: datetime, tz: ZoneInfo) -> Period | None:
    """None when `text` is not a period (callers then treat it as something else)."""
    t = text.strip().replace(" ", "")
    today = _local_midnight(now, tz)
    week_start = today - timedelta(days=today.weekday())
    month_start = today.replace(day=1)
    if t in ("本周", "这周"):
        return Period(week_start.astimezone(UTC), (week_start + timedelta(days=7)).astimezone(UTC), "本周")
    if t == "上周":
        return Period((week_start - timedelta(days=7)).astimezone(UTC), week_start.astimezone(UTC), "上周")
    if t in ("本月", "这个月"):
        return Period(month_start.astimezone(UTC), _add_months(month_start, 1, tz).astimezone(UTC), "本月")
    if t == "上月":
        return Period(_add_months(month_start, -1, tz).astimezone(UTC), month_start.astimezone(UTC), "上月")
    if t in ("全部", "累计", "所有"):
        return Period(EPOCH, now + timedelta(days=1), "累计")
    if m := re.fullmatch(r"最近(\d{1,2})周", t):
        weeks = int(m.group(1))
        if weeks < 1:
            return None
        return Period((week_start - timedelta(days=7 * (weeks - 1))).astimezone(UTC),
                      (week_start + timedelta(days=7)).astimezone(UTC), f"最近{weeks}周")
    if m := re.fullmatch(r"第(\d{1,9})轮", t):
        return round_period(int(m.group(1)))
    if m := re.fullmatch(_DATE + r"(?:~|～|至|到|-|—|\.\.)" + _DATE, t):
        first, last = _parse_date(*m.groups()[:3]), _parse_date(*m.groups()[3:])
        if first is None or last is None or last < first:
            return None
        start = datetime(first.year, first.month, first.day, tzinfo=tz)
        end = datetime(last.year, last.month, last.day, tzinfo=tz) + timedelta(days=1)
        label = f"{first:%Y-%m-%d}至{last:%Y-%m-%d}"
        return Period(start.astimezone(UTC), end.astimezone(UTC), label)
    if m := re.fullmatch(r"(\d{4})[-/年](\d{1,2})月?", t):
        year, month = int(m.group(1)), int(m.group(2))
        if 1 <= month <= 12:
            start = _month_start(year, month, tz)
            return Period(start.astimezone(UTC), _add_months(start, 1, tz).astimezone(UTC), f"{year}年{month}月")
    return None


def parse_report_args(args: str, *, now: datetime, tz: ZoneInfo) -> tuple[list[str], Period | None]:
    """Split '/report 第三支部 本月' into the words that are not a period, and the period.

    A date range may be typed with spaces ('2026-11-01 至 2026-11-30'): the whole remainder is
    tried as a period before the words one by one. Latest-round words give no period (the
    caller's default is the latest round).
    """
    words = args.split()
    for cut in range(len(words)):
        tail = "".join(words[cut:])
        if cut < len(words) - 1 and (p := parse_period(tail, now=now, tz=tz)):
            return words[:cut], p
    rest: list[str] = []
    period: Period | None = None
    for word in words:
        if word in LATEST_ROUND_WORDS:
            continue
        parsed = parse_period(word, now=now, tz=tz)
        if parsed:
            period = parsed
        else:
            rest.append(word)
    return rest, period


def previous_period(period: Period, tz: ZoneInfo) -> Period | None:
    """The period just before, for 'trend versus the previous period'.

    Calendar months step back by whole months; other spans by their own length. Rounds and
    累计 have no calendar predecessor (a round's predecessor is found in the database).
    """
    if period.round_id is not None or period.is_open_ended:
        return None
    start_local, end_local = period.start.astimezone(tz), period.end.astimezone(tz)
    if start_local == _local_midnight(start_local, tz) and start_local.day == 1 \
            and end_local == _local_midnight(end_local, tz) and end_local.day == 1:
        months = (end_local.year - start_local.year) * 12 + end_local.month - start_local.month
        if months > 0:
            prev_start = _add_months(start_local, -months, tz)
            return replace(period, start=prev_start.astimezone(UTC), end=period.start, label="上期")
    length = period.end - period.start
    return replace(period, start=period.start - length, end=period.start, label="上期")
