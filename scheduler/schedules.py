"""Schedules as data: specs per kind, inheritance down the organisation tree, quiet hours.

A `Schedule` row set on an organisation governs its subtree until a descendant sets its own
row of the same kind; `enabled=False` switches the kind off for that subtree. Kinds without a
row anywhere fall back to `DEFAULTS` (reminders, digests and quiet hours are on by default;
weekly rounds and case pushes must be set up).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.core.errors import QingfengError
from bot.storage.models import Organization, Schedule

log = logging.getLogger(__name__)
KINDS = ("weekly_round", "reminder", "digest", "case_push", "campaign", "quiet_hours")
KIND_NAMES = {"weekly_round": "每周学习", "reminder": "督办提醒", "digest": "周报", "case_push": "警示教育案例",
              "campaign": "专题测试", "quiet_hours": "免打扰时段"}
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_ZH_DAYS = "一二三四五六日"
WEEKDAY_NAMES = {d: f"周{_ZH_DAYS[i]}" for i, d in enumerate(WEEKDAYS)}


class ScheduleError(QingfengError):
    message = "推送计划设置有误。"


# --- small parsers for what operators type ----------------------------------------------------


def parse_clock(text: str) -> time:
    """'09:00', '9:00', '09：00' → time(9, 0)."""
    m = re.fullmatch(r"\s*(\d{1,2})[:：](\d{2})\s*", text)
    if not m or int(m.group(1)) > 23 or int(m.group(2)) > 59:
        raise ScheduleError(f"时间「{text}」格式不对，请写成 时:分，如 09:00。")
    return time(int(m.group(1)), int(m.group(2)))


def parse_weekday(text: str) -> str:
    """'mon' / 'Monday' / '周一' / '星期一' / '礼拜一' → 'mon'."""
    t = text.strip().lower()
    for i, day in enumerate(WEEKDAYS):
        zh = _ZH_DAYS[i]
        names = {day, {"mon": "monday", "tue": "tuesday", "wed": "wednesday", "thu": "thursday",
                       "fri": "friday", "sat": "saturday", "sun": "sunday"}[day],
                 f"周{zh}", f"星期{zh}", f"礼拜{zh}"}
        if zh == "日":
            names |= {"周天", "星期天", "礼拜天"}
        if t in names:
            return day
    raise ScheduleError(f"无法识别的星期「{text}」，请写周一…周日或 mon…sun。")


def parse_weekdays(text: str) -> str:
    """'周一,周四' → 'mon,thu' (APScheduler's day_of_week)."""
    parts = [p for p in re.split(r"[,，、\s]+", text.strip()) if p]
    if not parts:
        raise ScheduleError("请至少写一个星期几。")
    return ",".join(dict.fromkeys(parse_weekday(p) for p in parts))


def check_zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f"未知时区「{name}」，请写如 Asia/Shanghai。") from None


_DEADLINE = re.compile(r"\s*(?:\+(?P<num>\d+(?:\.\d+)?)\s*(?P<unit>[dh天时小时]+)|(?P<day>\S+)\s+(?P<clock>\S+))\s*")


def parse_deadline(text: str) -> str:
    """'周日 20:00' / 'sun 20:00' (next such local time after opening) or '+6d' / '+36h'."""
    m = _DEADLINE.fullmatch(text)
    if not m:
        raise ScheduleError(f"截止时间「{text}」格式不对，请写如「周日 20:00」或「+6d」。")
    if m.group("num"):
        unit = "d" if m.group("unit") in ("d", "天") else "h"
        if m.group("unit") not in ("d", "h", "天", "时", "小时"):
            raise ScheduleError(f"截止时间「{text}」的单位请用 d（天）或 h（小时）。")
        return f"+{float(m.group('num')):g}{unit}"
    clock = parse_clock(m.group("clock"))
    return f"{parse_weekday(m.group('day'))} {clock:%H:%M}"


