"""The one outbound protocol: the scheduler pushes through `Messenger.send` for every platform."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from bot.core.results import Result


class SendStatus(StrEnum):
    sent = "sent"
    blocked = "blocked"  # the user blocked the bot / left: identity goes inactive
    failed = "failed"  # retries exhausted; recorded, the push goes on


@dataclass(frozen=True)
class SendOutcome:
    status: SendStatus
    error: str | None = None


@dataclass(frozen=True)
class Recipient:
    member_id: int
    identity_id: int
    external_id: str
    # An earlier attempt of this delivery was made (and may have stopped part-way), so a
    # messenger that remembers partial progress should look it up; a first attempt has none.
    retried: bool = False


class Messenger(Protocol):
    platform: str

    async def send(self, recipient: Recipient, results: list[Result]) -> SendOutcome:
        """Deliver rendered results to one chat; never raise for per-recipient failures."""
        ...
