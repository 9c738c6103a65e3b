"""`qingfeng run`: start everything configured in one event loop and stop it cleanly.

Each channel is a `Component`: routes for the one ASGI app, start/stop, and optionally a
`Messenger` the scheduler pushes through. A channel is started only when configured.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from typing import Protocol

import uvicorn
from starlette.routing import BaseRoute

from bot.app import App, start_app
from bot.channels.base import Messenger
from bot.config import Settings
from bot.web import Readiness, build_web_app

log = logging.getLogger(__name__)


class Component(Protocol):
    name: str
    routes: list[BaseRoute]
    messenger: Messenger | None

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def configured_channels(app: App) -> list[Component]:
    """Import each channel only when its settings are present."""
    s = app.settings
    components: list[Component] = []
    if s.telegram_token:
        from bot.channels.telegram import TelegramComponent

        components.append(TelegramComponent(app))
    if s.wechat_appid:
        from bot.channels.wechat import WeChatComponent

        components.append(WeChatComponent(app))
    if s.wecom_corpid:
        from bot.channels.wecom import WeComComponent

        components.append(WeComComponent(app))
    if s.webhook_push_url:
        from bot.channels.webhook import WebhookComponent

        components.append(WebhookComponent(app))
    return components


def scheduler_component(app: App, messengers: dict[str, Messenger]) -> Component | None:
    try:
        from scheduler.runner import SchedulerComponent
    except ImportError:  # the scheduler package is optional until it ships
        return None
    return SchedulerComponent(app, messengers)


# Python's cyclic garbage collector, tuned for a long-running server (see settle_heap).
GC_THRESHOLDS = (20_000, 20, 20)


def settle_heap() -> None:
    """Once started: freeze what start-up made and collect less often.

    Start-up leaves the heap full of objects that live as long as the process (modules,
    classes, the bank, SQLAlchemy's and PTB's tables), and every full collection walked them
    all; frozen (`gc.freeze`), collections no longer visit them. A higher first threshold
    means fewer collections of the short-lived objects each update makes (most are freed by
    reference counting anyway; the collector only finds cycles). Measured: the collector took
    ~13 % of the CPU of a loaded Telegram bot (`python -m bench.ingest`, docs/benchmarks.md §2)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


async def serve(settings: Settings, *, stop: asyncio.Event | None = None,
                ready: asyncio.Event | None = None, settle: bool = False) -> None:
    """Run the configured channels, the scheduler and the HTTP endpoints until `stop`.
    `settle`: the process is this server's own (`qingfeng run`): `settle_heap` once started."""
    app = await start_app(settings)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread (tests)
            loop.add_signal_handler(sig, stop.set)
    components = configured_channels(app)
    messengers = {c.messenger.platform: c.messenger for c in components if c.messenger}
    sched = scheduler_component(app, messengers)
    if sched is not None:
        components.append(sched)
    readiness = Readiness()
    readiness.expect([c.name for c in components])  # /readyz answers 503 until each has started
    web = build_web_app(app.db, extra_routes=[r for c in components for r in c.routes], readiness=readiness)
    # log_config=None: uvicorn's records go through our redacting root handler (bot/logs.py).
    config = uvicorn.Config(web, host=settings.http_host, port=settings.http_port, log_level="warning",
                            lifespan="off", log_config=None)
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    started: list[Component] = []
    server_task = asyncio.create_task(server.serve())
    try:
        for c in components:
            await c.start()
            started.append(c)
            readiness.mark_started(c.name)
            log.info("started %s", c.name)
        log.info("qingfeng running on http://%s:%d", settings.http_host, settings.http_port)
        if settle:
            settle_heap()
        if ready is not None:
            ready.set()
        await stop.wait()
    finally:
        for c in reversed(started):
            readiness.mark_stopped(c.name)
            try:
                await c.stop()
            except Exception:
                log.exception("stopping %s failed", c.name)
        server.should_exit = True
        await server_task
        await app.db.dispose()
        log.info("qingfeng stopped")
