"""Outbound Telegram: push a round (an intro plus one message per item) and other results.

Per recipient the messages go out in order; each call is retried (rate limits, 5xx, network)
before the push gives up on that member. A user who blocked the bot comes back as `blocked`
(core then marks the identity inactive) and the push goes on. If a push stops part-way the
number of messages already sent is remembered, so the retry resumes instead of repeating.

A report (the weekly digest) is its text followed by its charts: one album when there are
two or more (`sendMediaGroup`, a caption on each photo), else a single photo. The text is
what the push is about: a chart that cannot be drawn or sent is logged, and the push still
counts as sent.
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from datetime import timedelta
from types import TracebackType

from sqlmodel import col, select
from telegram import Bot, InlineKeyboardMarkup, InputMediaPhoto, Message, Poll
from telegram.error import Forbidden, TelegramError
from telegram.warnings import PTBUserWarning

from bot.channels.base import Recipient, SendOutcome, SendStatus
from bot.channels.report_images import ReportImage, count_images, report_images, reports_in
from bot.channels.telegram import state
from bot.channels.telegram.render import OutMessage, PollSpec, invite_messages, messages_for, poll_for
from bot.channels.telegram.retry import RetryPolicy, Sleep, with_retries
from bot.config import Settings
from bot.core.results import Result, RoundInvite
from bot.storage.db import Database
from bot.storage.models import BankItem

log = logging.getLogger(__name__)
# `send_text`, `edit_text` and `answer_query` call their endpoints through do_api_request on purpose (see
# there); PTB warns that send_message / edit_message_text / answer_callback_query exist for them.
warnings.filterwarnings("ignore", message=r"Please use 'Bot\.(sendMessage|editMessageText|answerCallbackQuery)' "
                                          r"instead of",
                        category=PTBUserWarning)
PLATFORM = "telegram"
POLL_MEMORY = timedelta(days=30)  # how long after the deadline a poll answer is still matched
ALBUM_MAX = 10  # photos per sendMediaGroup (Bot API: 2-10)
MARKUP_MEMORY = 64  # keyboards converted to JSON and kept (a round has a handful)


class TelegramMessenger:
    platform = PLATFORM

    def __init__(self, bot: Bot, db: Database, settings: Settings, *, sleep: Sleep = asyncio.sleep) -> None:
        self.bot = bot
        self.db = db
        self.settings = settings
        self.policy = RetryPolicy(max_retries=settings.telegram_max_retries,
                                  backoff=settings.telegram_retry_backoff)
        self.sleep = sleep
        self._polls: OrderedDict[int, dict[str, PollSpec]] = OrderedDict()  # round id -> item -> poll
        # The last invite rendered: a push hands every member the same invite object.
        self._rendered: tuple[RoundInvite, dict[str, PollSpec] | None, list[OutMessage]] | None = None
        self._markups: dict[int, tuple[InlineKeyboardMarkup, dict[str, object]]] = {}

    # A standalone messenger (e.g. a CLI push) owns its bot's HTTP session.
    async def __aenter__(self) -> TelegramMessenger:
        await self.bot.initialize()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.bot.shutdown()

    async def call(self, make_call):  # type: ignore[no-untyped-def]
        """Run one Bot API call with this messenger's retry policy (used by the handlers too)."""
        return await with_retries(make_call, self.policy, sleep=self.sleep)

    async def deliver(self, chat_id: int, msg: OutMessage) -> Message | None:
        """One message: a quiz poll (the sent `Message`, whose poll id is remembered), or a text
        through `send_text` (None: nothing of Telegram's answer is needed)."""
        if msg.poll is None:
            await self.send_text(chat_id, msg)
            return None
        p = msg.poll
        return await self.call(lambda: self.bot.send_poll(
            chat_id, p.question, p.options, is_anonymous=False, type=Poll.QUIZ,
            allows_multiple_answers=p.multiple, correct_option_ids=p.correct, explanation=p.explanation))

    async def send_text(self, chat_id: int, msg: OutMessage) -> None:
        """A text message (a push's card, a reply), through PTB (defaults, rate limiter, errors)
        but without turning the reply into a `Message`: nothing of it is needed, and building
        one with its keyboard for every member and card was a sixth of PTB's share of a push."""
        params: dict[str, object] = {"chat_id": chat_id, "text": msg.text}
        if msg.keyboard is not None:
            params["reply_markup"] = self._markup(msg.keyboard)
        await self.call(lambda: self.bot.do_api_request("sendMessage", api_kwargs=params))

    async def edit_text(self, chat_id: int, message_id: int, text: str) -> None:
        """Replace a message's text and drop its keyboard (an answered card); like `send_text`,
        the edited message Telegram returns is not parsed. Raises BadRequest like PTB's edit."""
        params: dict[str, object] = {"chat_id": chat_id, "message_id": message_id, "text": text}
        await self.call(lambda: self.bot.do_api_request("editMessageText", api_kwargs=params))

    async def answer_query(self, query_id: str, text: str | None = None, *, alert: bool = False) -> None:
        """Stop a pressed button's spinner, with a toast (or an alert) when `text` is given;
        like `edit_text`, through do_api_request (PTB's `CallbackQuery.answer` cost half as
        much again as the card edit beside it). Raises BadRequest like PTB's answer."""
        params: dict[str, object] = {"callback_query_id": query_id}
        if text:
            params["text"] = text[:200]  # the Bot API's limit for a toast
            params["show_alert"] = alert
        await self.call(lambda: self.bot.do_api_request("answerCallbackQuery", api_kwargs=params))

    def _markup(self, keyboard: InlineKeyboardMarkup) -> dict[str, object]:
        """The keyboard as the JSON object PTB would make of it, made once per rendered card
        (a push sends the same cards to every member; converting them was ~15 % of its CPU)."""
        hit = self._markups.get(id(keyboard))
        if hit is not None and hit[0] is keyboard:
            return hit[1]
        if len(self._markups) >= MARKUP_MEMORY:
            self._markups.clear()
        markup = keyboard.to_dict()
        self._markups[id(keyboard)] = (keyboard, markup)  # holding the keyboard keeps its id
        return markup

    async def send_images(self, chat_id: int, images: Sequence[ReportImage]) -> None:
        """Report charts: an album of up to ten (each photo keeps its caption), a lone one as a
        photo. Raises TelegramError (after retries) like `deliver`."""
        for start in range(0, len(images), ALBUM_MAX):
            chunk = images[start:start + ALBUM_MAX]
            if len(chunk) == 1:
                one = chunk[0]
                await self.call(lambda one=one: self.bot.send_photo(
                    chat_id, photo=one.png, caption=one.caption, filename=one.filename))
                continue
            media = [InputMediaPhoto(i.png, caption=i.caption, filename=i.filename) for i in chunk]
            await self.call(lambda media=media: self.bot.send_media_group(chat_id, media))

    async def send_report_images(self, chat_id: int, results: list[Result]) -> None:
        """Draw (in a thread) and send the charts of the reports among `results`; never raises:
        the report's text has gone already and stays the delivery."""
        if not reports_in(results):
            return
        images = await report_images(results)
        if not images:
            return
        try:
            await self.send_images(chat_id, images)
        except Forbidden:
            log.info("report charts not delivered: the user blocked the bot")
        except TelegramError as exc:
            log.warning("report charts not delivered: %s", type(exc).__name__)
        except Exception as exc:  # e.g. from a background task in the handlers: log, never lose it
            log.error("report charts not delivered: %s", type(exc).__name__)
        else:
            count_images(PLATFORM, "sent", len(images))
            return
        count_images(PLATFORM, "failed", len(images))  # an album goes or fails as one

    async def send(self, recipient: Recipient, results: list[Result]) -> SendOutcome:
        try:
            chat_id = int(recipient.external_id)
        except ValueError:
            return SendOutcome(SendStatus.failed, "not a Telegram chat id")
        invite = results[0] if len(results) == 1 and isinstance(results[0], RoundInvite) else None
        if invite is not None:
            polls = await self._polls_for(invite) if self.settings.telegram_quiz_polls else None
            messages = self._invite_messages(invite, polls)
            start = (await state.push_progress(self.db, invite.round_id, recipient.identity_id)
                     if recipient.retried else 0)  # only an earlier attempt can have left some
        else:
            messages, start = messages_for(results, self.settings.tz), 0
        for i in range(start, len(messages)):
            msg = messages[i]
            try:
                sent = await self.deliver(chat_id, msg)
            except Forbidden:
                return SendOutcome(SendStatus.blocked, "forbidden")
            except TelegramError as exc:
                if invite is not None and i > start:
                    await state.save_push_progress(self.db, invite.round_id, recipient.identity_id, i)
                log.warning("telegram send gave up after retries: %s", type(exc).__name__)
                return SendOutcome(SendStatus.failed, f"{type(exc).__name__}: {exc}"[:200])
            if sent is not None and sent.poll is not None and msg.card is not None:
                await state.remember_poll(self.db, sent.poll.id, round_id=msg.card.round_id,
                                          item_id=msg.card.item_id, until=msg.card.deadline + POLL_MEMORY)
        if invite is not None and start:
            await state.clear_push_progress(self.db, invite.round_id, recipient.identity_id)
        if invite is None:
            await self.send_report_images(chat_id, results)
        return SendOutcome(SendStatus.sent)

    def _invite_messages(self, invite: RoundInvite, polls: dict[str, PollSpec] | None) -> list[OutMessage]:
        """Rendered once per push, not once per member (the messages are never modified)."""
        last = self._rendered
        if last is not None and last[0] is invite and last[1] is polls:
            return last[2]
        messages = invite_messages(invite, self.settings.tz, polls=polls)
        self._rendered = (invite, polls, messages)
        return messages

    async def _polls_for(self, invite: RoundInvite) -> dict[str, PollSpec]:
        """Quiz polls for a round's cards, built once per round (keys come from the database)."""
        cached = self._polls.get(invite.round_id)
        if cached is not None:
            return cached
        ids = [c.item_id for c in invite.cards]
        async with self.db.session() as session:
            items = {i.id: i for i in (await session.exec(select(BankItem).where(col(BankItem.id).in_(ids)))).all()}
        polls = {}
        for card in invite.cards:
            item = items.get(card.item_id)
            spec = poll_for(card, item.answer, item.content["explanation"]) if item else None
            if spec is not None:
                polls[card.item_id] = spec
        self._polls[invite.round_id] = polls
        while len(self._polls) > 16:
            self._polls.popitem(last=False)
        return polls
