"""The answer tally: deliveries and stored answers counted per member and round (`AnswerTally`).

Reports read their member-level figures (response, totals, units, attributes, member scores)
from this small table instead of re-deriving them from every answer and delivery. It must
equal `DEFINITION` over the deliveries and answers at every commit, so:

- the answer path calls `count_answer` for each answer it newly stored, in the same
  transaction (a replayed answer stores nothing and counts nothing);
- opening a round calls `count_deliveries` once its deliveries are inserted, same transaction;
- bulk loaders (`qingfeng dev seed`, test builders) call `recount` for the rounds they wrote;
- whatever ever updates or deletes answers or deliveries must `recount` the rounds it touched.

Item status is deliberately not part of it: retiring an item later changes no stored count,
and the report queries subtract on-time answers to retired items themselves.

The item tally (`ItemTally`) counts the on-time answers per round, item and exact choice
(`ITEM_DEFINITION`), kept by the same calls: `count_answer` adds an on-time answer to it,
`recount` rebuilds it with the answer tally. A report whose scope holds every on-time answer
of its rounds (a 党委 over its whole tree) reads its per-item tables from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.storage.bulk import insert_for
from bot.storage.models import AnswerTally, ItemTally

_SELECT = """SELECT member_id, round_id,
       SUM(on_time) AS on_time, SUM(on_time_correct) AS on_time_correct, SUM(late) AS late,
       MAX(pushed) AS pushed
FROM (
    SELECT member_id, round_id, 0 AS on_time, 0 AS on_time_correct, 0 AS late, 1 AS pushed
    FROM delivery{where}
    UNION ALL
    SELECT member_id, round_id, CASE WHEN NOT late THEN 1 ELSE 0 END,
           CASE WHEN NOT late AND correct THEN 1 ELSE 0 END, CASE WHEN late THEN 1 ELSE 0 END, 0
    FROM answer{where}
) x
GROUP BY member_id, round_id"""
_COLUMNS = "member_id, round_id, on_time, on_time_correct, late, pushed"

# The definition, also used by the migrations' backfills and the consistency test.
DEFINITION = _SELECT.format(where="")


def _mismatches(definition: str, columns: str, table: str) -> str:
    """Rows on which a tally and its definition disagree, either way: none when it is right."""
    return f"""WITH fresh AS (
{definition}
),
stored AS (
SELECT {columns} FROM {table}
)
SELECT 'wrong or missing in {table}' AS problem, a.* FROM (SELECT * FROM fresh EXCEPT SELECT * FROM stored) a
UNION ALL
SELECT 'not in the definition', b.* FROM (SELECT * FROM stored EXCEPT SELECT * FROM fresh) b"""


MISMATCHES = _mismatches(DEFINITION, _COLUMNS, "answertally")

# On-time answers per round, item, exact choice and shard (member_id % 16, see ItemTally).
ITEM_SHARDS = 16
_ITEM_SELECT = f"""SELECT round_id, item_id, choice, member_id % {ITEM_SHARDS} AS shard, COUNT(*) AS answers,
       SUM(CASE WHEN correct THEN 1 ELSE 0 END) AS correct
