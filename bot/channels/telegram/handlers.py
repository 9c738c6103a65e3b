"""Inbound Telegram: every update becomes a core Command; core's results become messages.

The member is always the Telegram *user* who sent the message, pressed the button or voted
(in a private chat that is also the chat). Button payloads only say which button was drawn:
which item a position means, and whether it reached this member, is read from the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging

from sqlmodel import select
from telegram import CallbackQuery, Chat, InlineKeyboardMarkup, Message, Update
from telegram.error import BadRequest, Forbidden, TelegramError
from telegram.ext import (
    Application,
    ApplicationHandlerStop,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    PollAnswerHandler,
    TypeHandler,
    filters,
)

from bot.app import App
from bot.channels.report_images import reports_in
from bot.channels.telegram import callbacks, state
from bot.channels.telegram.callbacks import ButtonData
from bot.channels.telegram.messenger import PLATFORM, TelegramMessenger
from bot.channels.telegram.render import (
    OutMessage,
    answer_followups,
    answered_text,
    clip,
    keyboard,
    messages_for,
)
from bot.core import quiz, spaced
from bot.core.commands import Command, Help, ShowQuiz, SubmitAnswer
from bot.core.errors import NotBound, NotDelivered
from bot.core.parsing import parse_text
from bot.core.results import AnswerResult, Notice, Result
from bot.core.service import Sender
from bot.storage.models import BankItem, RoundItem
from question_bank import LETTERS

log = logging.getLogger(__name__)
Context = ContextTypes.DEFAULT_TYPE

COMMANDS = [
    ("start", "绑定身份：/start 邀请码"),
    ("quiz", "查看本周待答题目"),
    ("me", "我的学习记录"),
    ("case", "警示教育案例"),
    ("report", "本支部答题统计（支部书记）"),
    ("help", "使用帮助"),
]
PRIVATE_ONLY = "为保护个人信息，请在与我的私聊中使用该功能。"
STALE_BUTTON = "按钮已失效，请发送 /quiz 重新获取题目。"
REVIEW_GONE = "这道巩固题已作答或已不在待巩固列表中。发送 /quiz 查看待答题目。"
PICK_ONE = "请至少勾选一个选项再提交。"
SORRY = "抱歉，系统暂时出错，请稍后再试。"
CHART_DRAIN = 30.0  # seconds stop() waits for report charts still on their way


class TelegramHandlers:
    def __init__(self, app: App, messenger: TelegramMessenger) -> None:
        self.service = app.service.for_channel(PLATFORM)
        self.db = app.db
        self.tz = app.settings.tz
        self.messenger = messenger
        self.update_log: state.UpdateLog | None = None
        self._round_items: dict[tuple[int, int], str] = {}
        self._chart_sends: set[asyncio.Task[None]] = set()

    async def start(self, bot_id: int) -> None:
        self.update_log = state.UpdateLog(self.db, bot_id)
        await self.update_log.load()

    def register(self, application: Application) -> None:  # type: ignore[type-arg]
        application.add_handler(TypeHandler(Update, self.skip_replays), group=-1)
        application.add_handler(CommandHandler([c for c, _ in COMMANDS], self.on_command))
        # Unknown /commands get help, but only in private: a group may hold other bots' commands.
        application.add_handler(MessageHandler(filters.COMMAND & filters.ChatType.PRIVATE, self.on_command))
        application.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND, self.on_text))
        application.add_handler(CallbackQueryHandler(self.on_button))
        application.add_handler(PollAnswerHandler(self.on_poll_answer))
        application.add_handler(TypeHandler(Update, self.mark_done), group=1)
        application.add_error_handler(self.on_error)

    # --- exactly-once bookkeeping --------------------------------------------------------

    async def skip_replays(self, update: Update, _context: Context) -> None:
        if self.update_log is not None and self.update_log.seen(update.update_id):
            log.info("skipping replayed update %d", update.update_id)
            raise ApplicationHandlerStop

    async def mark_done(self, update: Update, _context: Context) -> None:
        if self.update_log is not None:
            self.update_log.done(update.update_id)

    async def charts_sent(self, timeout: float = CHART_DRAIN) -> None:
        """Wait (bounded) for the report charts still being drawn or sent from their own tasks."""
        if self._chart_sends:
            await asyncio.wait(set(self._chart_sends), timeout=timeout)

    async def stop(self) -> None:
        await self.charts_sent()  # let them finish before the bot shuts down
        if self.update_log is not None:
            await self.update_log.flush()

    # --- sending ---------------------------------------------------------------------------

    async def send(self, chat_id: int, messages: list[OutMessage]) -> None:
        for msg in messages:
            try:
                await self.messenger.deliver(chat_id, msg)
            except Forbidden:
                log.info("reply not delivered: the user blocked the bot")
                return

    async def send_results(self, chat_id: int, results: list[Result]) -> None:
        await self.send(chat_id, messages_for(results, self.tz))
        if reports_in(results):
            # Charts take a second or two to draw; updates are handled one at a time, so they
            # follow the text from a task of their own instead of holding up everyone's answers.
            task = asyncio.create_task(self.messenger.send_report_images(chat_id, results))
            self._chart_sends.add(task)
            task.add_done_callback(self._chart_sends.discard)

    async def handle(self, user_id: int, command: Command) -> list[Result]:
        return await self.service.handle(Sender(PLATFORM, str(user_id)), command)

    # --- messages --------------------------------------------------------------------------

    async def on_command(self, update: Update, _context: Context) -> None:
        msg, user = update.effective_message, update.effective_user
        if msg is None or user is None or not msg.text:
            return
        command = parse_text(msg.text)
        if isinstance(command, ShowQuiz):
            command = ShowQuiz(all_pending=True)  # buttons: show every open item at once
        if msg.chat.type != Chat.PRIVATE and not isinstance(command, Help):
            # Codes, records and reports are personal; never in a group.
            await self.send(msg.chat_id, [OutMessage(PRIVATE_ONLY)])
            return
        await self.send_results(msg.chat_id, await self.handle(user.id, command))

    async def on_text(self, update: Update, _context: Context) -> None:
        msg, user = update.effective_message, update.effective_user
        if msg is None or user is None or not msg.text or msg.chat.type != Chat.PRIVATE:
            return  # group chatter is not for the bot
        command = parse_text(msg.text)
        if isinstance(command, ShowQuiz):
            command = ShowQuiz(all_pending=True)
        await self.send_results(msg.chat_id, await self.handle(user.id, command))

    # --- buttons ---------------------------------------------------------------------------

    async def _answer_query(self, query: CallbackQuery, text: str | None = None, *, alert: bool = False) -> None:
        with contextlib.suppress(BadRequest):  # too old to answer; the message edit still tells
            await self.messenger.answer_query(query.id, text, alert=alert)

    async def _round_item(self, round_id: int, position: int) -> str | None:
        """Which item sits at a round position (fixed once the round is open, so cached)."""
        key = (round_id, position)
        if key not in self._round_items:
            async with self.db.session() as session:
                item_id = (await session.exec(select(RoundItem.item_id).where(
                    RoundItem.round_id == round_id, RoundItem.position == position))).first()
            if item_id is None:
                return None
            if len(self._round_items) > 10_000:
                self._round_items.clear()
            self._round_items[key] = item_id
        return self._round_items[key]

    async def _resolve(self, user_id: int, data: ButtonData) -> BankItem | str:
        """The item a button means for the member who pressed it, or why it cannot be used:
        a round item must have been delivered to them, a re-ask must be due for them."""
        sender = Sender(PLATFORM, str(user_id))
        async with self.db.session() as session:
            viewer = await self.service.viewer(session, sender)
            if viewer is None:
                return NotBound.message
            member_id: int = viewer.member.id  # type: ignore[assignment]
            if data.round_id is not None and data.position is not None:
                item_id = await self._round_item(data.round_id, data.position)
                if item_id is None or not await quiz.is_delivered(
                        session, member_id=member_id, round_id=data.round_id, item_id=item_id):
                    return NotDelivered.message
                item = await session.get(BankItem, item_id)
                return item if item is not None else NotDelivered.message
            due = await spaced.due_items(session, member_id=member_id, now=self.service.clock())
            found = next((i for i in due if callbacks.item_digest(i.id) == data.digest), None)
            return found if found is not None else REVIEW_GONE

    async def on_button(self, update: Update, _context: Context) -> None:
        query = update.callback_query
        if query is None:
            return
        if isinstance(query.message, Message) and query.message.chat.type != Chat.PRIVATE:
            # A card forwarded to (or data forged on a message in) a group: the answer, the key
            # and the explanation would be shown there. Buttons answer in private only.
            await self._answer_query(query, PRIVATE_ONLY, alert=True)
            return
        data = callbacks.decode(query.data)
        if data is None:
            await self._answer_query(query, STALE_BUTTON, alert=True)
            return
        if data.action == "a" and data.round_id is not None and data.position is not None:
            # The common case, kept to one cached lookup: core checks that this round item
            # was delivered to the member who pressed, and that the letters are options.
            item_id = await self._round_item(data.round_id, data.position)
            if item_id is None:
                await self._answer_query(query, NotDelivered.message, alert=True)
                return
        else:
            item = await self._resolve(query.from_user.id, data)
            if isinstance(item, str):
                await self._answer_query(query, item, alert=True)
                return
            item_id = item.id
            options = list(zip(LETTERS, item.content["options"], strict=False))
            if any(c not in LETTERS[: len(options)] for c in data.letters):
                await self._answer_query(query, STALE_BUTTON, alert=True)
                return
            if data.action == "t":
                ref = f"{data.round_id}.{data.position}" if data.round_id is not None else f"r{data.digest}"
                await self._toggle(query, keyboard(item.type, ref, options, data.letters))
                return
        if not data.letters:
            await self._answer_query(query, PICK_ONE, alert=True)
            return
        results = await self.handle(query.from_user.id, SubmitAnswer(data.letters, data.round_id, item_id))
        result = results[0] if results else None
        if not isinstance(result, AnswerResult):
            await self._answer_query(query, result.text if isinstance(result, Notice) else None, alert=True)
            return
        await self._show_answer(query, result)

    async def _toggle(self, query: CallbackQuery, markup: InlineKeyboardMarkup) -> None:
        await self._answer_query(query)
        message = query.message
        if isinstance(message, Message):
            with contextlib.suppress(BadRequest):  # "message is not modified" after a double tap
                await self.messenger.call(lambda: message.edit_reply_markup(reply_markup=markup))

    async def _show_answer(self, query: CallbackQuery, result: AnswerResult) -> None:
        if result.duplicate:
            note = f"这道题您已作答，以首次作答「{result.choice}」为准。"
        else:
            note = "✅ 回答正确" if result.correct else "❌ 回答错误"
        # The card shows the first answer as answered, also when pressed again on another copy.
        message = query.message if isinstance(query.message, Message) else None
        text = answered_text(message.text if message else None, dataclasses.replace(result, duplicate=False))
        # Stop the button's spinner and edit the card at the same time.
        _, edited = await asyncio.gather(self._answer_query(query, note, alert=result.duplicate),
                                         self._edit(message, text))
        chat_id = message.chat.id if message else query.from_user.id
        if not edited:  # too old to edit (or not accessible): say it in a new message
            await self.send(chat_id, [OutMessage(text)])
        if not result.duplicate:
            await self.send(chat_id, answer_followups(result, self.tz, after_button=True))

    async def _edit(self, message: Message | None, text: str) -> bool:
        if message is None:
            return False
        try:
            await self.messenger.edit_text(message.chat.id, message.message_id, text)
        except BadRequest as exc:
            return "not modified" in str(exc).lower()  # a double tap: already shown
        return True

    # --- quiz polls ------------------------------------------------------------------------

    async def on_poll_answer(self, update: Update, _context: Context) -> None:
        answer = update.poll_answer
        if answer is None or answer.user is None or not answer.option_ids:
            return  # anonymous, or a retracted vote
        target = await state.poll_target(self.db, answer.poll_id)
        if target is None:
            return
        round_id, item_id = target
        choice = "".join(sorted(LETTERS[i] for i in answer.option_ids if 0 <= i < len(LETTERS)))
        results = await self.handle(answer.user.id, SubmitAnswer(choice, round_id, item_id))
        out: list[OutMessage] = []
        for r in results:
            if isinstance(r, AnswerResult):
                out.append(OutMessage(clip(answered_text(None, r))))
                if not r.duplicate:
                    out.extend(answer_followups(r, self.tz, after_button=True))
            else:
                out.extend(messages_for([r], self.tz))
        await self.send(answer.user.id, out)

    # --- the one error handler -------------------------------------------------------------

    async def on_error(self, update: object, context: Context) -> None:
        err = context.error
        update_id = update.update_id if isinstance(update, Update) else None
        # Type and update id only: message texts and chat ids are personal data.
        log.error("telegram update %s failed: %s", update_id, type(err).__name__,
                  exc_info=(type(err), err, err.__traceback__) if err else None)
        if isinstance(update, Update) and update.effective_chat and update.effective_chat.type == Chat.PRIVATE:
            with contextlib.suppress(TelegramError):
                await self.send(update.effective_chat.id, [OutMessage(SORRY)])

