"""The webhook channel against a fake receiving system (a real HTTP server on 127.0.0.1):
signed bodies with idempotency keys, retries on 429/5xx, gone recipients, and the signed
inbound route through which members bind and answer."""

from __future__ import annotations

import json

import httpx
from pydantic import SecretStr

from bot.channels.base import Recipient, SendStatus
from bot.channels.webhook import INBOUND_PATH, WebhookComponent, WebhookMessenger, sign
from bot.core.invites import issue_code
from bot.core.results import Notice
from bot.web import build_web_app
from tests.factories import build_org
from tests.fakes.webhook_server import FakeWebhookServer

SECRET = "k3y-for-tests-only-0123456789"


async def test_signed_keyed_posts_retries_and_gone_recipients(sqlite_app):
    fake = FakeWebhookServer(secret=SECRET)
    with fake.running():
        m = WebhookMessenger(fake.url, tz=sqlite_app.settings.tz, secret=SECRET, retry_backoff=0.01)
        try:
            ok = await m.send_keyed(Recipient(1, 1, "u1"), [Notice("你好")], "k-1")
            again = await m.send_keyed(Recipient(1, 1, "u1"), [Notice("你好")], "k-1")  # a resend after a crash
            fake.script["u2"] = [429, 503]
            retried = await m.send_keyed(Recipient(2, 2, "u2"), [Notice("第二条")], "k-2")
            fake.script["u3"] = [500] * 4
            failed = await m.send_keyed(Recipient(3, 3, "u3"), [Notice("x")], "k-3")
            fake.status_for["u4"] = 410
            gone = await m.send_keyed(Recipient(4, 4, "u4"), [Notice("x")], "k-4")
            fake.status_for["u5"] = 400
            refused = await m.send_keyed(Recipient(5, 5, "u5"), [Notice("x")], "k-5")
            unsigned = WebhookMessenger(fake.url, tz=sqlite_app.settings.tz, retry_backoff=0.01)
            forged = await unsigned.send_keyed(Recipient(6, 6, "u6"), [Notice("x")], "k-6")
            await unsigned.aclose()
        finally:
            await m.aclose()
    assert (ok.status, again.status, retried.status) == (SendStatus.sent,) * 3
    assert (failed.status, failed.error) == (SendStatus.failed, "HTTP 500")
    assert gone.status is SendStatus.blocked and refused.status is SendStatus.failed
    assert forged.status is SendStatus.failed and forged.error == "HTTP 401"
    assert [(p.key, p.recipient, p.texts, p.repeat, p.signature_ok) for p in fake.posts] == [
        ("k-1", "u1", ("你好",), False, True), ("k-1", "u1", ("你好",), True, True),
        ("k-2", "u2", ("第二条",), False, True)]


async def test_inbound_route_binds_and_answers_when_signed(sqlite_app):
    app = sqlite_app
    app.settings = app.settings.model_copy(update={"webhook_push_url": "http://127.0.0.1:9/unused",
                                                   "webhook_secret": SecretStr(SECRET)})
    tree = await build_org(app, per_branch=1, branches=1, bind=False)
    member = tree.members[tree.branches[0].id][0]
    async with app.db.session() as s:
        code = await issue_code(s, member, now=app.service.clock(), ttl_days=30)
        await s.commit()
    component = WebhookComponent(app)
    web = build_web_app(app.db, extra_routes=component.routes)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=web), base_url="http://qf") as client:
            async def say(text: str, *, secret: str = SECRET) -> httpx.Response:
                body = json.dumps({"recipient": "oa-42", "text": text}, ensure_ascii=False).encode()
                return await client.post(INBOUND_PATH, content=body,
                                         headers={"X-Qingfeng-Signature": sign(secret, body)})

            bound = await say(f"绑定 {code}")
            forged = await say("我的", secret="wrong-secret-000000000")
            bad = await client.post(INBOUND_PATH, content=b"{", headers={"X-Qingfeng-Signature": sign(SECRET, b"{")})
    finally:
        await component.stop()
    assert bound.status_code == 200 and "绑定成功" in bound.json()["replies"][0]
    assert "发送「答题」" in bound.json()["replies"][0]  # a text channel: commands as words, no slashes
    assert forged.status_code == 403 and bad.status_code == 400
