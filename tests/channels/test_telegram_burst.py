"""A 500-update burst of answers through getUpdates into the real PTB Application (the same
`TelegramComponent` that `qingfeng run` starts): every answer recorded exactly once, every
button press answered exactly once, the last update id kept.
"""

from __future__ import annotations

import random

from sqlmodel import select

from bot.app import App
from bot.channels.telegram import TelegramComponent
from bot.config import Settings
from bot.storage.models import Answer, KeyValue
from tests.channels.test_telegram_faults import bind_all, push, settings_for
from tests.factories import build_org, open_test_round
from tests.fakes.telegram_api import BOT_ID, FakeTelegram


def with_settings(app: App, settings: Settings) -> App:
    """The test app with the Telegram settings (same database, service and clock)."""
    return App(settings=settings, db=app.db, bank=app.bank, service=app.service, sync=app.sync)


async def test_500_answer_burst_through_get_updates_recorded_exactly_once(sqlite_app):
    app = sqlite_app
    items = ["t-single-001", "t-single-002", "t-single-003", "t-judge-001", "t-judge-002"]
    with FakeTelegram(poll_cap=0.2) as fake:
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

        component = TelegramComponent(with_settings(app, settings))
        await component.start()
        try:
            await fake.wait_for(lambda: len(fake.calls("answerCallbackQuery", ok=None)) >= 500, timeout=120,
                                what="500 answered button presses")
            await fake.wait_for(lambda: fake.pending_updates() == 0, what="the offset to be confirmed")
        finally:
            await component.stop()

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
