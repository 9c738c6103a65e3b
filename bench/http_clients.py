"""Why the Telegram channel uses aiohttp: bare HTTP clients POSTing one card to the fake Bot API.

httpx with a form body (what python-telegram-bot's default `HTTPXRequest` sends) against
aiohttp with a JSON body (what `bot/channels/telegram/http.py` sends), the same card text and
keyboard, at two pool sizes. The fake runs in a child process (bench/tgfake.py); CPU is each
side's own process time per request.

    .venv/bin/python -m bench.http_clients [--requests 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

import aiohttp
import httpx

from bench.common import machine, table
from bench.tgfake import TOKEN, FakeProcess
from bench.world import measured

TEXT = "【清风·第12期】" + "根据《中国共产党纪律处分条例》，下列哪种行为属于违反廉洁纪律？" * 6
KEYBOARD = {"inline_keyboard": [[{"text": f"{c}. 选项", "callback_data": f"a:1:2:{c}"}] for c in "ABCD"]}
CHAT_BASE = 9_000_000


async def run(kind: str, url: str, n: int, concurrency: int) -> tuple[float, float]:
    """(requests/s, client CPU ms per request)."""
    gate = asyncio.Semaphore(concurrency)
    if kind == "httpx, form":
        client: Any = httpx.AsyncClient(limits=httpx.Limits(max_connections=concurrency,
                                                             max_keepalive_connections=concurrency))

        async def post(i: int) -> None:
            form = {"chat_id": str(CHAT_BASE + i), "text": TEXT,
                    "reply_markup": json.dumps(KEYBOARD, ensure_ascii=False)}
            r = await client.post(url, data=form)
            r.raise_for_status()
            r.json()
    else:
        client = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency))

        async def post(i: int) -> None:
            body = json.dumps({"chat_id": CHAT_BASE + i, "text": TEXT, "reply_markup": KEYBOARD},
                              ensure_ascii=False).encode()
            async with client.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
                r.raise_for_status()
                json.loads(await r.read())

    async def one(i: int) -> None:
        async with gate:
            await post(i)

    try:
        with measured() as span:
            await asyncio.gather(*(one(i) for i in range(n)))
    finally:
        await (client.aclose() if kind == "httpx, form" else client.close())
    return n / span.wall, 1000 * span.cpu / n


async def main_async(args: argparse.Namespace) -> None:
    rows: list[list[object]] = []
    with FakeProcess() as fake:
        url = f"{fake.base_url}/bot{TOKEN}/sendMessage"
        for kind in ("httpx, form", "aiohttp, JSON"):
            for concurrency in (8, 32):
                fake_cpu = fake.call("cpu")
                rate, cpu_ms = await run(kind, url, args.requests, concurrency)
                fake_ms = 1000 * (fake.call("cpu") - fake_cpu) / args.requests
                rows.append([kind, concurrency, args.requests, f"{rate:.0f}", f"{cpu_ms:.2f}", f"{fake_ms:.2f}"])
    print(f"machine: {machine()}\n")
    print(table(["client", "connections", "requests", "requests/s", "client CPU ms/request",
                 "fake CPU ms/request"], rows))


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=3000, help="POSTs per client and pool size")
    return p.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main_async(parse()))
