"""Dialect-aware bulk inserts that ignore rows hitting a unique constraint.

`INSERT … ON CONFLICT DO NOTHING` is how exactly-once is enforced by the database.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

# Hot paths run Core statements on a bare connection (no ORM session); both work here.
Executor = AsyncSession | AsyncConnection


async def as_connection(executor: Executor) -> AsyncConnection:
    """The connection to run Core statements on: a session's own (same transaction; pending ORM
    objects are not flushed first) or the connection itself."""
    return executor if isinstance(executor, AsyncConnection) else await executor.connection()


async def _execute(executor: Executor, stmt: Any) -> Any:
    if isinstance(executor, AsyncConnection):
        return await executor.execute(stmt)
    return await executor.exec(stmt)  # an ORM session flushes pending objects first


def dialect_name(executor: Executor) -> str:
    if isinstance(executor, AsyncConnection):
        return executor.dialect.name
    return executor.bind.dialect.name if executor.bind else "sqlite"


def insert_for(dialect: str) -> Any:
    """The dialect's `insert` (with ON CONFLICT). Imported here, not at the top: each dialect
    package costs start-up tens of ms, and a process only ever needs the one it runs on."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


def _insert(session: Executor, model: type[SQLModel]) -> Any:
    table = model.__table__  # type: ignore[attr-defined]
    return insert_for(dialect_name(session))(table)


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


_PREBUILT: dict[tuple[str, str], Any] = {}


async def insert_one_returning_id(
    session: Executor, model: type[SQLModel], row: dict[str, Any], *, prebuilt: bool = False,
) -> int | None:
    """Insert one row unless it conflicts; the new id, or None on conflict (one round trip).
    `prebuilt`: one statement per table and dialect, the row passed as parameters (for a hot
    path: building the statement costs more than running it)."""
    table = model.__table__  # type: ignore[attr-defined]
    if not prebuilt:
        stmt = _insert(session, model).values(**row).on_conflict_do_nothing().returning(table.c.id)
        return (await _execute(session, stmt)).scalar_one_or_none()
    key = (table.name, dialect_name(session))
    stmt = _PREBUILT.get(key)
    if stmt is None:
        stmt = _PREBUILT[key] = _insert(session, model).on_conflict_do_nothing().returning(table.c.id)
    return (await (await as_connection(session)).execute(stmt, row)).scalar_one_or_none()


async def upsert(
    session: Executor, model: type[SQLModel], rows: Sequence[dict[str, Any]],
    *, keys: Sequence[str], chunk: int = 500,
) -> None:
    """Insert or update rows by primary/unique key columns (ORM session or bare connection)."""
    for start in range(0, len(rows), chunk):
        part = list(rows[start:start + chunk])
        if not part:
            continue
        stmt = _insert(session, model).values(part)
        update = {c: stmt.excluded[c] for c in part[0] if c not in keys}
        stmt = stmt.on_conflict_do_update(index_elements=list(keys), set_=update)
        await _execute(session, stmt)
