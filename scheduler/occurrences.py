"""What falls due when: occurrences of every schedule in a time window, as plain data.

An occurrence has a *nominal* time (what the schedule says, in its own timezone; the claim's
identity) and a *due* time (the nominal time moved out of quiet hours). Pure functions of the
schedule book, the rounds and a window, so tests drive them with any clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from apscheduler.triggers.cron import CronTrigger

from bot.storage.models import Round, Schedule
from scheduler.schedules import (
    CampaignSpec,
    CasePushSpec,
    DigestSpec,
    ReminderSpec,
    ScheduleBook,
    WeeklyRoundSpec,
    check_zone,
    parse_clock,
    validate_spec,
)

_US = timedelta(microseconds=1)
FOLLOW_UP_ROUND_KINDS = ("weekly", "campaign", "manual")  # rounds that get reminders and digests


@dataclass(frozen=True)
class Occurrence:
    kind: str  # weekly_round | case_push | campaign | reminder | digest
    job_key: str  # with `nominal`, the claim's identity
    nominal: datetime  # UTC
    due: datetime  # UTC, after quiet hours
    org_id: int
    schedule_id: int | None = None
    round_id: int | None = None
    hours: float | None = None  # a reminder's hours before the deadline

    @property
    def key(self) -> str:
        """Names what this occurrence creates (round occurrence_key, notification key)."""
        return f"{self.job_key}@{self.nominal:%Y-%m-%dT%H:%MZ}"


def cron_trigger(row: Schedule) -> CronTrigger:
    spec = validate_spec(row.kind, row.spec)
    tz = check_zone(row.timezone)
    if isinstance(spec, WeeklyRoundSpec):
        hhmm = parse_clock(spec.time)
        return CronTrigger(day_of_week=spec.day_of_week, hour=hhmm.hour, minute=hhmm.minute, timezone=tz)
    if isinstance(spec, CasePushSpec):
        hhmm = parse_clock(spec.time)
        return CronTrigger(day=spec.day, hour=hhmm.hour, minute=hhmm.minute, timezone=tz)
    raise ValueError(f"{row.kind} is not a cron schedule")


def fire_times(trigger: CronTrigger, after: datetime, until: datetime) -> list[datetime]:
    """The trigger's fire times in (after, until], in UTC."""
    out: list[datetime] = []
    fire = trigger.get_next_fire_time(None, after + _US)
    while fire is not None and fire <= until:
        out.append(fire.astimezone(UTC))
        fire = trigger.get_next_fire_time(fire, fire + _US)
    return out


def _cron_occurrences(book: ScheduleBook, kind: str, after: datetime, until: datetime) -> Iterable[Occurrence]:
    for row, org in book.sources(kind):
        # A new or changed schedule never reaches back before its change.
        start = max(after, row.updated_at - _US)
        for nominal in fire_times(cron_trigger(row), start, until):
            yield Occurrence(kind, f"{kind}:s{row.id}", nominal, book.shift_out_of_quiet(org.id, nominal),  # type: ignore[arg-type]
                             org.id, schedule_id=row.id)  # type: ignore[arg-type]


def _campaigns(book: ScheduleBook, after: datetime, until: datetime) -> Iterable[Occurrence]:
    for row, org in book.sources("campaign"):
        spec = validate_spec("campaign", row.spec)
        assert isinstance(spec, CampaignSpec)
        if after < spec.at <= until and spec.at >= row.updated_at - timedelta(minutes=1):
            yield Occurrence("campaign", f"campaign:s{row.id}", spec.at,
                             book.shift_out_of_quiet(org.id, spec.at), org.id, schedule_id=row.id)  # type: ignore[arg-type]


def _follow_ups(book: ScheduleBook, rounds: Iterable[Round], after: datetime, until: datetime) -> Iterable[Occurrence]:
    for rnd in rounds:
        if rnd.kind not in FOLLOW_UP_ROUND_KINDS:
            continue
        rid: int = rnd.id  # type: ignore[assignment]
        remind = book.effective(rnd.org_id, "reminder")
        if remind is not None and remind.enabled:
            assert isinstance(remind.spec, ReminderSpec)
            for hours in remind.spec.hours_before:
                nominal = rnd.deadline - timedelta(hours=hours)
                if not after < nominal <= until or nominal <= rnd.opens_at:
                    continue  # outside the window, or the round is shorter than the lead time
                if remind.row is not None and nominal < remind.row.updated_at:
                    continue
                due = book.shift_out_of_quiet(rnd.org_id, nominal)
                if due < rnd.deadline:  # a reminder pushed past the deadline by quiet hours is moot
                    yield Occurrence("reminder", f"reminder:r{rid}:{hours:g}h", nominal, due, rnd.org_id,
                                     round_id=rid, hours=hours)
        digest = book.effective(rnd.org_id, "digest")
        if digest is not None and digest.enabled:
            assert isinstance(digest.spec, DigestSpec)
            nominal = rnd.deadline + timedelta(hours=digest.spec.hours_after)
            if after < nominal <= until and (digest.row is None or nominal >= digest.row.updated_at):
                yield Occurrence("digest", f"digest:r{rid}", nominal, book.shift_out_of_quiet(rnd.org_id, nominal),
                                 rnd.org_id, round_id=rid)


def occurrences(book: ScheduleBook, rounds: Iterable[Round], *, after: datetime, until: datetime) -> list[Occurrence]:
    """Every occurrence with a nominal time in (after, until], ordered by due time."""
    found = [
        *_cron_occurrences(book, "weekly_round", after, until),
        *_cron_occurrences(book, "case_push", after, until),
        *_campaigns(book, after, until),
        *_follow_ups(book, rounds, after, until),
    ]
    return sorted(found, key=lambda o: (o.due, o.job_key))
