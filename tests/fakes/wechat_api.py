"""Fake WeChat (公众号) and WeCom (企业微信) servers for tests: real HTTP on 127.0.0.1.

Two halves, as the real platforms have:
- the API the bot calls (point `QINGFENG_WECHAT_API_BASE_URL` / `QINGFENG_WECOM_API_BASE_URL`
  at `fake.base_url`): tokens, customer-service and template messages with the 48-hour
  window (errcode 45015 outside it), temporary media uploads (`media/upload`, multipart, the
  bytes kept so a test can look at the images) and image messages, WeCom app messages, card
  updates, departments, users;
- callbacks as the platforms send them (`fake.text_callback(...)` etc.): the XML, the
  signatures and the AES encryption (安全模式) implemented here independently of wechatpy,
  so a test checks that the bot speaks the real protocol, not merely wechatpy to itself.

The fake's clock is the test's clock, so the 48-hour window and token expiry follow it.
Faults: `fail_next(path, errcode)`, `revoke_tokens()`. Everything the bot sent is recorded.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import os
import secrets
import struct
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

Clock = Callable[[], datetime]
KF_WINDOW = timedelta(hours=48)
TOKEN_TTL = 7200


# --- the platforms' message crypto, written from the published protocol --------------------


def sha1_signature(*parts: str) -> str:
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


class PlatformCrypto:
    """AES-256-CBC, key = base64(EncodingAESKey + "="), IV = key[:16], PKCS#7 to 32 bytes;
    plaintext = 16 random bytes + 4-byte big-endian length + message + appid/corpid."""

    def __init__(self, token: str, aes_key: str, receiver_id: str) -> None:
        self.token = token
        self.key = base64.b64decode(aes_key + "=")
        assert len(self.key) == 32
        self.receiver_id = receiver_id

    def encrypt(self, plaintext: str) -> str:
        msg = plaintext.encode()
        raw = os.urandom(16) + struct.pack(">I", len(msg)) + msg + self.receiver_id.encode()
        pad = 32 - len(raw) % 32
        raw += bytes([pad]) * pad
        enc = Cipher(algorithms.AES(self.key), modes.CBC(self.key[:16])).encryptor()
        return base64.b64encode(enc.update(raw) + enc.finalize()).decode()

    def decrypt(self, ciphertext: str) -> str:
        dec = Cipher(algorithms.AES(self.key), modes.CBC(self.key[:16])).decryptor()
        raw = dec.update(base64.b64decode(ciphertext)) + dec.finalize()
        raw = raw[: -raw[-1]]
        (length,) = struct.unpack(">I", raw[16:20])
        msg, receiver = raw[20:20 + length], raw[20 + length:]
        assert receiver.decode() == self.receiver_id, "reply encrypted for another appid/corpid"
        return msg.decode()

    def open_reply(self, body: str) -> str:
        """Check an encrypted passive reply's signature and return its plaintext XML."""
        root = ET.fromstring(body)
        encrypt, signature = root.findtext("Encrypt") or "", root.findtext("MsgSignature") or ""
        timestamp, nonce = root.findtext("TimeStamp") or "", root.findtext("Nonce") or ""
        assert sha1_signature(self.token, timestamp, nonce, encrypt) == signature, "bad reply signature"
        return self.decrypt(encrypt)


def xml_message(fields: dict[str, Any]) -> str:
    nodes = []
    for k, v in fields.items():
        if isinstance(v, int):
            nodes.append(f"<{k}>{v}</{k}>")
        else:
            nodes.append(f"<{k}><![CDATA[{str(v).replace(']]>', ']]]]><![CDATA[>')}]]></{k}>")
    return "<xml>" + "".join(nodes) + "</xml>"


def xml_fields(xml: str) -> dict[str, str]:
    root = ET.fromstring(xml)
    return {child.tag: (child.text or "") for child in root}


@dataclass
class Callback:
    """One callback as the platform would POST it: query string and body."""

    query: dict[str, str]
    body: str
    encrypted: bool


# --- HTTP plumbing --------------------------------------------------------------------------


