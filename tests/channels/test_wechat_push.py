"""公众号 pushes through the real wechatpy client against the fake WeChat API: the 48-hour
window, template fallback on 45015, blocked followers, and the shared access token."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import subprocess
import time
from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlmodel import col, func, select

from bot.channels.base import Recipient, SendStatus
from bot.channels.wechat import WeChatComponent
from bot.core.push import send_round
from bot.core.results import Notice
from bot.storage.models import AuditLog, ChannelIdentity, Delivery, DeliveryStatus, KeyValue
from tests.channels.wx_support import wechat_app, wechat_fake, wechat_harness
from tests.factories import build_org, open_test_round

CUSTOM = "/cgi-bin/message/custom/send"
TEMPLATE = "/cgi-bin/message/template/send"


async def recipients(app) -> list[Recipient]:
    async with app.db.session() as s:
        rows = (await s.exec(select(ChannelIdentity).where(ChannelIdentity.platform == "wechat")
                             .order_by(col(ChannelIdentity.id)))).all()
    return [Recipient(r.member_id, r.id, r.external_id) for r in rows]


async def set_last_inbound(app, openids: list[str], at) -> None:
    async with app.db.session() as s:
        await s.exec(update(ChannelIdentity).where(col(ChannelIdentity.external_id).in_(openids))
                     .values(last_inbound_at=at))
        await s.commit()


async def test_weekly_push_to_200_members_reaches_each_once_by_the_right_kind(database_url, clock):
    async with wechat_harness(database_url, clock) as wx:
        tree = await build_org(wx.app, per_branch=49, branches=4, platform="wechat")
        people = [r.external_id for r in await recipients(wx.app)]
        assert len(people) == 201
        talked, silent, clocks_disagree, long_ago = people[:80], people[80:150], people[150:180], people[180:]

        for openid in long_ago:  # wrote 49 hours before the push: window closed on both sides
            wx.fake.last_interaction[openid] = clock() - timedelta(hours=49)
        await set_last_inbound(wx.app, long_ago, clock() - timedelta(hours=49))
        clock.advance(hours=2)
        for batch in range(0, len(talked), 20):  # wrote an hour ago: window open
            await asyncio.gather(*(wx.say(o, "帮助") for o in talked[batch:batch + 20]))
        # Our record says "open" but WeChat disagrees (e.g. the member wrote via another device
        # far earlier than we saw): the send fails with 45015 and falls back.
        await set_last_inbound(wx.app, clocks_disagree, clock())
        clock.advance(hours=1)

        rnd = await open_test_round(wx.app, tree.root, ["t-single-001", "t-judge-002"])
        stats = await send_round(wx.app.db, rnd.id, {"wechat": wx.component.messenger})
        assert (stats.sent, stats.failed, stats.blocked, stats.no_channel) == (201, 0, 0, 0)

        kf = {o: wx.fake.kf_texts(o) for o in people}
        tpl = {o: wx.fake.templates(o) for o in people}
        assert all(len(kf[o]) + len(tpl[o]) == 1 for o in people)  # each exactly once
        assert all(len(kf[o]) == 1 for o in talked)
        assert all(len(tpl[o]) == 1 for o in silent + clocks_disagree + long_ago)
        first = kf[talked[0]][0]
        assert "本周共 2 道廉政学习题" in first and "【第1/2题·单选题】" in first and "请回复选项字母" in first
        data = tpl[silent[0]][0]["data"]
        assert data["keyword3"]["value"] == "2 道题" and "答题" in data["remark"]["value"]
        assert tpl[silent[0]][0]["template_id"] == wx.fake.template_id
        refused = [c.body["touser"] for c in wx.fake.calls_to(CUSTOM) if c.errcode == 45015]
        assert sorted(refused) == sorted(clocks_disagree)  # no kf attempt outside our window
        async with wx.app.db.session() as s:
            closed = (await s.exec(select(func.count()).select_from(AuditLog)
                                   .where(AuditLog.action == "kf_window_closed"))).one()
            statuses = set((await s.exec(select(Delivery.status).where(Delivery.round_id == rnd.id))).all())
        assert closed == 30 and statuses == {DeliveryStatus.sent}

        calls_before = len(wx.fake.calls)
        again = await send_round(wx.app.db, rnd.id, {"wechat": wx.component.messenger})
        assert again.total == 0 and len(wx.fake.calls) == calls_before

        # A member reached by template replies 答题 and gets the first item as a passive reply.
        reply = await wx.say(silent[0], "答题")
        assert reply.startswith("【第1/2题·单选题】")


async def test_template_needed_but_not_configured_is_a_recorded_failure(database_url, clock):
    async with wechat_harness(database_url, clock, wechat_template_id=None) as wx:
        await build_org(wx.app, per_branch=1, branches=1, platform="wechat")
        outcome = await wx.component.messenger.send((await recipients(wx.app))[0], [Notice("提醒")])
        assert outcome.status is SendStatus.failed and "template" in outcome.error
        assert wx.fake.calls_to(CUSTOM) == [] and wx.fake.calls_to(TEMPLATE) == []


async def test_unfollowed_member_is_blocked_and_the_push_goes_on(database_url, clock):
    async with wechat_harness(database_url, clock) as wx:
        tree = await build_org(wx.app, per_branch=3, branches=1, platform="wechat")
        people = await recipients(wx.app)
        wx.fake.unfollowed.add(people[0].external_id)
        rnd = await open_test_round(wx.app, tree.root, ["t-single-001"])
        stats = await send_round(wx.app.db, rnd.id, {"wechat": wx.component.messenger})
        assert (stats.sent, stats.blocked) == (len(people) - 1, 1)
        async with wx.app.db.session() as s:
            assert (await s.get(ChannelIdentity, people[0].identity_id)).active is False


async def test_token_is_shared_by_processes_and_fetched_once(database_url, clock):
    with wechat_fake(clock) as fake:
        app1 = await wechat_app(database_url, clock, fake)
        app2 = await wechat_app(database_url, clock, fake)  # a second process: its own engine
        c1, c2 = WeChatComponent(app1), WeChatComponent(app2)
        try:
            await build_org(app1, per_branch=9, branches=1, platform="wechat")
            people = await recipients(app1)
            sends = [(c1 if i % 2 else c2).messenger.send(r, [Notice("本周学习提醒")]) for i, r in enumerate(people)]
            outcomes = await asyncio.gather(*sends)
            assert {o.status for o in outcomes} == {SendStatus.sent}
            assert fake.token_fetches == 1
            tokens = {c.query["access_token"] for c in fake.calls_to(TEMPLATE)}
            assert len(tokens) == 1
        finally:
            for c, a in ((c1, app1), (c2, app2)):
                await c.stop()
                await a.db.dispose()


async def test_token_refreshed_before_expiry_and_once_on_40001(database_url, clock):
    async with wechat_harness(database_url, clock) as wx:
        await build_org(wx.app, per_branch=1, branches=1, platform="wechat")
        who = (await recipients(wx.app))[0]
        send = wx.component.messenger.send

        assert (await send(who, [Notice("1")])).status is SendStatus.sent
        clock.advance(seconds=7200 - 240)  # inside the refresh margin, before WeChat's expiry
        assert (await send(who, [Notice("2")])).status is SendStatus.sent
        assert wx.fake.token_fetches == 2
        assert all(c.errcode == 0 for c in wx.fake.calls_to(TEMPLATE))  # never sent an expired token

        wx.fake.revoke_tokens()  # someone else fetched a token: ours is now invalid (40001)
        assert (await send(who, [Notice("3")])).status is SendStatus.sent
        assert wx.fake.token_fetches == 3
        assert [c.errcode for c in wx.fake.calls_to(TEMPLATE)][-2:] == [40001, 0]

        wx.fake.fail_next(TEMPLATE, 42001, times=2)  # still refused after the refresh: give up
        outcome = await send(who, [Notice("4")])
        assert outcome.status is SendStatus.failed and "42001" in outcome.error
        assert wx.fake.token_fetches == 4  # exactly one refresh for that send, no loop


@pytest.fixture
def redis_url(tmp_path):
    """A throwaway redis-server on 127.0.0.1 (skipped where Redis is not installed)."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server not installed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(500):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.1):
                break
            time.sleep(0.01)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


