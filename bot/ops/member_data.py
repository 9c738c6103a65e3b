"""Personal-data requests: export everything stored about a member, or erase the person.

Erasure keeps the statistics: the member row stays as a pseudonym (「已注销成员#<id>」, no
roster key, rank, position, year or tags, inactive), so answers and deliveries still count in
branch and item statistics, while everything that ties the row to a person goes — chat
accounts, invite codes, spaced-repetition cards, case pushes and pending notifications. An
audit row records who erased which id, without the name.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, update
from sqlmodel import SQLModel, col, or_, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.core.orgs import org_path_names
from bot.storage import models
from bot.storage.models import (
    Answer,
    AuditLog,
    BankItem,
    CaseDelivery,
    CaseStudy,
    ChannelIdentity,
    Delivery,
    InviteCode,
    Member,
    Organization,
    ReviewCard,
    Role,
    Round,
)

ERASED_NAME = "已注销成员#{id}"


class MemberDataError(Exception):
    """A polite zh-CN reason the request cannot go ahead (unknown or ambiguous member)."""


def _notification_model() -> type[SQLModel] | None:
    # Reminders/digests (scheduler feature) may be absent from an older schema module.
    return getattr(models, "Notification", None)


async def find_member(session: AsyncSession, who: str) -> Member:
    """By 工号 (external key), exact name, or `#<id>`; an ambiguous name is refused."""
    who = who.strip()
    if who.startswith("#") and who[1:].isdigit():
        member = await session.get(Member, int(who[1:]))
        if member is None:
            raise MemberDataError(f"没有编号为 {who} 的成员")
        return member
    rows = (await session.exec(select(Member).where(or_(Member.external_key == who, Member.name == who)))).all()
    by_key = [m for m in rows if m.external_key == who]
    if len(by_key) == 1:
        return by_key[0]
    if not rows:
        raise MemberDataError(f"没有找到成员「{who}」")
    if len(rows) > 1:
        raise MemberDataError(f"有 {len(rows)} 位成员叫「{who}」，请改用工号或 #编号 指明是哪一位")
    return rows[0]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


async def export_member(session: AsyncSession, member: Member, *, now: datetime) -> dict[str, Any]:
    """Everything stored about one member, as JSON-ready data (no tokens, no invite codes)."""
    mid = member.id
    org = await session.get(Organization, member.org_id)
    identities = (await session.exec(select(ChannelIdentity).where(ChannelIdentity.member_id == mid)
                                     .order_by(col(ChannelIdentity.id)))).all()
    invites = (await session.exec(select(InviteCode).where(InviteCode.member_id == mid)
                                  .order_by(col(InviteCode.created_at)))).all()
    deliveries = (await session.exec(select(Delivery, Round).join(Round, col(Round.id) == col(Delivery.round_id))
                                     .where(Delivery.member_id == mid).order_by(col(Delivery.id)))).all()
    answers = (await session.exec(select(Answer, BankItem).join(BankItem, col(BankItem.id) == col(Answer.item_id))
                                  .where(Answer.member_id == mid).order_by(col(Answer.id)))).all()
    cards = (await session.exec(select(ReviewCard).where(ReviewCard.member_id == mid)
                                .order_by(col(ReviewCard.item_id)))).all()
    cases = (await session.exec(select(CaseDelivery, CaseStudy)
                                .join(CaseStudy, col(CaseStudy.id) == col(CaseDelivery.case_id))
                                .where(CaseDelivery.member_id == mid).order_by(col(CaseDelivery.id)))).all()
    audit = (await session.exec(select(AuditLog).where(AuditLog.actor == f"member:{mid}")
                                .order_by(col(AuditLog.id)))).all()
    data: dict[str, Any] = {
        "exported_at": now.isoformat(),
        "member": {
            "id": mid, "name": member.name, "external_key": member.external_key, "role": member.role,
            "rank": member.rank, "position": member.position, "joined_party_year": member.joined_party_year,
            "tags": list(member.tags), "active": member.active, "created_at": _iso(member.created_at),
        },
        "organization": {"id": member.org_id, "path": await org_path_names(session, org) if org else []},
        "identities": [{"platform": i.platform, "external_id": i.external_id, "active": i.active,
                        "bound_at": _iso(i.bound_at), "last_inbound_at": _iso(i.last_inbound_at)}
                       for i in identities],
        "invite_codes": [{"created_at": _iso(c.created_at), "expires_at": _iso(c.expires_at),
                          "used_at": _iso(c.used_at)} for c in invites],
        "deliveries": [{"round_id": d.round_id, "round_title": r.title, "status": d.status, "channel": d.channel,
                        "attempts": d.attempts, "created_at": _iso(d.created_at), "sent_at": _iso(d.sent_at)}
                       for d, r in deliveries],
        "answers": [{"round_id": a.round_id, "item_id": a.item_id, "question": i.stem, "choice": a.choice,
                     "correct": a.correct, "late": a.late, "answered_at": _iso(a.answered_at),
                     "channel": a.channel} for a, i in answers],
        "review_cards": [{"item_id": c.item_id, "due_at": _iso(c.due_at), "lapses": c.lapses,
                          "updated_at": _iso(c.updated_at)} for c in cards],
        "case_deliveries": [{"case_id": c.case_id, "title": s.title, "reason": c.reason,
                             "delivered_at": _iso(c.delivered_at)} for c, s in cases],
        "audit_log": [{"at": _iso(a.at), "action": a.action, "detail": a.detail} for a in audit],
    }
    notification = _notification_model()
    if notification is not None:
        n: Any = notification
        rows = (await session.exec(select(n).where(n.member_id == mid).order_by(col(n.id)))).all()
        data["notifications"] = [{"kind": r.kind, "status": r.status, "round_id": r.round_id,
                                  "created_at": _iso(r.created_at), "sent_at": _iso(r.sent_at)} for r in rows]
    return data


async def erase_member(session: AsyncSession, member: Member, *, now: datetime, actor: str = "cli") -> dict[str, int]:
    """Anonymise the member and delete what identifies them; returns rows deleted per kind.

    One transaction: either all of it happens or none.
    """
    mid = member.id
    identity_ids = list((await session.exec(select(ChannelIdentity.id).where(ChannelIdentity.member_id == mid))).all())
    deleted: dict[str, int] = {}

    async def purge(kind: str, stmt: Any) -> None:
        result = await session.exec(stmt)
        deleted[kind] = result.rowcount or 0

    if identity_ids:  # another member's invite can never point here, but be safe with the foreign key
        await session.exec(update(InviteCode).where(col(InviteCode.used_by_identity_id).in_(identity_ids))  # type: ignore[call-overload]
                           .values(used_by_identity_id=None))
    await purge("invite_codes", delete(InviteCode).where(col(InviteCode.member_id) == mid))
    await purge("identities", delete(ChannelIdentity).where(col(ChannelIdentity.member_id) == mid))
    await purge("review_cards", delete(ReviewCard).where(col(ReviewCard.member_id) == mid))
    await purge("case_deliveries", delete(CaseDelivery).where(col(CaseDelivery.member_id) == mid))
    notification = _notification_model()
    if notification is not None:
        n: Any = notification
        await purge("notifications", delete(n).where(col(n.member_id) == mid))
    member.name = ERASED_NAME.format(id=mid)
    member.external_key = None
    member.rank = None
    member.rank_level = None
    member.position = None
    member.joined_party_year = None
    member.tags = []
    member.role = Role.member
    member.active = False
    session.add(member)
    session.add(AuditLog(at=now, actor=actor, action="erase-member",
                         detail={"member_id": mid, "deleted": deleted}))
    await session.commit()
    return deleted
