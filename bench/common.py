"""Shared helpers for benchmarks: machine description, timing, tables, databases."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import platform
import statistics
import subprocess
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN = os.environ.get("QINGFENG_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def machine() -> str:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores ({cpu}), {mem:.0f} GiB, " \
           f"Python {platform.python_version()}; calibration {calibration_ms():.0f} ms, " \
           f"1-minute load {os.getloadavg()[0]:.1f}"


def calibration_ms() -> float:
    """CPU ms of a fixed pure-Python workload, best of 3. The same VM type runs the same code
    2-3x faster or slower from one day to the next; this figure printed beside every result lets
    runs on different days be compared (divide by it)."""
    def work() -> int:
        total = 0
        for i in range(2_000_000):
            total += i % 7
        return total

    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        work()
        best = min(best, time.process_time() - start)
    return 1000 * best


def median_time(fn: Callable[[], object], *, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def table(headers: list[str], rows: list[list[object]]) -> str:
    cells = [[str(c) for c in r] for r in [headers, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"  # noqa: E731
    return "\n".join([line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, cells[1:])])


def pg_available() -> bool:
    import socket

    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", 5432)) == 0


@contextmanager
def database(kind: str, workdir: Path) -> Iterator[str]:
    """A fresh, empty database URL of the given kind; PostgreSQL databases are dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{workdir / f'bench-{uuid.uuid4().hex[:6]}.db'}"
        return
    from sqlalchemy import text

    from bot.storage.db import make_engine

    name = f"qf_bench_{uuid.uuid4().hex[:8]}"
    admin = PG_ADMIN.replace("postgresql://", "postgresql+asyncpg://", 1)

    async def run(sql: str) -> None:
        engine = make_engine(admin)
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text(sql))
        await engine.dispose()

    _run_sync(run(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        _run_sync(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _run_sync(coro: Coroutine[Any, Any, None]) -> None:
    """Run a coroutine to completion, also when called from inside a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(coro)
        return
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, coro).result()


def qingfeng(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **env}
    return subprocess.run([str(ROOT / ".venv" / "bin" / "qingfeng"), *args], env=full, cwd=cwd,
                          capture_output=True, text=True, check=True)
