"""The quiz engine: choose items, open rounds, grade and record answers. Returns data only."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import Integer, and_, bindparam, cast, func, or_
from sqlalchemy import select as core_select
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.core.catalog import Catalog, ItemInfo
from bot.core.orgs import subtree_members
from bot.core.spaced import ReviewState
from bot.reports.tally import count_answer, count_deliveries
from bot.storage.bulk import Executor, as_connection, insert_ignore, insert_one_returning_id
from bot.storage.models import (
    Answer,
    BankItem,
    ChannelIdentity,
    Delivery,
    ItemStatus,
    ItemTopic,
    Member,
    Organization,
    ReviewCard,
    Round,
    RoundItem,
)

# How much a topic's weakness raises its chance of being picked (acc 0.5 → weight 1 + 0.5*2).
WEAKNESS_WEIGHT = 2.0
UNKNOWN_TOPIC_ACCURACY = 0.75


def grade(key: str, choice: str) -> bool:
    """All-or-nothing: a multiple-choice answer is right only with exactly the key's letters."""
    return "".join(sorted(set(choice.upper()))) == key and len(choice) == len(key)


@dataclass(frozen=True)
class StoredAnswer:
    """An answer row as stored (a plain value: building an ORM `Answer` costs more than the insert)."""

    id: int
    member_id: int
    round_id: int
    item_id: str
    choice: str
    correct: bool
    late: bool
    answered_at: datetime
    latency_ms: int | None
    channel: str


@dataclass(frozen=True)
class RecordedAnswer:
    answer: StoredAnswer
    duplicate: bool


async def topic_accuracy(session: AsyncSession, org: Organization) -> dict[str, float]:
    """Share correct per topic over the subtree's on-time answers."""
    stmt = (
        select(ItemTopic.topic, func.count(), func.sum(cast(col(Answer.correct), Integer)))
        .join(Answer, col(Answer.item_id) == col(ItemTopic.item_id))
        .join(Member, col(Member.id) == col(Answer.member_id))
        .join(Organization, col(Organization.id) == col(Member.org_id))
        .where(col(Organization.path).startswith(org.path), col(Answer.late).is_(False))
        .group_by(ItemTopic.topic)
    )
    rows = (await session.exec(stmt)).all()
    return {topic: (correct or 0) / n for topic, n, correct in rows if n}


async def items_seen_by(session: AsyncSession, org: Organization) -> Counter[str]:
    """How often each item was already used in rounds covering this organisation."""
    ancestors = [int(x) for x in org.path.strip("/").split("/") if x]
    stmt = (
        select(RoundItem.item_id, func.count())
        .join(Round, col(Round.id) == col(RoundItem.round_id))
        .join(Organization, col(Organization.id) == col(Round.org_id))
        .where(or_(col(Organization.path).startswith(org.path), col(Round.org_id).in_(ancestors)))
        .group_by(RoundItem.item_id)
    )
    return Counter(dict((await session.exec(stmt)).all()))


async def choose_items(
    session: AsyncSession, org: Organization, n: int, *, include_drafts: bool = False,
    rng: random.Random | None = None, topics: list[str] | None = None,
) -> list[str]:
    """Pick n items: unseen by the branch first, balanced over topics, weighted to weak topics."""
    rng = rng or random.Random()
    statuses = [ItemStatus.approved] + ([ItemStatus.draft] if include_drafts else [])
    rows = (await session.exec(
        select(BankItem.id, BankItem.topics).where(col(BankItem.status).in_(statuses))
        .order_by(col(BankItem.id))
    )).all()
    if topics:
        rows = [r for r in rows if r[1] and r[1][0] in topics]
    if not rows:
        return []
    seen = await items_seen_by(session, org)
    accuracy = await topic_accuracy(session, org)
    by_topic: dict[str, list[str]] = defaultdict(list)
    for item_id, item_topics in rows:
        by_topic[item_topics[0] if item_topics else ""].append(item_id)
    for pool in by_topic.values():
        rng.shuffle(pool)
        pool.sort(key=lambda i: seen.get(i, 0))  # stable: unseen first, random within a tier

    chosen: list[str] = []
    picked_per_topic: Counter[str] = Counter()
    while len(chosen) < n and any(by_topic.values()):
        # Strictly least-used items first; among those, weak and not-yet-picked topics win.
        tier = min(seen.get(pool[0], 0) for pool in by_topic.values() if pool)
        live = [t for t, pool in by_topic.items() if pool and seen.get(pool[0], 0) == tier]
        weights = [
            (1 + WEAKNESS_WEIGHT * (1 - accuracy.get(t, UNKNOWN_TOPIC_ACCURACY))) / (1 + 3 * picked_per_topic[t])
            for t in live
        ]
        topic = rng.choices(live, weights=weights)[0]
        chosen.append(by_topic[topic].pop(0))
        picked_per_topic[topic] += 1
    return chosen


