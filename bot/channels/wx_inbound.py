"""Inbound callbacks from 公众号 / WeCom: once-only processing inside the 5-second window.

WeChat waits 5 s for the HTTP answer, then retries the same callback (up to 3 times). So:
- the first arrival claims a row (platform, message key) — unique, INSERT … ON CONFLICT DO
  NOTHING — and processes it; a retry finds the row and gets the cached reply, so an answer
  is recorded once and answered the same way;
- processing gets a budget (default 4 s); if it is not done by then, the callback is
  answered "success" (nothing) and the reply goes out afterwards as a separate message
  (customer-service message on 公众号, app message on WeCom). Conditional UPDATEs on the
  row's status decide, even across processes, which of the two paths sends the reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, update
from sqlmodel import col, select
from starlette.background import BackgroundTask

from bot.channels.wx_api import log_failure
from bot.core.service import Clock
from bot.storage.bulk import insert_one_ignore
from bot.storage.db import Database
from bot.storage.models import InboundMessage

log = logging.getLogger(__name__)

DEFAULT_BUDGET = 4.0  # seconds of WeChat's 5 s left for our processing
RETRY_POLL_STEP = 0.1  # a retry re-reads the row this often while the first attempt works
BUSY_TEXT = "系统繁忙，请稍后再发送一次。"

Message = dict[str, Any]  # {"type": "text", "content": …} or a platform-specific kind
Sender = Callable[[str, list[Message]], Awaitable[None]]


def message_key(*, msg_id: int | str | None, sender: str, create_time: int | str, event: str = "",
                extra: str = "") -> str:
    """MsgId for messages; for events (which have none) sender + time + event (+ task/key),
    hashed so the key neither grows unbounded nor spells out the sender."""
    if msg_id and str(msg_id) != "0":
        return f"m:{msg_id}"
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


class Ledger:
    """The de-duplication table for one platform."""

    def __init__(self, db: Database, platform: str, *, clock: Clock) -> None:
        self.db = db
        self.platform = platform
        self.clock = clock

    def _where(self, key: str) -> Any:
        return (col(InboundMessage.platform) == self.platform) & (col(InboundMessage.msg_key) == key)

    async def claim(self, key: str) -> bool:
        async with self.db.session() as session:
            won = await insert_one_ignore(session, InboundMessage, {
                "platform": self.platform, "msg_key": key, "received_at": self.clock(),
                "status": "processing", "reply": None})
            await session.commit()
        return won

    async def read(self, key: str) -> InboundMessage | None:
        async with self.db.session() as session:
            return (await session.exec(select(InboundMessage).where(self._where(key)))).first()

    async def _transition(self, key: str, to: str, reply: dict[str, Any] | None = None) -> bool:
        values: dict[str, Any] = {"status": to}
        if reply is not None:
            values["reply"] = reply
        async with self.db.session() as session:
            result = await session.exec(update(InboundMessage).where(  # type: ignore[call-overload]
                self._where(key), col(InboundMessage.status) == "processing").values(**values))
            await session.commit()
        return bool(result.rowcount)

    async def finish(self, key: str, reply: Reply) -> bool:
        """processing → done with the reply; False if the callback was already answered empty."""
        return await self._transition(key, "done", reply.to_json())

    async def defer(self, key: str) -> bool:
        """processing → deferred: the reply will go out as a message, not in the response."""
        return await self._transition(key, "deferred")

    async def forget(self, key: str) -> str | None:
        """Drop the claim after a failure so a retry processes again; return the old status."""
        row = await self.read(key)
        async with self.db.session() as session:
            await session.exec(delete(InboundMessage).where(self._where(key)))  # type: ignore[call-overload]
            await session.commit()
        return row.status if row else None

    async def purge(self, before: datetime) -> int:
        async with self.db.session() as session:
            result = await session.exec(delete(InboundMessage).where(  # type: ignore[call-overload]
                col(InboundMessage.platform) == self.platform, col(InboundMessage.received_at) < before))
            await session.commit()
        return int(result.rowcount or 0)


class InboundFlow:
    """Runs the work for a callback at most once and shapes the HTTP answer."""

    def __init__(self, ledger: Ledger, send: Sender, *, budget: float = DEFAULT_BUDGET) -> None:
        self.ledger = ledger
        self.send = send  # delivers messages through the platform API (never raises)
        self.budget = budget
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

    async def run(self, key: str, user: str, work: Callable[[], Awaitable[Reply]]) -> Reply:
        """Return what to answer now: `passive` in the response, `followups` right after it."""
        if not await self.ledger.claim(key):
            return await self._retry(key)
        task = asyncio.create_task(self._process(key, user, work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        try:
            return await asyncio.wait_for(asyncio.shield(task), self.budget)
        except TimeoutError:
            if await self.ledger.defer(key):
                return Reply()  # `_process` will send the reply as messages when it is ready
            row = await self.ledger.read(key)  # it finished (or failed) in the meantime
            if row is not None and row.status == "done":
                return Reply.from_json(row.reply)
            return Reply(passive={"type": "text", "content": BUSY_TEXT})

    async def _process(self, key: str, user: str, work: Callable[[], Awaitable[Reply]]) -> Reply:
        try:
            async with self._lock_for(user):
                reply = await work()
        except Exception as exc:
            log_failure(log, f"{self.ledger.platform} callback failed", exc)
            busy = Reply(passive={"type": "text", "content": BUSY_TEXT})
            if await self.ledger.forget(key) == "deferred":
                await self.send(user, busy.messages())
            return busy
        if not await self.ledger.finish(key, reply):
            # The callback was already answered empty: everything goes out as messages.
            await self.send(user, reply.messages())
        return reply

    async def _retry(self, key: str) -> Reply:
        rounds = max(int(self.budget / RETRY_POLL_STEP), 1)
        for _ in range(rounds):
            row = await self.ledger.read(key)
            if row is None:
                return Reply(passive={"type": "text", "content": BUSY_TEXT})
            if row.status == "done":
                return Reply(passive=Reply.from_json(row.reply).passive)  # follow-ups went already
            if row.status == "deferred":
                return Reply()
            await asyncio.sleep(RETRY_POLL_STEP)
        return Reply()  # the first attempt is still working; it will answer by message

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
