"""Pick a 警示教育 case study related to what a member just got wrong."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.core.results import CaseCard
from bot.storage.models import CaseDelivery, CaseStudy, ItemStatus


def case_card(case: CaseStudy) -> CaseCard:
    c = case.content
    return CaseCard(
        case_id=case.id, title=case.title, category=case.category,
        what_happened=c["what_happened"], rule_broken=c["rule_broken"],
        consequence=c["consequence"], lesson=c["lesson"], composite=c["composite"],
        source=c["source"],
    )


async def pick_related_case(
    session: AsyncSession, *, member_id: int, topics: list[str], now: datetime,
    cooldown_days: int, include_drafts: bool = False, reason: str = "wrong_answer", commit: bool = True,
) -> CaseCard | None:
    """A case on one of `topics`, at most one per member per topic per cooldown period,
    preferring cases this member has never seen. Records the delivery (`commit=False` leaves
    it in the caller's transaction, for a push that must record all or nothing)."""
    recent = set((await session.exec(
        select(CaseDelivery.topic).where(
            CaseDelivery.member_id == member_id,
            col(CaseDelivery.delivered_at) >= now - timedelta(days=cooldown_days))
    )).all())
    topic_order = [t for t in topics if t not in recent]
    if not topic_order:
        return None
    statuses = [ItemStatus.approved] + ([ItemStatus.draft] if include_drafts else [])
    candidates = (await session.exec(
        select(CaseStudy).where(col(CaseStudy.status).in_(statuses)).order_by(col(CaseStudy.id))
    )).all()
    seen = set((await session.exec(
        select(CaseDelivery.case_id).where(CaseDelivery.member_id == member_id))).all())
    for topic in topic_order:
        matching = [c for c in candidates if topic in c.topics]
        # Primary-topic cases first, unseen before seen.
        matching.sort(key=lambda c: (c.id in seen, c.topics.index(topic)))
        if matching:
            chosen = matching[0]
            session.add(CaseDelivery(member_id=member_id, case_id=chosen.id, topic=topic,
                                     reason=reason, delivered_at=now))
            await (session.commit() if commit else session.flush())
            return case_card(chosen)
    return None


async def latest_case_for(session: AsyncSession, *, member_id: int) -> CaseCard | None:
    row = (await session.exec(
        select(CaseStudy).join(CaseDelivery, col(CaseDelivery.case_id) == col(CaseStudy.id))
        .where(CaseDelivery.member_id == member_id)
        .order_by(col(CaseDelivery.delivered_at).desc(), col(CaseDelivery.id).desc())
    )).first()
    return case_card(row) if row else None
