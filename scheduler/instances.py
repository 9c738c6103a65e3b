"""Which processes are alive: each running scheduler renews a lease row in KeyValue.

A row left in `sending` by a process that is no longer alive is resent by the others (see
bot/core/push.py). A process is presumed dead when its lease has expired — or at once when it
ran on this host and its pid is gone (or is our own pid under another id: a restart in a
container that reuses pid 1).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Collection
from datetime import datetime, timedelta

from sqlmodel import col, delete, select

from bot.storage.bulk import upsert
from bot.storage.db import Database
from bot.storage.models import KeyValue

PREFIX = "instance:"


async def renew(db: Database, owner: str, *, now: datetime, lease: timedelta) -> None:
    async with db.session() as session:
        await upsert(session, KeyValue, [{"key": PREFIX + owner, "value": {"pid": os.getpid()},
                                          "expires_at": now + lease, "updated_at": now}], keys=["key"])
        await session.commit()


async def release(db: Database, owner: str) -> None:
    async with db.session() as session:
        await session.exec(delete(KeyValue).where(col(KeyValue.key) == PREFIX + owner))  # type: ignore[call-overload]
        await session.commit()


async def live_owners(db: Database, *, now: datetime) -> set[str]:
    async with db.session() as session:
        keys = (await session.exec(select(KeyValue.key).where(
            col(KeyValue.key).startswith(PREFIX), col(KeyValue.expires_at) > now))).all()
    return {k[len(PREFIX):] for k in keys}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def dead_here(owner: str, me: str) -> bool:
    """True when `owner` ran on this host and certainly is not running any more."""
    parts = owner.split(":")  # host:pid:random (see bot.core.push.new_owner_id)
    if len(parts) < 3 or owner == me:
        return False
    host, pid_text = ":".join(parts[:-2]), parts[-2]
    if host != socket.gethostname()[:50] or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    return pid == os.getpid() or not _pid_alive(pid)


async def dead_owners(db: Database, owners: Collection[str], *, me: str, now: datetime) -> set[str]:
    """The owners among `owners` that are not alive (never `me`)."""
    others = {o for o in owners if o and o != me}
    if not others:
        return set()
    live = await live_owners(db, now=now)
    return {o for o in others if dead_here(o, me) or o not in live}
