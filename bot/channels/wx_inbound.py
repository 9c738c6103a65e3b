"""Inbound callbacks from 公众号 / WeCom: once-only processing inside the 5-second window.

WeChat waits 5 s for the HTTP answer, then retries the same callback (up to 3 times). So:
- the first arrival claims a row (platform, message key) — unique, INSERT … ON CONFLICT DO
  NOTHING — and processes it; a retry finds the row, waits for that work and gets the stored
  reply, so an answer is recorded once and answered the same way;
- processing gets a budget (default 4 s); if it is not done by then, the callback is
  answered "success" (nothing) and the reply goes out afterwards as a separate message
  (customer-service message on 公众号, app message on WeCom);
- a claim is a lease: a row still "processing" after its lease belongs to a worker that died
  (crash, kill, deploy) and the next retry takes it over (attempt + 1) and processes the
  message again; a handler error leaves the row "failed", which the next retry takes over too.
  Every change of the row is an UPDATE conditional on its status and attempt, so even across
  processes one worker owns it at a time and a worker that lost it changes nothing;
- processing again is safe: answers are unique per (member, round, item), and a typed answer
  ("A", which means "the item I am on") is pinned to its item in the row before it is
  recorded, so a retry answers that item again (and is told so) rather than the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import weakref
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, update
from sqlmodel import col, select
from starlette.background import BackgroundTask
from starlette.responses import PlainTextResponse, Response

from bot.channels.wx_api import log_failure
from bot.core.commands import Command, ShowQuiz, SubmitAnswer
from bot.core.results import QuizCard
from bot.core.service import Clock, Sender, Service
from bot.storage.bulk import insert_one_ignore
from bot.storage.db import Database
from bot.storage.models import InboundMessage

log = logging.getLogger(__name__)

DEFAULT_BUDGET = 4.0  # seconds of WeChat's 5 s left for our processing
# A live worker leaves "processing" within its budget: it answers, or answers "success" and
# defers the reply. The margin covers that last UPDATE being slow; a row still "processing"
# after budget + margin belongs to a worker that died or hangs and is taken over. With the
# default budget the lease is 4.5 s, shorter than WeChat's 5 s timeout: a retry can wait out
# a dead worker's lease and still answer in time, so WeChat's first retry (≈5 s after the
# first attempt) takes the message over and its second and third (≈10 s, ≈15 s) are spares.
LEASE_MARGIN = 0.5
PROCESSING_LEASE = DEFAULT_BUDGET + LEASE_MARGIN
RETRY_POLL_STEP = 0.1  # a retry re-reads the row this often while another worker has it
# After a failure the answer may or may not have been recorded: send the member to look
# rather than to type the same letter again (which would answer the next item).
FAILED_TEXT = "抱歉，这条消息没能处理成功，请稍后再试。若刚才是在作答，请先发送「答题」确认当前题目。"

Message = dict[str, Any]  # {"type": "text", "content": …} or a platform-specific kind
Deliver = Callable[[str, list[Message]], Awaitable[None]]


def message_key(*, msg_id: int | str | None, sender: str, create_time: int | str, event: str = "",
                extra: str = "") -> str:
    """MsgId for messages; for events (which have none) sender + time + event (+ task/key),
    hashed so the key neither grows unbounded nor spells out the sender."""
    mid = str(msg_id or "")
    if mid and mid != "0":
        if mid.isascii() and mid.isdigit() and len(mid) <= 20:
            return f"m:{mid}"
        return "m:#" + hashlib.sha1(mid.encode()).hexdigest()  # not a 64-bit MsgId: fit the column
    digest = hashlib.sha1(f"{sender}|{create_time}|{event}|{extra}".encode()).hexdigest()
    return f"e:{digest}"


@dataclass
class Reply:
    passive: Message | None = None  # answered in the HTTP response; None → "success"
    followups: list[Message] = field(default_factory=list)  # sent through the API afterwards

    def messages(self) -> list[Message]:
        return ([self.passive] if self.passive else []) + self.followups

    def to_json(self) -> dict[str, Any]:
        return {"passive": self.passive, "followups": self.followups}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Reply:
        data = data or {}
        return cls(passive=data.get("passive"), followups=list(data.get("followups") or []))


Work = Callable[[], Awaitable[Reply]]


def text(content: str) -> Reply:
    return Reply(passive={"type": "text", "content": content})


class LeaseLost(Exception):
    """Another worker took the message over: this attempt must not cause effects any more."""


@dataclass
class Lease:
    """One worker's hold on one message: attempt `attempt` of the row (platform, key)."""

    key: str
    attempt: int
    pinned: dict[str, Any] | None = None  # what a typed answer resolved to, if it was pinned


