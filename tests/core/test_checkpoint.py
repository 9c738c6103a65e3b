"""WAL checkpoints on their own thread (bot/storage/checkpoint.py), not in the commits that
the event loop runs: the process's connections leave the log to the thread (SQLite's own
checkpoint only past SAFETY_NET_PAGES), and the thread copies it into the database file."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

from sqlalchemy import text

from bot.storage.checkpoint import SAFETY_NET_PAGES, Checkpointer
from bot.storage.db import Database


def fill_wal_only(path: Path, rows: int) -> sqlite3.Connection:
    """Rows that sit in the write-ahead log: this connection never checkpoints, and stays open
    (SQLite checkpoints when the last connection to a database closes)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)")
    for k in range(rows):
        conn.execute("INSERT INTO t (body) VALUES (?)", ("x" * 200 + str(k),))
    return conn


async def grows(path: Path, than: int, *, within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if path.stat().st_size > than:
            return True
        await asyncio.sleep(0.05)
    return False


async def test_the_thread_copies_the_log_into_the_database_file(tmp_path: Path):
    path = tmp_path / "wal.db"
    writer = fill_wal_only(path, 2000)
    try:
        before = path.stat().st_size  # the rows are only in the log yet
        assert Path(f"{path}-wal").stat().st_size > 400_000 > before
        checkpointer = Checkpointer(str(path), interval=0.05).start()
        try:
            assert await grows(path, before), "no checkpoint copied the log into the file"
        finally:
            checkpointer.stop()
        assert path.stat().st_size > 400_000
    finally:
        writer.close()


async def test_the_process_leaves_checkpoints_to_the_thread(tmp_path: Path):
    path = tmp_path / "app.db"
    db = Database(f"sqlite+aiosqlite:///{path}")
    try:
        async with db.transaction() as conn:
            assert (await conn.execute(text("PRAGMA wal_autocheckpoint"))).scalar() == SAFETY_NET_PAGES
            await conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)"))
        for k in range(300):  # ~300 pages of log: below SQLite's own threshold here
            async with db.transaction() as conn:
                await conn.execute(text("INSERT INTO t (body) VALUES (:b)"), {"b": "y" * 3000 + str(k)})
        before = path.stat().st_size
        assert await grows(path, before + 500_000), "the checkpoint thread did not run while the app was open"
    finally:
        await db.dispose()
    assert not any(t.name == "sqlite-checkpoint" and t.is_alive() for t in threading.enumerate())


async def test_a_removed_file_stops_the_thread_without_recreating_it(tmp_path: Path):
    path = tmp_path / "gone.db"
    checkpointer = Checkpointer(str(path), interval=0.01).start()
    await asyncio.sleep(0.2)
    checkpointer.stop()
    assert not path.exists()