@dataclass
class ApiCall:
    method: str
    path: str
    query: dict[str, str]
    body: dict[str, Any] | None
    errcode: int


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def _serve(self, method: str) -> None:
        parts = urlsplit(self.path)
        query = dict(parse_qsl(parts.query))
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        ctype = self.headers.get("Content-Type") or ""
        body: dict[str, Any] | None
        if ctype.startswith("multipart/form-data"):
            body = _multipart(ctype, raw)
        else:
            try:
                body = json.loads(raw.decode("utf-8")) if raw else None
            except ValueError:
                body = None
        status, payload = self.server.fake.dispatch(method, parts.path, query, body)
        data = json.dumps(payload, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def log_message(self, *args: Any) -> None:
        pass


@dataclass(frozen=True)
class Upload:
    """One file part of a multipart upload."""

    filename: str
    content_type: str
    data: bytes


def _multipart(ctype: str, raw: bytes) -> dict[str, Any]:
    """A multipart/form-data body as {"files": {name: Upload}, <field>: <text>, …}."""
    msg = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {ctype}\r\n\r\n".encode() + raw)
    body: dict[str, Any] = {"files": {}}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True) or b""
        if part.get_filename() is not None:
            body["files"][name] = Upload(part.get_filename(), part.get_content_type(), payload)
        else:
            body[name] = payload.decode()
    return body


IMAGE_SIGNATURES = {"png": b"\x89PNG\r\n\x1a\n", "jpg": b"\xff\xd8\xff", "jpeg": b"\xff\xd8\xff", "gif": b"GIF8"}
IMAGE_LIMIT = 10 * 1024 * 1024  # bytes: both platforms take temporary images up to 10 MB


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeApi


Route = Callable[[dict[str, str], dict[str, Any] | None], dict[str, Any]]


class FakeApi:
    """Token handling, fault injection and the call log shared by both platforms."""

    token_path = "/cgi-bin/token"

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.lock = threading.RLock()
        self.calls: list[ApiCall] = []
        self.tokens: dict[str, datetime] = {}
        self.token_fetches = 0
        self._faults: dict[str, list[int]] = {}
        self._seq = itertools.count(1)
        self.routes: dict[tuple[str, str], Route] = {}
        self.media: dict[str, Upload] = {}  # media_id -> what was uploaded
        self._server: _Server | None = None

    # lifecycle
    def start(self) -> FakeApi:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-wx",
                         daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> FakeApi:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/cgi-bin/"

    # faults
    def fail_next(self, path: str, errcode: int, times: int = 1) -> None:
        with self.lock:
            self._faults.setdefault(path, []).extend([errcode] * times)

    def revoke_tokens(self) -> None:
        """As if another client fetched a new token: every issued one is now invalid (40001)."""
        with self.lock:
            self.tokens.clear()

    # tokens
    def issue_token(self) -> dict[str, Any]:
        with self.lock:
            self.token_fetches += 1
            token = f"TOKEN-{next(self._seq)}-{secrets.token_hex(6)}"
            self.tokens[token] = self.clock() + timedelta(seconds=TOKEN_TTL)
        return {"access_token": token, "expires_in": TOKEN_TTL}

    def token_error(self, query: dict[str, str]) -> int | None:
        token = query.get("access_token", "")
        expires = self.tokens.get(token)
        if expires is None:
            return 40001
        if expires <= self.clock():
            return 42001
        return None

    def dispatch(self, method: str, path: str, query: dict[str, str],
                 body: dict[str, Any] | None) -> tuple[int, dict[str, Any]]:
        with self.lock:
            route = self.routes.get((method, path))
            if route is None:
                return 404, {"errcode": 404, "errmsg": "no such fake route"}
            if path != self.token_path:
                err = self._faults.get(path, []) and self._faults[path].pop(0)
                if not err:
                    err = self.token_error(query) or 0
                if err:
                    self.calls.append(ApiCall(method, path, query, body, err))
                    return 200, {"errcode": err, "errmsg": f"fake error {err}"}
            result = route(query, body)
            self.calls.append(ApiCall(method, path, query, body, int(result.get("errcode", 0))))
            return 200, result

    def ok_calls(self, path: str) -> list[ApiCall]:
        with self.lock:
            return [c for c in self.calls if c.path == path and c.errcode == 0]

    def calls_to(self, path: str) -> list[ApiCall]:
        with self.lock:
            return [c for c in self.calls if c.path == path]

    @staticmethod
    def err(code: int, msg: str) -> dict[str, Any]:
        return {"errcode": code, "errmsg": msg}

    MEDIA_UPLOAD = "/cgi-bin/media/upload"
    MEDIA_TYPES: frozenset[str] = frozenset({"image", "voice", "video", "thumb"})

    def _media_upload(self, query: dict[str, str], body: dict[str, Any] | None) -> dict[str, Any]:
        """新增临时素材: a multipart part named `media`; images are checked like the platform
        does (an image extension on the file name, matching content, at most 10 MB)."""
        kind = query.get("type", "")
        if kind not in self.MEDIA_TYPES:
            return self.err(40004, "invalid media type")
        upload = ((body or {}).get("files") or {}).get("media")
        if not isinstance(upload, Upload) or not upload.data:
            return self.err(41005, "media data missing")
        if kind == "image":
            ext = upload.filename.rsplit(".", 1)[-1].lower() if "." in upload.filename else ""
            if ext not in IMAGE_SIGNATURES or not upload.data.startswith(IMAGE_SIGNATURES[ext]):
                return self.err(40113, "unsupported file type")
            if len(upload.data) > IMAGE_LIMIT:
                return self.err(40009, "invalid image size")
        media_id = f"MEDIA{next(self._seq)}_{secrets.token_hex(8)}"
        self.media[media_id] = upload
        return {"errcode": 0, "errmsg": "ok", "type": kind, "media_id": media_id,
                "created_at": int(self.clock().timestamp())}

    def image_of(self, media_id: str) -> bytes:
        with self.lock:
            return self.media[media_id].data


