"""`qingfeng doctor` on a good and on broken configurations: the real CLI in a subprocess, the
channel checks over real HTTP against a fake of the platforms on 127.0.0.1."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from matplotlib import get_data_path

from bot.config import load_settings
from bot.ops.doctor import Status, check_fonts, find_cjk_font, render, run_checks
from bot.storage import migrate
from tests.conftest import TEST_BANK
from tests.ops.cli import run_cli
from tests.ops.fake_platforms import (
    TELEGRAM_TOKEN,
    WECHAT_APPID,
    WECHAT_SECRET,
    WECHAT_TEMPLATE,
    WECOM_AGENTID,
    WECOM_CORPID,
    WECOM_SECRET,
    FakePlatforms,
)

AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"  # 43 characters, as the platforms issue them
WEBHOOK = "https://bot.example.org/telegram/webhook"
SECRETS = [TELEGRAM_TOKEN, WECHAT_SECRET, WECOM_SECRET, AES_KEY, "wx-callback-token-9", "wecom-callback-token-7"]


@pytest.fixture
def fake() -> Iterator[FakePlatforms]:
    with FakePlatforms() as f:
        f.state.webhook_url = WEBHOOK
        yield f


def good_env(fake: FakePlatforms, database_url: str) -> dict[str, str]:
    return {
        "QINGFENG_DATABASE_URL": database_url,
        "QINGFENG_BANK_PATH": str(TEST_BANK),
        "QINGFENG_TELEGRAM_TOKEN": TELEGRAM_TOKEN,
        "QINGFENG_TELEGRAM_BASE_URL": fake.base_url,
        "QINGFENG_TELEGRAM_WEBHOOK_URL": WEBHOOK,
        "QINGFENG_WECHAT_APPID": WECHAT_APPID,
        "QINGFENG_WECHAT_SECRET": WECHAT_SECRET,
        "QINGFENG_WECHAT_TOKEN": "wx-callback-token-9",
        "QINGFENG_WECHAT_AES_KEY": AES_KEY,
        "QINGFENG_WECHAT_TEMPLATE_ID": WECHAT_TEMPLATE,
        "QINGFENG_WECHAT_API_BASE_URL": fake.base_url + "/cgi-bin/",  # as the channel spells it
        "QINGFENG_WECOM_CORPID": WECOM_CORPID,
        "QINGFENG_WECOM_SECRET": WECOM_SECRET,
        "QINGFENG_WECOM_AGENTID": str(WECOM_AGENTID),
        "QINGFENG_WECOM_TOKEN": "wecom-callback-token-7",
        "QINGFENG_WECOM_AES_KEY": AES_KEY,
        "QINGFENG_WECOM_API_BASE_URL": fake.base_url,  # the root works too
    }


def doctor(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_cli(["doctor", "--timeout", "3"], cwd, env=env)


def line(out: str, name: str) -> str:
    """The first output line of the check called `name` (mark, name, detail)."""
    return next(ln for ln in out.splitlines() if ln[2:].startswith(name + " "))


def assert_no_secrets(text: str) -> None:
    for s in SECRETS:
        assert s not in text
    assert TELEGRAM_TOKEN.split(":")[1] not in text


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nobody listens once closed


def test_good_configuration_passes_every_check(fake, sqlite_url, tmp_path):
    res = doctor(good_env(fake, sqlite_url), tmp_path)
    out = res.stdout
    assert res.returncode == 0, out + res.stderr
    for name in ("配置", "题库", "数据库", "数据库迁移", "中文字体", "Telegram", "Telegram webhook", "公众号",
                 "公众号模板消息", "企业微信"):
        assert line(out, name).startswith("✓"), out
    assert "@qingfeng_test_bot" in out and "清风学习" in out and "一切正常" in out
    assert_no_secrets(out + res.stderr)
    # Each credential really went over HTTP to the configured base URLs.
    paths = fake.state.requests
    assert f"/bot{TELEGRAM_TOKEN}/getMe" in paths and "/cgi-bin/token" in paths
    assert "/cgi-bin/gettoken" in paths and "/cgi-bin/agent/get" in paths


def test_broken_configuration_names_each_problem_and_fix(fake, tmp_path):
    db = tmp_path / "old.db"
    migrate.upgrade(f"sqlite+aiosqlite:///{db}", "0001")  # schema of an older release
    env = good_env(fake, f"sqlite:///{db}")
    env.update({
        "QINGFENG_TELEGRAM_TOKEN": "7012345678:AAF-wrongTokenValue_0123456789abcdefXY",
        "QINGFENG_WECHAT_SECRET": "wrong-wechat-secret-0000",
        "QINGFENG_BANK_PATH": str(tmp_path / "no-bank"),
    })
    fake.state.wecom_ip_untrusted = True
    res = doctor(env, tmp_path)
    out = res.stdout
    assert res.returncode == 1, out + res.stderr
    assert line(out, "Telegram").startswith("✗") and "拒绝了令牌" in out and "@BotFather" in out
    assert line(out, "公众号").startswith("✗") and "AppSecret 错误" in out and "errcode 40001" in out
    assert line(out, "企业微信").startswith("✗") and "企业可信IP" in out
    assert line(out, "数据库").startswith("✓")
    assert line(out, "数据库迁移").startswith("✗") and "qingfeng db upgrade" in out
    assert line(out, "题库").startswith("✗") and "QINGFENG_BANK_PATH" in out
    assert "需要修复" in out
    assert_no_secrets(out + res.stderr)
    assert "wrong-wechat-secret-0000" not in out and "wrongTokenValue" not in out


async def test_unreachable_platforms_and_missing_database_file(fake, tmp_path):
    port = closed_port()
    env = good_env(fake, f"sqlite:///{tmp_path / 'missing.db'}")
    env.update({"QINGFENG_TELEGRAM_BASE_URL": f"http://127.0.0.1:{port}",
                "QINGFENG_WECHAT_API_BASE_URL": f"http://127.0.0.1:{port}/cgi-bin/"})
    env.pop("QINGFENG_WECOM_CORPID")
    s = load_settings(**{k.removeprefix("QINGFENG_").lower(): v for k, v in env.items()})
    checks = await run_checks(s, timeout=3)
    out = render(checks)
    assert any(c.status is Status.fail for c in checks)
    assert line(out, "Telegram").startswith("✗") and f"无法连接 http://127.0.0.1:{port}" in out
    assert line(out, "公众号").startswith("✗")
    assert "不存在" in line(out, "数据库") and not (tmp_path / "missing.db").exists()  # doctor creates nothing
    assert not any(ln[2:].startswith("企业微信 ") for ln in out.splitlines())
    assert_no_secrets(out)


def test_invalid_setting_is_reported_by_key_without_its_value(tmp_path):
    res = doctor({"QINGFENG_WECHAT_AES_KEY": "too-short-secret-value"}, tmp_path)
    assert res.returncode == 1
    assert "QINGFENG_WECHAT_AES_KEY" in res.stdout and "43" in res.stdout
    assert "too-short-secret-value" not in res.stdout + res.stderr


async def test_database_checks_on_each_database(database_url, tmp_path):
    s = load_settings(database_url=database_url, bank_path=TEST_BANK)
    checks = {c.name: c for c in await run_checks(s, timeout=3)}
    assert checks["数据库"].status is Status.ok and checks["数据库迁移"].status is Status.ok
    assert checks["渠道"].status is Status.warn  # nothing configured: a reminder, not a failure


async def test_unreachable_postgres_fails_without_showing_its_password():
    url = f"postgresql://qingfeng:pg-pass-42x@127.0.0.1:{closed_port()}/qingfeng"
    s = load_settings(database_url=url, bank_path=TEST_BANK)
    checks = {c.name: c for c in await run_checks(s, timeout=3)}
    assert checks["数据库"].status is Status.fail and "无法连接" in checks["数据库"].detail
    assert checks["数据库迁移"].status is Status.fail
    assert all("pg-pass-42x" not in c.detail + c.fix for c in checks.values())


def test_font_check_finds_cjk_glyphs_and_fails_without_them():
    from fontTools.ttLib import TTFont

    found = find_cjk_font()
    assert found is not None
    path, family = found
    # Independent of matplotlib's FreeType: the font's own character map has the glyphs.
    with TTFont(str(path), fontNumber=0, lazy=True) as font:
        cmap = font.getBestCmap()
    assert all(ord(c) in cmap for c in "清风廉政教育") and family
    assert check_fonts().status is Status.ok
    latin_only = Path(get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    assert find_cjk_font([latin_only]) is None
    # matplotlib's "last resort" font maps every code point, but to one placeholder box per block.
    last_resort = Path(get_data_path()) / "fonts" / "ttf" / "LastResortHE-Regular.ttf"
    assert find_cjk_font([last_resort, latin_only]) is None
    missing = check_fonts([latin_only])
    assert missing.status is Status.fail and "fonts-noto-cjk" in missing.fix
