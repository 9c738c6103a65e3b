"""Telegram end to end: the real `qingfeng run` runtime (PTB Application, polling or webhook)
against the fake Bot API over real HTTP, on SQLite and PostgreSQL.

Every step waits on what the fake Bot API recorded (bounded polling), never on a fixed sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import col, func, select
from telegram import Update

from bot.app import App, start_app
from bot.channels.telegram import TelegramComponent, TelegramMessenger, build_application
from bot.channels.telegram.handlers import PRIVATE_ONLY
from bot.config import Settings, load_settings
from bot.core.invites import issue_code
from bot.core.push import send_round
from bot.runtime import serve
from bot.storage.models import Answer, BankItem, ChannelIdentity, Member, ReviewCard, Round
from tests.conftest import TEST_BANK
from tests.factories import OrgTree, build_org, open_test_round
from tests.fakes.telegram_api import TOKEN, FakeTelegram, StoredMessage

ITEMS = ["t-single-001", "t-multiple-001", "t-judge-001"]  # keys: C, ACD, A (正确)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tg_settings(database_url: str, fake: FakeTelegram, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": database_url, "bank_path": TEST_BANK, "telegram_token": TOKEN,
        "telegram_base_url": fake.base_url, "http_port": free_port(), "telegram_max_rate": 1000,
        "telegram_retry_backoff": 0.01, "report_min_group": 1, **overrides}
    return load_settings(**values)


@pytest.fixture
def fake() -> AsyncIterator[FakeTelegram]:
    with FakeTelegram() as f:
        yield f  # type: ignore[misc]


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[None]:
    """`qingfeng run` in this event loop: the same `serve` the CLI calls."""
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(serve(settings, stop=stop, ready=ready))
    waiter = asyncio.create_task(ready.wait())
    await asyncio.wait({task, waiter}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        waiter.cancel()
        task.result()  # re-raise the start-up failure
    assert ready.is_set(), "runtime did not become ready"
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


@contextlib.asynccontextmanager
async def data_app(settings: Settings) -> AsyncIterator[App]:
    a = await start_app(settings)
    try:
        yield a
    finally:
        await a.db.dispose()


async def new_code(app: App, member: Member, *, days_ago: int = 0) -> str:
    async with app.db.session() as s:
        code = await issue_code(s, member, now=app.service.clock() - timedelta(days=days_ago), ttl_days=30)
        await s.commit()
    return code


def texts(fake: FakeTelegram, chat_id: int) -> list[str]:
    return [m.text or m.caption or "" for m in fake.messages(chat_id)]


async def reply_containing(fake: FakeTelegram, chat_id: int, needle: str, *, after: int = 0) -> str:
    """Wait for a message to `chat_id` (index >= after) whose text contains `needle`."""
    def found() -> str | None:
        return next((t for t in texts(fake, chat_id)[after:] if needle in t), None)
    return await fake.wait_for(found, what=f"a reply containing {needle!r}")


async def bind(fake: FakeTelegram, app: App, member: Member, user_id: int) -> None:
    code = await new_code(app, member)
    before = len(fake.messages(user_id))
    fake.send_text(user_id, f"/start {code}")  # what a t.me/<bot>?start=CODE deep link sends
    await reply_containing(fake, user_id, "绑定成功", after=before)


async def answers_of(app: App, member: Member) -> list[tuple[str, str, bool]]:
    async with app.db.session() as s:
        rows = (await s.exec(select(Answer).where(Answer.member_id == member.id)
                             .order_by(col(Answer.id)))).all()
    return [(r.item_id, r.choice, r.correct) for r in rows]


def cards(fake: FakeTelegram, chat_id: int) -> list[StoredMessage]:
    return [m for m in fake.messages(chat_id) if m.reply_markup]


async def edited(fake: FakeTelegram, message: StoredMessage, *, edits: int = 1) -> StoredMessage:
    def current() -> StoredMessage | None:
        m = next(x for x in fake.messages(message.chat_id) if x.message_id == message.message_id)
        return m if m.edits >= edits else None
    return await fake.wait_for(current, what="the message edit")


def callback_answers(fake: FakeTelegram) -> list[str]:
    return [c.params.get("text") or "" for c in fake.calls("answerCallbackQuery")]


def last_answer(fake: FakeTelegram) -> str:
    found = callback_answers(fake)
    return found[-1] if found else ""


async def push(settings: Settings, app: App, round_id: int) -> None:
    """A push through the project's Telegram messenger (what the scheduler calls)."""
    async with TelegramMessenger(build_application(settings).bot, app.db, settings) as messenger:
        stats = await send_round(app.db, round_id, {"telegram": messenger})
    assert stats.failed == 0 and stats.blocked == 0


