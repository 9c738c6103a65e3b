"""Fuzz the 公众号 and WeCom callbacks over HTTP, as the platforms (and attackers) would post them.

Per example one body goes to the running ASGI app (`/wechat/callback`, `/wecom/callback`):
- signed and encrypted text of any kind → 200 with a polite zh-CN passive reply that fits the
  platform's 2048-byte limit; nothing but the de-duplication row is written unless the text was
  a real command (an answer, a bind, a case request);
- what fails verification (signature, parameters, ciphertext, AES key) → 403 or 400, never
  processed (no de-duplication row, nothing else written);
- malformed XML, DOCTYPE and entity tricks (billion laughs, external entities) → 400;
- bodies over the limit → 413; unknown message types and events → 200, polite or "success";
- WeCom card taps with forged keys → 200, refused in a follow-up, nothing recorded.
No case may answer 500.
"""

from __future__ import annotations

import base64
import logging
import os
import secrets
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlmodel import col, func, select

from bot.core.commands import Bind, ShowCase, SubmitAnswer
from bot.core.parsing import parse_text
from bot.storage.models import (
    Answer,
    AuditLog,
    CaseDelivery,
    ChannelIdentity,
    Delivery,
    InboundMessage,
    InviteCode,
    KeyValue,
    ReviewCard,
)
from tests.channels.wx_support import wechat_harness, wecom_harness
from tests.factories import build_org, open_test_round
from tests.fakes.wechat_api import Callback, PlatformCrypto, sha1_signature, xml_message

