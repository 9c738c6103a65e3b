"""Command line for schedules: `qingfeng schedule show/set/unset`, `qingfeng campaign`, and the work
behind `qingfeng push --now` (registered in bot/cli.py).

`push --now` opens the round in the database and does not send it itself: the running
`qingfeng run` owns the chat clients (one Telegram poller, one rate limiter, shared WeChat
tokens) and sends it within a tick; the command follows that fan-out with a progress bar. With
no bot running, the round waits in the database and goes out when the bot starts.
"""

from __future__ import annotations

import asyncio
import time as _time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer
from rich.console import Console

from bot.config import ConfigError, Settings, load_settings

schedule_app = typer.Typer(help="定时推送计划（每周学习、督办提醒、周报、警示教育案例、免打扰时段）",
                           no_args_is_help=True)
console = Console()
err = Console(stderr=True)

KIND_ALIASES = {"每周学习": "weekly_round", "每周推送": "weekly_round", "督办提醒": "reminder", "提醒": "reminder",
                "周报": "digest", "警示教育": "case_push", "警示教育案例": "case_push", "案例": "case_push",
                "免打扰": "quiet_hours", "免打扰时段": "quiet_hours"}


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None


def _run(s: Settings, body: Callable[[Any], Awaitable[None]]) -> None:
    """Start the app (migrations, bank), run `body(app)`, turn polite domain errors into exit 1."""
    from bot.app import start_app
    from bot.core.errors import QingfengError
    from scheduler.schedules import ScheduleError

    async def go() -> None:
        a = await start_app(s)
        try:
            await body(a)
        finally:
            await a.db.dispose()

    try:
        asyncio.run(go())
    except ScheduleError as exc:  # bad schedule input: a usage error
        err.print(f"[red]{exc.message}[/red]")
        raise typer.Exit(2) from None
    except QingfengError as exc:
        err.print(f"[red]{exc.message}[/red]")
        raise typer.Exit(1) from None


def _kind(text: str) -> str:
    from scheduler.schedules import KINDS

    kind = KIND_ALIASES.get(text.strip(), text.strip())
    if kind not in KINDS or kind == "campaign":
        err.print(f"[red]未知的计划类型「{text}」。可选：weekly_round（每周学习）、reminder（督办提醒）、digest（周报）、"
                  "case_push（警示教育）、quiet_hours（免打扰）；专题测试请用 qingfeng campaign。[/red]")
        raise typer.Exit(2)
    return kind


def _local_time(text: str, tz: Any) -> datetime:
    from scheduler.schedules import ScheduleError

    t = text.strip().replace("T", " ").replace("/", "-")
    for fmt in ("%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d"):
        try:
            parsed = datetime.strptime(t, fmt)
        except ValueError:
            continue
        if fmt == "%Y-%m-%d":
            parsed = parsed.replace(hour=23, minute=59)
        return parsed.replace(tzinfo=tz).astimezone(UTC)
    raise ScheduleError(f"时间「{text}」格式不对，请写成 2026-12-05 20:00。")


# --- schedule show / set / unset -----------------------------------------------------------------


def _next_due(book: Any, row: Any, now: datetime) -> str:
    from scheduler.occurrences import cron_trigger, fire_times
    from scheduler.schedules import validate_spec

    if not row.enabled:
        return "—"
    if row.kind in ("weekly_round", "case_push"):
        fires = fire_times(cron_trigger(row), max(now, row.updated_at), now + timedelta(days=32))
        if fires:
            due = book.shift_out_of_quiet(row.org_id, fires[0])
            return f"{due.astimezone(book.effective(row.org_id, 'quiet_hours').tz):%Y-%m-%d %H:%M}"
    if row.kind == "campaign":
        return f"{validate_spec('campaign', row.spec).at.astimezone(UTC):%Y-%m-%d %H:%M} UTC"  # type: ignore[attr-defined]
    return "—"


