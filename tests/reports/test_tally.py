"""The answer tally equals the aggregate of the raw answers, whichever path wrote them (SQLite and
PostgreSQL): answers through the service (on time, late, replayed), bulk loads with a recount,
the migration's backfill — and reports stay right when an item is retired afterwards."""

from __future__ import annotations

import json
from datetime import timedelta
from zoneinfo import ZoneInfo

from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import text

from bot.core.commands import SubmitAnswer
from bot.reports import queries
from bot.reports.period import Period, round_period
from bot.reports.report import full_report
from bot.reports.stats import Scope, drop_working_set, fill_working_set, run, summary_row
from bot.reports.tally import DEFINITION, ITEM_MISMATCHES, MISMATCHES
from bot.storage import migrate
from bot.storage.bulk import insert_ignore
from bot.storage.models import Answer
from tests.factories import build_org, open_test_round
from tests.reports import builders as b

TZ = ZoneInfo("Asia/Shanghai")
ITEMS = ["t-single-001", "t-judge-001", "t-multiple-001"]  # keys C, A, ACD


async def _tally(app) -> dict[tuple[int, int], tuple[int, int, int, int]]:  # type: ignore[no-untyped-def]
    async with app.db.session() as s:
        rows = (await s.exec(text(
            "SELECT member_id, round_id, on_time, on_time_correct, late, pushed FROM answertally"))).all()
    return {(m, r): (int(a), int(c), int(late), int(p)) for m, r, a, c, late, p in rows}


async def _mismatches(app) -> list:  # type: ignore[no-untyped-def]
    async with app.db.session() as s:
        return list((await s.exec(text(MISMATCHES))).all())


async def _item_mismatches(app) -> list:  # type: ignore[no-untyped-def]
    async with app.db.session() as s:
        return list((await s.exec(text(ITEM_MISMATCHES))).all())


async def _item_tally(app) -> dict[tuple[int, str, str], tuple[int, int]]:  # type: ignore[no-untyped-def]
    """The item tally summed over its shards."""
    async with app.db.session() as s:
        rows = (await s.exec(text("SELECT round_id, item_id, choice, SUM(answers), SUM(correct) FROM itemtally "
                                  "GROUP BY round_id, item_id, choice"))).all()
    return {(r, i, c): (int(a), int(k)) for r, i, c, a, k in rows}


async def _recounted(app) -> dict[tuple[int, int], tuple[int, int, int, int]]:  # type: ignore[no-untyped-def]
    async with app.db.session() as s:
        rows = (await s.exec(text(DEFINITION))).all()
    return {(m, r): (int(a), int(c), int(late), int(p)) for m, r, a, c, late, p in rows}