# --- 公众号 ----------------------------------------------------------------------------------


class FakeWeChatAPI(FakeApi):
    CUSTOM_SEND = "/cgi-bin/message/custom/send"
    TEMPLATE_SEND = "/cgi-bin/message/template/send"

    def __init__(self, clock: Clock, *, appid: str, secret: str, token: str, aes_key: str,
                 template_id: str, account: str = "gh_qingfeng0001") -> None:
        super().__init__(clock)
        self.appid, self.secret, self.template_id, self.account = appid, secret, template_id, account
        self.crypto = PlatformCrypto(token, aes_key, appid)
        self.token = token
        self.last_interaction: dict[str, datetime] = {}
        self.unfollowed: set[str] = set()
        self._msg_ids = itertools.count(24_000_000_000_000_001)
        self.routes = {
            ("GET", "/cgi-bin/token"): self._token,
            ("POST", self.CUSTOM_SEND): self._custom_send,
            ("POST", self.TEMPLATE_SEND): self._template_send,
            ("POST", self.MEDIA_UPLOAD): self._media_upload,
        }

    def _token(self, query: dict[str, str], _body: Any) -> dict[str, Any]:
        if query.get("grant_type") != "client_credential":
            return self.err(40002, "invalid grant_type")
        if query.get("appid") != self.appid or query.get("secret") != self.secret:
            return self.err(40125, "invalid appsecret")
        return self.issue_token()

    def _custom_send(self, _q: dict[str, str], body: dict[str, Any] | None) -> dict[str, Any]:
        body = body or {}
        openid = body.get("touser", "")
        kind = body.get("msgtype")
        if kind not in ("text", "image") or not isinstance(body.get(kind), dict):
            return self.err(40008, "invalid message type")
        if kind == "text" and len(body["text"].get("content", "").encode()) > 2048:
            return self.err(45002, "content size out of limit")
        if kind == "image" and body["image"].get("media_id") not in self.media:
            return self.err(40007, "invalid media_id")
        if openid in self.unfollowed:
            return self.err(43004, "require subscribe")
        last = self.last_interaction.get(openid)
        if last is None or self.clock() - last > KF_WINDOW:
            return self.err(45015, "response out of time limit or subscription is canceled")
        return self.err(0, "ok")

    def _template_send(self, _q: dict[str, str], body: dict[str, Any] | None) -> dict[str, Any]:
        body = body or {}
        if body.get("template_id") != self.template_id:
            return self.err(40037, "invalid template_id")
        if body.get("touser") in self.unfollowed:
            return self.err(43004, "require subscribe")
        if not isinstance(body.get("data"), dict):
            return self.err(47001, "data format error")
        return {"errcode": 0, "errmsg": "ok", "msgid": next(self._seq)}

    # what members received
    def kf_texts(self, openid: str | None = None) -> list[str]:
        return [c.body["text"]["content"] for c in self.ok_calls(self.CUSTOM_SEND)  # type: ignore[index]
                if c.body["msgtype"] == "text" and (openid is None or c.body["touser"] == openid)]  # type: ignore[index]

    def kf_images(self, openid: str | None = None) -> list[bytes]:
        """The images members received as customer-service messages, in order."""
        return [self.image_of(c.body["image"]["media_id"]) for c in self.ok_calls(self.CUSTOM_SEND)  # type: ignore[index]
                if c.body["msgtype"] == "image" and (openid is None or c.body["touser"] == openid)]  # type: ignore[index]

    def kf_kinds(self, openid: str) -> list[str]:
        """text / image, in the order the member received them."""
        return [c.body["msgtype"] for c in self.ok_calls(self.CUSTOM_SEND) if c.body["touser"] == openid]  # type: ignore[index]

    def templates(self, openid: str | None = None) -> list[dict[str, Any]]:
        return [c.body for c in self.ok_calls(self.TEMPLATE_SEND)  # type: ignore[misc]
                if openid is None or c.body["touser"] == openid]  # type: ignore[index]

    # callbacks, as WeChat sends them (and WeChat opens the 48 h window when a member writes)
    def _envelope(self, fields: dict[str, Any], *, encrypt: bool, bad_signature: bool = False) -> Callback:
        plaintext = xml_message(fields)
        timestamp, nonce = str(int(self.clock().timestamp())), str(secrets.randbelow(10**9))
        signature = sha1_signature(self.token, timestamp, nonce)
        query = {"signature": signature, "timestamp": timestamp, "nonce": nonce, "openid": fields["FromUserName"]}
        if not encrypt:
            if bad_signature:
                query["signature"] = "0" * 40
            return Callback(query, plaintext, False)
        encrypted = self.crypto.encrypt(plaintext)
        msg_signature = sha1_signature(self.token, timestamp, nonce, encrypted)
        if bad_signature:
            msg_signature = sha1_signature("not-the-token", timestamp, nonce, encrypted)
        query |= {"encrypt_type": "aes", "msg_signature": msg_signature}
        body = xml_message({"ToUserName": self.account, "Encrypt": encrypted})
        return Callback(query, body, True)

    def text_callback(self, openid: str, content: str, *, msg_id: int | None = None, encrypt: bool = True,
                      bad_signature: bool = False) -> Callback:
        with self.lock:
            self.last_interaction[openid] = self.clock()
            msg_id = msg_id or next(self._msg_ids)
        return self._envelope({"ToUserName": self.account, "FromUserName": openid,
                               "CreateTime": int(self.clock().timestamp()), "MsgType": "text",
                               "Content": content, "MsgId": msg_id}, encrypt=encrypt, bad_signature=bad_signature)

    def message_callback(self, openid: str, msg_type: str, extra: dict[str, Any], *, encrypt: bool = True) -> Callback:
        with self.lock:
            self.last_interaction[openid] = self.clock()
            msg_id = next(self._msg_ids)
        return self._envelope({"ToUserName": self.account, "FromUserName": openid,
                               "CreateTime": int(self.clock().timestamp()), "MsgType": msg_type, **extra,
                               "MsgId": msg_id}, encrypt=encrypt)

    def event_callback(self, openid: str, event: str, *, event_key: str | None = None,
                       encrypt: bool = True) -> Callback:
        with self.lock:
            if event == "unsubscribe":
                self.unfollowed.add(openid)
            else:
                self.unfollowed.discard(openid)
                if event in ("subscribe", "CLICK", "SCAN"):
                    self.last_interaction[openid] = self.clock()
        fields: dict[str, Any] = {"ToUserName": self.account, "FromUserName": openid,
                                  "CreateTime": int(self.clock().timestamp()), "MsgType": "event", "Event": event}
        if event_key is not None:
            fields["EventKey"] = event_key
        return self._envelope(fields, encrypt=encrypt)

    def url_check(self, echostr: str, *, bad_signature: bool = False) -> dict[str, str]:
        timestamp, nonce = str(int(self.clock().timestamp())), "1234567"
        signature = sha1_signature(self.token, timestamp, nonce)
        return {"signature": "0" * 40 if bad_signature else signature, "timestamp": timestamp,
                "nonce": nonce, "echostr": echostr}

    def read_reply(self, cb: Callback, body: str) -> dict[str, str] | None:
        """The member's view of a passive reply: None for "success"/empty, else its fields."""
        if body in ("", "success"):
            return None
        xml = self.crypto.open_reply(body) if cb.encrypted else body
        fields = xml_fields(xml)
        assert fields["ToUserName"] == cb.query["openid"] and fields["FromUserName"] == self.account
        return fields


