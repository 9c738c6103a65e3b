"""Engines and sessions. SQLite gets WAL, foreign keys and a busy timeout on every connection."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.storage.checkpoint import SAFETY_NET_PAGES, Checkpointer
from bot.storage.sqlite_driver import BUSY_TIMEOUT_MS, one_call_dbapi


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.close()


def _checkpoints_elsewhere(dbapi_connection: Any, _record: Any) -> None:
    """SQLite's own checkpoints only as a safety net: a Checkpointer thread does them."""
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA wal_autocheckpoint={SAFETY_NET_PAGES}")
    cursor.close()


def sqlite_file(url: str) -> str | None:
    """The database file of a SQLite URL (None: another database, or in memory)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return parsed.database


def make_engine(url: str, *, echo: bool = False, checkpointer: bool = False) -> AsyncEngine:
    """`checkpointer`: the caller runs a `Checkpointer` on the file (SQLite only)."""
    if make_url(url).get_backend_name() == "sqlite":
        path = sqlite_file(url)
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, echo=echo, connect_args={"timeout": 30, "check_same_thread": False},
                                     module=one_call_dbapi())  # see sqlite_driver.py
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        if checkpointer:
            event.listen(engine.sync_engine, "connect", _checkpoints_elsewhere)
        return engine
    return create_async_engine(url, echo=echo, pool_pre_ping=True, pool_size=10, max_overflow=20)


class Database:
    """Owns one engine and hands out sessions; one per process."""

    def __init__(self, url: str, *, echo: bool = False, checkpoint_thread: bool = True) -> None:
        self.url = url
        path = sqlite_file(url)
        # WAL checkpoints (an fsync) off the event loop, where short transactions commit
        # (`checkpoint_thread=False`: SQLite's own, in the commits; for comparison).
        self._checkpointer = Checkpointer(path).start() if path is not None and checkpoint_thread else None
        self.engine = make_engine(url, echo=echo, checkpointer=self._checkpointer is not None)
        self._sessions = async_sessionmaker(
            self.engine, class_=AsyncSession, expire_on_commit=False
        )
        # SQLite has one writer at a time: concurrent handlers queue here instead of sleeping
        # in SQLite's busy handler (other processes still meet the busy timeout).
        self._writer = asyncio.Lock() if self.engine.dialect.name == "sqlite" else None
        self._writer_conn: AsyncConnection | None = None

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self._sessions() as session:
            yield session

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """One Core transaction on a bare connection (no ORM session), committed on exit and
        rolled back on an exception. On SQLite it is this process's single writer for its
        whole span, reads included, so the reads that decide a write see the latest commit.
        For short work only (an answer, a push batch's claims): on SQLite its statements run on
        the event loop's thread (see sqlite_driver.py), so a slow query here stalls everything."""
        if self._writer is None:
            async with self.engine.begin() as conn:
                yield conn
            return
        async with self._writer:
            conn = await self._writer_connection()
            try:
                async with conn.begin():
                    yield conn
            except DBAPIError:
                await self._close_writer()  # a connection that failed is not reused
                raise

    async def _writer_connection(self) -> AsyncConnection:
        """This process's SQLite writer: one connection kept open with its statements inline
        (checking one out of the pool and switching it inline and back, per transaction, was
        about a quarter of an answer's core CPU)."""
        if self._writer_conn is None or self._writer_conn.closed or self._writer_conn.invalidated:
            conn = await self.engine.connect()
            (await conn.get_raw_connection()).dbapi_connection.set_inline(True)
            self._writer_conn = conn
        return self._writer_conn

    async def _close_writer(self) -> None:
        conn, self._writer_conn = self._writer_conn, None
        if conn is not None and not conn.closed:
            await conn.close()

    async def dispose(self) -> None:
        await self._close_writer()
        await self.engine.dispose()
        if self._checkpointer is not None:
            await asyncio.to_thread(self._checkpointer.stop)