def deadline_after(spec: str, opens: datetime, tz: ZoneInfo) -> datetime:
    """The deadline a round opened (nominally) at `opens` gets from a deadline spec."""
    if spec.startswith("+"):
        amount, unit = float(spec[1:-1]), spec[-1]
        return opens + (timedelta(days=amount) if unit == "d" else timedelta(hours=amount))
    day, clock = spec.split()
    target, hhmm = WEEKDAYS.index(day), parse_clock(clock)
    local = opens.astimezone(tz)
    for ahead in range(8):
        d = local.date() + timedelta(days=ahead)
        if d.weekday() != target:
            continue
        candidate = datetime.combine(d, hhmm, tzinfo=tz)
        if candidate > local:
            return candidate.astimezone(UTC)
    raise AssertionError("unreachable: a weekday recurs within 8 days")


# --- specs -------------------------------------------------------------------------------------


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WeeklyRoundSpec(_Spec):
    day_of_week: str = "mon"
    time: str = "09:00"
    items: int | None = Field(default=None, ge=1, le=30)  # None: QINGFENG_ROUND_ITEMS
    deadline: str = "sun 20:00"
    title: str = Field(default="本周廉政学习", max_length=60)

    @field_validator("day_of_week")
    @classmethod
    def _days(cls, v: str) -> str:
        return parse_weekdays(v)

    @field_validator("time")
    @classmethod
    def _time(cls, v: str) -> str:
        return f"{parse_clock(v):%H:%M}"

    @field_validator("deadline")
    @classmethod
    def _deadline(cls, v: str) -> str:
        return parse_deadline(v)


class CasePushSpec(_Spec):
    day: int = Field(default=1, ge=1, le=28)  # day of month; 28 at most so every month has it
    time: str = "10:00"

    @field_validator("time")
    @classmethod
    def _time(cls, v: str) -> str:
        return f"{parse_clock(v):%H:%M}"


class ReminderSpec(_Spec):
    hours_before: list[float] = Field(default_factory=lambda: [24.0], min_length=1, max_length=4)

    @field_validator("hours_before")
    @classmethod
    def _positive(cls, v: list[float]) -> list[float]:
        if any(h <= 0 or h > 24 * 30 for h in v):
            raise ScheduleError("提醒时间请写截止前 0–720 小时之间的数。")
        return sorted(set(v), reverse=True)


class DigestSpec(_Spec):
    hours_after: float = Field(default=0, ge=0, le=24 * 7)


class QuietHoursSpec(_Spec):
    start: str = "22:00"
    end: str = "07:30"

    @field_validator("start", "end")
    @classmethod
    def _time(cls, v: str) -> str:
        return f"{parse_clock(v):%H:%M}"


class CampaignSpec(_Spec):
    at: datetime
    deadline: datetime
    items: list[str] = Field(min_length=1, max_length=30)
    tag: str | None = Field(default=None, max_length=30)
    title: str = Field(default="专题测试", max_length=60)

    @field_validator("at", "deadline")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            raise ScheduleError("专题测试的时间必须带时区。")
        return v.astimezone(UTC)


SPECS: dict[str, type[_Spec]] = {
    "weekly_round": WeeklyRoundSpec, "reminder": ReminderSpec, "digest": DigestSpec,
    "case_push": CasePushSpec, "campaign": CampaignSpec, "quiet_hours": QuietHoursSpec,
}
# Kinds that apply with no row anywhere in the tree (built-in defaults).
DEFAULTS: dict[str, _Spec] = {"reminder": ReminderSpec(), "digest": DigestSpec(), "quiet_hours": QuietHoursSpec()}
_FIELD_NAMES = {"day_of_week": "星期", "time": "时间", "items": "题目数量", "deadline": "截止时间", "title": "标题",
                "day": "日期", "hours_before": "提前小时数", "hours_after": "延后小时数", "start": "开始",
                "end": "结束", "at": "推送时间", "tag": "人群标签"}


