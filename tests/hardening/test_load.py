"""Load (issue #8): 10,000 bound members answer one open round through the fake Bot API, the
presses injected at a steady rate over 60 s, into the real `TelegramComponent` polling
getUpdates (PTB Application, handlers, core, the database).

Asserted: every press recorded exactly once with the pressed letter, every callback query
answered exactly once, every card edited exactly once, the update-id mark at the last update.
Reported, not asserted (no timed assertions): throughput and p50/p99 reply latency, from the
injection of a press to the edit of its card; printed into the test output and recorded as
properties (docs/benchmarks.md section 2 keeps the numbers).

How it is kept lean enough for CI: members, identities and the round are bulk-inserted (`qingfeng
dev seed`'s code); the cards are planted in the fake's chats, rendered by the bot's own
renderer, instead of pushed (the fan-out benchmark covers the push); the fake runs in a child
process (bench/tgfake.py) so it does not share the bot's interpreter. Rate limiting is off: with
Telegram's 30 messages/s the 10,000 card edits alone would take 5.5 minutes (bench/ingest.py
says the same).
"""

from __future__ import annotations

import asyncio
import math
import random
import statistics
from datetime import UTC, datetime

import pytest
from sqlalchemy import insert
from sqlmodel import select

from bench.tgfake import FakeProcess
from bot.app import App
from bot.channels.telegram import TelegramComponent
from bot.channels.telegram.render import card_message
from bot.config import load_settings
from bot.dev.seed import seed
from bot.storage.models import Answer, ChannelIdentity, KeyValue, Member, Organization
from tests.conftest import TEST_BANK
from tests.factories import open_test_round
from tests.fakes.telegram_api import BOT_ID, TOKEN

MEMBERS = 10_000
SPREAD_S = 60.0  # the presses are injected evenly over this many seconds
ITEMS = ["t-single-001", "t-single-002", "t-judge-001", "t-judge-002"]  # one button answers each
USER_BASE = 7_000_000_000  # Telegram user (and private chat) id of member n: USER_BASE + n
# A liveness guard, not a speed target: fail if the bot edits no card in this many polls (0.5 s
# apart, i.e. two minutes), so a stuck bot cannot hang CI while a slow machine still passes.
STALLED_POLLS = 240


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


async def seed_members(app: App) -> list[int]:
    """10,000 members in 100 branches, each bound to a Telegram user (Core bulk inserts)."""
    await seed(app.db, members=MEMBERS, answers=0, rounds=0, branches=100)
    async with app.db.session() as s:
        ids = list((await s.exec(select(Member.id).order_by(Member.id))).all())
    now = datetime.now(UTC)
    rows = [{"member_id": m, "platform": "telegram", "external_id": str(USER_BASE + m), "active": True,
             "bound_at": now} for m in ids]
    async with app.db.engine.begin() as conn:
        for start in range(0, len(rows), 5000):
            await conn.execute(insert(ChannelIdentity.__table__), rows[start:start + 5000])  # type: ignore[attr-defined]
    return ids  # type: ignore[return-value]


@pytest.mark.slow
async def test_10000_members_answer_within_a_minute_through_get_updates(app, database_url, capsys, record_property):
    members = await seed_members(app)
    assert len(members) == MEMBERS
    async with app.db.session() as s:
        root = await s.get(Organization, 1)
    assert root is not None and root.parent_id is None
    rnd = await open_test_round(app, root, ITEMS)
    async with app.db.session() as s:
        cards = await app.service.pending_cards(s, await s.get(Member, members[0]))  # type: ignore[arg-type]
    assert [c.item_id for c in cards] == ITEMS

    rng = random.Random(8)
    card_of = {m: rng.randrange(len(ITEMS)) for m in members}  # which of the round's cards each presses
    with FakeProcess(poll_cap=0.5) as fake:
        for i, card in enumerate(cards):
            out = card_message(card, app.settings.tz)
            assert out.keyboard is not None
            chats = [USER_BASE + m for m in members if card_of[m] == i]
            assert fake.call("plant", chats, out.text, out.keyboard.to_dict()) == len(chats)
        assert fake.call("prepare_presses", 9, MEMBERS) == MEMBERS
        pressed = {(chat - USER_BASE, ITEMS[int(data.split(":")[1].split(".")[1]) - 1], data[-1])
                   for _user, chat, _mid, data in fake.call("script")}
        assert len(pressed) == MEMBERS

        settings = load_settings(database_url=app.settings.database_url, bank_path=TEST_BANK, telegram_token=TOKEN,
                                 telegram_base_url=fake.base_url, telegram_rate_limit=False)
        component = TelegramComponent(App(settings=settings, db=app.db, bank=app.bank, service=app.service,
                                          sync=app.sync))
        await component.start()
        try:
            total = fake.call("run_paced", MEMBERS / SPREAD_S, MEMBERS)
            assert total == MEMBERS
            edited, idle = 0, 0
            while edited < total:
                await asyncio.sleep(0.5)
                now_edited = fake.call("press_progress")[1]
                idle = 0 if now_edited > edited else idle + 1
                edited = now_edited
                if idle >= STALLED_POLLS:
                    pytest.fail(f"the bot stopped editing cards: {edited}/{total}")
        finally:  # stopping waits for the handlers still running (follow-ups after the last edits)
            await component.stop()
        times = fake.call("press_times")
        summary = fake.call("calls_summary")

    async with app.db.session() as s:
        rows = (await s.exec(select(Answer.member_id, Answer.item_id, Answer.choice, Answer.channel)
                             .where(Answer.round_id == rnd.id))).all()
        mark = await s.get(KeyValue, f"telegram:last_update_id:{BOT_ID}")
    assert len(rows) == MEMBERS  # exactly once: UNIQUE(member, round, item) and no lost press
    assert {(m, i, c) for m, i, c, _ in rows} == pressed
    assert {ch for *_, ch in rows} == {"telegram"}
    assert summary["queries_answered"] == MEMBERS and summary["queries_answered_twice"] == 0
    assert summary["cards_edited"] == MEMBERS and summary["cards_edited_twice"] == 0
    assert not [k for k in summary["calls"] if not k.endswith(":200")], summary["calls"]
    assert mark is not None and mark.value["update_id"] == summary["last_update_id"]

    first = min(t for t, _ in times)
    last = max(e for _, e in times)
    latencies = [e - t for t, e in times]
    kind = "postgres" if database_url.startswith("postgresql") else "sqlite"
    report = {"db": kind, "answers": len(times), "answers_per_s": round(len(times) / (last - first), 1),
              "seconds": round(last - first, 1), "p50_ms": round(1000 * statistics.median(latencies), 1),
              "p99_ms": round(1000 * percentile(latencies, 0.99), 1)}
    for key, value in report.items():
        record_property(key, value)
    with capsys.disabled():
        print(f"\nload test {kind}: {report['answers']} answers injected over {SPREAD_S:.0f} s, all recorded in "
              f"{report['seconds']} s: {report['answers_per_s']} answers/s, reply latency p50 {report['p50_ms']} ms, "
              f"p99 {report['p99_ms']} ms")
