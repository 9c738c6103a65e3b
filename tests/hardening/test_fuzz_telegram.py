"""Fuzz the Telegram boundary: the real `TelegramComponent` (PTB Application, polling, or the
webhook route) against the fake Bot API, fed hypothesis-generated updates.

One stack per test (starting PTB per example would be slow); each example sends a small batch
of updates and waits until PTB has run every handler group for each of them (an observer
handler in the last group). Then:
- nothing reached the error handler (an observer error handler, and the handler's ERROR log);
- every call the bot made succeeded, and every text it sent or edited is non-empty zh-CN
  within Telegram's limits, without tracebacks or "None";
- every private message got at least one reply; a forged button press is answered with a
  refusal (an alert), edits and sends nothing, records nothing;
- invalid input writes nothing (row counts, identities, and KeyValue keys other than the
  update-id mark and the wrong-code throttle, which are written for any input by design).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import re
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlmodel import col, func, select
from telegram import Update
from telegram.ext import ContextTypes, TypeHandler

from bot.app import App, start_app
from bot.channels.telegram import TelegramComponent
from bot.channels.telegram.callbacks import decode, item_digest
from bot.channels.telegram.component import SECRET_HEADER, WEBHOOK_PATH
from bot.core.commands import ShowCase, SubmitAnswer
from bot.core.invites import issue_code, redeem
from bot.core.parsing import parse_text
from bot.core.push import send_round
from bot.storage.models import (
    Answer,
    AuditLog,
    CaseDelivery,
    ChannelIdentity,
    Delivery,
    InviteCode,
    KeyValue,
    Member,
    ReviewCard,
)
from bot.web import build_web_app
from tests.channels.wx_support import serve_http
from tests.conftest import make_settings
from tests.factories import build_org, open_test_round
from tests.fakes.telegram_api import BOT_USERNAME, OUTBOUND_METHODS, TOKEN, Call, FakeTelegram, StoredMessage

# Examples per test: a modest default for every run; raise it for a deep run.
EXAMPLES = int(os.environ.get("QINGFENG_FUZZ_EXAMPLES", "25"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
ITEMS = ["t-single-001", "t-multiple-001", "t-judge-001"]
OPTIONS = {1: ("single", "ABCD"), 2: ("multiple", "ABCD"), 3: ("judge", "AB")}  # by round position
TABLES = (Answer, AuditLog, CaseDelivery, ChannelIdentity, Delivery, InviteCode, ReviewCard)
KV_BY_DESIGN = ("bindfail:", "telegram:last_update_id:")
GROUP = -100777
WHO = ("m1", "sec", "m2", "stranger")  # m1, sec: the round was pushed to them; m2: bound, nothing pushed
USERS = {"m1": 5101, "sec": 5102, "m2": 5103, "stranger": 5104}
FAILED = ("系统暂时出错", "系统繁忙", "没能处理成功")
NOISE = ("Traceback", "Exception", "Error", "None", "<bound method", "object at 0x")
REFUSALS = ("为保护个人信息", "按钮已失效", "不在您的待答题目中", "巩固题已作答", "请至少勾选", "还没有绑定身份",
            "请从选项", "单选题", "没有看懂您的答案", "没有待作答")
# What Telegram marks as a bot command: "/" + [A-Za-z0-9_] (+ "@username") at the start.
_COMMAND = re.compile(r"^/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]{1,32})?(?=\s|$)")


# --- the stack ---------------------------------------------------------------------------------


@dataclass
class Stack:
    fake: FakeTelegram
    app: App
    component: TelegramComponent
    round_id: int
    processed: set[Any] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)
    base: str = ""  # the ASGI app, in webhook mode
    chats: dict[str, list[StoredMessage]] = field(default_factory=dict)  # bot messages to press on
    real: list[str] = field(default_factory=list)  # the pushed cards' callback data (toggles redraw them)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # how hypothesis prints an argument
        printer.text("<telegram stack>")


async def _bind(app: App, member: Member, user_id: int) -> None:
    async with app.db.session() as s:
        code = await issue_code(s, member, now=app.service.clock(), ttl_days=30)
        await s.commit()
        await redeem(s, code=code, platform="telegram", external_id=str(user_id), now=app.service.clock())


@contextlib.asynccontextmanager
async def telegram_stack(database_url: str, clock: Any, *, webhook: bool = False) -> AsyncIterator[Stack]:
    with FakeTelegram() as fake:
        extra: dict[str, Any] = {}
        if webhook:  # the fake never calls it: the test posts to the served app itself
            extra = {"telegram_webhook_url": "https://bot.example.org" + WEBHOOK_PATH,
                     "telegram_webhook_secret": "fuzz-webhook-secret-0123456789"}
        settings_ = make_settings(database_url, telegram_token=TOKEN, telegram_base_url=fake.base_url,
                                  telegram_max_rate=5000, telegram_retry_backoff=0.01, report_min_group=1, **extra)
        app = await start_app(settings_, clock=clock, upgrade=False)
        try:
            tree = await build_org(app, per_branch=1, branches=2, bind=False)
            b1, b2 = tree.branches
            for who, member in (("m1", tree.members[b1.id][0]), ("sec", tree.secretaries[0]),
                                ("m2", tree.members[b2.id][0])):
                await _bind(app, member, USERS[who])
            rnd = await open_test_round(app, b1, ITEMS)
            component = TelegramComponent(app)
            stack = Stack(fake, app, component, rnd.id)  # type: ignore[arg-type]

            async def observe(update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
                stack.processed.add(update.update_id)

            async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
                stack.errors.append(f"{type(context.error).__name__}: {context.error}")

            component.application.add_handler(TypeHandler(Update, observe), group=99)
            component.application.add_error_handler(on_error)
            await component.start()
            try:
                stats = await send_round(app.db, rnd.id, {"telegram": component.messenger})
                assert stats.sent == 2  # m1 and sec: the cards whose data is forged below
                async with contextlib.AsyncExitStack() as exits:
                    if webhook:
                        stack.base = await exits.enter_async_context(
                            serve_http(build_web_app(app.db, extra_routes=component.routes)))
                    yield stack
            finally:
                await component.stop()
        finally:
            await app.db.dispose()


# --- what was written, what was sent ------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    counts: tuple[int, ...]
    identities: tuple[tuple[Any, ...], ...]
    keys: frozenset[str]


async def snapshot(app: App) -> Snapshot:
    async with app.db.session() as s:
        counts = tuple([(await s.exec(select(func.count()).select_from(t))).one() for t in TABLES])
        identities = tuple((i.id, i.external_id, i.member_id, i.active) for i in (await s.exec(
            select(ChannelIdentity).order_by(col(ChannelIdentity.id)))).all())
        keys = frozenset(k for k in (await s.exec(select(KeyValue.key))).all() if not k.startswith(KV_BY_DESIGN))
    return Snapshot(counts, identities, keys)


def assert_polite(text: str | None, typed: str = "") -> None:
    assert text and text.strip(), "empty text"
    assert any("\u4e00" <= ch <= "\u9fff" for ch in text), text[:200]
    for bad in NOISE:
        assert bad not in text or bad in typed, text[:300]  # a report request may echo what was typed
    assert not any(m in text for m in FAILED), "processing failed"
    assert len(text.encode("utf-16-le")) // 2 <= 4096, len(text)


def outbound(stack: Stack, since: int) -> list[Call]:
    return [c for c in stack.fake.calls(ok=None)[since:] if c.method in OUTBOUND_METHODS]


def assert_healthy(stack: Stack, caplog: pytest.LogCaptureFixture, calls: list[Call], typed: str = "") -> None:
    """No error reached PTB's error handlers; every call succeeded; every text is polite."""
    assert not stack.errors, stack.errors
    logged = [r.getMessage()[:200] for r in caplog.records if r.levelno >= logging.ERROR]
    assert not logged, logged
    for call in calls:
        if call.method == "editMessageReplyMarkup" and call.status == 400:
            continue  # a toggle to what the keyboard already shows: "message is not modified", ignored
        assert call.ok, (call.method, call.status, {k: str(v)[:80] for k, v in call.params.items()})
        if call.method in ("sendMessage", "editMessageText"):
            assert_polite(call.params.get("text"), typed)
        if call.method == "sendPhoto":
            assert_polite(call.params.get("caption"), typed)


