"""Statistics on aggregated rows: intervals, tests, correlations, item analysis, privacy floor.

Inputs are small (a row per item, unit or member, or one round's member x item matrix);
the counting that produced them happened in SQL. scipy does the statistics it provides;
the Moodle item-analysis quantities it does not provide are written out from their
definitions (docs.moodle.org, "Quiz statistics calculations").
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

K = TypeVar("K", bound=Hashable)


class _Lazy:
    """A module imported on first use: scipy.stats costs a second and numpy a tenth, and every
    process (`qingfeng run` included) imports core, which reaches this file long before any
    report is asked for."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        return getattr(importlib.import_module(self._name), attr)


stats = _Lazy("scipy.stats")
np = _Lazy("numpy")

# Moodle's highlighting thresholds.
LOW_EFFICIENCY = 15.0  # discriminative efficiency below this, in %
FACILITY_LOW, FACILITY_HIGH = 5.0, 95.0  # facility index at or beyond these, in %


def wilson(correct: int, n: int) -> tuple[float, float] | None:
    """Wilson score 95% interval of correct/n (None without answers).

    The same closed form (Newcombe 1998) as scipy's `binomtest(correct, n).proportion_ci(
    method="wilson")` — a test holds the two equal — computed directly: `binomtest` first works
    out an exact two-sided p-value nobody reads here, which made these intervals the largest
    Python cost of a report (about 1 ms each, one per table row).
    """
    if n <= 0:
        return None
    z = _z95()
    p = correct / n
    denom = 2 * (n + z * z)
    centre = (2 * n * p + z * z) / denom
    delta = z / denom * math.sqrt(4 * n * p * (1 - p) + z * z)
    return (0.0 if correct == 0 else centre - delta), (1.0 if correct == n else centre + delta)


_Z: list[float] = []


def _z95() -> float:
    """The two-sided 95% normal quantile (scipy on first use, like every other statistic here)."""
    if not _Z:
        from scipy.special import ndtri

        _Z.append(float(ndtri(0.975)))
    return _Z[0]


def group_size(*counts: int) -> int:
    """The smallest non-zero head count a row describes (respondents, people pushed, …)."""
    return min((c for c in counts if c > 0), default=0)


def withheld_keys(people: Mapping[K, int], min_group: int, *, partition: bool,
                  answered: Mapping[K, int] | None = None) -> set[K]:
    """Rows that describe fewer than `min_group` people (but some) are withheld.

    When the rows partition the people behind a total that is shown elsewhere, one lone
    withheld row could be recovered by subtraction, so the next smallest row goes too —
    unless `answered` says the lone row holds no answers (then only the fact that its few
    members did not answer could be recovered, which the summary's totals show anyway).
    """
    small = {k for k, n in people.items() if 0 < n < min_group}
    if partition and len(small) == 1:
        (lone,) = small
        if answered is None or answered.get(lone, 0) > 0:
            rest = sorted((n, str(k), k) for k, n in people.items() if k not in small and n > 0)
            if rest:
                small.add(rest[0][2])
    return small


# --- comparisons between units --------------------------------------------------------------


@dataclass(frozen=True)
class TestResult:
    method: str  # as printed: "Pearson χ² 检验" / "Kruskal-Wallis 检验"
    statistic: float
    df: int
    p: float
    n: int  # answers (χ²) or members (Kruskal-Wallis)
    groups: int


def chi_square(counts: Sequence[tuple[int, int]]) -> TestResult | None:
    """Homogeneity of share correct across units, on answers (correct, wrong) per unit.

    No continuity correction, so the statistic is the same Pearson χ² for two units or ten.
    """
    table = np.array([c for c in counts if c[0] + c[1] > 0], dtype=float)
    if len(table) < 2 or (table.sum(axis=0) == 0).any():
        return None
    res = stats.chi2_contingency(table, correction=False)
    return TestResult("Pearson χ² 检验", float(res.statistic), int(res.dof), float(res.pvalue),
                      int(table.sum()), len(table))


def kruskal(groups: Sequence[Sequence[float]]) -> TestResult | None:
    """Per-member share correct compared across units (each member counts once)."""
    live = [list(g) for g in groups if len(g) > 0]
    if len(live) < 2 or len({x for g in live for x in g}) < 2:
        return None
    res = stats.kruskal(*live)
    return TestResult("Kruskal-Wallis 检验", float(res.statistic), len(live) - 1, float(res.pvalue),
                      sum(len(g) for g in live), len(live))


# --- correlation --------------------------------------------------------------------------


@dataclass(frozen=True)
class CorrelationResult:
    n: int
    pearson_r: float
    pearson_p: float
    spearman_rho: float
    spearman_p: float


def correlation(x: Sequence[float], y: Sequence[float]) -> CorrelationResult | None:
    """Pearson and Spearman (rank is ordinal) with two-sided p; None if either is constant."""
    if len(x) != len(y) or len(x) < 3 or len(set(x)) < 2 or len(set(y)) < 2:
        return None
    pr = stats.pearsonr(x, y)
    sr = stats.spearmanr(x, y)
    return CorrelationResult(len(x), float(pr.statistic), float(pr.pvalue),
                             float(sr.statistic), float(sr.pvalue))


