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

Database work is group-committed: a worker that has sent a row hands in its outcome and asks
for the next row, and one transaction marks every outcome handed in so far and claims a row
for each worker asking (recipients read in the same transaction). A worker takes a new row only
once its outcome is committed, so rows sent but not marked never exceed the workers (the
concurrency), and a row is claimed only for a worker that sends it at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection
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


@dataclass
class _Done:
    """A row's outcome, to be marked."""

    row: Outgoing
    status: DeliveryStatus
    channel: str | None = None
    error: str | None = None
    blocked: list[int] = field(default_factory=list)


@dataclass
class _Claimed:
    row: Outgoing
    targets: list[tuple[str, Recipient]]


def _gave_up(row: Outgoing) -> bool:
    """Kept dying while sending this one: stop resending it."""
    return row.status == DeliveryStatus.sending and row.attempts >= MAX_ATTEMPTS


class _Batches:
    """Group commit of marks and claims for the workers of one `send_rows` call.

    Workers call `next(outcome)`; a single coordinator takes every request waiting and, in one
    transaction, marks the outcomes and claims as many rows as there are requests (each claim a
    conditional UPDATE … RETURNING per (status, attempts), so two processes never both win).
    """

    def __init__(self, db: Database, model: type[SQLModel], rows: Sequence[Outgoing], platforms: Collection[str],
                 *, owner: str, clock: Clock, stats: PushStats, should_stop: Callable[[], bool] | None,
                 marked: Callable[[int], None]) -> None:
        self.db, self.table, self.owner, self.clock = db, model.__table__, owner, clock  # type: ignore[attr-defined]
        self.todo = deque(rows)
        self.platforms = list(platforms)
        self.stats, self.should_stop, self.marked = stats, should_stop, marked
        self.requests: asyncio.Queue[tuple[_Done | None, asyncio.Future[_Claimed | None]]] = asyncio.Queue()
        self.error: BaseException | None = None

    async def next(self, done: _Done | None) -> _Claimed | None:
        """Hand in the last row's outcome; the next claimed row, or None when there is none."""
        if self.error is not None:
            raise self.error
        future: asyncio.Future[_Claimed | None] = asyncio.get_running_loop().create_future()
        self.requests.put_nowait((done, future))
        return await future

    async def run(self) -> None:
        """Serve requests until cancelled (once the workers are done); on a failure, fail every
        request waiting and every later one."""
        batch: list[tuple[_Done | None, asyncio.Future[_Claimed | None]]] = []
        try:
            while True:
                batch = [await self.requests.get()]
                while not self.requests.empty():
                    batch.append(self.requests.get_nowait())
                claimed = await self._flush([d for d, _ in batch if d is not None], len(batch))
                for i, (_, future) in enumerate(batch):
                    if not future.done():
                        future.set_result(claimed[i] if i < len(claimed) else None)
                batch = []
        except BaseException as exc:
            self.error = exc if isinstance(exc, Exception) else RuntimeError("push stopped")
            while not self.requests.empty():
                batch.append(self.requests.get_nowait())
            for _, future in batch:
                if not future.done():
                    future.set_exception(self.error)
            raise

    async def _flush(self, done: list[_Done], wanted: int) -> list[_Claimed]:
        now = self.clock()
        stop = self.should_stop is not None and self.should_stop()
        async with self.db.transaction() as conn:  # on SQLite: this process's one writer
            await self._mark(conn, done, now)
            rows = [] if stop else await self._claim(conn, wanted, now)
            targets = await self._recipients(conn, [r.member_id for r in rows])
        self.marked(len(done))
        return [_Claimed(r, [(p, replace(t, retried=True)) for p, t in targets.get(r.member_id, [])]
                         if r.attempts else targets.get(r.member_id, [])) for r in rows]

    async def _mark(self, conn: AsyncConnection, done: list[_Done], now: datetime) -> None:
        t = self.table
        groups: dict[tuple[str, str | None, str | None], list[int]] = defaultdict(list)
        for d in done:
            groups[(d.status, d.channel, (d.error or "")[:200] or None)].append(d.row.id)
        for (status, channel, error), ids in groups.items():
            values: dict[str, Any] = {"status": status, "channel": channel, "last_error": error}
            if status == DeliveryStatus.sent:
                values["sent_at"] = now
            await conn.execute(update(t).where(t.c.id.in_(ids), t.c.claimed_by == self.owner,
                                               t.c.status == DeliveryStatus.sending).values(**values))
        blocked = [i for d in done for i in d.blocked]
        if blocked:
            ci = ChannelIdentity.__table__  # type: ignore[attr-defined]
            await conn.execute(update(ci).where(ci.c.id.in_(blocked)).values(active=False))

    async def _claim(self, conn: AsyncConnection, wanted: int, now: datetime) -> list[Outgoing]:
        t, got = self.table, []
        while len(got) < wanted and self.todo:
            take = [self.todo.popleft() for _ in range(min(wanted - len(got), len(self.todo)))]
            groups: dict[tuple[str, int], list[Outgoing]] = defaultdict(list)
            for r in take:
                groups[(r.status, r.attempts)].append(r)
            for (status, attempts), group in groups.items():
                values: dict[str, Any] = {"status": DeliveryStatus.sending, "claimed_by": self.owner,
                                          "claimed_at": now, "attempts": attempts + 1}
                gave_up = _gave_up(group[0])  # status and attempts are the group's
                if gave_up:  # claimed and closed in one go, never sent again
                    values.update(status=DeliveryStatus.failed, channel=None,
                                  last_error="gave up after repeated crashes")
                result = await conn.execute(
                    update(t).where(t.c.id.in_([r.id for r in group]), t.c.status == status,
                                    t.c.attempts == attempts).values(**values).returning(t.c.id))
                won = {i for (i,) in result}
                if gave_up:
                    self.stats.failed += len(won)
                    continue
                self.stats.skipped += len(group) - len(won)  # another process claimed them first
                got += [r for r in group if r.id in won]
        return got

    async def _recipients(self, conn: AsyncConnection, member_ids: list[int]) -> dict[int, list[tuple[str, Recipient]]]:
        found: dict[int, list[tuple[str, Recipient]]] = defaultdict(list)
        if not member_ids:
            return found
        ci = ChannelIdentity.__table__  # type: ignore[attr-defined]
        rows = await conn.execute(
            select(ci.c.id, ci.c.member_id, ci.c.platform, ci.c.external_id)
            .where(ci.c.member_id.in_(member_ids), ci.c.active.is_(True), ci.c.platform.in_(self.platforms))
            .order_by(ci.c.id))
        for identity_id, member_id, platform, external_id in rows:
            found[member_id].append((platform, Recipient(member_id, identity_id, external_id)))
        return found


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
    step = max(1, len(rows) // 10)

    def marked(n: int) -> None:
        nonlocal done
        for _ in range(n):
            done += 1
            if progress:
                progress(done, len(rows))
            if done % step == 0 and done < len(rows):
                log.info("%s: %d/%d done", label, done, len(rows))

    batches = _Batches(db, model, rows, messengers, owner=owner, clock=clock, stats=stats,
                       should_stop=should_stop, marked=marked)

    async def one(claimed: _Claimed) -> _Done:
        row = claimed.row
        try:
            results = await build(row)
        except Exception as exc:  # e.g. a digest that cannot be computed: record, go on
            log.exception("%s: preparing row %d failed", label, row.id)
            stats.failed += 1
            return _Done(row, DeliveryStatus.failed, error=type(exc).__name__)
        if not results:  # nothing left to say (e.g. the reminded member has answered since)
            stats.skipped += 1
            return _Done(row, DeliveryStatus.sent, error="nothing to send")
        outcomes: list[tuple[str, Recipient, SendOutcome]] = []
        for platform, recipient in claimed.targets:
            outcome = await observe_send(platform, _deliver(messengers[platform], recipient, results, key_of(row)))
            outcomes.append((platform, recipient, outcome))
        blocked = [r.identity_id for _, r, o in outcomes if o.status is SendStatus.blocked]
        sent_on = [p for p, _, o in outcomes if o.status is SendStatus.sent]
        if sent_on:
            stats.sent += 1
            return _Done(row, DeliveryStatus.sent, channel=",".join(sent_on), blocked=blocked)
        if not outcomes:
            stats.no_channel += 1
            return _Done(row, DeliveryStatus.failed, error="no active channel")
        if len(blocked) == len(outcomes):
            stats.blocked += 1
            return _Done(row, DeliveryStatus.blocked, error="blocked", blocked=blocked)
        stats.failed += 1
        return _Done(row, DeliveryStatus.failed, error="; ".join(o.error or o.status for _, _, o in outcomes),
                     blocked=blocked)

    async def worker() -> None:
        outcome = None
        while (claimed := await batches.next(outcome)) is not None:
            outcome = await one(claimed)

    if rows:
        coordinator = asyncio.create_task(batches.run())
        try:
            results = await asyncio.gather(*(worker() for _ in range(min(concurrency, len(rows)))),
                                           return_exceptions=True)
        finally:
            coordinator.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await coordinator  # raises what made the batches fail
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]
    if rows:
        count_push(model.__name__.lower())  # delivery (round invites) | notification
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
