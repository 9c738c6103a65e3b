"""The fake Bot API (tests/fakes/telegram_api.py) in a child process, for benchmarks.

In its own process the fake gets its own interpreter (and core, on a 2-core machine), so the
bot's throughput and CPU are measured without the fake competing for the same GIL — as it
is with the real Telegram, which runs elsewhere. The parent drives it through a pipe:
`FakeProcess.call("counts")` etc. (the `cmd_*` methods below).

For answer ingestion the child also plays the users: `prepare_presses` picks one answer
button per card the bot sent, and `run_presses(window)` keeps `window` presses outstanding,
injecting the next one as soon as the bot has edited a pressed card (a closed loop: the bot
is fed as fast as it takes them); `run_paced(rate)` injects them at a fixed rate whatever the
bot does (an open loop: members do not wait for each other). Latency is from the injection of
a press to the edit of its card, on the shared monotonic clock. `plant` puts cards in chats as
if the bot had pushed them (the load test renders them with the bot's own renderer).
"""

from __future__ import annotations

import multiprocessing as mp
import random
import resource
import threading
import time
from collections import Counter, deque
from multiprocessing.connection import Connection
from typing import Any

from tests.fakes.telegram_api import TOKEN, FakeTelegram

__all__ = ["TOKEN", "FakeProcess"]


