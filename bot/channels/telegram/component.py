"""The Telegram channel as a runtime component: one PTB `Application`, polling by default,
or a webhook served by the project's ASGI app at /telegram/webhook."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from telegram import BotCommand, Update
from telegram.ext import AIORateLimiter, Application, ApplicationBuilder, BaseUpdateProcessor

from bot.app import App
from bot.channels.telegram.handlers import COMMANDS, TelegramHandlers
from bot.channels.telegram.http import AiohttpRequest
from bot.channels.telegram.messenger import TelegramMessenger
from bot.channels.telegram.state import UpdateLog
from bot.config import Settings

log = logging.getLogger(__name__)
WEBHOOK_PATH = "/telegram/webhook"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
ALLOWED_UPDATES = ["message", "callback_query", "poll_answer"]
POLL_TIMEOUT = 10  # seconds a getUpdates long poll may wait
# Updates handled at once. Each holds a database connection only inside its one answer
# transaction (PostgreSQL pool: 10 + 20 overflow), so this bounds memory, not the pool.
MAX_CONCURRENT_UPDATES = 64
# Updates taken from Telegram and not finished, at most (see UpdateQueue).
MAX_UPDATES_IN_FLIGHT = 2 * MAX_CONCURRENT_UPDATES
# Keep-alive connections to the Bot API (PTB's default pool size); pushes and updates share them.
BOT_API_CONNECTIONS = 256


def _token(settings: Settings) -> str:
    if settings.telegram_token is None:
        raise ValueError("QINGFENG_TELEGRAM_TOKEN is not set")
    return settings.telegram_token.get_secret_value()


def api_base(settings: Settings) -> tuple[str, str] | None:
    """(base_url, base_file_url) for PTB from the server root (a trailing /bot is accepted)."""
    if not settings.telegram_base_url:
        return None
    root = settings.telegram_base_url.rstrip("/").removesuffix("/bot")
    return root + "/bot", root + "/file/bot"


def webhook_secret(settings: Settings) -> str:
    """The configured secret, else one derived from the token (stable across replicas)."""
    if settings.telegram_webhook_secret is not None:
        return settings.telegram_webhook_secret.get_secret_value()
    return hashlib.sha256(b"qingfeng-webhook:" + _token(settings).encode()).hexdigest()[:48]


class PerUserOrder(BaseUpdateProcessor):
    """Different users' updates run concurrently; one user's run one at a time, in arrival order.

    Why per user: the handlers read, then write, per member (the answer and its case pick, the
    card edit after it), so one member pressing twice must not interleave with itself; the
    database keeps each answer once anyway (UNIQUE(member, round, item)). Each update is also
    registered with the update-id log as soon as it is taken (before it waits for a slot or its user), so
    the stored mark never passes an update that has not finished (see state.UpdateLog)."""

    def __init__(self, max_concurrent_updates: int,
                 update_log: Callable[[], UpdateLog | None] = lambda: None) -> None:
        super().__init__(max_concurrent_updates)
        self._update_log = update_log
        self._users: dict[int, tuple[asyncio.Lock, int]] = {}  # user -> (lock, updates holding or waiting)

    @staticmethod
    def _user(update: object) -> int | None:
        if not isinstance(update, Update):
            return None
        who = update.effective_user or update.effective_chat
        return who.id if who is not None else None

    async def process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        # Opened before PTB's semaphore: an update still waiting for a slot is unfinished too,
        # and the stored mark must not pass it when a newer one finishes first.
        log = self._update_log()
        update_id = update.update_id if isinstance(update, Update) else None
        if log is not None and update_id is not None:
            log.opened(update_id)
        cancelled = False
        try:
            await super().process_update(update, coroutine)  # the semaphore, then do_process_update
        except asyncio.CancelledError:
            cancelled = True  # shutdown: the update stays open, so the stored mark stays below it
            raise
        finally:
            if log is not None and update_id is not None and not cancelled:
                log.done(update_id)

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        await self._in_user_order(update, coroutine)

    async def _in_user_order(self, update: object, coroutine: Awaitable[Any]) -> None:
        user = self._user(update)
        if user is None:
            await coroutine
            return
        lock, n = self._users.get(user) or (asyncio.Lock(), 0)
        self._users[user] = (lock, n + 1)
        try:
            async with lock:
                await coroutine
        finally:
            lock, n = self._users[user]
            if n == 1:
                del self._users[user]
            else:
                self._users[user] = (lock, n - 1)

    async def initialize(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass


class UpdateQueue(asyncio.Queue):  # type: ignore[type-arg]
    """PTB's update queue with backpressure: `put` waits while `limit` updates are taken and
    not finished (PTB calls `task_done` when an update's handlers are done).

    Why: the Updater confirms a fetched batch to Telegram (the next getUpdates' offset) as soon
    as it is queued, and the Application starts a task per queued update at once, so under a
    burst the bot would pull and confirm all that Telegram holds (10,000 presses: 10,000 parsed
    updates in memory, and a crash loses every confirmed one not yet done). With the bound,
    polling — and a webhook delivery — waits, and the rest stays with Telegram, unconfirmed."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.in_flight = 0
        self._room = asyncio.Event()
        self._room.set()

    async def put(self, item: object) -> None:
        while self.in_flight >= self.limit:
            self._room.clear()
            await self._room.wait()
        self.in_flight += 1
        self.put_nowait(item)  # the queue itself is unbounded

    def task_done(self) -> None:
        super().task_done()
        self.in_flight -= 1
        if self.in_flight < self.limit:
            self._room.set()


def build_application(settings: Settings, *, polling: bool = True,  # type: ignore[type-arg]
                      update_log: Callable[[], UpdateLog | None] = lambda: None) -> Application:
    timeout = settings.telegram_request_timeout
    builder = (ApplicationBuilder().token(_token(settings))
               .request(AiohttpRequest(pool_size=BOT_API_CONNECTIONS, timeout=timeout))
               .get_updates_request(AiohttpRequest(pool_size=1, timeout=timeout))
               .concurrent_updates(PerUserOrder(MAX_CONCURRENT_UPDATES, update_log))
               .update_queue(UpdateQueue(MAX_UPDATES_IN_FLIGHT))
               .job_queue(None))  # the project's scheduler does the timing
    base = api_base(settings)
    if base is not None:
        builder = builder.base_url(base[0]).base_file_url(base[1])
    if settings.telegram_rate_limit:
        builder = builder.rate_limiter(AIORateLimiter(overall_max_rate=settings.telegram_max_rate,
                                                      max_retries=settings.telegram_max_retries))
    if not polling:
        builder = builder.updater(None)
    return builder.build()


class TelegramComponent:
    name = "telegram"

    def __init__(self, app: App) -> None:
        s = app.settings
        self.webhook_url = s.telegram_webhook_url
        self.application = build_application(s, polling=not self.webhook_url,
                                             update_log=lambda: self.handlers.update_log)
        self.messenger = TelegramMessenger(self.application.bot, app.db, s)
        self.handlers = TelegramHandlers(app, self.messenger)
        self.handlers.register(self.application)
        self._secret = webhook_secret(s).encode()
        self.routes: list[BaseRoute] = (
            [Route(WEBHOOK_PATH, self.webhook, methods=["POST"])] if self.webhook_url else [])
        self._running = False

    async def start(self) -> None:
        application, bot = self.application, self.application.bot
        await application.initialize()  # getMe
        await self.handlers.start(bot.id)
        await self.messenger.call(lambda: bot.set_my_commands([BotCommand(c, d) for c, d in COMMANDS]))
        if self.webhook_url:
            url = self.webhook_url
            await self.messenger.call(lambda: bot.set_webhook(
                url, secret_token=self._secret.decode(), allowed_updates=ALLOWED_UPDATES))
        await application.start()
        if not self.webhook_url and application.updater is not None:
            await application.updater.start_polling(
                timeout=POLL_TIMEOUT, bootstrap_retries=3, allowed_updates=ALLOWED_UPDATES,
                error_callback=lambda exc: log.warning("telegram polling error: %s", type(exc).__name__))
        self._running = True
        log.info("telegram started (%s)", "webhook" if self.webhook_url else "polling")

    async def stop(self) -> None:
        self._running = False
        application = self.application
        if application.updater is not None and application.updater.running:
            await application.updater.stop()
        if application.running:
            await application.stop()
        await self.handlers.stop()
        await application.shutdown()

    async def webhook(self, request: Request) -> Response:
        given = request.headers.get(SECRET_HEADER, "").encode()
        if not hmac.compare_digest(given, self._secret):
            return PlainTextResponse("forbidden", status_code=403)
        if not self._running:
            return PlainTextResponse("not ready", status_code=503)  # Telegram retries later
        try:
            update = Update.de_json(await request.json(), self.application.bot)
        except Exception:
            log.warning("telegram webhook: undecodable update")
            return PlainTextResponse("bad update", status_code=400)
        await self.application.update_queue.put(update)
        return PlainTextResponse("ok")
