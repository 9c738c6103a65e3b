"""Aggregation queries for reports. All counting happens in SQL; Python only reshapes rows."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

from sqlalchemy import Integer, cast, distinct, func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.core.results import BranchSummary, ItemStat
from bot.reports.period import Period
from bot.storage.models import (
    Answer,
    BankItem,
    Delivery,
    ItemStatus,
    Member,
    Organization,
    Round,
)


def _in_scope(org: Organization):  # type: ignore[no-untyped-def]
    return col(Organization.path).startswith(org.path)


def _valid_answers(org: Organization, period: Period):  # type: ignore[no-untyped-def]
    """On-time answers to non-retired items of rounds opened in the period, by members in scope."""
    return (
        select(Answer)
        .join(Round, col(Round.id) == col(Answer.round_id))
        .join(Member, col(Member.id) == col(Answer.member_id))
        .join(Organization, col(Organization.id) == col(Member.org_id))
        .join(BankItem, col(BankItem.id) == col(Answer.item_id))
        .where(_in_scope(org), col(Round.opens_at) >= period.start, col(Round.opens_at) < period.end,
               col(Answer.late).is_(False), BankItem.status != ItemStatus.retired)
    )


async def latest_round_period(session: AsyncSession, org: Organization, now: datetime) -> Period | None:
    """The most recent round that reached members of this subtree, as a period."""
    rnd = (await session.exec(
        select(Round).join(Delivery, col(Delivery.round_id) == col(Round.id))
        .join(Member, col(Member.id) == col(Delivery.member_id))
        .join(Organization, col(Organization.id) == col(Member.org_id))
        .where(_in_scope(org), col(Round.opens_at) <= now)
        .order_by(col(Round.opens_at).desc()).limit(1)
    )).first()
    if rnd is None:
        return None
    # A period of one instant selects exactly the rounds opened at that moment.
    return Period(rnd.opens_at, rnd.opens_at + timedelta(microseconds=1), rnd.title or "最近一轮")


async def branch_summary(
    session: AsyncSession, *, org: Organization, period: Period, min_group: int
) -> BranchSummary:
    members = int((await session.exec(
        select(func.count()).select_from(Member)
        .join(Organization, col(Organization.id) == col(Member.org_id))
        .where(_in_scope(org), col(Member.active).is_(True))
    )).one())
    pushed = int((await session.exec(
        select(func.count()).select_from(Delivery)
        .join(Round, col(Round.id) == col(Delivery.round_id))
        .join(Member, col(Member.id) == col(Delivery.member_id))
        .join(Organization, col(Organization.id) == col(Member.org_id))
        .where(_in_scope(org), col(Round.opens_at) >= period.start, col(Round.opens_at) < period.end)
    )).one())
    valid = _valid_answers(org, period).subquery()
    n, correct, responded = (await session.exec(
        select(func.count(), func.coalesce(func.sum(cast(valid.c.correct, Integer)), 0),
               func.count(distinct(valid.c.round_id * 1_000_000_000 + valid.c.member_id)))
    )).one()
    late = int((await session.exec(
        select(func.count()).select_from(Answer)
        .join(Round, col(Round.id) == col(Answer.round_id))
        .join(Member, col(Member.id) == col(Answer.member_id))
        .join(Organization, col(Organization.id) == col(Member.org_id))
        .where(_in_scope(org), col(Round.opens_at) >= period.start, col(Round.opens_at) < period.end,
               col(Answer.late).is_(True))
    )).one())
    distinct_people = int((await session.exec(select(func.count(distinct(valid.c.member_id))))).one())
    items = await _item_stats(session, valid)
    return BranchSummary(
        org_id=org.id, org_name=org.name, period_label=period.label,  # type: ignore[arg-type]
        members=members, pushed=pushed, responded=int(responded), valid_answers=int(n),
        correct_answers=int(correct), late_answers=late, items=items,
        withheld=distinct_people < min_group, min_group=min_group,
    )


async def _item_stats(session: AsyncSession, valid) -> list[ItemStat]:  # type: ignore[no-untyped-def]
    rows = (await session.exec(
        select(valid.c.item_id, valid.c.choice, func.count(),
               func.sum(cast(valid.c.correct, Integer)))
        .group_by(valid.c.item_id, valid.c.choice)
    )).all()
    if not rows:
        return []
    per_item: dict[str, dict[str, int]] = defaultdict(lambda: {"n": 0, "correct": 0})
    options: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for item_id, choice, count, correct in rows:
        per_item[item_id]["n"] += count
        per_item[item_id]["correct"] += int(correct or 0)
        for letter in choice:  # a multiple-choice answer counts towards each letter chosen
            options[item_id][letter] += count
    stems = dict((await session.exec(
        select(BankItem.id, BankItem.stem).where(col(BankItem.id).in_(list(per_item)))
    )).all())
    stats = [
        ItemStat(item_id=i, stem=stems.get(i, i), answered=v["n"], correct=v["correct"],
                 option_counts=dict(sorted(options[i].items())))
        for i, v in per_item.items()
    ]
    stats.sort(key=lambda s: (s.correct / s.answered if s.answered else 1.0, s.item_id))
    return stats
