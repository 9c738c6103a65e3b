"""Callback security for 公众号 and WeCom: signatures, AES (安全模式), reply sealing.

All crypto is wechatpy's. A request that fails verification raises `Rejected(403)` and is
never parsed further; a verified but malformed one raises `Rejected(400)`.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping

import xmltodict
from starlette.requests import Request
from wechatpy.crypto import WeChatCrypto
from wechatpy.enterprise.crypto import WeChatCrypto as WeComCrypto
from wechatpy.enterprise.exceptions import InvalidCorpIdException
from wechatpy.exceptions import InvalidAppIdException, InvalidSignatureException
from wechatpy.utils import check_signature

MAX_BODY = 64 * 1024  # WeChat callbacks are a few hundred bytes; refuse anything huge
MAX_USER_ID = 64  # openids are 28 characters, WeCom userids at most 64 bytes


class Rejected(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


async def read_body(request: Request, limit: int = MAX_BODY) -> bytes:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise Rejected(413, "body too large")
    return body


def cdata_safe(text: str) -> str:
    """wechatpy puts reply text into CDATA unescaped; a "]]>" (e.g. echoed from what the member
    typed) would end the section and let the rest be read as XML. Split it the standard way."""
    return text.replace("]]>", "]]]]><![CDATA[>")


def _nonce() -> str:
    return secrets.token_hex(8)


def _need(query: Mapping[str, str], *names: str) -> list[str]:
    try:
        return [query[n] for n in names]
    except KeyError as exc:
        raise Rejected(403, f"missing {exc.args[0]}") from None


class WeChatCodec:
    """公众号: plain mode (signature over token/timestamp/nonce) or 安全模式 (encrypt_type=aes,
    msg_signature over the ciphertext too)."""

    def __init__(self, token: str, aes_key: str | None, appid: str) -> None:
        self.token = token
        self.crypto = WeChatCrypto(token, aes_key, appid) if aes_key else None

    def verify_url(self, query: Mapping[str, str]) -> str:
        signature, timestamp, nonce = _need(query, "signature", "timestamp", "nonce")
        try:
            check_signature(self.token, signature, timestamp, nonce)
        except InvalidSignatureException:
            raise Rejected(403, "bad signature") from None
        return query.get("echostr", "")

    def open(self, query: Mapping[str, str], body: bytes) -> tuple[str, bool]:
        """Return (plaintext XML, was it encrypted)."""
        if query.get("encrypt_type", "raw") == "aes":
            if self.crypto is None:
                raise Rejected(403, "encrypted callback but no EncodingAESKey configured")
            msg_signature, timestamp, nonce = _need(query, "msg_signature", "timestamp", "nonce")
            return _decrypt(self.crypto, body, msg_signature, timestamp, nonce), True
        signature, timestamp, nonce = _need(query, "signature", "timestamp", "nonce")
        try:
            check_signature(self.token, signature, timestamp, nonce)
        except InvalidSignatureException:
            raise Rejected(403, "bad signature") from None
        return body.decode("utf-8", "replace"), False

    def seal(self, reply_xml: str, encrypted: bool) -> str:
        if not encrypted or self.crypto is None:
            return reply_xml
        return self.crypto.encrypt_message(reply_xml, _nonce(), str(int(time.time())))  # type: ignore[no-any-return]


class WeComCodec:
    """WeCom: every callback is encrypted; URL verification decrypts `echostr`."""

    def __init__(self, token: str, aes_key: str, corpid: str) -> None:
        self.crypto = WeComCrypto(token, aes_key, corpid)

    def verify_url(self, query: Mapping[str, str]) -> str:
        msg_signature, timestamp, nonce, echostr = _need(query, "msg_signature", "timestamp", "nonce", "echostr")
        try:
            return self.crypto.check_signature(msg_signature, timestamp, nonce, echostr)  # type: ignore[no-any-return]
        except (InvalidSignatureException, InvalidAppIdException, InvalidCorpIdException):
            raise Rejected(403, "bad signature") from None
        except Exception:
            raise Rejected(400, "undecryptable echostr") from None

    def open(self, query: Mapping[str, str], body: bytes) -> str:
        msg_signature, timestamp, nonce = _need(query, "msg_signature", "timestamp", "nonce")
        return _decrypt(self.crypto, body, msg_signature, timestamp, nonce)

    def seal(self, reply_xml: str) -> str:
        return self.crypto.encrypt_message(reply_xml, _nonce(), str(int(time.time())))  # type: ignore[no-any-return]


def _decrypt(crypto: WeChatCrypto | WeComCrypto, body: bytes, signature: str, timestamp: str, nonce: str) -> str:
    try:
        outer = xmltodict.parse(body.decode("utf-8"))["xml"]
        if not isinstance(outer, dict) or not outer.get("Encrypt"):
            raise Rejected(403, "no Encrypt element")
    except Rejected:
        raise
    except Exception:
        raise Rejected(400, "malformed XML") from None
    try:
        return crypto.decrypt_message(outer, signature, timestamp, nonce)  # type: ignore[no-any-return]
    except InvalidSignatureException:
        raise Rejected(403, "bad msg_signature") from None
    except (InvalidAppIdException, InvalidCorpIdException):
        raise Rejected(403, "message for another appid") from None
    except Exception:
        raise Rejected(400, "undecryptable message") from None


def parse_xml(xml: str) -> dict[str, str]:
    """The decrypted message as a flat dict of strings (for fields wechatpy's classes do not know)."""
    try:
        data = xmltodict.parse(xml)["xml"]
    except Exception:
        raise Rejected(400, "malformed XML") from None
    if not isinstance(data, dict) or not isinstance(data.get("MsgType"), str):
        raise Rejected(400, "not a message")
    # Only plain text fields: a nested element where text belongs is treated as empty.
    flat = {k: v if isinstance(v, str) else "" for k, v in data.items()}
    if len(flat.get("FromUserName", "")) > MAX_USER_ID:
        raise Rejected(400, "implausible sender id")  # it would not fit the identity and throttle keys
    return flat
