"""Inline-button callback data: short (Telegram allows 64 bytes) and never trusted.

Forms: ``a:<ref>:<letters>`` submits an answer; ``t:<ref>:<letters>`` re-draws a multiple-choice
keyboard with <letters> ticked. <ref> is ``<round_id>.<position>`` for a round item or
``r<digest>`` for a spaced re-ask. The payload only says which button was drawn: the handler
resolves <ref> against the database for the member who pressed it, and core checks that the
item was delivered to (or is due for) that member before anything is recorded.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from bot.core.results import QuizCard
from question_bank import LETTERS

MAX_BYTES = 64
MAX_ROUND_ID = 2**31 - 1  # round ids are INTEGER columns
# ASCII only: \d would also take full-width and other scripts' digits (int("１") == 1).
_DATA_RE = re.compile(r"([at]):(?:(\d{1,10})\.(\d{1,2})|r([0-9a-f]{10})):([A-H]{0,8})", re.ASCII)


def item_digest(item_id: str) -> str:
    # Item ids may be up to 64 characters: too long for callback data, so refer to a digest.
    return hashlib.sha256(item_id.encode()).hexdigest()[:10]


@dataclass(frozen=True)
class ButtonData:
    action: str  # "a" submit | "t" toggle
    round_id: int | None
    position: int | None
    digest: str | None  # set for spaced re-asks (round_id None)
    letters: str

    @property
    def is_review(self) -> bool:
        return self.round_id is None


def card_ref(card: QuizCard) -> str:
    if card.round_id is None:
        return "r" + item_digest(card.item_id)
    return f"{card.round_id}.{card.position}"


def encode(action: str, ref: str, letters: str) -> str:
    data = f"{action}:{ref}:{letters}"
    if len(data.encode()) > MAX_BYTES:  # cannot happen with the forms above; guard anyway
        raise ValueError("callback data too long")
    return data


def decode(data: str | None) -> ButtonData | None:
    """Parse callback data; None for anything malformed (old buttons, forged payloads)."""
    if not data:
        return None
    m = _DATA_RE.fullmatch(data)  # not match: "$" lets a trailing newline through
    if m is None:
        return None
    action, rid, pos, digest, letters = m.groups()
    if rid and int(rid) > MAX_ROUND_ID:  # not a round of ours; PostgreSQL would refuse the query
        return None
    if len(set(letters)) != len(letters) or "".join(sorted(letters)) != letters:
        return None
    if any(c not in LETTERS for c in letters):
        return None
    return ButtonData(action=action, round_id=int(rid) if rid else None,
                      position=int(pos) if pos else None, digest=digest, letters=letters)


def toggle(selected: str, letter: str) -> str:
    chosen = set(selected) ^ {letter}
    return "".join(sorted(chosen))
