"""WeCom template cards (button_interaction) for quiz items, and the keys their buttons carry.

A card is used only where it shows the item faithfully: single-choice and true/false items
(one tap = one answer), at most 6 options, stem and options within the lengths WeCom
displays without cutting. Anything else (multiple choice, long texts) goes as text with
「回复 A/B/C」, answered by typing.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from bot.channels.text import TYPE_NAMES
from bot.channels.wx_text import clip
from bot.core.results import QuizCard

MAX_BUTTONS = 6
MAX_STEM = 112  # sub_title_text
MAX_OPTION = 26  # horizontal_content_list value
MAX_TITLE = 26  # main_title.title
MAX_DESC = 30  # main_title.desc
SOURCE = "清风·廉政学习"
KEY_PREFIX = "qf"
_KEY = re.compile(r"qf:(?P<round>\d{1,10}|-):(?P<item>[^:]{1,64}):(?P<choice>[A-H])", re.ASCII)
MAX_ROUND_ID = 2**31 - 1  # round ids are INTEGER columns: a bigger one would fail the query


@dataclass(frozen=True)
class ButtonAnswer:
    round_id: int | None
    item_id: str
    choice: str


def card_allowed(card: QuizCard) -> bool:
    if card.type not in ("single", "judge") or not 2 <= len(card.options) <= MAX_BUTTONS:
        return False
    if len(card.stem) > MAX_STEM:
        return False
    return card.type == "judge" or all(len(text) <= MAX_OPTION for _, text in card.options)


def button_key(card: QuizCard, letter: str) -> str:
    return f"{KEY_PREFIX}:{card.round_id if card.round_id is not None else '-'}:{card.item_id}:{letter}"


def parse_button_key(key: str) -> ButtonAnswer | None:
    m = _KEY.fullmatch(key or "")
    if m is None:
        return None
    rnd = m.group("round")
    if rnd != "-" and int(rnd) > MAX_ROUND_ID:
        return None
    return ButtonAnswer(None if rnd == "-" else int(rnd), m.group("item"), m.group("choice"))


def task_id(card: QuizCard, userid: str) -> str:
    """Unique per sent card (WeCom refuses a reused task_id); only [A-Za-z0-9_-@], ≤ 128."""
    item = hashlib.sha1(card.item_id.encode()).hexdigest()[:10]
    user = hashlib.sha1(userid.encode()).hexdigest()[:8]
    return f"qf{card.round_id or 'r'}_{item}_{user}_{secrets.token_hex(6)}"


def build_card(card: QuizCard, userid: str, tz: ZoneInfo, *, heading: str | None = None) -> dict[str, Any]:
    """The `template_card` object of a message/send call."""
    if card.is_review:
        title, desc = "【温故知新】再答一次", "之前答错的题，巩固一下"
    else:
        title = f"第{card.position}/{card.total}题·{TYPE_NAMES.get(card.type, '')}"
        deadline = f"截止 {card.deadline.astimezone(tz):%m月%d日 %H:%M}"
        desc = f"{heading} · {deadline}" if heading else deadline
    body: dict[str, Any] = {
        "card_type": "button_interaction",
        "source": {"desc": SOURCE},
        "main_title": {"title": clip(title, MAX_TITLE), "desc": clip(desc, MAX_DESC)},
        "sub_title_text": card.stem,
        "task_id": task_id(card, userid),
    }
    if card.type == "judge":
        labels = {"A": "对", "B": "错"}
        body["button_list"] = [{"text": labels.get(letter, letter), "style": 1, "key": button_key(card, letter)}
                               for letter, _ in card.options]
    else:
        body["horizontal_content_list"] = [{"keyname": letter, "value": text} for letter, text in card.options]
        body["button_list"] = [{"text": letter, "style": 1, "key": button_key(card, letter)}
                               for letter, _ in card.options]
    return body
