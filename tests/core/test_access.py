"""Permissions live in core: own record only; secretaries their subtree; admins everything."""

from __future__ import annotations

import pytest

from bot.core.access import Viewer, check_member_record
from bot.core.commands import Help, ShowMe, ShowQuiz, ShowReport
from bot.core.errors import NotAllowed
from bot.core.results import BranchSummary, HelpText, MemberRecord, Notice
from bot.core.service import Sender
from bot.storage.models import Organization
from tests.factories import build_org, open_test_round


async def _viewer(app, member):
    async with app.db.session() as s:
        org = await s.get(Organization, member.org_id)
    return Viewer(member=member, org=org)


async def test_member_cannot_read_another_members_record(app):
    tree = await build_org(app)
    b1 = tree.branches[0]
    alice, bob = tree.members[b1.id][:2]
    own = (await app.service.handle(tree.senders[alice.id], ShowMe()))[0]
    assert isinstance(own, MemberRecord) and own.name == alice.name
    viewer = await _viewer(app, alice)
    async with app.db.session() as s:
        with pytest.raises(NotAllowed):
            await app.service.member_record(s, viewer, bob)
    # Not even the branch secretary reads an individual's record.
    sec_viewer = await _viewer(app, tree.secretaries[0])
    with pytest.raises(NotAllowed):
        check_member_record(sec_viewer, bob)


async def test_report_scope_by_role(app):
    tree = await build_org(app)
    b1, b2 = tree.branches
    await open_test_round(app, tree.root, ["t-single-001"])
    sec1 = tree.senders[tree.secretaries[0].id]
    member = tree.senders[tree.members[b1.id][0].id]
    admin = tree.senders[tree.admin.id]

    mine = (await app.service.handle(sec1, ShowReport("")))[0]
    assert isinstance(mine, BranchSummary) and mine.org_name == b1.name
    sibling = (await app.service.handle(sec1, ShowReport(b2.name)))[0]
    assert isinstance(sibling, Notice) and "本组织及下级" in sibling.text
    parent = (await app.service.handle(sec1, ShowReport("机关党委")))[0]
    assert isinstance(parent, Notice)
    refused = (await app.service.handle(member, ShowReport("")))[0]
    assert isinstance(refused, Notice) and "支部书记" in refused.text
    for target in (b1.name, b2.name, "机关党委"):
        ok = (await app.service.handle(admin, ShowReport(target)))[0]
        assert isinstance(ok, BranchSummary) and ok.org_name == target


async def test_privacy_floor_withholds_small_groups(app):
    tree = await build_org(app, per_branch=3)
    await open_test_round(app, tree.root, ["t-single-001"])
    from bot.core.commands import SubmitAnswer

    for m in tree.members[tree.branches[0].id]:
        await app.service.handle(tree.senders[m.id], SubmitAnswer("C"))
    summary = (await app.service.handle(tree.senders[tree.secretaries[0].id], ShowReport("")))[0]
    assert summary.withheld and summary.valid_answers == 3  # 3 people < 5: rendering withholds


async def test_unbound_chat_is_told_how_to_bind(app):
    await build_org(app)
    stranger = Sender("console", "nobody")
    res = await app.service.handle(stranger, ShowQuiz())
    assert isinstance(res[0], Notice) and "绑定" in res[0].text
    help_ = (await app.service.handle(stranger, Help()))[0]
    assert isinstance(help_, HelpText) and not help_.bound
