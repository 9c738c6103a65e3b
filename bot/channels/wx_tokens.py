"""Access tokens for WeChat / WeCom, shared by every process through the KeyValue table.

WeChat invalidates the previous token (after a short grace) whenever a new one is fetched,
so replicas must not each keep their own: the token lives in the database, is refreshed a
few minutes before it expires, and only one process fetches at a time (a lease row claimed
with INSERT … ON CONFLICT DO NOTHING). Tokens are never logged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlmodel import col

from bot.core.service import Clock
from bot.storage.bulk import insert_one_ignore, upsert
from bot.storage.db import Database
from bot.storage.models import KeyValue

log = logging.getLogger(__name__)

REFRESH_MARGIN = timedelta(minutes=5)  # refresh this long before WeChat's expiry
LEASE_TTL = timedelta(seconds=30)  # a crashed fetcher's lease lapses after this
LEASE_WAIT_ROUNDS = 100  # how often a loser re-reads the row while another process fetches
LEASE_WAIT_STEP = 0.05  # seconds between those reads


@dataclass(frozen=True)
class FetchedToken:
    token: str
    expires_in: int  # seconds, as the platform reports it


Fetcher = Callable[[], Awaitable[FetchedToken]]


class TokenStore:
    """One platform account's token: `get()` returns a valid one, `refresh(stale)` replaces it."""

    def __init__(self, db: Database, key: str, fetch: Fetcher, *, clock: Clock) -> None:
        self.db = db
        self.key = key  # e.g. "wechat:token:<appid>"; names the account, holds no secret
        self._fetch = fetch
        self._clock = clock
        self._lock = asyncio.Lock()  # one fetch per process; the lease covers other processes
        # A copy of the shared row, dropped when it nears expiry or WeChat rejects it; the
        # database stays the source of truth (a rejected token re-reads it before fetching).
        self._copy: tuple[str, datetime] | None = None

    async def _read(self) -> tuple[str | None, datetime | None]:
        async with self.db.session() as session:
            row = await session.get(KeyValue, self.key)
            if row is None:
                return None, None
            return row.value.get("access_token"), row.expires_at

    def _fresh(self, expires_at: datetime | None) -> bool:
        return expires_at is not None and expires_at - REFRESH_MARGIN > self._clock()

    async def get(self) -> str:
        if self._copy and self._fresh(self._copy[1]):
            return self._copy[0]
        token, expires_at = await self._read()
        if token and expires_at and self._fresh(expires_at):
            self._copy = (token, expires_at)
            return token
        return await self.refresh(stale=token)

    async def refresh(self, stale: str | None) -> str:
        """Fetch a new token unless another caller already replaced `stale`."""
        self._copy = None
        async with self._lock:
            for _ in range(LEASE_WAIT_ROUNDS):
                token, expires_at = await self._read()
                if token and expires_at and token != stale and self._fresh(expires_at):
                    self._copy = (token, expires_at)
                    return token  # someone else refreshed meanwhile
                if await self._claim_lease():
                    try:
                        return await self._fetch_and_store()
                    finally:
                        await self._release_lease()
                await asyncio.sleep(LEASE_WAIT_STEP)
            # The lease holder is taking too long: fetch ourselves rather than fail the send.
            log.warning("token lease for %s held too long; fetching anyway", self.key)
            return await self._fetch_and_store()

    async def _fetch_and_store(self) -> str:
        fetched = await self._fetch()
        now = self._clock()
        expires_at = now + timedelta(seconds=fetched.expires_in)
        async with self.db.session() as session:
            await upsert(session, KeyValue, [{
                "key": self.key, "value": {"access_token": fetched.token},
                "expires_at": expires_at, "updated_at": now,
            }], keys=["key"])
            await session.commit()
        self._copy = (fetched.token, expires_at)
        log.info("access token refreshed for %s", self.key)
        return fetched.token

    @property
    def _lease_key(self) -> str:
        return f"{self.key}:lease"

    async def _claim_lease(self) -> bool:
        now = self._clock()
        async with self.db.session() as session:
            # A lease left by a crashed process lapses.
            await session.exec(delete(KeyValue).where(  # type: ignore[call-overload]
                col(KeyValue.key) == self._lease_key, col(KeyValue.expires_at) <= now))
            won = await insert_one_ignore(session, KeyValue, {
                "key": self._lease_key, "value": {}, "expires_at": now + LEASE_TTL, "updated_at": now})
            await session.commit()
        return won

    async def _release_lease(self) -> None:
        async with self.db.session() as session:
            await session.exec(delete(KeyValue).where(col(KeyValue.key) == self._lease_key))  # type: ignore[call-overload]
            await session.commit()
