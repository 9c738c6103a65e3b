"""Fan a round out to its members through every bound channel, working off delivery rows.

Delivery rows (unique per round x member) are the to-do list: a crash mid-push resumes
with the rows still pending, so nobody is skipped and nobody already sent is sent again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sqlmodel import col, select

from bot.channels.base import Messenger, Recipient, SendOutcome, SendStatus
from bot.core.quiz import round_items
from bot.core.results import QuizCard, RoundInvite
from bot.storage.db import Database
from bot.storage.models import (
    ChannelIdentity,
    Delivery,
    DeliveryStatus,
    Organization,
    Round,
    utcnow,
)
from question_bank import LETTERS

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 5


@dataclass
class PushStats:
    sent: int = 0
    failed: int = 0
    blocked: int = 0
    no_channel: int = 0

    @property
    def total(self) -> int:
        return self.sent + self.failed + self.blocked + self.no_channel


async def build_invite(db: Database, round_id: int) -> RoundInvite:
    async with db.session() as session:
        rnd = await session.get(Round, round_id)
        if rnd is None:
            raise LookupError(f"round {round_id} not found")
        org = await session.get(Organization, rnd.org_id)
        items = await round_items(session, round_id)
    cards = [
        QuizCard(round_id=round_id, item_id=item.id, position=pos, total=len(items), type=item.type,
                 stem=item.stem, options=list(zip(LETTERS, item.content["options"], strict=False)),
                 deadline=rnd.deadline)
        for pos, item in enumerate(items, start=1)
    ]
    return RoundInvite(round_id=round_id, title=rnd.title or "本周廉政学习",
                       org_name=org.name if org else "", deadline=rnd.deadline, cards=cards)


async def _recipients(db: Database, member_id: int, platforms: set[str]) -> list[tuple[str, Recipient]]:
    async with db.session() as session:
        rows = (await session.exec(select(ChannelIdentity).where(
            ChannelIdentity.member_id == member_id, col(ChannelIdentity.active).is_(True),
            col(ChannelIdentity.platform).in_(platforms)))).all()
    return [(r.platform, Recipient(member_id, r.id, r.external_id)) for r in rows]  # type: ignore[arg-type]


async def _mark(db: Database, delivery_id: int, status: DeliveryStatus, *, channel: str | None,
                error: str | None, blocked_identities: list[int]) -> None:
    async with db.session() as session:
        d = await session.get(Delivery, delivery_id)
        if d is None:
            return
        d.status = status
        d.attempts += 1
        d.channel = channel
        d.last_error = (error or "")[:200] or None
        if status is DeliveryStatus.sent:
            d.sent_at = utcnow()
        session.add(d)
        for identity_id in blocked_identities:
            identity = await session.get(ChannelIdentity, identity_id)
            if identity:
                identity.active = False
                session.add(identity)
        await session.commit()


async def send_round(
    db: Database, round_id: int, messengers: Mapping[str, Messenger], *, concurrency: int = 32,
    progress: Callable[[int, int], None] | None = None,
) -> PushStats:
    """Send every pending (or retryable failed) delivery of a round; return the tally."""
    invite = await build_invite(db, round_id)
    async with db.session() as session:
        todo = (await session.exec(
            select(Delivery.id, Delivery.member_id).where(
                Delivery.round_id == round_id,
                col(Delivery.status).in_([DeliveryStatus.pending, DeliveryStatus.failed]),
                col(Delivery.attempts) < MAX_ATTEMPTS)
            .order_by(col(Delivery.id))
        )).all()
    stats, done = PushStats(), 0
    platforms = set(messengers)
    gate = asyncio.Semaphore(concurrency)

    async def one(delivery_id: int, member_id: int) -> None:
        nonlocal done
        async with gate:
            targets = await _recipients(db, member_id, platforms)
            outcomes: list[tuple[str, Recipient, SendOutcome]] = []
            for platform, recipient in targets:
                try:
                    outcome = await messengers[platform].send(recipient, [invite])
                except Exception as exc:  # a messenger must not raise; record if it does
                    log.exception("messenger %s raised", platform)
                    outcome = SendOutcome(SendStatus.failed, type(exc).__name__)
                outcomes.append((platform, recipient, outcome))
            blocked = [r.identity_id for _, r, o in outcomes if o.status is SendStatus.blocked]
            sent_on = [p for p, _, o in outcomes if o.status is SendStatus.sent]
            if sent_on:
                status, error = DeliveryStatus.sent, None
                stats.sent += 1
            elif not outcomes:
                status, error = DeliveryStatus.failed, "no active channel"
                stats.no_channel += 1
            elif blocked and len(blocked) == len(outcomes):
                status, error = DeliveryStatus.blocked, "blocked"
                stats.blocked += 1
            else:
                status = DeliveryStatus.failed
                error = "; ".join(o.error or o.status for _, _, o in outcomes)
                stats.failed += 1
            await _mark(db, delivery_id, status, channel=",".join(sent_on) or None, error=error,
                        blocked_identities=blocked)
            done += 1
            if progress:
                progress(done, len(todo))

    await asyncio.gather(*(one(d, m) for d, m in todo))
    log.info("round %s pushed: sent=%d failed=%d blocked=%d no_channel=%d", round_id, stats.sent,
             stats.failed, stats.blocked, stats.no_channel)
    return stats
