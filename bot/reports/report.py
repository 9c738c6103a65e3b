"""Assemble a `FullReport` for a scope (an organisation's subtree) and a period.

Each section is one documented query (bot/reports/queries.py); this module reshapes the
rows, applies the privacy floor and runs the statistics in `analysis`.
"""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.reports import fold, queries
from bot.reports.analysis import (
    chi_square,
    correlation,
    group_size,
    item_analysis_from_counts,
    kruskal,
    wilson,
    withheld_keys,
)
from bot.reports.model import (
    AttributeTable,
    CorrelationTable,
    FullReport,
    Previous,
    RoundAnalysis,
    Share,
    SiblingRank,
    UnitComparison,
    UnitRow,
    WeekRow,
)
from bot.reports.period import Period, previous_period
from bot.reports.stats import (
    Scope,
    as_date,
    covers_all,
    drop_working_set,
    fill_working_set,
    item_stats,
    latest_round_period,
    run,
    summary_row,
)
from bot.reports.wording import fmt_p, r3
from bot.storage.models import BankItem, FoldedRound, Organization, Round, RoundItem

RANK_LABELS = ("办事员", "科员", "副科级", "正科级", "副处级", "正处级", "副局级", "正局级")
PARTY_AGE_LABELS = {1: "党龄5年以下", 2: "党龄5–9年", 3: "党龄10–19年", 4: "党龄20–29年", 5: "党龄30年及以上"}
NOT_RECORDED = "未填写"
MAX_ROUNDS_ANALYSED = 12  # item analysis of the latest rounds only; older ones are in older reports
# A period's totals are summed from the folds from this many folded rounds on: two look-ups per
# member cost about what reading two member-rounds each does (a 党委 over 2 rounds: 275 ms with
# the folds, 242 ms from the tally; over 4: 306 against 369 ms; docs/benchmarks.md section 3).
FOLDS_PAY_FROM = 3


async def full_report(
    session: AsyncSession, *, org: Organization, period: Period, min_group: int, tz: ZoneInfo,
    topic_names: dict[str, str] | None = None, now: datetime | None = None, use_folds: bool = True,
) -> FullReport:
    """`use_folds`: take what finished rounds folded once (bot/reports/fold.py) where it applies."""
    now = now or datetime.now(UTC)
    scope = Scope(org, period, tz)
    rnd = await session.get(Round, period.round_id) if period.round_id is not None else None
    # Folded rounds serve a period of several rounds: its finished rounds' totals, and for a
    # scope holding every answer (a 党委 over its tree) their topic reach and item analysis; and
    # a one-round report's comparison with the previous round.
    trusted = use_folds and await fold.trusted(session)
    folded = trusted and period.round_id is None and await _folded_rounds_in(session, period) >= FOLDS_PAY_FROM
    await fill_working_set(session, scope, folded=folded)  # every section reads it (docs/reports-sql.md)
    folds = folded and covers_all(session)
    # A finished round alone, for a scope holding every answer: its folded item-analysis input.
    folded_round = (trusted and period.round_id is not None and covers_all(session)
                    and await session.get(FoldedRound, period.round_id) is not None)
    row = await summary_row(session, scope)
    withheld = row.people < min_group
    # The scope's ancestors (names, the named-list switch, the parent) and whether it has children,
    # in one statement: each of the four was a round trip of its own.
    path_ids = [int(x) for x in org.path.strip("/").split("/") if x]
    # populate_existing: read the switch as stored now, even for organisations this session holds.
    family = {o.id: o for o in (await session.exec(select(Organization).where(
        or_(col(Organization.id).in_(path_ids), col(Organization.parent_id) == org.id))
        .execution_options(populate_existing=True))).all()}
    names = [family[i].name for i in path_ids]
    has_children = any(o.parent_id == org.id for o in family.values())
    if period.round_id is not None:
        label = (rnd.title or period.label) if rnd else period.label
        period_text = f"{label}（{rnd.opens_at.astimezone(tz):%Y年%m月%d日}开启）" if rnd else label
    else:
        period_text = period.describe(tz)
    named = any(family[i].named_nonresponders for i in path_ids)
    nonresponders = await _nonresponders(session, scope) if named else None
    sections: dict[str, Any] = {"items": [], "ci": None}
    if not withheld:
        scores = await _member_scores(session, scope)
        sections = dict(
            items=await item_stats(session, scope, min_group=min_group),
            ci=wilson(row.correct_answers, row.valid_answers),
            topics=await _topics(session, scope, min_group, topic_names or {}, reach=folds and period.end > now),
            weeks=await _weeks(session, scope, min_group),
            units=await _units(session, scope, min_group, scores) if has_children else None,
            attributes=await _attributes(session, scope, min_group),
            correlations=_correlations(scores, min_group, scope.params()["year"]),
            rounds=await _rounds(session, scope, min_group, folded=folds, folded_round=folded_round),
        )
        # The sibling rank and the previous period read the answer tally (or the folds) themselves.
        parent = family.get(org.parent_id) if org.parent_id is not None else None
        sections["sibling_rank"] = await _sibling_rank(session, org, parent, period, tz, min_group, folded=folded)
    previous = await _previous(session, org, period, rnd, tz, min_group, now, trusted=trusted, folded=folded)
    if trusted and not await fold.trusted(session):  # links, retired items or members changed meanwhile
        return await full_report(session, org=org, period=period, min_group=min_group, tz=tz,
                                 topic_names=topic_names, now=now, use_folds=False)
    await drop_working_set(session)
    return FullReport(
        org_id=org.id, org_name=org.name, period_label=period.label, members=row.members,  # type: ignore[arg-type]
        pushed=row.pushed, responded=row.responded, valid_answers=row.valid_answers,
        correct_answers=row.correct_answers, late_answers=row.late_answers, withheld=withheld,
        min_group=min_group, returned=row.returned, people=row.people,
        retired_answers=row.retired_answers, org_path="/".join(names), period_text=period_text,
        generated_at=now, previous=previous, nonresponders=nonresponders, **sections,
    )


