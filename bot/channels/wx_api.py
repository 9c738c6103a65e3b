"""Calling wechatpy's blocking clients from asyncio, with the shared access token.

wechatpy is pinned to 1.8.18: it is the latest stable release (2021) and covers everything
used here — 公众号 and WeCom crypto, message parsing, replies, customer-service/template and
WeCom app messages, directory reads (plus generic `client.post` for newer endpoints such as
`message/update_template_card` and `user/list_id`). 2.0.0a26 is an alpha tag from 2022 with
no release since; the two interoperate on crypto, so moving later is a small change.

wechatpy 1.8.18 is synchronous (requests). Every call runs in a small thread pool of its
own, so the event loop never blocks and a slow WeChat cannot starve other thread users.
The token comes from `TokenStore` (shared by all processes); wechatpy reads it through a
thread-local session, and its own auto-retry is off because it would refresh the token in
per-process memory and retry without bound. Here a token error (40001/40014/42001) causes
exactly one refresh and one retry.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import re
import threading
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

import requests
from wechatpy.client.base import BaseWeChatClient
from wechatpy.exceptions import WeChatClientException
from wechatpy.session import SessionStorage

from bot.channels.wx_tokens import FetchedToken, TokenStore, make_token_store
from bot.core.service import Clock
from bot.storage.db import Database

log = logging.getLogger(__name__)
T = TypeVar("T")

TOKEN_ERRORS = frozenset({40001, 40014, 42001})  # invalid credential / invalid token / expired
TRANSIENT_ERRORS = frozenset({-1, 45009, 45011, 45033})  # system busy, rate limits
DEFAULT_TIMEOUT = 10.0  # seconds per HTTP request to WeChat


class ApiError(Exception):
    """A WeChat/WeCom API failure, safe to log: an errcode and a short reason, never a URL
    (request URLs carry the access token)."""

    def __init__(self, errcode: int | None, reason: str) -> None:
        super().__init__(f"{errcode}: {reason}" if errcode is not None else reason)
        self.errcode = errcode
        self.reason = reason

    @property
    def transient(self) -> bool:
        return self.errcode is None or self.errcode in TRANSIENT_ERRORS


class _ThreadToken(SessionStorage):  # type: ignore[misc]
    """wechatpy's token storage, answered from the calling worker thread's current token."""

    def __init__(self) -> None:
        self._local = threading.local()

    def use(self, token: str) -> None:
        self._local.token = token

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self._local, "token", default)

    def set(self, key: str, value: Any, ttl: int | None = None) -> None:
        pass  # tokens are stored by TokenStore, never by wechatpy

    def delete(self, key: str) -> None:
        pass


class _Redact(logging.Filter):
    """urllib3 logs request lines at DEBUG; those carry ?access_token=… — blank them out."""

    pattern = re.compile(r"(access_token|corpsecret|secret)=[^&\s\"']+")

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not lose the record
            message = str(record.msg)
        record.msg, record.args = self.pattern.sub(r"\1=***", message), None
        return True


def log_failure(logger: logging.Logger, what: str, exc: BaseException) -> None:
    """Log an unexpected failure with its stack but without the exception's message, which
    can carry SQL parameters, URLs with tokens or member data."""
    frames = "".join(traceback.format_tb(exc.__traceback__))
    logger.error("%s: %s\n%s", what, type(exc).__name__, frames)


def install_log_redaction() -> None:
    lg = logging.getLogger("urllib3.connectionpool")
    if not any(isinstance(f, _Redact) for f in lg.filters):
        lg.addFilter(_Redact())


def _api_error(exc: BaseException) -> ApiError:
    if isinstance(exc, WeChatClientException):
        code = exc.errcode
        if code is None:  # HTTP-level failure inside wechatpy
            status = getattr(exc.response, "status_code", None)
            return ApiError(None, f"HTTP {status}")
        return ApiError(int(code), str(exc.errmsg)[:80])
    if isinstance(exc, requests.RequestException):
        return ApiError(None, type(exc).__name__)  # str(exc) would include the URL
    return ApiError(None, type(exc).__name__)


def _never_fetch() -> None:
    raise ApiError(None, "wechatpy tried to fetch a token itself; tokens come from TokenStore")


class ApiCaller:
    """Runs `fn(client)` in a worker thread with a valid shared token; maps errors to ApiError."""

    def __init__(self, client: BaseWeChatClient, *, db: Database, token_key: str, token_url: str,
                 token_params: dict[str, str], clock: Clock, redis_url: str | None = None, workers: int = 8) -> None:
        self.client = client
        self._token_url = token_url
        self._token_params = token_params
        self.store: TokenStore = make_token_store(db=db, redis_url=redis_url, key=token_key,
                                                  fetch=self._fetch_token, clock=clock)
        self._tokens = _ThreadToken()
        client.session = self._tokens
        client.auto_retry = False
        client.expires_at = None  # "user-provided token": wechatpy then never fetches on its own
        client.timeout = client.timeout or DEFAULT_TIMEOUT
        client.fetch_access_token = _never_fetch  # type: ignore[method-assign]
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="wx-api")
        install_log_redaction()

    async def _in_thread(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn)

    async def call(self, fn: Callable[[Any], T]) -> T:
        token = await self.store.get()
        for attempt in (1, 2):
            def job(tok: str = token) -> T:
                self._tokens.use(tok)
                return fn(self.client)

            try:
                return await self._in_thread(job)
            except (WeChatClientException, requests.RequestException) as exc:
                err = _api_error(exc)
                if attempt == 1 and err.errcode in TOKEN_ERRORS:
                    log.info("token rejected (%s); refreshing once", err.errcode)
                    token = await self.store.refresh(stale=token)
                    continue
                raise err from None
        raise AssertionError("unreachable")

    async def _fetch_token(self) -> FetchedToken:
        """GET the token endpoint (not under API_BASE_URL, and wechatpy's own fetcher hard-codes
        api.weixin.qq.com and keeps the token in process memory)."""
        def job() -> dict[str, Any]:
            res = self.client._http.get(self._token_url, params=self._token_params, timeout=self.client.timeout)
            if res.status_code != 200:
                raise ApiError(None, f"HTTP {res.status_code}")
            return res.json()  # type: ignore[no-any-return]

        try:
            result = await self._in_thread(job)
        except requests.RequestException as exc:
            raise _api_error(exc) from None
        except ValueError:
            raise ApiError(None, "token endpoint answered non-JSON") from None
        if int(result.get("errcode") or 0) != 0 or "access_token" not in result:
            raise ApiError(int(result.get("errcode") or -1), str(result.get("errmsg", ""))[:80])
        return FetchedToken(str(result["access_token"]), int(result.get("expires_in", 7200)))

    async def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.client._http.close()
        await self.store.close()