@schedule_app.command("show")
def schedule_show(
    org: Annotated[str | None, typer.Option("--org", help="只看某组织实际生效的计划（含继承）")] = None,
) -> None:
    """列出推送计划；加 --org 显示该组织实际生效的计划及其来源（本级、继承、默认）。"""
    from rich.table import Table  # here, not at the top: `qingfeng run` imports this module

    from bot.core.orgs import find_org, org_path_names
    from scheduler.schedules import KIND_NAMES, KINDS, ScheduleBook, describe, validate_spec

    s = _settings()

    async def body(a: Any) -> None:
        now = datetime.now(UTC)
        async with a.db.session() as session:
            book = await ScheduleBook.load(session, s.timezone)
            if org is None:
                table = Table("组织", "类型", "设置", "时区", "状态", "下次（当地时间）", title="推送计划")
                for row in book.rows:
                    names = "/".join(await org_path_names(session, book.orgs[row.org_id]))
                    table.add_row(names, KIND_NAMES[row.kind] + (f"「{row.name}」" if row.name else ""),
                                  describe(row.kind, validate_spec(row.kind, row.spec)), row.timezone,
                                  "启用" if row.enabled else "停用", _next_due(book, row, now))
                if not book.rows:
                    console.print("尚未设置任何推送计划。用 qingfeng schedule set 设置，如：\n"
                                  "  qingfeng schedule set --org 机关党委 --kind 每周学习 --day 周一 --time 09:00")
                    return
                console.print(table)
                return
            target = await find_org(session, org)
            table = Table("类型", "设置", "时区", "状态", "来源", title=f"「{target.name}」实际生效的推送计划")
            for kind in KINDS:
                if kind == "campaign":
                    continue
                eff = book.effective(target.id, kind)  # type: ignore[arg-type]
                if eff is None:
                    table.add_row(KIND_NAMES[kind], "未设置", "—", "—", "—")
                    continue
                source = ("默认" if eff.source is None else "本级设置" if eff.source.id == target.id
                          else f"继承自「{eff.source.name}」")
                table.add_row(KIND_NAMES[kind], describe(kind, eff.spec), str(eff.tz),
                              "启用" if eff.enabled else "停用", source)
            console.print(table)

    _run(s, body)


@schedule_app.command("set")
def schedule_set(
    org: Annotated[str, typer.Option("--org", help="组织名称或路径；下级组织继承，除非另行设置")],
    kind: Annotated[str, typer.Option("--kind", help="weekly_round 每周学习 / reminder 督办提醒 / digest 周报 / "
                                                      "case_push 警示教育 / quiet_hours 免打扰")],
    day: Annotated[str | None, typer.Option(help="每周学习：星期几，如 周一 或 周一,周四")] = None,
    time: Annotated[str | None, typer.Option(help="推送时间，如 09:00")] = None,
    items: Annotated[int | None, typer.Option(help="每周学习：题目数量")] = None,
    deadline: Annotated[str | None, typer.Option(help="每周学习：截止，如「周日 20:00」或「+6d」")] = None,
    title: Annotated[str | None, typer.Option(help="每周学习：标题")] = None,
    day_of_month: Annotated[int | None, typer.Option(help="警示教育：每月几号（1–28）")] = None,
    hours_before: Annotated[str | None, typer.Option(help="督办提醒：截止前几小时，如 24 或 24,2")] = None,
    hours_after: Annotated[float | None, typer.Option(help="周报：截止后几小时发送")] = None,
    quiet: Annotated[str | None, typer.Option(help="免打扰时段，如 22:00-07:30")] = None,
    tz: Annotated[str | None, typer.Option("--tz", help="时区，默认 QINGFENG_TIMEZONE")] = None,
    off: Annotated[bool, typer.Option("--off", help="在该组织及下级停用此类推送")] = False,
) -> None:
    """设置（或修改）某组织的一项推送计划；运行中的 qingfeng run 在一个周期内生效，无需重启。"""
    from sqlmodel import select

    from bot.core.orgs import find_org
    from bot.storage.models import AuditLog, Schedule
    from scheduler.schedules import KIND_NAMES, SPECS, describe, set_schedule, validate_spec

    s = _settings()
    k = _kind(kind)
    given: dict[str, Any] = {"day_of_week": day, "time": time, "items": items, "deadline": deadline, "title": title,
                             "day": day_of_month, "hours_after": hours_after}
    if hours_before is not None:
        try:
            given["hours_before"] = [float(h) for h in hours_before.replace("，", ",").split(",") if h.strip()]
        except ValueError:
            err.print(f"[red]提前小时数「{hours_before}」请写数字，如 24 或 24,2。[/red]")
            raise typer.Exit(2) from None
    if quiet is not None:
        start, sep, end = quiet.replace("–", "-").replace("～", "-").replace("~", "-").partition("-")
        if not sep:
            err.print(f"[red]免打扰时段「{quiet}」请写成 22:00-07:30。[/red]")
            raise typer.Exit(2)
        given |= {"start": start, "end": end}
    given = {key: v for key, v in given.items() if v is not None}
    stray = set(given) - set(SPECS[k].model_fields)
    if stray:
        err.print(f"[red]「{KIND_NAMES[k]}」不使用这些选项：{', '.join(sorted(stray))}。[/red]")
        raise typer.Exit(2)

    async def body(a: Any) -> None:
        now = datetime.now(UTC)
        async with a.db.session() as session:
            target = await find_org(session, org)
            current = (await session.exec(select(Schedule).where(
                Schedule.org_id == target.id, Schedule.kind == k, Schedule.name == ""))).first()
            spec = {**(current.spec if current else {}), **given}  # change only what was given
            row = await set_schedule(session, org=target, kind=k, spec=spec, now=now,
                                     timezone=tz or (current.timezone if current else None), enabled=not off,
                                     default_tz=s.timezone)
            session.add(AuditLog(actor="cli", action="schedule.set",
                                 detail={"org_id": target.id, "kind": k, "spec": row.spec, "enabled": row.enabled}))
            await session.commit()
        state = "已停用" if off else describe(k, validate_spec(k, row.spec))
        console.print(f"「{target.name}」的{KIND_NAMES[k]}：{state}（时区 {row.timezone}）。"
                      "运行中的 qingfeng run 将在一个周期内生效。")

    _run(s, body)


