"""Small Telegram state kept in the shared KeyValue table (so replicas and restarts agree):
the last processed update_id per bot, quiz-poll ids, and partial push progress."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.storage.bulk import upsert
from bot.storage.db import Database
from bot.storage.models import KeyValue

log = logging.getLogger(__name__)
# Telegram picks a random next update_id after a week without updates; an older mark is void.
UPDATE_ID_STALE_AFTER = timedelta(days=7)
# At most one write of the update mark per this many seconds. A crash replays what finished
# since (answers are idempotent by their unique key); a burst costs one write, not hundreds.
MARK_WRITE_INTERVAL = 0.5


def _now() -> datetime:
    return datetime.now(UTC)


async def _put(db: Database, key: str, value: dict[str, Any], expires_at: datetime | None = None) -> None:
    async with db.transaction() as conn:  # on SQLite: queued with the answers' writes
        await upsert(conn, KeyValue, [{"key": key, "value": value, "expires_at": expires_at,
                                       "updated_at": _now()}], keys=["key"])


async def _get(db: Database, key: str) -> dict[str, Any] | None:
    async with db.session() as session:
        row = await session.get(KeyValue, key)
    if row is None or (row.expires_at is not None and row.expires_at <= _now()):
        return None
    return row.value


async def _delete(db: Database, key: str) -> None:
    async with db.session() as session:
        row = await session.get(KeyValue, key)
        if row is not None:
            await session.delete(row)
            await session.commit()


def should_skip(update_id: int, last_id: int | None, last_at: datetime | None, now: datetime) -> bool:
    """An update at or below the last processed id is a replay, unless that mark is stale."""
    if last_id is None or last_at is None:
        return False
    return update_id <= last_id and now - last_at < UPDATE_ID_STALE_AFTER


class UpdateLog:
    """The last processed update_id of one bot: the mark below which every update is done.

    Updates of different users are handled concurrently (component.PerUserOrder), so they
    finish out of order. The mark is a low watermark: it moves to a finished update only when
    no older update is still open, so a crash never leaves a mark above an unfinished update
    (Telegram's replay of the batch then redoes exactly the unfinished ones). Updates finished
    above the mark are remembered until it passes them, so a replay of one is still skipped.

    The mark is written behind the handlers, at most one write in flight and at most one per
    `MARK_WRITE_INTERVAL`: under a burst the writes coalesce instead of costing one per update.
    A crash can therefore replay the last updates; answers are idempotent by their unique key,
    so that replays no side effect of an answer (a case push follows only a first answer).
    `flush` on shutdown writes the last mark.
    """

    def __init__(self, db: Database, bot_id: int) -> None:
        self.db = db
        self.key = f"telegram:last_update_id:{bot_id}"
        self.last_id: int | None = None
        self.last_at: datetime | None = None
        self._open: set[int] = set()  # taken for processing, not finished
        self._finished: list[int] = []  # heap: finished above the mark, waiting for an older open one
        self._written: int | None = None
        self._writer: asyncio.Task[None] | None = None

    async def load(self) -> None:
        value = await _get(self.db, self.key)
        if value:
            self.last_id = self._written = int(value["update_id"])
            self.last_at = datetime.fromisoformat(value["at"])

    def seen(self, update_id: int) -> bool:
        return update_id in self._finished or should_skip(update_id, self.last_id, self.last_at, _now())

    def opened(self, update_id: int) -> None:
        """An update was taken for processing (before it waits for anything)."""
        self._open.add(update_id)

    def done(self, update_id: int) -> None:
        """An update finished (idempotent: the processor and the last handler both say so)."""
        self._open.discard(update_id)
        if update_id in self._finished or self.seen(update_id):
            self._advance()
            return
        heapq.heappush(self._finished, update_id)
        self._advance()

    def _advance(self) -> None:
        oldest_open = min(self._open) if self._open else None
        mark = None
        while self._finished and (oldest_open is None or self._finished[0] < oldest_open):
            mark = heapq.heappop(self._finished)
        if mark is None:
            return
        now = _now()
        # After a week without updates Telegram may restart ids lower: a stale mark is replaced.
        if self.last_id is None or mark > self.last_id or not should_skip(mark, self.last_id, self.last_at, now):
            self.last_id = mark
        self.last_at = now
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_behind())

    async def _write_behind(self, *, pace: bool = True) -> None:
        while self.last_id is not None and self.last_at is not None and self._written != self.last_id:
            update_id, at = self.last_id, self.last_at
            try:
                await _put(self.db, self.key, {"update_id": update_id, "at": at.isoformat()})
            except Exception:  # the next processed update tries again
                log.exception("could not store the last telegram update id")
                return
            self._written = update_id
            if pace:  # what finishes meanwhile goes in the next write
                await asyncio.sleep(MARK_WRITE_INTERVAL)

    async def flush(self) -> None:
        """Write the last mark now (on shutdown): a pacing writer is stopped first."""
        if self._writer is not None and not self._writer.done():
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        await self._write_behind(pace=False)


# --- quiz polls: a PollAnswer names only the poll, so remember what each poll asks ----------


async def remember_poll(db: Database, poll_id: str, *, round_id: int | None, item_id: str,
                        until: datetime) -> None:
    # Kept at least a month from now, whatever the round's deadline says.
    expires_at = max(until, _now() + timedelta(days=30))
    await _put(db, f"telegram:poll:{poll_id}", {"round_id": round_id, "item_id": item_id}, expires_at)


async def poll_target(db: Database, poll_id: str) -> tuple[int | None, str] | None:
    if "\x00" in poll_id:  # never one we sent (PostgreSQL text cannot even hold it): a forged vote
        return None
    value = await _get(db, f"telegram:poll:{poll_id}")
    return (value["round_id"], value["item_id"]) if value else None


# --- push progress: only written when a push stops part-way, so a retry resumes there --------


def _progress_key(round_id: int, identity_id: int) -> str:
    return f"telegram:push:{round_id}:{identity_id}"


async def push_progress(db: Database, round_id: int, identity_id: int) -> int:
    value = await _get(db, _progress_key(round_id, identity_id))
    return int(value["sent"]) if value else 0


PUSH_PROGRESS_TTL = timedelta(days=7)  # push retries happen within hours; then it is stale


async def save_push_progress(db: Database, round_id: int, identity_id: int, sent: int) -> None:
    await _put(db, _progress_key(round_id, identity_id), {"sent": sent}, _now() + PUSH_PROGRESS_TTL)


async def clear_push_progress(db: Database, round_id: int, identity_id: int) -> None:
    await _delete(db, _progress_key(round_id, identity_id))
