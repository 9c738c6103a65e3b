"""The one-call SQLite cursor (bot/storage/sqlite_driver.py) behaves as a DBAPI cursor should:
rows, rowcount, last row id, executemany, errors, RETURNING, streaming, and one thread call
per statement."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from bot.storage.db import Database


@pytest.fixture
async def db(tmp_path):  # type: ignore[no-untyped-def]
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'driver.db'}")
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


async def test_one_thread_call_per_statement(db: Database) -> None:
    calls = 0
    async with db.engine.connect() as conn:
        raw = await conn.get_raw_connection()
        aio = raw.driver_connection
        original = aio._execute

        async def counting(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
            nonlocal calls
            calls += 1
            return await original(fn, *args, **kwargs)

        aio._execute = counting
        try:
            for _ in range(5):
                await conn.execute(text("SELECT 1"))
        finally:
            aio._execute = original
    assert calls == 5  # SQLAlchemy's own adapter makes 4 calls per statement