@schedule_app.command("unset")
def schedule_unset(
    org: Annotated[str, typer.Option("--org", help="组织名称或路径")],
    kind: Annotated[str, typer.Option("--kind", help="计划类型")],
) -> None:
    """删除某组织本级的计划设置，恢复继承上级（或默认）。"""
    from bot.core.orgs import find_org
    from scheduler.schedules import KIND_NAMES, unset_schedule

    s = _settings()
    k = _kind(kind)

    async def body(a: Any) -> None:
        async with a.db.session() as session:
            target = await find_org(session, org)
            removed = await unset_schedule(session, org=target, kind=k)
        console.print(f"已删除「{target.name}」本级的{KIND_NAMES[k]}设置，恢复继承。" if removed
                      else f"「{target.name}」本级没有{KIND_NAMES[k]}设置，无需删除。")

    _run(s, body)


# --- campaign ------------------------------------------------------------------------------------


def campaign_command(
    org: Annotated[str, typer.Option("--org", help="组织名称或路径（含下级）")],
    items: Annotated[str, typer.Option(help="题目编号，逗号分隔，如 gm-001,er-003")],
    deadline: Annotated[str, typer.Option(help="截止时间（当地时间），如 2026-12-05 20:00")],
    tag: Annotated[str | None, typer.Option(help="人群标签，如 新提任、关键岗位；不写则面向全体")] = None,
    title: Annotated[str, typer.Option(help="标题")] = "专题测试",
    at: Annotated[str | None, typer.Option(help="推送时间（当地时间），默认立即")] = None,
    name: Annotated[str | None, typer.Option(help="名称（同一组织内唯一），默认由标题和时间生成")] = None,
) -> None:
    """专题测试：向某组织（可限定人群标签）推送指定题目，有单独的截止时间。"""
    from sqlalchemy import func
    from sqlmodel import select

    from bot.core.orgs import find_org, subtree_members
    from bot.storage.models import AuditLog, BankItem
    from scheduler.jobs import usable_items
    from scheduler.schedules import ScheduleError, set_schedule

    s = _settings()
    ids = [i.strip() for i in items.replace("，", ",").split(",") if i.strip()]
    try:
        when = _local_time(at, s.tz) if at else datetime.now(UTC)
        until = _local_time(deadline, s.tz)
    except ScheduleError as exc:
        err.print(f"[red]{exc.message}[/red]")
        raise typer.Exit(2) from None
    if until <= max(when, datetime.now(UTC)):
        err.print("[red]截止时间必须晚于推送时间和当前时间。[/red]")
        raise typer.Exit(2)
    if when < datetime.now(UTC) - timedelta(minutes=1):
        err.print("[red]推送时间已过；要立即推送请不写 --at。[/red]")
        raise typer.Exit(2)

    async def body(a: Any) -> None:
        async with a.db.session() as session:
            target = await find_org(session, org)
            usable = await usable_items(session, ids, include_drafts=s.push_drafts)
            missing = [i for i in ids if i not in usable]
            if missing:
                known = set((await session.exec(select(BankItem.id).where(BankItem.id.in_(missing)))).all())  # type: ignore[attr-defined]
                for i in missing:
                    err.print(f"[red]题目「{i}」{'未审核或已停用' if i in known else '不存在'}。[/red]")
                raise typer.Exit(2)
            people = await subtree_members(session, target, cohort_tag=tag)
            if not people:
                who = f"带「{tag}」标签的" if tag else ""
                err.print(f"[red]「{target.name}」及下级没有{who}在册成员。[/red]")
                raise typer.Exit(2)
            count = (await session.exec(select(func.count()).select_from(AuditLog))).one()
            label = name or f"{title}-{when.astimezone(s.tz):%Y%m%d%H%M}-{count + 1}"
            spec = {"at": when.isoformat(), "deadline": until.isoformat(), "items": ids, "tag": tag, "title": title}
            row = await set_schedule(session, org=target, kind="campaign", name=label, spec=spec,
                                     now=datetime.now(UTC), default_tz=s.timezone)
            session.add(AuditLog(actor="cli", action="campaign.create",
                                 detail={"schedule_id": row.id, "org_id": target.id, "tag": tag, "items": ids}))
            await session.commit()
        who = f"「{tag}」人群" if tag else "全体成员"
        console.print(f"已创建{title}「{label}」：{len(ids)} 道题，面向「{target.name}」{who}（{len(people)} 人），"
                      f"{when.astimezone(s.tz):%m月%d日 %H:%M} 推送，{until.astimezone(s.tz):%m月%d日 %H:%M} 截止。"
                      "由运行中的 qingfeng run 发送。")

    _run(s, body)


