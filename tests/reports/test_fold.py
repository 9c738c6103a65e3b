"""Folded rounds (bot/reports/fold.py): topic people and item-analysis input taken from finished
rounds folded once must be what the answers give, on SQLite and PostgreSQL — for the whole history
and for a period that starts later, with an open round not folded, late answers, a topic with two
items and a member answering both; after an item is retired the answers are read until the rounds
are folded again; and the report made with the folds is the report made without them."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import text

from bot.reports import fold, queries
from bot.reports.period import EPOCH, Period
from bot.reports.report import full_report
from bot.reports.stats import Scope, covers_all, drop_working_set, fill_working_set, run
from bot.storage.bulk import insert_ignore
from bot.storage.db import Database
from bot.storage.models import ItemTopic
from tests.reports import builders as b

TZ = ZoneInfo("Asia/Shanghai")
FAR = EPOCH.replace(year=9999)


def _ints(rows) -> list[tuple]:  # type: ignore[no-untyped-def]
    return [tuple(v if isinstance(v, str) else int(v) for v in r) for r in rows]


async def _both_ways(app, period: Period) -> tuple[list, list, list, list, bool]:  # type: ignore[no-untyped-def]
    """(topics from the answers, from the reach, round marks from the answers, from the folds,
    whether the folds are trusted)."""
    root = await b.org(app, "机关党委")
    rounds = {"max_rounds": 12}
    async with app.db.session() as s:
        scope = Scope(root, period, TZ)
        await fill_working_set(s, scope)
        assert covers_all(s)
        plain = (_ints(await run(s, queries.TOPICS_ALL, scope)),
                 _ints(await run(s, queries.ROUND_MARKS_ALL, scope, **rounds)))
        trusted = await fold.trusted(s)
        folded: tuple[list, list] = ([], [])
        if trusted:
            await fill_working_set(s, scope, folded=True)
            assert covers_all(s)
            folded = (_ints(await run(s, queries.TOPICS_REACHED, scope)),
                      _ints(await run(s, queries.ROUND_MARKS_FOLDED, scope, **rounds)))
        await drop_working_set(s)
    return plain[0], folded[0], plain[1], folded[1], trusted


async def _world(app):  # type: ignore[no-untyped-def]
    """Three weekly rounds to two branches; the first two finished, the third open."""
    root = await b.org(app, "机关党委")
    a = await b.members(app, await b.org(app, "机关党委/甲支部"), 4, key="ra")
    c = await b.members(app, await b.org(app, "机关党委/乙支部"), 3, key="rc")
    async with app.db.session() as s:  # four_styles gets a second item
        await insert_ignore(s, ItemTopic, [{"item_id": "t-single-002", "topic": "four_styles"}])
        await s.commit()
    start = app.service.clock() - timedelta(days=16)
    r1 = await b.open_round(app, root, ["t-single-001", "t-judge-001", "t-multiple-001"], at=start)
    r2 = await b.open_round(app, root, ["t-single-002", "t-judge-002"], at=start + timedelta(days=7))
    r3 = await b.open_round(app, root, ["t-single-001", "t-judge-002"], at=start + timedelta(days=14))
    await b.answers(app, r1, [(m, i, k % 2 == 0) for k, m in enumerate(a[:3] + c[:1])
                              for i in ("t-single-001", "t-judge-001", "t-multiple-001")])
    await b.answers(app, r1, [(a[3], "t-single-001", True)], late=True)  # late: reaches nothing
    await b.answers(app, r2, [(m, i, True) for m in a[:1] + c for i in ("t-single-002", "t-judge-002")])
    await b.answers(app, r2, [(a[1], "t-single-002", False)])  # one of two: not in the item analysis
    await b.answers(app, r3, [(m, "t-single-001", True) for m in a[2:] + c[2:]])
    return start, (r1, r2, r3)


async def test_folded_rounds_give_what_the_answers_give(app):
    start, rounds = await _world(app)
    now = app.service.clock()
    everything = Period(EPOCH, FAR, "全部")
    later = Period(start + timedelta(days=3), FAR, "第二轮起")

    *_, trusted = await _both_ways(app, everything)
    assert not trusted  # never folded: reports read the answers
    assert await fold.fold_finished_rounds(app.db, now, limit=1) == 1
    assert await fold.fold_finished_rounds(app.db, now) == 1  # the open third round waits
    assert await fold.fold_finished_rounds(app.db, now) == 0
    async with app.db.session() as s:
        folded = sorted(r for (r,) in (await s.exec(text("SELECT round_id FROM foldedround"))).all())
    assert folded == [rounds[0].id, rounds[1].id]

    for period in (everything, later):
        topics, reached, marks, folded_marks, trusted = await _both_ways(app, period)
        assert trusted and reached == topics and folded_marks == marks
    topics, _, marks, _, _ = await _both_ways(app, everything)
    people = {r[0]: r[4] for r in topics}
    # four_styles: a0–a2 and c0 (round 1, t-single-001), a0 and c0–c2 (round 2, t-single-002), a2,
    # a3 and c2 (round 3, open) → a0–a3, c0–c2 = 7 (a3's round-1 answer was late).
    assert people["four_styles"] == 7 and people["gifts_money"] == 4 and people["official_reception"] == 4
    # Round 1: a0–a2 and c0 answered all three items (right when k is even: a0, a2) → per item
    # 2 members with mark 1 and total 3, 2 with mark 0 and total 0.
    items = ("t-judge-001", "t-multiple-001", "t-single-001")
    assert [m[1:] for m in marks if m[0] == rounds[0].id] == [
        (i, mark, total, 2) for i in items for mark, total in ((0, 0), (1, 3))]
    later_people = {r[0]: r[4] for r in (await _both_ways(app, later))[0]}
    assert later_people["four_styles"] == 7 and "gifts_money" not in later_people

    # Retiring an item changes what counts: the folds are not trusted until made again.
    await b.retire(app, "t-single-002")
    *_, trusted = await _both_ways(app, everything)
    assert not trusted
    assert await fold.fold_finished_rounds(app.db, now) == 2  # started over
    topics, reached, marks, folded_marks, trusted = await _both_ways(app, everything)
    assert trusted and reached == topics and folded_marks == marks
    assert {r[0]: r[4] for r in topics}["four_styles"] == 6  # c1 answered four_styles only by t-single-002

    # The report made with the folds is the report made without them.
    root = await b.org(app, "机关党委")
    async with app.db.session() as s:
        with_folds = await full_report(s, org=root, period=everything, min_group=1, tz=TZ, now=now)
        without = await full_report(s, org=root, period=everything, min_group=1, tz=TZ, now=now, use_folds=False)
    assert with_folds == without and with_folds.rounds and with_folds.topics


async def test_two_processes_folding_at_once_fold_each_round_once(app):
    """Replicas tick at the same time: each finished round is folded by one of them, the other
    skips it or stops, nothing fails, and the folds are what one process alone makes."""
    await _world(app)
    now = app.service.clock()
    other = Database(app.db.url)
    try:
        done = await asyncio.gather(fold.fold_finished_rounds(app.db, now), fold.fold_finished_rounds(other, now))
    finally:
        await other.dispose()
    assert sum(done) == 2 and await fold.fold_finished_rounds(app.db, now) == 0
    topics, reached, marks, folded_marks, trusted = await _both_ways(app, Period(EPOCH, FAR, "全部"))
    assert trusted and reached == topics and folded_marks == marks
