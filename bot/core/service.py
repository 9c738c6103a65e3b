"""The adapter boundary: every channel turns its input into a Command and calls `handle`.

`handle` resolves who is speaking, checks permissions, runs the engine and returns typed
results. Domain errors come back as `Notice`s so adapters never crash on user input.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Integer as _Int
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.config import Settings
from bot.core import cases, invites, quiz, spaced
from bot.core.access import Viewer, check_member_record, check_org_report
from bot.core.catalog import Catalog, ItemInfo
from bot.core.commands import (
    Bind,
    Command,
    Help,
    ShowCase,
    ShowMe,
    ShowQuiz,
    ShowReport,
    SubmitAnswer,
    Unknown,
)
from bot.core.errors import InvalidChoice, NotBound, NotDelivered, NothingToAnswer, QingfengError
from bot.core.orgs import find_org
from bot.core.results import (
    AnswerResult,
    BindResult,
    HelpText,
    MemberRecord,
    Notice,
    QuizCard,
    Result,
    TopicScore,
)
from bot.metrics import count_answer
from bot.reports.period import parse_report_args
from bot.reports.stats import latest_round_period
from bot.storage.bulk import Executor
from bot.storage.db import Database
from bot.storage.models import (
    Answer,
    ChannelIdentity,
    Delivery,
    ItemTopic,
    Member,
    Organization,
    Round,
)
from question_bank import LETTERS

log = logging.getLogger(__name__)
Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Sender:
    platform: str  # telegram | wechat | wecom | console
    external_id: str


class Service:
    def __init__(self, db: Database, settings: Settings, *, clock: Clock = system_clock,
                 topic_names: dict[str, str] | None = None) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock
        self.topic_names = topic_names or {}
        self.catalog = Catalog()

    # --- entry point -------------------------------------------------------------------

    async def handle(self, sender: Sender, command: Command) -> list[Result]:
        try:
            if isinstance(command, SubmitAnswer):  # the hot path: no ORM session
                return [await self._answer(sender, command)]
            async with self.db.session() as session:
                return await self._dispatch(session, sender, command)
        except QingfengError as exc:
            return [Notice(exc.message, error=type(exc).__name__)]

    async def _dispatch(self, session: AsyncSession, sender: Sender, command: Command) -> list[Result]:
        if isinstance(command, Bind):
            return [await self._bind(session, sender, command)]
        viewer = await self.viewer(session, sender)
        if isinstance(command, Help):
            return [HelpText(is_secretary=bool(viewer and viewer.can_report), bound=viewer is not None)]
        if isinstance(command, Unknown):
            return [Notice("没有看懂这条消息。"),
                    HelpText(is_secretary=bool(viewer and viewer.can_report), bound=viewer is not None)]
        if viewer is None:
            raise NotBound()
        if isinstance(command, ShowQuiz):
            if command.all_pending:
                cards = await self.pending_cards(session, viewer.member)
                if cards:
                    return list(cards)
            card = await self.next_card(session, viewer.member)
            if card is None:
                raise NothingToAnswer()
            return [card]
        if isinstance(command, ShowMe):
            return [await self.member_record(session, viewer, viewer.member)]
        if isinstance(command, ShowReport):
            return [await self._report(session, viewer, command.args)]
        if isinstance(command, ShowCase):
            card = await cases.latest_case_for(session, member_id=viewer.member.id)  # type: ignore[arg-type]
            if card is None:
                weakest = await self._weak_topics(session, viewer.member)
                card = await cases.pick_related_case(
                    session, member_id=viewer.member.id, topics=weakest or list(self.topic_names),  # type: ignore[arg-type]
                    now=self.clock(), cooldown_days=0, include_drafts=self.settings.push_drafts,
                    reason="request")
            return [card] if card else [Notice("案例库暂时为空。")]
        raise AssertionError(f"unhandled command {command!r}")

    async def viewer(self, session: AsyncSession, sender: Sender) -> Viewer | None:
        row = (await session.exec(
            select(Member, Organization)
            .join(ChannelIdentity, col(ChannelIdentity.member_id) == col(Member.id))
            .join(Organization, col(Organization.id) == col(Member.org_id))
            .where(ChannelIdentity.platform == sender.platform,
                   ChannelIdentity.external_id == sender.external_id,
                   col(ChannelIdentity.active).is_(True), col(Member.active).is_(True))
        )).first()
        return Viewer(member=row[0], org=row[1]) if row else None

    # --- binding -----------------------------------------------------------------------

    async def _bind(self, session: AsyncSession, sender: Sender, command: Bind) -> BindResult:
        member, already = await invites.redeem(
            session, code=command.code, platform=sender.platform,
            external_id=sender.external_id, now=self.clock())
        org = await session.get(Organization, member.org_id)
        return BindResult(member_name=member.name, org_name=org.name if org else "",
                          already_bound=already)

    # --- quiz ---------------------------------------------------------------------------

    async def next_card(self, session: Executor, member: Member) -> QuizCard | None:
        return await self._next_card(session, member.id, self.clock())  # type: ignore[arg-type]

    async def _next_card(self, conn: Executor, member_id: int, now: datetime,
                         pending: list[quiz.PendingItem] | None = None) -> QuizCard | None:
        if pending is None:
            pending = await quiz.pending_items(conn, member_id=member_id, now=now, catalog=self.catalog)
        if pending:
            p = pending[0]
            return self._card(p.item, round_id=p.round_id, position=p.position, total=p.total, deadline=p.deadline)
        due = await spaced.due_item_ids(conn, member_id=member_id, now=now)
        if due:
            item = await self.catalog.item(conn, due[0])
            if item is not None:
                return self._card(item, round_id=None, position=1, total=len(due), deadline=now, is_review=True)
        return None

    async def pending_cards(self, session: Executor, member: Member) -> list[QuizCard]:
        """Every unanswered item of the member's open rounds, oldest round first."""
        pending = await quiz.pending_items(session, member_id=member.id, now=self.clock(),  # type: ignore[arg-type]
                                           catalog=self.catalog)
        return [self._card(p.item, round_id=p.round_id, position=p.position, total=p.total,
                           deadline=p.deadline) for p in pending]

    @staticmethod
    def _card(item: ItemInfo, *, round_id: int | None, position: int, total: int,
              deadline: datetime, is_review: bool = False) -> QuizCard:
        options = list(zip(LETTERS, item.options, strict=False))
        return QuizCard(round_id=round_id, item_id=item.id, position=position, total=total,
                        type=item.type, stem=item.stem, options=options, deadline=deadline,
                        is_review=is_review)

    async def _answer(self, sender: Sender, cmd: SubmitAnswer) -> AnswerResult:
        """Record one answer in ONE transaction: who is speaking, the delivery check and the FSRS
        card in one read, the answer insert, the FSRS write and the case pick, the next card.
        Items, round contents and cases come from the catalog (bounded caches)."""
        now = self.clock()
        async with self.db.transaction() as conn:
            ctx = await quiz.answer_context(conn, platform=sender.platform, external_id=sender.external_id,
                                            round_id=cmd.round_id, item_id=cmd.item_id)
            if ctx is None:
                raise NotBound()
            round_id, item_id = cmd.round_id, cmd.item_id
            if item_id is None:  # a typed letter answers the next card
                card = await self._next_card(conn, ctx.member_id, now)
                if card is None:
                    raise NothingToAnswer()
                round_id, item_id = card.round_id, card.item_id
                ctx = await quiz.answer_context(conn, platform=sender.platform, external_id=sender.external_id,
                                                round_id=round_id, item_id=item_id)
                if ctx is None:
                    raise NotBound()
            result = await self._record(conn, ctx, round_id, item_id, cmd.choice.upper(), now)
        if not result.duplicate:
            count_answer(self._channel)
        return result

    async def _record(self, conn: AsyncConnection, ctx: quiz.AnswerContext, round_id: int | None,
                      item_id: str, choice: str, now: datetime) -> AnswerResult:
        item = await self.catalog.item(conn, item_id)
        if item is None:
            raise NotDelivered()
        letters = LETTERS[: len(item.options)]
        if not choice or any(c not in letters for c in choice):
            raise InvalidChoice(f"请从选项 {'/'.join(letters)} 中选择。")
        if item.type in ("single", "judge") and len(choice) != 1:
            raise InvalidChoice("这是单选题，请只选一个选项。")
        member_id = ctx.member_id

        if round_id is None:  # a spaced re-ask
            if ctx.review is None or ctx.review.due_at > now:
                raise NotDelivered()
            correct = quiz.grade(item.answer, choice)
            await spaced.update_after_answer(conn, member_id=member_id, item_id=item.id, correct=correct,
                                             now=now, state=ctx.review)
            duplicate, late = False, False
        else:
            if not ctx.delivered or ctx.deadline is None or item.id not in await self.catalog.round_items(
                    conn, round_id):
                raise NotDelivered()
            recorded = await quiz.record_answer(
                conn, member_id=member_id, rnd=quiz.RoundKey(round_id, ctx.deadline), item=item, choice=choice,
                channel=self._channel, now=now, commit=False)
            correct, duplicate, late = (recorded.answer.correct, recorded.duplicate, recorded.answer.late)
            choice = recorded.answer.choice
            if not duplicate:
                await spaced.update_after_answer(conn, member_id=member_id, item_id=item.id, correct=correct,
                                                 now=now, state=ctx.review)
        case = None
        if not correct and not duplicate:
            case = await cases.pick_related_case(
                conn, member_id=member_id, topics=list(item.topics), now=now,
                cooldown_days=self.settings.case_cooldown_days, include_drafts=self.settings.push_drafts,
                commit=False, catalog=self.catalog)
        pending = await quiz.pending_items(conn, member_id=member_id, now=now, catalog=self.catalog)
        next_card = await self._next_card(conn, member_id, now, pending)
        return AnswerResult(
            round_id=round_id, item_id=item.id, choice=choice, correct=correct, key=item.answer,
            key_text=[item.options[LETTERS.index(c)] for c in item.answer], explanation=item.explanation,
            source=item.source, late=late, duplicate=duplicate, case=case, next_card=next_card,
            remaining=len(pending))

    _channel = "console"

    def for_channel(self, channel: str) -> Service:
        """A view of this service that stamps answers with the channel they came from."""
        clone = Service(self.db, self.settings, clock=self.clock, topic_names=self.topic_names)
        clone._channel = channel
        clone.catalog = self.catalog
        return clone

    # --- records and reports -------------------------------------------------------------

    async def member_record(self, session: AsyncSession, viewer: Viewer, member: Member) -> MemberRecord:
        check_member_record(viewer, member)
        now = self.clock()
        answered, correct, rounds = (await session.exec(
            select(func.count(), func.coalesce(func.sum(col(Answer.correct).cast(_Int)), 0),
                   func.count(func.distinct(Answer.round_id)))
            .where(Answer.member_id == member.id)
        )).one()
        topic_rows = (await session.exec(
            select(ItemTopic.topic, func.count(), func.sum(col(Answer.correct).cast(_Int)))
            .join(Answer, col(Answer.item_id) == col(ItemTopic.item_id))
            .where(Answer.member_id == member.id).group_by(ItemTopic.topic)
        )).all()
        topics = sorted(
            (TopicScore(t, self.topic_names.get(t, t), int(n), int(c or 0)) for t, n, c in topic_rows),
            key=lambda s: (s.correct / s.answered, -s.answered))
        org = await session.get(Organization, member.org_id)
        return MemberRecord(
            name=member.name, org_name=org.name if org else "", answered=int(answered),
            correct=int(correct), rounds_answered=int(rounds),
            streak_weeks=await self._streak(session, member),
            due_reviews=await spaced.count_due(session, member_id=member.id, now=now),  # type: ignore[arg-type]
            weakest_topics=[t for t in topics if t.correct < t.answered][:3],
            pending_items=len(await quiz.pending_items(session, member_id=member.id, now=now,  # type: ignore[arg-type]
                                                       catalog=self.catalog)),
        )

    async def _streak(self, session: AsyncSession, member: Member) -> int:
        """Consecutive most recent delivered rounds that the member answered at least once."""
        rounds = (await session.exec(
            select(Round.id).join(Delivery, col(Delivery.round_id) == col(Round.id))
            .where(Delivery.member_id == member.id, col(Round.opens_at) <= self.clock())
            .order_by(col(Round.opens_at).desc()).limit(52)
        )).all()
        answered = set((await session.exec(
            select(Answer.round_id).where(Answer.member_id == member.id).distinct())).all())
        streak = 0
        for i, rid in enumerate(rounds):
            if rid in answered:
                streak += 1
            elif i == 0:
                continue  # the current round may still be open
            else:
                break
        return streak

    async def _weak_topics(self, session: AsyncSession, member: Member) -> list[str]:
        rows = (await session.exec(
            select(ItemTopic.topic).join(Answer, col(Answer.item_id) == col(ItemTopic.item_id))
            .where(Answer.member_id == member.id, col(Answer.correct).is_(False))
            .group_by(ItemTopic.topic).order_by(func.count().desc())
        )).all()
        return list(rows)

    async def _report(self, session: AsyncSession, viewer: Viewer, args: str) -> Result:
        now = self.clock()
        org = viewer.org
        words, period = parse_report_args(args, now=now, tz=self.settings.tz)
        for word in words:
            org = await find_org(session, word)
        check_org_report(viewer, org)
        if period is None:
            period = await latest_round_period(session, org, now)
            if period is None:
                return Notice(f"「{org.name}」还没有推送过学习题，暂无统计。")
        from bot.reports.report import full_report  # numpy and the statistics: only for reports

        return await full_report(session, org=org, period=period, min_group=self.settings.report_min_group,
                                 tz=self.settings.tz, topic_names=self.topic_names, now=now)

