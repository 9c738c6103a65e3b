"""SQLite commits on the event loop: SQLite's own WAL checkpoints vs the checkpoint thread.

Short transactions (an answer: a handful of inserts and upserts, then COMMIT) run on the event
loop's thread (bot/storage/sqlite_driver.py). This times `--transactions` of them through
`Database.transaction()` on a fresh database file, once with SQLite checkpointing in the commit
that grows the log past 1,000 pages (its default) and once with `bot/storage/checkpoint.py`'s
thread doing it: the time each transaction held the loop (p50, p99, max) and in all.

    .venv/bin/python -m bench.sqlite_commit
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from sqlalchemy import text

from bench.common import machine, table
from bot.storage.db import Database

SCHEMA = [
    "CREATE TABLE answer (id INTEGER PRIMARY KEY, member_id INTEGER, round_id INTEGER, item_id TEXT, "
    "choice TEXT, answered_at TEXT, UNIQUE (member_id, round_id, item_id))",
    "CREATE TABLE tally (member_id INTEGER, round_id INTEGER, n INTEGER, PRIMARY KEY (member_id, round_id))",
]
INSERT = text("INSERT INTO answer (member_id, round_id, item_id, choice, answered_at) "
              "VALUES (:m, :r, :i, 'A', '2026-11-26 05:00:00.000000')")
UPSERT = text("INSERT INTO tally VALUES (:m, :r, 1) ON CONFLICT (member_id, round_id) DO UPDATE SET n = n + 1")


async def run(path: Path, *, checkpoint_thread: bool, n: int) -> list[float]:
    db = Database(f"sqlite+aiosqlite:///{path}", checkpoint_thread=checkpoint_thread)
    try:
        async with db.transaction() as conn:
            for statement in SCHEMA:
                await conn.execute(text(statement))
        held = []
        for k in range(n):
            start = time.perf_counter()
            async with db.transaction() as conn:
                for item in range(3):
                    await conn.execute(INSERT, {"m": k, "r": 1, "i": f"item-{item}-{'x' * 40}"})
                await conn.execute(UPSERT, {"m": k, "r": 1})
            held.append(time.perf_counter() - start)
            await asyncio.sleep(0)  # what the loop does between answers
        return held
    finally:
        await db.dispose()


async def main_async(args: argparse.Namespace) -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, thread in (("SQLite checkpoints in the commit (default)", False),
                              ("checkpoint thread (bot/storage/checkpoint.py)", True)):
            held = sorted(await run(Path(tmp) / f"{thread}.db", checkpoint_thread=thread, n=args.transactions))
            ms = [1000 * h for h in held]
            rows.append([label, len(ms), f"{statistics.median(ms):.3f}", f"{ms[int(0.99 * len(ms))]:.3f}",
                         f"{ms[-1]:.1f}", sum(1 for x in ms if x > 5), f"{sum(ms):.0f}"])
    print(f"machine: {machine()}")
    print(table(["checkpoints", "transactions", "p50 ms", "p99 ms", "max ms", "> 5 ms", "total ms"], rows))


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--transactions", type=int, default=10_000)
    return p.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main_async(parse()))
