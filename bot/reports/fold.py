"""Finished rounds folded once into what long reports need (`TopicReach`, `RoundMarks`).

A finished round's on-time answers never change — after its deadline every answer is late — so
what a report derives from them alone can be computed once per round instead of in every report:

- *topic reach*: per topic and member, the opening time of the latest folded round in which the
  member gave a valid answer on the topic. A topic's people (distinct members across its items
  and rounds), which no per-round count gives, read a million answers for a 党委's 50 rounds;
  for a period that reaches the present, a member reached a topic in it exactly when that time
  is inside it (`queries.TOPICS_REACHED`; open rounds are read from the answers as before);
- *round marks*: the item analysis' input of the round (`queries.ROUND_MARKS`' rows for every
  member), which for a scope holding every answer is the scope's (`queries.ROUND_MARKS_FOLDED`).

Both are right only for the item-topic links and retired items they were made with, so their
fingerprint is stored beside them: a report run while it differs reads the answers (and one that
sees it change while it runs is made again without the folds), and the next fold starts over.
- *totals*: the round's member-rounds summed per organisation (`RoundOrgTotals`) and added to
  each member's running totals (`MemberPrefix`), so that a long period's per-round and
  per-member figures read a few thousand rows instead of every member-round of the period
  (the `folded_fill`s of `queries.ROUND_TOTALS` and `queries.MEMBER_TOTALS`). On-time figures only: late
  answers may still arrive, and reports read them from the answer tally.

The totals are also right only while members stay in their organisations: a trigger (migration
0010) deletes the stored fingerprint when a member moves, with the same effect.

`foldedround` lists the rounds folded, each `SETTLE` after its deadline and strictly in the order
they opened (the running totals add each round to the member's latest row): a round still open
holds back the rounds that opened after it, and a round made later with an earlier opening time
is never folded (reports read it from the tally). Folding runs on the scheduler's tick
(`Runner.tick`, a few rounds per tick, one transaction per round so that answers keep flowing)
and at the end of `qingfeng dev seed`.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy import bindparam, delete, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.storage.bulk import Executor, as_connection
from bot.storage.db import Database
from bot.storage.models import (
    FoldedRound,
    KeyValue,
    MemberPrefix,
    RoundMarks,
    RoundOrgTotals,
    TopicReach,
    UTCDateTime,
)

log = logging.getLogger(__name__)

FINGERPRINT_KEY = "reports.folded_rounds"

# One finished round (:round_id) into the topic reach; GREATEST / MAX keeps the later round.
REACH_FOLD = """INSERT INTO topicreach (topic, member_id, last_opens_at)
SELECT it.topic, a.member_id, MAX(r.opens_at)
FROM answer a
JOIN round r ON r.id = a.round_id
CROSS JOIN itemtopic it
WHERE a.round_id = :round_id AND NOT a.late AND it.item_id = a.item_id
  AND a.item_id NOT IN (SELECT id FROM bankitem WHERE status = 'retired')
GROUP BY it.topic, a.member_id
ON CONFLICT (topic, member_id) DO UPDATE
SET last_opens_at = {greatest}(topicreach.last_opens_at, excluded.last_opens_at)"""

# One finished round's item-analysis input, as `round_marks` computes it, over every member:
# members with a valid answer to each current item of the round, their marks and totals.
MARKS_FOLD = """WITH valid AS MATERIALIZED (
    SELECT a.member_id, a.item_id, CASE WHEN a.correct THEN 1 ELSE 0 END AS mark
    FROM answer a
    WHERE a.round_id = :round_id AND NOT a.late
      AND a.item_id NOT IN (SELECT id FROM bankitem WHERE status = 'retired')
),
complete AS MATERIALIZED (
    SELECT member_id, SUM(mark) AS total
    FROM valid
    GROUP BY member_id
    HAVING COUNT(*) = (SELECT COUNT(*) FROM rounditem ri JOIN bankitem bi ON bi.id = ri.item_id
                       WHERE ri.round_id = :round_id AND bi.status <> 'retired')
)
INSERT INTO roundmarks (round_id, item_id, mark, total, members)
SELECT CAST(:round_id AS INTEGER), v.item_id, v.mark, c.total, COUNT(*)
FROM valid v JOIN complete c ON c.member_id = v.member_id
GROUP BY v.item_id, v.mark, c.total"""

# One finished round's member-rounds with their valid figures (on time, items not retired; the
# tally counts on-time answers to items retired since, so those are looked up and taken off).
_MEMBER_ROUNDS = """WITH retired AS (
    SELECT a.member_id, COUNT(*) AS answers, SUM(CASE WHEN a.correct THEN 1 ELSE 0 END) AS correct
    FROM rounditem ri JOIN bankitem bi ON bi.id = ri.item_id
    CROSS JOIN answer a
    WHERE ri.round_id = :round_id AND bi.status = 'retired'
      AND a.round_id = ri.round_id AND a.item_id = ri.item_id AND NOT a.late
    GROUP BY a.member_id
),
member_round AS MATERIALIZED (
    SELECT t.member_id, t.pushed, CASE WHEN t.on_time > 0 THEN 1 ELSE 0 END AS answered,
           t.on_time - COALESCE(x.answers, 0) AS answers, t.on_time_correct - COALESCE(x.correct, 0) AS correct,
           COALESCE(x.answers, 0) AS retired
    FROM answertally t LEFT JOIN retired x ON x.member_id = t.member_id
    WHERE t.round_id = :round_id
)"""

# The round's totals per organisation of the members (as they are now: a move voids the folds).
ORG_FOLD = _MEMBER_ROUNDS + """
INSERT INTO roundorgtotals (round_id, org_id, pushed, answered, responded, answers, correct, retired)
SELECT CAST(:round_id AS INTEGER), m.org_id, SUM(mr.pushed), SUM(mr.answered),
       SUM(CASE WHEN mr.answers > 0 THEN 1 ELSE 0 END), SUM(mr.answers), SUM(mr.correct), SUM(mr.retired)
