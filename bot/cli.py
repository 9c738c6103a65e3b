"""The `qingfeng` command line."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from bot.config import ConfigError, Settings, load_settings
from scheduler.cli import campaign_command, push_now, schedule_app

app = typer.Typer(help="清风 Qingfeng — 廉政教育学习助手", no_args_is_help=True, add_completion=False)
db_app = typer.Typer(help="数据库迁移", no_args_is_help=True)
bank_app = typer.Typer(help="题库", no_args_is_help=True)
org_app = typer.Typer(help="组织与成员", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(bank_app, name="bank")
app.add_typer(org_app, name="org")
dev_app = typer.Typer(help="开发与基准测试工具", no_args_is_help=True)
app.add_typer(dev_app, name="dev")
app.add_typer(schedule_app, name="schedule")
app.command("campaign")(campaign_command)

console = Console()
err = Console(stderr=True)


def settings(**overrides: object) -> Settings:
    try:
        return load_settings(**overrides)
    except ConfigError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None


def _logging(s: Settings) -> None:
    from bot.logs import setup_logging  # plain or JSON lines, tokens and chat ids masked

    setup_logging(s.log_level, json_lines=s.log_json)


# --- db ----------------------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade() -> None:
    """把数据库升级到最新结构（alembic upgrade head）。"""
    from bot.storage import migrate

    s = settings()
    migrate.upgrade(s.database_url)
    console.print("数据库已是最新结构。")


# --- bank --------------------------------------------------------------------------------------


@bank_app.command("check")
def bank_check(
    paths: Annotated[list[Path], typer.Argument(help="题库目录（含 vocabulary.yaml）")],
    strict: Annotated[bool, typer.Option(help="覆盖不足（每主题已审核题目、案例类别）也算错误")] = False,
) -> None:
    """校验题库：列出全部问题（文件:行 [题号]），有错误时以非零状态退出。"""
    from question_bank import BankError, load_bank
    from question_bank.checks import quality_report

    failed = False
    for path in paths:
        try:
            bank = load_bank(path)
        except BankError as exc:
            failed = True
            for p in exc.problems:
                print(p, file=sys.stderr)
            print(f"{path}: {len(exc.problems)} 个问题，题库未加载。", file=sys.stderr)
            continue
        report = quality_report(bank, strict=strict)
        print(report.render())
        failed = failed or bool(report.errors)
    raise typer.Exit(1 if failed else 0)


FORMATS = {"xlsx": ".xlsx", "moodle": ".xml", "gift": ".gift"}


@bank_app.command("export")
def bank_export(
    fmt: Annotated[str, typer.Option("--format", help="xlsx（Excel 模板）/ moodle（Moodle XML）/ gift")] = "xlsx",
    out: Annotated[Path | None, typer.Option(help="输出文件")] = None,
    bank: Annotated[Path, typer.Option(help="题库目录")] = Path("question_bank"),
) -> None:
    """导出题库：Excel 模板（含现有题目）、Moodle XML 或 GIFT。"""
    from question_bank import BankError, load_bank
    from question_bank.formats.gift import export_gift
    from question_bank.formats.moodle import export_moodle
    from question_bank.formats.xlsx import export_xlsx

    if fmt not in FORMATS:
        err.print(f"[red]未知格式 {fmt}（可用：{'、'.join(FORMATS)}）[/red]")
        raise typer.Exit(2)
    try:
        b = load_bank(bank)
    except BankError as exc:
        print(exc, file=sys.stderr)
        raise typer.Exit(1) from None
    target = out or Path(f"question_bank_export{FORMATS[fmt]}")
    items = sorted(b.items.values(), key=lambda i: (list(b.vocabulary.topics).index(i.topics[0]), i.id))
    {"xlsx": export_xlsx, "moodle": export_moodle, "gift": export_gift}[fmt](items, target, b.vocabulary)
    console.print(f"已导出 {len(items)} 道题到 {target}")


@bank_app.command("import")
def bank_import(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help=".xlsx / .xml（Moodle）/ .gift")],
    out: Annotated[Path | None, typer.Option(help="写入的 YAML 文件（默认 question_bank/items/imported.yaml）")] = None,
    bank: Annotated[Path, typer.Option(help="题库目录")] = Path("question_bank"),
) -> None:
    """导入 Excel / Moodle XML / GIFT 题目为 YAML，校验规则与题库相同，出错时逐行列出且不写入。"""
    from question_bank import BankError, load_bank
    from question_bank.formats.common import ImportError_, items_to_yaml
    from question_bank.formats.gift import import_gift
    from question_bank.formats.moodle import import_moodle
    from question_bank.formats.xlsx import import_xlsx

    readers = {".xlsx": import_xlsx, ".xml": import_moodle, ".gift": import_gift, ".txt": import_gift}
    reader = readers.get(file.suffix.lower())
    if reader is None:
        err.print(f"[red]不支持的文件类型 {file.suffix}（可用：.xlsx .xml .gift）[/red]")
        raise typer.Exit(2)
    target = out or bank / "items" / "imported.yaml"
    try:
        b = load_bank(bank)
        items = reader(file, b.vocabulary)
    except (ImportError_, BankError) as exc:
        print(exc, file=sys.stderr)
        print(f"{file}: 未导入任何题目。", file=sys.stderr)
        raise typer.Exit(1) from None
    in_target = {i for i, (f, _) in b.origins.items() if Path(f).name == target.name and i in b.items}
    clashes = [i.id for i in items if i.id in b.origins and i.id not in in_target]
    if clashes:
        print(f"以下题号已在题库的其他文件中，请改号或用 --out 指向该文件：{'、'.join(clashes)}", file=sys.stderr)
        raise typer.Exit(1)
    # Merge into the target file: same id → updated in place, new ids appended; nothing is dropped.
    merged = {i: b.items[i] for i in sorted(in_target, key=lambda i: b.origins[i][1])}
    merged.update({i.id: i for i in items})
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(items_to_yaml(merged.values()), encoding="utf-8")
    console.print(f"已导入 {len(items)} 道题到 {target}；请运行 qingfeng bank check {bank} 复查。")


# --- org ---------------------------------------------------------------------------------------


@org_app.command("import")
def org_import(
    file: Annotated[Path | None, typer.Argument(exists=True, dir_okay=False, help="花名册 .csv 或 .xlsx")] = None,
    from_wecom: Annotated[bool, typer.Option(
        "--from-wecom", help="从企业微信通讯录导入（部门→组织，成员直接绑定）")] = False,
    wecom_root: Annotated[int | None, typer.Option("--wecom-root", help="只导入该企业微信部门 ID 及其下级")] = None,
) -> None:
    """导入花名册：建立组织树与成员，为新成员生成一次性邀请码；或 --from-wecom 读取企业微信通讯录。"""
    from rich.table import Table  # only this command prints a table; `run` starts without it

    from bot.app import start_app
    from bot.core.roster import RosterError, import_roster

    s = settings()
    if from_wecom:
        if file is not None:
            err.print("[red]请在花名册文件与 --from-wecom 之间二选一。[/red]")
            raise typer.Exit(2)
        _import_wecom(s, wecom_root)
        return
    if file is None:
        err.print("[red]请给出花名册文件（.csv / .xlsx），或使用 --from-wecom。[/red]")
        raise typer.Exit(2)

    async def go() -> None:
        a = await start_app(s)
        try:
            async with a.db.session() as session:
                report = await import_roster(session, file, now=datetime.now(UTC), ttl_days=s.invite_ttl_days)
        finally:
            await a.db.dispose()
        console.print(f"新增 {report.created} 人，更新 {report.updated} 人。")
        if report.codes:
            table = Table("姓名", "组织", "邀请码", title=f"邀请码（{s.invite_ttl_days} 天内有效，一次性）")
            for row in report.codes:
                table.add_row(*row)
            console.print(table)

    try:
        asyncio.run(go())
    except RosterError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None


def _import_wecom(s: Settings, root: int | None) -> None:
    from bot.app import start_app
    from bot.channels.wecom.component import wecom_caller
    from bot.channels.wecom_directory import DirectoryError, WeComDirectory, import_directory

    async def go() -> None:
        a = await start_app(s)
        api = wecom_caller(s, a)
        try:
            async with a.db.session() as session:
                r = await import_directory(session, WeComDirectory(api), root=root, now=datetime.now(UTC))
        finally:
            await api.close()
            await a.db.dispose()
        for note in r.notes:
            console.print(note, soft_wrap=True)
        console.print(f"企业微信通讯录：{r.departments} 个部门；新增 {r.created} 人，更新 {r.updated} 人，"
                      f"停用 {r.deactivated} 人；新绑定企业微信 {r.identities_bound} 人。", soft_wrap=True)
        if r.unreadable or r.not_in_directory:
            console.print(f"无法读取详情 {r.unreadable} 人；已绑定企业微信但不在本次导入范围内 {r.not_in_directory} 人"
                          "（未作改动）。", soft_wrap=True)

    try:
        asyncio.run(go())
    except (DirectoryError, ConfigError) as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None


@org_app.command("invite")
def org_invite(member: Annotated[str, typer.Argument(help="成员姓名或工号")]) -> None:
    """为某成员重新生成邀请码（旧码仍按原有效期可用）。"""
    from bot.app import start_app
    from bot.core.invites import issue_code

    s = settings()

    async def go() -> None:
        a = await start_app(s)
        try:
            async with a.db.session() as session:
                m = await _find_member(session, member)
                code = await issue_code(session, m, now=datetime.now(UTC), ttl_days=s.invite_ttl_days)
                await session.commit()
            console.print(f"{m.name} 的邀请码：[bold]{code}[/bold]（{s.invite_ttl_days} 天内有效）")
        finally:
            await a.db.dispose()

    asyncio.run(go())


async def _find_member(session, who: str):  # type: ignore[no-untyped-def]
    from sqlmodel import or_, select

    from bot.storage.models import Member

    rows = (await session.exec(select(Member).where(or_(Member.name == who, Member.external_key == who)))).all()
    if not rows:
        err.print(f"[red]没有找到成员「{who}」[/red]")
        raise typer.Exit(1)
    if len(rows) > 1:
        err.print(f"[red]有 {len(rows)} 位成员叫「{who}」，请改用工号[/red]")
        raise typer.Exit(1)
    return rows[0]


# --- chat / demo / run -------------------------------------------------------------------------


@app.command()
def chat(member: Annotated[str, typer.Option("--member", "-m", help="以哪位成员的身份对话（姓名或工号）")]) -> None:
    """控制台对话：与聊天平台相同的命令（/quiz、A、/me、/report、/case、/help）。"""
    from bot.app import start_app
    from bot.channels.console import chat_loop, console_sender

    s = settings()

    async def go() -> None:
        a = await start_app(s)
        try:
            async with a.db.session() as session:
                m = await _find_member(session, member)
            sender = await console_sender(a.service, m)
            await chat_loop(a.service, sender)
        finally:
            await a.db.dispose()

    asyncio.run(go())


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="报告输出目录")] = Path("demo-output"),
    database: Annotated[Path, typer.Option(help="演示用 SQLite 文件（每次重建）")] = Path("var/demo.db"),
) -> None:
    """演示：新建 SQLite 数据库、1 个机关党委 3 个支部 60 名党员，模拟 4 周答题并输出支部报告。"""
    # Imported here (as Table above): rich's progress and table modules are not needed to start `run`.
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from bot.demo import ROUNDS, run_demo

    s = settings(database_url=f"sqlite+aiosqlite:///{database}")
    logging.basicConfig(level=logging.WARNING)
    with Progress(TextColumn("[bold]模拟答题"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=False) as bar:
        task = bar.add_task("demo", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        result = asyncio.run(run_demo(s, out_dir=out, progress=progress))
    console.print(result.text, markup=False, highlight=False)
    console.print(f"\n共模拟 {ROUNDS} 轮、{result.answers} 份作答。报告已写入 {result.out_dir}/")


@app.command()
def push(
    org: Annotated[str, typer.Option("--org", help="组织名称或路径")],
    now: Annotated[bool, typer.Option("--now", help="立即开启一轮推送")] = False,
    items: Annotated[int | None, typer.Option(help="题目数量")] = None,
    days: Annotated[int | None, typer.Option(help="作答期限（天）")] = None,
    wait: Annotated[bool, typer.Option(help="显示运行中的 qingfeng run 发送本轮的进度")] = True,
    timeout: Annotated[float, typer.Option(help="最多等待发送完成的秒数")] = 600,
) -> None:
    """立即为某组织（含下级）开启一轮学习推送，由运行中的 qingfeng run 发送并显示进度。"""
    if not now:
        err.print("请加 --now 确认立即推送（定时推送见 qingfeng schedule）。")
        raise typer.Exit(2)
    push_now(settings(), org=org, items=items, days=days, wait=wait, timeout=timeout)


@app.command()
def report(
    org: Annotated[str, typer.Option("--org", help="组织名称或路径")],
    period: Annotated[str, typer.Option(
        help="本周/上周/本月/上月/最近4周/全部/本轮/第12轮/2026-11/2026-11-01~2026-11-30")] = "全部",
    fmt: Annotated[str, typer.Option("--format", help="text / xlsx / docx / html")] = "text",
    out: Annotated[Path | None, typer.Option("--out", help="输出文件（text 默认输出到屏幕）")] = None,
) -> None:
    """输出某组织某期间的答题统计报告：文本、Excel、Word 或 HTML。"""
    from bot.app import start_app
    from bot.core.errors import QingfengError
    from bot.core.orgs import find_org
    from bot.reports.document import build_document
    from bot.reports.export import FORMATS, to_text, write_report
    from bot.reports.period import LATEST_ROUND_WORDS, parse_period
    from bot.reports.report import full_report
    from bot.reports.stats import latest_round_period

    if fmt not in FORMATS:
        err.print(f"[red]不支持的格式「{fmt}」，可选：{' / '.join(FORMATS)}[/red]")
        raise typer.Exit(2)
    s = settings()
    now = datetime.now(UTC)
    p = None if period in LATEST_ROUND_WORDS else parse_period(period, now=now, tz=s.tz)
    if p is None and period not in LATEST_ROUND_WORDS:
        err.print(f"[red]无法识别的期间「{period}」[/red]")
        raise typer.Exit(2)
    target_file = out if out is not None or fmt == "text" else Path(f"report.{fmt}")

    async def go() -> None:
        a = await start_app(s)
        try:
            async with a.db.session() as session:
                target = await find_org(session, org)
                chosen = p or await latest_round_period(session, target, now)
                if chosen is None:
                    err.print(f"「{target.name}」还没有推送过学习题，暂无统计。")
                    raise typer.Exit(1)
                result = await full_report(session, org=target, period=chosen, min_group=s.report_min_group,
                                           tz=s.tz, topic_names=a.bank.vocabulary.topics, now=now)
        except QingfengError as exc:
            err.print(f"[red]{exc.message}[/red]")
            raise typer.Exit(1) from None
        finally:
            await a.db.dispose()
        if target_file is None:
            typer.echo(to_text(build_document(result, s.tz, with_charts=False)), nl=False)
            return
        try:
            written = write_report(result, fmt, target_file, s.tz)
        except OSError as exc:
            err.print(f"[red]无法写入 {target_file}：{exc.strerror or exc}[/red]")
            raise typer.Exit(1) from None
        console.print(f"报告已写入 {written}")

    asyncio.run(go())


@app.command()
def run() -> None:
    """启动已配置的全部组件：聊天渠道、HTTP 服务、定时推送。"""
    from bot.runtime import serve

    s = settings()
    _logging(s)
    asyncio.run(serve(s, settle=True))


@dev_app.command("seed")
def dev_seed(
    members: Annotated[int, typer.Option(help="成员人数")] = 10_000,
    answers: Annotated[int, typer.Option(help="作答总数（约）")] = 1_000_000,
    branches: Annotated[int, typer.Option(help="支部数")] = 300,
    rounds: Annotated[int, typer.Option(help="轮数")] = 50,
) -> None:
    """向一个新数据库批量写入基准测试数据（组织、成员、轮次、推送、作答）。"""
    from bot.app import start_app
    from bot.dev.seed import seed

    s = settings()

    async def go() -> None:
        a = await start_app(s)
        try:
            report = await seed(a.db, members=members, answers=answers, branches=branches, rounds=rounds,
                                progress=lambda msg: console.print(msg))
        finally:
            await a.db.dispose()
        console.print(f"完成：组织 {report.orgs}，成员 {report.members}，轮次 {report.rounds}，"
                      f"推送 {report.deliveries}，作答 {report.answers}")

    try:
        asyncio.run(go())
    except RuntimeError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None


# --- operations: doctor, backup, personal-data requests (deploy docs: docs/deploy-*.md) ----------


@app.command()
def doctor(
    timeout: Annotated[float, typer.Option(help="每项网络检查的超时（秒）")] = 5.0,
) -> None:
    """检查配置、题库、数据库与迁移、中文字体和各渠道凭据，逐项提示如何修复。"""
    from bot.logs import redact
    from bot.ops.doctor import Check, Status, render, run_checks

    try:
        s = load_settings()
    except ConfigError as exc:
        fix = "按提示修改环境变量或配置文件（见 deploy/.env.example）"
        print(render([Check("配置", Status.fail, redact(str(exc)), fix)]))
        raise typer.Exit(1) from None
    checks = asyncio.run(run_checks(s, timeout=timeout))
    print(render(checks))
    raise typer.Exit(1 if any(c.status is Status.fail for c in checks) else 0)


@app.command()
def backup(
    out: Annotated[Path | None, typer.Option("--out", help="备份文件（默认：数据库所在目录的 backups/ 下）")] = None,
) -> None:
    """备份数据库：SQLite 用在线备份（服务无需停止）；PostgreSQL 给出 pg_dump 命令。"""
    from bot.ops.backup import BackupError, backup_sqlite, default_target, pg_dump_hint, sqlite_file

    s = settings()
    try:
        source = sqlite_file(s.database_url)
        if source is None:
            print(pg_dump_hint(s.database_url))
            raise typer.Exit(2)
        result = backup_sqlite(source, out or default_target(source))
    except BackupError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    rows = sum(result.tables.values())
    console.print(f"已备份到 {result.path}（{result.size / 1e6:.1f} MB，{len(result.tables)} 张表 {rows} 行，"
                  "完整性检查通过）")


def _operator() -> str:
    import getpass

    try:
        return f"cli:{getpass.getuser()}"[:80]
    except Exception:  # no passwd entry (containers)
        return "cli"


@app.command("export-member-data")
def export_member_data(
    member: Annotated[str, typer.Argument(help="成员工号、姓名（须唯一）或 #编号")],
    out: Annotated[Path | None, typer.Option("--out", help="输出 JSON 文件；- 表示标准输出")] = None,
) -> None:
    """导出某成员的全部个人数据（JSON），用于个人信息查阅、复制请求。"""
    import json

    from bot.ops.member_data import MemberDataError, export_member, find_member
    from bot.storage.db import Database

    s = settings()

    async def go() -> dict[str, object]:
        db = Database(s.database_url)
        try:
            async with db.session() as session:
                m = await find_member(session, member)
                return await export_member(session, m, now=datetime.now(UTC))
        finally:
            await db.dispose()

    try:
        data = asyncio.run(go())
    except MemberDataError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    text = json.dumps(data, ensure_ascii=False, indent=2)
    if out is not None and str(out) == "-":
        print(text)
        return
    target = out or Path(f"member-{data['member']['id']}-data.json")  # type: ignore[index]
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # personal data: owner only
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text + "\n")
    console.print(f"已导出到 {target}（含个人信息，请妥善保管）")


@app.command("erase-member")
def erase_member_cmd(
    member: Annotated[str, typer.Argument(help="成员工号、姓名（须唯一）或 #编号")],
    yes: Annotated[bool, typer.Option("--yes", help="不再询问，直接注销")] = False,
) -> None:
    """注销成员：匿名化成员记录，删除聊天账号绑定、邀请码、复习卡片与案例推送；答题与推送记录保留，统计不变。"""
    from sqlmodel import func, select

    from bot.ops.member_data import MemberDataError, erase_member, find_member
    from bot.storage.db import Database
    from bot.storage.models import Answer, ChannelIdentity

    s = settings()

    async def go() -> None:
        db = Database(s.database_url)
        try:
            async with db.session() as session:
                m = await find_member(session, member)
                if not m.active and m.name.startswith("已注销成员"):
                    console.print(f"成员 #{m.id} 已注销过。")
                    return
                ids = (await session.exec(select(func.count()).where(ChannelIdentity.member_id == m.id))).one()
                answers = (await session.exec(select(func.count()).where(Answer.member_id == m.id))).one()
                console.print(f"将注销「{m.name}」（#{m.id}）：解除 {ids} 个聊天账号绑定，"
                              f"删除邀请码、复习卡片与案例推送；{answers} 条作答记录匿名保留。")
                if not yes and not typer.confirm("此操作不可撤销，确认注销吗？", default=False):
                    console.print("已取消，未做任何修改。")
                    raise typer.Exit(1)
                mid = m.id
                deleted = await erase_member(session, m, now=datetime.now(UTC), actor=_operator())
            console.print(f"已注销，成员记录现为「已注销成员#{mid}」。删除：" +
                          "，".join(f"{k} {v}" for k, v in deleted.items()))
        finally:
            await db.dispose()

    try:
        asyncio.run(go())
    except MemberDataError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None


def main() -> None:
    from bot.logs import setup_logging

    # Every command: warnings and errors on stderr with secrets masked (`run` re-configures).
    setup_logging("WARNING")
    try:
        app()
    except ConfigError as exc:
        err.print(f"[red]{exc}[/red]")
        sys.exit(2)


if __name__ == "__main__":
    main()
