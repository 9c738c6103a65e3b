"""Small Telegram state kept in the shared KeyValue table (so replicas and restarts agree):
the last processed update_id per bot, quiz-poll ids, and partial push progress."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.storage.bulk import upsert
from bot.storage.db import Database
from bot.storage.models import KeyValue

log = logging.getLogger(__name__)
# Telegram picks a random next update_id after a week without updates; an older mark is void.
UPDATE_ID_STALE_AFTER = timedelta(days=7)


def _now() -> datetime:
    return datetime.now(UTC)


async def _put(db: Database, key: str, value: dict[str, Any], expires_at: datetime | None = None) -> None:
    async with db.session() as session:
        await upsert(session, KeyValue, [{"key": key, "value": value, "expires_at": expires_at,
                                          "updated_at": _now()}], keys=["key"])
        await session.commit()


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
    """The last processed update_id of one bot.

    Updates are handled one at a time, so an in-memory copy answers `seen`. The mark is
    written behind the handlers, at most one write in flight: under a burst the writes
    coalesce instead of costing one per update. A crash can therefore replay the last update
    or two; answers are idempotent by their unique key, so that replays no side effect of an
    answer (a case push follows only a first answer). `flush` on shutdown writes the last mark.
    """

    def __init__(self, db: Database, bot_id: int) -> None:
        self.db = db
        self.key = f"telegram:last_update_id:{bot_id}"
        self.last_id: int | None = None
        self.last_at: datetime | None = None
        self._written: int | None = None
        self._writer: asyncio.Task[None] | None = None

    async def load(self) -> None:
        value = await _get(self.db, self.key)
        if value:
            self.last_id = self._written = int(value["update_id"])
            self.last_at = datetime.fromisoformat(value["at"])

    def seen(self, update_id: int) -> bool:
        return should_skip(update_id, self.last_id, self.last_at, _now())

    def done(self, update_id: int) -> None:
        self.last_id, self.last_at = update_id, _now()
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_behind())

    async def _write_behind(self) -> None:
        while self.last_id is not None and self.last_at is not None and self._written != self.last_id:
            update_id, at = self.last_id, self.last_at
            try:
                await _put(self.db, self.key, {"update_id": update_id, "at": at.isoformat()})
            except Exception:  # the next processed update tries again
                log.exception("could not store the last telegram update id")
                return
            self._written = update_id

    async def flush(self) -> None:
        if self._writer is not None:
            await self._writer
        await self._write_behind()


# --- quiz polls: a PollAnswer names only the poll, so remember what each poll asks ----------


async def remember_poll(db: Database, poll_id: str, *, round_id: int | None, item_id: str,
                        until: datetime) -> None:
    # Kept at least a month from now, whatever the round's deadline says.
    expires_at = max(until, _now() + timedelta(days=30))
    await _put(db, f"telegram:poll:{poll_id}", {"round_id": round_id, "item_id": item_id}, expires_at)


async def poll_target(db: Database, poll_id: str) -> tuple[int | None, str] | None:
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
