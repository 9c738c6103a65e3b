"""`qingfeng run`: start everything configured in one event loop and stop it cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

import uvicorn

from bot.app import start_app
from bot.config import Settings
from bot.web import build_web_app

log = logging.getLogger(__name__)


async def serve(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    app = await start_app(settings)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread (tests)
            loop.add_signal_handler(sig, stop.set)
    web = build_web_app(app.db)
    config = uvicorn.Config(web, host=settings.http_host, port=settings.http_port, log_level="warning",
                            lifespan="off")
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    server_task = asyncio.create_task(server.serve())
    log.info("qingfeng running: http://%s:%d", settings.http_host, settings.http_port)
    try:
        await stop.wait()
    finally:
        server.should_exit = True
        await server_task
        await app.db.dispose()
        log.info("qingfeng stopped")
