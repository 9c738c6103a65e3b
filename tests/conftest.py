"""Shared fixtures: real databases (a SQLite file per test; PostgreSQL when configured).

PostgreSQL tests run when QINGFENG_TEST_POSTGRES_URL names a server database, e.g.
postgresql://postgres@127.0.0.1:5432/test (`.ci/run` sets it when the server answers).
Each test session creates its own database there, migrates it once and truncates between tests.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from bot.app import App, start_app
from bot.config import Settings, load_settings
from bot.storage import migrate
from bot.storage.db import make_engine
from bot.storage.models import SQLModel

FIXTURES = Path(__file__).parent / "fixtures"
TEST_BANK = FIXTURES / "bank"
PG_URL = os.environ.get("QINGFENG_TEST_POSTGRES_URL", "")


class FixedClock:
    """A settable clock: tests move time instead of sleeping."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or datetime(2026, 11, 23, 1, 0, tzinfo=UTC)  # Monday 09:00 Shanghai

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        from datetime import timedelta

        self.now += timedelta(**kwargs)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


# --- SQLite: migrate once into a template file, copy it per test ------------------------------


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    migrate.upgrade(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    target = tmp_path / "qingfeng.db"
    shutil.copy(sqlite_template, target)
    return f"sqlite+aiosqlite:///{target}"


# --- PostgreSQL: one database per test session, truncated between tests ----------------------


def _run_async(coro) -> None:  # type: ignore[no-untyped-def]
    # Session fixtures may be first requested from inside a running test loop.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, coro).result()


def _pg_async_url(url: str) -> str:
    return url.replace("postgresql://", "postgresql+asyncpg://", 1)


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    if not PG_URL:
        pytest.skip("PostgreSQL not configured (set QINGFENG_TEST_POSTGRES_URL)")
    admin_url = _pg_async_url(PG_URL)
    name = f"qf_test_{uuid.uuid4().hex[:10]}"

    async def admin(sql: str) -> None:
        engine = make_engine(admin_url)
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text(sql))
        await engine.dispose()

    _run_async(admin(f'CREATE DATABASE "{name}"'))
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    migrate.upgrade(url)
    try:
        yield url
    finally:
        _run_async(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _truncate_pg(url: str) -> None:
    engine = make_engine(url)
    names = ", ".join(f'"{t.name}"' for t in SQLModel.metadata.sorted_tables)
    async with engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    await engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """Both databases: tests using this run once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        yield request.getfixturevalue("sqlite_url")
        return
    url = request.getfixturevalue("pg_database")
    await _truncate_pg(url)
    yield url


def make_settings(database_url: str, **overrides: object) -> Settings:
    return load_settings(database_url=database_url, bank_path=TEST_BANK, **overrides)


@pytest.fixture
async def app(database_url: str, clock: FixedClock) -> AsyncIterator[App]:
    """A started app (migrated DB, test bank synced) on each database."""
    a = await start_app(make_settings(database_url), clock=clock, upgrade=False)
    yield a
    await a.db.dispose()


@pytest.fixture
async def sqlite_app(sqlite_url: str, clock: FixedClock) -> AsyncIterator[App]:
    """A started app on SQLite only, for adapter tests where the database is not the subject."""
    a = await start_app(make_settings(sqlite_url), clock=clock, upgrade=False)
    yield a
    await a.db.dispose()
