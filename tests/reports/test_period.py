"""Periods as secretaries type them, and the period before (for the trend sentence)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from bot.reports.period import parse_period, parse_report_args, previous_period

TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)  # Wednesday 11:00 in Shanghai


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=TZ).astimezone(UTC)


@pytest.mark.parametrize(("text", "start", "end", "label"), [
    ("本周", utc(2026, 11, 23), utc(2026, 11, 30), "本周"),
    ("上周", utc(2026, 11, 16), utc(2026, 11, 23), "上周"),
    ("本月", utc(2026, 11, 1), utc(2026, 12, 1), "本月"),
    ("上月", utc(2026, 10, 1), utc(2026, 11, 1), "上月"),
    ("最近4周", utc(2026, 11, 2), utc(2026, 11, 30), "最近4周"),
    ("2026-02", utc(2026, 2, 1), utc(2026, 3, 1), "2026年2月"),
    ("2026年12月", utc(2026, 12, 1), utc(2027, 1, 1), "2026年12月"),
    ("2026-11-01~2026-11-15", utc(2026, 11, 1), utc(2026, 11, 16), "2026-11-01至2026-11-15"),
    ("2026年11月1日至2026年11月15日", utc(2026, 11, 1), utc(2026, 11, 16), "2026-11-01至2026-11-15"),
])
def test_words_and_ranges(text, start, end, label):
    p = parse_period(text, now=NOW, tz=TZ)
    assert p is not None and (p.start, p.end, p.label, p.round_id) == (start, end, label, None)


def test_rounds_and_non_periods():
    p = parse_period("第12轮", now=NOW, tz=TZ)
    assert p is not None and p.round_id == 12 and p.label == "第12轮"
    for text in ("第三支部", "2026-13", "2026-11-30~2026-11-01", "最近0周", "明年", "2026-02-30~2026-03-01"):
        assert parse_period(text, now=NOW, tz=TZ) is None, text


def test_report_arguments_split_into_organisation_and_period():
    assert parse_report_args("第三支部 本月", now=NOW, tz=TZ)[0] == ["第三支部"]
    words, p = parse_report_args("机关党委/第三支部 2026-11-01 至 2026-11-15", now=NOW, tz=TZ)
    assert words == ["机关党委/第三支部"] and p is not None and p.end == utc(2026, 11, 16)
    assert parse_report_args("本轮", now=NOW, tz=TZ) == ([], None)  # the caller picks the latest round
    assert parse_report_args("", now=NOW, tz=TZ) == ([], None)


def test_previous_period_and_description():
    month = parse_period("本月", now=NOW, tz=TZ)
    prev = previous_period(month, TZ)
    assert (prev.start, prev.end) == (utc(2026, 10, 1), utc(2026, 11, 1))  # October has 31 days
    week = previous_period(parse_period("本周", now=NOW, tz=TZ), TZ)
    assert (week.start, week.end) == (utc(2026, 11, 16), utc(2026, 11, 23))
    assert previous_period(parse_period("全部", now=NOW, tz=TZ), TZ) is None
    assert previous_period(parse_period("第3轮", now=NOW, tz=TZ), TZ) is None
    assert month.describe(TZ) == "本月（2026年11月1日至11月30日）"
