"""Wiring of the WeCom (企业微信) self-built application for `qingfeng run`."""

from __future__ import annotations

import hashlib
import logging

from starlette.routing import BaseRoute, Route
from wechatpy.enterprise import WeChatClient as WeComClient

from bot.app import App
from bot.channels.wecom.inbound import WeComInbound
from bot.channels.wecom.messenger import PLATFORM, WeComMessenger
from bot.channels.wx_api import ApiCaller
from bot.channels.wx_codec import WeComCodec
from bot.channels.wx_inbound import DEFAULT_BUDGET, InboundFlow, Ledger, Purger
from bot.config import ConfigError, Settings

log = logging.getLogger(__name__)

CALLBACK_PATH = "/wecom/callback"
DEFAULT_API_BASE = "https://qyapi.weixin.qq.com/cgi-bin/"


def api_base(url: str | None) -> str:
    return (url or DEFAULT_API_BASE).rstrip("/") + "/"


def wecom_caller(settings: Settings, app: App) -> ApiCaller:
    """wechatpy's WeCom client at the configured API base, with the token shared through the
    database (the directory import uses it too)."""
    if not settings.wecom_corpid or settings.wecom_secret is None:
        raise ConfigError("企业微信配置不完整，需要 QINGFENG_WECOM_CORPID 与 QINGFENG_WECOM_SECRET")
    base = api_base(settings.wecom_api_base_url)
    secret = settings.wecom_secret.get_secret_value()
    client = WeComClient(settings.wecom_corpid, secret)
    client.API_BASE_URL = base
    # One token per (corp, secret): the app secret and a contacts secret get separate rows.
    which = hashlib.sha256(secret.encode()).hexdigest()[:12]
    return ApiCaller(client, db=app.db, token_key=f"wecom:token:{settings.wecom_corpid}:{which}",
                     token_url=base + "gettoken", token_params={"corpid": settings.wecom_corpid, "corpsecret": secret},
                     clock=app.service.clock, redis_url=settings.redis_url)


class WeComComponent:
    name = "wecom"

    def __init__(self, app: App, *, budget: float = DEFAULT_BUDGET) -> None:
        s = app.settings
        required = (("QINGFENG_WECOM_SECRET", s.wecom_secret), ("QINGFENG_WECOM_AGENTID", s.wecom_agentid),
                    ("QINGFENG_WECOM_TOKEN", s.wecom_token), ("QINGFENG_WECOM_AES_KEY", s.wecom_aes_key))
        missing = [name for name, value in required if value is None]
        if missing:
            raise ConfigError("企业微信配置不完整，缺少：" + "、".join(missing))
        clock = app.service.clock
        self.api = wecom_caller(s, app)
        agentid = int(s.wecom_agentid)  # type: ignore[arg-type]
        self.messenger = WeComMessenger(self.api, agentid=agentid, tz=s.tz)
        self.ledger = Ledger(app.db, PLATFORM, clock=clock)
        codec = WeComCodec(s.wecom_token.get_secret_value(), s.wecom_aes_key.get_secret_value(),  # type: ignore[union-attr]
                           s.wecom_corpid or "")
        self.inbound = WeComInbound(
            service=app.service, db=app.db, codec=codec, messenger=self.messenger,
            flow_factory=lambda send: InboundFlow(self.ledger, send, budget=budget), agentid=agentid,
            tz=s.tz, clock=clock)
        self.routes: list[BaseRoute] = [Route(CALLBACK_PATH, self.inbound.endpoint, methods=["GET", "POST"])]
        self._purger = Purger(self.ledger)

    async def start(self) -> None:
        self._purger.start()

    async def stop(self) -> None:
        await self._purger.stop()
        await self.inbound.flow.drain()
        await self.api.close()
