"""All tables, in one module. Timestamps are timezone-aware UTC.

Exactly-once guarantees live here as unique constraints: one delivery per (round, member),
one answer per (member, round, item), one claim per (job, occurrence).
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(sa.types.TypeDecorator):
    """Stores aware datetimes; SQLite drops the zone, so put UTC back on the way out."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime refused: store timezone-aware UTC")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _ts(*, nullable: bool = False, index: bool = False, default: bool = False) -> Any:
    kwargs: dict[str, Any] = {"sa_type": UTCDateTime, "nullable": nullable, "index": index}
    if default:
        kwargs["default_factory"] = utcnow
    elif nullable:
        kwargs["default"] = None
    return Field(**kwargs)


def _json(*, default_factory: Any = list) -> Any:
    return Field(default_factory=default_factory, sa_type=sa.JSON, nullable=False)


class Role(StrEnum):
    member = "member"
    secretary = "secretary"
    admin = "admin"


class DeliveryStatus(StrEnum):
    pending = "pending"
    sending = "sending"  # claimed by a process that is sending it now (see bot/core/push.py)
    sent = "sent"
    failed = "failed"
    blocked = "blocked"


class ItemStatus(StrEnum):
    draft = "draft"
    approved = "approved"
    retired = "retired"


# --- organisation and people -------------------------------------------------------------


class Organization(SQLModel, table=True):
    """A node of the Party organisation tree: 党委 / 党总支 / 党支部 / 党小组, any depth."""

    __table_args__ = (sa.UniqueConstraint("parent_id", "name", name="uq_org_parent_name"),)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100)
    kind: str = Field(default="党支部", max_length=20)
    parent_id: int | None = Field(default=None, foreign_key="organization.id", index=True)
    # Materialised path "/1/4/9/" makes subtree queries one indexed prefix match.
    path: str = Field(default="/", max_length=400, index=True)
    named_nonresponders: bool = False
    created_at: datetime = _ts(default=True)


class Member(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=50)
    org_id: int = Field(foreign_key="organization.id", index=True)
    role: str = Field(default=Role.member, max_length=20)
    # Roster key (工号 or similar) so a re-import updates instead of duplicating.
    external_key: str | None = Field(default=None, max_length=64, unique=True)
    rank: str | None = Field(default=None, max_length=30)  # 行政级别 as written
    rank_level: int | None = None  # ordinal of rank, for rank correlations
    position: str | None = Field(default=None, max_length=50)  # 职务
    joined_party_year: int | None = None  # 入党年份
    tags: list[str] = _json()  # cohort tags: 新提任 / 年轻干部 / 关键岗位 …
    active: bool = True
    created_at: datetime = _ts(default=True)


class ChannelIdentity(SQLModel, table=True):
    """A chat account bound to a member; one member may have several."""

    __table_args__ = (sa.UniqueConstraint("platform", "external_id", name="uq_identity"),)

    id: int | None = Field(default=None, primary_key=True)
    member_id: int = Field(foreign_key="member.id", index=True)
    platform: str = Field(max_length=20)
    external_id: str = Field(max_length=128)
    active: bool = True
    bound_at: datetime = _ts(default=True)
    last_inbound_at: datetime | None = _ts(nullable=True)


class InviteCode(SQLModel, table=True):
    code: str = Field(primary_key=True, max_length=16)
    member_id: int = Field(foreign_key="member.id", index=True)
    created_at: datetime = _ts(default=True)
    expires_at: datetime = _ts()
    used_at: datetime | None = _ts(nullable=True)
    used_by_identity_id: int | None = Field(default=None, foreign_key="channelidentity.id")


# --- bank ----------------------------------------------------------------------------------


class BankItem(SQLModel, table=True):
    """An item as synced from YAML; `content` keeps what members were shown."""

    id: str = Field(primary_key=True, max_length=64)
    content_hash: str = Field(max_length=64)
    type: str = Field(max_length=10)
    stem: str
    answer: str = Field(max_length=8)  # letters, e.g. "B" or "ACD"
    topics: list[str] = _json()
    difficulty: int = 2
    status: str = Field(default=ItemStatus.draft, max_length=10, index=True)
    content: dict[str, Any] = _json(default_factory=dict)
    synced_at: datetime = _ts(default=True)


class ItemTopic(SQLModel, table=True):
    """Item-topic links, so per-topic statistics stay in SQL."""

    item_id: str = Field(foreign_key="bankitem.id", primary_key=True, max_length=64)
    topic: str = Field(primary_key=True, max_length=40, index=True)


