"""Single-use, expiring invite codes and binding chat identities to members."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.core.errors import ExpiredCode, InvalidCode, Throttled, UsedCode
from bot.storage.models import AuditLog, ChannelIdentity, InviteCode, KeyValue, Member

# No 0/O/1/I/L: codes are read aloud and typed on phones.
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_LENGTH = 8
FAILS_PER_CHAT = 5  # wrong codes from one chat …
FAILS_GLOBAL = 200  # … or from everyone, per window
FAIL_WINDOW = timedelta(minutes=15)


def new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


async def issue_code(session: AsyncSession, member: Member, *, now: datetime, ttl_days: int) -> str:
    code = new_code()
    session.add(InviteCode(code=code, member_id=member.id, created_at=now,  # type: ignore[arg-type]
                           expires_at=now + timedelta(days=ttl_days)))
    return code


def normalise_code(code: str) -> str:
    return "".join(code.split()).upper()[:32]


async def _fail_counter(session: AsyncSession, key: str, now: datetime) -> KeyValue:
    row = await session.get(KeyValue, key)
    if row is None or row.expires_at is None or row.expires_at <= now:
        row = row or KeyValue(key=key)
        row.value = {"count": 0}
        row.expires_at = now + FAIL_WINDOW
    return row


async def _check_throttle(session: AsyncSession, chat_key: str, now: datetime) -> None:
    chat = await session.get(KeyValue, f"bindfail:{chat_key}")
    glob = await session.get(KeyValue, "bindfail:*")
    for row, limit in ((chat, FAILS_PER_CHAT), (glob, FAILS_GLOBAL)):
        if row and row.expires_at and row.expires_at > now and row.value.get("count", 0) >= limit:
            raise Throttled("邀请码错误次数过多，请 15 分钟后再试，或联系支部书记。")


async def _count_failure(session: AsyncSession, chat_key: str, now: datetime) -> None:
    for key in (f"bindfail:{chat_key}", "bindfail:*"):
        row = await _fail_counter(session, key, now)
        row.value = {"count": int(row.value.get("count", 0)) + 1}
        row.updated_at = now
        session.add(row)
    await session.commit()


async def redeem(
    session: AsyncSession, *, code: str, platform: str, external_id: str, now: datetime
) -> tuple[Member, bool]:
    """Bind (platform, external_id) to the code's member. Returns (member, already_bound)."""
    chat_key = f"{platform}:{external_id}"
    await _check_throttle(session, chat_key, now)
    invite = await session.get(InviteCode, normalise_code(code)) if code.strip() else None
    identity = (await session.exec(select(ChannelIdentity).where(
        ChannelIdentity.platform == platform, ChannelIdentity.external_id == external_id))).first()
    if invite is None:
        await _count_failure(session, chat_key, now)
        raise InvalidCode()
    if invite.used_at is not None:
        if identity is not None and invite.used_by_identity_id == identity.id:
            member = await session.get(Member, invite.member_id)
            return member, True  # type: ignore[return-value]
        await _count_failure(session, chat_key, now)
        raise UsedCode()
    if invite.expires_at <= now:
        raise ExpiredCode()
    member = await session.get(Member, invite.member_id)
    if member is None or not member.active:
        raise InvalidCode()
    if identity is None:
        identity = ChannelIdentity(member_id=member.id, platform=platform,  # type: ignore[arg-type]
                                   external_id=external_id, bound_at=now)
    else:
        identity.member_id = member.id  # type: ignore[assignment]
        identity.active = True
        identity.bound_at = now
    session.add(identity)
    await session.flush()
    invite.used_at = now
    invite.used_by_identity_id = identity.id
    session.add(invite)
    session.add(AuditLog(at=now, actor=f"member:{member.id}", action="bind",
                         detail={"platform": platform, "identity_id": identity.id}))
    await session.commit()
    return member, False
