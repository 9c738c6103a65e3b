"""Settings fail fast and name the bad key."""

from __future__ import annotations

import pytest

from bot.config import ConfigError, load_settings


def test_defaults_are_embedded_sqlite(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    s = load_settings()
    assert s.database_url == "sqlite+aiosqlite:///./var/qingfeng.db" and s.is_sqlite
    assert s.timezone == "Asia/Shanghai" and s.report_min_group == 5


def test_postgres_url_gets_async_driver():
    s = load_settings(database_url="postgresql://postgres@127.0.0.1:5432/test")
    assert s.database_url == "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


@pytest.mark.parametrize(("env", "value", "named"), [
    ("QINGFENG_HTTP_PORT", "eighty", "QINGFENG_HTTP_PORT"),
    ("QINGFENG_TIMEZONE", "Mars/Olympus", "QINGFENG_TIMEZONE"),
    ("QINGFENG_DATABASE_URL", "mysql://x", "QINGFENG_DATABASE_URL"),
    ("QINGFENG_TELEGRAM_TOKEN", "changeme", "QINGFENG_TELEGRAM_TOKEN"),
    ("QINGFENG_WECHAT_AES_KEY", "tooshort", "QINGFENG_WECHAT_AES_KEY"),
    ("QINGFENG_REPORT_MIN_GROUP", "0", "QINGFENG_REPORT_MIN_GROUP"),
])
def test_bad_value_names_the_key(monkeypatch, env, value, named):
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError) as exc:
        load_settings()
    assert named in str(exc.value)


def test_unknown_key_in_config_file_is_refused(monkeypatch, tmp_path):
    cfg = tmp_path / "qingfeng.yaml"
    cfg.write_text("round_items: 7\nroudn_days: 3\n", encoding="utf-8")
    monkeypatch.setenv("QINGFENG_CONFIG", str(cfg))
    with pytest.raises(ConfigError) as exc:
        load_settings()
    assert "QINGFENG_ROUDN_DAYS" in str(exc.value)
    cfg.write_text("round_items: 7\n", encoding="utf-8")
    assert load_settings().round_items == 7
    monkeypatch.setenv("QINGFENG_ROUND_ITEMS", "9")  # the environment wins over the file
    assert load_settings().round_items == 9
