"""Domain errors. Each carries a polite zh-CN message that an adapter can show as it is."""

from __future__ import annotations


class QingfengError(Exception):
    """Base of errors that become a reply at the edge instead of a crash."""

    message = "操作未能完成。"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.message)
        self.message = message or self.message


class NotBound(QingfengError):
    message = "您还没有绑定身份。请发送「/start 邀请码」（微信中发送「绑定 邀请码」）完成绑定，邀请码请向支部书记索取。"


class InvalidCode(QingfengError):
    message = "邀请码无效，请核对后重试；如仍有问题请联系支部书记。"


class ExpiredCode(QingfengError):
    message = "该邀请码已过期，请向支部书记申请新的邀请码。"


class UsedCode(QingfengError):
    message = "该邀请码已被使用。如需在新设备上绑定，请向支部书记申请新的邀请码。"


class Throttled(QingfengError):
    message = "尝试次数过多，请稍后再试。"


class NotAllowed(QingfengError):
    message = "抱歉，您没有查看该内容的权限。"


class NothingToAnswer(QingfengError):
    message = "目前没有待作答的题目。新一轮学习题推送后会第一时间通知您。"


class NotDelivered(QingfengError):
    message = "这道题不在您的待答题目中，无法作答。"


class InvalidChoice(QingfengError):
    message = "没有看懂您的答案。请回复选项字母，如「A」；多选题回复「AC」；判断题回复「对」或「错」。"


class UnknownOrganization(QingfengError):
    message = "没有找到该组织。"