async def setup_tree(app: App) -> tuple[OrgTree, dict[str, Member], dict[str, int]]:
    tree = await build_org(app, per_branch=2, branches=2, bind=False)
    b1, b2 = tree.branches
    people = {"sec": tree.secretaries[0], "m1": tree.members[b1.id][0], "m2": tree.members[b1.id][1],
              "other": tree.members[b2.id][0]}
    users = {"sec": 5001, "m1": 5002, "m2": 5003, "other": 5004}
    return tree, people, users


# --- the whole member journey --------------------------------------------------------------------


async def test_bind_push_answer_every_type_case_me_report(database_url, fake):
    settings = tg_settings(database_url, fake)
    async with data_app(settings) as app, running(settings):
        tree, people, users = await setup_tree(app)
        assert [c["command"] for c in fake.commands] == ["start", "quiz", "me", "case", "report", "help"]
        for key in ("sec", "m1", "other"):
            await bind(fake, app, people[key], users[key])
        m1, u1 = people["m1"], users["m1"]

        # Binding errors get clear replies and bind nothing.
        fake.send_text(6001, "/start NOSUCHCODE")
        await reply_containing(fake, 6001, "邀请码无效")
        used = await new_code(app, people["m2"])
        fake.send_text(users["m2"], f"/start {used}")
        await reply_containing(fake, users["m2"], "绑定成功")
        fake.send_text(6002, f"/start {used}")
        await reply_containing(fake, 6002, "已被使用")
        expired = await new_code(app, people["m2"], days_ago=31)
        fake.send_text(6003, f"/start {expired}")
        await reply_containing(fake, 6003, "已过期")

        rnd = await open_test_round(app, tree.branches[0], ITEMS)
        await push(settings, app, rnd.id)
        intro, *pushed = fake.messages(u1)[-4:]
        assert "共 3 道廉政学习题" in (intro.text or "") and not intro.reply_markup
        assert ["【第1/3题·单选题】" in (pushed[0].text or ""), "【第2/3题·多选题】" in (pushed[1].text or ""),
                "【第3/3题·判断题】" in (pushed[2].text or "")] == [True, True, True]
        single, multiple, judge = pushed

        # /quiz lists the unanswered items again, each with its keyboard.
        before = len(fake.messages(u1))
        fake.send_text(u1, "/quiz")
        await fake.wait_for(lambda: len(fake.messages(u1)) >= before + 3, what="three quiz cards")
        assert [m.text.splitlines()[0] for m in fake.messages(u1)[before:]] == [
            "【第1/3题·单选题】", "【第2/3题·多选题】", "【第3/3题·判断题】"]

        # single: one button per option; the message is edited to show the outcome.
        assert [b["text"] for b in single.buttons()] == ["A. 形式主义", "B. 官僚主义", "C. 本位主义", "D. 奢靡之风"]
        single_a = single.button("A.")["callback_data"]  # kept to be replayed by others below
        fake.press_button(u1, single, "C.")
        done = await edited(fake, single)
        assert "✅ 回答正确" in done.text and "正确答案：C. 本位主义" in done.text
        assert "解析：四风是形式主义" in done.text and "依据：《关于在全党深入开展" in done.text
        assert done.text.startswith("【第1/3题·单选题】") and done.reply_markup is None
        assert "✅ 回答正确" in callback_answers(fake)

        # multiple: toggles re-draw the keyboard; 提交 submits the ticked letters.
        for label, n in (("A.", 1), ("B.", 2), ("B.", 3), ("C.", 4), ("D.", 5)):
            current = next(m for m in fake.messages(u1) if m.message_id == multiple.message_id)
            fake.press_button(u1, current, label)
            current = await edited(fake, multiple, edits=n)
        assert [b["text"] for b in current.buttons()] == [
            "☑ A. 警告", "☐ B. 记过", "☑ C. 留党察看", "☑ D. 开除党籍", "提交（已选 ACD）"]
        fake.press_button(u1, current, "提交")
        done = await edited(fake, multiple, edits=6)
        assert "✅ 回答正确" in done.text and "正确答案：A. 警告；C. 留党察看；D. 开除党籍" in done.text

        # judge, answered wrongly: the related case study follows, then the round is done.
        assert [b["text"] for b in judge.buttons()] == ["✔ 正确", "✘ 错误"]
        fake.press_button(u1, judge, "错误")
        done = await edited(fake, judge)
        assert "❌ 回答错误" in done.text and "正确答案：A. 正确" in done.text
        case_text = await reply_containing(fake, u1, "【警示教育】某局干部收受电子红包")
        assert "来源：教学用综合案例" in case_text
        await reply_containing(fake, u1, "本轮题目已全部作答")
        assert await answers_of(app, m1) == [("t-single-001", "C", True), ("t-multiple-001", "ACD", True),
                                             ("t-judge-001", "B", False)]

        # The /quiz copy of the single item, pressed later: the first answer stands.
        quiz_single = fake.messages(u1)[before]
        fake.press_button(u1, quiz_single, "A.")
        again = await edited(fake, quiz_single)
        assert "以首次作答「C」为准" in last_answer(fake)
        assert "✅ 回答正确！您的答案：C" in again.text
        assert len(await answers_of(app, m1)) == 3

        # Buttons cannot answer for someone else, nor an item not delivered to the presser.
        other, uo = people["other"], users["other"]
        fake.press(uo, single, single_a)
        await fake.wait_for(lambda: "不在您的待答题目中" in last_answer(fake), what="refusal")
        fake.press(uo, single, f"a:{rnd.id}.9:A")
        await fake.wait_for(lambda: callback_answers(fake).count(
            "这道题不在您的待答题目中，无法作答。") == 2, what="second refusal")
        fake.press(uo, single, "a:forged")
        await fake.wait_for(lambda: "按钮已失效" in last_answer(fake), what="stale button")
        fake.press(7777, single, single_a)  # an unbound stranger
        await fake.wait_for(lambda: "还没有绑定身份" in last_answer(fake), what="not bound")
        assert await answers_of(app, other) == []

        # /case, /me, /quiz with nothing left, /help, and an unknown command.
        n = len(fake.messages(u1))
        fake.send_text(u1, "/case")
        assert "某局干部收受电子红包" in await reply_containing(fake, u1, "【警示教育】", after=n)
        fake.send_text(u1, "/me")
        record = await reply_containing(fake, u1, "的学习记录】", after=n)
        assert "累计作答 3 题，答对 2 题，正确率 66.7%" in record
        fake.send_text(u1, "/quiz")
        await reply_containing(fake, u1, "目前没有待作答的题目", after=n)
        fake.send_text(u1, "/frobnicate")
        await reply_containing(fake, u1, "没有看懂这条消息", after=n)

        # /report: the secretary gets the branch summary; a plain member is refused.
        us = users["sec"]
        n = len(fake.messages(us))
        fake.send_text(us, "/report")
        summary = await reply_containing(fake, us, "答题统计】", after=n)
        assert "第一支部" in summary
        photos = await fake.wait_for(lambda: fake.photos(us), timeout=60, what="the chart photos")
        assert photos[0].caption == "各题选项分布" and photos[0].photo.startswith(b"\x89PNG\r\n\x1a\n")
        fake.send_text(u1, "/report")
        await reply_containing(fake, u1, "统计报告仅向支部书记", after=n)
        assert not fake.photos(u1)