async def settle(stack: Stack, update_ids: list[Any]) -> None:
    """Wait until PTB ran every handler group for these updates and the report charts they started
    were sent (from tasks of their own, after the update: else they land in the next example's calls)."""
    await stack.fake.wait_for(lambda: stack.processed.issuperset(update_ids), timeout=30, what="the updates")
    await stack.component.handlers.charts_sent(timeout=30)


# --- typed messages -----------------------------------------------------------------------------

tg_chars = st.characters(codec="utf-8")  # any code point but a lone surrogate (see the webhook test)
odd_chars = st.characters(categories=["Cc", "Cf", "Zs", "Zl", "So", "Mn", "Sk", "Co"], codec="utf-8")
commands = st.builds(
    lambda c, at, args: f"/{c}{at} {args}" if args else f"/{c}{at}",
    st.sampled_from(["start", "quiz", "me", "case", "report", "help", "frobnicate", "START", "Quiz", "_", "a" * 32]),
    st.sampled_from(["", "@" + BOT_USERNAME, "@other_bot", "@" + BOT_USERNAME.upper()]),
    st.one_of(st.text(tg_chars, max_size=40), st.text(odd_chars, max_size=20), st.just("../../etc/passwd"),
              st.text(tg_chars, min_size=4000, max_size=4500)))
