"""De-duplication of 公众号 / WeCom callbacks when a worker dies or fails mid-reply (issue #5).

Signed and encrypted callbacks go over HTTP to the running ASGI app, on both databases and
both platforms. A worker that died is represented by the row it leaves behind: claimed
(status "processing") and never finished. Its lease is judged by the app's clock, which the
tests move instead of sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text, update
from sqlmodel import col, select

from bot.app import App
from bot.channels.wx_inbound import (
    FAILED_TEXT,
    PROCESSING_LEASE,
    InboundFlow,
    LeaseLost,
    Ledger,
    Reply,
    message_key,
)
from bot.storage.db import Database
from bot.storage.models import Answer, ChannelIdentity, InboundMessage
from tests.channels.wx_support import wechat_harness, wecom_harness
from tests.factories import OrgTree, build_org, open_test_round

ITEMS = ["t-single-001", "t-single-002"]  # correct answers: C, then B


@dataclass
class Channel:
    """One platform's app over HTTP, with one bound member and an open two-item round."""

    platform: str
    app: App
    flow: InboundFlow
    ledger: Ledger
    tree: OrgTree
    member: str  # the member's openid / userid
    say: Callable[[str, int], Awaitable[str | None]]  # (text, MsgId) → the passive reply's text
    sent: Callable[[], list[str]]  # texts sent to the member as messages (customer-service / app)

    def key(self, msg_id: int) -> str:
        return message_key(msg_id=msg_id, sender=self.member, create_time="")

    async def row(self, msg_id: int) -> InboundMessage:
        row = await self.ledger.read(self.key(msg_id))
        assert row is not None
        return row

    async def answers(self) -> list[tuple[str, str]]:
        async with self.app.db.session() as s:
            rows = (await s.exec(select(Answer).join(ChannelIdentity, ChannelIdentity.member_id == Answer.member_id)
                                 .where(ChannelIdentity.external_id == self.member).order_by(col(Answer.id)))).all()
        return [(r.item_id, r.choice) for r in rows]

    async def died_before_storing_the_reply(self, msg_id: int) -> None:
        """The row as a worker leaves it that recorded the answer and died before `finish`."""
        async with self.app.db.session() as s:
            await s.exec(update(InboundMessage).where(col(InboundMessage.msg_key) == self.key(msg_id))  # type: ignore[call-overload]
                         .values(status="processing", reply=None))
            await s.commit()


@contextlib.asynccontextmanager
async def open_channel(platform: str, database_url: str, clock: Any, *, budget: float = 4.0) -> AsyncIterator[Channel]:
    if platform == "wechat":
        async with wechat_harness(database_url, clock, budget=budget) as wx:
            tree = await build_org(wx.app, per_branch=1, branches=1, platform="wechat")

            async def say_wechat(content: str, msg_id: int) -> str | None:
                cb = wx.fake.text_callback(member, content, msg_id=msg_id)
                response = await wx.post(cb)
                assert response.status_code == 200, response.text
                reply = wx.fake.read_reply(cb, response.text)
                return reply["Content"] if reply else None

            member = tree.senders[tree.members[tree.branches[0].id][0].id].external_id
            await open_test_round(wx.app, tree.root, ITEMS)
            yield Channel("wechat", wx.app, wx.component.inbound.flow, wx.component.ledger, tree, member,
                          say_wechat, lambda: wx.fake.kf_texts(member))
    else:
        async with wecom_harness(database_url, clock, budget=budget) as wc:
            tree = await build_org(wc.app, per_branch=1, branches=1, platform="wecom")
            for member_id, sender in tree.senders.items():
                wc.fake.add_user(sender.external_id, f"成员{member_id}", [1])

            async def say_wecom(content: str, msg_id: int) -> str | None:
                return await wc.say(member, content, msg_id=msg_id)

            member = tree.senders[tree.members[tree.branches[0].id][0].id].external_id
            await open_test_round(wc.app, tree.root, ITEMS)
            yield Channel("wecom", wc.app, wc.component.inbound.flow, wc.component.ledger, tree, member, say_wecom,
                          lambda: wc.fake.texts(member))