async def test_service_answers_keep_the_tally_equal_to_the_answers(app, clock):
    tree = await build_org(app)
    branch = tree.branches[0]
    m = tree.members[branch.id]
    rnd = await open_test_round(app, tree.root, ITEMS, days=7)

    async def say(member, choice: str, item: str, round_id: int | None = None) -> None:  # type: ignore[no-untyped-def]
        await app.service.handle(tree.senders[member.id], SubmitAnswer(choice, round_id or rnd.id, item))

    for member, choices in ((m[0], "C A ACD"), (m[1], "A A ACD"), (m[2], "C B AC"), (m[3], "C A ACD")):
        for item, choice in zip(ITEMS, choices.split(), strict=True):
            await say(member, choice, item)
    await say(m[3], "A", "t-single-001")  # replayed with another choice: the first answer stands
    await say(m[4], "C", "t-single-001")
    clock.advance(days=8)  # past the deadline: late from here on
    await say(m[4], "A", "t-judge-001")
    await say(m[5], "C", "t-single-001")
    later = await open_test_round(app, tree.root, ["t-judge-002"], days=7)
    await say(m[0], "B", "t-judge-002", later.id)  # right (key B)
    await say(m[1], "A", "t-judge-002", later.id)  # wrong

    # (on time, on time and right, late, pushed) per member and round, worked out from the lines
    # above: both rounds went to all 15 members of the tree (secretaries and the admin too).
    expected = {(p.id, r.id): (0, 0, 0, 1) for p in [*tree.all_members(), tree.admin] for r in (rnd, later)}
    expected |= {
        (m[0].id, rnd.id): (3, 3, 0, 1), (m[1].id, rnd.id): (3, 2, 0, 1), (m[2].id, rnd.id): (3, 1, 0, 1),
        (m[3].id, rnd.id): (3, 3, 0, 1), (m[4].id, rnd.id): (1, 1, 1, 1), (m[5].id, rnd.id): (0, 0, 1, 1),
        (m[0].id, later.id): (1, 1, 0, 1), (m[1].id, later.id): (1, 0, 0, 1),
    }
    assert len(expected) == 30
    assert await _tally(app) == expected
    assert await _recounted(app) == expected
    assert await _mismatches(app) == []
    # On-time answers per round, item and exact choice (answers, right), from the same lines:
    # late answers (m4 judge, m5 single) and the replay are not in it.
    assert await _item_tally(app) == {
        (rnd.id, "t-single-001", "C"): (4, 4), (rnd.id, "t-single-001", "A"): (1, 0),
        (rnd.id, "t-judge-001", "A"): (3, 3), (rnd.id, "t-judge-001", "B"): (1, 0),
        (rnd.id, "t-multiple-001", "ACD"): (3, 3), (rnd.id, "t-multiple-001", "AC"): (1, 0),
        (later.id, "t-judge-002", "B"): (1, 1), (later.id, "t-judge-002", "A"): (1, 0)}
    assert await _item_mismatches(app) == []

    # Retiring an item afterwards changes no tally row; the report subtracts its on-time answers.
    await b.retire(app, "t-judge-001")
    assert await _mismatches(app) == []
    async with app.db.session() as s:
        report = await full_report(s, org=branch, period=round_period(rnd.id), min_group=3, tz=TZ,
                                   now=clock())  # a floor of 3, so the 4 on the multiple item show
    # Valid = single + multiple: m0 2/2, m1 1/2, m2 1/2, m3 2/2, m4 1/1 → 7 of 9. Late: m4 judge, m5 single.
    # Retired: the four on-time judge answers (m0–m3). Returned: m0–m5; responded (valid): m0–m4.
    assert (report.valid_answers, report.correct_answers) == (9, 7)
    assert (report.late_answers, report.retired_answers) == (2, 4)
    assert (report.pushed, report.returned, report.responded, report.people) == (7, 6, 5, 5)
    assert {i.item_id: (i.answered, i.correct) for i in report.items} == {
        "t-single-001": (5, 4), "t-multiple-001": (4, 3)}


async def test_bulk_loads_recount_and_the_migration_backfills(app):
    branch = await b.org(app, "机关党委/汇总支部")
    ids = await b.members(app, branch, 12, key="tl")
    first = await b.open_round(app, branch, ITEMS)
    await b.answers(app, first, [(mid, item, (k + j) % 3 != 0) for k, mid in enumerate(ids[:10])
                                 for j, item in enumerate(ITEMS)])
    await b.answers(app, first, [(mid, "t-single-001", True) for mid in ids[10:]], late=True)
    await b.answers(app, first, [(ids[0], "t-single-001", False)])  # a repeat: ignored, recount unchanged
    assert await _mismatches(app) == [] and len(await _tally(app)) == 12  # one row per delivery
    assert await _item_mismatches(app) == [] and sum(a for a, _ in (await _item_tally(app)).values()) == 30

    # Answers written behind the tally's back (no recount) are caught by the check …
    second = await b.open_round(app, branch, ITEMS[:1], at=first.opens_at + timedelta(days=7))
    async with app.db.session() as s:
        await insert_ignore(s, Answer, [
            {"member_id": mid, "round_id": second.id, "item_id": ITEMS[0], "choice": "C", "correct": True,
             "late": False, "answered_at": second.opens_at, "channel": "console"} for mid in ids[:3]])
        await s.commit()
    # (each of the three rows is wrong both ways: the stored counts and the true ones)
    assert sorted((r[0], r[1]) for r in await _mismatches(app)) == sorted(
        (side, mid) for side in ('not in the definition', 'wrong or missing in answertally') for mid in ids[:3])
    assert [r[0] for r in await _item_mismatches(app)] != []
    # … and the migrations' backfills rebuild the tally from the answers and deliveries.
    # The tally revisions (0005 and every later one on its branch) off, then on again. Alembic's
    # "rev@-N" counts from the branch's current head, so N is counted from the shipped files.
    config = migrate.alembic_config(app.settings.database_url)
    script = ScriptDirectory.from_config(config)
    branch = next(chain for chain in ([r.revision for r in script.iterate_revisions(h, "base")]
                                      for h in script.get_heads()) if "0005_answer_tally" in chain)
    steps = branch.index("0005_answer_tally") + 1  # head first, down to and with 0005
    migrate._in_fresh_thread(command.downgrade, config, f"{branch[0]}@-{steps}")
    migrate.upgrade(app.settings.database_url)
    assert await _mismatches(app) == [] and await _item_mismatches(app) == []
    assert (await _item_tally(app))[(second.id, ITEMS[0], "C")] == (3, 3)
    assert len(await _tally(app)) == 24  # both rounds went to all 12


