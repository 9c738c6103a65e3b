"""公众号 callbacks over HTTP, built as WeChat builds them (XML, signatures, AES), against the
running ASGI app; passive replies are decrypted and read as the member would see them."""

from __future__ import annotations

import asyncio

import pytest
from sqlmodel import func, select

from bot.core.invites import issue_code
from bot.storage.models import Answer, AuditLog, ChannelIdentity, InboundMessage, Member
from tests.channels.wx_support import wechat_harness
from tests.factories import build_org, open_test_round


@pytest.fixture
async def wx(database_url, clock):
    async with wechat_harness(database_url, clock) as h:
        yield h


async def member_openid(h, *, per_branch: int = 2) -> tuple[object, str]:
    tree = await build_org(h.app, per_branch=per_branch, branches=1, platform="wechat")
    member = tree.members[tree.branches[0].id][0]
    return tree, tree.senders[member.id].external_id


async def answers_of(h, openid: str) -> list[tuple[str, str]]:
    async with h.app.db.session() as s:
        rows = (await s.exec(select(Answer).join(ChannelIdentity, ChannelIdentity.member_id == Answer.member_id)
                             .where(ChannelIdentity.external_id == openid).order_by(Answer.id))).all()
    return [(r.item_id, r.choice) for r in rows]


async def test_url_verification_echoes_only_with_a_good_signature(wx):
    ok = await wx.http.get("/wechat/callback", params=wx.fake.url_check("echo-5921"))
    assert (ok.status_code, ok.text) == (200, "echo-5921")
    bad = await wx.http.get("/wechat/callback", params=wx.fake.url_check("echo-5921", bad_signature=True))
    assert bad.status_code == 403 and "echo" not in bad.text


@pytest.mark.parametrize(("typed", "item", "stored", "correct"), [
    ("C", "t-single-001", "C", True),
    ("a", "t-single-001", "A", False),
    ("Ｃ", "t-single-001", "C", True),  # full-width letter
    (" c ", "t-single-001", "C", True),
    ("AC", "t-multiple-001", "AC", False),
    ("a c d", "t-multiple-001", "ACD", True),
    ("ＡＣＤ", "t-multiple-001", "ACD", True),
    ("对", "t-judge-001", "A", True),
    ("错", "t-judge-001", "B", False),
])
async def test_each_answer_form_is_recorded_and_answered(wx, typed, item, stored, correct):
    tree, openid = await member_openid(wx)
    await open_test_round(wx.app, tree.root, [item])
    text = await wx.say(openid, typed)
    assert text is not None
    assert (f"回答正确！您的答案：{stored}" in text) is correct
    assert (f"回答错误。您的答案：{stored}" in text) is (not correct)
    assert "本轮题目已全部作答" in text
    assert await answers_of(wx, openid) == [(item, stored)]


async def test_answers_walk_through_the_round_in_plain_mode_too(wx):
    tree, openid = await member_openid(wx)
    await open_test_round(wx.app, tree.root, ["t-single-001", "t-judge-002"])
    card = await wx.say(openid, "答题", encrypt=False)  # 明文模式: plain XML both ways
    assert card.startswith("【第1/2题·单选题】") and "四风不包括" in card and "请回复选项字母（A/B/C/D）" in card
    first = await wx.say(openid, "C", encrypt=False)
    assert "回答正确" in first and "【第2/2题·判断题】" in first
    second = await wx.say(openid, "错")
    assert "回答正确！您的答案：B" in second
    assert await answers_of(wx, openid) == [("t-single-001", "C"), ("t-judge-002", "B")]


async def test_command_words_map_to_the_same_commands_as_telegram(wx, clock):
    tree, openid = await member_openid(wx, per_branch=5)
    await open_test_round(wx.app, tree.root, ["t-single-001"])
    assert "【清风·廉政学习助手】" in await wx.say(openid, "帮助")
    assert "【第1/1题·单选题】" in await wx.say(openid, "答题")
    assert "的学习记录】" in await wx.say(openid, "我的")
    assert "【警示教育】" in await wx.say(openid, "案例")
    assert "仅向支部书记" in await wx.say(openid, "报告")  # a plain member
    secretary = tree.senders[tree.secretaries[0].id].external_id
    assert "答题统计】" in await wx.say(secretary, "报告")


async def test_bind_by_text_then_answer(wx, clock):
    tree = await build_org(wx.app, per_branch=1, branches=1, bind=False)
    member = tree.members[tree.branches[0].id][0]
    async with wx.app.db.session() as s:
        code = await issue_code(s, await s.get(Member, member.id), now=clock(), ttl_days=30)
        await s.commit()
    openid = "oQF-new-member-0001"
    reply = await wx.say(openid, f"绑定 {code.lower()}")
    assert reply.startswith("绑定成功！") and "发送「答题」" in reply
    async with wx.app.db.session() as s:
        identity = (await s.exec(select(ChannelIdentity).where(ChannelIdentity.external_id == openid))).one()
    assert identity.member_id == member.id and identity.platform == "wechat"
    assert identity.last_inbound_at == clock()  # the bind opened the 48-hour window


