"""The full report: everything a secretary's report shows, as plain data.

`FullReport` is a `BranchSummary` (so every adapter that renders a summary renders this too)
with the rest of the report attached. Withheld rows keep their label but no numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING

from bot.core.results import BranchSummary

if TYPE_CHECKING:  # analysis pulls in scipy; chat rendering imports this module and needs none of it
    from bot.reports.analysis import CorrelationResult, RoundStatistics, TestResult


@dataclass(frozen=True)
class Share:
    """A row of a breakdown: how many people / answers, how many correct."""

    label: str
    people: int
    answers: int
    correct: int
    withheld: bool = False
    ci: tuple[float, float] | None = None
    key: str = ""  # the grouping key as stored (topic id, rank level, …)

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.answers if self.answers and not self.withheld else None


@dataclass(frozen=True)
class WeekRow:
    week: date  # local Monday
    rounds: int
    pushed: int
    responded: int
    answers: int
    correct: int
    people: int
    withheld: bool = False

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.answers if self.answers and not self.withheld else None

    @property
    def response_rate(self) -> float | None:
        return self.responded / self.pushed if self.pushed and not self.withheld else None


@dataclass(frozen=True)
class UnitRow:
    org_id: int
    name: str
    pushed: int
    responded: int
    answers: int
    correct: int
    people: int
    withheld: bool = False
    direct: bool = False  # members attached to the scope organisation itself
    rank: int | None = None  # 1 = highest share correct among shown units
    ci: tuple[float, float] | None = None

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.answers if self.answers and not self.withheld else None

    @property
    def response_rate(self) -> float | None:
        return self.responded / self.pushed if self.pushed and not self.withheld else None


@dataclass(frozen=True)
class UnitComparison:
    """Units under one parent: the table (for the parent's report), ranks and two tests."""

    parent_name: str
    units: list[UnitRow]
    answers_test: TestResult | None  # χ² on answers: overstates certainty (see caveat)
    members_test: TestResult | None  # Kruskal-Wallis on per-member share correct


@dataclass(frozen=True)
class SiblingRank:
    """A branch's place among its siblings; the siblings' own figures are not shown."""

    parent_name: str
    position: int
    of: int
    answers_test: TestResult | None
    members_test: TestResult | None


@dataclass(frozen=True)
class AttributeTable:
    key: str  # rank | position | party_age | tag
    title: str  # 行政级别 / 职务 / 党龄 / 人群标签
    rows: list[Share]


@dataclass(frozen=True)
class CorrelationTable:
    """Seed 表2.1 layout: two variables, Pearson (and Spearman) r, two-sided p, N."""

    x_label: str
    y_label: str
    n_x: int  # members with the attribute recorded
    n_y: int  # members with a score
    result: CorrelationResult | None  # on the n pairs
    withheld: bool = False
    sentence: str = ""


@dataclass(frozen=True)
class RoundAnalysis:
    round_id: int
    title: str
    opens_at: datetime
    pushed: int
    stems: dict[str, str]
    stats: RoundStatistics | None  # None: withheld (too few complete respondents)
    note: str = ""


@dataclass(frozen=True)
class Previous:
    label: str
    answers: int
    correct: int
    withheld: bool

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.answers if self.answers and not self.withheld else None


@dataclass(frozen=True)
class FullReport(BranchSummary):
    org_path: str = ""  # 机关党委/第一党总支/第三支部
    period_text: str = ""  # label with the dates, for documents
    generated_at: datetime | None = None
    previous: Previous | None = None
    topics: list[Share] = field(default_factory=list)
    weeks: list[WeekRow] = field(default_factory=list)
    units: UnitComparison | None = None  # the scope's children, when it has any
    sibling_rank: SiblingRank | None = None  # the scope among its parent's children
    attributes: list[AttributeTable] = field(default_factory=list)
    correlations: list[CorrelationTable] = field(default_factory=list)
    rounds: list[RoundAnalysis] = field(default_factory=list)
    nonresponders: list[tuple[str, str, int]] | None = None  # (name, org, rounds missed); None = off
