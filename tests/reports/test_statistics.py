"""Item analysis, correlation and unit comparison against values worked out by hand.

The same fixtures run twice: on the analysis functions directly, and through the database
(SQLite and PostgreSQL) to check the SQL feeds them the right numbers.
"""

from __future__ import annotations

from collections import Counter
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from bot.reports.analysis import (
    chi_square,
    correlation,
    item_analysis,
    item_analysis_from_counts,
    kruskal,
    wilson,
    withheld_keys,
)
from bot.reports.period import round_period
from bot.reports.report import full_report, in_member_order
from tests.reports import builders as b

TZ = ZoneInfo("Asia/Shanghai")

# --- item analysis --------------------------------------------------------------------------------

# 8 members x 5 items (1 = right). Totals per member: 4 5 3 3 4 2 2 4.
MATRIX = [
    [1, 1, 1, 0, 1],
    [1, 1, 1, 1, 1],
    [1, 1, 0, 0, 1],
    [1, 0, 1, 0, 1],
    [1, 1, 0, 1, 1],
    [0, 0, 0, 1, 1],
    [1, 0, 0, 0, 1],
    [1, 1, 1, 0, 1],
]
ITEMS = ["t-single-001", "t-single-002", "t-judge-001", "t-judge-002", "t-multiple-001"]

# Worked by hand with exact fractions (sample covariances, divisor 7):
# item 1: x = 11111011, rest = 3,4,2,2,3,2,1,3 (mean 5/2). Cov = [7·(1/8)·(Σrest|x=1 − 7·5/2) + (−7/8)(2 − 5/2)]/7
#   = [(1/8)(1/2) + 7/16]/7 = 1/14. V(x) = 1/8, V(rest) = 6/7 → r = (1/14)/√(1/8 · 6/7) = 0.218218.
#   Sorted alike, Cov_max = 3/14 → efficiency = (1/14)/(3/14) = 1/3.
# item 2: Cov = 5/28, r = 0.487950, Cov_max = 9/28 → 5/9.   item 3: Cov = 1/14, r = 0.160128, Cov_max = 5/14 → 1/5.
# item 4: Cov = −1/7, r = −0.258199, Cov_max = 3/7 → −1/3.  item 5: everyone right: r and efficiency undefined.
# Cronbach α = 5/4 · (1 − ΣV(x_i)/V(X)) = 5/4 · (1 − (53/56)/(9/8)) = 25/126 = 0.198413.
EXPECTED = {  # facility %, discrimination index, discriminative efficiency %, flags
    "t-single-001": (87.5, 21.8218, 100 / 3, ()),
    "t-single-002": (62.5, 48.7950, 500 / 9, ()),
    "t-judge-001": (50.0, 16.0128, 20.0, ()),
    "t-judge-002": (37.5, -25.8199, -100 / 3, ("区分效率低于15%", "区分度为负")),
    "t-multiple-001": (100.0, None, None, ("难度极端",)),
}
ALPHA = 25 / 126


def _check(stats) -> None:  # type: ignore[no-untyped-def]
    assert stats.respondents == 8
    assert stats.alpha == pytest.approx(ALPHA, abs=1e-9)
    got = {a.item_id: a for a in stats.items}
    for item_id, (facility, discrimination, efficiency, flags) in EXPECTED.items():
        a = got[item_id]
        assert a.facility == pytest.approx(facility)
        if discrimination is None:
            assert a.discrimination is None and a.efficiency is None
        else:
            assert a.discrimination == pytest.approx(discrimination, abs=1e-4)
            assert a.efficiency == pytest.approx(efficiency, abs=1e-9)
        assert a.flags == flags


def test_item_analysis_matches_hand_worked_values():
    _check(item_analysis(ITEMS, np.array(MATRIX)))


def test_item_analysis_from_mark_and_total_counts_matches_too():
    """The shape the round_marks query returns: per item, (mark, member's total, members) cells."""
    totals = [sum(row) for row in MATRIX]
    counts = {item: [(mark, total, n) for (mark, total), n in
                     sorted(Counter((row[j], t) for row, t in zip(MATRIX, totals, strict=True)).items())]
              for j, item in enumerate(ITEMS)}
    assert counts["t-single-001"] == [(0, 2, 1), (1, 2, 1), (1, 3, 2), (1, 4, 3), (1, 5, 1)]
    _check(item_analysis_from_counts(ITEMS, counts))
    with pytest.raises(ValueError):  # cells of different respondents cannot be one round
        item_analysis_from_counts(ITEMS[:2], {ITEMS[0]: [(1, 2, 3)], ITEMS[1]: [(1, 2, 4)]})


