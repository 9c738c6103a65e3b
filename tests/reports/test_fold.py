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
from bot.reports.period import EPOCH, Period, round_period
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


async def _working_set(app, org, period: Period, *, folded: bool) -> tuple[list, list]:  # type: ignore[no-untyped-def]
    """report_round and report_member as filled for `org` and `period`, with or without the folds."""
    async with app.db.session() as s:
        await fill_working_set(s, Scope(org, period, TZ), folded=folded)
        rounds = _ints((await s.exec(text("SELECT * FROM report_round ORDER BY round_id"))).all())
        members = _ints((await s.exec(text("SELECT * FROM report_member ORDER BY member_id"))).all())
        await drop_working_set(s)
    return rounds, members


async def test_folded_totals_give_what_the_tally_gives(app):
    """Per-round and per-member totals summed from the folds equal those summed from the tally,
    for a 党委, a 党总支, a branch and a branch beside it, over periods that start and end between
    rounds: with a long round that holds back the rounds opened after it, late answers before and
    after the fold, a member who answered only late, a retired item and a member who moves."""
    now = app.service.clock()
    root = await b.org(app, "机关党委")
    total = await b.org(app, "机关党委/一总支")
    a1, a2 = await b.org(app, "机关党委/一总支/甲支部"), await b.org(app, "机关党委/一总支/乙支部")
    other = await b.org(app, "机关党委/丙支部")
    ma1, ma2 = await b.members(app, a1, 6, key="fa1"), await b.members(app, a2, 5, key="fa2")
    mo, mr = await b.members(app, other, 5, key="fo"), await b.members(app, root, 1, key="fr")
    items = ["t-single-001", "t-judge-001", "t-multiple-001"]
    day = timedelta(days=1)
    r1 = await b.open_round(app, root, items, at=now - 40 * day)
    r2 = await b.open_round(app, total, ["t-single-002", "t-judge-002"], at=now - 37 * day, days=17)  # long
    r3 = await b.open_round(app, root, ["t-single-002", "t-judge-001"], at=now - 33 * day)
    r4 = await b.open_round(app, root, items, at=now - 26 * day)
    r5 = await b.open_round(app, root, ["t-single-001"], at=now - 5 * day)  # open
    everyone = ma1 + ma2 + mo + mr
    await b.answers(app, r1, [(m, i, (m + k) % 3 > 0) for m in everyone[:14] for k, i in enumerate(items)])
    await b.answers(app, r1, [(everyone[14], "t-single-001", True)], late=True)  # answered only late
    await b.answers(app, r2, [(m, i, m % 2 == 0) for m in ma1[:4] + ma2[:3] for i in ("t-single-002", "t-judge-002")])
    await b.answers(app, r3, [(m, "t-single-002", True) for m in everyone[2:12]]
                    + [(m, "t-judge-001", m % 2 == 1) for m in everyone[4:16]])
    await b.answers(app, r4, [(m, i, (m + k) % 4 > 0) for m in everyone[::2] for k, i in enumerate(items)])
    await b.answers(app, r4, [(m, items[0], True) for m in everyone[1::4]])  # incomplete: not in the item analysis
    await b.answers(app, r5, [(m, "t-single-001", m % 3 == 0) for m in everyone[5:]])

    scopes = (root, total, a1, other)
    periods = (Period(EPOCH, FAR, "全部"), Period(now - 34 * day, FAR, "第三轮起"),
               Period(EPOCH, now - 30 * day, "前三轮"), Period(now - 38 * day, now - 20 * day, "中间"))

    async def same_either_way(expect_folded: list[int]) -> None:
        async with app.db.session() as s:
            assert await fold.trusted(s)
            folded = sorted(r for (r,) in (await s.exec(text("SELECT round_id FROM foldedround"))).all())
        assert folded == sorted(expect_folded)
        for scope in scopes:
            for period in periods:
                assert await _working_set(app, scope, period, folded=True) == \
                    await _working_set(app, scope, period, folded=False), (scope.name, period.label)
            # Whole reports: the long period (sibling rank from the folds), periods whose previous
            # period (r1; r1–r3) is summed from the folds, and one round (the previous round from
            # its folded totals).
            for period in (periods[0], periods[3], Period(now - 30 * day, now + 10 * day, "近期"),
                           round_period(r4.id)):
                async with app.db.session() as s:
                    with_folds = await full_report(s, org=scope, period=period, min_group=1, tz=TZ, now=now)
                    without = await full_report(s, org=scope, period=period, min_group=1, tz=TZ, now=now,
                                                use_folds=False)
                assert with_folds == without, (scope.name, period.label)
                assert (with_folds.previous is not None) == (period is not periods[0]), period.label
                if scope is root:  # the item analysis of the folded round r4 alone, from its folds
                    assert period is periods[0] or with_folds.rounds[0].stats is not None

    # Twenty-four days ago the long round r2 was still open: r1 folds, r3 (finished) waits for it.
    assert await fold.fold_finished_rounds(app.db, now - 24 * day) == 1
    await same_either_way([r1.id])
    assert await fold.fold_finished_rounds(app.db, now) == 3  # r2, r3, r4; r5 is open
    await same_either_way([r1.id, r2.id, r3.id, r4.id])
    # Late answers after the fold: read from the tally (late, and 回收 for a member-round answered only late).
    await b.answers(app, r3, [(everyone[0], "t-judge-001", True), (everyone[16], "t-single-002", False)], late=True)
    await same_either_way([r1.id, r2.id, r3.id, r4.id])
    late = await _working_set(app, root, periods[0], folded=True)
    assert {r[0]: r[6] for r in late[0]}[r3.id] == 2

    # A retired item voids the folds until they are made again.
    await b.retire(app, "t-judge-001")
    async with app.db.session() as s:
        assert not await fold.trusted(s)
    assert await fold.fold_finished_rounds(app.db, now) == 4
    await same_either_way([r1.id, r2.id, r3.id, r4.id])

    # So does a member who moves (the trigger on member.org_id), on any code path.
    async with app.db.session() as s:
        await s.exec(text("UPDATE member SET org_id = :o WHERE id = :m"), params={"o": other.id, "m": ma1[0]})
        await s.commit()
        assert not await fold.trusted(s)
    async with app.db.session() as s:
        await s.exec(text("UPDATE member SET org_id = org_id WHERE id = :m"), params={"m": ma1[1]})
        await s.commit()  # (not a move: nothing to void)
    assert await fold.fold_finished_rounds(app.db, now) == 4
    async with app.db.session() as s:
        await s.exec(text("UPDATE member SET name = 'x' WHERE id = :m"), params={"m": ma1[2]})
        await s.commit()
        assert await fold.trusted(s)
    await same_either_way([r1.id, r2.id, r3.id, r4.id])