async def _folded_rounds_in(session: AsyncSession, period: Period) -> int:
    rounds = select(func.count()).select_from(Round).where(
        col(Round.opens_at) >= period.start, col(Round.opens_at) < period.end,
        col(Round.id).in_(select(FoldedRound.round_id)))
    return int((await session.exec(rounds)).one())


# --- sections -------------------------------------------------------------------------------


async def _previous(session: AsyncSession, org: Organization, period: Period, rnd: Round | None, tz: ZoneInfo,
                    min_group: int, now: datetime, *, trusted: bool = False, folded: bool = False) -> Previous | None:
    """The same scope's previous round or period: one statement over the answer tally, or over
    the folds (`trusted`: the folds are; `folded`: the working set was filled with them, so
    report_folded lists the folded rounds)."""
    prev: Period | None
    if period.round_id is not None:
        prev = await latest_round_period(session, org, now, before=rnd.opens_at) if rnd else None
        label = f"上一轮（{prev.label}）" if prev else ""
    else:
        prev = previous_period(period, tz)
        label = prev.describe(tz) if prev else ""
    if prev is None:
        return None
    query = queries.PREVIOUS
    if trusted and prev.round_id is not None and await session.get(FoldedRound, prev.round_id) is not None:
        query = queries.PREVIOUS_FOLDED
    elif folded and prev.round_id is None:
        query = queries.PREVIOUS_FOLDED_PERIOD
    (valid, correct, people), = await run(session, query, Scope(org, prev, tz))
    if not valid:
        return None
    return Previous(label, int(valid), int(correct), int(people) < min_group)


async def _topics(session: AsyncSession, scope: Scope, min_group: int, names: dict[str, str], *,
                  reach: bool) -> list[Share]:
    """`reach`: people from the folded topic reach (a period reaching the present; fold.py)."""
    rows = await run(session, queries.TOPICS_REACHED if reach else queries.TOPICS, scope)
    # Items with several topics make this no strict partition; treat it as one to be safe.
    hidden = withheld_keys({r[0]: int(r[4]) for r in rows}, min_group, partition=True)
    shares = [_share(names.get(topic, topic), int(people), int(answers), int(correct), topic in hidden, topic)
              for topic, _items, answers, correct, people in rows]
    return sorted(shares, key=lambda s: (s.withheld, s.accuracy if s.accuracy is not None else 1.0, s.label))


def _share(label: str, people: int, answers: int, correct: int, withheld: bool, key: str) -> Share:
    if withheld:  # no number of a withheld row leaves this module
        return Share(label, 0, 0, 0, True, None, key)
    return Share(label, people, answers, correct, False, wilson(correct, answers), key)


