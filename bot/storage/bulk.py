"""Dialect-aware bulk inserts that ignore rows hitting a unique constraint.

`INSERT … ON CONFLICT DO NOTHING` is how exactly-once is enforced by the database.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession


def _insert(session: AsyncSession, model: type[SQLModel]) -> Any:
    dialect = session.bind.dialect.name if session.bind else "sqlite"
    table = model.__table__  # type: ignore[attr-defined]
    return postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)


async def insert_ignore(
    session: AsyncSession, model: type[SQLModel], rows: Sequence[dict[str, Any]],
    *, chunk: int = 500,
) -> int:
    """Insert rows, skipping conflicts; return how many were new."""
    inserted = 0
    for start in range(0, len(rows), chunk):
        part = rows[start:start + chunk]
        stmt = _insert(session, model).values(list(part)).on_conflict_do_nothing()
        result = await session.exec(stmt)  # type: ignore[call-overload]
        inserted += max(result.rowcount or 0, 0)
    return inserted


async def insert_one_ignore(
    session: AsyncSession, model: type[SQLModel], row: dict[str, Any]
) -> bool:
    """Insert one row unless it conflicts; True when this call inserted it."""
    stmt = _insert(session, model).values(**row).on_conflict_do_nothing()
    result = await session.exec(stmt)  # type: ignore[call-overload]
    return (result.rowcount or 0) > 0


async def insert_one_returning_id(
    session: AsyncSession, model: type[SQLModel], row: dict[str, Any]
) -> int | None:
    """Insert one row unless it conflicts; the new id, or None on conflict (one round trip)."""
    table = model.__table__  # type: ignore[attr-defined]
    stmt = _insert(session, model).values(**row).on_conflict_do_nothing().returning(table.c.id)
    result = await session.exec(stmt)  # type: ignore[call-overload]
    return result.scalar_one_or_none()


async def upsert(
    session: AsyncSession, model: type[SQLModel], rows: Sequence[dict[str, Any]],
    *, keys: Sequence[str], chunk: int = 500,
) -> None:
    """Insert or update rows by primary/unique key columns."""
    for start in range(0, len(rows), chunk):
        part = list(rows[start:start + chunk])
        if not part:
            continue
        stmt = _insert(session, model).values(part)
        update = {c: stmt.excluded[c] for c in part[0] if c not in keys}
        stmt = stmt.on_conflict_do_update(index_elements=list(keys), set_=update)
        await session.exec(stmt)  # type: ignore[call-overload]
