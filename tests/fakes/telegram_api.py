"""A fake Telegram Bot API: a real HTTP server on 127.0.0.1 for tests and benchmarks.

It speaks what python-telegram-bot 22 sends (form-urlencoded or multipart POSTs to
``/bot<token>/<method>``) and answers with the Bot API's JSON shapes. It runs in its own
thread and event loop, so the code under test (in the test's loop, or a `qingfeng run`
subprocess) talks to it over real sockets, and it keeps serving while a test awaits.

A test:
- injects updates as users would cause them: ``send_text``, ``press`` (a button of a message
  the bot sent), ``vote`` (a quiz-poll answer), or ``post_webhook`` in webhook mode;
- injects faults: ``inject("429", retry_after=1)``, ``inject("5xx", probability=0.1)``,
  ``inject("timeout")``, ``block(chat_id)`` (the user blocked the bot → 403);
- inspects what the bot did: ``calls(...)``, ``messages(chat_id)``, and waits on a condition
  with ``await wait_for(lambda: ...)`` instead of sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any
from urllib.parse import parse_qsl

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

TOKEN = "123456789:AAHfakeTokenForTestsOnly_0123456789x"
BOT_ID = 123456789
BOT_USERNAME = "qingfeng_test_bot"

SEND_METHODS = frozenset({"sendMessage", "sendPhoto", "sendMediaGroup", "sendPoll"})
OUTBOUND_METHODS = SEND_METHODS | {"editMessageText", "editMessageReplyMarkup", "answerCallbackQuery"}
# Parameters that stay strings even when they look like JSON ("123" as a message text).
_STRING_PARAMS = frozenset({"text", "caption", "question", "explanation", "url", "secret_token",
                            "callback_query_id", "description", "short_description"})


@dataclass
class Call:
    """One request the bot made, as the server saw it."""

    method: str
    params: dict[str, Any]
    status: int
    at: float
    files: dict[str, bytes] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == 200

    @property
    def chat_id(self) -> int | str | None:
        return self.params.get("chat_id")


@dataclass
class StoredMessage:
    """A message in a chat, as it currently looks (edits applied)."""

    chat_id: int
    message_id: int
    date: int
    text: str | None = None
    reply_markup: dict[str, Any] | None = None
    caption: str | None = None
    photo: bytes | None = None
    poll: dict[str, Any] | None = None
    media_group_id: str | None = None
    from_bot: bool = True
    edits: int = 0

    def buttons(self) -> list[dict[str, Any]]:
        rows = (self.reply_markup or {}).get("inline_keyboard", [])
        return [b for row in rows for b in row]

    def button(self, label: str) -> dict[str, Any]:
        """The first button whose text contains `label` (e.g. "C." or "提交")."""
        for b in self.buttons():
            if label in b["text"]:
                return b
        raise LookupError(f"no button {label!r} on message {self.message_id}: "
                          f"{[b['text'] for b in self.buttons()]}")


@dataclass
class Fault:
    """A rule applied to matching requests before they are processed.

    kind: "429" (with retry_after), "5xx" (status), "403", "400", or "timeout" (the request
    is held `delay` seconds, then dropped unprocessed: the client should have given up)."""

    kind: str
    methods: frozenset[str] | None = OUTBOUND_METHODS
    chat_id: int | None = None
    probability: float | None = None  # None: every match
    times: int | None = 1  # firings left; None: unlimited
    skip: int = 0  # let this many matching requests through first
    retry_after: int = 1
    status: int = 500
    delay: float = 2.0
    fired: int = 0
    seen: int = 0


class FakeTelegram:
    def __init__(self, token: str = TOKEN, *, seed: int = 0, poll_cap: float = 0.5) -> None:
        self.token = token
        self.poll_cap = poll_cap  # longest a getUpdates long poll is held, whatever the client asks
        self.bot_user = {"id": BOT_ID, "is_bot": True, "first_name": "清风", "username": BOT_USERNAME,
                         "can_join_groups": True, "can_read_all_group_messages": False,
                         "supports_inline_queries": False}
        self.rng = random.Random(seed)
        self._lock = threading.Lock()
        self._calls: list[Call] = []
        self._chats: dict[int, dict[int, StoredMessage]] = {}
        self._message_ids: dict[int, itertools.count[int]] = {}
        self._updates: dict[int, dict[str, Any]] = {}  # all updates ever injected, by id
        self._pending: list[int] = []  # update ids not yet confirmed by an offset
        self._next_update_id = 700_000
        self._faults: list[Fault] = []
        self._blocked: set[int] = set()
        self._queries: dict[str, bool] = {}  # callback query id -> answered
        self._polls: dict[str, dict[str, Any]] = {}
        self.commands: list[dict[str, Any]] = []
        self.webhook: dict[str, Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._new_update: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._server: uvicorn.Server | None = None
        self.port = 0

    # --- lifecycle ----------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The server root, as QINGFENG_TELEGRAM_BASE_URL takes it."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeTelegram:
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            self._new_update = asyncio.Event()
            config = uvicorn.Config(self._asgi(), host="127.0.0.1", port=0, log_level="error",
                                    lifespan="off", access_log=False)
            server = uvicorn.Server(config)
            self._server = server

            async def serve() -> None:
                task = asyncio.create_task(server.serve())
                while not server.started and not task.done():
                    await asyncio.sleep(0.005)
                if task.done():
                    failure.append(task.exception() or RuntimeError("fake server did not start"))
                else:
                    self.port = server.servers[0].sockets[0].getsockname()[1]
                started.set()
                await task

            try:
                loop.run_until_complete(serve())
            except BaseException as exc:  # surface start-up failures to the caller
                failure.append(exc)
                started.set()
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="fake-telegram", daemon=True)
        self._thread.start()
        if not started.wait(10) or failure:
            raise RuntimeError(f"fake Telegram did not start: {failure}")
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> FakeTelegram:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- injecting what users do --------------------------------------------------------------

    def add_update(self, payload: dict[str, Any]) -> int:
        """Queue a raw update (without update_id); returns the id given to it."""
        with self._lock:
            self._next_update_id += 1
            uid = self._next_update_id
            self._updates[uid] = {"update_id": uid, **payload}
            self._pending.append(uid)
        self._wake()
        return uid

    def update(self, update_id: int) -> dict[str, Any]:
        with self._lock:
            return self._updates[update_id]

    def replay(self, update_ids: Iterable[int]) -> None:
        """Serve already-confirmed updates again, as Telegram does when a bot crashed before
        confirming its last batch."""
        with self._lock:
            for uid in update_ids:
                if uid not in self._pending:
                    self._pending.append(uid)
            self._pending.sort()
        self._wake()

    @staticmethod
    def user(user_id: int) -> dict[str, Any]:
        return {"id": user_id, "is_bot": False, "first_name": f"用户{user_id}", "language_code": "zh-hans"}

    def _chat(self, chat_id: int) -> dict[str, Any]:
        if chat_id < 0:
            return {"id": chat_id, "type": "group", "title": f"群{-chat_id}"}
        return {"id": chat_id, "type": "private", "first_name": f"用户{chat_id}"}

    def text_update(self, user_id: int, text: str, *, chat_id: int | None = None) -> dict[str, Any]:
        chat = chat_id if chat_id is not None else user_id
        with self._lock:
            mid = next(self._message_ids.setdefault(chat, itertools.count(1)))
        message: dict[str, Any] = {"message_id": mid, "from": self.user(user_id), "chat": self._chat(chat),
                                   "date": int(time.time()), "text": text}
        if text.startswith("/"):
            command = text.split()[0]
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command)}]
        return {"message": message}

    def send_text(self, user_id: int, text: str, *, chat_id: int | None = None) -> int:
        """The user types `text` (a /command gets its bot_command entity, as Telegram adds it)."""
        return self.add_update(self.text_update(user_id, text, chat_id=chat_id))

    def press(self, user_id: int, message: StoredMessage, callback_data: str) -> int:
        """The user presses a button carrying `callback_data` under `message`."""
        with self._lock:
            self._next_update_id += 1
            qid = f"{self._next_update_id}{self.rng.randrange(10**6):06d}"
            self._queries[qid] = False
            msg = self._message_json(message)
        return self.add_update({"callback_query": {
            "id": qid, "from": self.user(user_id), "chat_instance": f"ci{message.chat_id}",
            "message": msg, "data": callback_data}})

    def press_button(self, user_id: int, message: StoredMessage, label: str) -> int:
        return self.press(user_id, message, message.button(label)["callback_data"])

    def vote(self, user_id: int, poll_id: str, option_ids: list[int]) -> int:
        return self.add_update({"poll_answer": {
            "poll_id": poll_id, "user": self.user(user_id), "option_ids": option_ids,
            "option_persistent_ids": [f"{poll_id}-{i}" for i in option_ids]}})

    async def post_webhook(self, payload: dict[str, Any], *, secret: str | None = "registered") -> int:
        """Deliver an update to the registered webhook as Telegram does; returns the HTTP status.
        `secret="registered"` sends the secret the bot registered; None sends no header."""
        with self._lock:
            self._next_update_id += 1
            uid = self._next_update_id
            update = {"update_id": uid, **payload}
            self._updates[uid] = update
            hook = dict(self.webhook or {})
        if not hook.get("url"):
            raise RuntimeError("no webhook registered")
        headers = {}
        if secret == "registered":
            secret = hook.get("secret_token")
        if secret is not None:
            headers["X-Telegram-Bot-Api-Secret-Token"] = secret
        async with httpx.AsyncClient() as client:
            response = await client.post(hook["url"], json=update, headers=headers, timeout=10)
        return response.status_code

    # --- injecting faults -------------------------------------------------------------------------

    def inject(self, kind: str, **options: Any) -> Fault:
        if "methods" in options and options["methods"] is not None:
            options["methods"] = frozenset(options["methods"])
        fault = Fault(kind=kind, **options)
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def block(self, chat_id: int) -> None:
        """The user blocked the bot: every send to them is 403 from now on."""
        with self._lock:
            self._blocked.add(chat_id)

    def _pick_fault(self, method: str, params: dict[str, Any]) -> Fault | None:
        with self._lock:
            for f in self._faults:
                if f.methods is not None and method not in f.methods:
                    continue
                if f.chat_id is not None and params.get("chat_id") != f.chat_id:
                    continue
                if f.times is not None and f.fired >= f.times:
                    continue
                f.seen += 1
                if f.seen <= f.skip:
                    continue
                if f.probability is not None and self.rng.random() >= f.probability:
                    continue
                f.fired += 1
                return f
        return None

    # --- inspecting what the bot did ----------------------------------------------------------

    def calls(self, method: str | None = None, *, chat_id: int | None = None, ok: bool | None = True) -> list[Call]:
        with self._lock:
            found = list(self._calls)
        return [c for c in found if (method is None or c.method == method)
                and (chat_id is None or c.chat_id == chat_id) and (ok is None or c.ok == ok)]

    def messages(self, chat_id: int) -> list[StoredMessage]:
        """What the bot sent to a chat (edits applied), oldest first."""
        with self._lock:
            return [m for m in self._chats.get(chat_id, {}).values() if m.from_bot]

    def photos(self, chat_id: int) -> list[StoredMessage]:
        """The photos the bot sent to a chat (single or in albums), oldest first."""
        return [m for m in self.messages(chat_id) if m.photo is not None]

    def last_message(self, chat_id: int) -> StoredMessage:
        msgs = self.messages(chat_id)
        if not msgs:
            raise LookupError("the bot sent nothing to this chat")
        return msgs[-1]

    def sent_counts(self) -> dict[int, int]:
        """Messages the bot sent, per chat."""
        with self._lock:
            return {chat: sum(1 for m in msgs.values() if m.from_bot) for chat, msgs in self._chats.items()}

    def pending_updates(self) -> int:
        with self._lock:
            return len(self._pending)

    async def wait_for(self, predicate: Callable[[], Any], *, timeout: float = 15.0,
                       what: str = "condition") -> Any:
        """Poll `predicate` until it is truthy (bounded); returns its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            await asyncio.sleep(0.02)

    # --- the HTTP side -----------------------------------------------------------------------------

    def _wake(self) -> None:
        loop, event = self._loop, self._new_update
        if loop is not None and event is not None and not loop.is_closed():
            loop.call_soon_threadsafe(event.set)

    def _asgi(self) -> Starlette:
        route = Route("/bot{token}/{method}", self._endpoint, methods=["GET", "POST"])
        return Starlette(routes=[route])

    @staticmethod
    async def _params(request: Request) -> tuple[dict[str, Any], dict[str, bytes]]:
        body = await request.body()
        ctype = request.headers.get("content-type", "")
        raw: dict[str, Any] = dict(request.query_params)
        files: dict[str, bytes] = {}
        if ctype.startswith("multipart/form-data"):
            msg = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {ctype}\r\n\r\n".encode() + body)
            for part in msg.iter_parts():
                name = part.get_param("name", header="content-disposition")
                payload = part.get_payload(decode=True) or b""
                if part.get_filename() is not None:
                    files[name] = payload
                else:
                    raw[name] = payload.decode()
        elif ctype.startswith("application/json") and body:
            raw.update(json.loads(body))  # values may be objects, or JSON in strings as in forms
        elif body:
            raw.update(parse_qsl(body.decode(), keep_blank_values=True))
        params: dict[str, Any] = {}
        for key, value in raw.items():
            if key in _STRING_PARAMS or not isinstance(value, str):
                params[key] = value
                continue
            try:
                params[key] = json.loads(value)
            except ValueError:
                params[key] = value
        for key, value in list(params.items()):  # "attach://name" refers to an uploaded part
            if isinstance(value, str) and value.startswith("attach://"):
                files.setdefault(key, files.get(value.removeprefix("attach://"), b""))
        return params, files

    def _record(self, method: str, params: dict[str, Any], status: int, files: dict[str, bytes]) -> None:
        with self._lock:
            self._calls.append(Call(method, params, status, time.monotonic(), files))

    @staticmethod
    def _error(status: int, description: str, parameters: dict[str, Any] | None = None) -> JSONResponse:
        body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
        if parameters:
            body["parameters"] = parameters
        return JSONResponse(body, status_code=status)

    async def _endpoint(self, request: Request) -> JSONResponse:
        method = request.path_params["method"]
        if request.path_params["token"] != self.token:
            return self._error(401, "Unauthorized")
        params, files = await self._params(request)
        fault = self._pick_fault(method, params)
        if fault is not None:
            response = await self._fault_response(fault)
            self._record(method, params, response.status_code, files)
            return response
        handler = getattr(self, f"_api_{method}", None)
        if handler is None:
            response = self._error(404, "Not Found: method not found")
        else:
            try:
                result = await handler(params, files)
            except _ApiError as exc:
                response = self._error(exc.status, exc.description)
            else:
                response = JSONResponse({"ok": True, "result": result})
        self._record(method, params, response.status_code, files)
        return response

    async def _fault_response(self, fault: Fault) -> JSONResponse:
        if fault.kind == "429":
            return self._error(429, f"Too Many Requests: retry after {fault.retry_after}",
                               {"retry_after": fault.retry_after})
        if fault.kind == "5xx":
            return self._error(fault.status, "Internal Server Error")
        if fault.kind == "403":
            return self._error(403, "Forbidden: bot was blocked by the user")
        if fault.kind == "400":
            return self._error(400, "Bad Request: chat not found")
        if fault.kind == "timeout":
            await asyncio.sleep(fault.delay)
            return self._error(504, "Gateway Timeout")
        raise ValueError(f"unknown fault kind {fault.kind!r}")

    # --- Bot API methods -------------------------------------------------------------------------

    def _message_json(self, m: StoredMessage) -> dict[str, Any]:
        d: dict[str, Any] = {"message_id": m.message_id, "chat": self._chat(m.chat_id), "date": m.date}
        if m.from_bot:
            d["from"] = self.bot_user
        if m.text is not None:
            d["text"] = m.text
        if m.caption is not None:
            d["caption"] = m.caption
        if m.photo is not None:
            d["photo"] = [{"file_id": f"photo{m.chat_id}_{m.message_id}", "file_unique_id": f"u{m.message_id}",
                           "width": 800, "height": 600, "file_size": len(m.photo)}]
        if m.media_group_id is not None:
            d["media_group_id"] = m.media_group_id
        if m.poll is not None:
            d["poll"] = m.poll
        if m.reply_markup:
            d["reply_markup"] = m.reply_markup
        if m.edits:
            d["edit_date"] = m.date + m.edits
        return d

    def _chat_id(self, params: dict[str, Any]) -> int:
        chat_id = params.get("chat_id")
        if not isinstance(chat_id, int):
            raise _ApiError(400, "Bad Request: chat not found")
        if chat_id in self._blocked:
            raise _ApiError(403, "Forbidden: bot was blocked by the user")
        return chat_id

    def _store(self, chat_id: int, **fields: Any) -> StoredMessage:
        with self._lock:
            mid = next(self._message_ids.setdefault(chat_id, itertools.count(1)))
            msg = StoredMessage(chat_id=chat_id, message_id=mid, date=int(time.time()), **fields)
            self._chats.setdefault(chat_id, {})[mid] = msg
            return msg

    def _find(self, params: dict[str, Any]) -> StoredMessage:
        chat_id = self._chat_id(params)
        msg = self._chats.get(chat_id, {}).get(params.get("message_id"))  # type: ignore[arg-type]
        if msg is None:
            raise _ApiError(400, "Bad Request: message to edit not found")
        return msg

    @staticmethod
    def _markup(params: dict[str, Any]) -> dict[str, Any] | None:
        markup = params.get("reply_markup")
        if not markup or not markup.get("inline_keyboard"):
            return None
        return markup

    async def _api_getMe(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        return self.bot_user

    async def _api_getUpdates(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        if self.webhook and self.webhook.get("url"):
            raise _ApiError(409, "Conflict: can't use getUpdates method while webhook is active; "
                                 "use deleteWebhook to delete the webhook first")
        offset = int(params.get("offset") or 0)
        limit = int(params.get("limit") or 100)
        wait = min(float(params.get("timeout") or 0), self.poll_cap)
        deadline = time.monotonic() + wait
        assert self._new_update is not None
        while True:
            self._new_update.clear()  # before looking, so a wake-up in between is not lost
            with self._lock:
                if offset > 0:
                    self._pending = [u for u in self._pending if u >= offset]
                ready = [self._updates[u] for u in self._pending[:limit]]
            remaining = deadline - time.monotonic()
            if ready or remaining <= 0:
                return ready
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new_update.wait(), remaining)

    async def _api_sendMessage(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        chat_id = self._chat_id(params)
        text = params.get("text") or ""
        if not text.strip():
            raise _ApiError(400, "Bad Request: message text is empty")
        if len(text) > 4096:
            raise _ApiError(400, "Bad Request: message is too long")
        for button in (b for row in (self._markup(params) or {}).get("inline_keyboard", []) for b in row):
            if len(button.get("callback_data", "").encode()) > 64:
                raise _ApiError(400, "Bad Request: BUTTON_DATA_INVALID")
        return self._message_json(self._store(chat_id, text=text, reply_markup=self._markup(params)))

    async def _api_sendPhoto(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        chat_id = self._chat_id(params)
        photo = files.get("photo")
        if not photo:
            raise _ApiError(400, "Bad Request: there is no photo in the request")
        _check_photo(photo)
        return self._message_json(self._store(chat_id, photo=photo, caption=params.get("caption")))

    async def _api_sendMediaGroup(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        """An album: 2-10 photos, each `{"type": "photo", "media": "attach://<part>", "caption": …}`
        with the bytes in the multipart part it names."""
        chat_id = self._chat_id(params)
        media = params.get("media")
        if not isinstance(media, list) or not 2 <= len(media) <= 10:
            raise _ApiError(400, "Bad Request: wrong number of messages in the media group (2-10)")
        photos: list[tuple[bytes, str | None]] = []
        for item in media:
            ref = item.get("media") if isinstance(item, dict) else None
            if not isinstance(ref, str) or item.get("type") != "photo" or not ref.startswith("attach://"):
                raise _ApiError(400, "Bad Request: only uploaded photos are supported by this fake")
            data = files.get(ref.removeprefix("attach://"))
            if not data:
                raise _ApiError(400, "Bad Request: the media group refers to a missing file part")
            _check_photo(data)
            caption = item.get("caption")
            if caption is not None and len(caption) > 1024:
                raise _ApiError(400, "Bad Request: message caption is too long")
            photos.append((data, caption))
        with self._lock:
            self._next_update_id += 1
            group = f"album{self._next_update_id}"
        return [self._message_json(self._store(chat_id, photo=data, caption=caption, media_group_id=group))
                for data, caption in photos]

    async def _api_sendPoll(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        chat_id = self._chat_id(params)
        options = [o["text"] if isinstance(o, dict) else str(o) for o in params.get("options") or []]
        if not 2 <= len(options) <= 12:
            raise _ApiError(400, "Bad Request: poll must have 2-12 options")
        with self._lock:
            self._next_update_id += 1
            poll_id = str(5_000_000_000_000_000 + self._next_update_id)
        correct = params.get("correct_option_ids")
        if correct is None and params.get("correct_option_id") is not None:
            correct = [params["correct_option_id"]]
        poll = {
            "id": poll_id, "question": params.get("question", ""),
            "options": [{"text": t, "voter_count": 0, "persistent_id": f"{poll_id}-{i}"}
                        for i, t in enumerate(options)],
            "total_voter_count": 0, "is_closed": False,
            "is_anonymous": params.get("is_anonymous", True), "type": params.get("type", "regular"),
            "allows_multiple_answers": bool(params.get("allows_multiple_answers", False)),
            "allows_revoting": bool(params.get("allows_revoting", False)),
            "members_only": bool(params.get("members_only", False)),
        }
        if poll["type"] == "quiz":
            if not correct:
                raise _ApiError(400, "Bad Request: quiz poll must have a correct option")
            poll["correct_option_ids"] = list(correct)
            poll["correct_option_id"] = correct[0]
            if params.get("explanation"):
                poll["explanation"] = params["explanation"]
        with self._lock:
            self._polls[poll_id] = poll
        return self._message_json(self._store(chat_id, poll=poll))

    def poll(self, poll_id: str) -> dict[str, Any]:
        with self._lock:
            return self._polls[poll_id]

    async def _api_editMessageText(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        with self._lock:
            msg = self._find(params)
            text, markup = params.get("text") or "", self._markup(params)
            if not text.strip():
                raise _ApiError(400, "Bad Request: message text is empty")
            if text == msg.text and markup == msg.reply_markup:
                raise _ApiError(400, "Bad Request: message is not modified: specified new message content "
                                     "and reply markup are exactly the same as a current content and reply "
                                     "markup of the message")
            msg.text, msg.reply_markup = text, markup
            msg.edits += 1
            return self._message_json(msg)

    async def _api_editMessageReplyMarkup(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        with self._lock:
            msg = self._find(params)
            markup = self._markup(params)
            if markup == msg.reply_markup:
                raise _ApiError(400, "Bad Request: message is not modified: specified new message content "
                                     "and reply markup are exactly the same as a current content and reply "
                                     "markup of the message")
            msg.reply_markup = markup
            msg.edits += 1
            return self._message_json(msg)

    async def _api_answerCallbackQuery(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        qid = params.get("callback_query_id")
        with self._lock:
            if self._queries.get(qid) is not False:  # unknown, or answered already
                raise _ApiError(400, "Bad Request: query is too old and response timeout expired or "
                                     "query ID is invalid")
            self._queries[qid] = True
        return True

    async def _api_setMyCommands(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        self.commands = list(params.get("commands") or [])
        return True

    async def _api_getMyCommands(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        return self.commands

    async def _api_setWebhook(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        self.webhook = {"url": params.get("url", ""), "secret_token": params.get("secret_token"),
                        "allowed_updates": params.get("allowed_updates")}
        return True

    async def _api_deleteWebhook(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        self.webhook = None
        if params.get("drop_pending_updates"):
            with self._lock:
                self._pending.clear()
        return True

    async def _api_getWebhookInfo(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        hook = self.webhook or {}
        with self._lock:
            pending = len(self._pending)
        return {"url": hook.get("url", ""), "has_custom_certificate": False, "pending_update_count": pending}

    async def _api_close(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        return True


def _check_photo(data: bytes) -> None:
    """Telegram takes photos up to 10 MB, as JPEG/PNG/GIF/WebP (checked here by signature)."""
    if len(data) > 10 * 1024 * 1024:
        raise _ApiError(400, "Bad Request: PHOTO_INVALID_DIMENSIONS")
    if not data.startswith((b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF8", b"RIFF")):
        raise _ApiError(400, "Bad Request: IMAGE_PROCESS_FAILED")


class _ApiError(Exception):
    def __init__(self, status: int, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
