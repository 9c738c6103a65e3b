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
    # One read of the member's case history serves both the cooldown and "seen before".
    history = (await session.exec(
        select(CaseDelivery.case_id, CaseDelivery.topic, CaseDelivery.delivered_at)
        .where(CaseDelivery.member_id == member_id)
    )).all()
    since = now - timedelta(days=cooldown_days)
    recent = {topic for _case, topic, at in history if at >= since}
    topic_order = [t for t in topics if t not in recent]
    if not topic_order:
        return None
    statuses = [ItemStatus.approved] + ([ItemStatus.draft] if include_drafts else [])
    # Ids and topics only: loading every case's content on each wrong answer cost more than
    # the rest of the answer path (bench/ingest.py); the chosen case is read on its own.
    candidates = (await session.exec(
        select(CaseStudy.id, CaseStudy.topics).where(col(CaseStudy.status).in_(statuses))
        .order_by(col(CaseStudy.id))
    )).all()
    seen = {case_id for case_id, _topic, _at in history}
    for topic in topic_order:
        matching = [(case_id, case_topics) for case_id, case_topics in candidates if topic in case_topics]
        # Primary-topic cases first, unseen before seen.
        matching.sort(key=lambda c: (c[0] in seen, c[1].index(topic)))
        chosen = await session.get(CaseStudy, matching[0][0]) if matching else None
        if chosen is not None:
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
