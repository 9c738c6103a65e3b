"""A fake receiving system for the webhook channel: a real HTTP server on 127.0.0.1.

It behaves as the channel's contract asks of a receiver: every POST is recorded, and a message
is *delivered* the first time its Idempotency-Key arrives (a repeat is acknowledged, not
delivered again). Tests read both: `delivered` (what members see) and `posts` (raw traffic).
Runs in a thread, so it serves in-process tests and `qingfeng run` subprocesses alike, and keeps
its records while those processes are killed and restarted.
"""

from __future__ import annotations

import json
import sys
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from bot.channels.webhook import sign


@dataclass(frozen=True)
class Post:
    key: str
    recipient: str
    kinds: tuple[str, ...]
    texts: tuple[str, ...]
    repeat: bool  # this key had arrived before: acknowledged, not delivered again
    signature_ok: bool | None  # None when the server has no secret


class FakeWebhookServer:
    def __init__(self, *, secret: str | None = None) -> None:
        self.secret = secret
        self.posts: list[Post] = []
        self.lock = threading.Lock()
        # recipient → HTTP status to answer instead of 200 (e.g. 410 gone, 500 broken)
        self.status_for: dict[str, int] = {}
        # recipient → statuses to answer first, in order (e.g. [500, 500] or [429]); then normal
        self.script: dict[str, list[int]] = defaultdict(list)
        # Called with each new delivery and the running count of deliveries, *before* the reply
        # goes out (a test can kill the sender there: the nastiest moment).
        self.on_delivery: Callable[[Post, int], None] | None = None
        self._server: ThreadingHTTPServer | None = None

    # --- what tests read ---------------------------------------------------------------------

    def delivered(self, kind: str | None = None) -> list[Post]:
        with self.lock:
            return [p for p in self.posts if not p.repeat and (kind is None or kind in p.kinds)]

    def delivered_per_recipient(self, kind: str | None = None, key_prefix: str = "") -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for p in self.delivered(kind):
            if p.key.startswith(key_prefix):
                counts[p.recipient] += 1
        return dict(counts)

    def posts_per_recipient(self, key_prefix: str = "") -> dict[str, int]:
        with self.lock:
            counts: dict[str, int] = defaultdict(int)
            for p in self.posts:
                if p.key.startswith(key_prefix):
                    counts[p.recipient] += 1
            return dict(counts)

    def repeats(self, key_prefix: str = "") -> int:
        with self.lock:
            return sum(1 for p in self.posts if p.repeat and p.key.startswith(key_prefix))

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/push"

    # --- serving -------------------------------------------------------------------------------

    def _handle(self, body: bytes, headers: dict[str, str]) -> int:
        data = json.loads(body)
        key = headers.get("idempotency-key", "")
        assert key == data["id"], "Idempotency-Key header and body id differ"
        recipient = str(data["recipient"])
        signature_ok = None
        if self.secret is not None:
            signature_ok = headers.get("x-qingfeng-signature", "") == sign(self.secret, body)
            if not signature_ok:
                return 401
        with self.lock:
            if self.script[recipient]:
                return self.script[recipient].pop(0)
            if recipient in self.status_for:
                return self.status_for[recipient]
            repeat = any(p.key == key for p in self.posts)
            post = Post(key, recipient, tuple(data["kinds"]), tuple(data["texts"]), repeat, signature_ok)
            self.posts.append(post)
            count = sum(1 for p in self.posts if not p.repeat)
        if not repeat and self.on_delivery is not None:
            self.on_delivery(post, count)
        return 200

    @contextmanager
    def running(self) -> Iterator[FakeWebhookServer]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                if len(body) < length:  # the sender died mid-request: nothing was delivered
                    raise ConnectionAbortedError("truncated request")
                status = fake._handle(body, {k.lower(): v for k, v in self.headers.items()})
                reply = json.dumps({"ok": status == 200}).encode()
                self.send_response(status)
                if status == 429:
                    self.send_header("Retry-After", "0")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: object) -> None:
                return None

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: object, client_address: object) -> None:
                # A sender killed mid-request resets its connection: expected in kill tests.
                if not isinstance(sys.exc_info()[1], ConnectionError):
                    super().handle_error(request, client_address)  # type: ignore[arg-type]

        server = Server(("127.0.0.1", 0), Handler)
        self._server = server
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()
            thread.join(5)
