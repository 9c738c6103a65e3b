"""Chat identities as WeChat sees them: last interaction (the 48-hour window) and follow state."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import update
from sqlmodel import col

from bot.storage.db import Database
from bot.storage.models import AuditLog, ChannelIdentity

# 公众号 customer-service messages are allowed for 48 h after the member's last message,
# menu click or follow. Keep a margin: our clock and WeChat's need not agree to the second.
KF_WINDOW = timedelta(hours=48)
KF_WINDOW_MARGIN = timedelta(minutes=10)


def _match(platform: str, external_id: str):  # type: ignore[no-untyped-def]
    return (col(ChannelIdentity.platform) == platform) & (col(ChannelIdentity.external_id) == external_id)


async def touch(db: Database, platform: str, external_id: str, now: datetime) -> None:
    """Record an inbound interaction (no-op for people who are not bound)."""
    async with db.session() as session:
        await session.exec(update(ChannelIdentity).where(_match(platform, external_id))  # type: ignore[call-overload]
                           .values(last_inbound_at=now))
        await session.commit()


async def set_active(db: Database, platform: str, external_id: str, active: bool, *, now: datetime) -> bool:
    """Unfollow makes the identity inactive (pushes skip it); following again restores it."""
    async with db.session() as session:
        result = await session.exec(update(ChannelIdentity).where(  # type: ignore[call-overload]
            _match(platform, external_id), col(ChannelIdentity.active).is_(not active)).values(active=active))
        changed = bool(result.rowcount)
        if changed:
            session.add(AuditLog(at=now, actor=platform, action="follow" if active else "unfollow",
                                 detail={"platform": platform}))
        await session.commit()
    return changed


async def in_kf_window(db: Database, identity_id: int, now: datetime) -> bool:
    async with db.session() as session:
        identity = await session.get(ChannelIdentity, identity_id)
    last = identity.last_inbound_at if identity else None
    return last is not None and now - last < KF_WINDOW - KF_WINDOW_MARGIN
