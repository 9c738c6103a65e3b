"""`qingfeng org import --from-wecom`: the WeCom directory read through wechatpy (pages, errors,
fallback) against the fake WeCom API, written into the org tree with WeCom identities bound."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlmodel import col, select

from bot.channels.wecom.component import wecom_caller
from bot.channels.wecom_directory import DirectoryError, WeComDirectory, import_directory
from bot.core.orgs import org_path_names
from bot.storage.models import ChannelIdentity, Member, Organization
from tests.channels.wx_support import WECOM, wecom_app, wecom_fake
from tests.conftest import TEST_BANK

ROOT = Path(__file__).resolve().parents[2]


def company(fake) -> None:
    """某市直机关工委 (1) ─ 机关党委 (2) ─ 第一支部 (3), 第二支部 (4); 后勤中心 (5) under 1."""
    fake.add_department(1, "某市直机关工委", 0)
    fake.add_department(2, "机关党委", 1)
    fake.add_department(3, "第一支部", 2)
    fake.add_department(4, "第二支部", 2)
    fake.add_department(5, "后勤中心", 1)
    for i in range(5):
        fake.add_user(f"b1-{i}", f"一支部党员{i}", [3], position="科员")
        fake.add_user(f"b2-{i}", f"二支部党员{i}", [4])
    fake.add_user("sec1", "李书记", [3, 5], main_department=3, position="支部书记")
    fake.add_user("hq-1", "后勤甲", [5])
    fake.add_user("gone-1", "已离职", [4], status=5)


@pytest.fixture
async def directory(database_url, clock):
    with wecom_fake(clock) as fake:
        company(fake)
        app = await wecom_app(database_url, clock, fake)
        api = wecom_caller(app.settings, app)
        try:
            yield app, fake, api
        finally:
            await api.close()
            await app.db.dispose()


async def run_import(app, api, clock, **kw):
    async with app.db.session() as s:
        return await import_directory(s, WeComDirectory(api, **{"page_size": 4} | kw.pop("reader", {})),
                                      now=clock(), **({"root": None} | kw))


async def member_paths(app) -> dict[str, tuple[str, str, bool]]:
    async with app.db.session() as s:
        members = (await s.exec(select(Member).order_by(col(Member.id)))).all()
        out = {}
        for m in members:
            org = await s.get(Organization, m.org_id)
            out[m.external_key] = ("/".join(await org_path_names(s, org)), m.name, m.active)
    return out


async def identities(app) -> dict[str, bool]:
    async with app.db.session() as s:
        rows = (await s.exec(select(ChannelIdentity).where(ChannelIdentity.platform == "wecom"))).all()
    return {r.external_id: r.active for r in rows}


async def test_import_builds_tree_members_and_bound_identities(directory, clock):
    app, fake, api = directory
    report = await run_import(app, api, clock)
    assert (report.departments, report.created, report.updated, report.identities_bound) == (5, 12, 0, 12)
    assert report.pages == 4  # 14 (user, department) rows in pages of 4
    paths = await member_paths(app)
    assert paths["b1-0"] == ("某市直机关工委/机关党委/第一支部", "一支部党员0", True)
    assert paths["sec1"][0] == "某市直机关工委/机关党委/第一支部"  # main department, not 后勤中心
    assert paths["hq-1"][0] == "某市直机关工委/后勤中心"
    assert "gone-1" not in paths  # somebody who left is never created
    assert set(await identities(app)) == set(paths)

    # Re-import after changes: moved, renamed, departed; nothing duplicated.
    fake.users["b1-0"].department, fake.users["b1-0"].main_department = [4], 4
    fake.users["b2-1"].name = "二支部党员一号"
    fake.users["b2-2"].status = 5
    again = await run_import(app, api, clock)
    assert (again.created, again.updated, again.deactivated) == (0, 11, 1)
    paths = await member_paths(app)
    assert paths["b1-0"][0].endswith("第二支部") and paths["b2-1"][1] == "二支部党员一号"
    assert paths["b2-2"][2] is False and (await identities(app))["b2-2"] is False
    assert len(paths) == 12


async def test_import_of_a_subtree_and_members_talk_at_once(directory, clock):
    app, _fake, api = directory
    report = await run_import(app, api, clock, root=2)
    assert report.departments == 3 and report.created == 11 and report.outside_root >= 1
    paths = await member_paths(app)
    assert paths["b2-3"][0] == "机关党委/第二支部" and "hq-1" not in paths

    from bot.core.commands import ShowMe
    from bot.core.service import Sender

    [record] = await app.service.handle(Sender("wecom", "b2-3"), ShowMe())
    assert record.name == "二支部党员3" and record.org_name == "第二支部"


async def test_without_list_id_permission_falls_back_to_department_lists(directory, clock):
    app, fake, api = directory
    fake.list_id_forbidden = True
    report = await run_import(app, api, clock)
    assert report.created == 12 and report.pages == 0 and report.notes
    assert any(c.path == "/cgi-bin/user/list" for c in fake.calls)


async def test_unreadable_users_are_skipped_and_failures_write_nothing(directory, clock):
    app, fake, api = directory
    fake.fail_next("/cgi-bin/user/get", 60011)  # one user outside the app's visible range
    report = await run_import(app, api, clock)
    assert report.unreadable == 1 and report.created == 11

    async with app.db.session() as s:
        before = len((await s.exec(select(Member))).all())
    fake.add_user("new-1", "新同志", [3])
    fake.fail_next("/cgi-bin/user/get", 45009, times=100)  # rate limited throughout: give up cleanly
    with pytest.raises(DirectoryError, match="45009"):
        await run_import(app, api, clock)
    fake.fail_next("/cgi-bin/department/list", 60020)
    with pytest.raises(DirectoryError, match="可信 IP"):
        await run_import(app, api, clock)
    async with app.db.session() as s:
        assert len((await s.exec(select(Member))).all()) == before


def wecom_env(fake) -> dict[str, str]:
    return {"QINGFENG_BANK_PATH": str(TEST_BANK), "QINGFENG_WECOM_API_BASE_URL": fake.base_url,
            **{f"QINGFENG_{k.upper()}": str(v) for k, v in WECOM.items()}}


@pytest.mark.slow
def test_cli_import_from_wecom(tmp_path, clock):
    with wecom_fake(clock) as fake:
        company(fake)
        env = {k: v for k, v in os.environ.items() if not k.startswith("QINGFENG_")}
        env |= {"PYTHONPATH": str(ROOT), **wecom_env(fake)}
        cmd = [sys.executable, "-m", "bot", "org", "import", "--from-wecom"]
        done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert "5 个部门" in done.stdout and "新增 12 人" in done.stdout and "新绑定企业微信 12 人" in done.stdout
        assert "wecom-app-secret" not in done.stdout + done.stderr


def test_cli_import_failure_is_a_clear_message(tmp_path, clock, monkeypatch):
    from typer.testing import CliRunner

    from bot.cli import app as cli

    with wecom_fake(clock) as fake:
        company(fake)
        monkeypatch.chdir(tmp_path)
        for key, value in wecom_env(fake).items():
            monkeypatch.setenv(key, value)
        fake.fail_next("/cgi-bin/department/list", 60020)
        result = CliRunner().invoke(cli, ["org", "import", "--from-wecom"])
        assert result.exit_code == 1 and "可信 IP" in result.output
        both = CliRunner().invoke(cli, ["org", "import", "--from-wecom", str(TEST_BANK / "vocabulary.yaml")])
        assert both.exit_code == 2 and "二选一" in both.output