async def test_typed_answers_and_group_privacy(sqlite_url, fake):
    settings = tg_settings(sqlite_url, fake)
    async with data_app(settings) as app, running(settings):
        tree, people, users = await setup_tree(app)
        await bind(fake, app, people["m1"], users["m1"])
        u1 = users["m1"]
        await open_test_round(app, tree.branches[0], ITEMS)
        # Typing works as on the other channels; the next card comes back with its buttons.
        fake.send_text(u1, "ｃ")
        result = await reply_containing(fake, u1, "回答正确")
        assert "您的答案：C" in result
        nxt = await fake.wait_for(lambda: [m for m in cards(fake, u1) if "多选题" in (m.text or "")],
                                  what="the next card")
        assert nxt[0].button("提交")
        fake.send_text(u1, "我的")
        await reply_containing(fake, u1, "累计作答 1 题")

        # In a group: personal commands and binding are refused there; plain chatter is ignored.
        group = -100200
        code = await new_code(app, people["m2"])
        fake.send_text(users["m2"], f"/start {code}", chat_id=group)
        fake.send_text(u1, "/me", chat_id=group)
        fake.send_text(u1, "A", chat_id=group)
        fake.send_text(u1, "/help", chat_id=group)
        await reply_containing(fake, group, "【清风·廉政学习助手】")
        assert texts(fake, group).count(PRIVATE_ONLY) == 2
        async with app.db.session() as s:
            bound = (await s.exec(select(ChannelIdentity).where(ChannelIdentity.member_id == people["m2"].id))).all()
        assert bound == []
        assert len(await answers_of(app, people["m1"])) == 1


