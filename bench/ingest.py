"""Answer ingestion (issue #8, benchmark 2): callback-query answers through getUpdates.

The bot is the same `TelegramComponent` that `qingfeng run` starts (PTB Application polling
the fake Bot API, handlers, core `Service.handle`, the database). The fake runs in a child
process (bench/tgfake.py) and plays the users: members got a round of single-choice / true-false
cards through a real push, then press one answer button per card. The presses are a closed
loop: `--window` presses are outstanding at any time, and the next is injected as soon as the
bot edits a pressed card, so the bot is fed as fast as it takes them.

Rows per database:
- baseline: a bare PTB Application whose button handler only answers the query and edits the
  card (no database, no core) — what PTB, HTTP and the fake cost per update;
- the bot under load (`--window` outstanding): answers/s end to end and p50/p99 latency
  from the injected update to the edited card (every answer checked in the database);
- the bot unloaded (one outstanding): the latency of a single press;
- core only: `Service.handle(SubmitAnswer)` called in a loop, no Telegram at all.

Target: >= 500 answers/s on SQLite. Rate limiting is off here: with the default
`QINGFENG_TELEGRAM_RATE_LIMIT` on, each answer's card edit counts against the overall
30 messages/s, which then bounds ingestion (as Telegram itself would).

    .venv/bin/python -m bench.ingest                        # 5,000 answers, SQLite and PostgreSQL
    .venv/bin/python -m bench.ingest --quick --backend sqlite
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import math
import random
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import event, func
from sqlmodel import select
from telegram import Update
from telegram.ext import CallbackQueryHandler, ContextTypes

from bench.common import database, machine, table
from bench.tgfake import TOKEN, FakeProcess
from bench.world import (
    USER_BASE,
    backend_arg,
    backends,
    button_items,
    cpu_seconds,
    measured,
    open_round_for_all,
    profiled,
    seeded_app,
    settings_for,
)
from bot.app import App
from bot.channels.telegram import TelegramComponent, TelegramMessenger, build_application
from bot.channels.telegram.component import ALLOWED_UPDATES
from bot.core.commands import SubmitAnswer
from bot.core.push import send_round
from bot.core.results import AnswerResult
from bot.core.service import Sender
from bot.runtime import settle_heap
from bot.storage.models import Answer, RoundItem

TARGET = 500.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


@dataclass
class Run:
    """One closed-loop run: answers/s from first injection to last edit, latencies in s, and
    CPU ms per answer of this process (the bot) and of the fake (Bot API and the users)."""

    rate: float
    latencies: list[float]
    bot_cpu_ms: float
    fake_cpu_ms: float
    calls: str = ""


async def drive(fake: FakeProcess, *, window: int, n: int, offset: int, timeout: float) -> Run:
    """Run `n` closed-loop presses."""
    fake_cpu, calls = fake.call("cpu"), Counter(fake.call("counts"))
    bot_cpu = cpu_seconds()
    total = fake.call("run_presses", window, n, offset)
    deadline = time.monotonic() + timeout
    while True:
        _injected, edited = fake.call("press_progress")
        if edited >= total:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {edited}/{total} cards edited within {timeout:.0f} s")
        await asyncio.sleep(0.2)
    bot_cpu, fake_cpu = cpu_seconds() - bot_cpu, fake.call("cpu") - fake_cpu
    calls = Counter(fake.call("counts")) - calls
    times = fake.call("press_times")
    first, last = min(t for t, _ in times), max(e for _, e in times)
    per_call = ", ".join(f"{k} {v / len(times):.2f}" for k, v in calls.most_common())
    return Run(len(times) / (last - first), [e - t for t, e in times], 1000 * bot_cpu / len(times),
               1000 * fake_cpu / len(times), f"Bot API calls per answer: {per_call}")


def row(kind: str, what: str, n: int, window: object, run: Run, base: Run | None) -> list[object]:
    lat = run.latencies
    p50 = f"{1000 * statistics.median(lat):.1f}" if lat else "–"
    p99 = f"{1000 * percentile(lat, 0.99):.1f}" if lat else "–"
    fake = f"{run.fake_cpu_ms:.2f}" if run.fake_cpu_ms else "–"
    ratio = f"{run.rate / base.rate:.2f}" if base else "1.00"
    return [kind, what, n, window, f"{run.rate:.0f}", p50, p99, f"{run.bot_cpu_ms:.2f}", fake, ratio]


async def baseline(fake: FakeProcess, settings, *, window: int, n: int, timeout: float) -> Run:  # type: ignore[no-untyped-def]
    """A bare PTB Application: answer the query and edit the card, nothing else."""
    application = build_application(settings)

    async def on_button(update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        assert query is not None and query.message is not None
        await asyncio.gather(query.answer("✅ 回答正确"), query.message.edit_text(f"已收到 {update.update_id}"))  # type: ignore[union-attr]

    application.add_handler(CallbackQueryHandler(on_button))
    async with application:
        await application.start()
        assert application.updater is not None
        await application.updater.start_polling(timeout=10, allowed_updates=ALLOWED_UPDATES)
        try:
            return await drive(fake, window=window, n=n, offset=0, timeout=timeout)
        finally:
            await application.updater.stop()
            await application.stop()


@contextmanager
def collections_counted() -> Iterator[list[float]]:
    """[collections, CPU s] of Python's cyclic garbage collector inside the block."""
    spent, started = [0.0, 0.0], [0.0]

    def on_gc(phase: str, _info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.process_time()
        else:
            spent[0] += 1
            spent[1] += time.process_time() - started[0]

    gc.callbacks.append(on_gc)
    try:
        yield spent
    finally:
        gc.callbacks.remove(on_gc)


@contextmanager
def statements(app: App) -> Iterator[Counter[str]]:
    """Count what the engine sends to the database inside the block: statements by their first
    word (SELECT, INSERT, UPDATE, …) and COMMITs (from the engine's commit event)."""
    counts: Counter[str] = Counter()

    def on_execute(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        counts[statement.lstrip().split(None, 1)[0].upper()] += 1

    def on_commit(_conn) -> None:  # type: ignore[no-untyped-def]
        counts["COMMIT"] += 1

    engine = app.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", on_execute)
    event.listen(engine, "commit", on_commit)
    try:
        yield counts
    finally:
        event.remove(engine, "before_cursor_execute", on_execute)
        event.remove(engine, "commit", on_commit)


def per_answer(counts: Counter[str], n: int) -> str:
    parts = [f"{k} {v / n:.1f}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]) if k != "COMMIT"]
    return f"{sum(v for k, v in counts.items() if k != 'COMMIT') / n:.1f} statements/answer " \
           f"({', '.join(parts)}), {counts['COMMIT'] / n:.1f} commits/answer"


async def core_only(app: App, round_id: int, n: int) -> tuple[Run, str]:
    """`Service.handle(SubmitAnswer)` for n answers of a fresh round, one after another:
    the run (no latencies, no fake) and the statements per answer."""
    service = app.service.for_channel("telegram")
    async with app.db.session() as session:
        items = list((await session.exec(select(RoundItem.item_id).where(RoundItem.round_id == round_id)
                                         .order_by(RoundItem.position))).all())
    rng = random.Random(5)
    jobs = [(m, item) for m in range(1, math.ceil(n / len(items)) + 1) for item in items][:n]
    rng.shuffle(jobs)
    with statements(app) as counts, measured() as span:
        for member, item in jobs:
            result = (await service.handle(Sender("telegram", str(USER_BASE + member)),
                                           SubmitAnswer(rng.choice("AB"), round_id, item)))[0]
            if not isinstance(result, AnswerResult):
                raise RuntimeError(f"core refused an answer: {result}")
    return Run(n / span.wall, [], 1000 * span.cpu / n, 0.0), per_answer(counts, n)


async def answers_in(app: App, round_id: int) -> int:
    async with app.db.session() as session:
        return int((await session.exec(select(func.count()).select_from(Answer)
                                       .where(Answer.round_id == round_id))).one())


async def one_backend(kind: str, url: str, args: argparse.Namespace) -> list[list[object]]:
    timeout = args.timeout or max(300.0, args.answers / 5)
    with FakeProcess(poll_cap=0.5) as fake:
        settings = settings_for(url, telegram_token=TOKEN, telegram_base_url=fake.base_url,
                                telegram_rate_limit=False)
        members = math.ceil((args.answers + args.unloaded) / args.items)
        app = await seeded_app(settings, members=members)
        try:
            round_id = await open_round_for_all(app, await button_items(app, args.items))
            async with TelegramMessenger(build_application(settings).bot, app.db, settings) as messenger:
                stats = await send_round(app.db, round_id, {"telegram": messenger})
            if stats.sent != members:
                raise RuntimeError(f"push incomplete: {stats}")
            prepared = fake.call("prepare_presses", 11, args.answers + args.unloaded)
            if prepared < args.answers + args.unloaded:
                raise RuntimeError(f"only {prepared} cards to press")

            n_base = min(args.answers, args.baseline_answers)
            base = await baseline(fake, settings, window=args.window, n=n_base, timeout=timeout)
            rows = [row(kind, "baseline: bare PTB, answer + edit", n_base, args.window, base, None)]

            component = TelegramComponent(app)
            await component.start()
            if not args.no_settle:
                settle_heap()  # as `qingfeng run` does once started
            try:
                with profiled(args.profile), collections_counted() as collected:
                    loaded = await drive(fake, window=args.window, n=args.answers, offset=0, timeout=timeout)
                if args.unloaded:
                    one = await drive(fake, window=1, n=args.unloaded, offset=args.answers, timeout=timeout)
            finally:
                await component.stop()
            stored = await answers_in(app, round_id)
            if stored != args.answers + args.unloaded:
                raise RuntimeError(f"{stored} answers stored, {args.answers + args.unloaded} pressed")
            rows.append(row(kind, "bot, loaded", args.answers, args.window, loaded, base))
            print(f"{kind} baseline: {base.calls}\n{kind} bot, loaded: {loaded.calls}; garbage collector: "
                  f"{collected[0]:.0f} runs, {1000 * collected[1] / args.answers:.2f} ms CPU per answer")
            if args.unloaded:
                rows.append(row(kind, "bot, unloaded", args.unloaded, 1, one, base))

            fresh = (await button_items(app, 2 * args.items))[args.items:]
            second = await open_round_for_all(app, fresh, title="core only")
            n_core = min(args.answers, args.core_answers)
            core, core_statements = await core_only(app, second, n_core)
            rows.append(row(kind, "core only: Service.handle", n_core, "–", core, base))
            print(f"{kind} core only: {core_statements}")
        finally:
            await app.db.dispose()
    return rows


async def main_async(args: argparse.Namespace) -> None:
    rows: list[list[object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in backends(args.backend):
            with database(kind, Path(tmp)) as url:
                rows += await one_backend(kind, url, args)
    print(f"machine: {machine()}")
    print(f"{args.items} single-choice / true-false items per member; rate limiting off\n")
    print(table(["db", "run", "answers", "outstanding", "answers/s", "p50 ms", "p99 ms", "bot CPU ms/answer",
                 "fake CPU ms/answer", "ratio to baseline"], rows))
    for r in rows:
        if r[0] == "sqlite" and str(r[1]).startswith("bot, loaded"):
            met = float(str(r[4])) >= TARGET
            print(f"target sqlite: >= {TARGET:.0f} answers/s end to end -> {'met' if met else 'NOT met'}")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--answers", type=int, default=5000, help="button presses in the loaded run")
    p.add_argument("--window", type=int, default=100, help="presses outstanding at once in the loaded run")
    p.add_argument("--unloaded", type=int, default=300, help="presses in the one-at-a-time latency run (0: skip)")
    p.add_argument("--items", type=int, default=5, help="items per member")
    p.add_argument("--baseline-answers", type=int, default=2000, help="presses in the bare-PTB baseline")
    p.add_argument("--core-answers", type=int, default=2000, help="answers in the core-only run")
    p.add_argument("--no-settle", action="store_true", help="leave the garbage collector as Python sets it "
                   "(`qingfeng run` freezes the start-up heap and raises the thresholds: bot.runtime.settle_heap)")
    p.add_argument("--quick", action="store_true", help="500 answers, 50 unloaded")
    p.add_argument("--timeout", type=float, default=0, help="seconds one run may take (0: by size)")
    p.add_argument("--profile", type=Path, help="cProfile the loaded run into this file")
    backend_arg(p)
    args = p.parse_args(argv)
    if args.quick:
        args.answers, args.unloaded, args.baseline_answers, args.core_answers = 500, 50, 500, 500
    return args


if __name__ == "__main__":
    asyncio.run(main_async(parse()))