@pytest.fixture(params=["wechat", "wecom"])
async def ch(request, database_url, clock) -> AsyncIterator[Channel]:
    async with open_channel(request.param, database_url, clock) as channel:
        yield channel


def past_the_lease(ch: Channel, clock: Any) -> None:
    clock.advance(seconds=ch.flow.lease + 1)


async def test_a_typed_answer_is_pinned_to_its_item_and_finished_with_its_reply(ch):
    reply = await ch.say("C", 8_100_001)
    assert reply is not None and "回答正确！您的答案：C" in reply
    row = await ch.row(8_100_001)
    assert (row.status, row.attempt, row.pin["item_id"]) == ("done", 1, "t-single-001")
    assert row.reply["passive"]["content"] == reply
    assert await ch.say("C", 8_100_001) == reply  # a late retry: the stored reply, to the letter


async def test_the_retry_takes_over_a_claim_whose_worker_died_and_answers(ch, clock):
    await ch.ledger.claim(ch.key(8_100_002))  # claimed, then the process died: nothing else happened
    past_the_lease(ch, clock)
    reply = await ch.say("C", 8_100_002)
    assert reply is not None and "回答正确！您的答案：C" in reply
    row = await ch.row(8_100_002)
    assert (row.status, row.attempt) == ("done", 2)
    assert await ch.answers() == [("t-single-001", "C")]
    assert await ch.say("C", 8_100_002) == reply  # and a later retry gets the same reply
    assert await ch.answers() == [("t-single-001", "C")]


async def test_a_worker_that_died_after_recording_the_answer_does_not_make_the_retry_answer_the_next_item(ch, clock):
    first = await ch.say("A", 8_100_003)
    assert first is not None and "回答错误。您的答案：A" in first
    await ch.died_before_storing_the_reply(8_100_003)
    past_the_lease(ch, clock)
    again = await ch.say("A", 8_100_003)
    # The pinned item is answered again: a duplicate (first answer stands), not item 2 answered "A".
    assert again is not None and "这道题您已作答（以首次作答「A」为准）" in again
    assert await ch.answers() == [("t-single-001", "A")]
    assert (await ch.row(8_100_003)).status == "done"
    assert "回答正确！您的答案：B" in (await ch.say("B", 8_100_004) or "")  # the member carries on
    assert await ch.answers() == [("t-single-001", "A"), ("t-single-002", "B")]


@pytest.mark.parametrize("platform", ["wechat", "wecom"])
async def test_a_retry_while_another_worker_holds_the_claim_answers_success_and_processes_nothing(
        platform, database_url, clock):
    """WeChat: a callback that cannot be answered in time is answered "success" (or empty), so
    WeChat neither retries nor tells the member "该公众号暂时无法提供服务". The worker holding
    the claim answers itself, or past its budget by customer-service / app message.
    (A 1 s budget keeps the retry's wait for the other worker short.)"""
    async with open_channel(platform, database_url, clock, budget=1.0) as ch:
        assert await ch.ledger.claim(ch.key(8_100_005)) is not None
        assert await ch.say("C", 8_100_005) is None  # "success"
        row = await ch.row(8_100_005)
        assert (row.status, row.attempt) == ("processing", 1)
        assert await ch.answers() == []
        past_the_lease(ch, clock)  # that worker never finished after all
        assert "回答正确！您的答案：C" in (await ch.say("C", 8_100_005) or "")
        assert await ch.answers() == [("t-single-001", "C")]


async def test_simultaneous_retries_of_a_dead_claim_take_it_over_once(ch, clock):
    await ch.ledger.claim(ch.key(8_100_006))
    past_the_lease(ch, clock)
    replies = await asyncio.gather(*(ch.say("C", 8_100_006) for _ in range(3)))
    assert all(r is not None and "回答正确！您的答案：C" in r for r in replies)
    assert len(set(replies)) == 1
    assert (await ch.row(8_100_006)).attempt == 2  # one take-over, the others waited for it
    assert await ch.answers() == [("t-single-001", "C")]