def stars(p: float) -> str:
    """SPSS-style marks used in the seed tables: ** p < .01, * p < .05."""
    return "**" if p < 0.01 else "*" if p < 0.05 else ""


# --- item analysis (Moodle, first attempts) ---------------------------------------------------


@dataclass(frozen=True)
class ItemAnalysis:
    item_id: str
    facility: float  # % of the maximum mark, i.e. % correct
    sd: float  # sample standard deviation of the item mark (0/1)
    discrimination: float | None  # 100 x corr(item, rest of test); None if undefined
    efficiency: float | None  # 100 x Cov(item, rest) / max Cov; None if undefined
    flags: tuple[str, ...]


@dataclass(frozen=True)
class RoundStatistics:
    respondents: int  # members with a mark for every item
    items: tuple[ItemAnalysis, ...]
    alpha: float | None  # Cronbach's α; None where it has no meaning


def item_analysis(item_ids: Sequence[str], marks: np.ndarray) -> RoundStatistics:
    """marks: one row per respondent, one 0/1 column per item (in `item_ids` order)."""
    marks = np.asarray(marks, dtype=float)
    if marks.ndim != 2 or marks.shape[0] < 2:
        return RoundStatistics(marks.shape[0] if marks.ndim == 2 else 0, (), None)
    total = marks.sum(axis=1)
    cells = {}
    for j, item_id in enumerate(item_ids):
        pairs, members = np.unique(np.column_stack([marks[:, j], total]), axis=0, return_counts=True)
        cells[item_id] = np.column_stack([pairs, members])
    return item_analysis_from_counts(item_ids, cells)


def item_analysis_from_counts(item_ids: Sequence[str],
                              counts: Mapping[str, Sequence[tuple[int, int, int]] | np.ndarray]) -> RoundStatistics:
    """The analysis from (mark, member's total, members) cells per item (the round_marks query).

    Every quantity is a function of an item's (mark, rest-of-test) pairs and of the totals, each
    pair weighted by its number of members (numpy's frequency weights), so neither a
    member-by-item matrix nor the pairs one by one are needed.
    """
    cells = [np.asarray(counts.get(item_id, ()), dtype=float).reshape(-1, 3) for item_id in item_ids]
    sizes = {int(c[:, 2].sum()) for c in cells}
    if len(sizes) > 1:
        raise ValueError("every item needs the same respondents (members who answered all items)")
    respondents = sizes.pop() if sizes else 0
    if respondents < 2:
        return RoundStatistics(respondents, (), None)
    rows, item_variances = [], []
    for item_id, c in zip(item_ids, cells, strict=True):
        row, variance = _item(item_id, c[:, 0], c[:, 1] - c[:, 0], c[:, 2].astype(int), respondents)
        rows.append(row)
        item_variances.append(variance)
    alpha = None
    n_items = len(item_ids)
    total_var = float(np.cov(cells[0][:, 1], fweights=cells[0][:, 2].astype(int), ddof=1)) if n_items else 0.0
    if n_items >= 2 and total_var > 0:
        alpha = n_items / (n_items - 1) * (1 - sum(item_variances) / total_var)
    return RoundStatistics(respondents, tuple(rows), alpha)


def _item(item_id: str, mark: np.ndarray, rest: np.ndarray, members: np.ndarray, n: int) -> tuple[ItemAnalysis, float]:
    """One item from its cells: marks (0/1), rest-of-test scores and members per cell; and the
    sample variance of its marks (for Cronbach's α)."""
    facility = 100.0 * float(np.average(mark, weights=members))
    cov = np.cov(np.vstack([mark, rest]), fweights=members, ddof=1)
    var_x, var_rest, cov_xr = float(cov[0, 0]), float(cov[1, 1]), float(cov[0, 1])
    discrimination = efficiency = None
    if var_x > 0 and var_rest > 0:
        discrimination = 100.0 * cov_xr / math.sqrt(var_x * var_rest)
        # The largest covariance these two sets of scores could have: both sorted alike, i.e. the
        # members with mark 1 paired with the highest rest scores.
        right = round(float(members @ mark))
        order = np.argsort(-rest, kind="stable")
        before = np.cumsum(members[order]) - members[order]
        paired = np.clip(right - before, 0, members[order])  # members with mark 1 in each cell, so sorted
        cov_max = (float(paired @ rest[order]) - right * float(members @ rest) / n) / (n - 1)
        efficiency = 100.0 * cov_xr / cov_max if cov_max > 0 else None
    flags = []
    if facility <= FACILITY_LOW or facility >= FACILITY_HIGH:
        flags.append("难度极端")
    if efficiency is not None and efficiency < LOW_EFFICIENCY:
        flags.append("区分效率低于15%")
    if discrimination is not None and discrimination < 0:
        flags.append("区分度为负")
    return ItemAnalysis(item_id, facility, math.sqrt(var_x), discrimination, efficiency, tuple(flags)), var_x


def is_finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)
