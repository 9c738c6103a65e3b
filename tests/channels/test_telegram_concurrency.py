"""Concurrent update handling: different users at once, one user in order, and an update-id mark
that never passes an unfinished update; then the real component with one member pressing two
buttons of one card in the same getUpdates batch, among other members' presses (both databases).
"""

from __future__ import annotations

import asyncio
import random

from sqlmodel import select
from telegram import Update

from bot.app import App
from bot.channels.telegram import TelegramComponent, state
from bot.channels.telegram.component import PerUserOrder
from bot.storage.models import Answer, KeyValue
from tests.channels.test_telegram_faults import bind_all, push, settings_for
from tests.factories import build_org, open_test_round
from tests.fakes.telegram_api import BOT_ID, FakeTelegram

WAIT = 10.0  # seconds a test waits for an event that must happen; failing beats hanging


def text_update(update_id: int, user_id: int) -> Update:
    return Update.de_json({"update_id": update_id, "message": {
        "message_id": update_id, "date": 0, "text": "hi", "chat": {"id": user_id, "type": "private"},
        "from": {"id": user_id, "is_bot": False, "first_name": "u"}}}, None)


# --- the update processor ---------------------------------------------------------------------


async def test_two_users_run_at_once_but_one_user_waits_for_itself():
    processor = PerUserOrder(8)
    first_started, release = asyncio.Event(), asyncio.Event()
    order: list[str] = []

    async def first() -> None:
        order.append("a1 start")
        first_started.set()
        await asyncio.wait_for(release.wait(), WAIT)
        order.append("a1 end")

    async def same_user() -> None:
        order.append("a2")

    async def other_user() -> None:
        order.append("b1")
        release.set()  # only reachable while a1 is still running: users are not serialised

    a1 = asyncio.create_task(processor.process_update(text_update(1, 100), first()))
    await asyncio.wait_for(first_started.wait(), WAIT)
    a2 = asyncio.create_task(processor.process_update(text_update(2, 100), same_user()))
    b1 = asyncio.create_task(processor.process_update(text_update(3, 200), other_user()))
    await asyncio.wait_for(asyncio.gather(a1, a2, b1), WAIT)
    assert order == ["a1 start", "b1", "a1 end", "a2"]
    assert processor._users == {}  # no lock left behind


async def test_update_mark_waits_for_the_oldest_unfinished_update(sqlite_app):
    log = state.UpdateLog(sqlite_app.db, 7)
    await log.load()
    for uid in (10, 11, 12):
        log.opened(uid)
    log.done(12)
    log.done(11)
    assert log.last_id is None  # 10 is still running: a crash now must replay 10, 11 and 12
    assert log.seen(12) and log.seen(11) and not log.seen(10)  # … but a replay of 11 or 12 is skipped
    log.done(10)
    assert log.last_id == 12
    log.opened(13)
    log.done(13)
    log.done(13)  # the processor and the last handler both report it: idempotent
    assert log.last_id == 13
    await log.flush()
    again = state.UpdateLog(sqlite_app.db, 7)
    await again.load()
    assert again.last_id == 13 and again.seen(13) and not again.seen(14)


async def test_cancelled_update_stays_open(sqlite_app):
    log = state.UpdateLog(sqlite_app.db, 8)
    processor = PerUserOrder(8, lambda: log)
    started = asyncio.Event()

    async def hangs() -> None:
        started.set()
        await asyncio.Event().wait()

    async def quick() -> None:
        pass

    slow = asyncio.create_task(processor.process_update(text_update(20, 1), hangs()))
    await asyncio.wait_for(started.wait(), WAIT)
    await processor.process_update(text_update(21, 2), quick())
    slow.cancel()
    await asyncio.gather(slow, return_exceptions=True)
    assert log.last_id is None and not log.seen(20)  # shutdown mid-update: 20 and 21 are replayed


# --- the component, one member pressing twice at once ---------------------------------------


def with_settings(app: App, settings) -> App:  # type: ignore[no-untyped-def]
    return App(settings=settings, db=app.db, bank=app.bank, service=app.service, sync=app.sync)


async def test_double_press_in_one_batch_records_once_and_replies_consistently(app):
    items = ["t-single-001", "t-judge-001"]
    with FakeTelegram(poll_cap=0.2) as fake:
        tree = await build_org(app, per_branch=10, branches=2, bind=False)
        members = [m for ms in tree.members.values() for m in ms]
        users = await bind_all(app, members)
        rnd = await open_test_round(app, tree.root, items)
        settings = settings_for(app, fake)
        await push(settings, app, rnd.id)

        rng = random.Random(4)
        twice, twice_user = members[0], users[members[0].id]  # type: ignore[index]
        card = next(m for m in fake.messages(twice_user) if m.reply_markup)  # t-single-001, key C
        first, second = card.button("A.")["callback_data"], card.button("C.")["callback_data"]
        update_ids: list[int] = []
        twice_ids: list[int] = []
        expected: dict[tuple[int, str], str] = {(twice.id, items[0]): "A"}  # type: ignore[dict-item]
        for m in members[1:]:  # other members' presses around the double press, one batch
            user = users[m.id]  # type: ignore[index]
            cards = [msg for msg in fake.messages(user) if msg.reply_markup]
            button = rng.choice(cards[0].buttons())["callback_data"]
            update_ids.append(fake.press(user, cards[0], button))
            expected[(m.id, items[0])] = button[-1]  # type: ignore[index]
            if m is members[len(members) // 2]:
                twice_ids += [fake.press(twice_user, card, first), fake.press(twice_user, card, second)]
        update_ids += twice_ids
        assert fake.pending_updates() == len(members) + 1

        component = TelegramComponent(with_settings(app, settings))
        await component.start()
        try:
            await fake.wait_for(lambda: len(fake.calls("answerCallbackQuery", ok=None)) >= len(members) + 1,
                                timeout=60, what="every press answered")
            await fake.wait_for(lambda: fake.pending_updates() == 0, what="the offset to be confirmed")
        finally:
            await component.stop()

        async with app.db.session() as s:
            rows = (await s.exec(select(Answer.member_id, Answer.item_id, Answer.choice))).all()
            mark = await s.get(KeyValue, f"telegram:last_update_id:{BOT_ID}")
        assert len(rows) == len(expected)  # one row per member: the double press recorded once …
        assert {(m, i): c for m, i, c in rows} == expected  # … and the first press stands
        assert mark is not None and mark.value["update_id"] == max(update_ids)
        queries = [fake.update(uid)["callback_query"]["id"] for uid in twice_ids]
        replies = [c.params.get("text") or "" for c in fake.calls("answerCallbackQuery", ok=None)
                   if c.params.get("callback_query_id") in queries]
        assert replies == ["❌ 回答错误", "这道题您已作答，以首次作答「A」为准。"]  # in press order
        shown = next(m for m in fake.messages(twice_user) if m.message_id == card.message_id)
        assert "您的答案：A" in (shown.text or "") and shown.reply_markup is None
        assert not fake.calls("answerCallbackQuery", ok=False)