@contextlib.asynccontextmanager
async def identities_unavailable(app: App) -> AsyncIterator[None]:
    """A real failure in the middle of handling: the table every command reads is gone."""
    async with app.db.session() as s:
        await s.exec(text("ALTER TABLE channelidentity RENAME TO channelidentity_away"))  # type: ignore[call-overload]
        await s.commit()
    try:
        yield
    finally:
        async with app.db.session() as s:
            await s.exec(text("ALTER TABLE channelidentity_away RENAME TO channelidentity"))  # type: ignore[call-overload]
            await s.commit()


async def test_a_handler_error_gets_a_polite_reply_and_the_retry_processes_the_message(ch, caplog):
    with caplog.at_level(logging.INFO, logger="bot"):
        async with identities_unavailable(ch.app):
            reply = await ch.say("C", 8_100_007)
    assert reply == FAILED_TEXT
    row = await ch.row(8_100_007)
    assert (row.status, row.attempt) == ("failed", 1)  # released, not stuck
    failures = [r for r in caplog.records if r.getMessage().startswith(f"{ch.platform} callback failed")]
    assert len(failures) == 1
    assert ch.member not in caplog.text and "channelidentity" not in caplog.text  # no ids, no SQL
    reply = await ch.say("C", 8_100_007)  # WeChat would not retry an answered callback; a retry may still come
    assert reply is not None and "回答正确！您的答案：C" in reply
    assert (await ch.row(8_100_007)).attempt == 2
    assert await ch.answers() == [("t-single-001", "C")]


async def test_a_handler_error_racing_the_budget_tells_the_member_once(database_url, clock):
    """With no budget the callback is answered "success" unless the failure lands first:
    either way the member gets the polite text exactly once, in the reply or as an app
    message. (WeCom: sending needs no table of ours; 公众号's 48-hour check reads the one
    that is gone.)"""
    async with open_channel("wecom", database_url, clock, budget=0) as ch:
        async with identities_unavailable(ch.app):
            passive = await ch.say("C", 8_100_008)
            await ch.flow.drain()
        assert ([passive] if passive else []) + ch.sent() == [FAILED_TEXT]
        assert (await ch.row(8_100_008)).status == "failed"
        told = len(ch.sent())
        passive = await ch.say("C", 8_100_008)  # processed again
        await ch.flow.drain()
        assert "回答正确！您的答案：C" in (passive or ch.sent()[told])
        assert await ch.answers() == [("t-single-001", "C")]


async def test_take_over_is_a_compare_and_set_across_processes(database_url, clock):
    """Two engines stand for two processes: of 20 simultaneous take-overs of a dead claim
    exactly one wins, and the loser's lease can no longer change the row."""
    engines = [Database(database_url), Database(database_url)]
    try:
        ledgers = [Ledger(db, "wechat", clock=clock) for db in engines]
        dead = await ledgers[0].claim("m:8100099")
        assert dead is not None
        clock.advance(seconds=PROCESSING_LEASE + 1)
        row = await ledgers[0].read("m:8100099")
        won = await asyncio.gather(*(ledgers[i % 2].take_over(row, lease=timedelta(seconds=PROCESSING_LEASE))
                                     for i in range(20)))
        leases = [lease for lease in won if lease is not None]
        assert len(leases) == 1 and leases[0].attempt == 2
        assert not await ledgers[1].finish(dead, Reply())  # the dead attempt is fenced off
        with pytest.raises(LeaseLost):
            await ledgers[1].pin(dead, {})
        assert await ledgers[1].finish(leases[0], Reply())
        assert (await ledgers[0].read("m:8100099")).status == "done"
    finally:
        for db in engines:
            await db.dispose()
