"""The one-call SQLite cursor (bot/storage/sqlite_driver.py) behaves as a DBAPI cursor should:
rows, rowcount, last row id, executemany, errors, RETURNING, streaming, and one thread call
per statement."""

from __future__ import annotations

import asyncio
import sqlite3
import threading

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from bot.storage.db import Database


@pytest.fixture
def path(tmp_path):  # type: ignore[no-untyped-def]
    return tmp_path / "driver.db"


@pytest.fixture
async def db(path):  # type: ignore[no-untyped-def]
    database = Database(f"sqlite+aiosqlite:///{path}")
    async with database.engine.begin() as conn:
        await conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT UNIQUE, n INTEGER)"))
    yield database
    await database.dispose()


async def test_rows_rowcount_lastrowid_and_executemany(db: Database) -> None:
    async with db.transaction() as conn:
        one = await conn.execute(text("INSERT INTO t (name, n) VALUES ('甲', 1)"))
        assert one.lastrowid == 1 and one.rowcount == 1
        many = await conn.execute(text("INSERT INTO t (name, n) VALUES (:name, :n)"),
                                  [{"name": f"m{i}", "n": i} for i in range(5)])
        assert many.rowcount == 5
        changed = await conn.execute(text("UPDATE t SET n = n + 10 WHERE n < 3"))
        assert changed.rowcount == 4  # 甲 (1) and m0..m2
        back = await conn.execute(text("INSERT INTO t (name, n) VALUES ('乙', 7) RETURNING id, name"))
        assert back.one() == (7, "乙")
    async with db.engine.connect() as conn:
        rows = (await conn.execute(text("SELECT name, n FROM t ORDER BY id"))).all()
        assert rows[0] == ("甲", 11) and len(rows) == 7
        assert (await conn.execute(text("SELECT n FROM t WHERE name = 'none'"))).first() is None
        streamed = [r async for r in await conn.stream(text("SELECT id FROM t ORDER BY id"))]
        assert [r.id for r in streamed] == list(range(1, 8))


async def test_errors_are_sqlalchemy_errors_and_roll_back(db: Database) -> None:
    with pytest.raises(IntegrityError):
        async with db.transaction() as conn:
            await conn.execute(text("INSERT INTO t (name, n) VALUES ('x', 1)"))
            await conn.execute(text("INSERT INTO t (name, n) VALUES ('x', 2)"))
    async with db.engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM t"))).scalar_one() == 0


async def test_the_writer_connection_outlives_errors(db: Database) -> None:
    """Short transactions share one kept connection: after a database error (replaced) or an
    error of the caller's (rolled back), the next transaction writes and commits as usual."""
    with pytest.raises(IntegrityError):
        async with db.transaction() as conn:
            await conn.execute(text("INSERT INTO t (name, n) VALUES ('x', 1)"))
            await conn.execute(text("INSERT INTO t (name, n) VALUES ('x', 2)"))
    with pytest.raises(LookupError):
        async with db.transaction() as conn:
            await conn.execute(text("INSERT INTO t (name, n) VALUES ('y', 1)"))
            raise LookupError("the caller's own error")
    async with db.transaction() as conn:
        first = conn
        await conn.execute(text("INSERT INTO t (name, n) VALUES ('z', 3)"))
    async with db.transaction() as conn:
        assert conn is first  # kept between transactions
        assert (await conn.execute(text("SELECT name FROM t"))).scalars().all() == ["z"]
    async with db.engine.connect() as conn:  # committed, seen from another connection
        assert (await conn.execute(text("SELECT name, n FROM t"))).all() == [("z", 3)]


async def test_one_thread_call_per_statement_and_none_in_a_short_transaction(
        db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    import aiosqlite

    calls = 0
    original = aiosqlite.Connection._execute

    async def counting(self, fn, *args, **kwargs):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        return await original(self, fn, *args, **kwargs)

    async with db.engine.connect() as conn:
        await conn.execute(text("SELECT 1"))  # the pool's connection is open before counting
        monkeypatch.setattr(aiosqlite.Connection, "_execute", counting)
        for _ in range(5):
            await conn.execute(text("SELECT 1"))
        assert calls == 5  # SQLAlchemy's own adapter makes 4 calls per statement
    calls = 0
    async with db.transaction() as conn:
        for i in range(5):
            await conn.execute(text("INSERT INTO t (name, n) VALUES (:name, 1)"), {"name": f"x{i}"})
    assert calls == 0  # inline: statements and the commit run on the loop's thread
    async with db.engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM t"))).scalar_one() == 5


async def test_inline_writes_meeting_another_writers_lock_wait_without_blocking_the_loop(db: Database, path) -> None:  # type: ignore[no-untyped-def]
    """Another process (here: a plain sqlite3 connection on a thread) holds the write lock.
    A short transaction's inline write must wait for it on the SQLite thread, with the event
    loop free meanwhile, and then succeed."""
    locked, release = threading.Event(), threading.Event()

    def other_writer() -> None:
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t (name, n) VALUES ('other', 0)")
        locked.set()
        release.wait(10)
        conn.execute("COMMIT")
        conn.close()

    holder = threading.Thread(target=other_writer)
    holder.start()
    await asyncio.to_thread(locked.wait, 10)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1
            if ticks == 20:
                release.set()  # the loop ran 20 times while the write waited: now let it through

    ticking = asyncio.create_task(ticker())
    try:
        async with db.transaction() as conn:
            await conn.execute(text("INSERT INTO t (name, n) VALUES ('mine', 1)"))
    finally:
        ticking.cancel()
        release.set()
        holder.join()
    assert ticks >= 20
    async with db.engine.connect() as conn:
        names = set((await conn.execute(text("SELECT name FROM t"))).scalars())
    assert names == {"other", "mine"}