def validate_spec(kind: str, data: dict[str, Any]) -> _Spec:
    if kind not in SPECS:
        raise ScheduleError(f"未知的计划类型「{kind}」，可选：{'、'.join(KINDS)}。")
    try:
        return SPECS[kind].model_validate(data)
    except ScheduleError:
        raise
    except ValidationError as exc:
        problems = []
        for e in exc.errors():
            inner = e.get("ctx", {}).get("error")
            if isinstance(inner, QingfengError):
                problems.append(inner.message)
                continue
            name = _FIELD_NAMES.get(str(e["loc"][0]) if e["loc"] else "", str(e["loc"]))
            problems.append(f"「{name}」取值不对（{e['msg']}）")
        raise ScheduleError("；".join(problems)) from None


def describe(kind: str, spec: _Spec) -> str:
    """One zh-CN line for `schedule show`."""
    if isinstance(spec, WeeklyRoundSpec):
        days = "、".join(WEEKDAY_NAMES[d] for d in spec.day_of_week.split(","))
        dl = spec.deadline
        dl_text = (f"开启后{dl[1:-1]}{'天' if dl[-1] == 'd' else '小时'}" if dl.startswith("+")
                   else f"{WEEKDAY_NAMES[dl.split()[0]]} {dl.split()[1]}")
        items = f"{spec.items} 题" if spec.items else "默认题数"
        return f"{days} {spec.time} 推送 {items}，{dl_text} 截止"
    if isinstance(spec, ReminderSpec):
        return "截止前 " + "、".join(f"{h:g}" for h in spec.hours_before) + " 小时提醒未作答者"
    if isinstance(spec, DigestSpec):
        return f"截止后 {spec.hours_after:g} 小时向支部书记发送统计"
    if isinstance(spec, CasePushSpec):
        return f"每月 {spec.day} 日 {spec.time} 推送警示教育案例"
    if isinstance(spec, QuietHoursSpec):
        return f"{spec.start}–{spec.end} 不推送"
    if isinstance(spec, CampaignSpec):
        who = f"「{spec.tag}」人群" if spec.tag else "全体"
        return f"{spec.title}：{len(spec.items)} 题，面向{who}"
    return kind


# --- the schedule book: every row and the tree, resolved in memory -------------------------------


@dataclass(frozen=True)
class Effective:
    """The schedule that applies to an organisation for one kind."""

    kind: str
    spec: _Spec
    tz: ZoneInfo
    enabled: bool
    row: Schedule | None  # None: a built-in default
    source: Organization | None  # where the row is set (None for a default)


def in_quiet(spec: QuietHoursSpec, tz: ZoneInfo, at: datetime) -> datetime | None:
    """If `at` falls in the quiet window, the instant the window ends; else None."""
    start, end = parse_clock(spec.start), parse_clock(spec.end)
    if start == end:
        return None
    local = at.astimezone(tz)
    t = local.time().replace(tzinfo=None)
    if start < end:
        if start <= t < end:
            return datetime.combine(local.date(), end, tzinfo=tz).astimezone(UTC)
        return None
    if t >= start:  # the window wraps midnight: 22:00 → tomorrow 07:30
        return datetime.combine(local.date() + timedelta(days=1), end, tzinfo=tz).astimezone(UTC)
    if t < end:
        return datetime.combine(local.date(), end, tzinfo=tz).astimezone(UTC)
    return None


def _usable(row: Schedule) -> bool:
    """A row edited by hand into something invalid is ignored (and said so), not fatal to the rest."""
    try:
        validate_spec(row.kind, row.spec)
        check_zone(row.timezone)
    except ScheduleError as exc:
        log.error("schedule %s (%s) ignored: %s", row.id, row.kind, exc.message)
        return False
    return True


