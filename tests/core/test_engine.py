"""Quiz engine on SQLite and PostgreSQL: idempotent answers, grading, rounds, re-asking, cases."""

from __future__ import annotations

import time
from datetime import timedelta

from sqlmodel import func, select

from bot.core import quiz
from bot.core.commands import ShowQuiz, SubmitAnswer
from bot.core.results import AnswerResult, Notice, QuizCard
from bot.reports.period import Period
from bot.reports.stats import branch_summary
from bot.storage.models import Answer, CaseDelivery, Delivery, ReviewCard
from tests.factories import build_org, open_test_round


async def test_answer_recorded_once_first_answer_stands(app, clock):
    tree = await build_org(app)
    rnd = await open_test_round(app, tree.root, ["t-single-001", "t-judge-001"])
    member = tree.members[tree.branches[0].id][0]
    sender = tree.senders[member.id]
    first = (await app.service.handle(sender, SubmitAnswer("A", rnd.id, "t-single-001")))[0]
    again = (await app.service.handle(sender, SubmitAnswer("C", rnd.id, "t-single-001")))[0]
    assert isinstance(first, AnswerResult) and isinstance(again, AnswerResult)
    assert (first.correct, first.duplicate) == (False, False)
    assert (again.choice, again.correct, again.duplicate) == ("A", False, True)
    async with app.db.session() as s:
        rows = (await s.exec(select(Answer).where(Answer.member_id == member.id))).all()
    assert [(r.item_id, r.choice, r.correct) for r in rows] == [("t-single-001", "A", False)]


async def test_engine_level_double_insert_is_ignored(app, clock):
    tree = await build_org(app, per_branch=1, bind=False)
    rnd = await open_test_round(app, tree.root, ["t-multiple-001"])
    member = tree.secretaries[0]
    async with app.db.session() as s:
        from bot.storage.models import BankItem

        item = await s.get(BankItem, "t-multiple-001")
        a = await quiz.record_answer(s, member_id=member.id, rnd=rnd, item=item, choice="ACD",
                                     channel="console", now=clock())
        b = await quiz.record_answer(s, member_id=member.id, rnd=rnd, item=item, choice="AC",
                                     channel="console", now=clock())
        count = (await s.exec(select(func.count()).select_from(Answer))).one()
    assert a.answer.correct and not a.duplicate
    assert b.duplicate and b.answer.choice == "ACD" and b.answer.correct
    assert count == 1


def test_grading_all_types():
    assert quiz.grade("C", "C") and not quiz.grade("C", "A")
    assert quiz.grade("ACD", "ACD") and quiz.grade("ACD", "DCA")
    assert not quiz.grade("ACD", "AC")  # partial choice on a multiple item is wrong
    assert not quiz.grade("ACD", "ABCD")  # over-complete is wrong too
    assert quiz.grade("A", "A") and not quiz.grade("B", "A")  # judge: A = 正确, B = 错误


async def test_open_round_idempotent_and_one_delivery_per_member(app):
    tree = await build_org(app, bind=False)
    r1 = await open_test_round(app, tree.root, ["t-single-001"], occurrence_key="weekly:1:2026-11-23")
    r2 = await open_test_round(app, tree.root, ["t-single-002"], occurrence_key="weekly:1:2026-11-23")
    assert r1.id == r2.id
    async with app.db.session() as s:
        n = (await s.exec(select(func.count()).select_from(Delivery))).one()
    assert n == len(tree.all_members()) + 1  # + the admin at the root


async def test_typed_answers_walk_through_the_round_and_report_excludes_late(app, clock):
    tree = await build_org(app)
    branch = tree.branches[0]
    rnd = await open_test_round(app, tree.root, ["t-single-001", "t-multiple-001", "t-judge-002"], days=7)
    members = tree.members[branch.id]
    for m in members[:5]:
        s = tree.senders[m.id]
        card = (await app.service.handle(s, ShowQuiz()))[0]
        assert isinstance(card, QuizCard) and card.item_id == "t-single-001" and card.position == 1
        r1 = (await app.service.handle(s, SubmitAnswer("C")))[0]
        assert r1.correct and r1.next_card.item_id == "t-multiple-001"
        r2 = (await app.service.handle(s, SubmitAnswer("AC")))[0]
        assert not r2.correct and r2.key == "ACD"
        r3 = (await app.service.handle(s, SubmitAnswer("B")))[0]
        assert r3.correct and r3.next_card is None and r3.remaining == 0
    clock.advance(days=8)  # past the deadline: the next answer is late
    late_member = members[5]
    late = (await app.service.handle(tree.senders[late_member.id], SubmitAnswer("C", rnd.id, "t-single-001")))[0]
    assert late.late and late.correct
    async with app.db.session() as s:
        summary = await branch_summary(
            s, org=branch, period=Period(rnd.opens_at, rnd.opens_at + timedelta(days=1), "本轮"), min_group=5)
    assert summary.valid_answers == 15 and summary.correct_answers == 10
    assert summary.late_answers == 1 and summary.responded == 5 and summary.pushed == 7
    assert not summary.withheld
    per_item = {i.item_id: i for i in summary.items}
    assert per_item["t-multiple-001"].option_counts == {"A": 5, "C": 5}