async def test_wrong_codes_from_one_chat_are_throttled(sqlite_url, fake):
    settings = tg_settings(sqlite_url, fake)
    async with data_app(settings) as app, running(settings):
        _tree, people, _users = await setup_tree(app)
        for i in range(5):
            fake.send_text(6100, f"/start WRONG{i}")
            await fake.wait_for(lambda i=i: texts(fake, 6100).count(
                "邀请码无效，请核对后重试；如仍有问题请联系支部书记。") == i + 1, what="invalid code reply")
        good = await new_code(app, people["m1"])
        fake.send_text(6100, f"/start {good}")
        await reply_containing(fake, 6100, "错误次数过多")
        fake.send_text(6101, f"/start {good}")  # another chat is not held back
        await reply_containing(fake, 6101, "绑定成功")


async def test_spaced_reask_button_is_checked_against_due_reviews(sqlite_url, fake):
    settings = tg_settings(sqlite_url, fake)
    async with data_app(settings) as app, running(settings):
        tree, people, users = await setup_tree(app)
        m1, u1 = people["m1"], users["m1"]
        await bind(fake, app, m1, u1)
        await bind(fake, app, people["other"], users["other"])
        rnd = await open_test_round(app, tree.branches[0], ["t-single-002"], days=1)
        fake.send_text(u1, "A")  # wrong: key is B; FSRS schedules a re-ask in a few days
        await reply_containing(fake, u1, "回答错误")
        async with app.db.session() as s:  # the days pass: the review is due, the round closed
            card = await s.get(ReviewCard, (m1.id, "t-single-002"))
            card.due_at = app.service.clock() - timedelta(hours=1)
            s.add(card)
            r = await s.get(Round, rnd.id)
            r.deadline = app.service.clock() - timedelta(minutes=1)
            s.add(r)
            await s.commit()
        n = len(fake.messages(u1))
        fake.send_text(u1, "/quiz")
        review = await fake.wait_for(lambda: [m for m in cards(fake, u1)[-1:] if "【温故知新】" in (m.text or "")],
                                     what="the review card")
        review = review[0]
        assert fake.messages(u1).index(review) >= n
        data = review.button("B.")["callback_data"]
        assert data.startswith("a:r") and len(data.encode()) <= 64
        fake.press(users["other"], review, data)  # not due for them
        await fake.wait_for(lambda: "巩固题已作答或已不在" in last_answer(fake), what="refusal")
        fake.press(u1, review, data)
        done = await edited(fake, review)
        assert "✅ 回答正确" in done.text
        async with app.db.session() as s:
            card = await s.get(ReviewCard, (m1.id, "t-single-002"))
        assert card.due_at > app.service.clock()  # answered: no longer due
        fake.press(u1, review, data)  # pressed again: no longer due
        await fake.wait_for(lambda: "巩固题已作答或已不在" in last_answer(fake), what="second refusal")


