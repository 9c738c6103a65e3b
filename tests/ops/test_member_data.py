"""Personal-data requests on SQLite and PostgreSQL: export everything about a member; erase the
person while the statistics stay exactly as they were."""

from __future__ import annotations

import json
import stat
from datetime import timedelta

import pytest
from sqlmodel import col, func, select

from bot.core.commands import ShowMe, SubmitAnswer
from bot.core.invites import issue_code
from bot.core.results import Notice
from bot.ops.member_data import MemberDataError, erase_member, export_member, find_member
from bot.reports.period import Period
from bot.reports.stats import branch_summary
from bot.storage.models import (
    Answer,
    AuditLog,
    CaseDelivery,
    ChannelIdentity,
    Delivery,
    InviteCode,
    Member,
    ReviewCard,
)
from tests.conftest import TEST_BANK
from tests.factories import build_org, open_test_round
from tests.ops.cli import run_cli


async def scenario(app, clock):  # type: ignore[no-untyped-def]
    """A branch that answered one round; the subject got one item wrong (review card, case)."""
    tree = await build_org(app, per_branch=5)
    rnd = await open_test_round(app, tree.root, ["t-single-001", "t-judge-001"])
    subject = tree.members[tree.branches[0].id][0]
    async with app.db.session() as s:
        m = await s.get(Member, subject.id)
        m.external_key, m.position = "GH-0042", "科长"
        s.add(m)
        await s.commit()
        await issue_code(s, m, now=clock(), ttl_days=30)  # an unused invite, still valid
        await s.commit()
    for i, m in enumerate(tree.all_members()):
        sender = tree.senders[m.id]
        await app.service.handle(sender, SubmitAnswer("A" if m.id == subject.id else "CB"[i % 2], rnd.id,
                                                      "t-single-001"))
        await app.service.handle(sender, SubmitAnswer("A", rnd.id, "t-judge-001"))
    return tree, rnd, subject


async def count(app, model, **where) -> int:  # type: ignore[no-untyped-def]
    async with app.db.session() as s:
        stmt = select(func.count()).select_from(model)
        for k, v in where.items():
            stmt = stmt.where(getattr(model, k) == v)
        return (await s.exec(stmt)).one()


async def test_export_holds_everything_about_the_member(app, clock):
    tree, rnd, subject = await scenario(app, clock)
    async with app.db.session() as s:
        m = await find_member(s, "GH-0042")
        data = await export_member(s, m, now=clock())
    text = json.dumps(data, ensure_ascii=False)  # JSON-ready as it is
    assert data["member"]["name"] == subject.name and data["member"]["position"] == "科长"
    assert data["organization"]["path"] == ["机关党委", "第一支部"]
    assert [(i["platform"], i["external_id"]) for i in data["identities"]] == [("console", f"console-{subject.id}")]
    assert {(a["item_id"], a["choice"], a["correct"]) for a in data["answers"]} == {
        ("t-single-001", "A", False), ("t-judge-001", "A", True)}
    assert data["answers"][0]["question"]  # the question as shown, so the answer means something
    assert [d["round_id"] for d in data["deliveries"]] == [rnd.id]
    assert [c["item_id"] for c in data["review_cards"]] == ["t-single-001"]
    assert len(data["case_deliveries"]) == 1 and data["case_deliveries"][0]["title"]
    assert len(data["invite_codes"]) == 2  # the one used to bind and the fresh one
    async with app.db.session() as s:
        codes = (await s.exec(select(InviteCode.code).where(InviteCode.member_id == subject.id))).all()
    assert codes and not any(c in text for c in codes)  # invite codes are credentials: never exported
    other = tree.members[tree.branches[1].id][0]
    assert other.name not in text