FROM member_round mr JOIN member m ON m.id = mr.member_id
GROUP BY m.org_id"""

# Each member of the round: their latest running totals (the round opened after every round
# folded before it) plus this round.
PREFIX_FOLD = _MEMBER_ROUNDS + """,
latest AS (
    SELECT mr.member_id, (SELECT q.round_id FROM memberprefix q WHERE q.member_id = mr.member_id
                          ORDER BY q.opens_at DESC, q.round_id DESC LIMIT 1) AS round_id
    FROM member_round mr
)
INSERT INTO memberprefix (member_id, round_id, opens_at, pushed, responded, answers, correct, missed)
SELECT mr.member_id, r.id, r.opens_at, COALESCE(p.pushed, 0) + mr.pushed,
       COALESCE(p.responded, 0) + CASE WHEN mr.answers > 0 THEN 1 ELSE 0 END,
       COALESCE(p.answers, 0) + mr.answers, COALESCE(p.correct, 0) + mr.correct,
       COALESCE(p.missed, 0) + CASE WHEN mr.pushed = 1 AND mr.answers = 0 THEN 1 ELSE 0 END
FROM member_round mr
JOIN round r ON r.id = :round_id
JOIN latest l ON l.member_id = mr.member_id
LEFT JOIN memberprefix p ON p.member_id = l.member_id AND p.round_id = l.round_id"""

_GREATEST = {"sqlite": "MAX", "postgresql": "GREATEST"}

# A round is folded this long after its deadline: an answer stamped on time by a process whose
# clock runs a little behind (another replica) is still counted.
SETTLE = timedelta(minutes=10)

# The latest folded round, in opening order: rounds are folded after it, in that order.
_FRONTIER = text("""SELECT r.opens_at, r.id FROM round r JOIN foldedround f ON f.round_id = r.id
ORDER BY r.opens_at DESC, r.id DESC LIMIT 1""").columns(
    sa.column("opens_at", UTCDateTime()), sa.column("id", sa.Integer()))
_BEFORE_ALL = (datetime(1970, 1, 1, tzinfo=UTC), 0)

# The rounds that opened after it, in opening order, with their deadlines.
_AFTER_FRONTIER = text("""SELECT r.id, r.deadline FROM round r
WHERE r.opens_at > :opens_at OR (r.opens_at = :opens_at AND r.id > :round_id)
ORDER BY r.opens_at, r.id""").bindparams(bindparam("opens_at", type_=UTCDateTime())).columns(
    sa.column("id", sa.Integer()), sa.column("deadline", UTCDateTime()))

# The round is claimed first: another process folding it too (replicas) then skips it.
_CLAIM = text("""INSERT INTO foldedround (round_id, folded_at) VALUES (:round_id, :now)
ON CONFLICT (round_id) DO NOTHING""").bindparams(bindparam("now", type_=UTCDateTime()))

_LINKS = text("SELECT item_id, topic FROM itemtopic ORDER BY item_id, topic")
_RETIRED = text("SELECT id FROM bankitem WHERE status = 'retired' ORDER BY id")
_STORED = select(col(KeyValue.value)).where(col(KeyValue.key) == FINGERPRINT_KEY)


def reach_statement(dialect: str) -> str:
    return REACH_FOLD.format(greatest=_GREATEST["postgresql" if dialect.startswith("postgres") else "sqlite"])


async def fingerprint(executor: Executor) -> str:
    """What the folds depend on besides the answers: the item-topic links and the retired items."""
    conn = await as_connection(executor)
    digest = hashlib.sha256()
    for item_id, topic in (await conn.execute(_LINKS)).all():
        digest.update(f"{item_id}\t{topic}\n".encode())
    digest.update(b"retired\n")
    for (item_id,) in (await conn.execute(_RETIRED)).all():
        digest.update(f"{item_id}\n".encode())
    return digest.hexdigest()


async def stored_fingerprint(executor: Executor) -> str | None:
    """The fingerprint the folds were made with (None: never folded)."""
    value = (await (await as_connection(executor)).execute(_STORED)).scalar()
    return value.get("fingerprint") if value else None


async def trusted(session: AsyncSession) -> bool:
    """Were the folded rounds made with the links and retired items there are now?"""
    stored = await stored_fingerprint(session)
    return stored is not None and stored == await fingerprint(session)


async def fold_finished_rounds(db: Database, now: datetime, *, limit: int | None = None) -> int:
    """Fold the rounds whose deadline passed (at least `SETTLE` ago) and that are not folded yet,
    oldest first (at most `limit`); how many were. Starts over when the links or retired items
    changed since."""
    async with db.session() as session:
        current = await fingerprint(session)
        if await stored_fingerprint(session) != current:
            for table in (TopicReach, RoundMarks, RoundOrgTotals, MemberPrefix, FoldedRound):
                await session.exec(delete(table))  # type: ignore[call-overload]
            await session.merge(KeyValue(key=FINGERPRINT_KEY, value={"fingerprint": current}))
            await session.commit()
        todo = await _finished_in_order(session, now - SETTLE, limit)
    statements = [text(reach_statement(db.dialect)), text(MARKS_FOLD), text(ORG_FOLD), text(PREFIX_FOLD)]
    folded = 0
    for round_id in todo:
        async with db.session() as session:
            conn = await session.connection(
                execution_options={"isolation_level": "REPEATABLE READ"} if db.dialect == "postgresql" else {})
            try:
                # The claim first: on SQLite a transaction that starts by writing waits for the
                # lock, where one that read first fails if another process wrote meanwhile.
                if (await conn.execute(_CLAIM, {"round_id": round_id, "now": now})).rowcount != 1:
                    continue  # folded by another process meanwhile
                # The links and items the folds read are the ones the stored fingerprint names
                # (one snapshot): if they changed meanwhile, stop (rolled back); the next fold
                # starts over.
                # (The stored one too: a member who moved meanwhile deleted it.)
                if await stored_fingerprint(conn) != current or await fingerprint(conn) != current:
                    return folded
                # Every round folded before this one opened before it (the running totals build on
                # the member's latest row): another process cannot have folded past it meanwhile.
                if tuple((await conn.execute(_FRONTIER)).one())[1] != round_id:
                    return folded
                for statement in statements:
                    await conn.execute(statement, {"round_id": round_id})
                await session.commit()
            except (IntegrityError, DBAPIError) as error:
                if not _concurrent(error):
                    raise
                log.info("round %s is being folded by another process", round_id)
                return folded
        folded += 1
    return folded


async def _finished_in_order(session: AsyncSession, before: datetime, limit: int | None) -> list[int]:
    """The rounds to fold now: those that opened after the latest folded one, in opening order,
    up to the first whose deadline is not `before` yet (at most `limit`)."""
    frontier = (await session.exec(_FRONTIER)).first()  # type: ignore[call-overload]
    opens_at, round_id = tuple(frontier) if frontier else _BEFORE_ALL
    rows = await session.exec(_AFTER_FRONTIER, params={"opens_at": opens_at, "round_id": round_id})  # type: ignore[call-overload]
    todo = list(itertools.takewhile(lambda row: row[1] < before, rows.all()))
    return [rid for rid, _deadline in todo][:limit]


def _concurrent(error: DBAPIError) -> bool:
    """Another process folding the same round: its claim (SQLite) or a serialization failure
    (PostgreSQL's REPEATABLE READ)."""
    return isinstance(error, IntegrityError) or getattr(error.orig, "sqlstate", None) == "40001"
