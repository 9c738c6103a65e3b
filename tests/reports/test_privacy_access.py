"""Who may see a report, and what a report never shows: small groups and names."""

from __future__ import annotations

import re
from zoneinfo import ZoneInfo

from sqlmodel import col, update

from bot.channels.text import render_summary
from bot.core.commands import ShowReport
from bot.core.results import BranchSummary, Notice
from bot.reports.document import build_document
from bot.reports.export import to_text
from bot.reports.model import FullReport
from bot.reports.period import round_period
from bot.reports.report import full_report
from bot.storage.models import Organization
from tests.factories import build_org, open_test_round
from tests.reports import builders as b

TZ = ZoneInfo("Asia/Shanghai")
ITEMS = ["t-single-001", "t-single-002", "t-judge-002"]


async def _answer_all(app, tree, rnd, members) -> None:  # type: ignore[no-untyped-def]
    await b.answers(app, rnd, [(m.id, i, k % 2 == 0) for k, m in enumerate(members) for i in ITEMS])


async def test_member_refused_secretary_subtree_admin_anywhere(app):
    tree = await build_org(app, per_branch=6, branches=2)
    rnd = await open_test_round(app, tree.root, ITEMS)
    await _answer_all(app, tree, rnd, tree.all_members())
    first, second = tree.branches
    member = tree.members[first.id][0]
    secretary = tree.secretaries[0]
    refused = (await app.service.handle(tree.senders[member.id], ShowReport("")))[0]
    assert isinstance(refused, Notice) and "仅向支部书记" in refused.text
    own = (await app.service.handle(tree.senders[secretary.id], ShowReport("")))[0]
    assert isinstance(own, FullReport) and own.org_id == first.id and own.valid_answers == 7 * 3
    sibling = (await app.service.handle(tree.senders[secretary.id], ShowReport(second.name)))[0]
    assert isinstance(sibling, Notice) and "只能查看本组织及下级组织" in sibling.text
    upward = (await app.service.handle(tree.senders[secretary.id], ShowReport("机关党委 本周")))[0]
    assert isinstance(upward, Notice)
    for target in ("机关党委", second.name):
        ok = (await app.service.handle(tree.senders[tree.admin.id], ShowReport(f"{target} 本周")))[0]
        assert isinstance(ok, FullReport) and ok.org_name == target
    # A branch report names its place among siblings but carries none of their numbers.
    assert own.sibling_rank is not None and own.sibling_rank.of == 2 and own.units is None
    assert "第二支部" not in render_summary(own)


async def test_report_arguments_and_polite_errors(app, clock):
    tree = await build_org(app, per_branch=6, branches=1)
    secretary = tree.senders[tree.secretaries[0].id]
    empty = (await app.service.handle(secretary, ShowReport("")))[0]
    assert isinstance(empty, Notice) and "还没有推送过学习题" in empty.text
    unknown = (await app.service.handle(secretary, ShowReport("第七支部 本月")))[0]
    assert isinstance(unknown, Notice) and "没有找到组织「第七支部」" in unknown.text
    rnd = await open_test_round(app, tree.root, ITEMS)
    await _answer_all(app, tree, rnd, tree.all_members())
    for args in ("", "本轮", "本周", "本月", f"第{rnd.id}轮", "第一支部 2026-11-01 至 2026-11-30", "全部"):
        r = (await app.service.handle(secretary, ShowReport(args)))[0]
        assert isinstance(r, FullReport) and r.valid_answers == 21, args


async def test_privacy_floor_withholds_small_groups_everywhere(app):
    """9 members answer; 3 of them hold 行政级别 副处 (rank 5) — fewer than 5, so withheld, and
    the next smallest rank group (科员, 6 people) with it, else it could be recovered from the total."""
    branch = await b.org(app, "机关党委/隐私支部")
    levels = [2] * 6 + [5] * 3 + [3]
    ids = await b.members(app, branch, 10, key="p", attrs=lambda i: {"rank_level": levels[i],
                                                                       "tags": ["年轻干部"] if i < 2 else []})
    rnd = await b.open_round(app, branch, ITEMS)
    await b.answers(app, rnd, [(m, i, True) for m in ids[:9] for i in ITEMS])
    async with app.db.session() as s:
        report = await full_report(s, org=branch, period=round_period(rnd.id), min_group=5, tz=TZ)
    assert not report.withheld and report.people == 9
    rank = next(t for t in report.attributes if t.key == "rank")
    rows = {r.label: r for r in rank.rows}
    assert set(rows) == {"科员", "副处级"}  # 正科级 (level 3) never answered
    assert rows["副处级"].withheld and rows["科员"].withheld
    assert all((r.people, r.answers, r.correct) == (0, 0, 0) for r in rank.rows if r.withheld)
    tag = next(t for t in report.attributes if t.key == "tag")
    assert [(r.label, r.withheld) for r in tag.rows] == [("年轻干部", True)]
    text = to_text(build_document(report, TZ, with_charts=False))
    assert "副处级\t少于5人，不予显示" in text
    # Fewer than five people in the whole scope: nothing but the push count is shown.
    small = await b.org(app, "机关党委/三人小组")
    few = await b.members(app, small, 3, key="f")
    rnd2 = await b.open_round(app, small, ITEMS)
    await b.answers(app, rnd2, [(m, i, True) for m in few for i in ITEMS])
    async with app.db.session() as s:
        tiny = await full_report(s, org=small, period=round_period(rnd2.id), min_group=5, tz=TZ)
    assert tiny.withheld and tiny.items == [] and tiny.topics == [] and tiny.attributes == []
    shown = render_summary(tiny) + to_text(build_document(tiny, TZ, with_charts=False))
    assert "少于 5 人" in shown and "少于5人" in shown
    assert "正确答案比例" not in shown and not re.search(r"\d+\.\d+%", shown)  # no rate of any kind


async def test_names_only_when_the_organisation_turns_the_list_on(app):
    tree = await build_org(app, per_branch=6, branches=1)
    rnd = await open_test_round(app, tree.root, ITEMS)
    branch = tree.branches[0]
    answered = tree.members[branch.id][:5]
    await _answer_all(app, tree, rnd, answered)
    silent = [m.name for m in tree.members[branch.id][5:]] + [tree.secretaries[0].name]
    async with app.db.session() as s:
        off = await full_report(s, org=branch, period=round_period(rnd.id), min_group=5, tz=TZ)
    assert off.nonresponders is None
    text = render_summary(off) + to_text(build_document(off, TZ, with_charts=False))
    assert not any(m.name in text for m in tree.all_members())
    async with app.db.session() as s:
        await s.exec(update(Organization).where(col(Organization.id) == tree.root.id)  # type: ignore[call-overload]
                     .values(named_nonresponders=True))
        await s.commit()
        on = await full_report(s, org=branch, period=round_period(rnd.id), min_group=5, tz=TZ)
    assert sorted(n for n, _org, _missed in on.nonresponders) == sorted(silent)
    assert "附：未作答名单" in to_text(build_document(on, TZ, with_charts=False))
    assert all(name in render_summary(on) for name in silent)


async def test_plain_branch_summary_still_renders(app):
    """Adapters written against BranchSummary keep working with the old short form."""
    s = BranchSummary(org_id=1, org_name="第一支部", period_label="本周", members=10, pushed=10, responded=8,
                      valid_answers=24, correct_answers=20, late_answers=1, items=[], withheld=False, min_group=5)
    text = render_summary(s)
    assert "在24份有效回答中，正确答案比例为83.3%。" in text and "逾期作答 1 份" in text
