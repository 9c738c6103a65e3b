"""python-telegram-bot's HTTP layer on aiohttp, with JSON request bodies.

Why not PTB's default `HTTPXRequest`: measured against the fake Bot API (bench/fanout.py,
docs/benchmarks.md), httpx + httpcore + anyio cost the bot 1.1-2.8 ms of CPU per Bot API call
(more the more connections are pooled), aiohttp ~0.2 ms. Every push message, card edit and
callback answer is one such call, so this is most of the bot's CPU at volume.

Why JSON: the Bot API accepts `application/json` for every call without files, and
`json.dumps` is C code, while a form body percent-encodes the Chinese card text byte by byte
in Python. Calls with files (charts) stay `multipart/form-data`, as the Bot API requires.

PTB keeps the rest: building requests, parsing answers, errors from status codes, the rate
limiter and retries all sit above this class (`BaseRequest.post` calls `do_request`).
"""

from __future__ import annotations

import json
import re
import urllib.request
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData

_TOKEN_IN_URL = re.compile(r"/bot[^/\s'\"]+")  # /bot<token>/method, and /file/bot<token>/path


def _redacted(err: BaseException) -> str:
    """The error's text without the token that Bot API URLs carry (it may reach a log)."""
    return _TOKEN_IN_URL.sub("/bot<token>", f"aiohttp.{type(err).__name__}: {err}")


class AiohttpRequest(BaseRequest):
    """A `BaseRequest` on one aiohttp session (keep-alive pool of `pool_size` connections).

    `timeout` is the default for connecting, waiting for a free connection and reading the
    answer; PTB passes its own per call (getUpdates adds the long-poll time to the read).
    aiohttp has no write timeout: a call with files gets a total limit of write + read time.
    Proxies come from the environment (HTTP(S)_PROXY, NO_PROXY), as with PTB's default, looked
    up once per host (aiohttp's `trust_env` looks them up in a thread on every request).
    """

    __slots__ = ("_media_write_timeout", "_pool_size", "_proxies", "_session", "_timeout")

    def __init__(self, *, pool_size: int, timeout: float | None,
                 media_write_timeout: float | None = None) -> None:
        self._pool_size = pool_size
        self._timeout = timeout
        self._media_write_timeout = media_write_timeout if media_write_timeout is not None else timeout
        self._session: aiohttp.ClientSession | None = None
        self._proxies: dict[tuple[str, str], str | None] = {}

    @property
    def read_timeout(self) -> float | None:
        return self._timeout

    async def initialize(self) -> None:
        # Made here, in the running loop (aiohttp binds a session to its loop); a shut-down
        # request gets a new session, as PTB re-initialises an application after a stop.
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._pool_size),
                timeout=aiohttp.ClientTimeout(total=None),  # per call, below
                headers={"User-Agent": self.USER_AGENT})

    async def shutdown(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: Any = BaseRequest.DEFAULT_NONE,
        write_timeout: Any = BaseRequest.DEFAULT_NONE,
        connect_timeout: Any = BaseRequest.DEFAULT_NONE,
        pool_timeout: Any = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        session = self._session
        if session is None or session.closed:
            raise RuntimeError("AiohttpRequest is not initialized")
        files = request_data is not None and request_data.contains_files
        timeout = self._client_timeout(files, read_timeout, write_timeout, connect_timeout, pool_timeout)
        body: Any = None
        headers: dict[str, str] | None = None
        if files:
            body = _multipart(request_data)  # type: ignore[arg-type]
        elif request_data is not None:
            body = json.dumps(request_data.parameters, ensure_ascii=False,
                              separators=(",", ":")).encode()
            headers = {"Content-Type": "application/json"}
        try:
            async with session.request(method, url, data=body, headers=headers, timeout=timeout,
                                       proxy=self._proxy_for(url)) as res:
                return res.status, await res.read()
        except TimeoutError as err:  # aiohttp's timeouts subclass it
            raise TimedOut(_redacted(err)) from err
        except aiohttp.ClientError as err:
            raise NetworkError(_redacted(err)) from err

    def _proxy_for(self, url: str) -> str | None:
        parts = urlsplit(url)
        key = (parts.scheme, parts.hostname or "")
        if key not in self._proxies:
            bypass = not key[1] or urllib.request.proxy_bypass(key[1])
            proxy = None if bypass else urllib.request.getproxies().get(key[0])
            if proxy is not None and urlsplit(proxy).scheme not in ("http", "https"):
                # Said plainly at start-up (getMe), without the URL: it may hold a password.
                raise RuntimeError(f"the {key[0].upper()}_PROXY environment variable names a "
                                   f"{urlsplit(proxy).scheme or 'scheme-less'} proxy; the Bot API "
                                   "client supports http:// proxies only")
            self._proxies[key] = proxy
        return self._proxies[key]

    def _client_timeout(self, files: bool, read: Any, write: Any, connect: Any, pool: Any) -> aiohttp.ClientTimeout:
        default = self._timeout
        read = default if read is BaseRequest.DEFAULT_NONE else read
        connect = default if connect is BaseRequest.DEFAULT_NONE else connect
        pool = default if pool is BaseRequest.DEFAULT_NONE else pool
        total = None
        if files:
            write = self._media_write_timeout if write is BaseRequest.DEFAULT_NONE else write
            if write is not None and read is not None:
                total = write + read + (connect or 0)
        # aiohttp's `connect` is waiting for a pooled connection plus connecting.
        wait = None if pool is None and connect is None else (pool or 0) + (connect or 0)
        return aiohttp.ClientTimeout(total=total, connect=wait, sock_connect=connect, sock_read=read)


def _multipart(request_data: RequestData) -> aiohttp.FormData:
    form = aiohttp.FormData(quote_fields=False)
    for name, value in request_data.json_parameters.items():
        form.add_field(name, value)
    for name, part in request_data.multipart_data.items():
        filename, content = part[0], part[1]
        content_type = part[2] if len(part) > 2 else "application/octet-stream"
        form.add_field(name, content, filename=filename, content_type=content_type)
    return form