# --- push --now --------------------------------------------------------------------------------


def push_now(s: Settings, *, org: str, items: int | None, days: int | None, wait: bool, timeout: float) -> None:
    """Open a manual round now; then follow the running bot's fan-out with a progress bar."""
    from bot.core import quiz
    from bot.core.orgs import find_org
    from scheduler import instances
    from scheduler.schedules import ScheduleBook

    async def body(a: Any) -> None:
        async with a.db.session() as session:
            target = await find_org(session, org)
            chosen = await quiz.choose_items(session, target, items or s.round_items, include_drafts=s.push_drafts)
            if not chosen:
                err.print("[red]题库中没有可推送的题目（只推送 approved 状态的题）。[/red]")
                raise typer.Exit(1)
            opens = datetime.now(UTC)
            rnd = await quiz.open_round(session, org=target, item_ids=chosen, opens_at=opens,
                                        deadline=opens + timedelta(days=days or s.round_days),
                                        kind="manual", title="即时推送")
            book = await ScheduleBook.load(session, s.timezone)
        console.print(f"已开启第 {rnd.id} 轮：{len(chosen)} 道题，推送对象为「{target.name}」及下级组织。")
        quiet_end = book.quiet_end(target.id, opens)  # type: ignore[arg-type]
        if quiet_end is not None:
            console.print(f"现在是免打扰时段，将于 {quiet_end.astimezone(s.tz):%m月%d日 %H:%M} 后发送。")
            return
        if not await instances.live_owners(a.db, now=opens):
            console.print("未检测到运行中的 qingfeng run：本轮已保存，启动 qingfeng run 后自动发送。")
            return
        if not wait:
            console.print(f"运行中的 qingfeng run 将在 {s.scheduler_tick_seconds:g} 秒内开始发送。")
            return
        await follow(a.db, rnd.id, timeout=timeout)  # type: ignore[arg-type]

    _run(s, body)


async def follow(db: Any, round_id: int, *, timeout: float) -> None:
    """A progress bar over the round's delivery rows while the bot sends them."""
    # Imported here (as Table above): `qingfeng run` imports this module and needs no progress bar.
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from sqlalchemy import func
    from sqlmodel import select

    from bot.storage.models import Delivery, DeliveryStatus

    async def counts() -> dict[str, int]:
        async with db.session() as session:
            rows = (await session.exec(select(Delivery.status, func.count()).where(Delivery.round_id == round_id)
                                       .group_by(Delivery.status))).all()
        return {status: n for status, n in rows}

    waiting = (DeliveryStatus.pending, DeliveryStatus.sending)
    started = _time.monotonic()
    with Progress(TextColumn("[bold]推送"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as bar:
        task = bar.add_task("push", total=None)
        while True:
            c = await counts()
            total, left = sum(c.values()), sum(c.get(w, 0) for w in waiting)
            bar.update(task, completed=total - left, total=total)
            if left == 0 or _time.monotonic() - started > timeout:
                break
            await asyncio.sleep(0.5)
    line = f"已发送 {c.get(DeliveryStatus.sent, 0)} 人"
    if c.get(DeliveryStatus.failed):
        line += f"，失败 {c[DeliveryStatus.failed]} 人（稍后自动重试）"
    if c.get(DeliveryStatus.blocked):
        line += f"，{c[DeliveryStatus.blocked]} 人的账号已停用"
    line += f"；等待超时，仍有 {left} 人未发送完，qingfeng run 会继续发送。" if left else "。"
    console.print(line)