async def test_unbound_user_is_told_politely_how_to_bind(wx):
    reply = await wx.say("oQF-stranger-0001", "A")
    assert "您还没有绑定身份" in reply and "绑定 邀请码" in reply
    reply = await wx.say("oQF-stranger-0001", "你好")
    assert "没有看懂" in reply and "发送「绑定 邀请码」" in reply


@pytest.mark.parametrize("encrypt", [True, False])
async def test_bad_signature_is_403_and_nothing_is_processed(wx, encrypt):
    tree, openid = await member_openid(wx)
    await open_test_round(wx.app, tree.root, ["t-single-001"])
    cb = wx.fake.text_callback(openid, "C", encrypt=encrypt, bad_signature=True)
    response = await wx.post(cb)
    assert response.status_code == 403 and response.text == ""
    assert await answers_of(wx, openid) == []
    async with wx.app.db.session() as s:
        assert (await s.exec(select(func.count()).select_from(InboundMessage))).one() == 0


async def test_tampered_ciphertext_and_missing_parameters_are_refused(wx):
    _tree, openid = await member_openid(wx)
    cb = wx.fake.text_callback(openid, "帮助")
    cb.query.pop("msg_signature")
    assert (await wx.post(cb)).status_code == 403
    cb = wx.fake.text_callback(openid, "帮助")
    cb.body = cb.body.replace("<Encrypt><![CDATA[", "<Encrypt><![CDATA[AAAA")
    assert (await wx.post(cb)).status_code == 403  # the signature covers the ciphertext
    huge = wx.fake.text_callback(openid, "帮助", encrypt=False)
    huge.body += " " * 70_000
    assert (await wx.post(huge)).status_code == 413


async def test_retried_callback_is_recorded_once_and_answered_the_same(wx):
    tree, openid = await member_openid(wx)
    await open_test_round(wx.app, tree.root, ["t-single-001", "t-single-002"])
    first_cb = wx.fake.text_callback(openid, "A", msg_id=6_000_000_000_000_001)
    retry_cb = wx.fake.text_callback(openid, "A", msg_id=6_000_000_000_000_001)  # new nonce, same MsgId
    assert first_cb.query["nonce"] != retry_cb.query["nonce"] or first_cb.body != retry_cb.body
    first = wx.fake.read_reply(first_cb, (await wx.post(first_cb)).text)
    again = wx.fake.read_reply(retry_cb, (await wx.post(retry_cb)).text)
    assert first["Content"] == again["Content"]
    assert "回答错误。您的答案：A" in first["Content"] and "【第2/2题" in first["Content"]
    assert await answers_of(wx, openid) == [("t-single-001", "A")]
    # A new message (new MsgId) answers the next item.
    assert "回答正确！您的答案：B" in await wx.say(openid, "B")
    assert await answers_of(wx, openid) == [("t-single-001", "A"), ("t-single-002", "B")]


async def test_simultaneous_duplicates_are_processed_once(wx):
    tree, openid = await member_openid(wx)
    await open_test_round(wx.app, tree.root, ["t-single-001", "t-single-002"])
    callbacks = [wx.fake.text_callback(openid, "C", msg_id=6_000_000_000_000_777) for _ in range(3)]
    responses = await asyncio.gather(*(wx.post(cb) for cb in callbacks))
    contents = [wx.fake.read_reply(cb, r.text) for cb, r in zip(callbacks, responses, strict=True)]
    assert all(c is not None for c in contents)
    assert len({c["Content"] for c in contents}) == 1
    assert await answers_of(wx, openid) == [("t-single-001", "C")]


async def test_retried_event_is_handled_once(wx):
    _tree, openid = await member_openid(wx)
    async with wx.app.db.session() as s:
        identity = (await s.exec(select(ChannelIdentity).where(ChannelIdentity.external_id == openid))).one()
        identity.active = False
        s.add(identity)
        await s.commit()
    cb = wx.fake.event_callback(openid, "subscribe")
    replies = [wx.fake.read_reply(cb, (await wx.post(cb)).text) for _ in range(2)]
    assert replies[0]["Content"] == replies[1]["Content"] and "【清风·廉政学习助手】" in replies[0]["Content"]
    async with wx.app.db.session() as s:
        follows = (await s.exec(select(func.count()).select_from(AuditLog).where(AuditLog.action == "follow"))).one()
        identity = await s.get(ChannelIdentity, identity.id)
    assert follows == 1 and identity.active