# --- WeCom -----------------------------------------------------------------------------------


@dataclass
class WeComUser:
    userid: str
    name: str
    department: list[int]
    main_department: int | None = None
    position: str = ""
    status: int = 1  # 1 active, 2 disabled, 4 not activated, 5 left


@dataclass
class WeComDepartment:
    id: int
    name: str
    parentid: int
    order: int = 0


@dataclass
class SentCard:
    userid: str
    card: dict[str, Any]
    response_code: str
    updates: list[dict[str, Any]] = field(default_factory=list)


class FakeWeComAPI(FakeApi):
    token_path = "/cgi-bin/gettoken"
    SEND = "/cgi-bin/message/send"
    UPDATE_CARD = "/cgi-bin/message/update_template_card"

    def __init__(self, clock: Clock, *, corpid: str, secret: str, agentid: int, token: str, aes_key: str) -> None:
        super().__init__(clock)
        self.corpid, self.secret, self.agentid, self.token = corpid, secret, agentid, token
        self.crypto = PlatformCrypto(token, aes_key, corpid)
        self.departments: dict[int, WeComDepartment] = {}
        self.users: dict[str, WeComUser] = {}
        self.list_id_forbidden = False  # user/list_id answers 48002 (an app without that permission)
        self.cards: dict[str, SentCard] = {}  # task_id -> card
        self._response_codes: dict[str, str] = {}  # response_code -> task_id
        self._msg_ids = itertools.count(1)
        self.routes = {
            ("GET", "/cgi-bin/gettoken"): self._token,
            ("POST", self.SEND): self._send,
            ("POST", self.UPDATE_CARD): self._update_card,
            ("POST", self.MEDIA_UPLOAD): self._media_upload,
            ("GET", "/cgi-bin/department/list"): self._department_list,
            ("POST", "/cgi-bin/user/list_id"): self._user_list_id,
            ("GET", "/cgi-bin/user/get"): self._user_get,
            ("GET", "/cgi-bin/user/list"): self._user_list,
        }

    def add_department(self, id: int, name: str, parentid: int) -> None:
        self.departments[id] = WeComDepartment(id, name, parentid, order=len(self.departments))

    def add_user(self, userid: str, name: str, department: list[int], **kw: Any) -> None:
        self.users[userid] = WeComUser(userid, name, department, **kw)

    def _token(self, query: dict[str, str], _body: Any) -> dict[str, Any]:
        if query.get("corpid") != self.corpid or query.get("corpsecret") != self.secret:
            return self.err(40001, "invalid credential")
        return {"errcode": 0, "errmsg": "ok", **self.issue_token()}

    def _send(self, _q: dict[str, str], body: dict[str, Any] | None) -> dict[str, Any]:
        body = body or {}
        if int(body.get("agentid", -1)) != self.agentid:
            return self.err(40056, "invalid agentid")
        users = [u for u in str(body.get("touser", "")).split("|") if u]
        known = [u for u in users if u in self.users and self.users[u].status == 1]
        invalid = [u for u in users if u not in known]
        if not known:
            return self.err(81013, "user & party & tag all invalid")
        kind = body.get("msgtype")
        result: dict[str, Any] = {"errcode": 0, "errmsg": "ok", "msgid": f"msg{next(self._msg_ids)}",
                                  "invaliduser": "|".join(invalid)}
        if kind == "text":
            if len(body["text"]["content"].encode()) > 2048:
                return self.err(44004, "text content over limit")
        elif kind == "image":
            if not isinstance(body.get("image"), dict) or body["image"].get("media_id") not in self.media:
                return self.err(40007, "invalid media_id")
        elif kind == "template_card":
            card = body["template_card"]
            err = self._check_card(card)
            if err:
                return self.err(40058, err)
            code = f"RC{next(self._msg_ids)}{secrets.token_hex(4)}"
            for u in known:
                self.cards[card["task_id"]] = SentCard(u, card, code)
            self._response_codes[code] = card["task_id"]
            result["response_code"] = code
        else:
            return self.err(40008, "invalid message type")
        return result

    def _check_card(self, card: dict[str, Any]) -> str | None:
        if card.get("card_type") != "button_interaction":
            return "unsupported card_type in this fake"
        task_id = card.get("task_id", "")
        if not task_id or len(task_id) > 128 or not all(c.isalnum() or c in "_-@" for c in task_id):
            return "invalid task_id"
        if task_id in self.cards:
            return "task_id exist"
        buttons = card.get("button_list") or []
        if not 1 <= len(buttons) <= 6 or len({b["key"] for b in buttons}) != len(buttons):
            return "invalid button_list"
        if len(card.get("horizontal_content_list") or []) > 6:
            return "too many horizontal_content_list"
        return None

    def _update_card(self, _q: dict[str, str], body: dict[str, Any] | None) -> dict[str, Any]:
        body = body or {}
        task_id = self._response_codes.pop(body.get("response_code", ""), None)
        if task_id is None:
            return self.err(60140, "response_code invalid or used")
        self.cards[task_id].updates.append(body)
        return self.err(0, "ok")

    def _department_list(self, query: dict[str, str], _body: Any) -> dict[str, Any]:
        root = int(query.get("id") or 0)
        depts = list(self.departments.values())
        if root:
            if root not in self.departments:
                return self.err(60123, "invalid party id")
            keep = {root}
            changed = True
            while changed:
                changed = False
                for d in depts:
                    if d.parentid in keep and d.id not in keep:
                        keep.add(d.id)
                        changed = True
            depts = [d for d in depts if d.id in keep]
        return {"errcode": 0, "errmsg": "ok",
                "department": [{"id": d.id, "name": d.name, "parentid": d.parentid, "order": d.order} for d in depts]}

    def _user_list_id(self, _q: dict[str, str], body: dict[str, Any] | None) -> dict[str, Any]:
        if self.list_id_forbidden:
            return self.err(48002, "api forbidden")
        body = body or {}
        limit = int(body.get("limit") or 10000)
        if not 1 <= limit <= 10000:
            return self.err(40058, "invalid limit")
        rows = [(u.userid, d) for u in self.users.values() for d in u.department]
        start = int(body.get("cursor") or 0)
        page = rows[start:start + limit]
        nxt = start + limit
        return {"errcode": 0, "errmsg": "ok", "next_cursor": str(nxt) if nxt < len(rows) else "",
                "dept_user": [{"userid": u, "department": d} for u, d in page]}

    def _user_dict(self, u: WeComUser) -> dict[str, Any]:
        return {"userid": u.userid, "name": u.name, "department": u.department,
                "main_department": u.main_department or u.department[0], "position": u.position,
                "status": u.status}

    def _user_get(self, query: dict[str, str], _body: Any) -> dict[str, Any]:
        u = self.users.get(query.get("userid", ""))
        if u is None:
            return self.err(60111, "userid not found")
        return {"errcode": 0, "errmsg": "ok", **self._user_dict(u)}

    def _user_list(self, query: dict[str, str], _body: Any) -> dict[str, Any]:
        dept = int(query.get("department_id") or 0)
        if dept not in self.departments:
            return self.err(60123, "invalid party id")
        return {"errcode": 0, "errmsg": "ok",
                "userlist": [self._user_dict(u) for u in self.users.values() if dept in u.department]}

    # what members received
    def texts(self, userid: str | None = None) -> list[str]:
        return [c.body["text"]["content"] for c in self.ok_calls(self.SEND)  # type: ignore[index]
                if c.body["msgtype"] == "text" and (userid is None or c.body["touser"] == userid)]  # type: ignore[index]

    def images(self, userid: str | None = None) -> list[bytes]:
        """The images members received as app messages, in order."""
        return [self.image_of(c.body["image"]["media_id"]) for c in self.ok_calls(self.SEND)  # type: ignore[index]
                if c.body["msgtype"] == "image" and (userid is None or c.body["touser"] == userid)]  # type: ignore[index]

    def kinds(self, userid: str) -> list[str]:
        """text / template_card / image, in the order the member received them."""
        return [c.body["msgtype"] for c in self.ok_calls(self.SEND) if c.body["touser"] == userid]  # type: ignore[index]

    def sent_cards(self, userid: str | None = None) -> list[SentCard]:
        with self.lock:
            return [c for c in self.cards.values() if userid is None or c.userid == userid]

    # callbacks, as WeCom sends them
    def _envelope(self, fields: dict[str, Any], *, bad_signature: bool = False) -> Callback:
        encrypted = self.crypto.encrypt(xml_message(fields))
        timestamp, nonce = str(int(self.clock().timestamp())), str(secrets.randbelow(10**9))
        token = "not-the-token" if bad_signature else self.token
        query = {"msg_signature": sha1_signature(token, timestamp, nonce, encrypted),
                 "timestamp": timestamp, "nonce": nonce}
        body = xml_message({"ToUserName": self.corpid, "AgentID": str(self.agentid), "Encrypt": encrypted})
        return Callback(query, body, True)

    def text_callback(self, userid: str, content: str, *, msg_id: int | None = None,
                      bad_signature: bool = False) -> Callback:
        return self._envelope({"ToUserName": self.corpid, "FromUserName": userid,
                               "CreateTime": int(self.clock().timestamp()), "MsgType": "text",
                               "Content": content, "MsgId": msg_id or next(self._msg_ids) + 7_000_000_000,
                               "AgentID": self.agentid}, bad_signature=bad_signature)

    def click_callback(self, userid: str, task_id: str, key: str) -> Callback:
        """A tap on a button of a card this user received (template_card_event)."""
        with self.lock:
            card = self.cards[task_id]
            assert card.userid == userid, "that card was not sent to this user"
            assert key in {b["key"] for b in card.card["button_list"]}, "no such button"
            code = f"RC{next(self._msg_ids)}{secrets.token_hex(4)}"
            self._response_codes[code] = task_id
        return self._envelope({"ToUserName": self.corpid, "FromUserName": userid,
                               "CreateTime": int(self.clock().timestamp()), "MsgType": "event",
                               "Event": "template_card_event", "EventKey": key, "TaskId": task_id,
                               "CardType": "button_interaction", "ResponseCode": code,
                               "AgentID": self.agentid})

    def event_callback(self, userid: str, event: str, **fields: Any) -> Callback:
        """Any other event (enter_agent, subscribe, or a hand-made template_card_event)."""
        return self._envelope({"ToUserName": self.corpid, "FromUserName": userid,
                               "CreateTime": int(self.clock().timestamp()), "MsgType": "event", "Event": event,
                               **fields, "AgentID": self.agentid})

    def url_check(self, echostr_plain: str, *, bad_signature: bool = False) -> dict[str, str]:
        encrypted = self.crypto.encrypt(echostr_plain)
        timestamp, nonce = str(int(self.clock().timestamp())), "7654321"
        token = "not-the-token" if bad_signature else self.token
        return {"msg_signature": sha1_signature(token, timestamp, nonce, encrypted), "timestamp": timestamp,
                "nonce": nonce, "echostr": encrypted}

    def read_reply(self, body: str) -> dict[str, str] | None:
        if body in ("", "success"):
            return None
        return xml_fields(self.crypto.open_reply(body))
