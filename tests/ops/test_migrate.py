"""Migrations: the cheap "already at head" check agrees with Alembic and never skips real work."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from alembic.script import ScriptDirectory
from sqlalchemy import text

from bot.storage import migrate
from bot.storage.db import make_engine


def alembic_heads(versions_parent: Path | None = None) -> frozenset[str]:
    cfg = migrate.alembic_config("sqlite://")
    if versions_parent is not None:
        cfg.set_main_option("script_location", str(versions_parent))
    return frozenset(ScriptDirectory.from_config(cfg).get_heads())


def test_plain_heads_match_alembic():
    assert migrate.plain_heads() == alembic_heads()
    assert migrate.script_heads() == alembic_heads()


def copy_scripts(tmp_path: Path) -> Path:
    target = tmp_path / "migrations"
    shutil.copytree(migrate.MIGRATIONS, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def test_plain_heads_follow_merges_and_give_up_on_computed_ids(tmp_path):
    scripts = copy_scripts(tmp_path)
    versions = scripts / "versions"
    before = migrate.plain_heads(versions)
    assert before is not None and len(before) > 1
    merge = tuple(sorted(before))
    (versions / "9999_merge.py").write_text(
        f'revision = "9999_merge"\ndown_revision = {merge!r}\nbranch_labels = None\ndepends_on = None\n'
        "def upgrade() -> None:\n    pass\n\ndef downgrade() -> None:\n    pass\n", "utf-8")
    assert migrate.plain_heads(versions) == {"9999_merge"} == alembic_heads(scripts)
    (versions / "9998_computed.py").write_text(
        'revision = "99" + "98"\ndown_revision = "9999_merge"\n', "utf-8")
    assert migrate.plain_heads(versions) is None  # not a literal: Alembic decides


async def versions_in(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            return {r[0] for r in await conn.execute(text("SELECT version_num FROM alembic_version"))}
    finally:
        await engine.dispose()


async def test_upgrade_migrates_new_and_older_databases_and_is_idempotent(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'q.db'}"
    assert await asyncio.to_thread(migrate.current_versions, url) is None  # no table yet
    assert not await asyncio.to_thread(migrate.is_current, url)
    await asyncio.to_thread(migrate.upgrade, url, "0001")  # an older release's schema
    assert await versions_in(url) == {"0001"}
    assert not await asyncio.to_thread(migrate.is_current, url)
    await asyncio.to_thread(migrate.upgrade, url)  # behind: Alembic upgrades it
    assert await versions_in(url) == set(migrate.script_heads())
    assert await asyncio.to_thread(migrate.is_current, url)
    await asyncio.to_thread(migrate.upgrade, url)  # at head: nothing to do, nothing breaks
    assert await versions_in(url) == set(migrate.script_heads())


async def test_a_migrated_database_is_current_on_both_databases(database_url):
    assert await asyncio.to_thread(migrate.current_versions, database_url) == set(migrate.script_heads())
    assert await asyncio.to_thread(migrate.is_current, database_url)
    await asyncio.to_thread(migrate.upgrade, database_url)  # the start-up check: a no-op here
    assert await versions_in(database_url) == set(migrate.script_heads())
