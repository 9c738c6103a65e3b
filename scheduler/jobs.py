"""The jobs: thin calls into core. Each runs inside the transaction that holds its claim, so an
occurrence's claim and its effects (a round with its deliveries, or notification rows) commit
together or not at all. Sending happens afterwards, off the rows (bot/core/push.py).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.app import App
from bot.core import quiz
from bot.core.cases import case_card, pick_related_case
from bot.core.orgs import subtree_members
from bot.core.results import Reminder, Result
from bot.reports.period import round_period
from bot.reports.report import full_report
from bot.storage.bulk import insert_ignore, insert_one_ignore
from bot.storage.models import (
    Answer,
    BankItem,
    CaseStudy,
    Delivery,
    DeliveryStatus,
    ItemStatus,
    ItemTopic,
    JobClaim,
    Member,
    Notification,
    Organization,
    Role,
    Round,
    RoundItem,
)
from scheduler.occurrences import Occurrence
from scheduler.schedules import (
    CampaignSpec,
    ScheduleBook,
    WeeklyRoundSpec,
    check_zone,
    deadline_after,
    validate_spec,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobContext:
    app: App
    book: ScheduleBook
    now: datetime
    owner: str


async def claim_and_run(ctx: JobContext, occ: Occurrence, *, stale: bool = False) -> bool:
    """Insert the claim and run the job in one transaction; False if another process has it.
    A stale occurrence is only claimed (so it is skipped, and logged, once)."""
    async with ctx.app.db.session() as session:
        won = await insert_one_ignore(session, JobClaim, {
            "job_key": occ.job_key, "occurrence": occ.nominal, "claimed_at": ctx.now,
            "claimed_by": ("stale:" if stale else "") + ctx.owner[:70]})
        if not won:
            await session.rollback()
            return False
        if not stale:
            await JOBS[occ.kind](session, ctx, occ)
        await session.commit()
    return True


# --- round openers ---------------------------------------------------------------------------


async def open_weekly_round(session: AsyncSession, ctx: JobContext, occ: Occurrence) -> Round | None:
    row = next(r for r in ctx.book.rows if r.id == occ.schedule_id)
    spec = validate_spec(row.kind, row.spec)
    assert isinstance(spec, WeeklyRoundSpec)
    org = ctx.book.orgs[row.org_id]
    settings = ctx.app.settings
    deadline = deadline_after(spec.deadline, occ.nominal, check_zone(row.timezone))
    if deadline <= ctx.now:
        log.warning("%s: deadline already passed, no round opened", occ.key)
        return None
    excluded = ctx.book.excluded_paths(row)
    if not await subtree_members(session, org, exclude_paths=excluded):
        log.info("%s: nobody in scope, no round opened", occ.key)
        return None
    chosen = await quiz.choose_items(session, org, spec.items or settings.round_items,
                                     include_drafts=settings.push_drafts)
    if not chosen:
        log.error("%s: no approved items in the bank, no round opened", occ.key)
        return None
    rnd = await quiz.open_round(session, org=org, item_ids=chosen, opens_at=ctx.now, deadline=deadline,
                                kind="weekly", title=spec.title, occurrence_key=occ.key, exclude_paths=excluded)
    log.info("%s: round %s opened with %d items", occ.key, rnd.id, len(chosen))
    return rnd


async def usable_items(session: AsyncSession, item_ids: list[str], *, include_drafts: bool) -> list[str]:
    statuses = [ItemStatus.approved] + ([ItemStatus.draft] if include_drafts else [])
    found = set((await session.exec(select(BankItem.id).where(
        col(BankItem.id).in_(item_ids), col(BankItem.status).in_(statuses)))).all())
    return [i for i in item_ids if i in found]


async def open_campaign(session: AsyncSession, ctx: JobContext, occ: Occurrence) -> Round | None:
    row = next(r for r in ctx.book.rows if r.id == occ.schedule_id)
    spec = validate_spec("campaign", row.spec)
    assert isinstance(spec, CampaignSpec)
    org = ctx.book.orgs[row.org_id]
    if spec.deadline <= ctx.now:
        log.warning("%s: deadline already passed, campaign not opened", occ.key)
        return None
    items = await usable_items(session, spec.items, include_drafts=ctx.app.settings.push_drafts)
    if not items:
        log.error("%s: none of the campaign's items is usable (missing or not approved)", occ.key)
        return None
    rnd = await quiz.open_round(session, org=org, item_ids=items, opens_at=ctx.now, deadline=spec.deadline,
                                kind="campaign", title=spec.title, cohort_tag=spec.tag, occurrence_key=occ.key)
    log.info("%s: campaign round %s opened with %d items", occ.key, rnd.id, len(items))
    return rnd


# --- notifications ---------------------------------------------------------------------------


def _rows(occ: Occurrence, kind: str, org_id: int, now: datetime, payloads: dict[int, dict]) -> list[dict]:
    return [{"key": occ.key, "kind": kind, "member_id": member_id, "org_id": org_id, "round_id": occ.round_id,
             "payload": payload, "status": DeliveryStatus.pending, "attempts": 0, "created_at": now}
            for member_id, payload in payloads.items()]


async def remind(session: AsyncSession, ctx: JobContext, occ: Occurrence) -> int:
    """督办: members who were sent the round and have not answered anything yet."""
    rnd = await session.get(Round, occ.round_id)
    if rnd is None or rnd.deadline <= ctx.now:
        return 0
    answered = select(Answer.member_id).where(Answer.round_id == rnd.id)
    members = (await session.exec(
        select(Delivery.member_id).join(Member, col(Member.id) == col(Delivery.member_id))
        .where(Delivery.round_id == rnd.id, Delivery.status == DeliveryStatus.sent,
               col(Member.active).is_(True), col(Delivery.member_id).not_in(answered))
        .order_by(col(Delivery.member_id))
    )).all()
    rows = _rows(occ, "reminder", rnd.org_id, ctx.now, {m: {} for m in members})
    n = await insert_ignore(session, Notification, rows)
    log.info("%s: %d reminders queued", occ.key, n)
    return n


async def digest(session: AsyncSession, ctx: JobContext, occ: Occurrence) -> int:
    """周报: each secretary in the round's scope whose organisation had members the round reached."""
    rnd = await session.get(Round, occ.round_id)
    if rnd is None:
        return 0
    scope = await session.get(Organization, rnd.org_id)
    if scope is None:
        return 0
    reached = set((await session.exec(
        select(Organization.path).join(Member, col(Member.org_id) == col(Organization.id))
        .join(Delivery, col(Delivery.member_id) == col(Member.id))
        .where(Delivery.round_id == rnd.id, Delivery.status == DeliveryStatus.sent).distinct())).all())
    secretaries = (await session.exec(
        select(Member.id, Member.org_id, Organization.path)
        .join(Organization, col(Organization.id) == col(Member.org_id))
        .where(col(Organization.path).startswith(scope.path), Member.role == Role.secretary,
               col(Member.active).is_(True)).order_by(col(Member.id))
    )).all()
    payloads = {mid: {"org_id": org_id} for mid, org_id, path in secretaries
                if any(p.startswith(path) for p in reached)}
    n = await insert_ignore(session, Notification, _rows(occ, "digest", rnd.org_id, ctx.now, payloads))
    log.info("%s: %d digests queued", occ.key, n)
    return n


