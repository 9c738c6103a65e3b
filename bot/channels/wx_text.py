"""Text limits shared by 公众号 and WeCom: both cut a text message at 2048 bytes (UTF-8)."""

from __future__ import annotations

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