async def test_a_scope_holding_every_answer_reads_the_item_tally_and_reports_the_same(app):
    """A 党委 over its whole tree holds every on-time answer of its rounds, so its items, options,
    topics and item analysis come from the item tally; once someone outside it answers the same
    rounds it no longer does, takes the working-set path, and must report exactly the same."""
    root = await b.org(app, "机关党委")
    a = await b.members(app, await b.org(app, "机关党委/甲支部"), 6, key="ia")
    bb = await b.members(app, await b.org(app, "机关党委/乙支部"), 6, key="ib")
    start = app.service.clock()
    first = await b.open_round(app, root, ITEMS, at=start)
    second = await b.open_round(app, root, ["t-single-001", "t-judge-002"], at=start + timedelta(days=7))
    await b.answers(app, first, [(m, item, (k + j) % 3 != 1) for k, m in enumerate(a + bb[:3])
                                 for j, item in enumerate(ITEMS)])
    await b.answers(app, first, [(bb[5], "t-single-001", True)], late=True)
    await b.answers(app, second, [(m, "t-single-001", True) for m in a[:4]] + [(bb[0], "t-single-001", False)]
                    + [(m, "t-judge-002", k % 2 == 0) for k, m in enumerate(a)])
    await b.retire(app, "t-judge-001")
    period = Period(start - timedelta(hours=1), start + timedelta(days=30), "本期")
    now = start + timedelta(days=20)

    async def report_and_path() -> tuple[object, bool]:
        async with app.db.session() as s:
            await fill_working_set(s, Scope(root, period, TZ))
            covers = s.info["report_covers_all"]
            await drop_working_set(s)
            return await full_report(s, org=root, period=period, min_group=3, tz=TZ, now=now), covers

    by_tally, covers = await report_and_path()
    assert covers
    single = next(i for i in by_tally.items if i.item_id == "t-single-001")
    # Round 1: a0–a5, b0–b2 (9, right unless (k + 0) % 3 == 1: k = 1, 4, 7 → 6 right); round 2:
    # a0–a3 right, b0 wrong. 14 answers, 10 right, 9 people (a0–a3 and b0 answered it twice);
    # b5's late answer is not in it.
    assert (single.answered, single.correct, single.people) == (14, 10, 9)
    assert single.option_counts == {"B": 4, "C": 10}
    assert "t-judge-001" not in {i.item_id for i in by_tally.items}  # retired since
    assert by_tally.rounds and all(r.stats is not None for r in by_tally.rounds)

    outsider = await b.members(app, await b.org(app, "外单位党委/某支部"), 1, key="ix")
    await b.answers(app, first, [(outsider[0], "t-single-001", True), (outsider[0], "t-multiple-001", False)])
    by_answers, covers = await report_and_path()
    assert not covers
    assert by_answers == by_tally