async def _weak_topics(session: AsyncSession, member_ids: list[int]) -> dict[int, list[str]]:
    rows = (await session.exec(
        select(Answer.member_id, ItemTopic.topic, func.count())
        .join(ItemTopic, col(ItemTopic.item_id) == col(Answer.item_id))
        .where(col(Answer.member_id).in_(member_ids), col(Answer.correct).is_(False))
        .group_by(Answer.member_id, ItemTopic.topic)
    )).all()
    ranked: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for member_id, topic, n in rows:
        ranked[member_id].append((-n, topic))
    return {m: [t for _, t in sorted(v)] for m, v in ranked.items()}


async def case_push(session: AsyncSession, ctx: JobContext, occ: Occurrence) -> int:
    """Monthly 警示教育: a case per member, on the topics they get wrong most, unseen first."""
    row = next(r for r in ctx.book.rows if r.id == occ.schedule_id)
    org = ctx.book.orgs[row.org_id]
    members = await subtree_members(session, org, exclude_paths=ctx.book.excluded_paths(row))
    ids: list[int] = [m.id for m in members]  # type: ignore[misc]
    weak = await _weak_topics(session, ids)
    every = list(ctx.app.bank.vocabulary.topics)
    payloads: dict[int, dict] = {}
    for member_id in ids:
        mine = weak.get(member_id, [])
        card = await pick_related_case(
            session, member_id=member_id, topics=mine + [t for t in every if t not in mine], now=ctx.now,
            cooldown_days=0, include_drafts=ctx.app.settings.push_drafts, reason="monthly", commit=False)
        if card is not None:
            payloads[member_id] = {"case_id": card.case_id}
    n = await insert_ignore(session, Notification, _rows(occ, "case_push", org.id, ctx.now, payloads))  # type: ignore[arg-type]
    log.info("%s: %d case pushes queued", occ.key, n)
    return n


JOBS: dict[str, Callable[[AsyncSession, JobContext, Occurrence], Awaitable[object]]] = {
    "weekly_round": open_weekly_round, "campaign": open_campaign, "reminder": remind, "digest": digest,
    "case_push": case_push,
}


# --- what a notification row says, built when it is sent ---------------------------------------


def builder(app: App, kind: str) -> Callable[[Notification], Awaitable[list[Result]]]:
    async def reminder(n: Notification) -> list[Result]:
        async with app.db.session() as session:
            rnd = await session.get(Round, n.round_id)
            if rnd is None:
                return []
            total = int((await session.exec(select(func.count()).select_from(RoundItem)
                                            .where(RoundItem.round_id == rnd.id))).one())
            done = int((await session.exec(select(func.count()).select_from(Answer).where(
                Answer.round_id == rnd.id, Answer.member_id == n.member_id))).one())
        if done >= total:
            return []  # answered since the reminder was queued
        return [Reminder(round_id=rnd.id, title=rnd.title or "本周廉政学习", deadline=rnd.deadline,  # type: ignore[arg-type]
                         unanswered=total - done, total=total)]

    async def digest_(n: Notification) -> list[Result]:
        async with app.db.session() as session:
            rnd = await session.get(Round, n.round_id)
            org = await session.get(Organization, n.payload.get("org_id"))
            if rnd is None or org is None:
                return []
            # The digest is the same report a secretary gets from /report for this round.
            return [await full_report(session, org=org, period=round_period(rnd.id, rnd.title or "本轮"),  # type: ignore[arg-type]
                                      min_group=app.settings.report_min_group, tz=app.settings.tz,
                                      topic_names=app.bank.vocabulary.topics)]

    async def case(n: Notification) -> list[Result]:
        async with app.db.session() as session:
            found = await session.get(CaseStudy, n.payload.get("case_id"))
        return [case_card(found)] if found else []

    return {"reminder": reminder, "digest": digest_, "case_push": case}[kind]
