"""公众号 callback `/wechat/callback`: verify, decrypt, de-duplicate, answer within 5 s.

Text (and voice with WeChat's speech recognition) goes through the same parser as every
channel: 「A」「ac」「Ａ」「对」「绑定 CODE」「答题」「我的」「报告」「案例」「帮助」. The answer is one
passive reply; what does not fit (2048 bytes) follows as customer-service messages, and
work slower than the budget is answered "success" and sent afterwards the same way. A report
(「报告」) answers with its text at once; its charts are drawn meanwhile and follow as
customer-service images (the member just wrote, so the 48-hour window is open).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from wechatpy.replies import TextReply

from bot.channels.report_images import ChartJobs
from bot.channels.wechat.messenger import PLATFORM, WeChatMessenger
from bot.channels.wx_api import ApiError, log_failure
from bot.channels.wx_codec import Rejected, WeChatCodec, cdata_safe, parse_xml, read_body
from bot.channels.wx_identity import set_active, touch
from bot.channels.wx_inbound import InboundFlow, Message, Reply, message_key, pin_typed_answer
from bot.channels.wx_text import NOT_TEXT, pack_texts, render_texts
from bot.core.commands import Command, Help
from bot.core.parsing import parse_text
from bot.core.results import Notice
from bot.core.service import Clock, Sender, Service
from bot.storage.db import Database

log = logging.getLogger(__name__)


Work = Callable[[], Awaitable[Reply]]


def text_reply(texts: list[str]) -> Reply:
    packed = pack_texts(texts) or ["（无内容）"]
    return Reply(passive={"type": "text", "content": packed[0]},
                 followups=[{"type": "text", "content": t} for t in packed[1:]])


class WeChatInbound:
    def __init__(self, *, service: Service, db: Database, codec: WeChatCodec, messenger: WeChatMessenger,
                 flow_factory: Callable[[Callable[[str, list[Message]], Awaitable[None]]], InboundFlow],
                 tz: ZoneInfo, clock: Clock) -> None:
        self.service = service.for_channel(PLATFORM)
        self.db = db
        self.codec = codec
        self.messenger = messenger
        self.tz = tz
        self.clock = clock
        self.charts = ChartJobs()
        self.flow = flow_factory(self.send_messages)

    async def endpoint(self, request: Request) -> Response:
        try:
            if request.method == "GET":
                return PlainTextResponse(self.codec.verify_url(request.query_params))
            xml, encrypted = self.codec.open(request.query_params, await read_body(request))
            raw = parse_xml(xml)
        except Rejected as exc:
            log.warning("wechat callback rejected (%s): %s", exc.status, exc.reason)
            return PlainTextResponse("", status_code=exc.status)
        # The flat fields, not wechatpy's parse_message: it fails on an empty or nested <Event>.
        openid, account = raw.get("FromUserName") or "", raw.get("ToUserName") or ""
        work = self._work(openid, raw) if openid else None
        if work is None:
            return PlainTextResponse("success")
        key = message_key(msg_id=raw.get("MsgId"), sender=openid, create_time=raw.get("CreateTime", ""),
                          event=raw.get("Event") or "", extra=raw.get("EventKey") or "")

        def seal(content: str) -> str:
            return self.codec.seal(TextReply(source=account, target=openid, content=cdata_safe(content)).render(),
                                   encrypted)

        return await self.flow.respond(key, openid, work, seal)

    def _work(self, openid: str, raw: dict[str, Any]) -> Work | None:
        kind = raw.get("MsgType", "")
        if kind == "text":
            return lambda: self._converse(openid, parse_text(raw.get("Content") or ""))
        if kind == "voice":
            spoken = (raw.get("Recognition") or "").strip()
            return lambda: self._converse(openid, parse_text(spoken)) if spoken else self._notice(openid, NOT_TEXT)
        if kind == "event":
            event = (raw.get("Event") or "").lower()
            if event == "subscribe":
                return lambda: self._followed(openid)
            if event == "unsubscribe":
                return lambda: self._unfollowed(openid)
            if event == "click":
                return lambda: self._converse(openid, parse_text(raw.get("EventKey") or ""))
            return None  # VIEW, LOCATION, template job reports …: nothing to answer
        return lambda: self._notice(openid, NOT_TEXT)

    async def _converse(self, openid: str, command: Command) -> Reply:
        sender = Sender(PLATFORM, openid)
        results = await self.service.handle(sender, await pin_typed_answer(self.service, sender, command))
        await touch(self.db, PLATFORM, openid, self.clock())  # after a bind, too: it opens the window
        reply = text_reply(render_texts(results, self.tz))
        charts = self.charts.start(results)  # drawn while the text goes out, sent after it
        if charts is not None:
            reply.followups.append(charts)
        return reply

    async def _notice(self, openid: str, text: str) -> Reply:
        await touch(self.db, PLATFORM, openid, self.clock())
        return text_reply(render_texts([Notice(text)], self.tz))

    async def _followed(self, openid: str) -> Reply:
        await set_active(self.db, PLATFORM, openid, True, now=self.clock())
        return await self._converse(openid, Help())

    async def _unfollowed(self, openid: str) -> Reply:
        await set_active(self.db, PLATFORM, openid, False, now=self.clock())
        return Reply()

    async def send_messages(self, openid: str, messages: list[Message]) -> None:
        """Follow-ups and late replies as customer-service texts, then any report charts as
        images; never raises."""
        texts = [m["content"] for m in messages if m.get("type") == "text"]
        try:
            if texts:
                await self.messenger.send_texts(openid, texts)
        except ApiError as exc:
            log.warning("wechat: reply by customer-service message failed: %s", exc)
            return
        except Exception as exc:
            log_failure(log, "wechat: reply by customer-service message failed", exc)
            return
        for m in messages:
            if m.get("type") == ChartJobs.KIND:
                await self.messenger.send_images(openid, await self.charts.take(m))
