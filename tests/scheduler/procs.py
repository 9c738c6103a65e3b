"""Running the real `qingfeng run` as subprocesses for the kill and replica tests."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from sqlmodel import col, func, select

from bot.app import App
from bot.storage.models import Delivery, DeliveryStatus, Round
from tests.conftest import TEST_BANK

ROOT = Path(__file__).resolve().parents[2]


def bot_env(database_url: str, push_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QINGFENG_")}
    env.update({
        "PYTHONPATH": str(ROOT), "QINGFENG_DATABASE_URL": database_url, "QINGFENG_BANK_PATH": str(TEST_BANK),
        "QINGFENG_WEBHOOK_PUSH_URL": push_url, "QINGFENG_HTTP_PORT": "0", "QINGFENG_LOG_LEVEL": "INFO",
        "QINGFENG_SCHEDULER_TICK_SECONDS": "0.5", "QINGFENG_SCHEDULER_LEASE_SECONDS": "5", **extra,
    })
    return env


def start_bot(env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "bot", "run"], cwd=cwd, env=env, stdout=out,
                                stderr=subprocess.STDOUT)


async def wait_for(check: Callable[[], Awaitable[bool]], *, timeout: float, what: str) -> None:
    """Poll until `check` holds: these tests watch real processes, so they wait in real time."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def round_for(app: App, occurrence_prefix: str) -> Round | None:
    async with app.db.session() as s:
        return (await s.exec(select(Round).where(col(Round.occurrence_key).startswith(occurrence_prefix)))).first()


async def round_finished(app: App, round_id: int) -> bool:
    async with app.db.session() as s:
        open_rows = (await s.exec(select(func.count()).select_from(Delivery).where(
            Delivery.round_id == round_id, col(Delivery.status).in_(
                [DeliveryStatus.pending, DeliveryStatus.sending, DeliveryStatus.failed])))).one()
    return open_rows == 0


def stop_bot(proc: subprocess.Popen[bytes], *, timeout: float = 60) -> int:
    proc.terminate()
    return proc.wait(timeout)