async def _weeks(session: AsyncSession, scope: Scope, min_group: int) -> list[WeekRow]:
    rows = await run(session, queries.WEEKS, scope)
    hidden = withheld_keys({str(r[0]): group_size(int(r[6]), int(r[7])) for r in rows}, min_group,
                           partition=True, answered={str(r[0]): int(r[4]) for r in rows})
    return [WeekRow(as_date(week), int(rounds), 0, 0, 0, 0, 0, True) if str(week) in hidden
            else WeekRow(as_date(week), int(rounds), int(pushed), int(responded), int(answers), int(correct),
                         int(people))
            for week, rounds, pushed, responded, answers, correct, people, _pushed_people in rows]


@dataclass(frozen=True)
class Scores:
    """The tests' per-member inputs, column by column in member order: plain lists of numbers, not a
    row object per member (a 党委 has ten thousand)."""

    unit_id: list[int]
    rank_level: list[int | None]
    joined_party_year: list[int | None]
    answers: list[int]
    correct: list[int]


async def _member_scores(session: AsyncSession, scope: Scope) -> Scores:
    (row,) = await run(session, queries.MEMBER_SCORES, scope)
    # Arrays: lists on PostgreSQL (NULL when nobody was pushed), JSON text on SQLite.
    ids, *cols = [json.loads(v) if isinstance(v, str) else list(v or ()) for v in row]
    return Scores(*in_member_order(ids, cols))


def in_member_order(ids: list[int], cols: list[list[Any]]) -> list[list[Any]]:
    """The columns ordered by member id. The databases fill the arrays in the order of the ordered
    subquery, without promising it: be sure, since the statistics' float sums depend on the order."""
    if all(a < b for a, b in itertools.pairwise(ids)):
        return cols
    order = sorted(range(len(ids)), key=ids.__getitem__)
    return [[c[i] for i in order] for c in cols]


async def _units(session: AsyncSession, scope: Scope, min_group: int, scores: Scores) -> UnitComparison:
    return _unit_comparison(scope, await run(session, queries.UNITS, scope), scores, min_group)


def _unit_comparison(scope: Scope, rows: list, scores: Scores, min_group: int, *,
                     intervals: bool = True) -> UnitComparison:
    """`units` rows and `member_scores` rows → the comparison, privacy floor, ranks and tests."""
    hidden = withheld_keys({r[0]: group_size(int(r[6]), int(r[7])) for r in rows}, min_group, partition=True,
                           answered={r[0]: int(r[4]) for r in rows})
    units = []
    for org_id, name, pushed, responded, answers, correct, people, _pushed_people in rows:
        direct = org_id == scope.org.id
        if direct and not pushed:
            continue  # nobody attached directly to the scope organisation was asked
        label = f"{name}（本级）" if direct else name
        if org_id in hidden:  # no number of a withheld row leaves this function
            units.append(UnitRow(int(org_id), label, 0, 0, 0, 0, 0, True, direct))
            continue
        units.append(UnitRow(int(org_id), label, int(pushed), int(responded), int(answers), int(correct),
                             int(people), False, direct,
                             ci=wilson(int(correct), int(answers)) if intervals else None))
    ranked = [u for u in units if not u.direct and u.accuracy is not None]
    ranks = _competition_ranks([u.accuracy for u in ranked])  # type: ignore[misc]
    rank_of = {u.org_id: r for u, r in zip(ranked, ranks, strict=True)}
    units = [_with_rank(u, rank_of.get(u.org_id)) for u in units]
    compared = {u.org_id for u in ranked}
    per_member: dict[int, list[float]] = defaultdict(list)
    for unit_id, answers, correct in zip(scores.unit_id, scores.answers, scores.correct, strict=True):
        if unit_id in compared and answers:
            per_member[unit_id].append(correct / answers)
    return UnitComparison(
        parent_name=scope.org.name, units=units,
        answers_test=chi_square([(u.correct, u.answers - u.correct) for u in ranked]),
        members_test=kruskal([per_member[u.org_id] for u in ranked]),
    )


def _with_rank(u: UnitRow, rank: int | None) -> UnitRow:
    return replace(u, rank=rank)


def _competition_ranks(values: list[float]) -> list[int]:
    """1 for the highest; ties share a rank and the next rank is skipped (1, 2, 2, 4)."""
    return [1 + sum(1 for w in values if w > v) for v in values]