class Ledger:
    """The de-duplication table for one platform."""

    def __init__(self, db: Database, platform: str, *, clock: Clock) -> None:
        self.db = db
        self.platform = platform
        self.clock = clock

    def _where(self, key: str) -> Any:
        return (col(InboundMessage.platform) == self.platform) & (col(InboundMessage.msg_key) == key)

    def _owned(self, lease: Lease, *statuses: str) -> Any:
        return (self._where(lease.key) & (col(InboundMessage.attempt) == lease.attempt)
                & col(InboundMessage.status).in_(statuses))

    async def _update(self, where: Any, **values: Any) -> bool:
        async with self.db.session() as session:
            result = await session.exec(update(InboundMessage).where(where).values(**values))  # type: ignore[call-overload]
            await session.commit()
        return bool(result.rowcount)

    async def claim(self, key: str) -> Lease | None:
        """The first arrival of a message: a new row and its first lease, or None if it exists."""
        now = self.clock()
        async with self.db.session() as session:
            won = await insert_one_ignore(session, InboundMessage, {
                "platform": self.platform, "msg_key": key, "received_at": now, "claimed_at": now,
                "attempt": 1, "status": "processing", "reply": None, "pin": None})
            await session.commit()
        return Lease(key, 1) if won else None

    async def read(self, key: str) -> InboundMessage | None:
        async with self.db.session() as session:
            return (await session.exec(select(InboundMessage).where(self._where(key)))).first()

    async def take_over(self, row: InboundMessage, *, lease: timedelta) -> Lease | None:
        """Compare-and-set: the next attempt of a row that failed or whose lease ran out, if
        it is still the attempt `row` saw. Of concurrent retries exactly one wins."""
        now = self.clock()
        stale = (col(InboundMessage.status) == "processing") & (col(InboundMessage.claimed_at) <= now - lease)
        stmt = (update(InboundMessage)
                .where(self._where(row.msg_key), col(InboundMessage.attempt) == row.attempt,
                       (col(InboundMessage.status) == "failed") | stale)
                .values(status="processing", attempt=row.attempt + 1, claimed_at=now)
                .returning(col(InboundMessage.pin)))
        async with self.db.session() as session:
            won = (await session.exec(stmt)).first()  # type: ignore[call-overload]
            await session.commit()
        return Lease(row.msg_key, row.attempt + 1, won[0]) if won is not None else None

    async def pin(self, lease: Lease, value: dict[str, Any]) -> None:
        """Store what a typed answer means before it is recorded (see `pin_typed_answer`)."""
        if not await self._update(self._owned(lease, "processing", "deferred"), pin=value):
            raise LeaseLost()
        lease.pinned = value

    async def finish(self, lease: Lease, reply: Reply) -> bool:
        """processing → done with the reply; False if the callback was answered empty meanwhile
        (or another worker took the message over)."""
        return await self._update(self._owned(lease, "processing"), status="done", reply=reply.to_json())

    async def defer(self, lease: Lease) -> bool:
        """processing → deferred: the reply will go out as a message, not in the response."""
        return await self._update(self._owned(lease, "processing"), status="deferred")

    async def fail(self, lease: Lease) -> str | None:
        """processing/deferred → failed, so the next retry processes the message again;
        return the status it left (None if another worker owns the row now)."""
        for status in ("processing", "deferred"):  # `run` may defer it concurrently
            if await self._update(self._owned(lease, status), status="failed"):
                return status
        return None

    async def purge(self, before: datetime) -> int:
        async with self.db.session() as session:
            result = await session.exec(delete(InboundMessage).where(  # type: ignore[call-overload]
                col(InboundMessage.platform) == self.platform, col(InboundMessage.received_at) < before))
            await session.commit()
        return int(result.rowcount or 0)


KEEP_INBOUND = timedelta(days=3)  # de-dup rows: WeChat's retries come within a minute
PURGE_EVERY = 3600.0  # seconds