async def test_erase_anonymises_and_keeps_statistics(app, clock):
    tree, _rnd, subject = await scenario(app, clock)
    sender = tree.senders[subject.id]
    period = Period(clock.now - timedelta(days=1), clock.now + timedelta(days=8), "本轮")

    async def summary():  # type: ignore[no-untyped-def]
        async with app.db.session() as s:
            return await branch_summary(s, org=tree.root, period=period, min_group=1)

    before = await summary()
    answers_before = await count(app, Answer)
    async with app.db.session() as s:
        m = await find_member(s, subject.name)
        deleted = await erase_member(s, m, now=clock(), actor="cli:test")
    assert deleted["identities"] == 1 and deleted["invite_codes"] == 2
    assert deleted["review_cards"] == 1 and deleted["case_deliveries"] == 1

    async with app.db.session() as s:
        m = await s.get(Member, subject.id)
        audit = (await s.exec(select(AuditLog).where(AuditLog.action == "erase-member"))).all()
    assert m.name == f"已注销成员#{subject.id}" and not m.active
    assert (m.external_key, m.rank, m.position, m.joined_party_year, m.tags) == (None, None, None, None, [])
    assert m.org_id == subject.org_id  # still counted in its branch's history
    for model in (ChannelIdentity, InviteCode, ReviewCard, CaseDelivery):
        assert await count(app, model, member_id=subject.id) == 0
    assert await count(app, Answer, member_id=subject.id) == 2
    assert await count(app, Delivery, member_id=subject.id) == 1
    assert await count(app, Answer) == answers_before
    assert [(a.actor, a.detail["member_id"]) for a in audit] == [("cli:test", subject.id)]
    assert subject.name not in json.dumps(audit[0].detail, ensure_ascii=False)

    after = await summary()
    for field in ("pushed", "responded", "valid_answers", "correct_answers", "late_answers", "returned", "people"):
        assert getattr(after, field) == getattr(before, field), field
    assert after.items == before.items and after.accuracy == before.accuracy
    assert after.members == before.members - 1  # no longer a current member

    # The chat account is no longer bound: the person gets the polite "not bound" reply.
    reply = (await app.service.handle(sender, ShowMe()))[0]
    assert isinstance(reply, Notice) and "绑定" in reply.text
    # Everyone else is untouched.
    other = tree.members[tree.branches[0].id][1]
    assert await count(app, ChannelIdentity, member_id=other.id) == 1


async def test_lookup_refuses_ambiguous_and_unknown_names(app, clock):
    tree = await build_org(app, per_branch=1, bind=False)
    async with app.db.session() as s:
        twin_a, twin_b = tree.members[tree.branches[0].id][0], tree.members[tree.branches[1].id][0]
        for twin, key in ((twin_a, "A-1"), (twin_b, "B-1")):
            row = await s.get(Member, twin.id)
            row.name, row.external_key = "张伟", key
            s.add(row)
        await s.commit()
        with pytest.raises(MemberDataError, match="有 2 位成员叫「张伟」"):
            await find_member(s, "张伟")
        with pytest.raises(MemberDataError, match="没有找到"):
            await find_member(s, "李四")
        assert (await find_member(s, "B-1")).id == twin_b.id
        assert (await find_member(s, f"#{twin_a.id}")).id == twin_a.id
        with pytest.raises(MemberDataError, match="没有编号"):
            await find_member(s, "#99999")


async def test_cli_export_and_erase_with_confirmation(sqlite_app, sqlite_url, clock, tmp_path):
    _tree, _rnd, subject = await scenario(sqlite_app, clock)
    env = {"QINGFENG_DATABASE_URL": sqlite_url, "QINGFENG_BANK_PATH": str(TEST_BANK)}

    res = run_cli(["export-member-data", "GH-0042", "--out", str(tmp_path / "out.json")], tmp_path, env=env)
    assert res.returncode == 0, res.stderr
    exported = json.loads((tmp_path / "out.json").read_text("utf-8"))
    assert exported["member"]["id"] == subject.id
    assert stat.S_IMODE((tmp_path / "out.json").stat().st_mode) == 0o600  # personal data: owner only

    declined = run_cli(["erase-member", "GH-0042"], tmp_path, env=env, input="n\n")
    assert declined.returncode == 1 and "已取消" in declined.stdout
    assert await count(sqlite_app, ChannelIdentity, member_id=subject.id) == 1

    by_name = run_cli(["erase-member", subject.name, "--yes"], tmp_path, env=env)
    assert by_name.returncode == 0, by_name.stderr  # names are unique in this tree: the name works
    assert "已注销" in by_name.stdout
    async with sqlite_app.db.session() as s:
        names = (await s.exec(select(Member.name).where(col(Member.id) == subject.id))).one()
    assert names == f"已注销成员#{subject.id}"
    again = run_cli(["erase-member", f"#{subject.id}", "--yes"], tmp_path, env=env)
    assert again.returncode == 0 and "已注销过" in again.stdout
    unknown = run_cli(["erase-member", "GH-0042", "--yes"], tmp_path, env=env)
    assert unknown.returncode == 1 and "没有找到" in unknown.stderr