typed = st.one_of(
    st.text(tg_chars, min_size=1, max_size=60),
    st.text(odd_chars, min_size=1, max_size=30),
    commands,
    st.builds(lambda w, s: w + s, st.sampled_from(["报告 ", "绑定 ", "绑定", "/答题", "／quiz", "我的 "]),
              st.text(tg_chars, max_size=40)),
    st.text(tg_chars, min_size=4000, max_size=5000),  # over Telegram's 4096
    st.sampled_from(["\x00", "A\x00", "\u200bA", "A\u200b", "\u202eA\u202c", "Ａ", "ａ ｃ", "Ｈ", "AA", "ABCDEFGHI",
                     "💥" * 2100, "\\ud83d\\ude00", "\ufeff/quiz", " ", "\n\n", "对错", "√", "/start",
                     "/start \u3000", "/report None", "/report %s%n{0}", "/me@other_bot", "A" * 501]),
)


def text_update(fake: FakeTelegram, user_id: int, text: str, chat_id: int) -> dict[str, Any]:
    update = fake.text_update(user_id, text, chat_id=chat_id)
    message = update["message"]
    message.pop("entities", None)  # the fake marks any "/…"; mark commands as Telegram does
    match = _COMMAND.match(text)
    if match:
        message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(match.group(0))}]
    return update


def writes_rightly(who: str, in_group: bool, text: str) -> bool:
    """Valid input that records something: an answer or a case request in private."""
    if in_group or who == "stranger":
        return False
    command = parse_text(text)
    return isinstance(command, ShowCase) or (isinstance(command, SubmitAnswer) and who in ("m1", "sec"))


@pytest.fixture
async def tg(database_url, clock) -> AsyncIterator[Stack]:
    async with telegram_stack(database_url, clock) as stack:
        yield stack


@FUZZ
@given(batch=st.lists(st.tuples(st.sampled_from(WHO), st.booleans(), typed), min_size=1, max_size=4))
@example(batch=[("sec", False, "/report " + "机" * 4090), ("stranger", False, "💥" * 2100)])
@example(batch=[("sec", False, "/report a\x00b"), ("m2", False, "/start AB\x00CD"), ("stranger", False, "绑定\x00")])
@example(batch=[("m1", True, "/quiz@" + BOT_USERNAME), ("stranger", True, "/start ABCDEFGH"),
                ("m2", False, "\x00"), ("sec", False, "/report \u202e\u200b")])
