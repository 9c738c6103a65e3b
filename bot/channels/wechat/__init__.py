"""WeChat Official Account (公众号) channel: callback `/wechat/callback`, customer-service and
template messages. `WeChatComponent` is what `qingfeng run` starts."""

from bot.channels.wechat.component import CALLBACK_PATH, WeChatComponent
from bot.channels.wechat.messenger import WeChatMessenger

__all__ = ["CALLBACK_PATH", "WeChatComponent", "WeChatMessenger"]
