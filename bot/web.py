"""The project's one ASGI app: health now; channel webhooks mount their routes here."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import BaseRoute, Route

from bot.storage.db import Database


def build_web_app(db: Database, *, extra_routes: Sequence[BaseRoute] = ()) -> Starlette:
    async def healthz(_request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    async def readyz(_request: Request) -> JSONResponse:
        try:
            async with db.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception as exc:  # any failure means "not ready"
            return JSONResponse({"ready": False, "database": type(exc).__name__}, status_code=503)
        return JSONResponse({"ready": True})

    routes: list[BaseRoute] = [Route("/healthz", healthz), Route("/readyz", readyz), *extra_routes]
    return Starlette(routes=routes)