class ScheduleBook:
    """All schedule rows plus the organisation tree, loaded once per scheduler tick."""

    def __init__(self, orgs: list[Organization], rows: list[Schedule], default_tz: str) -> None:
        self.orgs = {o.id: o for o in orgs}
        self.rows = [r for r in rows if _usable(r)]
        self.default_tz = default_tz
        self._by_org_kind: dict[tuple[int, str], Schedule] = {
            (r.org_id, r.kind): r for r in self.rows if r.kind != "campaign"}

    @classmethod
    async def load(cls, session: AsyncSession, default_tz: str) -> ScheduleBook:
        orgs = list((await session.exec(select(Organization))).all())
        rows = list((await session.exec(select(Schedule).order_by(col(Schedule.id)))).all())
        return cls(orgs, rows, default_tz)

    def ancestors(self, org: Organization) -> list[Organization]:
        """Nearest first: the organisation itself, its parent, …, the root."""
        ids = [int(x) for x in org.path.strip("/").split("/") if x]
        return [self.orgs[i] for i in reversed(ids) if i in self.orgs]

    def effective(self, org_id: int, kind: str) -> Effective | None:
        org = self.orgs.get(org_id)
        if org is not None:
            for anc in self.ancestors(org):
                row = self._by_org_kind.get((anc.id, kind))  # type: ignore[arg-type]
                if row is not None:
                    return Effective(kind, validate_spec(kind, row.spec), check_zone(row.timezone),
                                     row.enabled, row, anc)
        if kind in DEFAULTS:
            return Effective(kind, DEFAULTS[kind], check_zone(self.default_tz), True, None, None)
        return None

    def sources(self, kind: str) -> list[tuple[Schedule, Organization]]:
        """Enabled rows of a kind with their organisation (campaigns: every enabled campaign)."""
        return [(r, self.orgs[r.org_id]) for r in self.rows
                if r.kind == kind and r.enabled and r.org_id in self.orgs]

    def excluded_paths(self, row: Schedule) -> list[str]:
        """Descendant subtrees that set their own row of the same kind (on or off)."""
        own = self.orgs[row.org_id]
        return sorted(self.orgs[r.org_id].path for r in self.rows
                      if r.kind == row.kind and r.id != row.id and r.org_id in self.orgs
                      and self.orgs[r.org_id].path.startswith(own.path) and r.org_id != row.org_id)

    def quiet_end(self, org_id: int, at: datetime) -> datetime | None:
        eff = self.effective(org_id, "quiet_hours")
        if eff is None or not eff.enabled:
            return None
        return in_quiet(eff.spec, eff.tz, at)  # type: ignore[arg-type]

    def shift_out_of_quiet(self, org_id: int, at: datetime) -> datetime:
        end = self.quiet_end(org_id, at)
        return end if end is not None else at


# --- writing schedules -------------------------------------------------------------------------


async def set_schedule(
    session: AsyncSession, *, org: Organization, kind: str, spec: dict[str, Any], now: datetime,
    timezone: str | None = None, enabled: bool = True, name: str = "", default_tz: str = "Asia/Shanghai",
) -> Schedule:
    """Create or replace the row of `kind` on `org` (campaigns: by name). Validates first."""
    parsed = validate_spec(kind, spec)
    tz = timezone or default_tz
    check_zone(tz)
    if kind == "campaign":
        if not name:
            raise ScheduleError("专题测试需要一个名称。")
        c: CampaignSpec = parsed  # type: ignore[assignment]
        if c.deadline <= c.at:
            raise ScheduleError("专题测试的截止时间必须晚于推送时间。")
    elif name:
        raise ScheduleError("只有专题测试需要名称。")
    row = (await session.exec(select(Schedule).where(
        Schedule.org_id == org.id, Schedule.kind == kind, Schedule.name == name))).first()
    if row is None:
        row = Schedule(org_id=org.id, kind=kind, name=name, created_at=now)  # type: ignore[arg-type]
    row.spec = parsed.model_dump(mode="json", exclude_none=False)
    row.timezone = tz
    row.enabled = enabled
    row.updated_at = now
    session.add(row)
    await session.commit()
    await session.refresh(row)
    return row


async def unset_schedule(session: AsyncSession, *, org: Organization, kind: str, name: str = "") -> bool:
    """Remove the row on `org`, so the organisation inherits again. True if there was one."""
    row = (await session.exec(select(Schedule).where(
        Schedule.org_id == org.id, Schedule.kind == kind, Schedule.name == name))).first()
    if row is None:
        return False
    await session.delete(row)
    await session.commit()
    return True
