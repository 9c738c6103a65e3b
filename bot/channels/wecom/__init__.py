"""WeCom (企业微信) self-built application channel: callback `/wecom/callback`, app messages
with button cards, and the directory import (`bot.channels.wecom_directory`)."""

from bot.channels.wecom.component import CALLBACK_PATH, WeComComponent
from bot.channels.wecom.messenger import WeComMessenger

__all__ = ["CALLBACK_PATH", "WeComComponent", "WeComMessenger"]