async def test_item_analysis_through_the_database(app):
    """Only first, on-time answers of members who answered every current item count."""
    branch = await b.org(app, "机关党委/题目分析支部")
    ids = await b.members(app, branch, 10, key="ia")
    rnd = await b.open_round(app, branch, ITEMS)
    await b.answers(app, rnd, [(ids[k], item, bool(MATRIX[k][j])) for k in range(8) for j, item in enumerate(ITEMS)])
    # Member 9 skipped an item (not a finished attempt); member 10 answered one item late.
    await b.answers(app, rnd, [(ids[8], item, True) for item in ITEMS[:4]])
    await b.answers(app, rnd, [(ids[9], item, False) for item in ITEMS[:4]])
    await b.answers(app, rnd, [(ids[9], ITEMS[4], False)], late=True)
    async with app.db.session() as s:
        report = await full_report(s, org=branch, period=round_period(rnd.id), min_group=5, tz=TZ)
    (analysis,) = report.rounds
    assert analysis.round_id == rnd.id and analysis.pushed == 10
    _check(analysis.stats)


async def test_item_analysis_withheld_below_the_floor(app):
    branch = await b.org(app, "机关党委/小支部")
    ids = await b.members(app, branch, 6, key="few")
    rnd = await b.open_round(app, branch, ITEMS[:3])
    await b.answers(app, rnd, [(m, i, True) for m in ids[:4] for i in ITEMS[:3]])  # 4 complete
    await b.answers(app, rnd, [(ids[4], ITEMS[0], False)])  # a fifth person, incomplete
    async with app.db.session() as s:
        report = await full_report(s, org=branch, period=round_period(rnd.id), min_group=5, tz=TZ)
    assert not report.withheld  # 5 people answered
    (analysis,) = report.rounds
    assert analysis.stats is None and "少于5人" in analysis.note


# --- correlation ---------------------------------------------------------------------------------

RANKS = [1, 2, 3, 4, 5, 6]
RIGHT_OF_5 = [1, 2, 2, 4, 3, 5]
# Worked by hand: x̄ = 3.5, ȳ = 17/30 (shares c/5). Sxy = 5/2, Sxx = 35/2, Syy = 13/30
#   → r = (5/2)/√(35/2 · 13/30) = 0.907841; t = r√(4/(1−r²)) = 4.330127, and with 4 df the closed form
#   F(t) = 1/2 + (3/8)·(t/√(1+t²/4))·(1 − t²/(12(1+t²/4))) gives p = 2(1 − F(t)) = 0.012348.
# Spearman: ranks of y = 1, 2.5, 2.5, 5, 4, 6 → ρ = 0.927634, t = 4.967363 → p = 0.007666.
PEARSON = (0.907841, 0.012348)
SPEARMAN = (0.927634, 0.007666)


def test_correlation_matches_hand_worked_values():
    res = correlation(RANKS, [c / 5 for c in RIGHT_OF_5])
    assert res is not None and res.n == 6
    assert (res.pearson_r, res.pearson_p) == pytest.approx(PEARSON, abs=1e-6)
    assert (res.spearman_rho, res.spearman_p) == pytest.approx(SPEARMAN, abs=1e-6)
    assert correlation([1, 1, 1, 1], [0.1, 0.2, 0.3, 0.4]) is None  # no variation: no coefficient


async def test_rank_correlation_through_the_database(app):
    """行政级别 1…6, each member answering 5 items with 1, 2, 2, 4, 3, 5 right; a seventh member
    with a recorded rank was pushed but never answered (counts in N of 行政级别 only)."""
    branch = await b.org(app, "机关党委/相关支部")
    ids = await b.members(app, branch, 7, key="cr", attrs=lambda i: {"rank_level": [1, 2, 3, 4, 5, 6, 3][i]})
    rnd = await b.open_round(app, branch, ITEMS)
    await b.answers(app, rnd, [(ids[k], item, j < RIGHT_OF_5[k]) for k in range(6) for j, item in enumerate(ITEMS)])
    async with app.db.session() as s:
        report = await full_report(s, org=branch, period=round_period(rnd.id), min_group=5, tz=TZ)
    rank = next(c for c in report.correlations if c.x_label == "行政级别")
    assert (rank.n_x, rank.n_y) == (7, 6)
    assert rank.result is not None and rank.result.n == 6
    assert (rank.result.pearson_r, rank.result.pearson_p) == pytest.approx(PEARSON, abs=1e-6)
    assert (rank.result.spearman_rho, rank.result.spearman_p) == pytest.approx(SPEARMAN, abs=1e-6)
    assert "呈较强的正相关" in rank.sentence and "不说明因果" in rank.sentence
    assert "Spearman ρ = .928，p = .008" in rank.sentence


