"""Roster import from CSV and .xlsx with Chinese headers; errors name the row; nothing half-written."""

from __future__ import annotations

import pytest
from openpyxl import Workbook
from sqlmodel import func, select

from bot.core.orgs import find_org
from bot.core.roster import RosterError, import_roster
from bot.storage.models import InviteCode, Member, Organization

CSV = """姓名,组织,角色,工号,行政级别,职务,入党年份,标签
张三,机关党委/第一党总支/第三支部,支部书记,1001,正处,处长,1998,关键岗位
李四,机关党委/第一党总支/第三支部,党员,1002,科员,科员,2019年7月,新提任、年轻干部
王五,机关党委/第二支部,,1003,副科,,2010,
"""


async def test_csv_roster_builds_tree_members_and_codes(app, tmp_path, clock):
    path = tmp_path / "roster.csv"
    path.write_text(CSV, encoding="utf-8-sig")
    async with app.db.session() as s:
        report = await import_roster(s, path, now=clock(), ttl_days=14)
        assert (report.created, report.updated) == (3, 0)
        assert len({code for _, _, code in report.codes}) == 3
        branch = await find_org(s, "第三支部")
        assert branch.kind == "党支部"
        total = await s.get(Organization, int(branch.path.strip("/").split("/")[1]))
        assert total.name == "第一党总支" and total.kind == "党总支"
        li = (await s.exec(select(Member).where(Member.name == "李四"))).one()
        assert (li.rank_level, li.joined_party_year, li.tags) == (2, 2019, ["新提任", "年轻干部"])
        zhang = (await s.exec(select(Member).where(Member.name == "张三"))).one()
        assert zhang.role == "secretary" and zhang.rank_level == 6
    # Re-import updates by 工号 instead of duplicating.
    path.write_text(CSV.replace("李四,机关党委/第一党总支/第三支部", "李四,机关党委/第二支部"), encoding="utf-8")
    async with app.db.session() as s:
        again = await import_roster(s, path, now=clock(), ttl_days=14)
        assert (again.created, again.updated) == (0, 3)
        assert (await s.exec(select(func.count()).select_from(Member))).one() == 3
        li = (await s.exec(select(Member).where(Member.name == "李四"))).one()
        assert li.org_id == (await find_org(s, "第二支部")).id


async def test_xlsx_roster(app, tmp_path, clock):
    wb = Workbook()
    ws = wb.active
    ws.append(["姓名", "所在组织", "级别", "入党时间"])
    ws.append(["赵六", "机关党委/第一支部", "副处", 2001])
    ws.append([None, None, None, None])
    path = tmp_path / "roster.xlsx"
    wb.save(path)
    async with app.db.session() as s:
        report = await import_roster(s, path, now=clock(), ttl_days=14)
        assert report.created == 1
        zhao = (await s.exec(select(Member))).one()
        assert zhao.rank_level == 5 and zhao.joined_party_year == 2001


@pytest.mark.parametrize(("body", "message"), [
    ("姓名,组织\n张三,\n", "第 2 行: 组织为空"),
    ("姓名,组织,角色\n张三,机关党委,队长\n", "未知角色"),
    ("姓名,部门\n张三,x\n", "缺少必需的列：组织"),
    ("姓名,组织,入党年份\n张三,机关党委,去年\n", "入党年份"),
])
async def test_bad_rows_are_named_and_nothing_is_written(app, tmp_path, clock, body, message):
    path = tmp_path / "bad.csv"
    path.write_text(body, encoding="utf-8")
    async with app.db.session() as s:
        with pytest.raises(RosterError, match=message):
            await import_roster(s, path, now=clock(), ttl_days=14)
        assert (await s.exec(select(func.count()).select_from(Member))).one() == 0
        assert (await s.exec(select(func.count()).select_from(InviteCode))).one() == 0