class CaseStudy(SQLModel, table=True):
    id: str = Field(primary_key=True, max_length=64)
    content_hash: str = Field(max_length=64)
    title: str
    category: str = Field(max_length=80)
    topics: list[str] = _json()
    status: str = Field(default=ItemStatus.draft, max_length=10)
    content: dict[str, Any] = _json(default_factory=dict)
    synced_at: datetime = _ts(default=True)


# --- rounds, deliveries, answers ------------------------------------------------------------


class Round(SQLModel, table=True):
    """One push occurrence: a set of items for an organisation subtree, open until deadline."""

    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organization.id", index=True)
    kind: str = Field(default="weekly", max_length=20)  # weekly | campaign | manual | demo
    title: str = Field(default="", max_length=100)
    cohort_tag: str | None = Field(default=None, max_length=30)
    opens_at: datetime = _ts(index=True)
    deadline: datetime = _ts(index=True)
    # Set when a scheduler occurrence created the round: makes the round itself idempotent.
    occurrence_key: str | None = Field(default=None, max_length=120, unique=True)
    created_at: datetime = _ts(default=True)


class RoundItem(SQLModel, table=True):
    round_id: int = Field(foreign_key="round.id", primary_key=True)
    item_id: str = Field(foreign_key="bankitem.id", primary_key=True, max_length=64)
    position: int


class Delivery(SQLModel, table=True):
    __table_args__ = (sa.UniqueConstraint("round_id", "member_id", name="uq_delivery"),)

    id: int | None = Field(default=None, primary_key=True)
    round_id: int = Field(foreign_key="round.id", index=True)
    member_id: int = Field(foreign_key="member.id", index=True)
    status: str = Field(default=DeliveryStatus.pending, max_length=10, index=True)
    attempts: int = 0
    last_error: str | None = Field(default=None, max_length=200)
    channel: str | None = Field(default=None, max_length=20)
    created_at: datetime = _ts(default=True)
    sent_at: datetime | None = _ts(nullable=True)
    # Which process claimed the row for sending, and when (migration 0004_scheduler).
    claimed_by: str | None = Field(default=None, max_length=80)
    claimed_at: datetime | None = _ts(nullable=True)