async def open_round(
    session: AsyncSession, *, org: Organization, item_ids: list[str], opens_at: datetime,
    deadline: datetime, kind: str = "weekly", title: str = "", cohort_tag: str | None = None,
    occurrence_key: str | None = None, exclude_paths: Sequence[str] = (),
) -> Round:
    """Create a round with a pending delivery per active member in scope (idempotent per key).
    `exclude_paths` leaves out descendant subtrees that have a schedule of their own."""
    if occurrence_key:
        existing = (await session.exec(select(Round).where(Round.occurrence_key == occurrence_key))).first()
        if existing:
            return existing
    rnd = Round(org_id=org.id, kind=kind, title=title, cohort_tag=cohort_tag, opens_at=opens_at,
                deadline=deadline, occurrence_key=occurrence_key)
    session.add(rnd)
    await session.flush()
    await insert_ignore(session, RoundItem, [
        {"round_id": rnd.id, "item_id": item_id, "position": pos}
        for pos, item_id in enumerate(item_ids, start=1)
    ])
    members = await subtree_members(session, org, cohort_tag=cohort_tag, exclude_paths=exclude_paths)
    await insert_ignore(session, Delivery, [
        {"round_id": rnd.id, "member_id": m.id, "status": "pending", "attempts": 0,
         "created_at": opens_at}
        for m in members
    ])
    await count_deliveries(session, rnd.id)  # the reports' tally marks these member-rounds: one statement
    await session.commit()
    return rnd


async def round_items(session: AsyncSession, round_id: int) -> list[BankItem]:
    rows = await session.exec(
        select(BankItem).join(RoundItem, col(RoundItem.item_id) == col(BankItem.id))
        .where(RoundItem.round_id == round_id).order_by(col(RoundItem.position))
    )
    return list(rows.all())


class RoundRef(Protocol):
    """What recording an answer needs of its round (a `Round` row has it too)."""

    @property
    def id(self) -> int | None: ...
    @property
    def deadline(self) -> datetime: ...


