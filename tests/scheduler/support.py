"""Shared set-up for scheduler tests: the fake webhook receiver, messengers, schedules."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlmodel import col, select

from bot.app import App
from bot.channels.webhook import WebhookMessenger
from bot.storage.bulk import insert_ignore
from bot.storage.models import ChannelIdentity, Delivery, Notification, Organization, Round, Schedule
from scheduler.schedules import set_schedule
from tests.fakes.webhook_server import FakeWebhookServer

SH = ZoneInfo("Asia/Shanghai")


@asynccontextmanager
async def webhook_messengers(app: App, fake: FakeWebhookServer) -> AsyncIterator[dict[str, WebhookMessenger]]:
    messenger = WebhookMessenger(fake.url, tz=app.settings.tz, retry_backoff=0.01)
    try:
        yield {"webhook": messenger}
    finally:
        await messenger.aclose()


async def schedule(app: App, org: Organization, kind: str, spec: dict[str, Any], *, tz: str | None = None,
                   enabled: bool = True, name: str = "", changed: datetime | None = None) -> Schedule:
    """Set a schedule as if an operator had done it a day before the test clock's now."""
    async with app.db.session() as session:
        return await set_schedule(session, org=org, kind=kind, spec=spec, timezone=tz, enabled=enabled, name=name,
                                  now=changed or app.service.clock() - timedelta(days=1),
                                  default_tz=app.settings.timezone)


async def rounds(app: App) -> list[Round]:
    async with app.db.session() as s:
        return list((await s.exec(select(Round).order_by(col(Round.id)))).all())


async def deliveries(app: App, round_id: int) -> list[Delivery]:
    async with app.db.session() as s:
        return list((await s.exec(select(Delivery).where(Delivery.round_id == round_id)
                                  .order_by(col(Delivery.member_id)))).all())


async def notifications(app: App, kind: str | None = None) -> list[Notification]:
    async with app.db.session() as s:
        stmt = select(Notification).order_by(col(Notification.id))
        if kind:
            stmt = stmt.where(Notification.kind == kind)
        return list((await s.exec(stmt)).all())


def local(dt: datetime, tz: ZoneInfo = SH) -> str:
    return dt.astimezone(tz).strftime("%a %m-%d %H:%M")


async def bind_all(app: App, member_ids: list[int], platform: str = "webhook",
                   external: Callable[[int], str] | None = None) -> dict[int, str]:
    """Bound chat identities for many members at once (binding itself is tested in tests/core);
    returns member id → external id."""
    ids = {m: external(m) if external else f"{platform}-{m}" for m in member_ids}
    async with app.db.session() as s:
        await insert_ignore(s, ChannelIdentity, [
            {"member_id": m, "platform": platform, "external_id": ext, "active": True, "bound_at": app.service.clock()}
            for m, ext in ids.items()])
        await s.commit()
    return ids
