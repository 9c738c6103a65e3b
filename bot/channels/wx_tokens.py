"""Access tokens for WeChat / WeCom, shared by every process: the KeyValue table, or Redis.

WeChat invalidates the previous token (after a short grace) whenever a new one is fetched,
so replicas must not each keep their own: the token lives in the database, is refreshed a
few minutes before it expires, and only one process fetches at a time (a lease row claimed
with INSERT … ON CONFLICT DO NOTHING). Tokens are never logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
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
    """One platform account's token: `get()` returns a valid one, `refresh(stale)` replaces it.
    Backends (database, Redis) provide reading, writing and the fetch lease."""

    def __init__(self, key: str, fetch: Fetcher, *, clock: Clock) -> None:
        self.key = key  # e.g. "wechat:token:<appid>"; names the account, holds no secret
        self._fetch = fetch
        self._clock = clock
        self._lock = asyncio.Lock()  # one fetch per process; the lease covers other processes
        # A copy of the shared value, dropped when it nears expiry or WeChat rejects it; the
        # shared store stays the source of truth (a rejected token re-reads it before fetching).
        self._copy: tuple[str, datetime] | None = None

    # --- backend ------------------------------------------------------------------------
    async def _read(self) -> tuple[str | None, datetime | None]:
        raise NotImplementedError

    async def _write(self, token: str, expires_at: datetime, expires_in: int) -> None:
        raise NotImplementedError

    async def _claim_lease(self) -> bool:
        raise NotImplementedError

    async def _release_lease(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        pass

    # --- logic --------------------------------------------------------------------------
    @property
    def _lease_key(self) -> str:
        return f"{self.key}:lease"

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
        expires_at = self._clock() + timedelta(seconds=fetched.expires_in)
        await self._write(fetched.token, expires_at, fetched.expires_in)
        self._copy = (fetched.token, expires_at)
        log.info("access token refreshed for %s", self.key)
        return fetched.token


class DbTokenStore(TokenStore):
    """The KeyValue table: (key, {"access_token": …}, expires_at); the lease is a row too."""

    def __init__(self, db: Database, key: str, fetch: Fetcher, *, clock: Clock) -> None:
        super().__init__(key, fetch, clock=clock)
        self.db = db

    async def _read(self) -> tuple[str | None, datetime | None]:
        async with self.db.session() as session:
            row = await session.get(KeyValue, self.key)
            if row is None:
                return None, None
            return row.value.get("access_token"), row.expires_at

    async def _write(self, token: str, expires_at: datetime, expires_in: int) -> None:
        async with self.db.session() as session:
            await upsert(session, KeyValue, [{
                "key": self.key, "value": {"access_token": token},
                "expires_at": expires_at, "updated_at": self._clock(),
            }], keys=["key"])
            await session.commit()

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


class RedisTokenStore(TokenStore):
    """Redis (QINGFENG_REDIS_URL): the token under `qingfeng:<key>` with Redis expiry, the
    lease a `SET NX PX` key that only its owner deletes."""

    _release = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"

    def __init__(self, url: str, key: str, fetch: Fetcher, *, clock: Clock) -> None:
        super().__init__(key, fetch, clock=clock)
        import redis.asyncio

        self._redis = redis.asyncio.from_url(url)
        self._owner = secrets.token_hex(8)

    def _name(self, key: str) -> str:
        return f"qingfeng:{key}"

    async def _read(self) -> tuple[str | None, datetime | None]:
        raw = await self._redis.get(self._name(self.key))
        if raw is None:
            return None, None
        data = json.loads(raw)
        return data.get("access_token"), datetime.fromisoformat(data["expires_at"])

    async def _write(self, token: str, expires_at: datetime, expires_in: int) -> None:
        value = json.dumps({"access_token": token, "expires_at": expires_at.isoformat()})
        await self._redis.set(self._name(self.key), value, ex=max(expires_in, 1))

    async def _claim_lease(self) -> bool:
        ttl_ms = int(LEASE_TTL.total_seconds() * 1000)
        return bool(await self._redis.set(self._name(self._lease_key), self._owner, nx=True, px=ttl_ms))

    async def _release_lease(self) -> None:
        await self._redis.eval(self._release, 1, self._name(self._lease_key), self._owner)  # type: ignore[misc]

    async def close(self) -> None:
        await self._redis.aclose()


def make_token_store(*, db: Database, redis_url: str | None, key: str, fetch: Fetcher, clock: Clock) -> TokenStore:
    """Redis when configured, else the database: either way shared by every process."""
    if redis_url:
        return RedisTokenStore(redis_url, key, fetch, clock=clock)
    return DbTokenStore(db, key, fetch, clock=clock)
