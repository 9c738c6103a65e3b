"""Fan pushes out to members through every bound channel, working off claimable rows.

Round invites are `Delivery` rows (unique per round x member); reminders, digests and case
pushes are `Notification` rows (unique per key x member). Each row moves
pending → sending → sent | failed | blocked, and the move to `sending` is committed *before*
the network call, stamped with the claiming process. So:

- two processes never send the same row: the claim is a conditional UPDATE, one wins;
- a crash mid-push resumes from the rows still pending: nobody is skipped, nobody already
  marked sent is sent again;
- a row a dead process left in `sending` may or may not have reached the member (the process
  died between the platform accepting the message and the row being marked). We resend it:
  at-least-once. Messengers that take an idempotency key (`send_keyed`, e.g. the webhook
  channel) pass the same key again, so the receiver drops the repeat and the member sees the
  message once. Platforms without such keys (Telegram, WeChat) may show that member a second
  copy — at most the rows in flight when the process died, never a gap.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import update
from sqlmodel import SQLModel, col, or_, select

from bot.channels.base import Messenger, Recipient, SendOutcome, SendStatus
from bot.core.quiz import round_items
from bot.core.results import QuizCard, Result, RoundInvite
from bot.metrics import count_push, observe_send
from bot.storage.db import Database
from bot.storage.models import (
    ChannelIdentity,
    Delivery,
    DeliveryStatus,
    Notification,
    Organization,
    Round,
)
from question_bank import LETTERS

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 5
RETRY_BASE = timedelta(minutes=1)  # a failed row waits 1, 2, 4, 8 minutes before the next try

Clock = Callable[[], datetime]


def _system_clock() -> datetime:
    return datetime.now(UTC)


def new_owner_id() -> str:
    """Identifies this process in claims: host, pid and a random part (pids get reused)."""
    return f"{socket.gethostname()[:50]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class KeyedMessenger(Protocol):
    """A messenger whose platform drops a repeat of the same key (at-least-once becomes once)."""

    platform: str

    async def send_keyed(self, recipient: Recipient, results: list[Result], key: str) -> SendOutcome: ...


@dataclass
class PushStats:
    sent: int = 0
    failed: int = 0
    blocked: int = 0
    no_channel: int = 0
    skipped: int = 0  # claimed by another process first, or nothing left to send

    @property
    def total(self) -> int:
        return self.sent + self.failed + self.blocked + self.no_channel


@dataclass(frozen=True)
class Outgoing:
    """One claimable row, as read before claiming (status and attempts act as its version)."""

    id: int
    member_id: int
    status: str
    attempts: int
    claimed_by: str | None
    claimed_at: datetime | None


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


def retry_due(row: Outgoing, now: datetime) -> bool:
    """A failed row is retried with exponential backoff, at most MAX_ATTEMPTS times in all."""
    if row.attempts >= MAX_ATTEMPTS:
        return False
    if row.claimed_at is None:
        return True
    return row.claimed_at + RETRY_BASE * (2 ** max(row.attempts - 1, 0)) <= now


async def candidates(db: Database, model: type[SQLModel], where: Sequence[Any], *, now: datetime,
                     dead_owners: Collection[str] = ()) -> list[Outgoing]:
    """Rows of `model` matching `where` that are ready to (re)send now."""
    m: Any = model
    states = [DeliveryStatus.pending, DeliveryStatus.failed]
    cond = col(m.status).in_(states)
    if dead_owners:
        cond = or_(cond, (col(m.status) == DeliveryStatus.sending) & col(m.claimed_by).in_(list(dead_owners)))
    async with db.session() as session:
        rows = (await session.exec(
            select(m.id, m.member_id, m.status, m.attempts, m.claimed_by, m.claimed_at)
            .where(*where, cond).order_by(col(m.id))
        )).all()
    found = [Outgoing(*r) for r in rows]
    return [r for r in found if r.status != DeliveryStatus.failed or retry_due(r, now)]


async def _claim(db: Database, model: type[SQLModel], row: Outgoing, owner: str, now: datetime) -> bool:
    m: Any = model
    async with db.session() as session:
        result = await session.exec(  # type: ignore[call-overload]
            update(m).where(col(m.id) == row.id, col(m.status) == row.status, col(m.attempts) == row.attempts)
            .values(status=DeliveryStatus.sending, claimed_by=owner, claimed_at=now, attempts=row.attempts + 1)
        )
        await session.commit()
    return (result.rowcount or 0) == 1


async def _mark(db: Database, model: type[SQLModel], row_id: int, owner: str, status: DeliveryStatus, *,
                channel: str | None, error: str | None, blocked_identities: list[int], now: datetime) -> None:
    m: Any = model
    values: dict[str, Any] = {"status": status, "channel": channel, "last_error": (error or "")[:200] or None}
    if status is DeliveryStatus.sent:
        values["sent_at"] = now
    async with db.session() as session:
        await session.exec(  # type: ignore[call-overload]
            update(m).where(col(m.id) == row_id, col(m.claimed_by) == owner,
                            col(m.status) == DeliveryStatus.sending).values(**values))
        if blocked_identities:
            await session.exec(  # type: ignore[call-overload]
                update(ChannelIdentity).where(col(ChannelIdentity.id).in_(blocked_identities))
                .values(active=False))
        await session.commit()


async def recipients(db: Database, member_id: int, platforms: Collection[str]) -> list[tuple[str, Recipient]]:
    async with db.session() as session:
        rows = (await session.exec(select(ChannelIdentity).where(
            ChannelIdentity.member_id == member_id, col(ChannelIdentity.active).is_(True),
            col(ChannelIdentity.platform).in_(list(platforms))).order_by(col(ChannelIdentity.id)))).all()
    return [(r.platform, Recipient(member_id, r.id, r.external_id)) for r in rows]  # type: ignore[arg-type]


async def _deliver(messenger: Messenger, recipient: Recipient, results: list[Result], key: str) -> SendOutcome:
    try:
        keyed = getattr(messenger, "send_keyed", None)
        if keyed is not None:
            return await keyed(recipient, results, key)
        return await messenger.send(recipient, results)
    except Exception as exc:  # a messenger must not raise; record it if it does
        log.exception("messenger %s raised", messenger.platform)
        return SendOutcome(SendStatus.failed, type(exc).__name__)


async def send_rows(
    db: Database, model: type[SQLModel], rows: Sequence[Outgoing], messengers: Mapping[str, Messenger], *,
    build: Callable[[Outgoing], Awaitable[list[Result]]], key_of: Callable[[Outgoing], str], owner: str,
    clock: Clock = _system_clock, concurrency: int = 32, label: str = "push",
    progress: Callable[[int, int], None] | None = None, should_stop: Callable[[], bool] | None = None,
) -> PushStats:
    """Claim, send and mark each row; rows another process claims first are skipped."""
    stats, done = PushStats(), 0
    platforms = set(messengers)
    gate = asyncio.Semaphore(concurrency)
    step = max(1, len(rows) // 10)

    async def one(row: Outgoing) -> None:
        nonlocal done
        async with gate:
            if should_stop is not None and should_stop():
                return
            if row.status == DeliveryStatus.sending and row.attempts >= MAX_ATTEMPTS:
                # Kept dying while sending this one: stop resending it.
                if await _claim(db, model, row, owner, clock()):
                    await _mark(db, model, row.id, owner, DeliveryStatus.failed, channel=None,
                                error="gave up after repeated crashes", blocked_identities=[], now=clock())
                    stats.failed += 1
                return
            if not await _claim(db, model, row, owner, clock()):
                stats.skipped += 1
                return
            try:
                results = await build(row)
                targets = await recipients(db, row.member_id, platforms)
            except Exception as exc:  # e.g. a digest that cannot be computed: record, go on
                log.exception("%s: preparing row %d failed", label, row.id)
                await _mark(db, model, row.id, owner, DeliveryStatus.failed, channel=None,
                            error=type(exc).__name__, blocked_identities=[], now=clock())
                stats.failed += 1
                return
            if not results:  # nothing left to say (e.g. the reminded member has answered since)
                await _mark(db, model, row.id, owner, DeliveryStatus.sent, channel=None,
                            error="nothing to send", blocked_identities=[], now=clock())
                stats.skipped += 1
                return
            outcomes: list[tuple[str, Recipient, SendOutcome]] = []
            for platform, recipient in targets:
                outcome = await observe_send(platform, _deliver(messengers[platform], recipient, results, key_of(row)))
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
            await _mark(db, model, row.id, owner, status, channel=",".join(sent_on) or None, error=error,
                        blocked_identities=blocked, now=clock())
            done += 1
            if progress:
                progress(done, len(rows))
            if done % step == 0 and done < len(rows):
                log.info("%s: %d/%d done", label, done, len(rows))

    await asyncio.gather(*(one(r) for r in rows))
    if rows:
        count_push(model.__name__.lower())  # delivery (round invites) | notification
    if rows:
        log.info("%s pushed: sent=%d failed=%d blocked=%d no_channel=%d skipped=%d", label, stats.sent,
                 stats.failed, stats.blocked, stats.no_channel, stats.skipped)
    return stats


async def send_round(
    db: Database, round_id: int, messengers: Mapping[str, Messenger], *, concurrency: int = 32,
    progress: Callable[[int, int], None] | None = None, owner: str | None = None,
    dead_owners: Collection[str] = (), clock: Clock = _system_clock,
    should_stop: Callable[[], bool] | None = None,
) -> PushStats:
    """Send every pending (or due-for-retry failed, or abandoned) delivery of a round."""
    invite = await build_invite(db, round_id)
    rows = await candidates(db, Delivery, [Delivery.round_id == round_id], now=clock(), dead_owners=dead_owners)

    async def build(_row: Outgoing) -> list[Result]:
        return [invite]

    return await send_rows(
        db, Delivery, rows, messengers, build=build, key_of=lambda r: f"round:{round_id}:member:{r.member_id}",
        owner=owner or new_owner_id(), clock=clock, concurrency=concurrency, label=f"round {round_id}",
        progress=progress, should_stop=should_stop)


async def send_notifications(
    db: Database, key: str, messengers: Mapping[str, Messenger], *,
    build: Callable[[Notification], Awaitable[list[Result]]], concurrency: int = 32, owner: str | None = None,
    dead_owners: Collection[str] = (), clock: Clock = _system_clock,
    should_stop: Callable[[], bool] | None = None,
) -> PushStats:
    """Send every ready notification row under `key`; `build` turns a row into results."""
    rows = await candidates(db, Notification, [Notification.key == key], now=clock(), dead_owners=dead_owners)
    cache: dict[int, Notification] = {}
    if rows:
        async with db.session() as session:
            found = (await session.exec(
                select(Notification).where(col(Notification.id).in_([r.id for r in rows])))).all()
        cache = {n.id: n for n in found if n.id is not None}

    async def build_row(row: Outgoing) -> list[Result]:
        return await build(cache[row.id])

    return await send_rows(
        db, Notification, rows, messengers, build=build_row, key_of=lambda r: f"{key}:member:{r.member_id}",
        owner=owner or new_owner_id(), clock=clock, concurrency=concurrency, label=key,
        should_stop=should_stop)