FROM answer
WHERE NOT late{{rounds}}
GROUP BY round_id, item_id, choice, member_id % {ITEM_SHARDS}"""
_ITEM_COLUMNS = "round_id, item_id, choice, shard, answers, correct"
ITEM_DEFINITION = _ITEM_SELECT.format(rounds="")

ITEM_MISMATCHES = _mismatches(ITEM_DEFINITION, _ITEM_COLUMNS, "itemtally")

# After a round's deliveries are inserted: mark them, one statement, whatever their number.
_DELIVERED = f"""INSERT INTO answertally ({_COLUMNS})
SELECT member_id, round_id, 0, 0, 0, 1 FROM delivery WHERE round_id = :round_id
ON CONFLICT (member_id, round_id) DO UPDATE SET pushed = 1"""


def recount_sql(*, rounds: bool) -> tuple[str, str, str, str]:
    """DELETE and INSERT … SELECT that rebuild both tallies (of the rounds in :round_ids, or all)."""
    where = "\n    WHERE round_id IN :round_ids" if rounds else ""
    item_rounds = " AND round_id IN :round_ids" if rounds else ""
    return (f"DELETE FROM answertally{where.replace('    ', '')}",
            f"INSERT INTO answertally ({_COLUMNS})\n{_SELECT.format(where=where)}",
            f"DELETE FROM itemtally{where.replace('    ', '')}",
            f"INSERT INTO itemtally ({_ITEM_COLUMNS})\n{_ITEM_SELECT.format(rounds=item_rounds)}")


async def count_answer(conn: AsyncSession | AsyncConnection, *, member_id: int, round_id: int, item_id: str,
                       choice: str, correct: bool, late: bool) -> None:
    """Add one newly stored answer to its member-round tally and, on time, to its item tally:
    one upsert each, same transaction.

    `conn` is the ORM session or the bare connection the answer was inserted with."""
    dialect = _dialect(conn)
    await _execute(conn, _count_statement(dialect), {
        "member_id": member_id, "round_id": round_id, "on_time": 0 if late else 1,
        "on_time_correct": int(correct and not late), "late": int(late), "pushed": 0})
    if not late:
        await _execute(conn, _item_statement(dialect), {
            "round_id": round_id, "item_id": item_id, "choice": choice, "shard": member_id % ITEM_SHARDS,
            "answers": 1, "correct": int(correct)})


_COUNT: dict[str, Any] = {}


def _count_statement(dialect: str) -> Any:
    """The upsert, built once per dialect (on the answer path, building it anew cost ~5 ms of CPU
    per answer, more than the rest of the answer's statements together)."""
    stmt = _COUNT.get(dialect)
    if stmt is None:
        table = AnswerTally.__table__  # type: ignore[attr-defined]
        insert: Any = insert_for(dialect)(table)
        stmt = _COUNT[dialect] = insert.on_conflict_do_update(index_elements=["member_id", "round_id"], set_={
            c: table.c[c] + insert.excluded[c] for c in ("on_time", "on_time_correct", "late")})
    return stmt


_ITEM: dict[str, Any] = {}


def _item_statement(dialect: str) -> Any:
    stmt = _ITEM.get(dialect)
    if stmt is None:
        table = ItemTally.__table__  # type: ignore[attr-defined]
        insert: Any = insert_for(dialect)(table)
        stmt = _ITEM[dialect] = insert.on_conflict_do_update(
            index_elements=["round_id", "item_id", "choice", "shard"],
            set_={c: table.c[c] + insert.excluded[c] for c in ("answers", "correct")})
    return stmt


async def count_deliveries(conn: AsyncSession | AsyncConnection, round_id: int) -> None:
    """Mark the member-rounds of a newly opened round's deliveries: one statement, same transaction."""
    await _execute(conn, text(_DELIVERED), {"round_id": round_id})


async def recount(conn: AsyncSession | AsyncConnection, round_ids: Sequence[int] | None = None) -> None:
    """Rebuild both tallies from the answers: of these rounds, or (None) of all. No commit."""
    params = {"round_ids": list(round_ids)} if round_ids is not None else {}
    for sql in recount_sql(rounds=round_ids is not None):
        stmt = text(sql)
        if round_ids is not None:
            stmt = stmt.bindparams(bindparam("round_ids", expanding=True))
        await _execute(conn, stmt, params)


def _dialect(conn: AsyncSession | AsyncConnection) -> str:
    if isinstance(conn, AsyncConnection):
        return conn.dialect.name
    return conn.bind.dialect.name if conn.bind else "sqlite"


async def _execute(conn: AsyncSession | AsyncConnection, stmt: Any, params: dict[str, Any] | None = None) -> None:
    if isinstance(conn, AsyncSession):
        await conn.exec(stmt, params=params)  # type: ignore[call-overload]
    else:
        await conn.execute(stmt, params)
