"""Benchmark set-up shared by the Telegram benchmarks: a migrated database with the shipped
bank, seeded members bound to Telegram chats, and an open round with pending deliveries."""

from __future__ import annotations

import argparse
import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert
from sqlmodel import col, select

from bench.common import ROOT, pg_available
from bot.app import App, start_app
from bot.config import Settings, load_settings
from bot.core import quiz
from bot.dev.seed import seed
from bot.storage.models import BankItem, ChannelIdentity, ItemStatus, Member, Organization

USER_BASE = 5_000_000_000  # Telegram chat id of member n is USER_BASE + n (private chats)
CHUNK = 5000


def settings_for(url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"database_url": url, "bank_path": ROOT / "question_bank", "log_level": "WARNING",
                              **overrides}
    return load_settings(**values)


async def seeded_app(settings: Settings, *, members: int, branches: int = 300) -> App:
    """Migrate, sync the bank, bulk-seed `members` members (no rounds) bound to Telegram chats."""
    app = await start_app(settings)
    await seed(app.db, members=members, answers=0, rounds=0, branches=min(branches, max(1, members)))
    now = datetime.now(UTC)
    rows = [{"member_id": m, "platform": "telegram", "external_id": str(USER_BASE + m), "active": True,
             "bound_at": now} for m in range(1, members + 1)]
    async with app.db.engine.begin() as conn:
        for start in range(0, len(rows), CHUNK):
            await conn.execute(insert(ChannelIdentity.__table__), rows[start:start + CHUNK])  # type: ignore[attr-defined]
    return app


async def button_items(app: App, n: int) -> list[str]:
    """`n` approved single-choice / true-false items (one button press answers each)."""
    async with app.db.session() as session:
        rows = (await session.exec(select(BankItem.id).where(
            BankItem.status == ItemStatus.approved, col(BankItem.type).in_(["single", "judge"]))
            .order_by(col(BankItem.id)).limit(n))).all()
    return list(rows)


async def open_round_for_all(app: App, item_ids: list[str], *, title: str = "基准测试") -> int:
    """A round on the root organisation: one pending delivery per member."""
    now = datetime.now(UTC)
    async with app.db.session() as session:
        root = (await session.exec(select(Organization).where(col(Organization.parent_id).is_(None))
                                   .order_by(col(Organization.id)))).first()
        assert root is not None
        rnd = await quiz.open_round(session, org=root, item_ids=item_ids, opens_at=now - timedelta(minutes=1),
                                    deadline=now + timedelta(days=7), title=title)
        return rnd.id  # type: ignore[return-value]


async def member_count(app: App) -> int:
    async with app.db.session() as session:
        return len((await session.exec(select(Member.id))).all())


def backends(choice: str) -> list[str]:
    kinds = ["sqlite", "postgres"] if choice == "both" else [choice]
    if "postgres" in kinds and not pg_available():
        print("PostgreSQL not reachable on 127.0.0.1:5432: skipping it")
        kinds.remove("postgres")
    return kinds


def backend_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


@dataclass
class Span:
    wall: float = 0.0
    cpu: float = 0.0


@contextmanager
def measured() -> Iterator[Span]:
    """Wall and this process's CPU time of the block."""
    span = Span()
    t, c = time.perf_counter(), cpu_seconds()
    try:
        yield span
    finally:
        span.wall, span.cpu = time.perf_counter() - t, cpu_seconds() - c


def _package(filename: str) -> str:
    """Which library a profiled function belongs to (site-packages top level, stdlib module, ours)."""
    if "site-packages/" in filename:
        return filename.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    if filename.startswith(str(ROOT)):
        return "/".join(Path(filename).relative_to(ROOT).parts[:2])
    if filename.startswith("~") or filename.startswith("<"):
        return "builtins (C calls)"
    return "stdlib " + Path(filename).parent.name if "asyncio" in filename else "stdlib"


def cpu_by_package(stats: Any) -> list[tuple[str, float]]:
    """Internal (self) CPU time summed per package: the split that still holds under asyncio,
    where cumulative times of coroutines mean little."""
    totals: dict[str, float] = {}
    for (filename, _line, _name), (_cc, _nc, tottime, _ct, _callers) in stats.stats.items():
        key = _package(filename)
        totals[key] = totals.get(key, 0.0) + tottime
    return sorted(totals.items(), key=lambda kv: -kv[1])


@contextmanager
def profiled(path: Path | None) -> Iterator[None]:
    """cProfile the block into `path` (None: no profiling) and print where the CPU went: self time
    per package, then the top functions by self time. The timer is process CPU time, so waiting
    is not counted (on SQLite the aiosqlite thread's CPU lands on whatever the event loop runs)."""
    if path is None:
        yield
        return
    import cProfile
    import pstats

    prof = cProfile.Profile(timer=time.process_time)
    prof.enable()
    try:
        yield
    finally:
        prof.disable()
        prof.dump_stats(path)
        stats = pstats.Stats(prof)
        split = cpu_by_package(stats)
        total = sum(t for _, t in split) or 1.0
        print(f"\nprofile written to {path}; self CPU time by package (profiler overhead included):")
        for name, t in split[:15]:
            print(f"  {100 * t / total:5.1f}%  {t:7.2f} s  {name}")
        print("top 25 functions by self time:")
        stats.sort_stats("tottime").print_stats(25)
