"""Schedule data and occurrence arithmetic, with explicit times (no clock, no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.storage.models import Organization, Round, Schedule
from scheduler.occurrences import cron_trigger, fire_times, occurrences
from scheduler.schedules import (
    ScheduleBook,
    ScheduleError,
    deadline_after,
    describe,
    in_quiet,
    parse_deadline,
    parse_weekdays,
    validate_spec,
)

SH = ZoneInfo("Asia/Shanghai")
BERLIN = ZoneInfo("Europe/Berlin")
LONG_AGO = datetime(2026, 1, 1, tzinfo=UTC)


def local(tz: ZoneInfo, *args: int) -> datetime:
    return datetime(*args, tzinfo=tz).astimezone(UTC)


def tree() -> tuple[Organization, Organization, Organization]:
    root = Organization(id=1, name="机关党委", path="/1/")
    b1 = Organization(id=2, name="第一支部", parent_id=1, path="/1/2/")
    b2 = Organization(id=3, name="第二支部", parent_id=1, path="/1/3/")
    return root, b1, b2


def row(id: int, org: Organization, kind: str, spec: dict, *, tz: str = "Asia/Shanghai", enabled: bool = True,
        updated_at: datetime = LONG_AGO, name: str = "") -> Schedule:
    return Schedule(id=id, org_id=org.id, kind=kind, name=name, spec=validate_spec(kind, spec).model_dump(mode="json"),
                    timezone=tz, enabled=enabled, created_at=updated_at, updated_at=updated_at)


def test_operator_spellings_are_understood_and_bad_ones_get_a_polite_message():
    assert parse_weekdays("周一，星期四") == "mon,thu"
    assert parse_weekdays("sun") == "sun"
    assert parse_deadline("周日 20:00") == "sun 20:00"
    assert parse_deadline("+36h") == "+36h" and parse_deadline("+6天") == "+6d"
    spec = validate_spec("weekly_round", {"day_of_week": "周一", "time": "9：00", "deadline": "星期日 20:00"})
    assert (spec.day_of_week, spec.time, spec.deadline) == ("mon", "09:00", "sun 20:00")
    assert describe("weekly_round", spec) == "周一 09:00 推送 默认题数，周日 20:00 截止"
    for kind, bad, words in [
        ("weekly_round", {"day_of_week": "周八"}, "无法识别的星期"),
        ("weekly_round", {"time": "25:00"}, "时间「25:00」格式不对"),
        ("weekly_round", {"items": 0}, "题目数量"),
        ("reminder", {"hours_before": [-1]}, "0–720"),
        ("nonsense", {}, "未知的计划类型"),
        ("quiet_hours", {"start": "22"}, "格式不对"),
        ("weekly_round", {"colour": "red"}, "colour"),
    ]:
        with pytest.raises(ScheduleError) as info:
            validate_spec(kind, bad)
        assert words in info.value.message, info.value.message


def test_deadline_is_the_next_such_local_time_after_opening():
    opens = local(SH, 2026, 11, 23, 9, 0)  # Monday
    assert deadline_after("sun 20:00", opens, SH) == local(SH, 2026, 11, 29, 20, 0)
    assert deadline_after("mon 08:00", opens, SH) == local(SH, 2026, 11, 30, 8, 0)  # not the past morning
    assert deadline_after("+36h", opens, SH) == opens + timedelta(hours=36)


def test_quiet_hours_wrap_midnight_and_end_on_local_time():
    q = validate_spec("quiet_hours", {})
    assert in_quiet(q, SH, local(SH, 2026, 11, 23, 21, 59)) is None
    assert in_quiet(q, SH, local(SH, 2026, 11, 23, 22, 0)) == local(SH, 2026, 11, 24, 7, 30)
    assert in_quiet(q, SH, local(SH, 2026, 11, 24, 3, 0)) == local(SH, 2026, 11, 24, 7, 30)
    assert in_quiet(q, SH, local(SH, 2026, 11, 24, 7, 30)) is None
    day = validate_spec("quiet_hours", {"start": "12:00", "end": "13:30"})  # a lunch break, not wrapping
    assert in_quiet(day, SH, local(SH, 2026, 11, 24, 12, 15)) == local(SH, 2026, 11, 24, 13, 30)


def test_weekly_cron_in_shanghai_fires_at_the_same_utc_instant_every_week():
    root, _, _ = tree()
    trig = cron_trigger(row(1, root, "weekly_round", {"day_of_week": "mon", "time": "09:00"}))
    fires = fire_times(trig, local(SH, 2026, 3, 1, 0, 0), local(SH, 2026, 11, 30, 23, 0))
    assert len(fires) == 40  # every Monday from 2 March to 30 November
    assert {(f.weekday(), f.hour, f.minute) for f in fires} == {(0, 1, 0)}  # 09:00 CST is 01:00 UTC all year


def test_weekly_cron_in_berlin_keeps_local_nine_oclock_across_the_dst_change():
    root, _, _ = tree()
    trig = cron_trigger(row(1, root, "weekly_round", {"day_of_week": "mon", "time": "09:00"}, tz="Europe/Berlin"))
    fires = fire_times(trig, local(BERLIN, 2026, 10, 12, 0, 0), local(BERLIN, 2026, 11, 3, 0, 0))
    assert [f.astimezone(BERLIN).strftime("%m-%d %H:%M") for f in fires] == [
        "10-12 09:00", "10-19 09:00", "10-26 09:00", "11-02 09:00"]
    assert [f.hour for f in fires] == [7, 7, 8, 8]  # UTC offset changes on 25 October


def test_inheritance_overrides_and_exclusions():
    root, b1, b2 = tree()
    weekly = row(1, root, "weekly_round", {"day_of_week": "mon", "time": "09:00"})
    own = row(2, b2, "weekly_round", {"day_of_week": "tue", "time": "10:00"})
    off = row(3, b1, "reminder", {}, enabled=False)
    book = ScheduleBook([root, b1, b2], [weekly, own, off], "Asia/Shanghai")
    assert book.effective(b1.id, "weekly_round").row is weekly  # inherited
    assert book.effective(b2.id, "weekly_round").row is own  # overridden
    assert book.excluded_paths(weekly) == ["/1/3/"]  # the root's round leaves 第二支部 out
    assert book.effective(b1.id, "reminder").enabled is False
    assert book.effective(b2.id, "reminder").row is None  # built-in default
    assert book.effective(b2.id, "case_push") is None  # no default: must be set up


def test_occurrences_of_a_week_with_quiet_hours_and_follow_ups():
    root, b1, b2 = tree()
    rows = [
        row(1, root, "weekly_round", {"day_of_week": "mon", "time": "09:00", "deadline": "sun 20:00"}),
        row(2, b2, "weekly_round", {"day_of_week": "tue", "time": "23:00", "deadline": "+2d"}),
        row(3, root, "case_push", {"day": 1, "time": "10:00"}),
    ]
    book = ScheduleBook([root, b1, b2], rows, "Asia/Shanghai")
    rnd = Round(id=7, org_id=1, kind="weekly", opens_at=local(SH, 2026, 11, 23, 9, 0),
                deadline=local(SH, 2026, 11, 29, 20, 0))
    occs = occurrences(book, [rnd], after=local(SH, 2026, 11, 23, 0, 0), until=local(SH, 2026, 12, 1, 12, 0))
    got = [(o.kind, o.nominal.astimezone(SH).strftime("%a %d %H:%M"), o.due.astimezone(SH).strftime("%a %d %H:%M"))
           for o in occs]
    assert got == [
        ("weekly_round", "Mon 23 09:00", "Mon 23 09:00"),
        ("weekly_round", "Tue 24 23:00", "Wed 25 07:30"),  # quiet hours: waits until 07:30
        ("reminder", "Sat 28 20:00", "Sat 28 20:00"),
        ("digest", "Sun 29 20:00", "Sun 29 20:00"),
        ("weekly_round", "Mon 30 09:00", "Mon 30 09:00"),
        ("case_push", "Tue 01 10:00", "Tue 01 10:00"),
    ]
    assert occs[0].key == "weekly_round:s1@2026-11-23T01:00Z"


def test_a_changed_schedule_does_not_reach_back_and_quiet_hours_per_zone():
    root, b1, b2 = tree()
    changed = local(SH, 2026, 11, 23, 9, 30)
    book = ScheduleBook([root, b1, b2], [
        row(1, root, "weekly_round", {"day_of_week": "mon", "time": "09:00"}, updated_at=changed),
        row(2, root, "quiet_hours", {"start": "22:00", "end": "07:30"}, tz="Europe/Berlin"),
    ], "Asia/Shanghai")
    occs = occurrences(book, [], after=local(SH, 2026, 11, 22, 0, 0), until=local(SH, 2026, 12, 1, 0, 0))
    assert [o.nominal for o in occs] == [local(SH, 2026, 11, 30, 9, 0)]  # not the 09:00 half an hour before
    # 23:30 in Shanghai is 16:30 in Berlin: not quiet there.
    assert book.quiet_end(b1.id, local(SH, 2026, 11, 23, 23, 30)) is None
    assert book.quiet_end(b1.id, local(BERLIN, 2026, 11, 23, 23, 30)) == local(BERLIN, 2026, 11, 24, 7, 30)


def test_short_rounds_get_no_reminder_and_quiet_hours_never_push_a_reminder_past_the_deadline():
    root, b1, b2 = tree()
    book = ScheduleBook([root, b1, b2], [row(1, root, "reminder", {"hours_before": [24, 2]})], "Asia/Shanghai")
    short = Round(id=1, org_id=1, kind="manual", opens_at=local(SH, 2026, 11, 23, 9, 0),
                  deadline=local(SH, 2026, 11, 23, 20, 0))  # 11 h: only the 2 h reminder fits
    early = Round(id=2, org_id=1, kind="weekly", opens_at=local(SH, 2026, 11, 20, 9, 0),
                  deadline=local(SH, 2026, 11, 24, 7, 0))  # 2 h before is 05:00: quiet until 07:30 > deadline
    demo = Round(id=3, org_id=1, kind="demo", opens_at=local(SH, 2026, 11, 20, 9, 0),
                 deadline=local(SH, 2026, 11, 23, 20, 0))
    occs = occurrences(book, [short, early, demo], after=local(SH, 2026, 11, 20, 0, 0),
                       until=local(SH, 2026, 11, 26, 0, 0))
    assert [(o.kind, o.round_id, o.hours) for o in occs] == [
        ("reminder", 2, 24.0), ("reminder", 1, 2.0), ("digest", 1, None), ("digest", 2, None)]


def test_a_row_broken_by_hand_is_ignored_with_a_log_line_and_the_others_still_run(caplog):
    root, b1, b2 = tree()
    good = row(1, root, "weekly_round", {"day_of_week": "mon", "time": "09:00"})
    broken = Schedule(id=2, org_id=b1.id, kind="weekly_round", spec={"day_of_week": "周八"}, timezone="Asia/Shanghai",
                      enabled=True, created_at=LONG_AGO, updated_at=LONG_AGO)
    zone = Schedule(id=3, org_id=b2.id, kind="weekly_round", spec={}, timezone="Mars/Olympus",
                    enabled=True, created_at=LONG_AGO, updated_at=LONG_AGO)
    book = ScheduleBook([root, b1, b2], [good, broken, zone], "Asia/Shanghai")
    assert book.rows == [good] and book.effective(b1.id, "weekly_round").row is good
    occs = occurrences(book, [], after=local(SH, 2026, 11, 22, 0, 0), until=local(SH, 2026, 11, 24, 0, 0))
    assert [o.job_key for o in occs] == ["weekly_round:s1"]
    assert "schedule 2 (weekly_round) ignored: 无法识别的星期「周八」" in caplog.text
    assert "schedule 3 (weekly_round) ignored: 未知时区「Mars/Olympus」" in caplog.text