async def test_previous_and_siblings_read_the_tally_as_the_working_set_sums_it(app):
    """`previous` (the comparison with the previous round or period) and `siblings` (a branch's
    rank) sum the answer tally in one statement each, taking answers to items retired since off
    per member; they must give what `summary`, `units` and `member_scores` give over a working set
    filled for that scope and period — with late answers, an item retired since (and a member whose
    only answer in a round was to it), and answers from outside the scope in the same rounds."""
    root = await b.org(app, "机关党委")
    branch = await b.org(app, "机关党委/甲支部")
    a = await b.members(app, branch, 6, key="pa")
    bb = await b.members(app, await b.org(app, "机关党委/乙支部"), 4, key="pb")
    outsider = await b.members(app, await b.org(app, "外单位党委/某支部"), 1, key="px")
    start = app.service.clock()
    first = await b.open_round(app, root, ITEMS, at=start)
    second = await b.open_round(app, root, ["t-judge-001", "t-judge-002"], at=start + timedelta(days=7))
    await b.answers(app, first, [(m, item, (k + j) % 3 != 1) for k, m in enumerate(a + bb[:2])
                                 for j, item in enumerate(ITEMS)])
    await b.answers(app, first, [(bb[3], "t-single-001", True), (a[0], "t-judge-002", True)], late=True)
    await b.answers(app, first, [(outsider[0], "t-single-001", True)])
    await b.answers(app, second, [(m, "t-judge-001", True) for m in a[:2] + bb[2:3]]
                    + [(m, "t-judge-002", k % 2 == 0) for k, m in enumerate(a)])
    await b.retire(app, "t-judge-001")
    periods = [round_period(first.id), round_period(second.id),
               Period(start - timedelta(hours=1), start + timedelta(days=30), "本期")]
    seen = []
    async with app.db.session() as s:
        for org in (root, branch):
            for period in periods:
                scope = Scope(org, period, TZ)
                (direct,) = await run(s, queries.PREVIOUS, scope)
                siblings = await run(s, queries.SIBLINGS, scope)
                await fill_working_set(s, scope, answers=False)
                row = await summary_row(s, scope)
                assert tuple(int(v) for v in direct) == (row.valid_answers, row.correct_answers, row.people)
                seen.append(tuple(int(v) for v in direct))
                units = [tuple(int(v) for v in (r[0], *r[2:])) for r in await run(s, queries.UNITS, scope)]
                assert [tuple(int(v) for v in (r[1], *r[4:])) for r in siblings if r[0] == "unit"] == units
                (scores,) = await run(s, queries.MEMBER_SCORES, scope)
                ids, unit_ids, _rank, _joined, answers, correct = (
                    json.loads(v) if isinstance(v, str) else list(v or ()) for v in scores)
                assert [(int(r[2]), int(r[1]), int(r[6]), int(r[7])) for r in siblings if r[0] == "member"] \
                    == list(zip(ids, unit_ids, answers, correct, strict=True))
        await drop_working_set(s)
    # 甲支部, round 1 by hand: a0–a5 answered 3 items each, t-judge-001 (j = 1) retired since →
    # 12 valid answers; right unless (k + j) % 3 == 1: j = 0 wrong for k = 1, 4, j = 2 for k = 2, 5
    # → 8 right; 6 people. a0's late answer and the outsider are not counted.
    assert seen[3] == (12, 8, 6)
    assert seen[5][2] == 6 and seen[2][2] == 8  # distinct people over both rounds
    # 党委, round 2: b2 answered only t-judge-001, retired since: no valid answer, not one of the
    # people (a0–a5 answered t-judge-002); a0 and a1's t-judge-001 answers are taken off.
    assert seen[1] == (6, 3, 6)


# What `weeks` computes, as it was first written: every figure counted from the member-rounds.
_WEEKS_DEFINITION = """SELECT w.week, COUNT(DISTINCT CASE WHEN mr.pushed = 1 THEN mr.round_id END) AS rounds,
       SUM(mr.pushed), SUM(CASE WHEN mr.answers > 0 THEN 1 ELSE 0 END), SUM(mr.answers), SUM(mr.correct),
       COUNT(DISTINCT CASE WHEN mr.answers > 0 THEN mr.member_id END),
       COUNT(DISTINCT CASE WHEN mr.pushed = 1 THEN mr.member_id END)
FROM report_member_round mr
JOIN (SELECT id AS round_id, {week} AS week FROM round
      WHERE id IN (SELECT round_id FROM report_member_round)) w ON w.round_id = mr.round_id
GROUP BY w.week
HAVING SUM(mr.pushed) > 0
ORDER BY w.week"""


