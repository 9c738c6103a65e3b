"""Logging: plain or JSON lines, and no token, secret or chat id ever reaches the output —
checked with real httpx requests (whose INFO lines carry full URLs) to a local server."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import httpx
import pytest

from bot.logs import QUIET_LOGGERS, redact, setup_logging
from bot.metrics import REGISTRY
from tests.ops.fake_platforms import TELEGRAM_TOKEN, WECHAT_SECRET, WECOM_SECRET, FakePlatforms

TOKEN_TAIL = TELEGRAM_TOKEN.split(":")[1]


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """setup_logging changes process-wide state: put it back for the other tests."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    named = {n: logging.getLogger(n) for n in (*QUIET_LOGGERS, "uvicorn", "uvicorn.error", "uvicorn.access")}
    saved = {n: (lg.level, list(lg.handlers), lg.propagate) for n, lg in named.items()}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for n, (lvl, hs, prop) in saved.items():
        named[n].setLevel(lvl)
        named[n].handlers[:] = hs
        named[n].propagate = prop
    logging.captureWarnings(False)


@pytest.mark.parametrize(("raw", "hidden"), [
    (f"POST https://api.telegram.org/bot{TELEGRAM_TOKEN}/sendMessage", TOKEN_TAIL),
    (f"GET https://api.weixin.qq.com/cgi-bin/message/custom/send?access_token=ACCESS-{WECHAT_SECRET}", WECHAT_SECRET),
    (f"GET /cgi-bin/gettoken?corpid=ww01&corpsecret={WECOM_SECRET}", WECOM_SECRET),
    (f"GET /cgi-bin/token?grant_type=client_credential&appid=wx01&secret={WECHAT_SECRET}", WECHAT_SECRET),
    ("GET /wechat/callback?signature=abc&timestamp=1&nonce=2&openid=oUSER-OPENID-123", "oUSER-OPENID-123"),
    ('{"chat_id": 987654321, "text": "hi"}', "987654321"),
    ("postgresql+asyncpg://qingfeng:db-password-99@postgres:5432/qingfeng", "db-password-99"),
])
def test_redact_masks_secrets_and_chat_ids(raw, hidden):
    assert hidden not in redact(raw)


def test_redact_leaves_ordinary_text_alone():
    text = "round 12 pushed: sent=30 failed=0 errcode=40001 at 09:30:00, 清风 bank synced"
    assert redact(text) == text


def test_httpx_request_lines_never_show_the_bot_token(restore_logging):
    out = io.StringIO()
    setup_logging("DEBUG", stream=out)
    with FakePlatforms() as fake:
        url = f"{fake.base_url}/bot{TELEGRAM_TOKEN}/getMe"
        assert httpx.get(url).status_code == 200
        # First line of defence: httpx's per-request INFO line is not emitted at all.
        assert "getMe" not in out.getvalue()
        # Second line: even if someone turns httpx up to INFO, the token is masked.
        logging.getLogger("httpx").setLevel(logging.INFO)
        assert httpx.get(url + "?chat_id=55501234").status_code == 200
    text = out.getvalue()
    assert "getMe" in text and "<telegram-token>" in text
    assert TOKEN_TAIL not in text and "55501234" not in text


def test_tracebacks_are_redacted_too(restore_logging):
    out = io.StringIO()
    setup_logging("INFO", stream=out)
    try:
        raise RuntimeError(f"request to /bot{TELEGRAM_TOKEN}/sendMessage failed, secret={WECHAT_SECRET}")
    except RuntimeError:
        logging.getLogger("bot.channels.telegram.messenger").exception("send failed")
    text = out.getvalue()
    assert "Traceback" in text and "RuntimeError" in text
    assert TOKEN_TAIL not in text and WECHAT_SECRET not in text


def test_json_lines_carry_level_logger_message_and_exception(restore_logging):
    out = io.StringIO()
    setup_logging("INFO", json_lines=True, stream=out)
    log = logging.getLogger("bot.core.push")
    log.info("round %d pushed to %s", 7, f"/bot{TELEGRAM_TOKEN}/")
    try:
        1 / 0  # noqa: B018
    except ZeroDivisionError:
        log.exception("push failed")
    logging.getLogger("bot.core.push").debug("below the level: not written")
    entries = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [e["level"] for e in entries] == ["INFO", "ERROR"]
    assert entries[0]["logger"] == "bot.core.push" and entries[0]["message"].startswith("round 7 pushed")
    assert TOKEN_TAIL not in entries[0]["message"] and entries[0]["time"].endswith("+00:00")
    assert "ZeroDivisionError" in entries[1]["exception"]


def test_logged_errors_are_counted_by_component(restore_logging):
    setup_logging("INFO", stream=io.StringIO())

    def count() -> float:
        return REGISTRY.get_sample_value("qingfeng_errors_total", {"kind": "wechat"}) or 0.0

    before = count()
    logging.getLogger("bot.channels.wechat.inbound").error("callback failed")
    logging.getLogger("bot.channels.wechat.inbound").warning("a warning is not an error")
    assert count() == before + 1
