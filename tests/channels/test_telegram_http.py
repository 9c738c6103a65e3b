"""The Telegram HTTP layer (bot/channels/telegram/http.py) on its own: what reaches the wire,
what an unreachable Bot API turns into, and that the token never shows in an error."""

from __future__ import annotations

import socket

import pytest
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, InputFile
from telegram.error import NetworkError, TimedOut

from bot.channels.telegram.http import AiohttpRequest
from tests.fakes.telegram_api import TOKEN, FakeTelegram


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_json_bodies_and_multipart_files_reach_the_bot_api() -> None:
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
    with FakeTelegram() as fake:
        bot = Bot(TOKEN, base_url=f"{fake.base_url}/bot", request=AiohttpRequest(pool_size=4, timeout=5))
        keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("A. 违反廉洁纪律", callback_data="a:1:2:A")]])
        text = "【清风】下列哪种行为……\n“引号”、&amp; 与 emoji 🙂"
        async with bot:
            sent = await bot.send_message(4242, text, reply_markup=keyboard)
            photo = await bot.send_photo(4242, InputFile(png, filename="chart.png"), caption="图表1 正确率")
        call = fake.calls("sendMessage")[-1]
        assert call.params["text"] == text
        assert call.params["reply_markup"] == keyboard.to_dict()  # sent as an object, not a string
        assert sent.text == text and sent.reply_markup == keyboard  # and the answer parsed back
        upload = fake.calls("sendPhoto")[-1]
        assert upload.files["photo"] == png and upload.params["caption"] == "图表1 正确率"
        assert photo.caption == "图表1 正确率"


async def test_an_unreachable_bot_api_is_a_network_error_without_the_token() -> None:
    bot = Bot(TOKEN, base_url=f"http://127.0.0.1:{free_port()}/bot",
              request=AiohttpRequest(pool_size=1, timeout=2))
    with pytest.raises(NetworkError) as caught:
        async with bot:
            pass  # initialize calls getMe
    assert not isinstance(caught.value, TimedOut)
    assert TOKEN not in str(caught.value) and TOKEN.split(":")[1] not in str(caught.value)


async def test_a_slow_bot_api_is_a_timeout() -> None:
    with FakeTelegram() as fake:
        fake.inject("timeout", methods={"getMe"}, times=1, delay=1.0)
        bot = Bot(TOKEN, base_url=f"{fake.base_url}/bot", request=AiohttpRequest(pool_size=1, timeout=0.2))
        with pytest.raises(TimedOut):
            async with bot:
                pass


def test_proxies_come_from_the_environment_with_no_proxy_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    request = AiohttpRequest(pool_size=1, timeout=1)
    assert request._proxy_for("https://api.telegram.org/botX/getMe") == "http://proxy.example:3128"
    assert request._proxy_for("http://127.0.0.1:8081/botX/getMe") is None


def test_a_socks_proxy_is_refused_plainly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "socks5://user:secret@proxy.example:1080")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    request = AiohttpRequest(pool_size=1, timeout=1)
    with pytest.raises(RuntimeError, match="http:// proxies only") as caught:
        request._proxy_for("https://api.telegram.org/botX/getMe")
    assert "secret" not in str(caught.value)
