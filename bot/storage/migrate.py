"""Schema migrations (Alembic), callable from the CLI and from `run`/`demo` start-up.

Importing Alembic and running its environment costs a start about half a second even when
there is nothing to do, so `upgrade` first compares the database's `alembic_version` rows
with the heads of the shipped revision files (read with `ast`, without importing them) and
calls Alembic only when they differ or cannot be read plainly.
"""

from __future__ import annotations

import ast
import asyncio
import concurrent.futures
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from bot.storage.db import make_engine

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).with_name("migrations")
VERSIONS = MIGRATIONS / "versions"


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def _in_fresh_thread(fn, *args):  # type: ignore[no-untyped-def]
    # env.py calls asyncio.run(); keep it off any loop that is already running.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(fn, *args).result()


def _assigned(node: ast.stmt) -> tuple[str, ast.expr] | None:
    """(name, value) of a module-level `name = value` or `name: type = value`."""
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
        return node.target.id, node.value
    if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
        return node.targets[0].id, node.value
    return None


def _literal_revisions(path: Path) -> tuple[str, tuple[str, ...]] | None:
    """(revision, down revisions) of one revision file when both are plain literals, else None."""
    values: dict[str, object] = {}
    for node in ast.parse(path.read_text("utf-8"), str(path)).body:
        found = _assigned(node)
        if found is not None and found[0] in ("revision", "down_revision"):
            try:
                values[found[0]] = ast.literal_eval(found[1])
            except ValueError:
                return None
    revision, down = values.get("revision"), values.get("down_revision", ...)
    if not isinstance(revision, str) or down is ...:
        return None
    if down is None:
        return revision, ()
    if isinstance(down, str):
        return revision, (down,)
    if isinstance(down, tuple | list) and all(isinstance(d, str) for d in down):
        return revision, tuple(down)
    return None


def plain_heads(versions: Path = VERSIONS) -> frozenset[str] | None:
    """Heads of the revision files without Alembic, or None when any file is not plain."""
    revisions: dict[str, tuple[str, ...]] = {}
    for path in sorted(versions.glob("*.py")):
        if path.name.startswith("_"):
            continue
        found = _literal_revisions(path)
        if found is None or found[0] in revisions:
            return None
        revisions[found[0]] = found[1]
    downs = {d for ds in revisions.values() for d in ds}
    if not revisions or not downs <= set(revisions):
        return None
    return frozenset(set(revisions) - downs)


def script_heads() -> frozenset[str]:
    """The newest migration of each branch shipped with this code."""
    heads = plain_heads()
    if heads is not None:
        return heads
    from alembic.script import ScriptDirectory  # a revision file we cannot read plainly

    return frozenset(ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads())


async def _versions(url: str) -> set[str] | None:
    """The database's `alembic_version` rows; None when there is no such table yet."""
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            try:
                rows = await conn.execute(text("SELECT version_num FROM alembic_version"))
            except DBAPIError:
                return None
            return {r[0] for r in rows}
    finally:
        await engine.dispose()


def current_versions(url: str) -> set[str] | None:
    return _in_fresh_thread(lambda: asyncio.run(_versions(url)))


def _alembic_upgrade(url: str, revision: str) -> None:
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def upgrade(url: str, revision: str = "heads") -> None:
    """Upgrade to `revision` (all heads by default); a database already there is left alone."""
    if revision == "heads" and current_versions(url) == set(script_heads()):
        return
    _in_fresh_thread(_alembic_upgrade, url, revision)


def autogenerate(url: str, message: str) -> None:
    from alembic import command

    _in_fresh_thread(
        lambda: command.revision(alembic_config(url), message=message, autogenerate=True)
    )


def is_current(url: str) -> bool:
    """True when the database is at the newest migration (for /readyz and doctor)."""
    return current_versions(url) == set(script_heads())
