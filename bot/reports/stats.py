"""Aggregation queries for reports: run the SQL in `queries.py` and hand back typed rows.

All counting happens in SQL; Python only reshapes rows.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, text
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.core.results import BranchSummary, ItemStat
from bot.reports import queries
from bot.reports.analysis import wilson, withheld_keys
from bot.reports.period import Period, round_period
from bot.storage.models import BankItem, Delivery, Member, Organization, Round, UTCDateTime

_PARAM = re.compile(r"(?<!:):([a-z_]+)\b")


@dataclass(frozen=True)
class Scope:
    """Where and when: the bound parameters shared by every query of one report."""

    org: Organization
    period: Period
    tz: ZoneInfo

    def params(self) -> dict[str, Any]:
        # SQLite weeks use one fixed offset (exact for zones without daylight saving).
        ref = self.period.start if not self.period.is_open_ended else datetime.now(UTC)
        offset = ref.astimezone(self.tz).utcoffset()
        minutes = int(offset.total_seconds() // 60) if offset is not None else 0
        end_year = min(self.period.end, datetime.now(self.tz)).astimezone(self.tz).year
        return {
            "scope": f"{self.org.path}%", "start": self.period.start, "end": self.period.end,
            "round_id": self.period.round_id, "scope_id": self.org.id, "tz": self.tz.key,
            "tz_shift": f"{minutes:+d} minutes", "year": end_year,
        }


# Built statements by (query, dialect, one round): rendering and parsing a long text anew for
# every statement of every report was client time for nothing.
_BUILT: dict[tuple[queries.Query, str, bool], tuple[Any, frozenset[str]]] = {}


def _statement(session: AsyncSession, query: queries.Query, scope: Scope, extra: dict[str, Any]) -> tuple[Any, dict]:
    dialect = session.bind.dialect.name if session.bind else "sqlite"
    key = (query, dialect, scope.period.round_id is not None)
    if key not in _BUILT:
        sql = queries.render(query, dialect, single_round=key[2])
        names = frozenset(_PARAM.findall(sql))
        stmt = text(sql).bindparams(
            *(bindparam(n, type_=UTCDateTime()) if n in ("start", "end") else bindparam(n) for n in sorted(names)))
        if query is queries.ROUNDS:
            stmt = stmt.columns(opens_at=UTCDateTime())  # type: ignore[assignment]
        _BUILT[key] = stmt, names
    stmt, names = _BUILT[key]
    values = {**scope.params(), **extra}
    return stmt, {n: values[n] for n in names}


def _drops(dialect: str) -> list[str]:
    """DROP statements for the working set: one on PostgreSQL (a round trip each otherwise)."""
    if dialect == "postgresql":
        return ["DROP TABLE IF EXISTS " + ", ".join(f"pg_temp.{t.name}" for t in queries.WORKING_SET)]
    return [t.ddl(dialect)[0] for t in queries.WORKING_SET]


# Set on the session by `fill_working_set` when the scope holds every on-time answer of its
# rounds: the per-item queries then read the item tally instead of report_answer.
_COVERS_ALL = "report_covers_all"
_FROM_TALLY = {queries.ITEMS: queries.ITEMS_ALL, queries.OPTIONS: queries.OPTIONS_ALL,
               queries.TOPICS: queries.TOPICS_ALL, queries.ROUND_MARKS: queries.ROUND_MARKS_ALL}


def covers_all(session: AsyncSession) -> bool:
    """Did `coverage` find that this session's working set holds every on-time answer of its rounds?"""
    return bool(session.info.get(_COVERS_ALL))


async def run(session: AsyncSession, query: queries.Query, scope: Scope, **extra: Any) -> list[Any]:
    """Execute one documented query with the scope's parameters (only those it names); a
    per-item query reads the item tally instead when the working set says it covers all."""
    if session.info.get(_COVERS_ALL):
        query = _FROM_TALLY.get(query, query)
    stmt, params = _statement(session, query, scope, extra)
    result = await session.exec(stmt, params=params)  # type: ignore[call-overload]
    return list(result.all())


