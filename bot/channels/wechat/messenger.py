"""公众号 outbound: customer-service messages inside the 48-hour window, template messages outside.

WeChat lets an account message a follower freely (客服消息) only within 48 h of the follower's
last interaction; outside it the send fails with errcode 45015. A weekly push therefore
checks the window per member (`ChannelIdentity.last_inbound_at`): inside → the invitation and
the first item as a customer-service text; outside → the configured template message
(模板消息) inviting the member to reply 答题. A 45015 (or 45047, too many messages without a
reply) despite our record falls back to the template and is written to the audit log.

Template fields (pick a template in the 公众号 backend whose content uses them):
`first` (heading), `keyword1` (activity, ≤ 20 chars), `keyword2` (deadline), `keyword3`
(how many items), `remark` (what to reply).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from bot.channels.base import Recipient, SendOutcome, SendStatus
from bot.channels.wx_api import ApiCaller, ApiError, log_failure
from bot.channels.wx_identity import in_kf_window
from bot.channels.wx_text import clip, pack_texts, render_texts
from bot.core.results import CaseCard, Notice, Reminder, Result, RoundInvite
from bot.core.service import Clock
from bot.storage.db import Database
from bot.storage.models import AuditLog

log = logging.getLogger(__name__)

PLATFORM = "wechat"
WINDOW_CLOSED = frozenset({45015, 45047})  # out of the 48 h window / too many without a reply
GONE = frozenset({43004, 40003, 43019})  # not following / invalid openid / blacklisted us


def template_data(results: list[Result], tz: ZoneInfo, now: datetime) -> dict[str, dict[str, str]]:
    invite = next((r for r in results if isinstance(r, RoundInvite)), None)
    reminder = next((r for r in results if isinstance(r, Reminder)), None)
    if invite is not None:
        fields = {
            "first": "您有新的廉政学习题待完成",
            "keyword1": clip(invite.title or "本周廉政学习", 20),
            "keyword2": f"{invite.deadline.astimezone(tz):%Y年%m月%d日 %H:%M}",
            "keyword3": f"{len(invite.cards)} 道题",
            "remark": "回复「答题」开始作答。",
        }
    elif reminder is not None:
        fields = {
            "first": "本轮廉政学习即将截止",
            "keyword1": clip(reminder.title or "本周廉政学习", 20),
            "keyword2": f"{reminder.deadline.astimezone(tz):%Y年%m月%d日 %H:%M}",
            "keyword3": f"还有 {reminder.unanswered}/{reminder.total} 道题未答",
            "remark": "回复「答题」继续作答。",
        }
    else:
        case = next((r for r in results if isinstance(r, CaseCard)), None)
        notice = next((r for r in results if isinstance(r, Notice)), None)
        if case is not None:
            head, remark = clip(case.title, 20), "回复「案例」查看全文。"
        else:
            head = clip(notice.text.split("\n")[0], 20) if notice else "学习提醒"
            remark = "回复「答题」查看待答题目，回复「帮助」查看全部功能。"
        fields = {"first": "清风·廉政学习提醒", "keyword1": head,
                  "keyword2": f"{now.astimezone(tz):%Y年%m月%d日 %H:%M}", "keyword3": "—", "remark": remark}
    return {k: {"value": v} for k, v in fields.items()}


class WeChatMessenger:
    """`Messenger` for 公众号; never raises for a recipient."""

    platform = PLATFORM

    def __init__(self, api: ApiCaller, db: Database, *, tz: ZoneInfo, clock: Clock,
                 template_id: str | None) -> None:
        self.api = api
        self.db = db
        self.tz = tz
        self.clock = clock
        self.template_id = template_id

    async def send(self, recipient: Recipient, results: list[Result]) -> SendOutcome:
        try:
            return await self._send(recipient, results)
        except ApiError as exc:
            return SendOutcome(SendStatus.failed, str(exc))
        except Exception as exc:  # keep the push going; the delivery row records the failure
            log_failure(log, "wechat send failed unexpectedly", exc)
            return SendOutcome(SendStatus.failed, type(exc).__name__)

    async def _send(self, recipient: Recipient, results: list[Result]) -> SendOutcome:
        now = self.clock()
        if await in_kf_window(self.db, recipient.identity_id, now):
            try:
                await self.send_texts(recipient.external_id, render_texts(results, self.tz))
                return SendOutcome(SendStatus.sent)
            except ApiError as exc:
                if exc.errcode in GONE:
                    return SendOutcome(SendStatus.blocked, str(exc))
                if exc.errcode not in WINDOW_CLOSED:
                    raise
                await self._record_window_closed(recipient, exc.errcode, now)
        return await self._send_template(recipient, results, now)

    async def send_texts(self, openid: str, texts: list[str]) -> None:
        """Customer-service texts; raises ApiError only if the first one fails."""
        for i, text in enumerate(pack_texts(texts)):
            try:
                await self.api.call(lambda c, t=text: c.message.send_text(openid, t))
            except ApiError:
                if i == 0:
                    raise
                log.warning("wechat: a follow-up message was not delivered")
                return

    async def _send_template(self, recipient: Recipient, results: list[Result], now: datetime) -> SendOutcome:
        if not self.template_id:
            return SendOutcome(SendStatus.failed, "outside the 48 h window and no template id configured")
        data = template_data(results, self.tz, now)
        try:
            await self.api.call(lambda c: c.message.send_template(recipient.external_id, self.template_id, data))
        except ApiError as exc:
            if exc.errcode in GONE:
                return SendOutcome(SendStatus.blocked, str(exc))
            raise
        return SendOutcome(SendStatus.sent)

    async def _record_window_closed(self, recipient: Recipient, errcode: int | None, now: datetime) -> None:
        detail: dict[str, Any] = {"identity_id": recipient.identity_id, "errcode": errcode}
        async with self.db.session() as session:
            session.add(AuditLog(at=now, actor="wechat", action="kf_window_closed", detail=detail))
            await session.commit()
        log.info("wechat: customer-service window closed (%s); sending the template instead", errcode)
