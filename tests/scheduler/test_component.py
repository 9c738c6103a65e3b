"""The APScheduler wiring in the bot's event loop: start-up catch-up, wake-up jobs at the due
times, lease registration and release. Real time here (APScheduler reads the system clock), but
nothing waits for a schedule: a push due a minute ago runs on start, later ones are only checked
as registered jobs."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlmodel import select

from bot.app import start_app
from bot.storage.models import DeliveryStatus, KeyValue
from scheduler.runner import SchedulerComponent
from tests.conftest import make_settings
from tests.factories import build_org
from tests.scheduler.support import SH, deliveries, rounds, schedule, webhook_messengers


async def test_component_catches_up_on_start_and_registers_wake_ups(sqlite_url, webhook):
    app = await start_app(make_settings(sqlite_url), upgrade=False)  # system clock, like `qingfeng run`
    try:
        tree = await build_org(app, platform="webhook", per_branch=2)
        now = datetime.now(UTC)
        await schedule(app, tree.root, "quiet_hours", {}, enabled=False, changed=now - timedelta(days=1))
        missed = (now - timedelta(minutes=1)).astimezone(SH)
        later = (now + timedelta(minutes=5)).astimezone(SH)
        await schedule(app, tree.root, "weekly_round", {
            "day_of_week": missed.strftime("%a").lower(), "time": missed.strftime("%H:%M"), "items": 1,
            "deadline": "+1d"}, changed=now - timedelta(days=1))
        await schedule(app, tree.branches[1], "weekly_round", {
            "day_of_week": later.strftime("%a").lower(), "time": later.strftime("%H:%M"), "items": 1,
            "deadline": "+1d"}, changed=now - timedelta(days=1))
        async with webhook_messengers(app, webhook) as messengers:
            component = SchedulerComponent(app, messengers)
            assert (component.name, component.routes, component.messenger) == ("scheduler", [], None)
            await component.start()
            try:
                for _ in range(300):  # the first tick runs in the background right after start
                    rs = await rounds(app)
                    if rs and {d.status for d in await deliveries(app, rs[0].id)} == {DeliveryStatus.sent}:
                        break
                    await asyncio.sleep(0.05)
                (rnd,) = await rounds(app)
                assert len(webhook.delivered()) == len(await deliveries(app, rnd.id)) > 0
                jobs = {j.id: j for j in component.scheduler.get_jobs()}
                nominal = later.replace(second=0, microsecond=0).astimezone(UTC)
                assert {"tick", "heartbeat", f"due:{nominal:%Y%m%dT%H%M%S}"} <= set(jobs)
                assert jobs[f"due:{nominal:%Y%m%dT%H%M%S}"].next_run_time == nominal
                assert jobs["tick"].trigger.interval == timedelta(seconds=app.settings.scheduler_tick_seconds)
                async with app.db.session() as s:
                    lease = (await s.exec(select(KeyValue).where(
                        KeyValue.key == f"instance:{component.runner.owner}"))).one()
                assert lease.expires_at > datetime.now(UTC)
            finally:
                await component.stop()
        async with app.db.session() as s:
            assert (await s.exec(select(KeyValue).where(
                KeyValue.key == f"instance:{component.runner.owner}"))).first() is None
    finally:
        await app.db.dispose()