async def test_typed_messages_and_commands(tg, caplog, batch):
    stack, fake = tg, tg.fake
    caplog.clear()
    stack.errors.clear()
    before, since = await snapshot(stack.app), len(fake.calls(ok=None))
    ids, private = [], Counter()
    for who, in_group, text in batch:
        chat = GROUP if in_group else USERS[who]
        ids.append(fake.add_update(text_update(fake, USERS[who], text, chat)))
        private[chat] += not in_group
    await settle(stack, ids)
    calls = outbound(stack, since)
    assert_healthy(stack, caplog, calls, typed="".join(t for _, _, t in batch))
    sent = Counter(c.chat_id for c in calls if c.method == "sendMessage")
    assert all(sent[chat] >= n for chat, n in private.items()), (sent, private)  # every message answered
    assert {c.chat_id for c in calls} <= {USERS[w] for w, g, _ in batch if not g} | {GROUP}
    if not any(writes_rightly(*entry) for entry in batch):
        assert await snapshot(stack.app) == before


# --- button presses -------------------------------------------------------------------------------


def _legit(stack: Stack, who: str, where: str, data: str) -> str | None:
    """"answer" / "toggle" for a press its member could really make (in private), else None."""
    d = decode(data)
    if where == "group" or who not in ("m1", "sec") or d is None or d.round_id != stack.round_id \
            or d.position not in OPTIONS:
        return None
    kind, letters = OPTIONS[d.position]
    if not set(d.letters) <= set(letters):
        return None
    if d.action == "t":
        return "toggle"
    if d.letters and (kind == "multiple" or len(d.letters) == 1):
        return "answer"
    return None


@st.composite
def forged_data(draw: st.DrawFn, stack: Stack) -> str:
    real = stack.real
    kind = draw(st.sampled_from(["random", "shaped", "review", "real", "tampered", "long", "wide", "digits",
                                 "newline"]))
    if kind == "random":
        return draw(st.text(tg_chars, max_size=100))
    if kind == "shaped":
        rid = draw(st.sampled_from([stack.round_id, stack.round_id + 1, 0, 2**31 - 1, 2**31, 9_999_999_999, 10**12]))
        pos = draw(st.sampled_from([0, 1, 2, 3, 4, 99]))
        letters = draw(st.text(alphabet="ABCDEFGHIabc", max_size=9))
        return f"{draw(st.sampled_from('atxA'))}:{rid}.{pos}:{letters}"
    if kind == "review":
        digest = draw(st.one_of(st.sampled_from([item_digest(i) for i in [*ITEMS, "t-single-002"]]),
                                st.text(alphabet="0123456789abcdef", min_size=10, max_size=10)))
        return f"{draw(st.sampled_from('at'))}:r{digest}:{draw(st.sampled_from(['', 'A', 'B', 'AB', 'Z']))}"
    if kind == "real":
        return draw(st.sampled_from(real))
    if kind == "tampered":
        data = draw(st.sampled_from(real))
        i = draw(st.integers(0, len(data)))
        return data[:i] + draw(st.text(tg_chars, min_size=1, max_size=2)) + data[i + 1:]
    if kind == "long":
        return draw(st.sampled_from(real)) + "A" * draw(st.integers(1, 300))
    if kind == "digits":  # other scripts' digits: decoded as ASCII ones before the fix
        return draw(st.sampled_from(real)).translate(str.maketrans("0123456789", "０１２３４５６７８９"))
    if kind == "newline":
        return draw(st.sampled_from(real)) + "\n"
    return draw(st.sampled_from(real)).translate(str.maketrans("0123456789ABCD:.", "０１２３４５６７８９ＡＢＣＤ：．"))


