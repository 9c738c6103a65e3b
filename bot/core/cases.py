"""Pick a 警示教育 case study related to what a member just got wrong."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import bindparam, insert
from sqlalchemy import select as core_select
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.core.catalog import Catalog, case_card_from
from bot.core.results import CaseCard
from bot.storage.bulk import Executor, as_connection
from bot.storage.models import CaseDelivery, CaseStudy


def case_card(case: CaseStudy) -> CaseCard:
    return case_card_from(case.id, case.title, case.category, case.content)


_RECORD = insert(CaseDelivery)
_HISTORY = core_select(CaseDelivery.case_id, CaseDelivery.topic, CaseDelivery.delivered_at).where(
    col(CaseDelivery.member_id) == bindparam("member_id"))


async def pick_related_case(
    session: Executor, *, member_id: int, topics: list[str], now: datetime,
    cooldown_days: int, include_drafts: bool = False, reason: str = "wrong_answer", commit: bool = True,
    catalog: Catalog | None = None,
) -> CaseCard | None:
    """A case on one of `topics`, at most one per member per topic per cooldown period,
    preferring cases this member has never seen. Records the delivery (`commit=False` leaves
    it in the caller's transaction, for a push or an answer that must record all or nothing).
    `catalog` caches the case index and contents across calls; without one, an ORM session
    keeps its own for its lifetime (a push picks a case per member in one session)."""
    if catalog is None:
        catalog = session.info.setdefault("case_catalog", Catalog()) if isinstance(session, AsyncSession) \
            else Catalog()
    conn = await as_connection(session)
    # One read of the member's case history serves both the cooldown and "seen before".
    history = (await conn.execute(_HISTORY, {"member_id": member_id})).all()
    since = now - timedelta(days=cooldown_days)
    recent = {topic for _case, topic, at in history if at >= since}
    topic_order = [t for t in topics if t not in recent]
    if not topic_order:
        return None
    # Ids and topics only (cached): the chosen case's content is read, and cached, on its own.
    candidates = await catalog.case_candidates(conn, include_drafts=include_drafts)
    seen = {case_id for case_id, _topic, _at in history}
    for topic in topic_order:
        matching = [(case_id, case_topics) for case_id, case_topics in candidates if topic in case_topics]
        # Primary-topic cases first, unseen before seen.
        matching.sort(key=lambda c: (c[0] in seen, c[1].index(topic)))
        chosen = await catalog.case(conn, matching[0][0]) if matching else None
        if chosen is not None:
            await conn.execute(_RECORD, {
                "member_id": member_id, "case_id": chosen.case_id, "topic": topic, "reason": reason,
                "delivered_at": now})
            if commit:
                await session.commit()
            return chosen
    return None


async def latest_case_for(session: AsyncSession, *, member_id: int) -> CaseCard | None:
    row = (await session.exec(
        select(CaseStudy).join(CaseDelivery, col(CaseDelivery.case_id) == col(CaseStudy.id))
        .where(CaseDelivery.member_id == member_id)
        .order_by(col(CaseDelivery.delivered_at).desc(), col(CaseDelivery.id).desc())
    )).first()
    return case_card(row) if row else None
