"""Two `qingfeng run` replicas on one PostgreSQL database, started together: one round, not two,
and each member receives it once (raw traffic: no resend at all, since nobody crashed)."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import col, func, select

from bot.app import start_app
from bot.storage.models import Delivery, JobClaim, Round
from tests.conftest import make_settings
from tests.factories import build_org
from tests.scheduler.procs import bot_env, round_finished, round_for, start_bot, stop_bot, wait_for
from tests.scheduler.support import SH, bind_all, schedule


@pytest.mark.slow
async def test_two_replicas_started_together_push_the_round_once(database_url, webhook, tmp_path):
    if not database_url.startswith("postgresql"):
        pytest.skip("replicas share a PostgreSQL server")
    app = await start_app(make_settings(database_url), upgrade=False)
    try:
        tree = await build_org(app, branches=3, per_branch=99, bind=False)
        externals = await bind_all(app, [m.id for m in tree.all_members()] + [tree.admin.id])
        now = datetime.now(UTC)
        await schedule(app, tree.root, "quiet_hours", {}, enabled=False, changed=now - timedelta(days=1))
        due = (now - timedelta(minutes=1)).astimezone(SH)  # fell due a minute ago: both see it at start-up
        row = await schedule(app, tree.root, "weekly_round", {
            "day_of_week": due.strftime("%a").lower(), "time": due.strftime("%H:%M"), "items": 2,
            "deadline": "+2d"}, changed=now - timedelta(days=1))
        env = bot_env(database_url, webhook.url)
        procs = [start_bot(env, tmp_path, tmp_path / f"replica{i}.log") for i in range(2)]
        try:
            prefix = f"weekly_round:s{row.id}@"
            await wait_for(lambda: round_for(app, prefix), timeout=120, what="the round to open")
            rnd = await round_for(app, prefix)
            await wait_for(lambda: round_finished(app, rnd.id), timeout=120, what="the fan-out")
            await asyncio.sleep(1.5)  # three more ticks of each replica: nothing new may happen
        finally:
            codes = [stop_bot(p) for p in procs]
        assert codes == [0, 0]
        async with app.db.session() as s:
            rounds = (await s.exec(select(func.count()).select_from(Round))).one()
            claims = (await s.exec(select(func.count()).select_from(JobClaim).where(
                col(JobClaim.job_key) == f"weekly_round:s{row.id}"))).one()
            senders = Counter((await s.exec(select(Delivery.claimed_by).where(Delivery.round_id == rnd.id))).all())
        assert (rounds, claims) == (1, 1)
        posts = webhook.posts_per_recipient(f"round:{rnd.id}:")
        assert set(posts) == set(externals.values()) and set(posts.values()) == {1}
        print(f"\nreplicas: one round; deliveries sent per replica: {sorted(senders.values())}")
    finally:
        await app.db.dispose()
