"""Turn a typed chat line (console, 公众号, WeCom text) into a command.

Accepts A / ac / Ａ Ｃ / "A,C" / 对 / 错 / √ / ×, slash commands and their Chinese words.
"""

from __future__ import annotations

import re
import unicodedata

from bot.core.commands import (
    Bind,
    Command,
    Help,
    ShowCase,
    ShowMe,
    ShowQuiz,
    ShowReport,
    SubmitAnswer,
    Unknown,
)

MAX_TEXT = 500  # longer lines are not commands; don't spend effort on them

_WORDS: dict[str, type[Command]] = {
    "quiz": ShowQuiz, "答题": ShowQuiz, "做题": ShowQuiz, "题目": ShowQuiz,
    "me": ShowMe, "我的": ShowMe, "成绩": ShowMe,
    "case": ShowCase, "案例": ShowCase,
    "help": Help, "帮助": Help, "?": Help, "？": Help, "菜单": Help,
}
_JUDGE = {"对": "A", "正确": "A", "√": "A", "✓": "A", "✔": "A", "是": "A", "T": "A",
          "错": "B", "错误": "B", "×": "B", "✗": "B", "✘": "B", "否": "B", "F": "B"}
_LETTERS_RE = re.compile(r"^[A-H](?:[\s,，、]*[A-H])*$")


def normalise(text: str) -> str:
    # A lone surrogate (JSON may carry "\ud83d") cannot be encoded, so it cannot be echoed in a
    # reply: make it U+FFFD. NFKC folds full-width letters and spaces (Ａ → A), not Chinese.
    text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    # Control characters are not something a member types; NUL would even fail a PostgreSQL
    # query (an organisation name, an invite code).
    text = "".join(c for c in text if c in "\t\n\r" or unicodedata.category(c) != "Cc")
    return unicodedata.normalize("NFKC", text).strip()


def parse_choice(text: str) -> str | None:
    """'a c' → 'AC', '对' → 'A'; None if it is not an answer."""
    t = normalise(text).upper().rstrip("。.!！")
    if t in _JUDGE:
        return _JUDGE[t]
    if _LETTERS_RE.match(t):
        letters = [c for c in t if c.isalpha()]
        if len(set(letters)) != len(letters):
            return None
        return "".join(sorted(letters))
    return None


def parse_text(text: str) -> Command:
    if len(text) > MAX_TEXT:
        return Unknown(text[:40])
    t = normalise(text)
    if not t:
        return Unknown("")
    choice = parse_choice(t)
    if choice is not None:
        return SubmitAnswer(choice=choice)
    head, _, rest = t.partition(" ")
    rest = rest.strip()
    word = head.lstrip("/").split("@", 1)[0].lower()
    if word in ("start", "bind", "绑定"):
        return Bind(code=rest) if rest else Help()
    if word in ("report", "报告"):
        return ShowReport(args=rest)
    if word in _WORDS:
        return _WORDS[word]()
    # 绑定ABC123 without a space
    if t.startswith("绑定") and len(t) > 2:
        return Bind(code=t[2:].strip())
    return Unknown(t[:40])
