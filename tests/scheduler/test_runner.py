"""The scheduler's logic against the real database, driven by a controllable clock (no sleeping):
a simulated week, downtime within and beyond grace, replicas, and resuming after a crash."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from sqlmodel import col, func, select

from bot.app import start_app
from bot.core.commands import SubmitAnswer
from bot.reports import fold
from bot.storage.models import ChannelIdentity, Delivery, DeliveryStatus, FoldedRound, JobClaim
from scheduler.runner import Runner
from tests.conftest import make_settings
from tests.factories import build_org
from tests.scheduler.support import SH, deliveries, local, notifications, rounds, schedule, webhook_messengers


def sh(*args: int) -> datetime:
    return datetime(*args, tzinfo=SH).astimezone(UTC)


async def test_a_week_of_schedules_fires_the_right_jobs_at_the_right_local_times(app, clock, webhook):
    tree = await build_org(app, platform="webhook")
    b1, b2 = tree.branches
    await schedule(app, tree.root, "weekly_round",
                   {"day_of_week": "周一", "time": "09:00", "items": 3, "deadline": "周日 20:00"})
    await schedule(app, b2, "weekly_round", {"day_of_week": "周二", "time": "23:00", "items": 2, "deadline": "+2d"})
    await schedule(app, tree.root, "case_push", {"day": 1, "time": "10:00"})
    clock.now = sh(2026, 11, 23, 0, 0)
    end = sh(2026, 12, 1, 12, 0)
    ran: list[tuple[str, str]] = []
    async with webhook_messengers(app, webhook) as messengers:
        runner = Runner(app, messengers)
        runner.horizon = timedelta(days=10)  # see every upcoming occurrence, to jump from one to the next
        while clock.now <= end:
            report = await runner.run_due(clock.now)
            ran += [(o.kind, local(clock.now)) for o in report.ran]
            await runner.sweep(clock.now)
            if any(o.kind == "weekly_round" and o.org_id == tree.root.id for o in report.ran) and len(ran) == 1:
                for m in tree.members[b1.id][:3]:  # three members of 第一支部 answer the first round
                    for _ in range(3):
                        await app.service.handle(tree.senders[m.id], SubmitAnswer("A"))
            later = [o.due for o in report.upcoming if o.due > clock.now]
            if not later:
                break
            clock.now = min(later)

    assert ran == [
        ("weekly_round", "Mon 11-23 09:00"),
        ("weekly_round", "Wed 11-25 07:30"),  # due Tue 23:00, in quiet hours: waits for 07:30
        ("reminder", "Thu 11-26 07:30"),  # 24 h before Thu 23:00 is Wed 23:00: quiet again
        ("digest", "Fri 11-27 07:30"),
        ("reminder", "Sat 11-28 20:00"),
        ("digest", "Sun 11-29 20:00"),
        ("weekly_round", "Mon 11-30 09:00"),
        ("case_push", "Tue 12-01 10:00"),
    ]
    r_a, r_b, r_a2 = await rounds(app)
    b1_people = {m.id for m in [tree.secretaries[0], *tree.members[b1.id]]}
    b2_people = {m.id for m in [tree.secretaries[1], *tree.members[b2.id]]}
    assert {d.member_id for d in await deliveries(app, r_a.id)} == b1_people | {tree.admin.id}  # 第二支部 left out
    assert {d.member_id for d in await deliveries(app, r_b.id)} == b2_people
    assert (r_b.org_id, local(r_b.deadline)) == (b2.id, "Thu 11-26 23:00")
    assert local(r_a.deadline) == "Sun 11-29 20:00"
    for rnd in (r_a, r_b, r_a2):
        assert {d.status for d in await deliveries(app, rnd.id)} == {DeliveryStatus.sent}
        assert {local(d.sent_at) for d in await deliveries(app, rnd.id)} == {local(rnd.opens_at)}
    # Reminders went to those who had not answered; digests to the secretary of each branch reached.
    reminders = await notifications(app, "reminder")
    assert {n.member_id for n in reminders if n.round_id == r_a.id} == (
        b1_people | {tree.admin.id}) - {m.id for m in tree.members[b1.id][:3]}
    assert {n.member_id for n in reminders if n.round_id == r_b.id} == b2_people
    digests = await notifications(app, "digest")
    assert [(n.round_id, n.member_id) for n in digests] == [(r_b.id, tree.secretaries[1].id),
                                                             (r_a.id, tree.secretaries[0].id)]
    cases = await notifications(app, "case_push")
    assert {n.member_id for n in cases} == b1_people | b2_people | {tree.admin.id}
    # What the members' system received: each message once, none in quiet hours.
    texts = {p.kinds[0]: p.texts[0] for p in webhook.delivered()}
    assert texts["Reminder"].startswith("【督办提醒】本周廉政学习还有 3/3 道题未作答，将于 11月29日 20:00 截止")
    assert "【第一支部·本周廉政学习答题统计】" in [p.texts[0] for p in webhook.delivered("FullReport")][1]
    assert texts["CaseCard"].startswith("【警示教育】")
    assert webhook.repeats() == 0
    assert len(webhook.delivered()) == 8 + 7 + 8 + 5 + 7 + 2 + 15


async def test_missed_push_runs_once_within_grace_after_downtime(app, clock, webhook, caplog):
    tree = await build_org(app, platform="webhook", per_branch=2)
    await schedule(app, tree.root, "weekly_round", {"day_of_week": "mon", "time": "09:00", "items": 2})
    clock.now = sh(2026, 11, 23, 14, 30)  # the bot was down from Sunday until 14:30: 5.5 h late
    async with webhook_messengers(app, webhook) as messengers:
        runner = Runner(app, messengers)
        with caplog.at_level(logging.INFO, logger="scheduler"):
            first = await runner.tick()
        again = await Runner(app, messengers).tick()  # a restart: nothing more
    assert [o.key for o in first.ran] == ["weekly_round:s1@2026-11-23T01:00Z"] and not again.ran
    (rnd,) = await rounds(app)
    assert local(rnd.opens_at) == "Mon 11-23 14:30" and local(rnd.deadline) == "Sun 11-29 20:00"
    assert len(webhook.delivered()) == len(tree.all_members()) + 1
    assert "ran weekly_round:s1@2026-11-23T01:00Z 5.5 h late" in caplog.text


async def test_missed_push_beyond_grace_is_skipped_with_one_log_line(app, clock, webhook, caplog):
    tree = await build_org(app, platform="webhook", per_branch=2)
    await schedule(app, tree.root, "weekly_round", {"day_of_week": "mon", "time": "09:00"})
    clock.now = sh(2026, 11, 23, 15, 30)  # 6.5 h late, grace is 6 h
    async with webhook_messengers(app, webhook) as messengers:
        with caplog.at_level(logging.WARNING, logger="scheduler"):
            first = await Runner(app, messengers).tick()
            second = await Runner(app, messengers).tick()
    assert [o.key for o in first.stale] == ["weekly_round:s1@2026-11-23T01:00Z"] and not second.stale
    assert await rounds(app) == [] and webhook.delivered() == []
    lines = [r.getMessage() for r in caplog.records if "skipped stale" in r.getMessage()]
    assert lines == ["skipped stale weekly_round:s1@2026-11-23T01:00Z: due 2026-11-23 01:00 UTC, 6.5 h late "
                     "(grace 6.0 h)"]


async def test_grace_is_a_setting(database_url, clock, webhook):
    app = await start_app(make_settings(database_url, push_grace_hours=8), clock=clock, upgrade=False)
    try:
        tree = await build_org(app, platform="webhook", per_branch=1)
        await schedule(app, tree.root, "weekly_round", {"day_of_week": "mon", "time": "09:00"})
        clock.now = sh(2026, 11, 23, 16, 30)  # 7.5 h late: inside an 8 h grace
        async with webhook_messengers(app, webhook) as messengers:
            report = await Runner(app, messengers).tick()
        assert len(report.ran) == 1 and len(await rounds(app)) == 1
    finally:
        await app.db.dispose()


async def test_schedule_change_takes_effect_on_the_next_tick_without_restart(app, clock, webhook):
    tree = await build_org(app, platform="webhook", per_branch=1)
    await schedule(app, tree.root, "weekly_round", {"day_of_week": "mon", "time": "10:00"})
    clock.now = sh(2026, 11, 23, 9, 55)
    async with webhook_messengers(app, webhook) as messengers:
        runner = Runner(app, messengers)
        before = await runner.run_due()
        assert [local(o.due) for o in before.upcoming if o.kind == "weekly_round"] == ["Mon 11-23 10:00"]
        clock.advance(minutes=1)
        await schedule(app, tree.root, "weekly_round", {"day_of_week": "mon", "time": "09:58"},
                       changed=clock.now)  # moved earlier while running
        after = await runner.run_due()
        assert [local(o.due) for o in after.upcoming if o.kind == "weekly_round"] == ["Mon 11-23 09:58"]
        clock.now = sh(2026, 11, 23, 9, 58)
        fired = await runner.tick()
        clock.now = sh(2026, 11, 23, 10, 0)
        nothing = await runner.tick()
    assert [local(o.nominal) for o in fired.ran] == ["Mon 11-23 09:58"] and not nothing.ran
    assert len(await rounds(app)) == 1


async def test_two_replicas_claim_each_occurrence_once_and_send_each_member_once(database_url, clock, webhook):
    a = await start_app(make_settings(database_url), clock=clock, upgrade=False)
    b = await start_app(make_settings(database_url), clock=clock, upgrade=False)  # its own engine and pool
    try:
        tree = await build_org(a, platform="webhook", per_branch=10, branches=3)
        await schedule(a, tree.root, "weekly_round", {"day_of_week": "mon", "time": "09:00", "items": 2})
        clock.now = sh(2026, 11, 23, 9, 0)
        async with webhook_messengers(a, webhook) as ma, webhook_messengers(b, webhook) as mb:
            ra, rb = Runner(a, ma), Runner(b, mb)
            await asyncio.gather(ra.heartbeat(), rb.heartbeat())
            reports = await asyncio.gather(ra.run_due(), rb.run_due(), ra.run_due(), rb.run_due())
            stats = await asyncio.gather(ra.sweep(), rb.sweep())
        assert sum(len(r.ran) for r in reports) == 1
        assert len(await rounds(a)) == 1
        async with a.db.session() as s:
            claims = (await s.exec(select(func.count()).select_from(JobClaim))).one()
        assert claims == 1
        people = len(tree.all_members()) + 1
        assert sum(st.sent for st in stats) == people  # split between the replicas, none twice
        per = webhook.posts_per_recipient()
        assert len(per) == people and set(per.values()) == {1}  # raw traffic: no duplicate at all
    finally:
        await a.db.dispose()
        await b.db.dispose()


async def test_rows_a_dead_process_left_in_sending_are_resent_with_the_same_key(app, clock, webhook):
    """The state a killed process leaves: some rows sent, some claimed ('sending') of which the
    receiver got a part, the rest pending. A restart completes it: each member gets it once."""
    tree = await build_org(app, platform="webhook", per_branch=5)
    await schedule(app, tree.root, "weekly_round", {"day_of_week": "mon", "time": "09:00", "items": 2})
    async with webhook_messengers(app, webhook) as messengers:
        crashed = Runner(app, messengers, owner="gone-host:4242:deadbeef")  # another host, lease will lapse
        await crashed.heartbeat()
        await crashed.run_due()
        (rnd,) = await rounds(app)
        await crashed.sweep()  # sends everything...
        rows = await deliveries(app, rnd.id)
        async with app.db.session() as s:  # ...then the last four rows go back to the moment of the crash
            for d in rows[-4:]:
                d.status = DeliveryStatus.sending if d.id % 2 else DeliveryStatus.pending
                s.add(d)
            await s.commit()
        restarted = Runner(app, messengers)
        await restarted.heartbeat()
        await restarted.sweep()  # the crashed process's lease still runs: its rows are left alone
        assert sum(d.status == DeliveryStatus.sending for d in await deliveries(app, rnd.id)) == 2
        clock.advance(seconds=app.settings.scheduler_lease_seconds + 1)
        await restarted.heartbeat()
        stats = await restarted.sweep()
    assert stats.sent == 2  # the two it had claimed; the two pending went out before
    assert {d.status for d in await deliveries(app, rnd.id)} == {DeliveryStatus.sent}
    per = webhook.delivered_per_recipient(key_prefix=f"round:{rnd.id}:")
    assert len(per) == len(tree.all_members()) + 1 and set(per.values()) == {1}
    assert webhook.repeats() == 4  # the receiver saw those four again and dropped them


async def test_a_process_on_this_host_that_died_is_recognised_at_once(app, clock, webhook):
    import os
    import socket
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(proc.stdout)  # exited: its pid is no longer alive (unless reused, which we accept)
    assert dead_pid != os.getpid()
    tree = await build_org(app, platform="webhook", per_branch=1)
    await schedule(app, tree.root, "weekly_round", {"day_of_week": "mon", "time": "09:00", "items": 1})
    async with webhook_messengers(app, webhook) as messengers:
        crashed = Runner(app, messengers, owner=f"{socket.gethostname()[:50]}:{dead_pid}:0badf00d")
        await crashed.heartbeat()  # its lease is still valid...
        await crashed.run_due()
        (rnd,) = await rounds(app)
        async with app.db.session() as s:
            first = (await s.exec(select(Delivery).where(Delivery.round_id == rnd.id)
                                  .order_by(col(Delivery.id)))).first()
            first.status, first.claimed_by = DeliveryStatus.sending, crashed.owner
            s.add(first)
            await s.commit()
        stats = await Runner(app, messengers).sweep()  # ...but its pid is gone: resend now
    assert stats.sent == len(tree.all_members()) + 1


async def test_failed_sends_are_retried_with_backoff_and_gone_recipients_blocked(app, clock, webhook):
    tree = await build_org(app, platform="webhook", per_branch=2, branches=1)
    await schedule(app, tree.root, "weekly_round", {"day_of_week": "mon", "time": "09:00", "items": 1})
    b = tree.branches[0]
    flaky, gone = tree.members[b.id]
    webhook.script[tree.senders[flaky.id].external_id] = [500] * 8  # twice the messenger's own 4 tries
    webhook.status_for[tree.senders[gone.id].external_id] = 410
    async with webhook_messengers(app, webhook) as messengers:
        runner = Runner(app, messengers)
        await runner.tick()
        (rnd,) = await rounds(app)
        status = {d.member_id: (d.status, d.attempts) for d in await deliveries(app, rnd.id)}
        assert status[flaky.id] == (DeliveryStatus.failed, 1) and status[gone.id] == (DeliveryStatus.blocked, 1)
        await runner.sweep()  # too soon: backoff
        assert (await deliveries(app, rnd.id))[1].attempts == 1
        clock.advance(minutes=1)
        await runner.sweep()
        clock.advance(minutes=2)
        await runner.sweep()
    status = {d.member_id: (d.status, d.attempts) for d in await deliveries(app, rnd.id)}
    assert status[flaky.id] == (DeliveryStatus.sent, 3)
    async with app.db.session() as s:
        ident = (await s.exec(select(ChannelIdentity).where(ChannelIdentity.member_id == gone.id))).one()
    assert ident.active is False
    assert webhook.delivered_per_recipient().get(tree.senders[gone.id].external_id) is None


async def test_quiet_hours_hold_a_fan_out_and_expired_rounds_are_not_sent(app, clock, webhook):
    tree = await build_org(app, platform="webhook", per_branch=2)
    await schedule(app, tree.root, "campaign", {
        "at": sh(2026, 11, 23, 21, 0).isoformat(), "deadline": sh(2026, 11, 24, 12, 0).isoformat(),
        "items": ["t-single-001"], "tag": "年轻干部", "title": "新提任干部专题测试"}, name="专题1",
        changed=sh(2026, 11, 23, 20, 0))
    clock.now = sh(2026, 11, 23, 23, 0)  # down at 21:00, back at 23:00: opened, but quiet until 07:30
    async with webhook_messengers(app, webhook) as messengers:
        runner = Runner(app, messengers)
        report = await runner.tick()
        assert [o.kind for o in report.ran] == ["campaign"] and webhook.delivered() == []
        (rnd,) = await rounds(app)
        assert (rnd.kind, rnd.cohort_tag, rnd.title) == ("campaign", "年轻干部", "新提任干部专题测试")
        tagged = {m.id for ms in tree.members.values() for m in ms if "年轻干部" in m.tags}
        assert {d.member_id for d in await deliveries(app, rnd.id)} == tagged
        clock.now = sh(2026, 11, 24, 7, 30)
        await runner.sweep()
        assert len(webhook.delivered()) == len(tagged)
        # A round that closes before it could be sent is marked, not pushed late.
        await schedule(app, tree.root, "campaign", {
            "at": sh(2026, 11, 24, 21, 0).isoformat(), "deadline": sh(2026, 11, 24, 23, 0).isoformat(),
            "items": ["t-single-001"]}, name="专题2", changed=sh(2026, 11, 24, 20, 0))
        clock.now = sh(2026, 11, 24, 22, 30)  # down again at 21:00: opened at 22:30, then quiet hours
        await runner.tick()
        clock.now = sh(2026, 11, 25, 7, 30)
        await runner.tick()
    late = (await rounds(app))[1]
    assert {(d.status, d.last_error) for d in await deliveries(app, late.id)} == {(DeliveryStatus.failed, "expired")}
    assert len(webhook.delivered()) == len(tagged)


async def test_inherited_switch_off_and_branch_override(app, clock, webhook):
    tree = await build_org(app, platform="webhook", per_branch=2)
    b1, b2 = tree.branches
    await schedule(app, tree.root, "weekly_round", {"day_of_week": "mon", "time": "09:00", "items": 1})
    await schedule(app, b1, "weekly_round", {}, enabled=False)  # 第一支部 opts out of the weekly round
    await schedule(app, b2, "reminder", {}, enabled=False)
    clock.now = sh(2026, 11, 23, 9, 0)
    async with webhook_messengers(app, webhook) as messengers:
        runner = Runner(app, messengers)
        await runner.tick()
        (rnd,) = await rounds(app)
        clock.now = sh(2026, 11, 28, 20, 0)
        report = await runner.tick()
    assert {d.member_id for d in await deliveries(app, rnd.id)} == {
        tree.admin.id, tree.secretaries[1].id, *(m.id for m in tree.members[b2.id])}
    assert [o.kind for o in report.ran] == ["reminder"]  # the round's organisation (the root) still reminds


async def test_the_tick_folds_finished_rounds_into_the_reports_topic_reach(app, clock, webhook):
    """A round's answers go into the topic reach once its deadline has passed, on the next tick."""
    tree = await build_org(app, platform="webhook", per_branch=2)
    await schedule(app, tree.root, "weekly_round", {"day_of_week": "mon", "time": "09:00"})
    clock.now = sh(2026, 11, 23, 9, 0)
    async with webhook_messengers(app, webhook) as messengers:
        runner = Runner(app, messengers)
        await runner.tick()
        (rnd,) = await rounds(app)
        assert not await _folded(app)  # still open
        clock.now = rnd.deadline + timedelta(minutes=1)
        await runner.tick()
        assert not await _folded(app)  # an answer from a replica whose clock is behind may still come
        clock.now = rnd.deadline + fold.SETTLE + timedelta(minutes=1)
        await runner.tick()
    assert rnd.id in await _folded(app)


async def _folded(app) -> list[int]:  # type: ignore[no-untyped-def]
    async with app.db.session() as s:
        return list((await s.exec(select(FoldedRound.round_id))).all())
