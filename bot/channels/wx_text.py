"""Plain text for 公众号 and WeCom: rendering without slash commands, and the 2048-byte limit
both platforms cut text messages at (UTF-8)."""

from __future__ import annotations

import logging
from zoneinfo import ZoneInfo

from bot.channels.text import render, render_card, render_case
from bot.core.results import AnswerResult, Result, RoundInvite

log = logging.getLogger(__name__)

NOT_TEXT = "目前只能识别文字消息。请直接回复选项字母作答，或发送「帮助」查看全部功能。"
TEXT_LIMIT = 2000  # bytes; a little under 2048 so nothing is ever cut mid-sentence
SEPARATOR = "\n\n"


def _size(text: str) -> int:
    return len(text.encode("utf-8"))


def _split_long(text: str, limit: int) -> list[str]:
    """Split one over-long text at line breaks (or, for a monster line, at characters)."""
    parts: list[str] = []
    current = ""
    for line in text.split("\n"):
        while _size(line) > limit:
            cut = len(line)
            while _size(line[:cut]) > limit:
                cut = cut * 3 // 4 or 1
            if current:
                parts.append(current)
                current = ""
            parts.append(line[:cut])
            line = line[cut:]
        candidate = f"{current}\n{line}" if current else line
        if current and _size(candidate) > limit:
            parts.append(current)
            current = line
        else:
            current = candidate
    if current:
        parts.append(current)
    return parts


def pack_texts(texts: list[str], limit: int = TEXT_LIMIT) -> list[str]:
    """Join rendered messages into as few texts as fit the limit, keeping their order."""
    packed: list[str] = []
    for text in (t for t in texts if t):
        pieces = _split_long(text, limit) if _size(text) > limit else [text]
        for piece in pieces:
            if packed and _size(packed[-1] + SEPARATOR + piece) <= limit:
                packed[-1] = packed[-1] + SEPARATOR + piece
            else:
                packed.append(piece)
    return packed


def clip(text: str, chars: int) -> str:
    """Shorten for a field with a length limit (template keywords, card titles)."""
    return text if len(text) <= chars else text[: max(chars - 1, 0)] + "…"


def invite_intro(invite: RoundInvite, tz: ZoneInfo) -> str:
    return (f"【{invite.title}】{invite.org_name}本周共 {len(invite.cards)} 道廉政学习题，"
            f"请于 {invite.deadline.astimezone(tz):%m月%d日 %H:%M} 前完成。")


def render_texts(results: list[Result], tz: ZoneInfo) -> list[str]:
    """Plain texts (commands as words, no slashes); an invite shows its first item at once."""
    out: list[str] = []
    for r in results:
        if isinstance(r, RoundInvite):
            intro = invite_intro(r, tz)
            if r.cards:
                intro += "直接回复即可作答，答完自动出下一题。"
                out.append(intro + "\n\n" + render_card(r.cards[0], tz))
            else:
                out.append(intro)
            continue
        try:
            out.append(render(r, tz, slash=False))
        except TypeError:  # a result kind this channel cannot show as text
            log.warning("cannot render %s as text", type(r).__name__)
            continue
        if isinstance(r, AnswerResult):
            if r.case:
                out.append(render_case(r.case))
            if r.next_card:
                out.append(render_card(r.next_card, tz))
            elif not r.duplicate and r.round_id is not None:
                out.append("🎉 本轮题目已全部作答，感谢参与！")
    return out
