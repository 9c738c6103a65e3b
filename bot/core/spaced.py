"""Spaced re-asking of items a member got wrong, scheduled by FSRS at day-level steps."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fsrs import Card, Rating, Scheduler
from sqlalchemy import bindparam, insert, update
from sqlalchemy import select as core_select
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.storage.bulk import Executor, as_connection
from bot.storage.models import BankItem, ItemStatus, ReviewCard

# No intra-day learning steps: a weekly quiz bot re-asks after days, not minutes.
_SCHEDULER = Scheduler(learning_steps=(), relearning_steps=(), enable_fuzzing=False)


@dataclass(frozen=True)
class ReviewState:
    """A stored FSRS card of one (member, item)."""

    card: dict[str, Any]
    lapses: int
    due_at: datetime


_STATE = core_select(ReviewCard.card, ReviewCard.lapses, ReviewCard.due_at).where(
    col(ReviewCard.member_id) == bindparam("member_id"), col(ReviewCard.item_id) == bindparam("item_id"))
_UPDATE = update(ReviewCard).where(
    col(ReviewCard.member_id) == bindparam("m_id"), col(ReviewCard.item_id) == bindparam("i_id"))
_INSERT = insert(ReviewCard)
_UNREAD: Any = object()


def _new_card(now: datetime) -> Card:
    """A fresh FSRS card. The id is given because py-fsrs, left to pick one, sleeps 1 ms to
    keep ids unique — a blocking sleep on the event loop for every first wrong answer. Our
    cards are keyed by (member, item), so the id is only a label in the stored JSON."""
    return Card(card_id=int(now.timestamp() * 1000))


async def review_state(conn: Executor, *, member_id: int, item_id: str) -> ReviewState | None:
    row = (await (await as_connection(conn)).execute(_STATE, {"member_id": member_id, "item_id": item_id})).first()
    return ReviewState(card=row[0], lapses=row[1], due_at=row[2]) if row else None


async def update_after_answer(
    conn: Executor, *, member_id: int, item_id: str, correct: bool, now: datetime,
    state: ReviewState | None = _UNREAD, commit: bool = False,
) -> ReviewState | None:
    """A wrong answer starts (or resets) re-asking; a right one pushes the next ask further out.
    `state` is the stored card when the caller read it already (None: there is none); the write
    stays in the caller's transaction unless `commit`."""
    conn = await as_connection(conn)
    if state is _UNREAD:
        state = await review_state(conn, member_id=member_id, item_id=item_id)
    if state is None and correct:
        return None
    card = Card.from_dict(state.card) if state is not None and state.card else _new_card(now)
    card, _log = _SCHEDULER.review_card(card, Rating.Good if correct else Rating.Again, now)
    values = {"card": card.to_dict(), "due_at": card.due,
              "lapses": (state.lapses if state is not None else 0) + (0 if correct else 1), "updated_at": now}
    if state is None:
        await conn.execute(_INSERT, {"member_id": member_id, "item_id": item_id, **values})
    else:
        await conn.execute(_UPDATE, {"m_id": member_id, "i_id": item_id, **values})
    if commit:
        await conn.commit()
    return ReviewState(card=values["card"], lapses=values["lapses"], due_at=values["due_at"])


async def due_items(session: AsyncSession, *, member_id: int, now: datetime) -> list[BankItem]:
    stmt = (
        select(BankItem).join(ReviewCard, col(ReviewCard.item_id) == col(BankItem.id))
        .where(ReviewCard.member_id == member_id, col(ReviewCard.due_at) <= now,
               BankItem.status != ItemStatus.retired)
        .order_by(col(ReviewCard.due_at))
    )
    return list((await session.exec(stmt)).all())


_DUE_IDS = (
    core_select(ReviewCard.item_id).join(BankItem, col(BankItem.id) == col(ReviewCard.item_id))
    .where(col(ReviewCard.member_id) == bindparam("member_id"), col(ReviewCard.due_at) <= bindparam("now"),
           col(BankItem.status) != ItemStatus.retired)
    .order_by(col(ReviewCard.due_at))
)


async def due_item_ids(conn: Executor, *, member_id: int, now: datetime) -> list[str]:
    """Ids of the items due for re-asking, most overdue first (contents come from the catalog)."""
    result = await (await as_connection(conn)).execute(_DUE_IDS, {"member_id": member_id, "now": now})
    return list(result.scalars().all())


async def count_due(session: AsyncSession, *, member_id: int, now: datetime) -> int:
    stmt = select(func.count()).select_from(ReviewCard).where(
        ReviewCard.member_id == member_id, col(ReviewCard.due_at) <= now)
    return int((await session.exec(stmt)).one())


async def is_due(session: Executor, *, member_id: int, item_id: str, now: datetime) -> bool:
    state = await review_state(session, member_id=member_id, item_id=item_id)
    return state is not None and state.due_at <= now
