"""Shared 公众号/WeCom plumbing: message packing, the de-dup ledger, log redaction, and both
channels started by `qingfeng run`'s runtime."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from datetime import timedelta

import httpx
from sqlmodel import select

from bot.channels.base import Recipient
from bot.channels.wechat.inbound import text_reply
from bot.channels.wx_inbound import Ledger, Purger, Reply
from bot.channels.wx_text import TEXT_LIMIT, pack_texts
from bot.core.results import Notice
from bot.runtime import serve
from bot.storage.models import InboundMessage
from tests.channels.wx_support import WECHAT, WECOM, wechat_fake, wechat_harness, wecom_fake
from tests.conftest import make_settings
from tests.factories import build_org


def size(text: str) -> int:
    return len(text.encode())


def test_pack_texts_keeps_order_and_limits_and_loses_nothing():
    short = ["甲" * 100, "乙" * 100, "丙" * 100]
    assert pack_texts(short) == ["\n\n".join(short)]
    long_line = "长" * 1500  # 4500 bytes, one line
    lines = "\n".join(f"第{i}行：" + "字" * 60 for i in range(40))
    packed = pack_texts(["开头", long_line, lines, "结尾"])
    assert all(size(p) <= TEXT_LIMIT for p in packed)
    joined = "".join(packed).replace("\n", "")
    assert joined == ("开头" + long_line + lines + "结尾").replace("\n", "")
    assert packed[0].startswith("开头") and packed[-1].endswith("结尾")
    assert pack_texts(["", ""]) == []


def test_a_reply_too_long_for_one_message_continues_as_follow_ups():
    reply = text_reply(["答" * 500, "案" * 500, "例" * 500])
    assert reply.passive["content"] == "答" * 500
    assert [m["content"] for m in reply.followups] == ["案" * 500, "例" * 500]


async def test_ledger_claims_once_and_purges_old_rows(sqlite_app, clock):
    wechat = Ledger(sqlite_app.db, "wechat", clock=clock)
    wecom = Ledger(sqlite_app.db, "wecom", clock=clock)
    lease = await wechat.claim("m:1")
    assert lease is not None and await wechat.claim("m:1") is None
    assert await wecom.claim("m:1")  # keys are per platform
    assert await wechat.finish(lease, Reply(passive={"type": "text", "content": "好"}))
    assert not await wechat.defer(lease)  # already done: stays done
    clock.advance(days=4)
    assert await wechat.claim("m:2")
    assert await wechat.purge(clock() - timedelta(days=3)) == 1
    async with sqlite_app.db.session() as s:
        left = {(r.platform, r.msg_key) for r in (await s.exec(select(InboundMessage))).all()}
    assert left == {("wechat", "m:2"), ("wecom", "m:1")}


async def test_a_running_channel_purges_its_own_old_rows(sqlite_app, clock):
    wechat, wecom = Ledger(sqlite_app.db, "wechat", clock=clock), Ledger(sqlite_app.db, "wecom", clock=clock)
    await wechat.claim("m:old")
    await wecom.claim("m:old")
    clock.advance(days=4)
    await wechat.claim("m:new")
    purger = Purger(wechat)  # what the 公众号 component starts and stops
    purger.start()
    try:
        for _ in range(500):
            async with sqlite_app.db.session() as s:
                left = {(r.platform, r.msg_key) for r in (await s.exec(select(InboundMessage))).all()}
            if ("wechat", "m:old") not in left:
                break
            await asyncio.sleep(0.01)
    finally:
        await purger.stop()
    assert left == {("wechat", "m:new"), ("wecom", "m:old")}  # the other platform's rows are not its own


async def test_http_debug_logs_never_show_the_access_token(database_url, clock, caplog):
    async with wechat_harness(database_url, clock) as wx:
        await build_org(wx.app, per_branch=1, branches=1, platform="wechat")
        with caplog.at_level(logging.DEBUG):
            outcome = await wx.component.messenger.send(Recipient(1, 1, "wechat-1"), [Notice("提醒")])
        assert outcome.status == "sent"
        token = wx.fake.calls_to("/cgi-bin/message/template/send")[-1].query["access_token"]
        http_lines = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("urllib3"))
        assert "template/send" in http_lines and "/token?" in http_lines  # urllib3 logged the requests …
        assert token not in http_lines and WECHAT["wechat_secret"] not in http_lines  # … redacted
        # (SQL parameter logs at DEBUG are masked by bot.logs' handler filter in `qingfeng run`.)


def free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_runtime_serves_both_callbacks(sqlite_url, clock):
    with wechat_fake(clock) as wx_fake, wecom_fake(clock) as wc_fake:
        port = free_port()
        settings = make_settings(sqlite_url, **WECHAT, **WECOM, http_port=port,
                                 wechat_api_base_url=wx_fake.base_url, wecom_api_base_url=wc_fake.base_url)
        stop, ready = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(serve(settings, stop=stop, ready=ready))
        try:
            await asyncio.wait_for(ready.wait(), 60)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
                assert (await http.get("/wechat/callback", params=wx_fake.url_check("e1"))).text == "e1"
                assert (await http.get("/wecom/callback", params=wc_fake.url_check("e2"))).text == "e2"
                cb = wx_fake.text_callback("oQF-runtime-1", "帮助")
                reply = wx_fake.read_reply(cb, (await http.post("/wechat/callback", params=cb.query,
                                                                content=cb.body.encode())).text)
                assert "绑定 邀请码" in reply["Content"]
        finally:
            stop.set()
            await asyncio.wait_for(task, 60)