# Examples per test: a modest default for every run; raise it for a deep run.
EXAMPLES = int(os.environ.get("QINGFENG_FUZZ_EXAMPLES", "25"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
ITEMS = ["t-single-001", "t-multiple-001", "t-judge-001"]
WRITES = (SubmitAnswer, Bind, ShowCase)  # commands that rightly write something
TABLES = (Answer, AuditLog, CaseDelivery, ChannelIdentity, Delivery, InviteCode, ReviewCard)
# Keys written by design for any input: wrong-code throttling and the platforms' access tokens.
KV_BY_DESIGN = ("bindfail:", "wechat:token:", "wecom:token:")
FAILED = ("系统繁忙", "没能处理成功", "系统暂时出错")  # the replies to a failure in processing
OTHER_AES_KEY = base64.b64encode(bytes(range(200, 232))).decode().rstrip("=")

# --- what members can type (XML 1.0 characters only: the platforms never send others) ----------


def _xml_char(c: str) -> bool:
    o = ord(c)
    return (o in (0x9, 0xA, 0xD) or 0x20 <= o <= 0xD7FF or 0xE000 <= o <= 0xFFFD or o >= 0x10000)


xml_chars = st.characters(codec="utf-8").filter(_xml_char)
odd_chars = st.characters(categories=["Cf", "Zs", "So", "Mn", "Lo", "Sk"], codec="utf-8").filter(_xml_char)
typed_text = st.one_of(
    st.text(alphabet=xml_chars, max_size=60),
    st.text(alphabet=odd_chars, max_size=30),
    st.builds(lambda w, s: f"{w}{s}", st.sampled_from(["报告 ", "绑定 ", "绑定", "/report ", "答题", "我的 "]),
              st.text(alphabet=xml_chars, max_size=40)),
    st.text(alphabet=xml_chars, min_size=700, max_size=3000),  # well over 2048 bytes in CJK
    st.sampled_from(["", "   ", "\t\n", "A", "Ａ", "ac", "A\u200b", "\u202eA", "对错", "🎉" * 600, "]]>",
                     "<![CDATA[x]]>", "&amp;&lt;", "报告 None", "报告 ../../etc/passwd", "%s%n{0}",
                     "\\ud800\\udfff", "Ｈ", "ＡＢＣＤＥＦＧＨ", "绑定 ' OR 1=1 --", "\ufeffA", "A" * 501]),
)

# --- hostile bodies ---------------------------------------------------------------------------

BILLION_LAUGHS = ('<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY a "aaaaaaaaaa">'
                  + "".join(f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(8))
                  + ']><xml><ToUserName>&i;</ToUserName><MsgType>text</MsgType><Content>&i;</Content></xml>')
EXTERNAL_ENTITY = ('<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
                   "<xml><FromUserName>&x;</FromUserName><MsgType>text</MsgType><Content>&x;</Content></xml>")
PARAMETER_ENTITY = ('<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY % p SYSTEM "http://127.0.0.1:9/x.dtd"> %p;]>'
                    "<xml><MsgType>text</MsgType><Content>x</Content></xml>")
entity_bodies = st.sampled_from([BILLION_LAUGHS, EXTERNAL_ENTITY, PARAMETER_ENTITY])
junk_bodies = st.one_of(
    st.binary(max_size=300).map(lambda b: b.decode("latin-1")),
    st.text(max_size=300),
    st.sampled_from(["", "<xml>", "<xml><MsgType>text", "<a/>", "<xml/>", "<xml></xml>", "<?xml?>", "{}",
                     "<xml><Encrypt></Encrypt></xml>", "<xml><MsgType><x/></MsgType></xml>",
                     "<xml><MsgType>text</MsgType><MsgType>text</MsgType></xml>"]),
)
field_values = st.one_of(st.text(alphabet=xml_chars, max_size=40), st.just(None), st.just({"b": "x"}),
                         st.text(alphabet=xml_chars, min_size=120, max_size=400))


LONG_SENDER_BIND = {"ToUserName": "gh_x", "FromUserName": "o" * 200, "CreateTime": "1", "MsgType": "text",
                    "Content": "绑定 ABCDEFGH", "MsgId": "77"}


def _tag(name: str, value: Any) -> str:
    """One element: text in CDATA, None as an empty element, a dict as nested elements."""
    if value is None:
        return f"<{name}/>"
    if isinstance(value, dict):
        return f"<{name}>" + "".join(_tag(k, v) for k, v in value.items()) + f"</{name}>"
    return f"<{name}><![CDATA[{str(value).replace(']]>', ']]]]><![CDATA[>')}]]></{name}>"


def odd_message(fields: dict[str, Any]) -> str:
    return "<xml>" + "".join(_tag(k, v) for k, v in fields.items()) + "</xml>"


# --- what was written ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    counts: tuple[int, ...]
    identities: tuple[tuple[Any, ...], ...]
    keys: frozenset[str]
    inbound: int


async def snapshot(app: Any) -> Snapshot:
    async with app.db.session() as s:
        counts = tuple([(await s.exec(select(func.count()).select_from(t))).one() for t in TABLES])
        identities = tuple((i.id, i.platform, i.external_id, i.member_id, i.active) for i in (await s.exec(
            select(ChannelIdentity).order_by(col(ChannelIdentity.id)))).all())
        keys = frozenset(k for k in (await s.exec(select(KeyValue.key))).all() if not k.startswith(KV_BY_DESIGN))
        inbound = (await s.exec(select(func.count()).select_from(InboundMessage))).one()
    return Snapshot(counts, identities, keys, inbound)


def assert_polite(text: str, typed: str = "") -> None:
    assert text.strip(), "empty reply"
    assert any("\u4e00" <= ch <= "\u9fff" for ch in text), text[:200]
    for bad in ("Traceback", "Exception", "Error", "None"):
        assert bad not in text or bad in typed, text[:300]  # a report request may echo what was typed
    assert len(text.encode()) <= 2048, len(text.encode())
    assert not any(m in text for m in FAILED), "processing failed"


def assert_no_failures(caplog: pytest.LogCaptureFixture) -> None:
    """Nothing failed on the way: an exception in processing is logged at ERROR (and answered
    「系统繁忙」, which is polite but wrong for input that was merely odd)."""
    failures = [f"{r.name}: {r.getMessage()[:300]}" for r in caplog.records
                if r.levelno >= logging.ERROR and r.name.startswith("bot.")]
    assert not failures, failures


def _interesting(typed: str) -> bool:
    return isinstance(parse_text(typed), WRITES)


class Stack:
    """A running harness and its fuzz world, with a short repr (hypothesis prints arguments)."""

    def __init__(self, harness: Any, world: Any, clock: Any) -> None:
        self._harness = harness
        self.world = world
        self.clock = clock

    def tick(self) -> None:
        """Events carry no MsgId: the same tap in the same second is a platform retry. Move on."""
        self.clock.advance(seconds=1)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._harness, name)

    def __repr__(self) -> str:
        return f"<{type(self._harness).__name__}>"


# --- 公众号 ------------------------------------------------------------------------------------


@dataclass
class WeChatWorld:
    member: str  # openid of a bound member with an open round
    stranger: str = "oQF-fuzz-stranger-0001"


@pytest.fixture
async def wx(database_url, clock):
    async with wechat_harness(database_url, clock) as h:
        tree = await build_org(h.app, per_branch=2, branches=1, platform="wechat")
        await open_test_round(h.app, tree.root, ITEMS)
        member = tree.members[tree.branches[0].id][0]
        yield Stack(h, WeChatWorld(member=tree.senders[member.id].external_id), clock)


def wechat_aes(h: Any, inner: str, *, crypto: PlatformCrypto | None = None, openid: str = "o") -> Callback:
    """A 安全模式 callback around any plaintext, signed correctly over its ciphertext."""
    encrypted = (crypto or h.fake.crypto).encrypt(inner)
    timestamp, nonce = str(int(h.fake.clock().timestamp())), str(secrets.randbelow(10**9))
    query = {"signature": sha1_signature(h.fake.token, timestamp, nonce), "timestamp": timestamp, "nonce": nonce,
             "openid": openid, "encrypt_type": "aes",
             "msg_signature": sha1_signature(h.fake.token, timestamp, nonce, encrypted)}
    return Callback(query, xml_message({"ToUserName": h.fake.account, "Encrypt": encrypted}), True)


def wechat_plain(h: Any, body: str, *, openid: str = "o") -> Callback:
    """明文模式: the signature covers token, timestamp and nonce only, not the body."""
    timestamp, nonce = str(int(h.fake.clock().timestamp())), str(secrets.randbelow(10**9))
    return Callback({"signature": sha1_signature(h.fake.token, timestamp, nonce), "timestamp": timestamp,
                     "nonce": nonce, "openid": openid}, body, False)


async def post_raw(h: Any, path: str, query: dict[str, str], body: bytes) -> Any:
    return await h.http.post(path, params=query, content=body, headers={"Content-Type": "text/xml"})


@FUZZ
@given(typed=typed_text, stranger=st.booleans(), encrypt=st.booleans())
async def test_wechat_signed_text_always_gets_a_polite_passive_reply(caplog, wx, typed, stranger, encrypt):
    caplog.clear()
    openid = wx.world.stranger if stranger else wx.world.member
    before = await snapshot(wx.app)
    cb = wx.fake.text_callback(openid, typed, encrypt=encrypt)
    response = await wx.post(cb)
    assert response.status_code == 200, response.text[:300]
    reply = wx.fake.read_reply(cb, response.text)
    assert reply is not None and reply["MsgType"] == "text"
    assert_polite(reply["Content"], typed)
    await wx.component.inbound.flow.drain()
    assert_no_failures(caplog)
    for call in wx.fake.calls_to(wx.fake.CUSTOM_SEND):  # what did not fit went out, and fitted
        assert call.errcode == 0, call
        assert_polite(call.body["text"]["content"], typed)
    after = await snapshot(wx.app)
    assert after.inbound == before.inbound + 1  # the de-duplication row, by design
    if stranger or not _interesting(typed):
        assert (after.counts, after.identities, after.keys) == (before.counts, before.identities, before.keys)


@dataclass(frozen=True)
class Hostile:
    kind: str
    payload: Any


hostile = st.one_of(
    st.builds(Hostile, st.just("bad-signature"), st.booleans()),
    st.builds(Hostile, st.just("missing-parameter"), st.sampled_from(["signature", "timestamp", "nonce",
                                                                       "msg_signature"])),
    st.builds(Hostile, st.just("junk-plain"), junk_bodies),
    st.builds(Hostile, st.just("junk-aes"), junk_bodies),
    st.builds(Hostile, st.just("junk-inside-aes"), junk_bodies),
    st.builds(Hostile, st.just("entities-plain"), entity_bodies),
    st.builds(Hostile, st.just("entities-aes"), entity_bodies),
    st.builds(Hostile, st.just("entities-outside-aes"), entity_bodies),
    st.builds(Hostile, st.just("oversize"), st.integers(64 * 1024 + 1, 300 * 1024)),
    st.builds(Hostile, st.just("garbage-ciphertext"), st.one_of(
        st.binary(max_size=200).map(lambda b: base64.b64encode(b).decode()), st.text(max_size=80))),
    st.builds(Hostile, st.just("wrong-aes-key"), st.booleans()),
    st.builds(Hostile, st.just("unknown-type"), st.text(alphabet=xml_chars, min_size=1, max_size=20)),
    st.builds(Hostile, st.just("unknown-event"), st.text(alphabet=xml_chars, max_size=20)),
    st.builds(Hostile, st.just("odd-fields"), st.fixed_dictionaries({
        "ToUserName": field_values, "FromUserName": field_values, "CreateTime": field_values,
        "MsgType": st.sampled_from(["text", "event", "voice", "image"]), "Content": field_values,
        "Event": field_values, "EventKey": field_values, "MsgId": field_values, "Recognition": field_values})),
)


def _wechat_request(h: Any, case: Hostile) -> tuple[Callback | tuple[dict[str, str], bytes], set[int]]:
    """The request for a hostile case, and the statuses that are right for it."""
    member, fake = h.world.member, h.fake
    if case.kind == "bad-signature":
        return fake.text_callback(member, "C", encrypt=case.payload, bad_signature=True), {403}
    if case.kind == "missing-parameter":
        cb = fake.text_callback(member, "C", encrypt=case.payload == "msg_signature")
        cb.query.pop(case.payload)
        return cb, {403}
    if case.kind == "junk-plain":
        return wechat_plain(h, case.payload), {400}
    if case.kind == "junk-aes":
        cb = fake.text_callback(member, "C")
        cb.body = case.payload
        return cb, {400, 403}  # 403: well-formed XML without an <Encrypt> element
    if case.kind == "junk-inside-aes":
        return wechat_aes(h, case.payload), {400}
    if case.kind == "entities-plain":
        return wechat_plain(h, case.payload), {400}
    if case.kind == "entities-aes":
        return wechat_aes(h, case.payload), {400}
    if case.kind == "entities-outside-aes":
        cb = fake.text_callback(member, "C")
        return (cb.query, case.payload.replace("<xml>", "<xml><Encrypt>&i;</Encrypt>").encode()), {400}
    if case.kind == "oversize":
        cb = fake.text_callback(member, "C")
        return (cb.query, cb.body.encode() + b" " * case.payload), {413}
    if case.kind == "garbage-ciphertext":
        cb = fake.text_callback(member, "C")
        query = dict(cb.query, msg_signature=sha1_signature(fake.token, cb.query["timestamp"], cb.query["nonce"],
                                                            case.payload))
        return (query, xml_message({"ToUserName": fake.account, "Encrypt": case.payload}).encode()), {400, 403}
    if case.kind == "wrong-aes-key":
        other = PlatformCrypto(fake.token, OTHER_AES_KEY, fake.appid)
        inner = xml_message({"ToUserName": fake.account, "FromUserName": member, "CreateTime": 1, "MsgType": "text",
                             "Content": "C", "MsgId": 42})
        return wechat_aes(h, inner, crypto=other), {400, 403}
    if case.kind == "unknown-type":
        inner = xml_message({"ToUserName": fake.account, "FromUserName": member, "CreateTime": 1,
                             "MsgType": case.payload, "MsgId": secrets.randbelow(10**15) + 1})
        return wechat_aes(h, inner, openid=member), {200}
    if case.kind == "unknown-event":
        inner = xml_message({"ToUserName": fake.account, "FromUserName": member, "CreateTime": secrets.randbelow(10**9),
                             "MsgType": "event", "Event": case.payload})
        return wechat_aes(h, inner, openid=member), {200}
    assert case.kind == "odd-fields"
    return wechat_aes(h, odd_message(case.payload)), {200, 400}


@FUZZ
@given(case=hostile)
@example(case=Hostile("entities-plain", BILLION_LAUGHS))
@example(case=Hostile("entities-aes", EXTERNAL_ENTITY))
@example(case=Hostile("oversize", 64 * 1024 + 1))
@example(case=Hostile("unknown-event", ""))  # wechatpy's parse_message raised on an empty <Event>
@example(case=Hostile("odd-fields", LONG_SENDER_BIND))  # overflowed the throttle key on PostgreSQL
@example(case=Hostile("odd-fields", {"FromUserName": "o", "MsgType": "text", "MsgId": "9" * 100}))
async def test_wechat_hostile_bodies_are_refused_or_answered_never_500(caplog, wx, case):
    caplog.clear()
    wx.tick()
    before = await snapshot(wx.app)
    request, allowed = _wechat_request(wx, case)
    if isinstance(request, Callback):
        query, body = request.query, request.body.encode()
    else:
        query, body = request
    response = await post_raw(wx, "/wechat/callback", query, body)
    assert response.status_code in allowed, (case.kind, response.status_code, response.text[:200])
    await wx.component.inbound.flow.drain()
    assert_no_failures(caplog)
    after = await snapshot(wx.app)
    assert (after.counts, after.identities, after.keys) == (before.counts, before.identities, before.keys)
    if response.status_code != 200:
        assert response.text == "" and after.inbound == before.inbound  # refused: nothing processed
        return
    if response.text != "success":
        assert isinstance(request, Callback)
        reply = wx.fake.read_reply(request, response.text) if case.kind != "odd-fields" else \
            _read_any_wechat_reply(wx, response.text)
        assert_polite(reply["Content"])
    assert "passwd" not in response.text and "root:" not in response.text


def _read_any_wechat_reply(h: Any, body: str) -> dict[str, str]:
    from tests.fakes.wechat_api import xml_fields

    return xml_fields(h.fake.crypto.open_reply(body))


# --- WeCom -----------------------------------------------------------------------------------


@dataclass
class WeComWorld:
    member: str  # bound, the round delivered (by its opening) to them
    other: str  # bound, in another branch: nothing delivered
    round_id: int
    stranger: str = "fuzz-stranger"


@pytest.fixture
async def wc(database_url, clock):
    async with wecom_harness(database_url, clock) as h:
        tree = await build_org(h.app, per_branch=1, branches=2, platform="wecom")
        for member_id, sender in tree.senders.items():
            h.fake.add_user(sender.external_id, f"成员{member_id}", [1])
        h.fake.add_user("fuzz-stranger", "陌生人", [1])
        rnd = await open_test_round(h.app, tree.branches[0], ITEMS)
        b1, b2 = tree.branches
        yield Stack(h, WeComWorld(member=tree.senders[tree.members[b1.id][0].id].external_id,
                                  other=tree.senders[tree.members[b2.id][0].id].external_id, round_id=rnd.id), clock)


@FUZZ
@given(typed=typed_text, who=st.sampled_from(["member", "other", "stranger"]))
async def test_wecom_signed_text_always_gets_a_polite_reply(caplog, wc, typed, who):
    caplog.clear()
    userid = getattr(wc.world, who)
    before = await snapshot(wc.app)
    sent_before = len(wc.fake.calls_to(wc.fake.SEND))
    cb = wc.fake.text_callback(userid, typed)
    response = await wc.post(cb)
    assert response.status_code == 200, response.text[:300]
    await wc.component.inbound.flow.drain()
    assert_no_failures(caplog)
    reply = wc.fake.read_reply(response.text)
    sent = wc.fake.calls_to(wc.fake.SEND)[sent_before:]
    assert reply is not None or sent, "neither a passive reply nor a message"
    if reply is not None:
        assert_polite(reply["Content"], typed)
    for call in sent:
        assert call.errcode == 0, call
        if call.body["msgtype"] == "text":
            assert_polite(call.body["text"]["content"], typed)
    after = await snapshot(wc.app)
    assert after.inbound == before.inbound + 1
    if who == "stranger" or not _interesting(typed):
        assert (after.counts, after.identities, after.keys) == (before.counts, before.identities, before.keys)


button_keys = st.one_of(
    st.text(alphabet=xml_chars, max_size=80),
    st.builds(lambda r, i, c: f"qf:{r}:{i}:{c}",
              st.one_of(st.just("{round}"), st.integers(-5, 10**30).map(str), st.just("-"),
                        st.text(alphabet=xml_chars, max_size=5)),
              st.one_of(st.sampled_from([*ITEMS, "t-single-002", "t-judge-002", "nope"]),
                        st.text(alphabet=xml_chars, max_size=70)),
              st.one_of(st.sampled_from(list("ABCDEFGH")), st.text(alphabet=xml_chars, max_size=3))),
    st.sampled_from(["", "qf", "qf:::", "qf:1:t-single-001:", "qf:-:t-single-002:B", "qf:0:t-single-001:A"]),
)


def _legit_tap(world: WeComWorld, userid: str, key: str) -> bool:
    """A tap the member could really make: their own round's item with one of its letters."""
    from bot.channels.wecom.cards import parse_button_key

    answer = parse_button_key(key)
    return (userid == world.member and answer is not None and answer.round_id == world.round_id
            and answer.item_id in ITEMS and answer.choice in "ABCD")


@FUZZ
@given(key=button_keys, who=st.sampled_from(["member", "other", "stranger"]),
       task=st.text(alphabet=xml_chars, max_size=40), code=st.text(alphabet=xml_chars, max_size=40))
@example(key="qf:2147483648:t-single-001:A", who="member", task="t", code="")  # over INTEGER
@example(key="qf:" + "9" * 25 + ":t-single-001:A", who="other", task="t", code="")  # over SQLite's 64 bits
async def test_wecom_forged_card_taps_are_refused_and_record_nothing(caplog, wc, key, who, task, code):
    caplog.clear()
    userid = getattr(wc.world, who)
    key = key.replace("{round}", str(wc.world.round_id))  # the round the member's cards are from
    if _legit_tap(wc.world, userid, key):
        key = "qf:" + key  # keep the example, but make it a forgery
    wc.tick()
    before = await snapshot(wc.app)
    sent_before = len(wc.fake.calls_to(wc.fake.SEND))
    cb = wc.fake.event_callback(userid, "template_card_event", EventKey=key, TaskId=task,
                                CardType="button_interaction", ResponseCode=code)
    response = await wc.post(cb)
    assert response.status_code == 200 and response.text == "success", response.text[:300]
    await wc.component.inbound.flow.drain()
    assert_no_failures(caplog)
    texts = [c.body["text"]["content"] for c in wc.fake.calls_to(wc.fake.SEND)[sent_before:]
             if c.body.get("msgtype") == "text"]
    assert texts, "the tap was not answered"
    for text in texts:
        assert_polite(text)
    assert any(refusal in texts[0] for refusal in ("按钮已失效", "不在您的待答题目中", "还没有绑定身份",
                                                   "请从选项", "单选题", "没有待作答")), texts[0]
    after = await snapshot(wc.app)
    assert (after.counts, after.identities, after.keys) == (before.counts, before.identities, before.keys)


wecom_hostile = st.one_of(
    st.builds(Hostile, st.just("bad-signature"), st.just(True)),
    st.builds(Hostile, st.just("missing-parameter"), st.sampled_from(["msg_signature", "timestamp", "nonce"])),
    st.builds(Hostile, st.just("junk-aes"), junk_bodies),
    st.builds(Hostile, st.just("junk-inside-aes"), junk_bodies),
    st.builds(Hostile, st.just("entities-aes"), entity_bodies),
    st.builds(Hostile, st.just("entities-outside-aes"), entity_bodies),
    st.builds(Hostile, st.just("oversize"), st.integers(64 * 1024 + 1, 300 * 1024)),
    st.builds(Hostile, st.just("garbage-ciphertext"), st.one_of(
        st.binary(max_size=200).map(lambda b: base64.b64encode(b).decode()), st.text(max_size=80))),
    st.builds(Hostile, st.just("wrong-aes-key"), st.booleans()),
    st.builds(Hostile, st.just("unknown-type"), st.text(alphabet=xml_chars, min_size=1, max_size=20)),
    st.builds(Hostile, st.just("unknown-event"), st.text(alphabet=xml_chars, max_size=20)),
    st.builds(Hostile, st.just("odd-fields"), st.fixed_dictionaries({
        "ToUserName": field_values, "FromUserName": field_values, "CreateTime": field_values,
        "MsgType": st.sampled_from(["text", "event", "image"]), "Content": field_values,
        "Event": st.one_of(field_values, st.just("template_card_event")), "EventKey": field_values,
        "TaskId": field_values, "ResponseCode": field_values, "MsgId": field_values})),
)


def wecom_aes(h: Any, inner: str, *, crypto: PlatformCrypto | None = None) -> tuple[dict[str, str], bytes]:
    encrypted = (crypto or h.fake.crypto).encrypt(inner)
    timestamp, nonce = str(int(h.fake.clock().timestamp())), str(secrets.randbelow(10**9))
    query = {"msg_signature": sha1_signature(h.fake.token, timestamp, nonce, encrypted), "timestamp": timestamp,
             "nonce": nonce}
    body = xml_message({"ToUserName": h.fake.corpid, "AgentID": str(h.fake.agentid), "Encrypt": encrypted})
    return query, body.encode()


def _wecom_request(h: Any, case: Hostile) -> tuple[tuple[dict[str, str], bytes], set[int]]:
    member, fake = h.world.member, h.fake

    def good() -> Callback:
        return fake.text_callback(member, "C")

    if case.kind == "bad-signature":
        cb = fake.text_callback(member, "C", bad_signature=True)
        return (cb.query, cb.body.encode()), {403}
    if case.kind == "missing-parameter":
        cb = good()
        cb.query.pop(case.payload)
        return (cb.query, cb.body.encode()), {403}
    if case.kind == "junk-aes":
        return (good().query, case.payload.encode()), {400, 403}
    if case.kind == "junk-inside-aes":
        return wecom_aes(h, case.payload), {400}
    if case.kind == "entities-aes":
        return wecom_aes(h, case.payload), {400}
    if case.kind == "entities-outside-aes":
        return (good().query, case.payload.replace("<xml>", "<xml><Encrypt>&i;</Encrypt>").encode()), {400}
    if case.kind == "oversize":
        cb = good()
        return (cb.query, cb.body.encode() + b" " * case.payload), {413}
    if case.kind == "garbage-ciphertext":
        cb = good()
        query = dict(cb.query, msg_signature=sha1_signature(fake.token, cb.query["timestamp"], cb.query["nonce"],
                                                            case.payload))
        return (query, xml_message({"ToUserName": fake.corpid, "Encrypt": case.payload}).encode()), {400, 403}
    if case.kind == "wrong-aes-key":
        other = PlatformCrypto(fake.token, OTHER_AES_KEY, fake.corpid)
        inner = xml_message({"ToUserName": fake.corpid, "FromUserName": member, "CreateTime": 1, "MsgType": "text",
                             "Content": "C", "MsgId": 42, "AgentID": fake.agentid})
        return wecom_aes(h, inner, crypto=other), {400, 403}
    if case.kind == "unknown-type":
        inner = xml_message({"ToUserName": fake.corpid, "FromUserName": member, "CreateTime": 1,
                             "MsgType": case.payload, "MsgId": secrets.randbelow(10**15) + 1, "AgentID": fake.agentid})
        return wecom_aes(h, inner), {200}
    if case.kind == "unknown-event":
        inner = xml_message({"ToUserName": fake.corpid, "FromUserName": member, "CreateTime": secrets.randbelow(10**9),
                             "MsgType": "event", "Event": case.payload, "AgentID": fake.agentid})
        return wecom_aes(h, inner), {200}
    assert case.kind == "odd-fields"
    return wecom_aes(h, odd_message(case.payload)), {200, 400}


@FUZZ
@given(case=wecom_hostile)
@example(case=Hostile("entities-outside-aes", BILLION_LAUGHS))
@example(case=Hostile("odd-fields", LONG_SENDER_BIND))
@example(case=Hostile("odd-fields", {"FromUserName": "u", "MsgType": "event", "Event": "template_card_event",
                                     "EventKey": {"b": "x"}, "MsgId": "x" * 100}))
async def test_wecom_hostile_bodies_are_refused_or_answered_never_500(caplog, wc, case):
    caplog.clear()
    wc.tick()
    before = await snapshot(wc.app)
    (query, body), allowed = _wecom_request(wc, case)
    response = await post_raw(wc, "/wecom/callback", query, body)
    assert response.status_code in allowed, (case.kind, response.status_code, response.text[:200])
    await wc.component.inbound.flow.drain()
    assert_no_failures(caplog)
    after = await snapshot(wc.app)
    assert (after.counts, after.identities, after.keys) == (before.counts, before.identities, before.keys)
    if response.status_code != 200:
        assert response.text == "" and after.inbound == before.inbound
        return
    if response.text != "success":
        assert_polite(wc.fake.read_reply(response.text)["Content"])


# --- URL verification (GET) ---------------------------------------------------------------------

echo_text = st.text(st.characters(codec="utf-8", exclude_categories=["Cc", "Cs"]), min_size=1, max_size=60)


@FUZZ
@given(echostr=echo_text, mode=st.sampled_from(["good", "bad", "missing"]))
async def test_wechat_url_check_echoes_only_when_signed(wx, echostr, mode):
    query = wx.fake.url_check(echostr, bad_signature=mode == "bad")
    if mode == "missing":
        query.pop("signature")
    response = await wx.http.get("/wechat/callback", params=query)
    if mode == "good":
        assert (response.status_code, response.text) == (200, echostr)
    else:
        assert (response.status_code, response.text) == (403, "")


@FUZZ
@given(echostr=echo_text, mode=st.sampled_from(["good", "bad", "missing", "garbage"]))
async def test_wecom_url_check_decrypts_only_when_signed(wc, echostr, mode):
    query = wc.fake.url_check(echostr, bad_signature=mode == "bad")
    if mode == "missing":
        query.pop("msg_signature")
    if mode == "garbage":  # correctly signed, but not a ciphertext of ours
        query["echostr"] = echostr
        query["msg_signature"] = sha1_signature(wc.fake.token, query["timestamp"], query["nonce"], echostr)
    response = await wc.http.get("/wecom/callback", params=query)
    if mode == "good":
        assert (response.status_code, response.text) == (200, echostr)
    else:
        assert response.status_code in ((400, 403) if mode == "garbage" else (403,)) and response.text == ""
