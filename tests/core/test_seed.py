"""The benchmark data generator writes a consistent database on both backends."""

from __future__ import annotations

from sqlmodel import func, select

from bot.core.orgs import find_org
from bot.dev.seed import seed
from bot.reports.period import Period
from bot.reports.stats import branch_summary
from bot.storage.models import Answer, Delivery, Member, Organization


async def test_seed_small_database(app):
    report = await seed(app.db, members=200, answers=2400, branches=10, rounds=5, items_per_round=3)
    assert (report.members, report.rounds, report.deliveries) == (200, 5, 1000)
    assert 1900 < report.answers < 2900  # about 80% of 200 x 5 x 3
    async with app.db.session() as s:
        assert (await s.exec(select(func.count()).select_from(Answer))).one() == report.answers
        assert (await s.exec(select(func.count()).select_from(Delivery))).one() == 1000
        assert (await s.exec(select(func.count()).select_from(Organization))).one() == report.orgs
        root = await find_org(s, "机关党委")
        from datetime import UTC, datetime

        summary = await branch_summary(s, org=root, period=Period(datetime(2000, 1, 1, tzinfo=UTC),
                                                                  datetime(2100, 1, 1, tzinfo=UTC), "全部"),
                                       min_group=5)
        # A few member-rounds answered after the deadline (补答): counted apart.
        assert summary.valid_answers + summary.late_answers == report.answers and summary.pushed == 1000
        assert 0 < summary.late_answers < report.answers // 10
        # New rows after seeding get fresh ids (sequences moved past the explicit ids).
        s.add(Member(name="新人", org_id=root.id))
        await s.commit()