async def test_unfollow_deactivates_and_follow_restores(wx):
    _tree, openid = await member_openid(wx)
    response = await wx.post(wx.fake.event_callback(openid, "unsubscribe"))
    assert response.text == "success"
    async with wx.app.db.session() as s:
        identity = (await s.exec(select(ChannelIdentity).where(ChannelIdentity.external_id == openid))).one()
    assert identity.active is False
    cb = wx.fake.event_callback(openid, "subscribe")
    assert "答题" in wx.fake.read_reply(cb, (await wx.post(cb)).text)["Content"]
    async with wx.app.db.session() as s:
        assert (await s.get(ChannelIdentity, identity.id)).active is True


async def test_menu_click_voice_and_images(wx):
    tree, openid = await member_openid(wx)
    await open_test_round(wx.app, tree.root, ["t-single-001"])
    cb = wx.fake.event_callback(openid, "CLICK", event_key="答题")
    assert "【第1/1题" in wx.fake.read_reply(cb, (await wx.post(cb)).text)["Content"]
    cb = wx.fake.message_callback(openid, "voice", {"MediaId": "m1", "Format": "amr", "Recognition": "C。"})
    assert "回答正确！您的答案：C" in wx.fake.read_reply(cb, (await wx.post(cb)).text)["Content"]
    cb = wx.fake.message_callback(openid, "image", {"PicUrl": "http://x/y.jpg", "MediaId": "m2"})
    assert "只能识别文字消息" in wx.fake.read_reply(cb, (await wx.post(cb)).text)["Content"]


async def test_every_inbound_message_moves_the_window(wx, clock):
    _tree, openid = await member_openid(wx)
    await wx.say(openid, "帮助")
    clock.advance(hours=30)
    await wx.say(openid, "我的")
    async with wx.app.db.session() as s:
        identity = (await s.exec(select(ChannelIdentity).where(ChannelIdentity.external_id == openid))).one()
    assert identity.last_inbound_at == clock()


async def test_slow_work_is_answered_empty_then_sent_as_customer_service_message(database_url, clock):
    async with wechat_harness(database_url, clock, budget=0) as wx:
        tree, openid = await member_openid(wx)
        await open_test_round(wx.app, tree.root, ["t-single-001"])
        cb = wx.fake.text_callback(openid, "C", msg_id=6_000_000_000_000_900)
        # The member's previous message is still being worked on, so this one is not done within
        # its budget (work that never waits, e.g. on SQLite, could otherwise finish within 0 s).
        async with wx.component.inbound.flow._lock_for(openid):
            response = await wx.post(cb)
        assert response.text == "success"
        await wx.component.inbound.flow.drain()
        texts = wx.fake.kf_texts(openid)
        assert len(texts) == 1 and "回答正确！您的答案：C" in texts[0]
        # WeChat's retry of that callback gets nothing more: the answer already went out.
        retry = await wx.post(wx.fake.text_callback(openid, "C", msg_id=6_000_000_000_000_900))
        assert retry.text == "success"
        await wx.component.inbound.flow.drain()
        assert len(wx.fake.kf_texts(openid)) == 1
        assert await answers_of(wx, openid) == [("t-single-001", "C")]


async def test_quick_successive_answers_go_to_successive_items(wx):
    tree, openid = await member_openid(wx)
    await open_test_round(wx.app, tree.root, ["t-single-001", "t-single-002"])
    callbacks = [wx.fake.text_callback(openid, choice) for choice in ("C", "B")]  # two MsgIds
    responses = await asyncio.gather(*(wx.post(cb) for cb in callbacks))
    assert all(r.status_code == 200 for r in responses)
    assert {item for item, _ in await answers_of(wx, openid)} == {"t-single-001", "t-single-002"}


async def test_typed_text_cannot_inject_xml_into_the_reply(wx):
    tree, _openid = await member_openid(wx, per_branch=1)
    secretary = tree.senders[tree.secretaries[0].id].external_id
    attack = "报告 ]]></Content><ToUserName><![CDATA[oQF-victim]]></ToUserName><Content><![CDATA[x"
    for encrypt in (True, False):
        reply = await wx.say(secretary, attack, encrypt=encrypt)  # read_reply checks ToUserName too
        assert "没有找到组织" in reply and "<ToUserName>" in reply


async def test_odd_but_signed_xml_gets_a_polite_answer_not_an_error(wx):
    cb = wx.fake.text_callback("oQF-odd-0001", "x", encrypt=False)
    cb.body = cb.body.replace("<Content><![CDATA[x]]></Content>", "<Content><b>x</b></Content>")
    reply = wx.fake.read_reply(cb, (await wx.post(cb)).text)
    assert "没有看懂" in reply["Content"]
    not_xml = wx.fake.text_callback("oQF-odd-0001", "x", encrypt=False)
    not_xml.body = "<xml><MsgType>text"
    assert (await wx.post(not_xml)).status_code == 400
