"""Authorization matrix: every command and report scope x every kind of caller, table-driven."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from bot.core.commands import Help, ShowCase, ShowMe, ShowQuiz, ShowReport, SubmitAnswer
from bot.core.invites import issue_code, redeem
from bot.core.orgs import ensure_path
from bot.core.results import BranchSummary, CaseCard, HelpText, MemberRecord, Notice, QuizCard
from bot.core.service import Sender
from bot.storage.models import Member, Role
from tests.factories import open_test_round


@dataclass
class World:
    senders: dict[str, Sender]
    round_a: int


async def build_world(app) -> World:
    """党委 → 第一总支 → 甲支部 / 乙支部; the round goes to 甲支部 only."""
    async with app.db.session() as s:
        root = await ensure_path(s, ["机关党委"])
        total = await ensure_path(s, ["机关党委", "第一党总支"])
        a = await ensure_path(s, ["机关党委", "第一党总支", "甲支部"])
        b = await ensure_path(s, ["机关党委", "第一党总支", "乙支部"])
        people = {
            "member": Member(name="甲党员", org_id=a.id),
            "secretary": Member(name="甲书记", org_id=a.id, role=Role.secretary),
            "sibling_secretary": Member(name="乙书记", org_id=b.id, role=Role.secretary),
            "parent_secretary": Member(name="总支书记", org_id=total.id, role=Role.secretary),
            "admin": Member(name="管理员", org_id=root.id, role=Role.admin),
        }
        for extra in range(5):  # enough people in 甲支部 for the privacy floor
            s.add(Member(name=f"甲其他{extra}", org_id=a.id))
        s.add_all(people.values())
        await s.commit()
        senders = {"unbound": Sender("console", "stranger")}
        for role, m in people.items():
            code = await issue_code(s, m, now=app.service.clock(), ttl_days=3)
            await s.commit()
            await redeem(s, code=code, platform="console", external_id=role, now=app.service.clock())
            senders[role] = Sender("console", role)
    rnd = await open_test_round(app, a, ["t-single-001"])
    return World(senders, rnd.id)


ROLES = ["unbound", "member", "secretary", "sibling_secretary", "parent_secretary", "admin"]
Y, N = True, False
# command -> allowed per role, in ROLES order
MATRIX = {
    "help": (Y, Y, Y, Y, Y, Y),
    "quiz": (N, Y, Y, N, N, N),  # only people with a delivery of 甲支部's round get an item
    "answer_delivered": (N, Y, Y, N, N, N),
    "me": (N, Y, Y, Y, Y, Y),
    "case": (N, Y, Y, Y, Y, Y),
    "report_own": (N, N, Y, Y, Y, Y),  # "own" = the caller's own organisation
    "report_甲支部": (N, N, Y, N, Y, Y),
    "report_乙支部": (N, N, N, Y, Y, Y),
    "report_第一党总支": (N, N, N, N, Y, Y),
    "report_机关党委": (N, N, N, N, N, Y),
}
ALLOWED_TYPES = {
    "help": HelpText, "quiz": QuizCard, "answer_delivered": object, "me": MemberRecord, "case": CaseCard,
}


def command(name: str, world: World):
    if name == "help":
        return Help()
    if name == "quiz":
        return ShowQuiz()
    if name == "answer_delivered":
        return SubmitAnswer("C", world.round_a, "t-single-001")
    if name == "me":
        return ShowMe()
    if name == "case":
        return ShowCase()
    if name == "report_own":
        return ShowReport("")
    return ShowReport(name.removeprefix("report_"))


@pytest.mark.parametrize("name", list(MATRIX))
async def test_authorization_matrix(app, name):
    world = await build_world(app)
    for role, allowed in zip(ROLES, MATRIX[name], strict=True):
        (result, *_) = await app.service.handle(world.senders[role], command(name, world))
        if name.startswith("report"):
            # Allowed: a summary, or "nothing pushed there yet"; refused: NotAllowed / NotBound.
            granted = isinstance(result, BranchSummary) or (isinstance(result, Notice) and result.error is None)
        elif name == "answer_delivered":
            granted = not isinstance(result, Notice)
        else:
            granted = isinstance(result, ALLOWED_TYPES[name])
        assert granted == allowed, f"{name} as {role}: got {result!r}"
        if not granted:
            assert isinstance(result, Notice) and result.text  # refusals are polite sentences
            assert result.error in ("NotAllowed", "NotBound", "NothingToAnswer", "NotDelivered")
