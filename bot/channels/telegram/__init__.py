"""Telegram channel (python-telegram-bot 22): inline-keyboard quizzes, optional quiz polls.

`TelegramComponent` is what `qingfeng run` starts; `TelegramMessenger` is the outbound side
the scheduler pushes through.
"""

from bot.channels.telegram.component import (
    WEBHOOK_PATH,
    TelegramComponent,
    build_application,
    webhook_secret,
)
from bot.channels.telegram.messenger import TelegramMessenger

__all__ = ["WEBHOOK_PATH", "TelegramComponent", "TelegramMessenger", "build_application", "webhook_secret"]