async def _sibling_rank(session: AsyncSession, org: Organization, parent: Organization | None, period: Period,
                        tz: ZoneInfo, min_group: int, *, folded: bool = False) -> SiblingRank | None:
    """`folded`: the working set was filled with the folds (report_folded lists them)."""
    if parent is None:
        return None
    siblings = Scope(parent, period, tz)
    # One statement over the answer tally (no working set for the parent): unit rows as `units`
    # gives them, member rows as `member_scores` (member, unit, rank, joined, answers, correct).
    rows = await run(session, queries.SIBLINGS_FOLDED if folded else queries.SIBLINGS, siblings)
    units = [(r[1], *r[3:]) for r in rows if r[0] == "unit"]
    members = [r for r in rows if r[0] == "member"]
    scores = Scores([int(r[1]) for r in members], [None] * len(members), [None] * len(members),
                    [int(r[6]) for r in members], [int(r[7]) for r in members])
    # Only the rank and the two tests are shown: the siblings' own intervals are not computed.
    comparison = _unit_comparison(siblings, units, scores, min_group, intervals=False)
    ranked = [u for u in comparison.units if u.rank is not None]
    mine = next((u for u in ranked if u.org_id == org.id), None)
    if mine is None or len(ranked) < 2:
        return None
    return SiblingRank(parent.name, mine.rank, len(ranked), comparison.answers_test,  # type: ignore[arg-type]
                       comparison.members_test)


async def _attributes(session: AsyncSession, scope: Scope, min_group: int) -> list[AttributeTable]:
    def label_rank(v: str | None) -> str:
        if v is None:
            return NOT_RECORDED
        level = int(v)
        return RANK_LABELS[level - 1] if 1 <= level <= len(RANK_LABELS) else f"级别{level}"

    specs = (  # key, title, label, rows partition the members (tags overlap)
        ("rank", "行政级别", label_rank, True),
        ("position", "职务", lambda v: v or NOT_RECORDED, True),
        ("party_age", "党龄", lambda v: PARTY_AGE_LABELS[int(v)] if v else NOT_RECORDED, True),
        ("tag", "人群标签", lambda v: str(v), False),
    )
    rows = await run(session, queries.BY_ATTRIBUTE, scope)
    tables = []
    for key, title, label, partition in specs:
        mine = [r[1:] for r in rows if r[0] == key]
        hidden = withheld_keys({r[0]: int(r[1]) for r in mine}, min_group, partition=partition)
        # Numeric groups in their order, "not recorded" last.
        mine.sort(key=lambda r: (r[0] is None, int(r[0]) if key in ("rank", "party_age") and r[0] else 0,
                                 r[0] or ""))
        shares = [_share(label(grp), int(people), int(answers), int(correct), grp in hidden, grp or "")
                  for grp, people, answers, correct in mine]
        if shares:
            tables.append(AttributeTable(key, title, shares))
    return tables


def _correlations(scores: Scores, min_group: int, year: int) -> list[CorrelationTable]:
    # One pass over the members: (x, share correct) pairs as two lists each, members with answers only.
    rank_x: list[float] = []
    rank_y: list[float] = []
    age_x: list[float] = []
    age_y: list[float] = []
    n_y = 0
    for rank, joined, answers, correct in zip(scores.rank_level, scores.joined_party_year, scores.answers,
                                              scores.correct, strict=True):
        if not answers:
            continue
        n_y += 1
        share = correct / answers
        if rank is not None:
            rank_x.append(float(rank))
            rank_y.append(share)
        if joined is not None:
            age_x.append(float(year - joined))
            age_y.append(share)
    n_rank = len(scores.rank_level) - scores.rank_level.count(None)
    n_age = len(scores.joined_party_year) - scores.joined_party_year.count(None)
    tables = [
        _correlation_table("行政级别", "个人答题正确率", n_rank, n_y, rank_x, rank_y, min_group,
                           primary="spearman", higher="行政级别较高"),
        _correlation_table("党龄", "个人答题正确率", n_age, n_y, age_x, age_y, min_group,
                           primary="pearson", higher="党龄较长"),
    ]
    return [t for t in tables if t.n_x and t.n_y]