async def fill_working_set(session: AsyncSession, scope: Scope, *, answers: bool = True,
                           folded: bool = False) -> None:
    """The report's working set (docs/reports-sql.md): the scope's member-rounds of the period
    and, with `answers`, its valid answers (or, when `coverage` finds the scope holds every
    on-time answer of its rounds, the item tally's counts of them), as temporary tables that
    every report query reads. Filling again replaces them (without `answers`, the answers table is dropped, not left
    behind for another scope). They live in this session's connection; `drop_working_set`.

    `folded`: sum the period's folded rounds from their folds (bot/reports/fold.py; the caller
    checked `fold.trusted`) and read only the others from the tally."""
    dialect = session.bind.dialect.name if session.bind else "sqlite"
    if dialect == "postgresql":
        # For this transaction, in one round trip:
        # - plan_cache_mode: asyncpg reuses prepared statements, and after five runs PostgreSQL
        #   may switch to a generic plan that ignores which round or scope is asked for (seen:
        #   0.3 s → 10 s per round at a million answers);
        # - jit: the big scopes' queries pass the JIT threshold, and compiling took 100-150 ms
        #   a query, more than it saved on a few hundred thousand rows;
        # - default_statistics_target: ANALYZE of the working set samples 3,000 rows, not 30,000.
        await session.exec(text(  # type: ignore[call-overload]
            "SELECT set_config('plan_cache_mode', 'force_custom_plan', true), set_config('jit', 'off', true), "
            "set_config('default_statistics_target', '10', true)"))
    session.info[_COVERS_ALL] = False
    for drop in _drops(dialect):
        await session.exec(text(drop))  # type: ignore[call-overload]
    filled = []
    for table in queries.WORKING_SET:
        if table is queries.FOLDED and not folded:
            continue
        create = table.ddl(dialect)[1]
        if table is queries.ANSWERS:
            if not answers:
                continue
            # Every on-time answer of the period's rounds is the scope's (a 党委 over its tree):
            # the per-item tables read the item tally's counts, and the answers are not copied.
            (covered, everyone), = await run(session, queries.COVERAGE, scope)
            if int(covered) == int(everyone):
                session.info[_COVERS_ALL] = True
                continue
        if table is queries.ITEM_COUNTS and not session.info[_COVERS_ALL]:
            continue
        await session.exec(text(create))  # type: ignore[call-overload]
        fill = table.folded_fill if folded and table.folded_fill else table.fill
        stmt, params = _statement(session, fill, scope, {})
        await session.exec(stmt, params=params)  # type: ignore[call-overload]
        filled.append(table.name)
        if folded and dialect == "postgresql" and table is queries.MEMBER_ROUNDS:
            # The folded fills join these two: without statistics the planner guessed 2,550
            # folded rounds and matched each member's unit anew (0.1 → 0.6 s for a 党委).
            await session.exec(text("ANALYZE " + ", ".join(filled)))  # type: ignore[call-overload]
            filled.clear()
    if dialect == "postgresql":
        # Temporary tables get no statistics unless asked. Once for all: nothing in between
        # joins report_member_round (report_round and report_member group it, `coverage` sums
        # report_round, the last fill reads other tables).
        await session.exec(text("ANALYZE " + ", ".join(filled)))  # type: ignore[call-overload]


async def drop_working_set(session: AsyncSession) -> None:
    """Free the working set's temporary tables (a report's session may live on in the pool)."""
    dialect = session.bind.dialect.name if session.bind else "sqlite"
    session.info.pop(_COVERS_ALL, None)
    for drop in _drops(dialect):
        await session.exec(text(drop))  # type: ignore[call-overload]


def as_date(value: Any) -> date:
    """Week keys come back as text on SQLite and as dates on PostgreSQL."""
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