# What `units` computes, as first written: COUNT(DISTINCT) over every member-round.
_UNITS_DEFINITION = queries._with(queries._UNITS) + """SELECT u.unit_id, u.unit_name, COALESCE(a.pushed, 0),
       COALESCE(a.responded, 0), COALESCE(a.answers, 0), COALESCE(a.correct, 0), COALESCE(a.people, 0),
       COALESCE(a.pushed_people, 0)
FROM units u
LEFT JOIN (
    SELECT unit_id, SUM(pushed) AS pushed, SUM(CASE WHEN answers > 0 THEN 1 ELSE 0 END) AS responded,
           SUM(answers) AS answers, SUM(correct) AS correct,
           COUNT(DISTINCT CASE WHEN answers > 0 THEN member_id END) AS people,
           COUNT(DISTINCT CASE WHEN pushed = 1 THEN member_id END) AS pushed_people
    FROM report_member_round GROUP BY unit_id
) a ON a.unit_id = u.unit_id
ORDER BY u.unit_id"""


def _keyed_ints(row) -> tuple:  # type: ignore[no-untyped-def]
    return (str(row[0]), *(int(v) for v in row[1:]))


async def test_weeks_and_units_equal_their_plain_count_distinct_definitions(app):
    """`weeks` sums per round and counts distinct members only where a week holds several rounds,
    `units` sums per member before it sums per unit: each must equal the plain COUNT(DISTINCT)
    over the member-rounds it replaced — with two overlapping
    rounds in one week (a member answering both, one answering only the second, one pushed in both
    who never answers), a week with one round, and a round that reached only part of the scope."""
    root = await b.org(app, "机关党委")
    branch = await b.org(app, "机关党委/甲支部")
    a = await b.members(app, branch, 4, key="wa")
    bb = await b.members(app, await b.org(app, "机关党委/乙支部"), 3, key="wb")
    monday = app.service.clock().astimezone(TZ).replace(hour=9, minute=0, second=0, microsecond=0)
    monday -= timedelta(days=monday.weekday())
    first = await b.open_round(app, root, ITEMS, at=monday)
    second = await b.open_round(app, root, ["t-judge-002"], at=monday + timedelta(days=2))
    branch_only = await b.open_round(app, branch, ["t-single-001"], at=monday + timedelta(days=7))
    await b.answers(app, first, [(m, item, k % 2 == 0) for k, m in enumerate(a[:3] + bb[:1]) for item in ITEMS])
    await b.answers(app, second, [(m, "t-judge-002", True) for m in a[:1] + a[3:] + bb[1:2]])
    await b.answers(app, branch_only, [(m, "t-single-001", m != a[1]) for m in a[:2]])
    period = Period(monday - timedelta(days=1), monday + timedelta(days=14), "本期")
    async with app.db.session() as s:
        reference = _WEEKS_DEFINITION.format(week=queries.render(queries.WEEKS, app.db.dialect).split(
            "SELECT id AS round_id, ")[1].split(" AS week")[0])
        for org in (root, branch):
            scope = Scope(org, period, TZ)
            await fill_working_set(s, scope, answers=False)
            weeks = [_keyed_ints(r) for r in await run(s, queries.WEEKS, scope)]
            expected = [_keyed_ints(r) for r in (await s.exec(text(reference), params=scope.params())).all()]
            assert weeks == expected
            units = [_keyed_ints(r[:1] + r[2:]) for r in await run(s, queries.UNITS, scope)]
            assert units == [_keyed_ints(r[:1] + r[2:]) for r in (await s.exec(text(_UNITS_DEFINITION),
                                                                              params=scope.params())).all()]
            assert any(u[-1] for u in units)
            if org is root:
                # Week 1: two rounds to 7 members; a0–a2, b0 answered the first, a0, a3, b1 the
                # second → 6 distinct people (a0 in both), 7 pushed people (b2 never answered); right: a0, a2
                # (3 each) and the 3 second-round answers.
                assert [w[1:] for w in weeks] == [(2, 14, 7, 15, 9, 6, 7), (1, 4, 2, 2, 1, 2, 4)]
        await drop_working_set(s)