def _correlation_table(x: str, y: str, n_x: int, n_y: int, xs: list[float], ys: list[float], min_group: int,
                       *, primary: str, higher: str) -> CorrelationTable:
    if len(xs) < max(min_group, 3):
        return CorrelationTable(x, y, n_x, n_y, None, withheld=True,
                                sentence=f"同时有{x}和答题记录的人数少于{max(min_group, 3)}人，不作相关分析。")
    res = correlation(xs, ys)
    if res is None:
        return CorrelationTable(x, y, n_x, n_y, None,
                                sentence=f"{x}或正确率在参与者之间没有差异，无法计算相关系数。")
    r, p, name = ((res.spearman_rho, res.spearman_p, "Spearman ρ") if primary == "spearman"
                  else (res.pearson_r, res.pearson_p, "Pearson r"))
    stats_text = (f"Pearson r = {r3(res.pearson_r)}，p {fmt_p(res.pearson_p)}；"
                  f"Spearman ρ = {r3(res.spearman_rho)}，p {fmt_p(res.spearman_p)}；N = {res.n}")
    if p < 0.05:
        strength = "弱" if abs(r) < 0.3 else "中等程度的" if abs(r) < 0.5 else "较强的"
        direction = "正相关" if r > 0 else "负相关"
        trend = "较高" if r > 0 else "较低"
        sentence = (f"{x}与{y}呈{strength}{direction}（以{name}为准；{stats_text}）："
                    f"{higher}的党员，答题正确率总体上{trend}。这只说明两者相伴变化，不说明因果关系。")
    else:
        sentence = f"未发现{x}与{y}之间有统计学意义上的相关（{stats_text}）。"
    return CorrelationTable(x, y, n_x, n_y, res, sentence=sentence)


async def _rounds(session: AsyncSession, scope: Scope, min_group: int, *, folded: bool = False,
                  folded_round: bool = False) -> list[RoundAnalysis]:
    """`folded`: finished rounds' marks from their folds (fold.py); `folded_round`: the period is
    one folded round, and the scope holds every answer."""
    rows = await run(session, queries.ROUNDS, scope, max_rounds=MAX_ROUNDS_ANALYSED)
    if not rows:
        return []
    cells: dict[int, dict[str, list[tuple[int, int, int]]]] = defaultdict(lambda: defaultdict(list))
    marks = (queries.ROUND_MARKS_FOLDED if folded else queries.ROUND_MARKS_OF_FOLDED if folded_round
             else queries.ROUND_MARKS)
    for round_id, item_id, mark, total, members in await run(session, marks, scope, max_rounds=MAX_ROUNDS_ANALYSED):
        cells[int(round_id)][item_id].append((int(mark), int(total), int(members)))
    order: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for round_id, item_id, stem in (await session.exec(
            select(RoundItem.round_id, RoundItem.item_id, BankItem.stem)
            .join(BankItem, col(BankItem.id) == col(RoundItem.item_id))
            .where(col(RoundItem.round_id).in_([int(r[0]) for r in rows]))
            .order_by(col(RoundItem.round_id), col(RoundItem.position)))).all():
        order[round_id].append((item_id, stem))
    out = []
    for round_id, title, opens_at, _n_items, pushed in rows:
        mine = cells.get(int(round_id), {})
        stems = dict(order[round_id])
        item_ids = [i for i, _ in order[round_id] if i in mine]
        respondents = sum(c[2] for c in mine[item_ids[0]]) if item_ids else 0
        label = title or f"第{round_id}轮"
        if respondents < max(min_group, 2):
            out.append(RoundAnalysis(int(round_id), label, opens_at, int(pushed), stems, None,
                                     note=f"全部题目均按时作答的人数少于{max(min_group, 2)}人，不作题目分析。"))
            continue
        result = item_analysis_from_counts(item_ids, mine)
        note = "" if len(item_ids) >= 3 else "题目少于3道，α系数不计算。"
        if len(item_ids) < 3:
            result = replace(result, alpha=None)
        out.append(RoundAnalysis(int(round_id), label, opens_at, int(pushed), stems, result, note=note))
    return out


async def _nonresponders(session: AsyncSession, scope: Scope) -> list[tuple[str, str, int]]:
    """Names: only called when the scope organisation or an ancestor switched the list on."""
    rows = await run(session, queries.NONRESPONDERS, scope)
    return [(name, org_name, int(missed)) for _id, name, org_name, missed in rows]