async def test_token_shared_through_redis_when_configured(sqlite_url, clock, redis_url):
    import redis.asyncio

    with wechat_fake(clock) as fake:
        apps = [await wechat_app(sqlite_url, clock, fake, redis_url=redis_url) for _ in range(2)]
        components = [WeChatComponent(a) for a in apps]
        try:
            await build_org(apps[0], per_branch=7, branches=1, platform="wechat")
            people = await recipients(apps[0])
            outcomes = await asyncio.gather(*(components[i % 2].messenger.send(r, [Notice("提醒")])
                                              for i, r in enumerate(people)))
            assert {o.status for o in outcomes} == {SendStatus.sent} and fake.token_fetches == 1
            client = redis.asyncio.from_url(redis_url)
            stored = json.loads(await client.get(f"qingfeng:wechat:token:{fake.appid}"))
            await client.aclose()
            assert stored["access_token"] == fake.calls_to(TEMPLATE)[-1].query["access_token"]
            async with apps[0].db.session() as s:  # not in the database when Redis holds it
                assert await s.get(KeyValue, f"wechat:token:{fake.appid}") is None
            fake.revoke_tokens()
            assert (await components[1].messenger.send(people[0], [Notice("再提醒")])).status is SendStatus.sent
            assert (await components[0].messenger.send(people[1], [Notice("再提醒")])).status is SendStatus.sent
            assert fake.token_fetches == 2  # one refresh, then the other process reads it from Redis
        finally:
            for c, a in zip(components, apps, strict=True):
                await c.stop()
                await a.db.dispose()
