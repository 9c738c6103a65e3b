"""Fan-out (issue #8, benchmark 1): one round to N members through the real Telegram stack.

core `send_round` → `TelegramMessenger` → python-telegram-bot → HTTP → the fake Bot API,
which runs in a child process (bench/tgfake.py) so it does not share the bot's interpreter.

- unlimited: rate limiting off; Bot API messages/s and the bot process's CPU per message.
  Target: >= 1,000 messages/s on 2 cores, so that Telegram's ~30 messages/s is the only bound.
  Baseline (same run, same fake server): bare aiohttp POSTs (JSON) of the same messages with the same
  concurrency, no database and no PTB — the most this fake server and client can move.
- limited: PTB's AIORateLimiter on at 30/s for 600 members. Target: wall / (messages / 30 s)
  <= 1.05 (the baseline is that ideal time).

A round is an intro plus one message per item, so N members get N x (1 + items) messages.
The default round has one item (2 messages per member) to keep the default run under ten
minutes on 2 cores; `--items 5` is the usual weekly round.

    .venv/bin/python -m bench.fanout                       # issue sizes, SQLite and PostgreSQL
    .venv/bin/python -m bench.fanout --quick --backend sqlite
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import database, machine, table
from bench.tgfake import TOKEN, FakeProcess
from bench.world import (
    USER_BASE,
    backend_arg,
    backends,
    button_items,
    measured,
    open_round_for_all,
    profiled,
    seeded_app,
    settings_for,
)
from bot.channels.telegram import TelegramMessenger, build_application
from bot.channels.telegram.render import invite_messages
from bot.core.push import build_invite, send_round
from bot.runtime import settle_heap

TARGET_RATE = 1000.0
TARGET_LIMITED_RATIO = 1.05
BASELINE_CHAT_BASE = 2 * USER_BASE  # baseline messages go to chats no member has


async def raw_baseline(base_url: str, messages: list[dict[str, Any]], members: int, concurrency: int) -> float:
    """Bare aiohttp, JSON bodies (the bot's HTTP layer without PTB or the database): each
    member's messages in order, `concurrency` members at once; seconds taken."""
    gate = asyncio.Semaphore(concurrency)
    url = f"{base_url}/bot{TOKEN}/sendMessage"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as client:

        async def one(n: int) -> None:
            async with gate:
                for m in messages:
                    body = json.dumps({"chat_id": BASELINE_CHAT_BASE + n, **m}, ensure_ascii=False).encode()
                    async with client.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
                        r.raise_for_status()
                        json.loads(await r.read())

        with measured() as span:
            await asyncio.gather(*(one(n) for n in range(members)))
    return span.wall


def wire_form(settings: Any, invite: Any) -> list[dict[str, Any]]:
    """The invite's messages as the bot puts them on the wire (text + reply_markup)."""
    out = []
    for msg in invite_messages(invite, settings.tz):
        form: dict[str, Any] = {"text": msg.text}
        if msg.keyboard is not None:
            form["reply_markup"] = msg.keyboard.to_dict()
        out.append(form)
    return out


async def unlimited(kind: str, url: str, args: argparse.Namespace) -> list[list[object]]:
    with FakeProcess() as fake:
        settings = settings_for(url, telegram_token=TOKEN, telegram_base_url=fake.base_url,
                                telegram_rate_limit=False, push_concurrency=args.concurrency)
        app = await seeded_app(settings, members=args.members)
        try:
            round_id = await open_round_for_all(app, await button_items(app, args.items))
            invite = await build_invite(app.db, round_id)
            form = wire_form(settings, invite)
            base_members = min(args.members, args.baseline_members)
            base_wall = await raw_baseline(fake.base_url, form, base_members, args.concurrency)
            base_rate = base_members * len(form) / base_wall
            print(f"{kind}: baseline {base_rate:.0f} messages/s; pushing to {args.members} members", flush=True)

            settle_heap()  # as `qingfeng run` does once started (its scheduler pushes the rounds)
            before, fake_cpu = fake.call("counts"), fake.call("cpu")
            with profiled(args.profile), measured() as span:
                async with TelegramMessenger(build_application(settings).bot, app.db, settings) as messenger:
                    stats = await send_round(app.db, round_id, {"telegram": messenger},
                                             concurrency=args.concurrency)
            after, fake_cpu = fake.call("counts"), fake.call("cpu") - fake_cpu
        finally:
            await app.db.dispose()
    sent = after.get("sendMessage", 0) - before.get("sendMessage", 0)
    failed = after.get("failed", 0) - before.get("failed", 0)
    if stats.sent != args.members or sent != args.members * len(form) or failed:
        raise RuntimeError(f"{kind}: push incomplete: {stats}, {sent} messages, {failed} refused")
    rate = sent / span.wall
    return [
        [kind, "baseline: bare aiohttp → fake", base_members, base_members * len(form), f"{base_wall:.1f}",
         f"{base_rate:.0f}", f"{base_members / base_wall:.0f}", "–", "1.00"],
        [kind, "send_round → PTB → fake", args.members, sent, f"{span.wall:.1f}", f"{rate:.0f}",
         f"{args.members / span.wall:.0f}", f"{1000 * span.cpu / sent:.2f} (fake {1000 * fake_cpu / sent:.2f})",
         f"{rate / base_rate:.2f}"],
    ]


async def limited(kind: str, url: str, args: argparse.Namespace) -> list[object]:
    with FakeProcess() as fake:
        settings = settings_for(url, telegram_token=TOKEN, telegram_base_url=fake.base_url,
                                telegram_rate_limit=True, telegram_max_rate=args.rate,
                                push_concurrency=args.concurrency)
        app = await seeded_app(settings, members=args.limited_members)
        print(f"{kind}: pushing to {args.limited_members} members at {args.rate:g}/s", flush=True)
        try:
            round_id = await open_round_for_all(app, await button_items(app, args.items))
            with measured() as span:
                async with TelegramMessenger(build_application(settings).bot, app.db, settings) as messenger:
                    stats = await send_round(app.db, round_id, {"telegram": messenger},
                                             concurrency=args.concurrency)
            counts = fake.call("counts")
        finally:
            await app.db.dispose()
    sent = counts.get("sendMessage", 0)
    if stats.sent != args.limited_members or counts.get("failed", 0):
        raise RuntimeError(f"{kind}: limited push incomplete: {stats}, {counts}")
    ideal = sent / args.rate
    return [kind, f"AIORateLimiter {args.rate:g}/s", args.limited_members, sent, f"{span.wall:.1f}",
            f"{sent / span.wall:.1f}", f"{args.limited_members / span.wall:.1f}",
            f"ideal {ideal:.1f} s", f"{span.wall / ideal:.3f}"]


async def main_async(args: argparse.Namespace) -> None:
    rows: list[list[object]] = []
    limited_rows: list[list[object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in backends(args.backend):
            with database(kind, Path(tmp)) as url:
                rows += await unlimited(kind, url, args)
            if args.limited_members:
                with database(kind, Path(tmp)) as url:
                    limited_rows.append(await limited(kind, url, args))
    print(f"machine: {machine()}")
    print(f"round: {args.items} items (1 + {args.items} messages per member), push concurrency "
          f"{args.concurrency}\n")
    headers = ["db", "run", "members", "Bot API messages", "wall s", "messages/s", "members/s",
               "bot CPU ms/message", "ratio to baseline"]
    print(table(headers, rows))
    for r in rows[1::2]:
        met = float(str(r[5])) >= TARGET_RATE
        print(f"target {r[0]}: >= {TARGET_RATE:.0f} messages/s rate limit off -> {'met' if met else 'NOT met'}")
    if limited_rows:
        print()
        print(table([*headers[:7], "ideal", "wall / ideal"], limited_rows))
        for r in limited_rows:
            met = float(str(r[8])) <= TARGET_LIMITED_RATIO
            print(f"target {r[0]}: wall / ideal <= {TARGET_LIMITED_RATIO} -> {'met' if met else 'NOT met'}")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--members", type=int, default=10_000, help="members in the unlimited push")
    p.add_argument("--limited-members", type=int, default=600, help="members in the 30/s push (0: skip)")
    p.add_argument("--items", type=int, default=1,
                   help="items per round (default 1 keeps the default run under 10 minutes; 5 is the usual round)")
    p.add_argument("--rate", type=float, default=30, help="AIORateLimiter overall rate for the limited push")
    p.add_argument("--concurrency", type=int, default=32, help="members sent to at once (QINGFENG_PUSH_CONCURRENCY)")
    p.add_argument("--baseline-members", type=int, default=1000, help="members in the bare-aiohttp baseline")
    p.add_argument("--quick", action="store_true", help="small sizes: 1,000 members, 60 at 30/s")
    p.add_argument("--profile", type=Path, help="cProfile the unlimited push into this file")
    backend_arg(p)
    args = p.parse_args(argv)
    if args.quick:
        args.members, args.limited_members, args.baseline_members = 1000, 60, 300
    return args


if __name__ == "__main__":
    asyncio.run(main_async(parse()))