async def test_wrong_answer_brings_case_once_per_topic_and_reasks_later(app, clock):
    tree = await build_org(app)
    rnd1 = await open_test_round(app, tree.root, ["t-judge-001"])
    m = tree.members[tree.branches[0].id][0]
    s = tree.senders[m.id]
    wrong = (await app.service.handle(s, SubmitAnswer("B", rnd1.id, "t-judge-001")))[0]
    assert not wrong.correct and wrong.case is not None and wrong.case.case_id == "case-t-001"
    # Nothing is due yet: the FSRS re-ask comes on a later day.
    assert isinstance((await app.service.handle(s, ShowQuiz()))[0], Notice)
    clock.advance(days=2)
    card = (await app.service.handle(s, ShowQuiz()))[0]
    assert isinstance(card, QuizCard) and card.is_review and card.item_id == "t-judge-001"
    again = (await app.service.handle(s, SubmitAnswer("A")))[0]
    assert again.correct and again.round_id is None
    async with app.db.session() as sess:
        review = await sess.get(ReviewCard, (m.id, "t-judge-001"))
        assert review.due_at > clock() + timedelta(days=1)
    # A second wrong answer on the same topic within 30 days brings no second case.
    rnd2 = await open_test_round(app, tree.root, ["t-judge-001"])
    wrong2 = (await app.service.handle(s, SubmitAnswer("B", rnd2.id, "t-judge-001")))[0]
    assert not wrong2.correct and wrong2.case is None
    async with app.db.session() as sess:
        assert (await sess.exec(select(func.count()).select_from(CaseDelivery))).one() == 1


async def test_answer_path_never_sleeps_on_the_event_loop(app, monkeypatch):
    """A blocking sleep stalls every chat the process serves (py-fsrs sleeps 1 ms when it
    picks a new card's id itself): a first wrong answer, which creates the FSRS card, must not."""
    tree = await build_org(app)
    rnd = await open_test_round(app, tree.root, ["t-judge-001"])
    member = tree.members[tree.branches[0].id][0]
    sleeps: list[float] = []
    monkeypatch.setattr(time, "sleep", sleeps.append)
    wrong = (await app.service.handle(tree.senders[member.id], SubmitAnswer("B", rnd.id, "t-judge-001")))[0]
    assert isinstance(wrong, AnswerResult) and not wrong.correct
    async with app.db.session() as s:
        assert await s.get(ReviewCard, (member.id, "t-judge-001")) is not None
    assert sleeps == []


async def test_button_answer_for_undelivered_item_is_refused(app):
    tree = await build_org(app)
    b1, b2 = tree.branches
    rnd = await open_test_round(app, b1, ["t-single-001"])
    outsider = tree.members[b2.id][0]
    res = (await app.service.handle(tree.senders[outsider.id], SubmitAnswer("C", rnd.id, "t-single-001")))[0]
    assert isinstance(res, Notice) and "不在您的待答题目" in res.text
    insider = tree.members[b1.id][0]
    res = (await app.service.handle(tree.senders[insider.id], SubmitAnswer("A", rnd.id, "t-single-002")))[0]
    assert isinstance(res, Notice)  # item not in that round
    async with app.db.session() as s:
        assert (await s.exec(select(func.count()).select_from(Answer))).one() == 0


async def test_choose_items_prefers_unseen_and_skips_drafts(app):
    tree = await build_org(app, bind=False)
    import random

    async with app.db.session() as s:
        first = await quiz.choose_items(s, tree.root, 3, rng=random.Random(1))
    assert "t-draft-001" not in first and len(set(first)) == 3
    await open_test_round(app, tree.root, first)
    async with app.db.session() as s:
        second = await quiz.choose_items(s, tree.root, 3, rng=random.Random(2))
    assert not set(first) & set(second)  # 6 approved items: the second round is all new
