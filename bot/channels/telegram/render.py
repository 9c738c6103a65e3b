"""Core results as Telegram messages: text from the shared plain-text renderer, plus inline
keyboards for quiz cards and, in quiz-poll mode, native quiz polls."""

from __future__ import annotations

from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot.channels.telegram.callbacks import card_ref, encode
from bot.channels.text import render, render_answer, render_card, render_case
from bot.core.results import AnswerResult, QuizCard, Result, RoundInvite

MAX_TEXT = 4096  # Bot API limit for a message text
MAX_LABEL = 32  # longer option texts are cut on the button; the message shows them in full
# Native quiz-poll limits (Bot API): question 300, option 100, explanation 200 characters.
POLL_QUESTION, POLL_OPTION, POLL_EXPLANATION = 300, 100, 200
ALL_DONE = "🎉 本轮题目已全部作答，感谢参与！"
JUDGE_LABELS = {"A": "✔ 正确", "B": "✘ 错误"}


@dataclass(frozen=True)
class PollSpec:
    question: str
    options: list[str]
    correct: list[int]
    multiple: bool
    explanation: str | None


@dataclass(frozen=True)
class OutMessage:
    """One Bot API send: a text (optionally with a keyboard) or a quiz poll."""

    text: str
    keyboard: InlineKeyboardMarkup | None = None
    poll: PollSpec | None = None
    card: QuizCard | None = field(default=None, compare=False)  # what a poll answers


def clip(text: str, limit: int = MAX_TEXT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _label(letter: str, text: str) -> str:
    full = f"{letter}. {text}"
    return full if len(full) <= MAX_LABEL else full[: MAX_LABEL - 1] + "…"


def keyboard(card_type: str, ref: str, options: list[tuple[str, str]], selected: str = "") -> InlineKeyboardMarkup:
    """One button per option; for multiple choice, toggles plus a 提交 button."""
    if card_type == "judge":
        row = [InlineKeyboardButton(JUDGE_LABELS.get(letter, _label(letter, text)),
                                    callback_data=encode("a", ref, letter)) for letter, text in options]
        return InlineKeyboardMarkup([row])
    if card_type != "multiple":
        return InlineKeyboardMarkup([[InlineKeyboardButton(_label(letter, text),
                                                           callback_data=encode("a", ref, letter))]
                                     for letter, text in options])
    rows = []
    for letter, text in options:
        mark = "☑" if letter in selected else "☐"
        nxt = "".join(sorted(set(selected) ^ {letter}))
        rows.append([InlineKeyboardButton(f"{mark} {_label(letter, text)}", callback_data=encode("t", ref, nxt))])
    submit = f"提交（已选 {selected}）" if selected else "提交"
    rows.append([InlineKeyboardButton(submit, callback_data=encode("a", ref, selected))])
    return InlineKeyboardMarkup(rows)


HINT_BUTTONS = "请点击下方按钮作答。"
HINT_MULTIPLE = "请勾选全部正确选项后点「提交」。"


def card_text(card: QuizCard, tz: ZoneInfo) -> str:
    hint = HINT_MULTIPLE if card.type == "multiple" else HINT_BUTTONS
    return clip(render_card(card, tz, reply_hint=False) + "\n" + hint)


def card_message(card: QuizCard, tz: ZoneInfo) -> OutMessage:
    return OutMessage(card_text(card, tz), keyboard(card.type, card_ref(card), card.options), card=card)


def poll_for(card: QuizCard, key: str, explanation: str) -> PollSpec | None:
    """A native quiz poll for the card, or None when the item does not fit Telegram's limits."""
    kind = "温故知新" if card.is_review else f"第{card.position}/{card.total}题"
    question = f"【{kind}】{card.stem}"
    texts = [text for _, text in card.options]
    if len(question) > POLL_QUESTION or any(len(t) > POLL_OPTION for t in texts) or len(texts) > 10:
        return None
    letters = [letter for letter, _ in card.options]
    return PollSpec(question=question, options=texts, correct=[letters.index(c) for c in key],
                    multiple=card.type == "multiple",
                    explanation=explanation if len(explanation) <= POLL_EXPLANATION else None)


def answered_text(shown: str | None, result: AnswerResult) -> str:
    """The pressed card, edited to show the choice, right/wrong, key, explanation and source."""
    head = (shown or "").removesuffix("\n" + HINT_BUTTONS).removesuffix("\n" + HINT_MULTIPLE)
    body = render_answer(result)
    return clip(f"{head}\n\n{body}" if head else body)


def answer_followups(result: AnswerResult, tz: ZoneInfo, *, after_button: bool) -> list[OutMessage]:
    """What follows an answer: a related case, then the next review card or a closing line.

    After a button press the round's other cards are already on screen, so only a spaced
    re-ask (which is never pushed) is sent as the next card."""
    out: list[OutMessage] = []
    if result.case:
        out.append(OutMessage(clip(render_case(result.case))))
    nxt = result.next_card
    if nxt is not None and (nxt.is_review or not after_button):
        out.append(card_message(nxt, tz))
    elif nxt is None and not result.duplicate and result.round_id is not None and result.remaining == 0:
        out.append(OutMessage(ALL_DONE))
    return out


def messages_for(results: list[Result], tz: ZoneInfo) -> list[OutMessage]:
    """Replies to a command, in order (cards carry their keyboards)."""
    out: list[OutMessage] = []
    for r in results:
        if isinstance(r, QuizCard):
            out.append(card_message(r, tz))
        elif isinstance(r, AnswerResult):
            out.append(OutMessage(clip(render_answer(r))))
            out.extend(answer_followups(r, tz, after_button=False))
        elif isinstance(r, RoundInvite):
            out.extend(invite_messages(r, tz))
        else:
            out.append(OutMessage(clip(render(r, tz, slash=True))))
    return out


def invite_intro(invite: RoundInvite, tz: ZoneInfo) -> str:
    return (f"【{invite.title}】{invite.org_name}本周共 {len(invite.cards)} 道廉政学习题，"
            f"请于 {invite.deadline.astimezone(tz):%m月%d日 %H:%M} 前完成。点击每道题下方的按钮作答，"
            "也可随时发送 /quiz 查看未答题目。")


def invite_messages(invite: RoundInvite, tz: ZoneInfo, *, polls: dict[str, PollSpec] | None = None) -> list[OutMessage]:
    """A push: the intro, then each item as its own message (a quiz poll where one was built)."""
    out = [OutMessage(invite_intro(invite, tz))]
    for card in invite.cards:
        spec = (polls or {}).get(card.item_id)
        if spec is not None:
            out.append(OutMessage(spec.question, poll=spec, card=card))
        else:
            out.append(card_message(card, tz))
    return out