class BenchTelegram(FakeTelegram):
    def __init__(self, *, poll_cap: float = 0.5) -> None:
        super().__init__(poll_cap=poll_cap)
        self._script: list[tuple[int, int, int, str]] = []  # (user, chat, message id, callback data)
        self._queue: deque[tuple[int, int, int, str]] = deque()
        self.injected_at: dict[tuple[int, int], float] = {}
        self.edited_at: dict[tuple[int, int], float] = {}
        self._closed_loop = True
        self._pacer: threading.Thread | None = None

    # --- presses --------------------------------------------------------------------------

    def _inject_next(self) -> None:
        with self._lock:
            if not self._queue:
                return
            user, chat, mid, data = self._queue.popleft()
            msg = self._chats[chat][mid]
            self.injected_at[(chat, mid)] = time.monotonic()
        self.press(user, msg, data)

    async def _api_editMessageText(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        result = await super()._api_editMessageText(params, files)
        key = (params.get("chat_id"), params.get("message_id"))
        with self._lock:
            first = key in self.injected_at and key not in self.edited_at
            if first:
                self.edited_at[key] = time.monotonic()  # type: ignore[index]
        if first and self._closed_loop:
            self._inject_next()
        return result

    # --- commands from the parent -----------------------------------------------------------

    def cmd_base_url(self) -> str:
        return self.base_url

    def cmd_counts(self) -> dict[str, int]:
        """Successful calls per method, plus `failed` for any non-200 answer."""
        with self._lock:
            calls = list(self._calls)
        counts = Counter(c.method for c in calls if c.ok)
        counts["failed"] = sum(1 for c in calls if not c.ok)
        return dict(counts)

    def cmd_cpu(self) -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    def cmd_prepare_presses(self, seed: int, limit: int) -> int:
        """One random answer button per card message, shuffled, at most `limit` of them."""
        rng = random.Random(seed)
        script = []
        with self._lock:
            for chat, msgs in self._chats.items():
                for m in msgs.values():
                    answers = [b["callback_data"] for b in m.buttons()
                               if b.get("callback_data", "").startswith("a:")]
                    if answers:
                        script.append((chat, chat, m.message_id, rng.choice(answers)))
        rng.shuffle(script)
        self._script = script[:limit]
        return len(self._script)

    def cmd_run_presses(self, window: int, n: int, offset: int = 0) -> int:
        """Start the closed loop over `n` prepared presses, from the `offset`-th on."""
        with self._lock:
            self._queue = deque(self._script[offset:offset + n])
            self.injected_at.clear()
            self.edited_at.clear()
            total = len(self._queue)
        self._closed_loop = True
        for _ in range(min(window, total)):
            self._inject_next()
        return total

    def cmd_run_paced(self, rate: float, n: int, offset: int = 0) -> int:
        """Inject `n` prepared presses at `rate` per second from a thread, not waiting for the bot."""
        with self._lock:
            self._queue = deque(self._script[offset:offset + n])
            self.injected_at.clear()
            self.edited_at.clear()
            total = len(self._queue)
        self._closed_loop = False

        def pace() -> None:
            start = time.monotonic()
            for i in range(total):
                delay = start + i / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                self._inject_next()

        self._pacer = threading.Thread(target=pace, name="bench-pacer", daemon=True)
        self._pacer.start()
        return total

    def cmd_script(self) -> list[tuple[int, int, int, str]]:
        """The prepared presses: (user, chat, message id, callback data)."""
        return list(self._script)

    def cmd_plant(self, chat_ids: list[int], text: str, reply_markup: dict[str, Any]) -> int:
        """A card in each chat, as if the bot had sent it (text and inline keyboard)."""
        for chat in chat_ids:
            self._store(chat, text=text, reply_markup=reply_markup)
        return len(chat_ids)

    def cmd_calls_summary(self) -> dict[str, Any]:
        """What the bot did, counted: calls per method and status, and how many callback queries
        were answered, and cards edited, more than once."""
        with self._lock:
            calls = list(self._calls)
        by_status = Counter(f"{c.method}:{c.status}" for c in calls)
        answered = Counter(c.params.get("callback_query_id") for c in calls
                           if c.method == "answerCallbackQuery" and c.ok)
        edited = Counter((c.params.get("chat_id"), c.params.get("message_id")) for c in calls
                         if c.method == "editMessageText" and c.ok)
        with self._lock:
            last_update_id = max(self._updates, default=None)
        return {"calls": dict(by_status), "queries_answered": len(answered), "last_update_id": last_update_id,
                "queries_answered_twice": sum(1 for n in answered.values() if n > 1),
                "cards_edited": len(edited), "cards_edited_twice": sum(1 for n in edited.values() if n > 1)}

    def cmd_press_progress(self) -> tuple[int, int]:
        with self._lock:
            return len(self.injected_at), len(self.edited_at)

    def cmd_press_times(self) -> list[tuple[float, float]]:
        """(injected, edited) monotonic times of every pressed card that was edited."""
        with self._lock:
            return [(t, self.edited_at[k]) for k, t in self.injected_at.items() if k in self.edited_at]


def _child(conn: Connection, poll_cap: float) -> None:
    fake = BenchTelegram(poll_cap=poll_cap).start()
    conn.send(fake.base_url)
    try:
        while True:
            name, args = conn.recv()
            if name == "stop":
                break
            try:
                conn.send(("ok", getattr(fake, f"cmd_{name}")(*args)))
            except Exception as exc:  # report to the parent instead of dying silently
                conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        fake.stop()
        conn.send(("ok", None))


class FakeProcess:
    """A `BenchTelegram` served from a child process; use as a context manager."""

    def __init__(self, *, poll_cap: float = 0.5) -> None:
        self.poll_cap = poll_cap
        self.base_url = ""
        self._conn: Connection | None = None
        self._proc: mp.process.BaseProcess | None = None

    def __enter__(self) -> FakeProcess:
        ctx = mp.get_context("spawn")  # no inherited event loops or engines
        parent, child = ctx.Pipe()
        self._proc = ctx.Process(target=_child, args=(child, self.poll_cap), name="bench-fake-telegram",
                                 daemon=True)
        self._proc.start()
        if not parent.poll(120):  # a spawned interpreter imports slowly on a busy machine
            raise RuntimeError("fake Telegram process did not start")
        self.base_url = parent.recv()
        self._conn = parent
        return self

    def call(self, name: str, *args: Any) -> Any:
        assert self._conn is not None
        self._conn.send((name, args))
        status, value = self._conn.recv()
        if status != "ok":
            raise RuntimeError(f"fake Telegram: {value}")
        return value

    def __exit__(self, *exc: object) -> None:
        if self._conn is not None:
            try:
                self._conn.send(("stop", ()))
                if self._conn.poll(15):
                    self._conn.recv()
            except (BrokenPipeError, EOFError):
                pass
        if self._proc is not None:
            self._proc.join(10)
            if self._proc.is_alive():
                self._proc.terminate()
                self._proc.join(5)
