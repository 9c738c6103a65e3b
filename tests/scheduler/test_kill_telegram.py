"""The kill test through the Telegram channel: a real `qingfeng run` (PTB, polling the fake Bot API)
pushing to 301 members is SIGKILLed mid-fan-out and restarted.

Telegram has no idempotency key, so the trade-off shows: nobody is left out (0 gaps), and a member
whose invite was accepted by Telegram just before the kill, but not yet marked sent, gets it again.
Those repeats are bounded by the sends in flight (QINGFENG_PUSH_CONCURRENCY) and reported.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from bot.app import start_app
from tests.conftest import make_settings
from tests.factories import build_org
from tests.fakes.telegram_api import TOKEN, FakeTelegram
from tests.scheduler.procs import bot_env, round_finished, round_for, start_bot, stop_bot, wait_for
from tests.scheduler.support import bind_all, schedule

TRIALS = 4
CONCURRENCY = 8


@pytest.fixture
def telegram() -> Iterator[FakeTelegram]:
    with FakeTelegram() as fake:
        yield fake


def intros(fake: FakeTelegram, chats: list[int], title: str) -> dict[int, int]:
    return {c: sum(1 for m in fake.messages(c) if (m.text or "").startswith(f"【{title}】")) for c in chats}


@pytest.mark.slow
async def test_sigkill_during_a_telegram_push_leaves_no_gaps(sqlite_url, telegram, tmp_path):
    seed = int(os.environ.get("QINGFENG_KILL_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    app = await start_app(make_settings(sqlite_url), upgrade=False)
    try:
        tree = await build_org(app, branches=3, per_branch=99, bind=False)
        chats = await bind_all(app, [m.id for m in tree.all_members()] + [tree.admin.id], "telegram",
                               external=lambda m: str(900_000 + m))
        chat_ids = [int(c) for c in chats.values()]
        now = datetime.now(UTC)
        await schedule(app, tree.root, "quiet_hours", {}, enabled=False, changed=now - timedelta(days=1))

        async def new_campaign(i: int) -> str:
            at = datetime.now(UTC)
            row = await schedule(app, tree.root, "campaign", {
                "at": at.isoformat(), "deadline": (at + timedelta(days=1)).isoformat(),
                "items": ["t-single-001", "t-judge-001"], "title": f"电报专题{i}"}, name=f"tg-kill-{i}", changed=at)
            return f"campaign:s{row.id}@"

        env = bot_env(sqlite_url, "", QINGFENG_TELEGRAM_TOKEN=TOKEN, QINGFENG_TELEGRAM_BASE_URL=telegram.base_url,
                      QINGFENG_TELEGRAM_MAX_RATE="1000", QINGFENG_TELEGRAM_RETRY_BACKOFF="0.01",
                      QINGFENG_PUSH_CONCURRENCY=str(CONCURRENCY))
        env.pop("QINGFENG_WEBHOOK_PUSH_URL")
        log = tmp_path / "bot.log"
        prefix = await new_campaign(0)
        proc = start_bot(env, tmp_path, log)
        outcomes = []
        for i in range(TRIALS):
            base = sum(telegram.sent_counts().values())
            k = rng.randint(1, 3 * 301)  # three messages per member: the invite and two cards
            started = time.monotonic()
            while sum(telegram.sent_counts().values()) - base < k and time.monotonic() - started < 120:
                await asyncio.sleep(0.005)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            proc = start_bot(env, tmp_path, log)
            await wait_for(lambda prefix=prefix: round_for(app, prefix), timeout=120, what="the round to open")
            rnd = await round_for(app, prefix)
            await wait_for(lambda rid=rnd.id: round_finished(app, rid), timeout=120, what="the fan-out")
            got = intros(telegram, chat_ids, f"电报专题{i}")
            gaps = [c for c, n in got.items() if n == 0]
            repeats = sum(n - 1 for n in got.values() if n > 1)
            outcomes.append((f"killed after message {k}/903", len(gaps), repeats))
            assert not gaps, f"trial {i} (seed {seed}): {outcomes[-1]}"
            assert repeats <= CONCURRENCY, f"trial {i} (seed {seed}): {outcomes[-1]}"
            if i + 1 < TRIALS:
                prefix = await new_campaign(i + 1)
        assert stop_bot(proc) == 0
    finally:
        await app.db.dispose()
    print(f"\ntelegram kill test seed {seed}: (where, gaps, members who saw the invite twice)")
    for o in outcomes:
        print("  ", o)
