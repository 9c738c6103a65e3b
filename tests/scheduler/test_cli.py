"""`qingfeng schedule`, `qingfeng campaign` and `qingfeng push` as an operator types them (in-process
CLI runner on a real SQLite file; the push progress test runs a real `qingfeng run` beside it)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlmodel import select
from typer.testing import CliRunner

from bot.app import start_app
from bot.cli import app as cli
from bot.storage.models import Schedule
from tests.conftest import TEST_BANK, make_settings
from tests.scheduler.procs import bot_env, start_bot, stop_bot, wait_for

ROSTER = ("姓名,组织,角色,标签\n"
          "甲,机关党委/第一支部,支部书记,\n乙,机关党委/第一支部,党员,新提任\n丙,机关党委/第一支部,党员,\n"
          "丁,机关党委/第二支部,支部书记,\n戊,机关党委/第二支部,党员,新提任\n")


@pytest.fixture
def qf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Run `qingfeng …` in-process against a fresh SQLite file, as an operator would."""
    monkeypatch.chdir(tmp_path)
    env = {"QINGFENG_DATABASE_URL": f"sqlite:///{tmp_path / 'q.db'}", "QINGFENG_BANK_PATH": str(TEST_BANK),
           "QINGFENG_CONFIG": "", "COLUMNS": "200"}
    for key in [k for k in __import__("os").environ if k.startswith("QINGFENG_")]:
        monkeypatch.delenv(key)
    runner = CliRunner()

    def run(*args: str):  # type: ignore[no-untyped-def]
        return runner.invoke(cli, list(args), env={k: v for k, v in env.items() if v})

    (tmp_path / "r.csv").write_text(ROSTER, "utf-8")
    assert run("org", "import", "r.csv").exit_code == 0
    run.db_url = env["QINGFENG_DATABASE_URL"]  # type: ignore[attr-defined]
    return run


def test_set_show_and_unset_schedules_with_inheritance(qf):
    empty = qf("schedule", "show")
    assert empty.exit_code == 0 and "尚未设置任何推送计划" in empty.output
    r = qf("schedule", "set", "--org", "机关党委", "--kind", "每周学习", "--day", "周一", "--time", "9:00",
           "--items", "3", "--deadline", "周日 20:00")
    assert r.exit_code == 0, r.output
    assert "「机关党委」的每周学习：周一 09:00 推送 3 题，周日 20:00 截止（时区 Asia/Shanghai）" in r.output
    r = qf("schedule", "set", "--org", "第一支部", "--kind", "weekly_round", "--time", "10:00", "--tz", "Europe/Berlin")
    assert r.exit_code == 0 and "周一 10:00 推送 默认题数" in r.output and "Europe/Berlin" in r.output
    r = qf("schedule", "set", "--org", "机关党委", "--kind", "每周学习", "--items", "4")  # changes only the count
    assert "周一 09:00 推送 4 题，周日 20:00 截止" in r.output
    assert qf("schedule", "set", "--org", "第二支部", "--kind", "提醒", "--off").exit_code == 0
    assert qf("schedule", "set", "--org", "机关党委", "--kind", "reminder", "--hours-before", "24,2").exit_code == 0
    mine = qf("schedule", "show", "--org", "第一支部").output
    assert "本级设置" in mine and "截止前 24、2 小时提醒未作答者" in mine and "继承自「机关党委」" in mine
    assert "未设置" in mine  # no case push anywhere
    assert "22:00–07:30 不推送" in mine and "默认" in mine
    theirs = qf("schedule", "show", "--org", "第二支部").output
    assert "停用" in theirs and "周一 09:00 推送 4 题" in theirs
    listing = qf("schedule", "show").output
    assert "机关党委/第一支部" in listing and "Europe/Berlin" in listing
    r = qf("schedule", "unset", "--org", "第一支部", "--kind", "weekly_round")
    assert r.exit_code == 0 and "恢复继承" in r.output
    assert "继承自「机关党委」" in qf("schedule", "show", "--org", "第一支部").output


@pytest.mark.parametrize(("args", "code", "words"), [
    (["--kind", "每周学习", "--day", "周八"], 2, "无法识别的星期「周八」"),
    (["--kind", "每周学习", "--time", "25:00"], 2, "时间「25:00」格式不对"),
    (["--kind", "reminder", "--time", "09:00"], 2, "不使用这些选项：time"),
    (["--kind", "nonsense"], 2, "未知的计划类型「nonsense」"),
    (["--kind", "免打扰", "--quiet", "22:00"], 2, "请写成 22:00-07:30"),
    (["--kind", "每周学习", "--tz", "Mars/Olympus"], 2, "未知时区「Mars/Olympus」"),
    (["--kind", "每周学习", "--deadline", "明天"], 2, "截止时间「明天」格式不对"),
])
def test_bad_schedule_input_gets_a_polite_message_and_changes_nothing(qf, args, code, words):
    r = qf("schedule", "set", "--org", "机关党委", *args)
    assert r.exit_code == code and words in r.output, r.output
    assert "尚未设置任何推送计划" in qf("schedule", "show").output