# --- comparing units ---------------------------------------------------------------------------


def test_chi_square_and_wilson_known_values():
    # [[40, 10], [30, 20]]: expected 35/15 in each row → χ² = 2·(25/35 + 25/15) = 4.761905;
    # with 1 df, p = erfc(√(χ²/2)) = 0.029096.
    res = chi_square([(40, 10), (30, 20)])
    assert res is not None and res.df == 1 and res.n == 100
    assert (res.statistic, res.p) == pytest.approx((4.761905, 0.029096), abs=1e-6)
    assert wilson(0, 0) is None
    assert kruskal([[0.5, 0.5], [0.5]]) is None  # all equal: no test


def test_wilson_is_scipys_wilson_interval():
    """Computed directly (scipy's binomtest first works out a p-value the report never reads)."""
    from scipy import stats

    for n in (1, 2, 5, 13, 34, 531, 10_000):
        for k in sorted({0, 1, n // 3, n // 2, n - 1, n}):
            ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
            assert wilson(k, n) == pytest.approx((ci.low, ci.high), abs=1e-12)


def test_withheld_keys_secondary_suppression():
    assert withheld_keys({"a": 12, "b": 3, "c": 7}, 5, partition=False) == {"b"}
    # One small row in a partition could be recovered from the total: the next smallest goes too.
    assert withheld_keys({"a": 12, "b": 3, "c": 7}, 5, partition=True) == {"b", "c"}
    assert withheld_keys({"a": 12, "b": 3, "c": 2}, 5, partition=True) == {"b", "c"}
    # … unless the small row holds no answers at all (only non-response would be recovered).
    assert withheld_keys({"a": 12, "b": 1, "c": 7}, 5, partition=True, answered={"a": 50, "b": 0, "c": 20}) == {"b"}
    assert withheld_keys({"a": 12, "b": 0}, 5, partition=True) == set()


async def test_units_rank_chi_square_and_sibling_rank(app):
    """Two branches of 10, 5 items each: 40 of 50 right against 30 of 50 (the χ² example above).
    The 党委's report ranks them; a branch's own report gives only its place among siblings."""
    first = await b.org(app, "比较党委/甲支部")
    second = await b.org(app, "比较党委/乙支部")
    root = await b.org(app, "比较党委")
    a = await b.members(app, first, 10, key="ua")
    c = await b.members(app, second, 10, key="ub")
    rnd = await b.open_round(app, root, ITEMS)
    await b.answers(app, rnd, [(m, item, j < 4) for m in a for j, item in enumerate(ITEMS)])  # 4/5 each
    await b.answers(app, rnd, [(m, item, j < 3) for m in c for j, item in enumerate(ITEMS)])  # 3/5 each
    async with app.db.session() as s:
        parent = await full_report(s, org=root, period=round_period(rnd.id), min_group=5, tz=TZ)
        child = await full_report(s, org=second, period=round_period(rnd.id), min_group=5, tz=TZ)
    units = {u.name: u for u in parent.units.units}
    assert (units["甲支部"].rank, units["甲支部"].answers, units["甲支部"].correct) == (1, 50, 40)
    assert (units["乙支部"].rank, units["乙支部"].answers, units["乙支部"].correct) == (2, 50, 30)
    t = parent.units.answers_test
    assert (t.statistic, t.p) == pytest.approx((4.761905, 0.029096), abs=1e-6)
    # Per member: ten 0.8s against ten 0.6s — all ties within groups; Kruskal-Wallis H = 19 (tie-corrected).
    k = parent.units.members_test
    assert k.n == 20 and k.df == 1 and k.statistic == pytest.approx(19.0, abs=1e-9)
    assert child.units is None
    assert child.sibling_rank is not None
    assert (child.sibling_rank.position, child.sibling_rank.of, child.sibling_rank.parent_name) == (2, 2, "比较党委")


def test_member_columns_are_put_in_member_order():
    """member_scores comes back as one JSON array per column; the statistics' float sums depend on
    the members' order, so columns that arrive out of member order are sorted together."""
    assert in_member_order([3, 1, 2], [[30, 10, 20], [None, 1, 2]]) == [[10, 20, 30], [1, 2, None]]
    cols = [[10, 20, 30], [1, None, 3]]
    assert in_member_order([1, 2, 3], cols) is cols
    assert in_member_order([], [[], []]) == [[], []]
