"""/healthz, /readyz and /metrics over real HTTP: the real runtime (`qingfeng run`'s `serve`) and
the ASGI app under uvicorn, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
import uvicorn
from prometheus_client.parser import text_string_to_metric_families
from sqlmodel import func, select
from starlette.applications import Starlette

from bot.channels.base import Recipient, SendOutcome, SendStatus
from bot.channels.console import ConsoleMessenger
from bot.core.commands import SubmitAnswer
from bot.core.push import send_round
from bot.core.results import Result
from bot.runtime import serve
from bot.storage import migrate
from bot.storage.db import Database
from bot.storage.models import Delivery, JobClaim
from bot.web import Readiness, build_web_app
from tests.conftest import make_settings
from tests.factories import build_org, open_test_round
from tests.ops.cli import PYCACHE, ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.asynccontextmanager
async def serving(web: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """The ASGI app under a real uvicorn server on 127.0.0.1, and a client for it."""
    server = uvicorn.Server(uvicorn.Config(web, host="127.0.0.1", port=free_port(), log_config=None,
                                           lifespan="off"))
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    for _ in range(500):  # bounded wait for the socket, not a timed assertion
        if server.started or task.done():
            break
        await asyncio.sleep(0.01)
    assert server.started, "uvicorn did not start"
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            yield client
    finally:
        server.should_exit = True
        await task


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Prometheus text → {(sample name, sorted labels): value}, parsed by the reference parser."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(parsed: dict, name: str, **labels: str) -> float:
    return parsed.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_runtime_serves_health_ready_and_metrics(database_url):
    settings = make_settings(database_url, http_port=free_port())
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(serve(settings, stop=stop, ready=ready))
    waiter = asyncio.create_task(ready.wait())
    await asyncio.wait({task, waiter}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()  # re-raise the start-up failure
    assert ready.is_set()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.http_port}", timeout=10) as client:
            health = await client.get("/healthz")
            assert (health.status_code, health.text) == (200, "ok")
            readyz = await client.get("/readyz")
            body = readyz.json()
            assert readyz.status_code == 200 and body["ready"] is True, body
            assert body["checks"]["database"] == "ok" and body["checks"]["migrations"] == "ok"
            assert all(state == "started" for state in body["checks"]["components"].values())
            metrics = await client.get("/metrics")
            assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
            parsed = samples(metrics.text)
            assert ("qingfeng_deliveries", (("status", "pending"),)) in parsed
            assert ("process_resident_memory_bytes", ()) in parsed
            for name in body["checks"]["components"]:
                assert value(parsed, "qingfeng_component_up", component=name) == 1
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


async def test_readyz_waits_for_components(sqlite_app):
    readiness = Readiness()
    readiness.expect(["telegram", "scheduler"])
    async with serving(build_web_app(sqlite_app.db, readiness=readiness)) as client:
        first = await client.get("/readyz")
        assert first.status_code == 503
        assert first.json()["checks"]["components"] == {"telegram": "not started", "scheduler": "not started"}
        readiness.mark_started("telegram")
        assert (await client.get("/readyz")).status_code == 503
        readiness.mark_started("scheduler")
        assert (await client.get("/readyz")).status_code == 200
        assert (await client.get("/healthz")).status_code == 200
        readiness.mark_stopped("telegram")  # shutting down: stop taking traffic
        assert (await client.get("/readyz")).status_code == 503


async def test_readyz_reports_old_schema_and_unreachable_database(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    migrate.upgrade(url, "0001")
    db = Database(url)
    try:
        async with serving(build_web_app(db)) as client:
            resp = await client.get("/readyz")
            assert resp.status_code == 503
            checks = resp.json()["checks"]
            assert checks["database"] == "ok" and checks["migrations"].startswith("missing ")
            assert (await client.get("/healthz")).status_code == 200  # alive, just not ready
            assert (await client.get("/metrics")).status_code == 200  # still renders
    finally:
        await db.dispose()
    empty = Database(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")  # never migrated: no alembic table
    try:
        async with serving(build_web_app(empty)) as client:
            resp = await client.get("/readyz")
            assert resp.status_code == 503 and resp.json()["checks"]["migrations"].startswith("missing ")
    finally:
        await empty.dispose()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    down = Database(f"postgresql+asyncpg://qingfeng:pw@127.0.0.1:{port}/qingfeng")
    try:
        async with serving(build_web_app(down)) as client:
            resp = await client.get("/readyz")
            assert resp.status_code == 503 and resp.json()["checks"]["database"] not in ("ok", "timeout")
            assert (await client.get("/healthz")).status_code == 200
    finally:
        await down.dispose()


class UnreachablePlatform:
    """A platform that is down: every send fails (what a messenger reports after its retries)."""

    platform = "down"

    async def send(self, recipient: Recipient, results: list[Result]) -> SendOutcome:
        return SendOutcome(SendStatus.failed, "ConnectError")


async def test_metrics_count_answers_pushes_sends_and_deliveries(app):
    tree = await build_org(app, per_branch=3)
    rnd = await open_test_round(app, tree.root, ["t-single-001", "t-judge-001"])
    async with serving(build_web_app(app.db)) as client:
        before = samples((await client.get("/metrics")).text)

        messenger = ConsoleMessenger(app.service, out=io.StringIO())
        stats = await send_round(app.db, rnd.id, {"console": messenger}, clock=app.service.clock)
        members = tree.all_members()[:3]
        for m in members:
            sender = tree.senders[m.id]
            await app.service.handle(sender, SubmitAnswer("C", rnd.id, "t-single-001"))
            await app.service.handle(sender, SubmitAnswer("B", rnd.id, "t-single-001"))  # replay: not counted
        after = samples((await client.get("/metrics")).text)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert stats.sent > 0
    assert delta("qingfeng_answers_total", channel="console") == len(members)
    assert delta("qingfeng_pushes_total", kind="delivery") == 1
    assert delta("qingfeng_sends_total", platform="console", status="sent") == stats.sent
    assert delta("qingfeng_send_latency_seconds_count", platform="console") == stats.sent
    async with app.db.session() as s:
        in_db = dict((await s.exec(select(Delivery.status, func.count()).group_by(Delivery.status))).all())
    assert value(after, "qingfeng_deliveries", status="sent") == in_db["sent"] == stats.sent
    assert value(after, "qingfeng_deliveries", status="pending") == in_db.get("pending", 0)


async def test_failed_sends_are_counted_as_errors(app):
    tree = await build_org(app, per_branch=1, platform="down")
    rnd = await open_test_round(app, tree.root, ["t-single-001"])
    async with serving(build_web_app(app.db)) as client:
        before = samples((await client.get("/metrics")).text)
        stats = await send_round(app.db, rnd.id, {"down": UnreachablePlatform()}, clock=app.service.clock)
        after = samples((await client.get("/metrics")).text)
    assert stats.failed == len(tree.all_members()) + 1  # members and the admin
    errors = value(after, "qingfeng_errors_total", kind="send") - value(before, "qingfeng_errors_total", kind="send")
    assert errors == stats.failed
    assert value(after, "qingfeng_deliveries", status="failed") == stats.failed


async def test_scheduler_lag_is_read_from_claims(app, clock):
    async with serving(build_web_app(app.db)) as client:
        empty = samples((await client.get("/metrics")).text)
        async with app.db.session() as s:
            planned = clock.now - timedelta(hours=1)
            s.add(JobClaim(job_key="weekly_round:org:1", occurrence=planned, claimed_by="a",
                           claimed_at=planned + timedelta(seconds=2)))
            s.add(JobClaim(job_key="reminder:org:1", occurrence=clock.now, claimed_by="b",
                           claimed_at=clock.now + timedelta(seconds=95)))  # claimed late: the latest one counts
            await s.commit()
        parsed = samples((await client.get("/metrics")).text)
    assert value(empty, "qingfeng_scheduler_last_claim_timestamp_seconds") == 0
    assert value(parsed, "qingfeng_scheduler_lag_seconds") == 95
    assert value(parsed, "qingfeng_scheduler_last_claim_timestamp_seconds") == (
        clock.now + timedelta(seconds=95)).timestamp()


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
async def test_probes_do_not_need_authentication_but_reject_other_methods(sqlite_app, path):
    async with serving(build_web_app(sqlite_app.db)) as client:
        assert (await client.post(path)).status_code == 405


def test_qingfeng_run_settles_its_heap_once_started(sqlite_url):
    """`qingfeng run` serves with `settle=True`: once started, what start-up made is frozen out
    of the garbage collector's way and its first threshold raised (bot.runtime.settle_heap);
    `serve` without it (tests, embedding) leaves the process's collector alone. A fresh
    interpreter shows it, as the collector's state is the process's."""
    code = f"""
import asyncio, gc, json
from bot.runtime import GC_THRESHOLDS, serve
from tests.conftest import make_settings
from tests.ops.test_web import free_port

async def run(settle):
    settings = make_settings({sqlite_url!r}, http_port=free_port())
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(serve(settings, stop=stop, ready=ready, settle=settle))
    await asyncio.wait_for(ready.wait(), 60)
    state = [gc.get_freeze_count(), list(gc.get_threshold())]
    stop.set()
    await task
    return state

defaults = list(gc.get_threshold())
plain = asyncio.run(run(False))
settled = asyncio.run(run(True))
print(json.dumps({{"defaults": defaults, "plain": plain, "settled": settled, "thresholds": list(GC_THRESHOLDS)}}))
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QINGFENG_")}
    env.update({"PYTHONPATH": str(ROOT), "PYTHONPYCACHEPREFIX": str(PYCACHE)})
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=180, check=True).stdout
    state = json.loads(out.strip().splitlines()[-1])
    assert state["plain"] == [0, state["defaults"]]  # untouched
    frozen, thresholds = state["settled"]
    assert frozen > 10_000 and thresholds == state["thresholds"]