class Answer(SQLModel, table=True):
    __table_args__ = (
        sa.UniqueConstraint("member_id", "round_id", "item_id", name="uq_answer"),
        sa.Index("ix_answer_round_item", "round_id", "item_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    member_id: int = Field(foreign_key="member.id", index=True)
    round_id: int = Field(foreign_key="round.id")
    item_id: str = Field(foreign_key="bankitem.id", max_length=64)
    choice: str = Field(max_length=8)
    correct: bool
    late: bool = False
    answered_at: datetime = _ts(default=True, index=True)
    latency_ms: int | None = None
    channel: str = Field(default="console", max_length=20)


class ReviewCard(SQLModel, table=True):
    """FSRS state of an item a member once got wrong: drives spaced re-asking."""

    member_id: int = Field(foreign_key="member.id", primary_key=True)
    item_id: str = Field(foreign_key="bankitem.id", primary_key=True, max_length=64)
    due_at: datetime = _ts(index=True)
    card: dict[str, Any] = _json(default_factory=dict)
    lapses: int = 0
    updated_at: datetime = _ts(default=True)


class CaseDelivery(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    member_id: int = Field(foreign_key="member.id", index=True)
    case_id: str = Field(foreign_key="casestudy.id", max_length=64)
    topic: str | None = Field(default=None, max_length=40)
    reason: str = Field(default="wrong_answer", max_length=20)
    delivered_at: datetime = _ts(default=True)


# --- operations ----------------------------------------------------------------------------


class JobClaim(SQLModel, table=True):
    """A scheduler occurrence claimed by exactly one process (insert wins, conflict loses)."""

    __table_args__ = (sa.UniqueConstraint("job_key", "occurrence", name="uq_job_claim"),)

    id: int | None = Field(default=None, primary_key=True)
    job_key: str = Field(max_length=120)
    occurrence: datetime = _ts()
    claimed_by: str = Field(max_length=80)
    claimed_at: datetime = _ts(default=True)


class KeyValue(SQLModel, table=True):
    """Small shared state: channel offsets, access tokens, … (shared by all processes)."""

    key: str = Field(primary_key=True, max_length=120)
    value: dict[str, Any] = _json(default_factory=dict)
    expires_at: datetime | None = _ts(nullable=True)
    updated_at: datetime = _ts(default=True)


class AuditLog(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _ts(default=True, index=True)
    actor: str = Field(max_length=80)  # "cli", "member:12", …
    action: str = Field(max_length=60)
    detail: dict[str, Any] = _json(default_factory=dict)


# --- WeChat / WeCom channels (issue #5) ---------------------------------------------------


class InboundMessage(SQLModel, table=True):
    """One inbound WeChat/WeCom callback, claimed once: platforms retry unanswered callbacks,
    so the first claim processes it and retries get the cached reply (or nothing, if it went
    out as a separate message). Rows are purged after a few days. The row is leased: the worker
    holding `attempt` owns it, and a "processing" row whose `claimed_at` is older than the lease
    (its worker died) or a "failed" one is taken over by the next retry (bot/channels/wx_inbound.py)."""

    __table_args__ = (sa.UniqueConstraint("platform", "msg_key", name="uq_inbound_message"),)

    id: int | None = Field(default=None, primary_key=True)
    platform: str = Field(max_length=20)
    msg_key: str = Field(max_length=80)  # "m:<MsgId>" or "e:<sha1 of sender, time, event …>"
    received_at: datetime = _ts(default=True, index=True)
    status: str = Field(default="processing", max_length=12)  # processing | done | deferred | failed
    reply: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON, nullable=True)
    attempt: int = 1  # fencing token: bumped by each take-over; changes are conditional on it
    claimed_at: datetime = _ts(default=True)  # start of the current attempt's lease
    pin: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON, nullable=True)  # typed answer's item


# --- scheduled pushes (issue #6) ------------------------------------------------------------


class Schedule(SQLModel, table=True):
    """A push schedule set on an organisation and inherited by its subtree until a descendant
    sets its own row of the same kind (an `enabled=False` row switches the kind off there).
    `spec` is validated by scheduler/schedules.py; campaigns are one-off rows told apart by name."""

    __table_args__ = (sa.UniqueConstraint("org_id", "kind", "name", name="uq_schedule"),)

    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organization.id", index=True)
    kind: str = Field(max_length=20)  # weekly_round | reminder | digest | case_push | campaign | quiet_hours
    name: str = Field(default="", max_length=60)
    spec: dict[str, Any] = _json(default_factory=dict)
    timezone: str = Field(default="Asia/Shanghai", max_length=40)
    enabled: bool = True
    created_at: datetime = _ts(default=True)
    # Occurrences before this instant never fire: a new or changed schedule does not reach back.
    updated_at: datetime = _ts(default=True)


class Notification(SQLModel, table=True):
    """An outbound message that is not a round invite (reminder, digest, case push): one row per
    (key, member), sent through the same claim-then-send loop as deliveries."""

    __table_args__ = (sa.UniqueConstraint("key", "member_id", name="uq_notification"),)

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=120, index=True)  # e.g. "reminder:round:12:24h"
    kind: str = Field(max_length=20)  # reminder | digest | case_push
    member_id: int = Field(foreign_key="member.id", index=True)
    org_id: int = Field(foreign_key="organization.id")  # whose quiet hours apply
    round_id: int | None = Field(default=None, foreign_key="round.id")
    payload: dict[str, Any] = _json(default_factory=dict)
    status: str = Field(default=DeliveryStatus.pending, max_length=10, index=True)
    attempts: int = 0
    last_error: str | None = Field(default=None, max_length=200)
    channel: str | None = Field(default=None, max_length=20)
    created_at: datetime = _ts(default=True)
    sent_at: datetime | None = _ts(nullable=True)
    claimed_by: str | None = Field(default=None, max_length=80)
    claimed_at: datetime | None = _ts(nullable=True)


# --- report pre-aggregate (issue #8) ----------------------------------------------------------


class AnswerTally(SQLModel, table=True):
    """Deliveries and stored answers counted per member and round, so a report's member-level
    figures read a few thousand rows instead of a million answers and half a million deliveries.
    Kept in the writing transaction by `bot.reports.tally` (one upsert per new answer, one
    statement per opened round); bulk loaders recount. It does not depend on an item's status:
    reports subtract on-time answers to items retired since (docs/reports-sql.md)."""

    __table_args__ = (sa.Index("ix_answertally_round_member", "round_id", "member_id"),
                      # (PostgreSQL also has ix_answertally_member_cover, migration 0008: not
                      # declared here, where its INCLUDE would import the PostgreSQL dialect.)
                      {"sqlite_with_rowid": False})

    member_id: int = Field(foreign_key="member.id", primary_key=True)
    round_id: int = Field(foreign_key="round.id", primary_key=True)
    on_time: int = 0  # answers given by the deadline
    on_time_correct: int = 0
    late: int = 0
    pushed: int = Field(default=0, sa_column_kwargs={"server_default": "0"})  # 1: a delivery row exists (0006)



class ItemTally(SQLModel, table=True):
    """On-time answers counted per round, item and exact choice (spread over `shard` =
    member_id % 16, so concurrent answers to one option do not queue on one row), so that a
    report covering every answer of its rounds reads a few hundred rows for its per-item
    tables instead of the answers. Kept like `AnswerTally` by `bot.reports.tally`; independent
    of item status (reports filter retired items when they read it)."""

    __table_args__ = ({"sqlite_with_rowid": False},)

    round_id: int = Field(foreign_key="round.id", primary_key=True)
    item_id: str = Field(max_length=64, primary_key=True)
    choice: str = Field(max_length=8, primary_key=True)
    shard: int = Field(primary_key=True)
    answers: int = 0
    correct: int = 0



class TopicReach(SQLModel, table=True):
    """Per topic and member, the opening time of the latest folded (finished) round in which the
    member gave a valid answer on the topic: a long period's distinct people per topic without
    reading every answer. Made by `bot.reports.fold`, trusted only while the item-topic links and
    retired items it was made with are unchanged."""

    __table_args__ = ({"sqlite_with_rowid": False},)

    topic: str = Field(primary_key=True, max_length=40)
    member_id: int = Field(foreign_key="member.id", primary_key=True)
    last_opens_at: datetime = _ts()


class RoundMarks(SQLModel, table=True):
    """A folded (finished) round's item-analysis input over every member (the `round_marks`
    query's rows): per item, mark (1/0) and total mark of members who answered every current
    item on time, how many members. Made by `bot.reports.fold`, like `TopicReach`."""

    __table_args__ = ({"sqlite_with_rowid": False},)

    round_id: int = Field(foreign_key="round.id", primary_key=True)
    item_id: str = Field(max_length=64, primary_key=True)
    mark: int = Field(primary_key=True)
    total: int = Field(primary_key=True)
    members: int


class FoldedRound(SQLModel, table=True):
    """The finished rounds already folded into `TopicReach`, `RoundMarks`, `RoundOrgTotals` and
    `MemberPrefix`, in the order they opened (bot/reports/fold.py)."""

    round_id: int = Field(foreign_key="round.id", primary_key=True)
    folded_at: datetime = _ts(default=True)


class RoundOrgTotals(SQLModel, table=True):
    """A folded round's member-rounds summed per organisation (the members' own, not its subtree):
    deliveries, member-rounds with an on-time answer (`answered`) and with a valid one
    (`responded`), valid answers and right ones, on-time answers to retired items. Late answers
    may still come after the fold: reports read those from the answer tally. Made by
    `bot.reports.fold`, trusted only while members stay in their organisations (a trigger voids
    the folds when one moves) and the retired items are unchanged."""

    __table_args__ = ({"sqlite_with_rowid": False},)

    round_id: int = Field(foreign_key="round.id", primary_key=True)
    org_id: int = Field(foreign_key="organization.id", primary_key=True)
    pushed: int
    answered: int
    responded: int
    answers: int
    correct: int
    retired: int


class MemberPrefix(SQLModel, table=True):
    """Per member, running totals over the folded rounds in the order they opened: one row per
    folded member-round, holding the sums up to and including that round (rounds pushed,
    responded, valid answers, right ones, rounds missed). A period's totals of a member are the
    difference of two rows, whatever its number of rounds. Made by `bot.reports.fold`."""

    __table_args__ = (sa.Index("ix_memberprefix_member_opens", "member_id", "opens_at", "round_id"),
                      {"sqlite_with_rowid": False})

    member_id: int = Field(foreign_key="member.id", primary_key=True)
    round_id: int = Field(foreign_key="round.id", primary_key=True)
    opens_at: datetime = _ts()
    pushed: int
    responded: int
    answers: int
    correct: int
    missed: int

__all__ = [
    "Answer", "AnswerTally", "AuditLog", "BankItem", "CaseDelivery", "CaseStudy", "ChannelIdentity",
    "Delivery", "DeliveryStatus", "FoldedRound", "InboundMessage", "InviteCode", "ItemStatus", "ItemTally", "ItemTopic",
    "JobClaim",
    "KeyValue", "Member", "MemberPrefix", "Notification", "Organization", "ReviewCard", "Role", "Round", "RoundItem",
    "RoundMarks", "RoundOrgTotals", "SQLModel", "Schedule", "TopicReach", "UTCDateTime", "utcnow",
]