@FUZZ
@given(data=st.data())
async def test_forged_button_presses_are_refused(tg, caplog, data):
    stack, fake = tg, tg.fake
    caplog.clear()
    stack.errors.clear()
    if "stranger" not in stack.chats:  # bot messages to press on, for those who got no card
        ids = [fake.add_update(text_update(fake, USERS[w], "/help", c))
               for w, c in (("m2", USERS["m2"]), ("stranger", USERS["stranger"]), ("m1", GROUP))]
        await settle(stack, ids)
        stack.chats = {w: fake.messages(USERS[w]) for w in WHO} | {"group": fake.messages(GROUP)}
        stack.real = [b["callback_data"] for m in fake.messages(USERS["m1"]) for b in m.buttons()]
    plan = []  # drawn in full before anything is sent: hypothesis may abort an example mid-draw
    for _ in range(data.draw(st.integers(1, 4), label="presses")):
        who = data.draw(st.sampled_from(WHO), label="who")
        where = data.draw(st.sampled_from([who, "group"]), label="on a message in")
        message = data.draw(st.sampled_from(stack.chats[where]), label="message")
        payload = data.draw(forged_data(stack), label="callback data")
        legit = _legit(stack, who, where, payload)
        if legit == "answer":  # a real answer would be recorded: press it as someone it is not for
            who = data.draw(st.sampled_from(["m2", "stranger"]), label="forger")
            legit = None
        plan.append((who, message, payload, legit))
    votes = data.draw(st.lists(st.tuples(  # quiz-poll answers for polls that were never sent
        st.sampled_from(WHO), st.one_of(st.text(tg_chars, max_size=80), st.integers(0, 10**19).map(str)),
        st.lists(st.integers(-3, 40), max_size=12)), max_size=2), label="votes")
    before, since = await snapshot(stack.app), len(fake.calls(ok=None))
    presses: dict[str, str | None] = {}  # query id -> "toggle" for a real toggle
    ids = []
    for who, message, payload, legit in plan:
        uid = fake.press(USERS[who], message, payload)
        ids.append(uid)
        presses[fake.update(uid)["callback_query"]["id"]] = legit
    ids += [fake.vote(USERS[who], poll_id, options) for who, poll_id, options in votes]
    await settle(stack, ids)
    calls = outbound(stack, since)
    assert_healthy(stack, caplog, calls)
    answers = [c for c in calls if c.method == "answerCallbackQuery"]
    assert sorted(c.params["callback_query_id"] for c in answers) == sorted(presses)  # each answered once
    for call in answers:
        if presses[call.params["callback_query_id"]] == "toggle" and not call.params.get("text"):
            continue
        assert_polite(call.params.get("text"))
        assert any(r in call.params["text"] for r in REFUSALS), call.params["text"]
        assert call.params.get("show_alert") is True
    toggles = sum(v == "toggle" for v in presses.values())
    assert {c.method for c in calls} <= {"answerCallbackQuery"} | ({"editMessageReplyMarkup"} if toggles else set())
    assert await snapshot(stack.app) == before


# --- the webhook route ---------------------------------------------------------------------------

_ids = itertools.count(10**9)  # update ids, taken when sent: a lower id than the last is a replay
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12)
any_text = st.text(max_size=60)  # lone surrogates too: JSON can carry "\ud800", PTB decodes it
Meta = tuple[str, bool, str] | None  # who typed what where, for a message update


@dataclass(frozen=True)
class Body:
    kind: str
    payload: Any  # an update without its id (dict), any JSON value, or raw bytes
    meta: Meta = None

    def encode(self) -> tuple[bytes, int | None]:
        """The bytes to post, and its update id (if it has one)."""
        if self.kind == "bytes":
            return self.payload, None
        if self.kind == "json":
            return json.dumps(self.payload).encode(), None
        uid = next(_ids)
        return json.dumps({"update_id": uid, **self.payload}).encode(), uid


@st.composite
def webhook_body(draw: st.DrawFn) -> Body:
    fake = FakeTelegram()  # only its update builders: no server
    kind = draw(st.sampled_from(["text", "command", "json", "shaped", "bytes"]))
    if kind in ("text", "command"):
        who, in_group = draw(st.sampled_from(WHO)), draw(st.booleans())
        text = draw(any_text if kind == "text" else commands) or "x"
        return Body(kind, text_update(fake, USERS[who], text, GROUP if in_group else USERS[who]),
                    (who, in_group, text))
    if kind == "json":
        return Body(kind, draw(json_values))
    if kind == "shaped":  # an update whose parts are the wrong types or missing
        message = draw(st.fixed_dictionaries({}, optional={
            "message_id": json_values, "from": st.one_of(json_values, st.just(fake.user(USERS["m1"]))),
            "chat": st.one_of(json_values, st.just({"id": USERS["m1"], "type": "private"})),
            "date": json_values, "text": st.one_of(json_values, any_text), "entities": json_values}))
        part = draw(st.sampled_from(["message", "edited_message", "callback_query", "poll_answer", "x"]))
        return Body(kind, {part: message})
    return Body(kind, draw(st.binary(max_size=200)))


