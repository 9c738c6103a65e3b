"""Schema migrations (Alembic), callable from the CLI and from `run`/`demo` start-up."""

from __future__ import annotations

import asyncio
import concurrent.futures
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from bot.storage.db import make_engine

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def _in_fresh_thread(fn, *args):  # type: ignore[no-untyped-def]
    # env.py calls asyncio.run(); keep it off any loop that is already running.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(fn, *args).result()


def upgrade(url: str, revision: str = "heads") -> None:
    _in_fresh_thread(command.upgrade, alembic_config(url), revision)


def autogenerate(url: str, message: str) -> None:
    _in_fresh_thread(
        lambda: command.revision(alembic_config(url), message=message, autogenerate=True)
    )


async def _current_heads(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            return set(
                await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_heads())
            )
    finally:
        await engine.dispose()


def is_current(url: str) -> bool:
    """True when the database is at the newest migration (for /readyz and doctor)."""
    script = ScriptDirectory.from_config(alembic_config(url))
    heads = _in_fresh_thread(lambda: asyncio.run(_current_heads(url)))
    return heads == set(script.get_heads())
