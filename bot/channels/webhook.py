"""Generic webhook channel: bridges Qingfeng to another system (an OA platform, a message gateway).

Outbound: every push is POSTed as JSON to QINGFENG_WEBHOOK_PUSH_URL:
    {"id": KEY, "platform": "webhook", "recipient": EXTERNAL_ID, "kinds": [...], "texts": [...]}
with headers
    Idempotency-Key: KEY — after a crash the same message is sent again with the same key;
        a receiver that delivers each key once turns at-least-once into exactly-once;
    X-Qingfeng-Signature: sha256=HEX — HMAC-SHA256 of the body with QINGFENG_WEBHOOK_SECRET (if set).
Replies: 2xx sent; 404/410 recipient gone (the identity is switched off); 429, 5xx and network
errors are retried with backoff (Retry-After honoured), then recorded as failed; other 4xx failed.

Inbound (only with a secret): POST /webhook/inbound, body {"recipient": ID, "text": "..."} signed
the same way, answers {"replies": [...]}. Members bind with 「绑定 邀请码」 and answer as in any
text channel.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from bot.app import App
from bot.channels.base import Recipient, SendOutcome, SendStatus
from bot.channels.text import render_all
from bot.core.parsing import parse_text
from bot.core.results import Result
from bot.core.service import Sender

log = logging.getLogger(__name__)
PLATFORM = "webhook"
INBOUND_PATH = "/webhook/inbound"
MAX_RETRIES = 3
MAX_RETRY_AFTER = 30.0


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class _Pace:
    """At most `rate` request starts per second (0: unlimited), shared by all sends."""

    def __init__(self, rate: float) -> None:
        self.interval = 1 / rate if rate > 0 else 0.0
        self.next_at = 0.0
        self.lock = asyncio.Lock()

    async def wait(self) -> None:
        if not self.interval:
            return
        loop = asyncio.get_running_loop()
        async with self.lock:
            delay = self.next_at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            self.next_at = max(self.next_at, loop.time()) + self.interval


def _retry_after(value: str | None) -> float | None:
    try:
        return min(max(float(value), 0.0), MAX_RETRY_AFTER) if value else None
    except ValueError:
        return None


class WebhookMessenger:
    platform = PLATFORM

    def __init__(self, url: str, *, tz: Any, secret: str | None = None, rate: float = 0, timeout: float = 10,
                 retry_backoff: float = 0.5) -> None:
        self.url = url
        self.tz = tz
        self.secret = secret
        self.pace = _Pace(rate)
        self.retry_backoff = retry_backoff
        self.client = httpx.AsyncClient(timeout=timeout)

    async def send(self, recipient: Recipient, results: list[Result]) -> SendOutcome:
        key = f"member:{recipient.member_id}:" + hashlib.sha256(
            repr(results).encode()).hexdigest()[:16]  # same content, same key
        return await self.send_keyed(recipient, results, key)

    async def send_keyed(self, recipient: Recipient, results: list[Result], key: str) -> SendOutcome:
        body = json.dumps({
            "id": key, "platform": PLATFORM, "recipient": recipient.external_id,
            "kinds": [type(r).__name__ for r in results],
            "texts": render_all(results, self.tz, slash=False),
        }, ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json", "Idempotency-Key": key}
        if self.secret:
            headers["X-Qingfeng-Signature"] = sign(self.secret, body)
        error, retry_after = "", None
        for attempt in range(MAX_RETRIES + 1):
            if attempt:
                await asyncio.sleep(retry_after if retry_after is not None else self.retry_backoff * 2 ** (attempt - 1))
            await self.pace.wait()
            retry_after = None
            try:
                response = await self.client.post(self.url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                error = type(exc).__name__
                continue
            if response.is_success:
                return SendOutcome(SendStatus.sent)
            if response.status_code in (404, 410):
                return SendOutcome(SendStatus.blocked, f"HTTP {response.status_code}")
            error = f"HTTP {response.status_code}"
            if response.status_code == 429 or response.status_code >= 500:
                retry_after = _retry_after(response.headers.get("Retry-After"))
                continue
            break
        log.warning("webhook push failed: %s", error)
        return SendOutcome(SendStatus.failed, error)

    async def aclose(self) -> None:
        await self.client.aclose()


class WebhookComponent:
    """Outbound messenger plus, when a secret is configured, the inbound route."""

    name = "webhook"

    def __init__(self, app: App) -> None:
        s = app.settings
        self.app = app
        self.secret = s.webhook_secret.get_secret_value() if s.webhook_secret else None
        self.messenger = WebhookMessenger(s.webhook_push_url or "", tz=s.tz, secret=self.secret,
                                          rate=s.webhook_rate, timeout=s.webhook_timeout)
        self.routes: list[BaseRoute] = [Route(INBOUND_PATH, self.inbound, methods=["POST"])] if self.secret else []

    async def inbound(self, request: Request) -> JSONResponse:
        body = await request.body()
        given = request.headers.get("X-Qingfeng-Signature", "")
        if not self.secret or not hmac.compare_digest(given, sign(self.secret, body)):
            return JSONResponse({"error": "bad signature"}, status_code=403)
        try:
            data = json.loads(body)
            recipient, text = str(data["recipient"]), str(data["text"])
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"error": "expected JSON {recipient, text}"}, status_code=400)
        service = self.app.service.for_channel(PLATFORM)
        results = await service.handle(Sender(PLATFORM, recipient), parse_text(text))
        return JSONResponse({"replies": render_all(results, self.app.settings.tz, slash=False)})

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        await self.messenger.aclose()