class Gradable(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def answer(self) -> str: ...


@dataclass(frozen=True)
class RoundKey:
    id: int
    deadline: datetime


async def record_answer(
    session: Executor, *, member_id: int, rnd: RoundRef, item: Gradable, choice: str,
    channel: str, now: datetime, latency_ms: int | None = None, commit: bool = True,
) -> RecordedAnswer:
    """Store the answer once; a repeat returns the first answer unchanged (first answer counts).

    `session` is an ORM session or a bare connection; with `commit=False` everything stays in
    the caller's transaction (the answer path commits once, after FSRS and the case pick).
    Anything that must change with each first answer belongs after the insert, under `new_id`."""
    correct = grade(item.answer, choice)
    row = {
        "member_id": member_id, "round_id": rnd.id, "item_id": item.id, "choice": choice,
        "correct": correct, "late": now > rnd.deadline, "answered_at": now,
        "latency_ms": latency_ms, "channel": channel,
    }
    new_id = await insert_one_returning_id(session, Answer, row, prebuilt=True)
    if new_id is not None:  # the reports' answer tally moves with the answer, same transaction
        await count_answer(session, member_id=member_id, round_id=rnd.id, item_id=item.id, choice=choice,
                           correct=correct, late=row["late"])
    if commit:
        await session.commit()
    if new_id is not None:
        return RecordedAnswer(answer=StoredAnswer(id=new_id, **row), duplicate=False)
    stored = (await (await as_connection(session)).execute(_STORED_ANSWER, {
        "member_id": member_id, "round_id": rnd.id, "item_id": item.id})).one()
    return RecordedAnswer(answer=StoredAnswer(**stored._asdict()), duplicate=True)


_STORED_ANSWER = core_select(*(Answer.__table__.c[f.name] for f in fields(StoredAnswer))).where(  # type: ignore[attr-defined]
    col(Answer.member_id) == bindparam("member_id"), col(Answer.round_id) == bindparam("round_id"),
    col(Answer.item_id) == bindparam("item_id"))


@dataclass(frozen=True)
class AnswerContext:
    """Everything the answer path must know about the speaker before it writes, in one read."""

    member_id: int
    delivered: bool  # the round was pushed to this member (a delivery row exists)
    deadline: datetime | None  # the round's deadline (None: not delivered, or no round asked)
    review: ReviewState | None  # FSRS state of (member, item), if the item was ever got wrong


# Who is speaking (active identity of an active member), whether the round reached them and
# their FSRS card for the item: read fresh on every answer, never cached (see catalog.py).
_CONTEXT = (
    core_select(ChannelIdentity.member_id, Delivery.id, Round.deadline,
           ReviewCard.card, ReviewCard.lapses, ReviewCard.due_at)
    .select_from(ChannelIdentity)
    .join(Member, and_(col(Member.id) == col(ChannelIdentity.member_id), col(Member.active).is_(True)))
    .outerjoin(Delivery, and_(col(Delivery.member_id) == col(ChannelIdentity.member_id),
                              col(Delivery.round_id) == bindparam("round_id")))
    .outerjoin(Round, col(Round.id) == col(Delivery.round_id))
    .outerjoin(ReviewCard, and_(col(ReviewCard.member_id) == col(ChannelIdentity.member_id),
                                col(ReviewCard.item_id) == bindparam("item_id")))
    .where(col(ChannelIdentity.platform) == bindparam("platform"),
           col(ChannelIdentity.external_id) == bindparam("external_id"),
           col(ChannelIdentity.active).is_(True))
)


async def answer_context(conn: Executor, *, platform: str, external_id: str, round_id: int | None,
                         item_id: str | None) -> AnswerContext | None:
    """None when the sender is not bound (or their identity or membership is inactive)."""
    row = (await (await as_connection(conn)).execute(_CONTEXT, {"platform": platform, "external_id": external_id,
                                         "round_id": round_id, "item_id": item_id})).first()
    if row is None:
        return None
    member_id, delivery_id, deadline, card, lapses, due_at = row
    review = ReviewState(card=card, lapses=lapses, due_at=due_at) if due_at is not None else None
    return AnswerContext(member_id=member_id, delivered=delivery_id is not None, deadline=deadline,
                         review=review)


async def delivered_round(session: AsyncSession, *, member_id: int, round_id: int, item_id: str) -> Round | None:
    """The round, if this item of it was pushed to this member (the check behind every button)."""
    stmt = (
        select(Round)
        .join(Delivery, and_(col(Delivery.round_id) == col(Round.id), col(Delivery.member_id) == member_id))
        .join(RoundItem, and_(col(RoundItem.round_id) == col(Round.id), col(RoundItem.item_id) == item_id))
        .where(Round.id == round_id)
    )
    return (await session.exec(stmt)).first()


async def is_delivered(session: AsyncSession, *, member_id: int, round_id: int, item_id: str) -> bool:
    """The only check that matters for a button press: was this item pushed to this member?"""
    stmt = (
        select(func.count()).select_from(Delivery)
        .join(RoundItem, and_(col(RoundItem.round_id) == col(Delivery.round_id),
                              col(RoundItem.item_id) == item_id))
        .where(Delivery.member_id == member_id, Delivery.round_id == round_id)
    )
    return bool((await session.exec(stmt)).one())


@dataclass(frozen=True)
class PendingItem:
    round_id: int
    deadline: datetime
    item: ItemInfo
    position: int
    total: int


# Item ids only: contents come from the catalog, the round's size from its cached item list.
_PENDING = (
    core_select(RoundItem.round_id, RoundItem.item_id, RoundItem.position, Round.deadline)
    .select_from(Delivery)
    .join(Round, col(Round.id) == col(Delivery.round_id))
    .join(RoundItem, col(RoundItem.round_id) == col(Round.id))
    .outerjoin(Answer, and_(col(Answer.member_id) == bindparam("member_id"), col(Answer.round_id) == col(Round.id),
                            col(Answer.item_id) == col(RoundItem.item_id)))
    .where(col(Delivery.member_id) == bindparam("member_id"), col(Round.opens_at) <= bindparam("now"),
           col(Round.deadline) > bindparam("now"), col(Answer.id).is_(None))
    .order_by(col(Round.opens_at), col(Round.id), col(RoundItem.position))
)


async def pending_items(session: Executor, *, member_id: int, now: datetime, catalog: Catalog) -> list[PendingItem]:
    """Unanswered items of the member's open rounds, oldest round first, in position order."""
    conn = await as_connection(session)
    rows = (await conn.execute(_PENDING, {"member_id": member_id, "now": now})).all()
    if not rows:
        return []
    items = await catalog.items_by_id(conn, [item_id for _r, item_id, _p, _d in rows])
    out = []
    for round_id, item_id, position, deadline in rows:
        total = len(await catalog.round_items(conn, round_id))
        out.append(PendingItem(round_id, deadline, items[item_id], position, total))
    return out


def deadline_after(opens_at: datetime, days: int) -> datetime:
    return opens_at + timedelta(days=days)