class Purger:
    """Deletes a ledger's rows older than `KEEP_INBOUND`, hourly, while the channel runs."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while True:
            try:
                await self.ledger.purge(self.ledger.clock() - KEEP_INBOUND)
            except Exception:
                log.exception("%s: purging old callback records failed", self.ledger.platform)
            await asyncio.sleep(PURGE_EVERY)


# The lease of the message the current task works on: set by `InboundFlow._process` in the
# task it runs the work in, read by `pin_typed_answer` deep inside the channel's work.
_current: ContextVar[tuple[Ledger, Lease] | None] = ContextVar("wx_inbound_lease", default=None)


async def pin_typed_answer(service: Service, sender: Sender, command: Command) -> Command:
    """A typed answer ("A") answers the item the member is on. Resolve that item and pin it
    in the row before the answer is recorded, so processing the message again after a crash
    answers the same item (a duplicate, first answer stands) instead of the next one."""
    held = _current.get()
    if held is None or not isinstance(command, SubmitAnswer) or command.item_id is not None:
        return command
    ledger, lease = held
    if lease.pinned is None:
        results = await service.handle(sender, ShowQuiz())  # the same item `handle` would pick
        card = results[0] if results and isinstance(results[0], QuizCard) else None
        await ledger.pin(lease, {"round_id": card.round_id, "item_id": card.item_id} if card else {})
    if not lease.pinned:  # nothing to answer (or not bound): `handle` says so politely
        return command
    return SubmitAnswer(command.choice, lease.pinned["round_id"], lease.pinned["item_id"])


class InboundFlow:
    """Runs the work for a callback at most once at a time and shapes the HTTP answer."""

    def __init__(self, ledger: Ledger, send: Deliver, *, budget: float = DEFAULT_BUDGET) -> None:
        self.ledger = ledger
        self.send = send  # delivers messages through the platform API (never raises)
        self.budget = budget
        self.lease = budget + LEASE_MARGIN  # seconds; see PROCESSING_LEASE
        self._tasks: set[asyncio.Task[Any]] = set()
        self._user_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._after_response = 0  # follow-ups waiting for their HTTP response to go out
        self._idle = asyncio.Event()
        self._idle.set()

    def _lock_for(self, user: str) -> asyncio.Lock:
        """One message at a time per member in this process: "A" then "B" typed quickly must
        answer the current item and then the next, not race for the same one."""
        lock = self._user_locks.get(user)
        if lock is None:
            lock = asyncio.Lock()
            self._user_locks[user] = lock
        return lock

    async def respond(self, key: str, user: str, work: Work, seal: Callable[[str], str]) -> Response:
        """The HTTP answer to a callback: the passive text as the channel seals it (reply XML,
        encrypted), or "success"; follow-ups go out after the response."""
        reply = await self.run(key, user, work)
        background = self.after_response(user, reply.followups)
        if reply.passive is None:
            return PlainTextResponse("success", background=background)
        return Response(seal(reply.passive["content"]), media_type="application/xml", background=background)

    async def run(self, key: str, user: str, work: Work) -> Reply:
        """Return what to answer now: `passive` in the response, `followups` right after it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.budget
        lease = await self.ledger.claim(key)
        if lease is None:
            outcome = await self._await_other(key, until=loop.time() + self.lease)
            if isinstance(outcome, Reply):
                return outcome
            lease = outcome
        return await self._answer(lease, user, work, max(deadline - loop.time(), 0.0))

    async def _await_other(self, key: str, *, until: float) -> Reply | Lease:
        """A retry: the stored reply once the other attempt is done, or the message itself if
        that attempt failed or its lease ran out. While a live worker has it (at most one
        lease, which ends inside WeChat's 5 s), wait; past that, answer "success": the worker
        answers by message."""
        loop = asyncio.get_running_loop()
        lease_time = timedelta(seconds=self.lease)
        while True:
            row = await self.ledger.read(key)
            if row is None:  # purged meanwhile: a first arrival again
                claimed = await self.ledger.claim(key)
                if claimed is not None:
                    return claimed
                continue
            if row.status == "done":
                return Reply(passive=Reply.from_json(row.reply).passive)  # follow-ups went already
            if row.status == "deferred":
                return Reply()  # the reply goes (or went) out as messages
            if row.status == "failed" or row.claimed_at <= self.ledger.clock() - lease_time:
                taken = await self.ledger.take_over(row, lease=lease_time)
                if taken is not None:
                    log.info("%s callback taken over (attempt %d)", self.ledger.platform, taken.attempt)
                    return taken
                # another retry took it: wait for that one
            if loop.time() >= until:
                return Reply()
            await asyncio.sleep(RETRY_POLL_STEP)

    async def _answer(self, lease: Lease, user: str, work: Work, budget: float) -> Reply:
        task = asyncio.create_task(self._process(lease, user, work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        try:
            return await asyncio.wait_for(asyncio.shield(task), budget)
        except TimeoutError:
            if await self.ledger.defer(lease):
                return Reply()  # `_process` will send the reply as messages when it is ready
            row = await self.ledger.read(lease.key)  # it finished or failed in the meantime
            if row is not None and row.attempt == lease.attempt and row.status == "done":
                return Reply.from_json(row.reply)
            if row is not None and row.attempt == lease.attempt and row.status == "failed":
                return text(FAILED_TEXT)
            return Reply()  # another worker took it over and answers

    async def _process(self, lease: Lease, user: str, work: Work) -> Reply:
        _current.set((self.ledger, lease))  # this task's own context
        platform = self.ledger.platform
        try:
            async with self._lock_for(user):
                reply = await work()
        except LeaseLost:
            log.info("%s callback: attempt %d lost its lease, dropped", platform, lease.attempt)
            return Reply()
        except Exception as exc:
            log_failure(log, f"{platform} callback failed", exc)
            failed = text(FAILED_TEXT)
            if await self.ledger.fail(lease) == "deferred":
                await self.send(user, failed.messages())
            return failed
        if await self.ledger.finish(lease, reply):
            return reply
        row = await self.ledger.read(lease.key)
        if row is not None and row.attempt == lease.attempt and row.status == "deferred":
            await self.send(user, reply.messages())  # the callback was answered empty
        return reply

    def after_response(self, user: str, messages: list[Message]) -> BackgroundTask | None:
        """Follow-ups to send once the passive reply is out (so they arrive after it)."""
        if not messages:
            return None
        self._after_response += 1
        self._idle.clear()

        async def run() -> None:
            try:
                await self.send(user, messages)
            finally:
                self._after_response -= 1
                if not self._after_response:
                    self._idle.set()

        return BackgroundTask(run)

    async def drain(self, timeout: float = 10.0) -> None:
        """Let in-flight work and follow-ups finish (on shutdown; tests use it to wait)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout)
