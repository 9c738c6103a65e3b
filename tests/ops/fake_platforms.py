"""A tiny fake of the three platforms' credential endpoints, for `qingfeng doctor`: real HTTP on
127.0.0.1, an ephemeral port, one server for all three (their paths do not collide).

- Telegram: GET /bot<token>/getMe, /bot<token>/getWebhookInfo (401 for a wrong token)
- WeChat:   GET /cgi-bin/token (40013 wrong appid, 40001 wrong secret, 40164 IP not whitelisted),
            GET /cgi-bin/template/get_all_private_template
- WeCom:    GET /cgi-bin/gettoken (40013 / 40001), GET /cgi-bin/agent/get (40056 wrong agent,
            60020 IP not trusted)
Every request's path is recorded (query strings are kept apart so tests can check secrets).
"""

from __future__ import annotations

import json
import secrets
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

TELEGRAM_TOKEN = "7012345678:AAF-secretTokenValue_0123456789abcdefXY"
WECHAT_APPID = "wx0123456789abcdef"
WECHAT_SECRET = "wechat-app-secret-0123456789abcdef"
WECHAT_TEMPLATE = "tmpl-weekly-quiz-0001"
WECOM_CORPID = "ww0123456789abcdef"
WECOM_SECRET = "wecom-app-secret-0123456789abcdefghij"
WECOM_AGENTID = 1000002


@dataclass
class PlatformState:
    webhook_url: str = ""
    webhook_error: str = ""
    wechat_ip_blocked: bool = False
    wecom_ip_untrusted: bool = False
    requests: list[str] = field(default_factory=list)  # paths, without query strings
    issued: set[str] = field(default_factory=set)  # access tokens handed out


class FakePlatforms:
    def __init__(self) -> None:
        self.state = PlatformState()
        state = self.state

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def _reply(self, body: dict[str, Any], status: int = 200) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                q = {k: v[0] for k, v in parse_qs(url.query).items()}
                state.requests.append(url.path)
                if url.path.startswith("/bot"):
                    token, _, method = url.path[4:].partition("/")
                    return self._telegram(token, method)
                handler = {"/cgi-bin/token": self._wechat_token, "/cgi-bin/gettoken": self._wecom_token,
                           "/cgi-bin/template/get_all_private_template": self._templates,
                           "/cgi-bin/agent/get": self._agent}.get(url.path)
                if handler is None:
                    return self._reply({"errcode": 404, "errmsg": "not found"}, 404)
                return handler(q)

            def _telegram(self, token: str, method: str) -> None:
                if token != TELEGRAM_TOKEN:
                    return self._reply({"ok": False, "error_code": 401, "description": "Unauthorized"}, 401)
                if method == "getMe":
                    return self._reply({"ok": True, "result": {"id": 7012345678, "is_bot": True,
                                                               "first_name": "清风", "username": "qingfeng_test_bot"}})
                if method == "getWebhookInfo":
                    info: dict[str, Any] = {"url": state.webhook_url, "pending_update_count": 0,
                                            "has_custom_certificate": False}
                    if state.webhook_error:
                        info["last_error_message"] = state.webhook_error
                    return self._reply({"ok": True, "result": info})
                return self._reply({"ok": False, "error_code": 404, "description": "Not Found"}, 404)

            def _token(self) -> dict[str, Any]:
                token = secrets.token_hex(16)
                state.issued.add(token)
                return {"access_token": token, "expires_in": 7200}

            def _wechat_token(self, q: dict[str, str]) -> None:
                if state.wechat_ip_blocked:
                    return self._reply({"errcode": 40164, "errmsg": "invalid ip, not in whitelist"})
                if q.get("appid") != WECHAT_APPID:
                    return self._reply({"errcode": 40013, "errmsg": "invalid appid"})
                if q.get("secret") != WECHAT_SECRET or q.get("grant_type") != "client_credential":
                    return self._reply({"errcode": 40001, "errmsg": "invalid credential"})
                return self._reply(self._token())

            def _templates(self, q: dict[str, str]) -> None:
                if q.get("access_token") not in state.issued:
                    return self._reply({"errcode": 40001, "errmsg": "invalid credential"})
                return self._reply({"template_list": [{"template_id": WECHAT_TEMPLATE, "title": "学习提醒"}]})

            def _wecom_token(self, q: dict[str, str]) -> None:
                if q.get("corpid") != WECOM_CORPID:
                    return self._reply({"errcode": 40013, "errmsg": "invalid corpid"})
                if q.get("corpsecret") != WECOM_SECRET:
                    return self._reply({"errcode": 40001, "errmsg": "invalid secret"})
                return self._reply({"errcode": 0, "errmsg": "ok", **self._token()})

            def _agent(self, q: dict[str, str]) -> None:
                if q.get("access_token") not in state.issued:
                    return self._reply({"errcode": 40014, "errmsg": "invalid access_token"})
                if state.wecom_ip_untrusted:
                    return self._reply({"errcode": 60020, "errmsg": "not allow to access from your ip"})
                if q.get("agentid") != str(WECOM_AGENTID):
                    return self._reply({"errcode": 40056, "errmsg": "invalid agentid"})
                return self._reply({"errcode": 0, "errmsg": "ok", "agentid": WECOM_AGENTID, "name": "清风学习"})

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakePlatforms:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
