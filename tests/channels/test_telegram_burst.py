"""A 500-update burst of answers through getUpdates into the real PTB Application (the same
`TelegramComponent` that `qingfeng run` starts): every answer recorded exactly once, every
button press answered exactly once, the last update id kept; the bot never confirms more
updates to Telegram than it has in flight (MAX_UPDATES_IN_FLIGHT), so a stop mid-burst leaves
the rest with Telegram and a restart takes them, each once.
"""

from __future__ import annotations

import random

from sqlmodel import select

from bot.app import App
from bot.channels.telegram import TelegramComponent
from bot.channels.telegram.component import MAX_UPDATES_IN_FLIGHT
from bot.config import Settings
from bot.storage.models import Answer, KeyValue
from tests.channels.test_telegram_faults import bind_all, push, settings_for
from tests.factories import build_org, open_test_round
from tests.fakes.telegram_api import BOT_ID, FakeTelegram


def with_settings(app: App, settings: Settings) -> App:
    """The test app with the Telegram settings (same database, service and clock)."""
    return App(settings=settings, db=app.db, bank=app.bank, service=app.service, sync=app.sync)


async def pending_burst(app: App, fake: FakeTelegram) -> tuple[Settings, dict[tuple[int, str], str], list[int]]:
    """100 members pushed a 5-item round, then one press per card waiting at the fake: the
    settings, the letter chosen per (member, item) and the update ids."""
    items = ["t-single-001", "t-single-002", "t-single-003", "t-judge-001", "t-judge-002"]
    tree = await build_org(app, per_branch=50, branches=2, bind=False)
    members = [m for ms in tree.members.values() for m in ms]
    users = await bind_all(app, members)
    rnd = await open_test_round(app, tree.root, items)
    settings = settings_for(app, fake)
    stats = await push(settings, app, rnd.id)
    assert stats.sent == len(members) == 100

    rng = random.Random(3)
    chosen: dict[tuple[int, str], str] = {}
    update_ids = []
    for m in members:
        cards = [msg for msg in fake.messages(users[m.id]) if msg.reply_markup]  # type: ignore[index]
        for item_id, card in zip(items, cards, strict=True):
            button = rng.choice(card.buttons())
            update_ids.append(fake.press(users[m.id], card, button["callback_data"]))  # type: ignore[index]
            chosen[(m.id, item_id)] = button["callback_data"][-1]  # type: ignore[index]
    assert fake.pending_updates() == 500
    return settings, chosen, update_ids


def most_confirmed_unanswered(fake: FakeTelegram, update_ids: list[int]) -> int:
    """The largest number of updates the bot had confirmed to Telegram (by a getUpdates
    offset) but not yet answered (answerCallbackQuery), over the calls as the fake saw them."""
    answered, worst = 0, 0
    for call in fake.calls(ok=None):
        if call.method == "answerCallbackQuery":
            answered += 1
        elif call.method == "getUpdates":
            offset = int(call.params.get("offset") or 0)
            worst = max(worst, sum(1 for u in update_ids if u < offset) - answered)
    return worst


async def run_bot_until_answered(app: App, settings: Settings, fake: FakeTelegram, answered: int, what: str) -> None:
    """Start the bot, wait until `answered` presses are answered and every update is confirmed,
    stop it."""
    component = TelegramComponent(with_settings(app, settings))
    await component.start()
    try:
        await fake.wait_for(lambda: len(fake.calls("answerCallbackQuery", ok=None)) >= answered, timeout=120,
                            what=what)
        await fake.wait_for(lambda: fake.pending_updates() == 0, what="the offset to be confirmed")
    finally:
        await component.stop()


async def test_500_answer_burst_through_get_updates_recorded_exactly_once(sqlite_app):
    app = sqlite_app
    with FakeTelegram(poll_cap=0.2) as fake:
        settings, chosen, update_ids = await pending_burst(app, fake)
        await run_bot_until_answered(app, settings, fake, 500, "500 answered button presses")

        async with app.db.session() as s:
            rows = (await s.exec(select(Answer.member_id, Answer.item_id, Answer.choice, Answer.channel))).all()
            mark = await s.get(KeyValue, f"telegram:last_update_id:{BOT_ID}")
        assert len(rows) == 500
        assert {(m, i): c for m, i, c, _ in rows} == chosen
        assert {ch for *_, ch in rows} == {"telegram"}
        assert mark is not None and mark.value["update_id"] == max(update_ids)
        assert not fake.calls("answerCallbackQuery", ok=False)  # each query answered exactly once
        assert len(fake.calls("answerCallbackQuery")) == 500
        assert len(fake.calls("editMessageText")) == 500
        # Taken in bounded steps: never more confirmed to Telegram than in flight.
        assert 0 < most_confirmed_unanswered(fake, update_ids) <= MAX_UPDATES_IN_FLIGHT


async def test_a_stop_mid_burst_leaves_the_rest_with_telegram_and_a_restart_takes_each_once(sqlite_app):
    app = sqlite_app
    with FakeTelegram(poll_cap=0.2) as fake:
        settings, chosen, update_ids = await pending_burst(app, fake)
        first = TelegramComponent(with_settings(app, settings))
        await first.start()
        try:
            await fake.wait_for(lambda: len(fake.calls("answerCallbackQuery", ok=None)) >= 50, timeout=60,
                                what="50 answered button presses")
        finally:
            await first.stop()
        answered_before_restart = len(fake.calls("answerCallbackQuery", ok=None))
        assert answered_before_restart < 500
        assert fake.pending_updates() >= 500 - answered_before_restart - MAX_UPDATES_IN_FLIGHT > 0

        await run_bot_until_answered(app, settings, fake, 500, "the other presses answered after the restart")

        async with app.db.session() as s:
            rows = (await s.exec(select(Answer.member_id, Answer.item_id, Answer.choice))).all()
        assert {(m, i): c for m, i, c in rows} == chosen and len(rows) == 500
        # Each press answered and its card edited once: what the first run finished was not redone.
        assert len(fake.calls("answerCallbackQuery", ok=None)) == 500
        assert len(fake.calls("editMessageText", ok=None)) == 500
        assert most_confirmed_unanswered(fake, update_ids) <= MAX_UPDATES_IN_FLIGHT
