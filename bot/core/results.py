"""Typed results that core returns and adapters render; core never formats for a platform."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class QuizCard:
    """One item to show, with enough to build buttons or a 回复 A/B/C text."""

    round_id: int | None  # None for a spaced re-ask outside any round
    item_id: str
    position: int  # 1-based position within the round
    total: int
    type: str  # single | multiple | judge
    stem: str
    options: list[tuple[str, str]]  # (letter, text)
    deadline: datetime
    is_review: bool = False  # a spaced re-ask of an item answered wrongly before


@dataclass(frozen=True)
class CaseCard:
    case_id: str
    title: str
    category: str
    what_happened: str
    rule_broken: str
    consequence: str
    lesson: str
    composite: bool
    source: str


@dataclass(frozen=True)
class AnswerResult:
    round_id: int | None  # None for a spaced re-ask outside any round
    item_id: str
    choice: str
    correct: bool
    key: str
    key_text: list[str]  # texts of the right options
    explanation: str
    source: str
    late: bool
    duplicate: bool  # this (member, round, item) was answered before: the first answer stands
    case: CaseCard | None = None
    next_card: QuizCard | None = None
    remaining: int = 0


@dataclass(frozen=True)
class BindResult:
    member_name: str
    org_name: str
    already_bound: bool = False


@dataclass(frozen=True)
class TopicScore:
    topic: str
    name: str
    answered: int
    correct: int


@dataclass(frozen=True)
class MemberRecord:
    name: str
    org_name: str
    answered: int
    correct: int
    rounds_answered: int
    streak_weeks: int  # consecutive recent rounds with at least one answer
    due_reviews: int
    weakest_topics: list[TopicScore] = field(default_factory=list)
    pending_items: int = 0


@dataclass(frozen=True)
class ItemStat:
    item_id: str
    stem: str
    answered: int
    correct: int
    option_counts: dict[str, int]
    # Filled by the reports package; defaults keep older call sites valid.
    key: str = ""  # correct letters, e.g. "B" or "ACD"
    type: str = ""  # single | multiple | judge
    options: tuple[str, ...] = ()  # option texts, in letter order
    people: int = 0  # distinct members behind `answered`
    withheld: bool = False  # fewer people than the privacy floor: numbers not shown

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.answered if self.answered else None


@dataclass(frozen=True)
class BranchSummary:
    org_id: int
    org_name: str
    period_label: str
    members: int
    pushed: int  # deliveries in the period
    responded: int  # member-rounds with at least one valid answer
    valid_answers: int
    correct_answers: int
    late_answers: int
    items: list[ItemStat]
    withheld: bool  # fewer than the privacy floor: figures not shown
    min_group: int
    # Filled by the reports package; defaults keep older call sites valid.
    returned: int = 0  # member-rounds with any answer, late ones included (回收)
    people: int = 0  # distinct members with at least one valid answer
    retired_answers: int = 0  # on-time answers to items since retired: excluded
    ci: tuple[float, float] | None = None  # Wilson 95% interval of `accuracy`

    @property
    def accuracy(self) -> float | None:
        return self.correct_answers / self.valid_answers if self.valid_answers else None

    @property
    def response_rate(self) -> float | None:
        return self.responded / self.pushed if self.pushed else None

    @property
    def return_rate(self) -> float | None:
        """回收率 as in the seeds: member-rounds answered at all (late included) / pushed."""
        return self.returned / self.pushed if self.pushed else None

    @property
    def valid_rate(self) -> float | None:
        """有效比例: member-rounds with a valid answer among those that answered at all."""
        return self.responded / self.returned if self.returned else None


@dataclass(frozen=True)
class HelpText:
    is_secretary: bool
    bound: bool


@dataclass(frozen=True)
class RoundInvite:
    """A round pushed to a member: the intro plus every item as a card (each channel decides
    whether to send all cards at once, or an invitation that leads to them)."""

    round_id: int
    title: str
    org_name: str
    deadline: datetime
    cards: list[QuizCard]


@dataclass(frozen=True)
class Notice:
    """A plain sentence for the member (e.g. 'all done this week').

    `error` names the domain error it came from (e.g. "NotAllowed"), for adapters and tests.
    """

    text: str
    error: str | None = None


@dataclass(frozen=True)
class Reminder:
    """督办提醒: a member has unanswered items in a round whose deadline is near."""

    round_id: int
    title: str
    deadline: datetime
    unanswered: int
    total: int


Result = (QuizCard | AnswerResult | BindResult | MemberRecord | BranchSummary | CaseCard
          | HelpText | Notice | RoundInvite | Reminder)
