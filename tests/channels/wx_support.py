"""Shared set-up for the 公众号 / WeCom tests: settings, fake servers, the app served over HTTP."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette

from bot.app import App, start_app
from bot.channels.wechat import WeChatComponent
from bot.channels.wecom import WeComComponent
from bot.web import build_web_app
from tests.conftest import make_settings
from tests.fakes.wechat_api import Callback, FakeWeChatAPI, FakeWeComAPI

AES_KEY = base64.b64encode(bytes(range(7, 39))).decode().rstrip("=")  # 43 characters
WECHAT = {"wechat_token": "qingfeng-callback-token", "wechat_aes_key": AES_KEY,
          "wechat_appid": "wx5f0c1e8a9b2d3c4e", "wechat_secret": "wechat-app-secret-for-tests",
          "wechat_template_id": "TPL-weekly-invite-0001"}
WECOM_AES_KEY = base64.b64encode(bytes(range(101, 133))).decode().rstrip("=")
WECOM = {"wecom_corpid": "ww7a1b2c3d4e5f6071", "wecom_secret": "wecom-app-secret-for-tests",
         "wecom_agentid": 1000002, "wecom_token": "qingfeng-wecom-token", "wecom_aes_key": WECOM_AES_KEY}


@contextlib.asynccontextmanager
async def serve_http(asgi: Starlette) -> AsyncIterator[str]:
    """Serve an ASGI app with uvicorn on an ephemeral 127.0.0.1 port, in this event loop."""
    server = uvicorn.Server(uvicorn.Config(asgi, host="127.0.0.1", port=0, lifespan="off", log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def wait_until(condition: Callable[[], Any], *, rounds: int = 500) -> None:
    """Wait for something another task or thread does (not a timing assertion)."""
    for _ in range(rounds):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


@dataclass
class WeChatHarness:
    app: App
    component: WeChatComponent
    fake: FakeWeChatAPI
    http: httpx.AsyncClient

    async def post(self, cb: Callback) -> httpx.Response:
        return await self.http.post("/wechat/callback", params=cb.query, content=cb.body.encode(),
                                    headers={"Content-Type": "text/xml"})

    async def say(self, openid: str, text: str, **kw: Any) -> str | None:
        """Send a text as a member would; return the passive reply's text (None if empty)."""
        cb = self.fake.text_callback(openid, text, **kw)
        response = await self.post(cb)
        assert response.status_code == 200, response.text
        reply = self.fake.read_reply(cb, response.text)
        return reply["Content"] if reply else None


def wechat_fake(clock: Any, **overrides: Any) -> FakeWeChatAPI:
    cfg = WECHAT | overrides
    return FakeWeChatAPI(clock, appid=cfg["wechat_appid"], secret=cfg["wechat_secret"], token=cfg["wechat_token"],
                         aes_key=cfg["wechat_aes_key"], template_id=cfg["wechat_template_id"])


async def wechat_app(database_url: str, clock: Any, fake: FakeWeChatAPI, **overrides: Any) -> App:
    settings = make_settings(database_url, **(WECHAT | {"wechat_api_base_url": fake.base_url} | overrides))
    return await start_app(settings, clock=clock, upgrade=False)


@contextlib.asynccontextmanager
async def wechat_harness(database_url: str, clock: Any, *, budget: float = 4.0, http_timeout: float = 5.0,
                         **overrides: Any) -> AsyncIterator[WeChatHarness]:
    with wechat_fake(clock) as fake:
        app = await wechat_app(database_url, clock, fake, **overrides)  # type: ignore[arg-type]
        component = WeChatComponent(app, budget=budget)
        await component.start()
        try:
            async with serve_http(build_web_app(app.db, extra_routes=component.routes)) as base, \
                    httpx.AsyncClient(base_url=base, timeout=http_timeout) as http:
                yield WeChatHarness(app, component, fake, http)  # type: ignore[arg-type]
        finally:
            await component.stop()
            await app.db.dispose()


@dataclass
class WeComHarness:
    app: App
    component: WeComComponent
    fake: FakeWeComAPI
    http: httpx.AsyncClient

    async def post(self, cb: Callback) -> httpx.Response:
        return await self.http.post("/wecom/callback", params=cb.query, content=cb.body.encode(),
                                    headers={"Content-Type": "text/xml"})

    async def exchange(self, cb: Callback) -> dict[str, str] | None:
        """Post a callback; return the decrypted passive reply (None if empty). Follow-ups
        (cards, explanations) are sent after the response: wait for them too."""
        response = await self.post(cb)
        assert response.status_code == 200, response.text
        await self.component.inbound.flow.drain()
        return self.fake.read_reply(response.text)

    async def say(self, userid: str, text: str, **kw: Any) -> str | None:
        reply = await self.exchange(self.fake.text_callback(userid, text, **kw))
        return reply["Content"] if reply else None


def wecom_fake(clock: Any) -> FakeWeComAPI:
    return FakeWeComAPI(clock, corpid=WECOM["wecom_corpid"], secret=WECOM["wecom_secret"],  # type: ignore[arg-type]
                        agentid=WECOM["wecom_agentid"], token=WECOM["wecom_token"],  # type: ignore[arg-type]
                        aes_key=WECOM["wecom_aes_key"])  # type: ignore[arg-type]


async def wecom_app(database_url: str, clock: Any, fake: FakeWeComAPI, **overrides: Any) -> App:
    settings = make_settings(database_url, **(WECOM | {"wecom_api_base_url": fake.base_url} | overrides))
    return await start_app(settings, clock=clock, upgrade=False)


@contextlib.asynccontextmanager
async def wecom_harness(database_url: str, clock: Any, *, budget: float = 4.0,
                        http_timeout: float = 5.0) -> AsyncIterator[WeComHarness]:
    with wecom_fake(clock) as fake:
        app = await wecom_app(database_url, clock, fake)  # type: ignore[arg-type]
        component = WeComComponent(app, budget=budget)
        await component.start()
        try:
            async with serve_http(build_web_app(app.db, extra_routes=component.routes)) as base, \
                    httpx.AsyncClient(base_url=base, timeout=http_timeout) as http:
                yield WeComHarness(app, component, fake, http)  # type: ignore[arg-type]
        finally:
            await component.stop()
            await app.db.dispose()