def test_unknown_organisation(qf):
    r = qf("schedule", "set", "--org", "不存在", "--kind", "每周学习")
    assert r.exit_code == 1 and "没有找到组织「不存在」" in r.output


def test_campaign_for_a_cohort(qf):
    bad = qf("campaign", "--org", "机关党委", "--tag", "新提任", "--items", "t-single-001,nope",
             "--deadline", "2099-12-05 20:00")
    assert bad.exit_code == 2 and "题目「nope」不存在" in bad.output
    nobody = qf("campaign", "--org", "机关党委", "--tag", "关键岗位", "--items", "t-single-001",
                "--deadline", "2099-12-05 20:00")
    assert nobody.exit_code == 2 and "没有带「关键岗位」标签的在册成员" in nobody.output
    past = qf("campaign", "--org", "机关党委", "--items", "t-single-001", "--deadline", "2020-01-01 20:00")
    assert past.exit_code == 2 and "截止时间必须晚于" in past.output
    late = qf("campaign", "--org", "机关党委", "--items", "t-single-001", "--at", "2020-01-01 09:00",
              "--deadline", "2099-01-01 20:00")
    assert late.exit_code == 2 and "推送时间已过" in late.output
    garbled = qf("campaign", "--org", "机关党委", "--items", "t-single-001", "--deadline", "下周五")
    assert garbled.exit_code == 2 and "时间「下周五」格式不对" in garbled.output
    ok = qf("campaign", "--org", "机关党委", "--tag", "新提任", "--items", "t-single-001,t-judge-001",
            "--deadline", "2099-12-05 20:00", "--title", "新提任干部专题测试")
    assert ok.exit_code == 0, ok.output
    assert "2 道题，面向「机关党委」「新提任」人群（2 人）" in ok.output and "12月05日 20:00 截止" in ok.output

    async def rows() -> list[Schedule]:
        a = await start_app(make_settings(qf.db_url), upgrade=False)
        try:
            async with a.db.session() as s:
                return list((await s.exec(select(Schedule))).all())
        finally:
            await a.db.dispose()

    (row,) = asyncio.run(rows())
    assert (row.kind, row.spec["tag"], row.spec["items"]) == ("campaign", "新提任", ["t-single-001", "t-judge-001"])
    assert "新提任干部专题测试" in qf("schedule", "show").output


def test_push_without_a_running_bot_keeps_the_round_for_later(qf):
    r = qf("push", "--org", "第一支部", "--now", "--items", "2")
    assert r.exit_code == 0, r.output
    assert "2 道题" in r.output and ("未检测到运行中的 qingfeng run" in r.output or "免打扰时段" in r.output)


@pytest.mark.slow
def test_push_follows_the_running_bot_with_a_progress_bar(qf, tmp_path, webhook):
    qf("schedule", "set", "--org", "机关党委", "--kind", "免打扰", "--off")  # the test may run at night
    env = bot_env(qf.db_url.replace("sqlite://", "sqlite+aiosqlite://"), webhook.url)

    async def bind() -> int:
        from bot.storage.models import Member
        from tests.scheduler.support import bind_all

        a = await start_app(make_settings(qf.db_url), upgrade=False)
        try:
            async with a.db.session() as s:
                ids = [m.id for m in (await s.exec(select(Member))).all()]
            await bind_all(a, ids)
            return len(ids)
        finally:
            await a.db.dispose()

    people = asyncio.run(bind())
    proc = start_bot(env, tmp_path, tmp_path / "bot.log")
    try:
        asyncio.run(until_a_bot_runs(qf.db_url))
        r = qf("push", "--org", "机关党委", "--now", "--items", "1")
    finally:
        assert stop_bot(proc) == 0
    assert r.exit_code == 0, r.output
    assert "推送" in r.output and f"{people}/{people}" in r.output and f"已发送 {people} 人。" in r.output


async def until_a_bot_runs(db_url: str) -> None:
    from datetime import UTC, datetime

    from scheduler import instances

    a = await start_app(make_settings(db_url), upgrade=False)
    try:
        async def alive() -> bool:
            return bool(await instances.live_owners(a.db, now=datetime.now(UTC)))

        await wait_for(alive, timeout=120, what="qingfeng run to start")
    finally:
        await a.db.dispose()
