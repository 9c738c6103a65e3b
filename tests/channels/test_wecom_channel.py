"""WeCom (企业微信) callbacks over HTTP with WeCom crypto, button cards and app-message pushes,
through wechatpy's WeCom client against the fake WeCom API."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlmodel import col, func, select

from bot.channels.wecom.cards import build_card, button_key, card_allowed, parse_button_key, task_id
from bot.core.invites import issue_code
from bot.core.push import send_round
from bot.core.results import QuizCard
from bot.storage.models import Answer, ChannelIdentity, InboundMessage, Member
from tests.channels.wx_support import wecom_harness
from tests.factories import build_org, open_test_round

SHANGHAI = datetime(2026, 11, 30, 1, 0, tzinfo=UTC)


@pytest.fixture
async def wc(database_url, clock):
    async with wecom_harness(database_url, clock) as h:
        yield h


async def bound(h, *, per_branch: int = 2, branches: int = 1):
    """An org whose members are bound to WeCom and exist in the fake WeCom directory."""
    tree = await build_org(h.app, per_branch=per_branch, branches=branches, platform="wecom")
    for member_id, sender in tree.senders.items():
        h.fake.add_user(sender.external_id, f"成员{member_id}", [1])
    return tree


def userid_of(tree, member) -> str:
    return tree.senders[member.id].external_id


async def answers(h, userid: str) -> list[tuple[str, str]]:
    async with h.app.db.session() as s:
        rows = (await s.exec(select(Answer).join(ChannelIdentity, ChannelIdentity.member_id == Answer.member_id)
                             .where(ChannelIdentity.external_id == userid).order_by(col(Answer.id)))).all()
    return [(r.item_id, r.choice) for r in rows]


async def test_url_verification_decrypts_echostr_only_with_a_good_signature(wc):
    ok = await wc.http.get("/wecom/callback", params=wc.fake.url_check("8827361540"))
    assert (ok.status_code, ok.text) == (200, "8827361540")
    bad = await wc.http.get("/wecom/callback", params=wc.fake.url_check("8827361540", bad_signature=True))
    assert bad.status_code == 403 and bad.text == ""


@pytest.mark.parametrize(("typed", "item", "stored"), [
    ("C", "t-single-001", "C"), ("ａ", "t-single-001", "A"), ("a c d", "t-multiple-001", "ACD"),
    ("对", "t-judge-001", "A"), ("错", "t-judge-001", "B"),
])
async def test_typed_answers_get_an_encrypted_passive_reply(wc, typed, item, stored):
    tree = await bound(wc)
    userid = userid_of(tree, tree.members[tree.branches[0].id][0])
    await open_test_round(wc.app, tree.root, [item])
    reply = await wc.say(userid, typed)
    assert f"您的答案：{stored}" in reply and "本轮题目已全部作答" in reply
    assert await answers(wc, userid) == [(item, stored)]


async def test_bind_unbound_and_bad_signature(wc, clock):
    tree = await build_org(wc.app, per_branch=1, branches=1, bind=False)
    member = tree.members[tree.branches[0].id][0]
    wc.fake.add_user("zhangsan", "张三", [1])
    assert "您还没有绑定身份" in await wc.say("zhangsan", "答题")
    async with wc.app.db.session() as s:
        code = await issue_code(s, await s.get(Member, member.id), now=clock(), ttl_days=30)
        await s.commit()
    forged = wc.fake.text_callback("zhangsan", f"绑定 {code}", bad_signature=True)
    assert (await wc.post(forged)).status_code == 403
    async with wc.app.db.session() as s:
        assert (await s.exec(select(func.count()).select_from(InboundMessage))).one() == 1  # the 答题 only
    assert (await wc.say("zhangsan", f"绑定{code}")).startswith("绑定成功！")


async def test_quiz_card_tap_answers_updates_the_card_and_sends_the_next(wc):
    tree = await bound(wc)
    userid = userid_of(tree, tree.members[tree.branches[0].id][0])
    await open_test_round(wc.app, tree.root, ["t-single-001", "t-judge-002", "t-multiple-001"])
    assert await wc.say(userid, "答题") is None  # the item comes as a card, not as a passive text
    [first] = wc.fake.sent_cards(userid)
    card = first.card
    assert card["main_title"]["title"] == "第1/3题·单选题" and card["sub_title_text"].startswith("四风不包括")
    assert [b["text"] for b in card["button_list"]] == ["A", "B", "C", "D"]
    assert [h["value"] for h in card["horizontal_content_list"]][2] == "本位主义"

    tap = wc.fake.click_callback(userid, card["task_id"], card["button_list"][2]["key"])
    assert await wc.exchange(tap) is None
    assert first.updates[0]["button"]["replace_name"] == "已作答 C ✅"
    assert "回答正确！您的答案：C" in wc.fake.texts(userid)[-1]
    cards = wc.fake.sent_cards(userid)
    assert len(cards) == 2 and cards[1].card["main_title"]["title"] == "第2/3题·判断题"
    assert [b["text"] for b in cards[1].card["button_list"]] == ["对", "错"]

    # WeCom retries the tap: recorded once, the card is not updated twice, nothing re-sent.
    texts_before = len(wc.fake.texts(userid))
    assert await wc.exchange(tap) is None
    assert len(first.updates) == 1 and len(wc.fake.texts(userid)) == texts_before

    judge = cards[1].card
    await wc.exchange(wc.fake.click_callback(userid, judge["task_id"], judge["button_list"][1]["key"]))
    assert cards[1].updates[0]["button"]["replace_name"] == "已作答 B ✅"
    last = wc.fake.texts(userid)[-1]  # the multiple-choice item cannot be a button card: text
    assert "回答正确！您的答案：B" in last and "【第3/3题·多选题】" in last and "请回复全部正确选项的字母" in last
    assert "回答正确！您的答案：ACD" in await wc.say(userid, "ACD")
    assert await answers(wc, userid) == [("t-single-001", "C"), ("t-judge-002", "B"), ("t-multiple-001", "ACD")]


async def test_forged_or_foreign_button_keys_do_no_harm(wc):
    tree = await bound(wc)
    members = tree.members[tree.branches[0].id]
    mine, other = userid_of(tree, members[0]), userid_of(tree, members[1])
    rnd = await open_test_round(wc.app, tree.root, ["t-single-001"])
    await wc.exchange(wc.fake.event_callback(mine, "template_card_event", EventKey="qf:bogus", TaskId="t1",
                                             CardType="button_interaction", ResponseCode=""))
    assert "按钮已失效" in wc.fake.texts(mine)[-1]
    item_not_in_round = f"qf:{rnd.id}:t-single-002:A"
    await wc.exchange(wc.fake.event_callback(other, "template_card_event", EventKey=item_not_in_round,
                                             TaskId="t2", CardType="button_interaction", ResponseCode=""))
    assert "不在您的待答题目中" in wc.fake.texts(other)[-1]
    assert await answers(wc, mine) == [] and await answers(wc, other) == []


async def test_retried_text_callback_recorded_once(wc):
    tree = await bound(wc)
    userid = userid_of(tree, tree.members[tree.branches[0].id][0])
    await open_test_round(wc.app, tree.root, ["t-multiple-001", "t-single-002"])
    first = await wc.say(userid, "AC", msg_id=9_100_000_001)
    again = await wc.say(userid, "AC", msg_id=9_100_000_001)
    assert first == again and "回答错误。您的答案：AC" in first
    assert await answers(wc, userid) == [("t-multiple-001", "AC")]


async def test_weekly_push_to_200_members_one_card_each_and_gone_users_blocked(database_url, clock):
    async with wecom_harness(database_url, clock) as wc:
        tree = await bound(wc, per_branch=49, branches=4)
        people = [s.external_id for s in tree.senders.values()]
        assert len(people) == 201
        gone = people[-1]
        del wc.fake.users[gone]  # left the company: WeCom no longer knows the userid
        rnd = await open_test_round(wc.app, tree.root, ["t-judge-001", "t-multiple-001"])
        stats = await send_round(wc.app.db, rnd.id, {"wecom": wc.component.messenger})
        assert (stats.sent, stats.blocked, stats.failed) == (200, 1, 0)
        by_user = {u: wc.fake.sent_cards(u) for u in people}
        assert all(len(by_user[u]) == 1 for u in people[:-1]) and by_user[gone] == []
        assert wc.fake.texts() == []  # nothing but the one card each
        card = by_user[people[0]][0].card
        assert card["main_title"]["title"] == "第1/2题·判断题" and "本周廉政学习" not in card["main_title"]["title"]
        assert len({c.card["task_id"] for cs in by_user.values() for c in cs}) == 200
        async with wc.app.db.session() as s:
            gone_identity = (await s.exec(select(ChannelIdentity).where(ChannelIdentity.external_id == gone))).one()
        assert gone_identity.active is False
        again = await send_round(wc.app.db, rnd.id, {"wecom": wc.component.messenger})
        assert again.sent == 0 and len(wc.fake.sent_cards()) == 200


async def test_push_of_a_multiple_choice_item_is_text_with_reply_hint(wc):
    tree = await bound(wc)
    rnd = await open_test_round(wc.app, tree.root, ["t-multiple-001"])
    stats = await send_round(wc.app.db, rnd.id, {"wecom": wc.component.messenger})
    assert stats.sent == len(tree.senders)
    text = wc.fake.texts(userid_of(tree, tree.secretaries[0]))[0]
    assert "本周共 1 道廉政学习题" in text and "请回复全部正确选项的字母" in text
    assert wc.fake.sent_cards() == []
    pushed = wc.fake.ok_calls("/cgi-bin/message/send")
    assert all(c.body["enable_duplicate_check"] == 1 for c in pushed)  # a retried push is not shown twice


def quiz_card(**kw) -> QuizCard:
    base = dict(round_id=7, item_id="t-single-001", position=1, total=5, type="single", stem="短题干（  ）。",
                options=[("A", "甲"), ("B", "乙"), ("C", "丙")], deadline=SHANGHAI)
    return QuizCard(**(base | kw))


def test_card_rules_keys_and_task_ids():
    from zoneinfo import ZoneInfo

    assert card_allowed(quiz_card())
    assert not card_allowed(quiz_card(type="multiple"))
    assert not card_allowed(quiz_card(stem="长" * 113))
    assert not card_allowed(quiz_card(options=[("A", "很" * 27), ("B", "短")]))
    assert not card_allowed(quiz_card(options=[(c, c) for c in "ABCDEFG"]))
    card = quiz_card()
    assert parse_button_key(button_key(card, "B")) == (parse_button_key("qf:7:t-single-001:B"))
    assert parse_button_key("qf:7:t-single-001:B").choice == "B"
    assert parse_button_key(button_key(quiz_card(round_id=None), "A")).round_id is None
    for bad in ("", "qf:x:y:Z", "qf:7:a:b:C", "qf:7::A", "xx:7:t:A", "qf:7:t:AB"):
        assert parse_button_key(bad) is None
    ids = {task_id(card, "user-1") for _ in range(50)}
    assert len(ids) == 50 and all(len(i) <= 128 and all(ch.isalnum() or ch in "_-@" for ch in i) for i in ids)
    built = build_card(card, "user-1", ZoneInfo("Asia/Shanghai"), heading="本周廉政学习")
    assert built["main_title"]["desc"] == "本周廉政学习 · 截止 11月30日 09:00"
    assert len(built["button_list"]) == 3 and len({b["key"] for b in built["button_list"]}) == 3
