"""Reports on fixed datasets whose right answers were worked out independently (SQLite and PostgreSQL).

Expected numbers are hard-coded; where they come from is written next to them.
"""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.channels.text import render_summary
from bot.reports.document import build_document
from bot.reports.export import to_text
from bot.reports.period import Period, round_period
from bot.reports.report import full_report
from bot.reports.stats import branch_summary
from tests.reports import builders as b

TZ = ZoneInfo("Asia/Shanghai")


def _period(app, days: int = 1) -> Period:
    now = app.service.clock()
    return Period(now - timedelta(hours=1), now + timedelta(days=days), "本期")


async def test_531_valid_answers_93_4_percent_with_wilson_interval(app):
    """Seed 000: "在531份有效回答中，正确答案比例为93.4%".

    Wilson 95% by hand: p = 496/531 = 0.934087, z = 1.959964, n = 531;
    centre = (p + z²/2n)/(1 + z²/n) = 0.930969, half-width = z/(1 + z²/n)·√(p(1−p)/n + z²/4n²) = 0.021259
    → [0.909710, 0.952228] = [91.0%, 95.2%] (also in /work/shared/reference/facts.md).
    Late answers and answers to a retired item are in the database but must not count.
    """
    branch = await b.org(app, "机关党委/调研支部")
    ids = await b.members(app, branch, 540, key="m")
    rnd = await b.open_round(app, branch, ["t-single-001", "t-single-002", "t-judge-001"])
    on_time = [(m, "t-single-001", k < 496) for k, m in enumerate(ids[:531])]
    await b.answers(app, rnd, on_time)
    await b.answers(app, rnd, [(m, "t-single-002", True) for m in ids[:7]], late=True)
    await b.answers(app, rnd, [(m, "t-judge-001", True) for m in ids[:4]])
    await b.retire(app, "t-judge-001")
    async with app.db.session() as s:
        report = await full_report(s, org=branch, period=_period(app), min_group=5, tz=TZ, now=app.service.clock())
    assert (report.valid_answers, report.correct_answers) == (531, 496)
    assert (report.late_answers, report.retired_answers) == (7, 4)
    assert report.pushed == 540 and report.people == 531
    assert report.accuracy == pytest.approx(0.934087, abs=1e-6)
    assert report.ci == pytest.approx((0.909710, 0.952228), abs=1e-6)
    text = render_summary(report)
    assert "在531份有效回答中，正确答案比例为93.4%（95%置信区间91.0%–95.2%）。" in text
    assert "逾期作答 7 份、已停用题目的作答 4 份，未计入统计" in text
    (item,) = report.items
    assert (item.item_id, item.answered, item.correct, item.people) == ("t-single-001", 531, 496, 531)
    assert item.option_counts == {"B": 35, "C": 496}  # the 35 wrong answers chose B


async def test_seed_001_response_rates(app):
    """Seed 001: 发放260, 回收242, 有效239 → 回收率 242/260 = 93.08%, 有效比例 239/242 = 98.76%."""
    branch = await b.org(app, "区直机关工委/问卷支部")
    ids = await b.members(app, branch, 260, key="q")
    rnd = await b.open_round(app, branch, ["t-single-001"])
    await b.answers(app, rnd, [(m, "t-single-001", True) for m in ids[:239]])
    await b.answers(app, rnd, [(m, "t-single-001", True) for m in ids[239:242]], late=True)
    async with app.db.session() as s:
        report = await full_report(s, org=branch, period=round_period(rnd.id), min_group=5, tz=TZ)
    assert (report.pushed, report.returned, report.responded) == (260, 242, 239)
    assert report.return_rate == pytest.approx(0.930769, abs=1e-6)
    assert report.valid_rate == pytest.approx(0.987603, abs=1e-6)
    text = to_text(build_document(report, TZ, with_charts=False))
    assert "推送学习题260人次，回收242人次，回收率93.08%；其中按时作答的有效239人次，有效比例98.76%" in text


async def test_bands_weakest_items_and_previous_period(app, clock):
    """Five items at 100%, 95%, 90%, 85%, 70% of 20 → "5个问题中有4个…80%以上，有3个问题在90%以上，
    有1个问题在97%以上"; the week before had 10 of 20 right (50%), so the trend is +(88−50) = 38.0 points."""
    branch = await b.org(app, "机关党委/第九支部")
    ids = await b.members(app, branch, 20, key="w")
    prior = await b.open_round(app, branch, ["t-single-003"], at=clock() - timedelta(days=7))
    await b.answers(app, prior, [(m, "t-single-003", k < 10) for k, m in enumerate(ids)])
    items = ["t-single-001", "t-single-002", "t-judge-001", "t-judge-002", "t-multiple-001"]
    rnd = await b.open_round(app, branch, items)
    right = dict(zip(items, (20, 19, 18, 17, 14), strict=True))
    await b.answers(app, rnd, [(m, i, k < right[i]) for i in items for k, m in enumerate(ids)])
    week = Period(clock() - timedelta(hours=1), clock() + timedelta(days=7) - timedelta(hours=1), "本周")
    async with app.db.session() as s:
        report = await full_report(s, org=branch, period=week, min_group=5, tz=TZ)
    assert (report.valid_answers, report.correct_answers) == (100, 88)
    assert [i.item_id for i in report.items][:2] == ["t-multiple-001", "t-judge-002"]  # weakest first
    assert report.previous is not None and (report.previous.answers, report.previous.correct) == (20, 10)
    text = render_summary(report)
    assert "5个问题中有4个回答准确率在80%以上，有3个问题在90%以上，有1个问题在97%以上。" in text
    assert "相比，上升38.0个百分点" in text  # 88% now vs 50% the week before


async def test_branch_summary_keeps_its_short_contract(app):
    """The short summary older callers use: same counts, Wilson interval filled in."""
    branch = await b.org(app, "机关党委/第八支部")
    ids = await b.members(app, branch, 10, key="s")
    rnd = await b.open_round(app, branch, ["t-single-002"])
    await b.answers(app, rnd, [(m, "t-single-002", k < 8) for k, m in enumerate(ids)])
    async with app.db.session() as s:
        summary = await branch_summary(s, org=branch, period=round_period(rnd.id), min_group=5)
    assert (summary.valid_answers, summary.correct_answers, summary.responded, summary.pushed) == (10, 8, 10, 10)
    # Wilson 8/10 by hand: centre 0.7167, half-width 0.2266 → [0.490, 0.943].
    assert summary.ci == pytest.approx((0.4902, 0.9433), abs=1e-4)