@pytest.fixture
async def hook(database_url, clock) -> AsyncIterator[Stack]:
    async with telegram_stack(database_url, clock, webhook=True) as stack:
        yield stack


@FUZZ
@given(bodies=st.lists(webhook_body(), min_size=1, max_size=4), secret=st.sampled_from(["right", "wrong", None]))
@example(bodies=[Body("text", FakeTelegram().text_update(USERS["sec"], "/report \ud800\udfff\ud83d"),
                      ("sec", False, "/report \ud83d"))], secret="right")
async def test_webhook_bodies(hook, caplog, bodies, secret):
    stack, fake = hook, hook.fake
    caplog.clear()
    stack.errors.clear()
    before, since = await snapshot(stack.app), len(fake.calls(ok=None))
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers[SECRET_HEADER] = "fuzz-webhook-secret-0123456789" if secret == "right" else "nope"
    waits, posted = [], []
    async with httpx.AsyncClient(base_url=stack.base) as http:
        for body in bodies:
            data, uid = body.encode()
            posted.append(data.decode("utf-8", "replace"))
            response = await http.post(WEBHOOK_PATH, content=data, headers=headers)
            if secret != "right":
                assert response.status_code == 403
                continue
            if body.meta is not None:  # a well-formed message update
                assert response.status_code == 200
            assert response.status_code in (200, 400), (body.kind, response.status_code)
            if response.status_code == 200 and uid is not None:
                waits.append(uid)
    await settle(stack, waits)
    calls = outbound(stack, since)
    assert_healthy(stack, caplog, calls, typed="".join(posted))
    if secret != "right":
        assert calls == []
    if secret != "right" or not any(b.meta and writes_rightly(*b.meta) for b in bodies):
        assert await snapshot(stack.app) == before


async def test_a_real_card_pressed_in_a_group_is_refused(tg, caplog):
    """A card forwarded to a group (or its data forged on a group message): pressing it there
    must not answer, nor show the answer, key and explanation to the group."""
    stack, fake = tg, tg.fake
    ids = [fake.add_update(text_update(fake, USERS["m1"], "/help", GROUP))]
    await settle(stack, ids)
    in_group = fake.messages(GROUP)[-1]
    card = next(m for m in fake.messages(USERS["m1"]) if m.buttons())
    before, since = await snapshot(stack.app), len(fake.calls(ok=None))
    ids = [fake.press(USERS[who], in_group, card.button(label)["callback_data"])
           for who, label in (("m1", "C."), ("sec", "A."))]
    await settle(stack, ids)
    calls = outbound(stack, since)
    assert_healthy(stack, caplog, calls)
    assert [(c.method, c.params.get("text"), c.params.get("show_alert")) for c in calls] == [
        ("answerCallbackQuery", "为保护个人信息，请在与我的私聊中使用该功能。", True)] * 2
    assert await snapshot(stack.app) == before
    fake.press(USERS["m1"], card, card.button("C.")["callback_data"])  # in private it answers
    await fake.wait_for(lambda: any("回答正确" in (m.text or "") for m in fake.messages(USERS["m1"])),
                        what="the answer in private")


async def test_a_quiz_poll_answer_naming_an_impossible_poll_is_ignored(tg, caplog):
    """A poll id with a NUL byte (found by the fuzzer above) is no poll we sent — PostgreSQL text
    cannot even hold one: the vote is ignored, nothing fails and nothing is written."""
    stack, fake = tg, tg.fake
    before, since = await snapshot(stack.app), len(fake.calls(ok=None))
    ids = [fake.vote(USERS["m1"], poll_id, [0]) for poll_id in ("\x00", "5\x00", "\x00" * 80)]
    await settle(stack, ids)
    calls = outbound(stack, since)
    assert_healthy(stack, caplog, calls)
    assert calls == [] and await snapshot(stack.app) == before
