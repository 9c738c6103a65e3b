"""Wiring of the 公众号 channel for `qingfeng run`: route, messenger, token store, housekeeping."""

from __future__ import annotations

import logging

from starlette.routing import BaseRoute, Route
from wechatpy import WeChatClient

from bot.app import App
from bot.channels.wechat.inbound import WeChatInbound
from bot.channels.wechat.messenger import PLATFORM, WeChatMessenger
from bot.channels.wx_api import ApiCaller
from bot.channels.wx_codec import WeChatCodec
from bot.channels.wx_inbound import DEFAULT_BUDGET, InboundFlow, Ledger, Purger
from bot.config import ConfigError, Settings

log = logging.getLogger(__name__)

CALLBACK_PATH = "/wechat/callback"
DEFAULT_API_BASE = "https://api.weixin.qq.com/cgi-bin/"


def api_base(url: str | None) -> str:
    return (url or DEFAULT_API_BASE).rstrip("/") + "/"


def _require(settings: Settings) -> tuple[str, str, str]:
    missing = [name for name, value in (("QINGFENG_WECHAT_TOKEN", settings.wechat_token),
                                        ("QINGFENG_WECHAT_SECRET", settings.wechat_secret))
               if value is None]
    if missing or not settings.wechat_appid:
        raise ConfigError("公众号配置不完整，缺少：" + "、".join(missing or ["QINGFENG_WECHAT_APPID"]))
    return (settings.wechat_appid, settings.wechat_token.get_secret_value(),  # type: ignore[union-attr]
            settings.wechat_secret.get_secret_value())  # type: ignore[union-attr]


class WeChatComponent:
    name = "wechat"

    def __init__(self, app: App, *, budget: float = DEFAULT_BUDGET) -> None:
        s = app.settings
        appid, token, secret = _require(s)
        clock = app.service.clock
        self.base_url = api_base(s.wechat_api_base_url)
        client = WeChatClient(appid, secret)
        client.API_BASE_URL = self.base_url  # instance attribute: wechatpy builds URLs from it
        self.api = ApiCaller(client, db=app.db, token_key=f"wechat:token:{appid}", token_url=self.base_url + "token",
                             token_params={"grant_type": "client_credential", "appid": appid, "secret": secret},
                             clock=clock, redis_url=s.redis_url)
        self.messenger = WeChatMessenger(self.api, app.db, tz=s.tz, clock=clock, template_id=s.wechat_template_id,
                                         template_fields=s.wechat_template_fields)
        self.ledger = Ledger(app.db, PLATFORM, clock=clock)
        aes_key = s.wechat_aes_key.get_secret_value() if s.wechat_aes_key else None
        self.inbound = WeChatInbound(
            service=app.service, db=app.db, codec=WeChatCodec(token, aes_key, appid), messenger=self.messenger,
            flow_factory=lambda send: InboundFlow(self.ledger, send, budget=budget), tz=s.tz, clock=clock)
        self.routes: list[BaseRoute] = [Route(CALLBACK_PATH, self.inbound.endpoint, methods=["GET", "POST"])]
        self._purger = Purger(self.ledger)

    async def start(self) -> None:
        self._purger.start()

    async def stop(self) -> None:
        await self._purger.stop()
        await self.inbound.flow.drain()
        await self.api.close()
