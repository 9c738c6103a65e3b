"""WeCom outbound: app messages by `message/send` to one `touser` (no 48-hour window).

A pushed round arrives as its first item: a button card where the card allows it, else a
text ending in 「回复 A/B/C」. Answering (tap or text) brings the next item the same way.
A report (the weekly digest, or a 「报告」 reply) is its text followed by its charts, each
uploaded as temporary media and sent as an image message.
"""

from __future__ import annotations

import logging
from typing import Any
from zoneinfo import ZoneInfo

from bot.channels.base import Recipient, SendOutcome, SendStatus
from bot.channels.report_images import ReportImage, count_images, report_images, reports_in
from bot.channels.text import render_answer, render_card, render_case
from bot.channels.wecom.cards import build_card, card_allowed
from bot.channels.wx_api import ApiCaller, ApiError, log_failure
from bot.channels.wx_inbound import Message
from bot.channels.wx_text import invite_intro, pack_texts, render_texts
from bot.core.results import AnswerResult, QuizCard, Result, RoundInvite

log = logging.getLogger(__name__)

PLATFORM = "wecom"
GONE = frozenset({81013, 60111, 60011})  # not in the app's visible range / unknown user / no privilege
STALE_CARD = frozenset({60140})
DUPLICATE_WINDOW = 1800  # seconds  # the card's response_code expired or was used: nothing to update


class Gone(Exception):
    """WeCom says this user cannot receive the app's messages."""


def plan(results: list[Result], userid: str, tz: ZoneInfo) -> list[Message]:
    """Turn results into WeCom messages: texts, with quiz items as cards where possible."""
    out: list[Message] = []
    texts: list[str] = []

    def flush() -> None:
        out.extend({"type": "text", "content": t} for t in pack_texts(texts))
        texts.clear()

    def card(item: QuizCard, heading: str | None = None) -> None:
        flush()
        out.append({"type": "card", "template_card": build_card(item, userid, tz, heading=heading)})

    for r in results:
        if isinstance(r, RoundInvite) and r.cards and card_allowed(r.cards[0]):
            card(r.cards[0], heading=r.title)
        elif isinstance(r, RoundInvite) and r.cards:
            texts.append(invite_intro(r, tz) + "\n\n" + render_card(r.cards[0], tz))
        elif isinstance(r, QuizCard) and card_allowed(r):
            card(r)
        elif isinstance(r, AnswerResult) and r.next_card is not None and card_allowed(r.next_card):
            texts.append(render_answer(r))
            if r.case:
                texts.append(render_case(r.case))
            card(r.next_card)
        else:
            texts.extend(render_texts([r], tz))
    flush()
    return out


class WeComMessenger:
    """`Messenger` for WeCom; never raises for a recipient."""

    platform = PLATFORM

    def __init__(self, api: ApiCaller, *, agentid: int, tz: ZoneInfo) -> None:
        self.api = api
        self.agentid = agentid
        self.tz = tz

    async def send(self, recipient: Recipient, results: list[Result]) -> SendOutcome:
        try:
            await self.deliver(recipient.external_id, plan(results, recipient.external_id, self.tz), dedupe=True)
            if reports_in(results):
                await self.send_images(recipient.external_id, await report_images(results))
        except Gone as exc:
            return SendOutcome(SendStatus.blocked, str(exc))
        except ApiError as exc:
            return SendOutcome(SendStatus.failed, str(exc))
        except Exception as exc:  # keep the push going; the delivery row records it
            log_failure(log, "wecom send failed unexpectedly", exc)
            return SendOutcome(SendStatus.failed, type(exc).__name__)
        return SendOutcome(SendStatus.sent)

    async def deliver(self, userid: str, messages: list[Message], *, dedupe: bool = False) -> None:
        # Pushes ask WeCom to drop an identical message within 30 min: a retry after a timeout
        # (sent, but the answer was lost) then does not reach the member twice. Replies do not:
        # asking 帮助 twice must answer twice.
        extra = {"enable_duplicate_check": 1, "duplicate_check_interval": DUPLICATE_WINDOW} if dedupe else {}
        for message in messages:
            kind = message.get("type")
            if kind == "text":
                await self._send(userid, {"msgtype": "text", "text": {"content": message["content"]}, **extra})
            elif kind == "card":
                await self._send(userid, {"msgtype": "template_card", "template_card": message["template_card"],
                                          **extra})
            elif kind == "update_button":
                await self._update_button(userid, message["response_code"], message["replace_name"])

    async def send_images(self, userid: str, images: list[ReportImage]) -> int:
        """Report charts as image messages (upload as temporary media, then send); a chart that
        fails is logged and skipped — the report's text went first. Returns how many arrived.
        Raises Gone like `deliver` (the member cannot receive anything)."""
        sent = 0
        for image in images:
            try:
                uploaded = await self.api.call(lambda c, i=image: c.media.upload(
                    "image", (i.filename, i.png, "image/png")))
                await self._send(userid, {"msgtype": "image", "image": {"media_id": str(uploaded["media_id"])}})
            except ApiError as exc:
                count_images(PLATFORM, "failed")
                log.warning("wecom: a report chart was not delivered: %s", exc)
                continue
            except Gone:
                count_images(PLATFORM, "failed")
                raise
            except Exception as exc:
                count_images(PLATFORM, "failed")
                log_failure(log, "wecom: a report chart was not delivered", exc)
                continue
            count_images(PLATFORM, "sent")
            sent += 1
        return sent

    async def _send(self, userid: str, msg: dict[str, Any]) -> dict[str, Any]:
        try:
            result: dict[str, Any] = await self.api.call(
                lambda c: c.message.send(self.agentid, userid, msg=msg))
        except ApiError as exc:
            if exc.errcode in GONE:
                raise Gone(str(exc)) from None
            raise
        if userid in str(result.get("invaliduser") or "").split("|"):
            raise Gone("invaliduser")
        return result

    async def _update_button(self, userid: str, response_code: str, replace_name: str) -> None:
        data = {"userids": [userid], "agentid": self.agentid, "response_code": response_code,
                "button": {"replace_name": replace_name}}
        try:
            await self.api.call(lambda c: c.post("message/update_template_card", data=data))
        except ApiError as exc:
            if exc.errcode not in STALE_CARD:
                raise