# --- webhook mode ---------------------------------------------------------------------------------


async def test_webhook_checks_the_secret_header(sqlite_url, fake):
    port = free_port()
    settings = tg_settings(sqlite_url, fake, http_port=port,
                           telegram_webhook_url=f"http://127.0.0.1:{port}/telegram/webhook",
                           telegram_webhook_secret="s3cret-webhook-value_1")
    async with data_app(settings) as app, running(settings):
        assert fake.webhook == {"url": f"http://127.0.0.1:{port}/telegram/webhook",
                                "secret_token": "s3cret-webhook-value_1",
                                "allowed_updates": ["message", "callback_query", "poll_answer"]}
        _tree, people, users = await setup_tree(app)
        code = await new_code(app, people["m1"])
        u1 = users["m1"]
        assert await fake.post_webhook(fake.text_update(u1, f"/start {code}"), secret="wrong") == 403
        assert await fake.post_webhook(fake.text_update(u1, f"/start {code}"), secret=None) == 403
        assert await fake.post_webhook(fake.text_update(u1, f"/start {code}")) == 200
        await reply_containing(fake, u1, "绑定成功")
        assert len(fake.messages(u1)) == 1  # the refused posts did nothing
        assert not fake.calls("getUpdates", ok=None)  # no polling in webhook mode


# --- restarts do not replay side effects -------------------------------------------------------------


async def test_restart_does_not_replay_processed_updates(sqlite_url, fake):
    settings = tg_settings(sqlite_url, fake)
    async with data_app(settings) as app:
        tree, people, users = await setup_tree(app)
        m1, u1 = people["m1"], users["m1"]
        async with running(settings):
            await bind(fake, app, m1, u1)
            rnd = await open_test_round(app, tree.branches[0], ["t-judge-001"])
            await push(settings, app, rnd.id)
            ids = [fake.send_text(u1, "/case")]  # a case on request …
            await reply_containing(fake, u1, "【警示教育】")
            ids.append(fake.press_button(u1, cards(fake, u1)[-1], "错误"))  # … and one after a wrong answer
            await fake.wait_for(lambda: sum("【警示教育】" in t for t in texts(fake, u1)) == 2, what="two cases")
        sent_before = len(fake.messages(u1))
        edits_before = len(fake.calls("editMessageText"))
        # Telegram serves the last batch again, as after a crash before the offset was confirmed.
        fake.replay(ids)
        async with running(settings):
            marker = fake.send_text(u1, "/help")
            await reply_containing(fake, u1, "【清风·廉政学习助手】", after=sent_before)
            assert fake.pending_updates() == 0 and marker > max(ids)
        assert len(fake.messages(u1)) == sent_before + 1  # only the /help reply
        assert len(fake.calls("editMessageText")) == edits_before
        assert len(await answers_of(app, m1)) == 1


# --- native quiz polls ----------------------------------------------------------------------------------


