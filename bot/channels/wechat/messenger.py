"""公众号 outbound: customer-service messages inside the 48-hour window, template messages outside.

WeChat lets an account message a follower freely (客服消息) only within 48 h of the follower's
last interaction; outside it the send fails with errcode 45015. A weekly push therefore
checks the window per member (`ChannelIdentity.last_inbound_at`): inside → the invitation and
the first item as a customer-service text; outside → the configured template message
(模板消息) inviting the member to reply 答题. A 45015 (or 45047, too many messages without a
reply) despite our record falls back to the template and is written to the audit log.

A report (weekly digest) inside the window is its text and then its charts, each uploaded as
temporary media and sent as a customer-service image. A template message cannot carry
images: outside the window the digest goes as a template inviting the secretary to reply
报告 (which answers with text and charts), and the skipped images are counted and logged.

Template fields: we fill logical fields — heading, title, deadline, count, remark — and
`QINGFENG_WECHAT_TEMPLATE_FIELDS` says which key of the chosen template each goes to (default:
`first`, `keyword1`, `keyword2`, `keyword3`, `remark`). Fields the mapping leaves out are not sent.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from bot.channels.base import Recipient, SendOutcome, SendStatus
from bot.channels.report_images import ReportImage, count_images, report_images, reports_in
from bot.channels.text import pct
from bot.channels.wx_api import ApiCaller, ApiError, log_failure
from bot.channels.wx_identity import in_kf_window
from bot.channels.wx_text import clip, pack_texts, render_texts
from bot.config import DEFAULT_WECHAT_TEMPLATE_FIELDS
from bot.core.results import BranchSummary, CaseCard, Notice, Reminder, Result, RoundInvite
from bot.core.service import Clock
from bot.storage.db import Database
from bot.storage.models import AuditLog

log = logging.getLogger(__name__)

PLATFORM = "wechat"
WINDOW_CLOSED = frozenset({45015, 45047})  # out of the 48 h window / too many without a reply
GONE = frozenset({43004, 40003, 43019})  # not following / invalid openid / blacklisted us


# Newer templates type their keys; longer values are refused (errcode 47003), so cut them.
_KEY_LIMITS = (("thing", 20), ("phrase", 5), ("character_string", 32), ("keyword", 20))


def _fit(key: str, value: str) -> str:
    return next((clip(value, n) for prefix, n in _KEY_LIMITS if key.startswith(prefix)), value)


def template_data(results: list[Result], tz: ZoneInfo, now: datetime,
                  fields: dict[str, str] | None = None) -> dict[str, dict[str, str]]:
    """The template message's data: our logical fields under the template's own keys."""
    invite = next((r for r in results if isinstance(r, RoundInvite)), None)
    reminder = next((r for r in results if isinstance(r, Reminder)), None)
    report = next((r for r in results if isinstance(r, BranchSummary)), None)
    when = f"{now.astimezone(tz):%Y年%m月%d日 %H:%M}"
    if invite is not None:
        said = {
            "heading": "您有新的廉政学习题待完成",
            "title": invite.title or "本周廉政学习",
            "deadline": f"{invite.deadline.astimezone(tz):%Y年%m月%d日 %H:%M}",
            "count": f"{len(invite.cards)} 道题",
            "remark": "回复「答题」开始作答。",
        }
    elif reminder is not None:
        said = {
            "heading": "本轮廉政学习即将截止",
            "title": reminder.title or "本周廉政学习",
            "deadline": f"{reminder.deadline.astimezone(tz):%Y年%m月%d日 %H:%M}",
            "count": f"还有 {reminder.unanswered}/{reminder.total} 道题未答",
            "remark": "回复「答题」继续作答。",
        }
    elif report is not None:
        rate = "不予显示" if report.withheld else f"回收率 {pct(report.return_rate or report.response_rate)}"
        said = {"heading": "清风·答题统计已生成", "title": f"{report.org_name}·{report.period_label}",
                "deadline": when, "count": rate, "remark": "回复「报告」查看统计全文与图表。"}
    else:
        case = next((r for r in results if isinstance(r, CaseCard)), None)
        notice = next((r for r in results if isinstance(r, Notice)), None)
        if case is not None:
            head, remark = case.title, "回复「案例」查看全文。"
        else:
            head = notice.text.split("\n")[0] if notice else "学习提醒"
            remark = "回复「答题」查看待答题目，回复「帮助」查看全部功能。"
        said = {"heading": "清风·廉政学习提醒", "title": head, "deadline": when, "count": "—", "remark": remark}
    said["title"] = clip(said["title"], 20)
    mapping = fields or DEFAULT_WECHAT_TEMPLATE_FIELDS
    return {key: {"value": _fit(key, said[name])} for name, key in mapping.items()}


class WeChatMessenger:
    """`Messenger` for 公众号; never raises for a recipient."""

    platform = PLATFORM

    def __init__(self, api: ApiCaller, db: Database, *, tz: ZoneInfo, clock: Clock,
                 template_id: str | None, template_fields: dict[str, str] | None = None) -> None:
        self.api = api
        self.db = db
        self.tz = tz
        self.clock = clock
        self.template_id = template_id
        self.template_fields = template_fields or dict(DEFAULT_WECHAT_TEMPLATE_FIELDS)

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
            except ApiError as exc:
                if exc.errcode in GONE:
                    return SendOutcome(SendStatus.blocked, str(exc))
                if exc.errcode not in WINDOW_CLOSED:
                    raise
                await self._record_window_closed(recipient, exc.errcode, now)
            else:
                if reports_in(results):
                    await self.send_images(recipient.external_id, await report_images(results))
                return SendOutcome(SendStatus.sent)
        outcome = await self._send_template(recipient, results, now)
        if outcome.status is SendStatus.sent and reports_in(results):
            # A template message carries no images; the secretary can reply 报告 for them.
            count_images(PLATFORM, "not_allowed")
            log.info("wechat: report charts not sent: outside the 48 h window, sent as a template message")
        return outcome

    async def send_images(self, openid: str, images: list[ReportImage]) -> int:
        """Report charts as customer-service images (upload as temporary media, then send);
        never raises: the report's text went first. Returns how many arrived."""
        sent = 0
        for k, image in enumerate(images):
            try:
                uploaded = await self.api.call(lambda c, i=image: c.media.upload(
                    "image", (i.filename, i.png, "image/png")))
                media_id = str(uploaded["media_id"])
                await self.api.call(lambda c, m=media_id: c.message.send_image(openid, m))
            except ApiError as exc:
                count_images(PLATFORM, "failed")
                log.warning("wechat: a report chart was not delivered: %s", exc)
                if exc.errcode in WINDOW_CLOSED or exc.errcode in GONE:
                    count_images(PLATFORM, "failed", len(images) - k - 1)  # the rest cannot go either
                    break
                continue
            except Exception as exc:
                count_images(PLATFORM, "failed")
                log_failure(log, "wechat: a report chart was not delivered", exc)
                continue
            count_images(PLATFORM, "sent")
            sent += 1
        return sent

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
        data = template_data(results, self.tz, now, self.template_fields)
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
