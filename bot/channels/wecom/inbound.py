"""WeCom callback `/wecom/callback`: WeCom crypto, de-duplication, text answers and card taps.

A text gets a passive (encrypted) reply; a quiz item that fits a card follows it as an app
message. A tap on a card button (`template_card_event`, which wechatpy 1.8.18 parses only
as UnknownMessage, so the raw fields are read) is an answer: the tapped card's buttons are
replaced by the result (`message/update_template_card`), then the explanation and the next
item arrive as app messages. A report (「报告」) answers with its text at once; its charts are
drawn meanwhile and follow as image messages.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from wechatpy.enterprise.replies import TextReply

from bot.channels.report_images import ChartJobs
from bot.channels.wecom.cards import parse_button_key
from bot.channels.wecom.messenger import PLATFORM, Gone, WeComMessenger, plan
from bot.channels.wx_api import ApiError, log_failure
from bot.channels.wx_codec import Rejected, WeComCodec, cdata_safe, parse_xml, read_body
from bot.channels.wx_identity import touch
from bot.channels.wx_inbound import InboundFlow, Message, Reply, message_key, pin_typed_answer
from bot.channels.wx_text import NOT_TEXT
from bot.core.commands import Command, Help, SubmitAnswer
from bot.core.parsing import parse_text
from bot.core.results import AnswerResult, Notice, Result
from bot.core.service import Clock, Sender, Service
from bot.storage.db import Database

log = logging.getLogger(__name__)

STALE_BUTTON = "这个按钮已失效。请发送「答题」查看待答题目。"
Work = Callable[[], Awaitable[Reply]]


def replace_name(results: list[Result]) -> str:
    """What the tapped card's buttons turn into."""
    r = results[0] if results else None
    if isinstance(r, AnswerResult):
        if r.duplicate:
            return f"已作答 {r.choice}"
        return f"已作答 {r.choice} {'✅' if r.correct else '❌'}"
    return "已处理"


def split_passive(messages: list[Message]) -> Reply:
    """The first text goes in the HTTP response; everything after it (cards too) follows."""
    if messages and messages[0].get("type") == "text":
        return Reply(passive=messages[0], followups=messages[1:])
    return Reply(followups=messages)


class WeComInbound:
    def __init__(self, *, service: Service, db: Database, codec: WeComCodec, messenger: WeComMessenger,
                 flow_factory: Callable[[Callable[[str, list[Message]], Awaitable[None]]], InboundFlow],
                 agentid: int, tz: ZoneInfo, clock: Clock) -> None:
        self.service = service.for_channel(PLATFORM)
        self.db = db
        self.codec = codec
        self.messenger = messenger
        self.agentid = agentid
        self.tz = tz
        self.clock = clock
        self.charts = ChartJobs()
        self.flow = flow_factory(self.send_messages)

    async def endpoint(self, request: Request) -> Response:
        try:
            if request.method == "GET":
                return PlainTextResponse(self.codec.verify_url(request.query_params))
            xml = self.codec.open(request.query_params, await read_body(request))
            raw = parse_xml(xml)
        except Rejected as exc:
            log.warning("wecom callback rejected (%s): %s", exc.status, exc.reason)
            return PlainTextResponse("", status_code=exc.status)
        userid = raw.get("FromUserName") or ""
        work = self._work(userid, raw) if userid else None
        if work is None:
            return PlainTextResponse("success")
        key = message_key(msg_id=raw.get("MsgId"), sender=userid, create_time=raw.get("CreateTime", ""),
                          event=raw.get("Event") or "", extra=f"{raw.get('TaskId') or ''}|{raw.get('EventKey') or ''}")

        def seal(content: str) -> str:
            return self.codec.seal(TextReply(source=raw.get("ToUserName", ""), target=userid, agent=self.agentid,
                                             content=cdata_safe(content)).render())

        return await self.flow.respond(key, userid, work, seal)

    def _work(self, userid: str, raw: dict[str, Any]) -> Work | None:
        kind = raw.get("MsgType", "")
        if kind == "text":
            return lambda: self._converse(userid, parse_text(raw.get("Content") or ""))
        if kind == "event":
            event = (raw.get("Event") or "").lower()
            if event == "template_card_event":
                return lambda: self._tap(userid, raw.get("EventKey") or "", raw.get("ResponseCode") or "")
            if event == "subscribe":
                return lambda: self._converse(userid, Help())
            if event == "click":
                return lambda: self._converse(userid, parse_text(raw.get("EventKey") or ""))
            return None  # enter_agent, view, location …: nothing to answer
        return lambda: self._converse_results(userid, [Notice(NOT_TEXT)])

    async def _converse(self, userid: str, command: Command) -> Reply:
        sender = Sender(PLATFORM, userid)
        results = await self.service.handle(sender, await pin_typed_answer(self.service, sender, command))
        return await self._converse_results(userid, results)

    async def _converse_results(self, userid: str, results: list[Result]) -> Reply:
        await touch(self.db, PLATFORM, userid, self.clock())
        reply = split_passive(plan(results, userid, self.tz))
        charts = self.charts.start(results)  # drawn while the text goes out, sent after it
        if charts is not None:
            reply.followups.append(charts)
        return reply

    async def _tap(self, userid: str, event_key: str, response_code: str) -> Reply:
        answer = parse_button_key(event_key)
        if answer is None:
            results: list[Result] = [Notice(STALE_BUTTON)]
        else:
            command = SubmitAnswer(answer.choice, answer.round_id, answer.item_id)
            results = await self.service.handle(Sender(PLATFORM, userid), command)
        await touch(self.db, PLATFORM, userid, self.clock())
        update: list[Message] = []
        if response_code:
            update = [{"type": "update_button", "response_code": response_code,
                       "replace_name": replace_name(results)}]
        return Reply(followups=update + plan(results, userid, self.tz))

    async def send_messages(self, userid: str, messages: list[Message]) -> None:
        """Follow-ups and late replies as app messages, then any report charts; never raises."""
        if not messages:
            return
        try:
            await self.messenger.deliver(userid, [m for m in messages if m.get("type") != ChartJobs.KIND])
            for m in messages:
                if m.get("type") == ChartJobs.KIND:
                    await self.messenger.send_images(userid, await self.charts.take(m))
        except (ApiError, Gone) as exc:
            log.warning("wecom: follow-up message failed: %s", exc)
        except Exception as exc:
            log_failure(log, "wecom: follow-up message failed", exc)
