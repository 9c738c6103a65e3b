"""Spaced re-asking of items a member got wrong, scheduled by FSRS at day-level steps."""

from __future__ import annotations

from datetime import datetime

from fsrs import Card, Rating, Scheduler
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.storage.models import BankItem, ItemStatus, ReviewCard

# No intra-day learning steps: a weekly quiz bot re-asks after days, not minutes.
_SCHEDULER = Scheduler(learning_steps=(), relearning_steps=(), enable_fuzzing=False)


async def update_after_answer(
    session: AsyncSession, *, member_id: int, item_id: str, correct: bool, now: datetime
) -> ReviewCard | None:
    """A wrong answer starts (or resets) re-asking; a right one pushes the next ask further out."""
    row = await session.get(ReviewCard, (member_id, item_id))
    if row is None and correct:
        return None
    card = Card.from_dict(row.card) if row and row.card else Card()
    card, _log = _SCHEDULER.review_card(card, Rating.Good if correct else Rating.Again, now)
    if row is None:
        row = ReviewCard(member_id=member_id, item_id=item_id, due_at=card.due, card=card.to_dict())
    else:
        row.card = card.to_dict()
        row.due_at = card.due
    if not correct:
        row.lapses += 1
    row.updated_at = now
    session.add(row)
    await session.commit()
    return row


async def due_items(session: AsyncSession, *, member_id: int, now: datetime) -> list[BankItem]:
    stmt = (
        select(BankItem).join(ReviewCard, col(ReviewCard.item_id) == col(BankItem.id))
        .where(ReviewCard.member_id == member_id, col(ReviewCard.due_at) <= now,
               BankItem.status != ItemStatus.retired)
        .order_by(col(ReviewCard.due_at))
    )
    return list((await session.exec(stmt)).all())


async def count_due(session: AsyncSession, *, member_id: int, now: datetime) -> int:
    stmt = select(func.count()).select_from(ReviewCard).where(
        ReviewCard.member_id == member_id, col(ReviewCard.due_at) <= now)
    return int((await session.exec(stmt)).one())


async def is_due(session: AsyncSession, *, member_id: int, item_id: str, now: datetime) -> bool:
    row = await session.get(ReviewCard, (member_id, item_id))
    return row is not None and row.due_at <= now
