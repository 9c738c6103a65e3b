"""Invite codes: single use, expiry, brute force throttled per chat and globally."""

from __future__ import annotations

from sqlmodel import select

from bot.core.commands import Bind
from bot.core.invites import FAILS_GLOBAL, FAILS_PER_CHAT, issue_code
from bot.core.results import BindResult, Notice
from bot.core.service import Sender
from bot.storage.models import ChannelIdentity
from tests.factories import build_org


async def _code(app, member, ttl_days=30):
    async with app.db.session() as s:
        code = await issue_code(s, member, now=app.service.clock(), ttl_days=ttl_days)
        await s.commit()
    return code


async def test_code_binds_once_and_only_once(app):
    tree = await build_org(app, bind=False)
    m = tree.members[tree.branches[0].id][0]
    code = await _code(app, m)
    ok = (await app.service.handle(Sender("telegram", "111"), Bind(code.lower())))[0]
    assert isinstance(ok, BindResult) and ok.member_name == m.name and not ok.already_bound
    again = (await app.service.handle(Sender("telegram", "111"), Bind(code)))[0]
    assert isinstance(again, BindResult) and again.already_bound
    other = (await app.service.handle(Sender("telegram", "222"), Bind(code)))[0]
    assert isinstance(other, Notice) and "已被使用" in other.text
    async with app.db.session() as s:
        ids = (await s.exec(select(ChannelIdentity.external_id))).all()
    assert ids == ["111"]


async def test_expired_code_is_refused(app, clock):
    tree = await build_org(app, bind=False)
    code = await _code(app, tree.secretaries[0], ttl_days=1)
    clock.advance(days=2)
    res = (await app.service.handle(Sender("telegram", "1"), Bind(code)))[0]
    assert isinstance(res, Notice) and "过期" in res.text


async def test_wrong_codes_are_throttled_per_chat_then_lifted(app, clock):
    tree = await build_org(app, bind=False)
    good = await _code(app, tree.secretaries[0])
    chat = Sender("telegram", "999")
    for _ in range(FAILS_PER_CHAT):
        res = (await app.service.handle(chat, Bind("WRONG123")))[0]
        assert "无效" in res.text
    blocked = (await app.service.handle(chat, Bind(good)))[0]
    assert isinstance(blocked, Notice) and "次数过多" in blocked.text
    other_chat = (await app.service.handle(Sender("telegram", "1000"), Bind(good)))[0]
    assert isinstance(other_chat, BindResult)  # another chat is not punished
    clock.advance(minutes=16)
    assert "无效" in (await app.service.handle(chat, Bind("WRONG123")))[0].text


async def test_global_throttle_stops_distributed_guessing(app):
    await build_org(app, bind=False)
    for i in range(FAILS_GLOBAL):
        await app.service.handle(Sender("telegram", f"bot-{i % 50}-{i}"), Bind("NOPE0000"))
    res = (await app.service.handle(Sender("telegram", "fresh"), Bind("NOPE0000")))[0]
    assert "次数过多" in res.text