async def latest_round_period(session: AsyncSession, org: Organization, now: datetime,
                              *, before: datetime | None = None) -> Period | None:
    """The most recent round that reached members of this subtree (opened before `before`).

    Rounds newest first, each checked for one delivery to a member of the subtree: the first
    round that qualifies ends the search (joining every delivery first read half a million
    rows for a 党委)."""
    members = select(Member.id).where(col(Member.org_id).in_(
        select(Organization.id).where(col(Organization.path).startswith(org.path))))
    reached = select(Delivery.id).where(col(Delivery.round_id) == col(Round.id),
                                        col(Delivery.member_id).in_(members)).exists()
    stmt = (select(Round.id, Round.title).where(col(Round.opens_at) <= now, reached)
            .order_by(col(Round.opens_at).desc(), col(Round.id).desc()).limit(1))
    if before is not None:
        stmt = stmt.where(col(Round.opens_at) < before)
    row = (await session.exec(stmt)).first()
    if row is None:
        return None
    round_id, title = row
    return round_period(round_id, title or f"第{round_id}轮")


@dataclass(frozen=True)
class SummaryRow:
    members: int
    pushed: int
    returned: int
    responded: int
    people: int
    valid_answers: int
    correct_answers: int
    late_answers: int
    retired_answers: int


async def summary_row(session: AsyncSession, scope: Scope) -> SummaryRow:
    """The summary of the working set filled for `scope`."""
    (row,) = await run(session, queries.SUMMARY, scope)
    return SummaryRow(*(int(v or 0) for v in row))


async def item_stats(session: AsyncSession, scope: Scope, *, min_group: int) -> list[ItemStat]:
    """Per item: N, share correct and the option distribution, weakest first; small ones withheld."""
    rows = await run(session, queries.ITEMS, scope)
    if not rows:
        return []
    options: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for item_id, choice, count in await run(session, queries.OPTIONS, scope):
        for letter in choice:  # a multiple-choice answer counts towards each letter chosen
            options[item_id][letter] += int(count)
    contents = dict((await session.exec(
        select(BankItem.id, BankItem.content).where(col(BankItem.id).in_([r[0] for r in rows]))
    )).all())
    hidden = withheld_keys({r[0]: int(r[6]) for r in rows}, min_group, partition=True)
    stats = []
    for item_id, stem, kind, key, answers, correct, people in rows:
        texts = tuple((contents.get(item_id) or {}).get("options") or ())
        if kind == "judge" and not texts:
            texts = ("正确", "错误")
        withheld = item_id in hidden  # then no number of it leaves this function
        stats.append(ItemStat(
            item_id=item_id, stem=stem, answered=0 if withheld else int(answers),
            correct=0 if withheld else int(correct),
            option_counts={} if withheld else dict(sorted(options[item_id].items())),
            key=key, type=kind, options=texts, people=0 if withheld else int(people), withheld=withheld))
    stats.sort(key=lambda s: (s.withheld, s.correct / s.answered if s.answered else 1.0, s.item_id))
    return stats


async def branch_summary(
    session: AsyncSession, *, org: Organization, period: Period, min_group: int,
    tz: ZoneInfo | None = None,
) -> BranchSummary:
    """The short summary: response, overall share correct (Wilson interval), per item."""
    scope = Scope(org, period, tz or ZoneInfo("Asia/Shanghai"))
    await fill_working_set(session, scope)
    row = await summary_row(session, scope)
    withheld = row.people < min_group
    items = [] if withheld else await item_stats(session, scope, min_group=min_group)
    await drop_working_set(session)
    return BranchSummary(
        org_id=org.id, org_name=org.name, period_label=period.label,  # type: ignore[arg-type]
        members=row.members, pushed=row.pushed, responded=row.responded,
        valid_answers=row.valid_answers, correct_answers=row.correct_answers,
        late_answers=row.late_answers, items=items, withheld=withheld, min_group=min_group,
        returned=row.returned, people=row.people, retired_answers=row.retired_answers,
        ci=None if withheld else wilson(row.correct_answers, row.valid_answers),
    )
