"""The project's one ASGI app: health, readiness and metrics; channel components add their routes.

- `/healthz` — liveness: the process answers HTTP. No database call, so a slow database never
  gets a healthy process restarted.
- `/readyz` — readiness: the database answers, its schema is at the newest migration, and
  every configured component (channels, scheduler) has started. 503 with the reason otherwise.
- `/metrics` — Prometheus text format (see bot/metrics.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from bot import metrics
from bot.storage.db import Database
from bot.storage.migrate import script_heads

log = logging.getLogger(__name__)
DB_TIMEOUT = 3.0  # seconds; a probe must answer well within the orchestrator's timeout


@dataclass
class Readiness:
    """Which runtime components are expected and which have started (set by bot/runtime.py)."""

    expected: list[str] = field(default_factory=list)
    started: set[str] = field(default_factory=set)

    def expect(self, names: Sequence[str]) -> None:
        self.expected = list(names)
        for name in names:
            metrics.COMPONENT_UP.labels(name).set(0)

    def mark_started(self, name: str) -> None:
        self.started.add(name)
        metrics.COMPONENT_UP.labels(name).set(1)

    def mark_stopped(self, name: str) -> None:
        self.started.discard(name)
        metrics.COMPONENT_UP.labels(name).set(0)

    def pending(self) -> list[str]:
        return [n for n in self.expected if n not in self.started]


@lru_cache(maxsize=1)
def expected_heads() -> frozenset[str]:
    """The newest migration of each branch, from the scripts shipped with this code."""
    return script_heads()  # read without importing Alembic (start-up time)


async def database_state(db: Database) -> dict[str, Any]:
    """{"database": "ok" | error name, "migrations": "ok" | what is missing}."""

    async def probe() -> set[str]:
        async with db.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
            # Read Alembic's table directly: MigrationContext would log two INFO lines per probe.
            try:
                rows = await conn.execute(text("SELECT version_num FROM alembic_version"))
            except DBAPIError:  # no table yet: nothing migrated
                return set()
            return {r[0] for r in rows}

    try:
        current = await asyncio.wait_for(probe(), DB_TIMEOUT)
    except TimeoutError:
        return {"database": "timeout", "migrations": "unknown"}
    except Exception as exc:  # any failure means "not ready"; the name says which
        return {"database": type(exc).__name__, "migrations": "unknown"}
    missing = sorted(expected_heads() - current)
    unknown = sorted(current - expected_heads())  # a newer release migrated this database
    if not missing and not unknown:
        return {"database": "ok", "migrations": "ok"}
    state = "missing " + ", ".join(missing) if missing else "unknown " + ", ".join(unknown)
    return {"database": "ok", "migrations": state}


def build_web_app(db: Database, *, extra_routes: Sequence[BaseRoute] = (),
                  readiness: Readiness | None = None) -> Starlette:
    async def healthz(_request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    async def readyz(_request: Request) -> JSONResponse:
        checks: dict[str, Any] = await database_state(db)
        ok = checks["database"] == "ok" and checks["migrations"] == "ok"
        if readiness is not None:
            checks["components"] = {n: ("started" if n in readiness.started else "not started")
                                    for n in readiness.expected}
            ok = ok and not readiness.pending()
        return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503)

    async def metrics_endpoint(_request: Request) -> Response:
        await metrics.refresh_from_db(db)
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    routes: list[BaseRoute] = [Route("/healthz", healthz), Route("/readyz", readyz),
                               Route("/metrics", metrics_endpoint), *extra_routes]
    return Starlette(routes=routes)