async def test_quiz_poll_mode(sqlite_url, fake):
    settings = tg_settings(sqlite_url, fake, telegram_quiz_polls=True)
    async with data_app(settings) as app, running(settings):
        tree, people, users = await setup_tree(app)
        m1, u1 = people["m1"], users["m1"]
        await bind(fake, app, m1, u1)
        await bind(fake, app, people["other"], users["other"])
        rnd = await open_test_round(app, tree.branches[0], ITEMS)
        await push(settings, app, rnd.id)
        polls = [m.poll for m in fake.messages(u1) if m.poll]
        assert [(p["type"], p["is_anonymous"], p["allows_multiple_answers"], p["correct_option_ids"])
                for p in polls] == [("quiz", False, False, [2]), ("quiz", False, True, [0, 2, 3]),
                                    ("quiz", False, False, [0])]
        assert [o["text"] for o in polls[2]["options"]] == ["正确", "错误"]
        fake.vote(u1, polls[0]["id"], [2])
        await reply_containing(fake, u1, "✅ 回答正确！您的答案：C")
        fake.vote(u1, polls[1]["id"], [0, 2])
        await reply_containing(fake, u1, "❌ 回答错误。您的答案：AC，正确答案：ACD")
        fake.vote(users["other"], polls[2]["id"], [0])  # not delivered to them
        await reply_containing(fake, users["other"], "不在您的待答题目中")
        assert await answers_of(app, m1) == [("t-single-001", "C", True), ("t-multiple-001", "AC", False)]
        assert await answers_of(app, people["other"]) == []


# --- `qingfeng run` as a process -------------------------------------------------------------------------


async def test_qingfeng_run_process_binds_and_stops_on_sigterm(sqlite_url, fake):
    settings = tg_settings(sqlite_url, fake)
    async with data_app(settings) as app:
        _tree, people, users = await setup_tree(app)
        code = await new_code(app, people["m1"])
    env = {**os.environ, "QINGFENG_DATABASE_URL": sqlite_url, "QINGFENG_BANK_PATH": str(TEST_BANK),
           "QINGFENG_TELEGRAM_TOKEN": TOKEN, "QINGFENG_TELEGRAM_BASE_URL": fake.base_url,
           "QINGFENG_HTTP_PORT": str(free_port()), "QINGFENG_LOG_LEVEL": "INFO"}
    exe = Path(sys.executable).with_name("qingfeng")
    proc = await asyncio.create_subprocess_exec(str(exe), "run", env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    try:
        await fake.wait_for(lambda: fake.calls("getUpdates"), timeout=90, what="polling to start")
        fake.send_text(users["m1"], f"/start {code}")
        await reply_containing(fake, users["m1"], "绑定成功")
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
    log = out.decode()
    assert proc.returncode == 0, log
    assert "qingfeng stopped" in log
    assert TOKEN not in log and TOKEN.split(":")[1] not in log  # the token never reaches the log
    async with data_app(settings) as app, app.db.session() as s:
        n = (await s.exec(select(func.count()).select_from(ChannelIdentity)
                          .where(ChannelIdentity.platform == "telegram"))).one()
        item = await s.get(BankItem, "t-single-001")
    assert n == 1 and item is not None


# --- the one error handler ----------------------------------------------------------------------------


async def test_unexpected_error_gets_a_polite_reply_and_a_log_without_personal_data(sqlite_url, fake, caplog):
    settings = tg_settings(sqlite_url, fake)
    async with data_app(settings) as app:
        component = TelegramComponent(app)  # what `qingfeng run` starts for Telegram
        await component.start()
        try:
            payload = {"update_id": 4242, **fake.text_update(5555, "/report 机密支部")}
            update = Update.de_json(payload, component.application.bot)
            # PTB's own dispatch to the registered error handler, as after a handler raised.
            await component.application.process_error(update, RuntimeError("database went away"))
            await reply_containing(fake, 5555, "抱歉，系统暂时出错，请稍后再试。")
        finally:
            await component.stop()
    failures = [r for r in caplog.records if r.name == "bot.channels.telegram.handlers" and r.levelname == "ERROR"]
    assert [r.getMessage() for r in failures] == ["telegram update 4242 failed: RuntimeError"]
    assert "5555" not in caplog.text and "机密支部" not in caplog.text
