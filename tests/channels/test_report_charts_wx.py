"""公众号 and WeCom: a secretary's report arrives with its charts, through the real wechatpy
clients against the fake platform APIs over HTTP, on SQLite and PostgreSQL.

- 「报告」: the passive reply carries the text at once; the charts follow as uploaded images.
- The weekly digest: text then images; on 公众号 only inside the 48-hour window — outside it
  the template message goes alone (it cannot carry images) and the skipped images are counted.
- A chart that cannot be drawn never costs the text.
"""

from __future__ import annotations

import logging

import pytest

from bot.config import ConfigError, load_settings
from bot.core.commands import ShowReport
from bot.core.service import Sender
from bot.metrics import REGISTRY
from bot.reports.charts import chat_charts
from tests.channels.report_support import (
    answered_rounds,
    check_chart,
    digest_report,
    failing_charts,
    push_digest,
    queue_digest,
)
from tests.channels.wx_support import wait_until, wechat_harness, wecom_harness
from tests.factories import build_org

CUSTOM = "/cgi-bin/message/custom/send"
UPLOAD = "/cgi-bin/media/upload"
PATIENCE = 12_000  # wait_until rounds of 10 ms: drawing charts on a loaded machine takes a while
# A report is computed well inside WeChat's 5 s on a production machine; a test machine shared by
# many jobs can take far longer. Where the passive reply is the subject, the processing budget and
# the HTTP client's patience are raised so the test checks the path, not the machine's speed.
SLOW = {"budget": 120.0, "http_timeout": 180.0}


def skipped_images(platform: str) -> float:
    return REGISTRY.get_sample_value("qingfeng_report_images_total",
                                     {"platform": platform, "outcome": "not_allowed"}) or 0.0


# --- 公众号 ------------------------------------------------------------------------------------


async def test_wechat_report_reply_is_text_at_once_then_every_chart(database_url, clock):
    async with wechat_harness(database_url, clock, **SLOW) as wx:
        tree = await build_org(wx.app, per_branch=5, branches=2, platform="wechat")
        await answered_rounds(wx.app, tree)
        admin = tree.senders[tree.admin.id].external_id

        text = await wx.say(admin, "报告 累计")
        assert text is not None and "【机关党委·累计答题统计】" in text
        (report,) = await wx.app.service.handle(Sender("wechat", admin), ShowReport("累计"))
        expected = chat_charts(report)
        assert len(expected) == 4
        await wait_until(lambda: len(wx.fake.kf_images(admin)) >= len(expected), rounds=PATIENCE)
        await wx.component.inbound.flow.drain()
        images = wx.fake.kf_images(admin)
        assert len(images) == len(expected)
        for png in images:
            check_chart(png)
        assert [u.body["files"]["media"].filename for u in wx.fake.ok_calls(UPLOAD)] == [
            f"chart{k}.png" for k in range(1, len(expected) + 1)]
        kinds = wx.fake.kf_kinds(admin)  # the text was the passive reply (a long one continues in texts)
        assert kinds[-len(expected):] == ["image"] * len(expected) and kinds.count("image") == len(expected)

        # A retry of the same callback (WeChat's, after 5 s) gets the text again, not the charts.
        calls = len(wx.fake.calls_to(CUSTOM))
        cb = wx.fake.text_callback(admin, "报告 累计", msg_id=99_000_001)
        first = await wx.post(cb)
        await wait_until(lambda: len(wx.fake.calls_to(CUSTOM)) >= calls + len(expected), rounds=PATIENCE)
        again = await wx.post(cb)
        await wx.component.inbound.flow.drain()
        assert wx.fake.read_reply(cb, again.text)["Content"] == wx.fake.read_reply(cb, first.text)["Content"]
        assert len(wx.fake.calls_to(CUSTOM)) == calls + len(expected)


async def test_wechat_digest_inside_the_window_has_images_outside_a_template_only(database_url, clock, caplog):
    async with wechat_harness(database_url, clock, **SLOW) as wx:
        tree = await build_org(wx.app, per_branch=5, branches=2, platform="wechat")
        rounds = await answered_rounds(wx.app, tree)
        first, second = tree.secretaries
        near, far = (tree.senders[s.id].external_id for s in (first, second))
        await wx.say(near, "帮助")  # wrote an hour before the digest: the window is open
        clock.advance(hours=1)

        skipped = skipped_images("wechat")
        keys = [await queue_digest(wx.app, rounds[-1], s) for s in (first, second)]
        assert keys[0] == keys[1]
        with caplog.at_level(logging.INFO, logger="bot.channels"):
            stats = await push_digest(wx.app, keys[0], {"wechat": wx.component.messenger})
        assert (stats.sent, stats.failed) == (2, 0)

        expected = chat_charts((await digest_report(wx.app, rounds[-1], first))[0])  # type: ignore[arg-type]
        assert len(expected) >= 2
        assert wx.fake.kf_kinds(near)[-1 - len(expected):] == ["text"] + ["image"] * len(expected)
        assert "【第一支部·第2周学习答题统计】" in wx.fake.kf_texts(near)[-1]
        for png in wx.fake.kf_images(near):
            check_chart(png)
        assert len(wx.fake.kf_images(near)) == len(expected)

        # Outside the window: the template alone, pointing to 报告; nothing uploaded for it.
        assert wx.fake.kf_kinds(far) == [] and wx.fake.templates(near) == []
        (template,) = wx.fake.templates(far)
        data = template["data"]
        assert data["keyword1"]["value"] == "第二支部·第2周学习" and "报告" in data["remark"]["value"]
        assert len(wx.fake.ok_calls(UPLOAD)) == len(expected)
        assert skipped_images("wechat") == skipped + 1
        assert "report charts not sent: outside the 48 h window" in caplog.text
        assert far not in caplog.text and "第二支部" not in caplog.text  # no personal or report data

        # Replying 报告 from the template opens the window: text and charts arrive.
        assert "【第二支部" in (await wx.say(far, "报告") or "")
        await wait_until(lambda: len(wx.fake.kf_images(far)) >= len(expected), rounds=PATIENCE)


async def test_wechat_chart_failure_still_delivers_the_text(sqlite_url, clock, monkeypatch):
    async with wechat_harness(sqlite_url, clock, **SLOW) as wx:
        tree = await build_org(wx.app, per_branch=5, branches=1, platform="wechat")
        rounds = await answered_rounds(wx.app, tree, weeks=1)
        secretary = tree.secretaries[0]
        openid = tree.senders[secretary.id].external_id
        with failing_charts(monkeypatch) as failed:
            text = await wx.say(openid, "报告")
            assert text is not None and "答题统计】" in text
            await wait_until(lambda: len(failed) >= 2, rounds=PATIENCE)
            await wx.component.inbound.flow.drain()
            stats = await push_digest(wx.app, await queue_digest(wx.app, rounds[-1], secretary),
                                      {"wechat": wx.component.messenger})
        assert stats.sent == 1
        assert "答题统计】" in wx.fake.kf_texts(openid)[-1]
        assert wx.fake.kf_images(openid) == [] and wx.fake.ok_calls(UPLOAD) == []


async def test_wechat_report_too_slow_for_the_passive_reply_goes_as_text_then_images(sqlite_url, clock):
    async with wechat_harness(sqlite_url, clock, budget=0, http_timeout=180.0) as wx:
        tree = await build_org(wx.app, per_branch=5, branches=1, platform="wechat")
        await answered_rounds(wx.app, tree, weeks=1)
        openid = tree.senders[tree.secretaries[0].id].external_id
        assert await wx.say(openid, "报告") is None  # "success" now, everything as messages
        await wait_until(lambda: wx.fake.kf_images(openid), rounds=PATIENCE)
        await wx.component.inbound.flow.drain()
        kinds = wx.fake.kf_kinds(openid)
        assert kinds[0] == "text" and "答题统计】" in wx.fake.kf_texts(openid)[0]
        assert kinds[-2:] == ["image", "image"] and kinds.count("image") == 2  # options and topics


async def test_wechat_template_fields_follow_the_configured_mapping(sqlite_url, clock):
    fields = "title=thing1,deadline=time2,count=thing3"
    async with wechat_harness(sqlite_url, clock, wechat_template_fields=fields) as wx:
        tree = await build_org(wx.app, per_branch=5, branches=1, platform="wechat")
        rounds = await answered_rounds(wx.app, tree, weeks=1)
        secretary = tree.secretaries[0]
        await push_digest(wx.app, await queue_digest(wx.app, rounds[-1], secretary),
                          {"wechat": wx.component.messenger})
        (template,) = wx.fake.templates(tree.senders[secretary.id].external_id)
        assert set(template["data"]) == {"thing1", "time2", "thing3"}
        assert template["data"]["thing1"]["value"] == "第一支部·第1周学习"
        assert all(len(v["value"]) <= 20 for v in template["data"].values())


@pytest.mark.parametrize(("value", "why"), [
    ("title=keyword1,topic=keyword2", "未知字段 topic"),
    ("title=keyword 1", "格式应为"),
    ('{"title": "keyword1"', "不是合法的 JSON"),
    ("title=keyword1,count=keyword1", "同一个模板字段"),
])
def test_a_bad_template_mapping_stops_start_up_naming_the_key(monkeypatch, value, why):
    monkeypatch.setenv("QINGFENG_WECHAT_TEMPLATE_FIELDS", value)
    with pytest.raises(ConfigError, match="QINGFENG_WECHAT_TEMPLATE_FIELDS") as err:
        load_settings()
    assert why in str(err.value)


def test_template_mapping_defaults_to_the_classic_layout(monkeypatch):
    monkeypatch.delenv("QINGFENG_WECHAT_TEMPLATE_FIELDS", raising=False)
    assert load_settings().wechat_template_fields == {
        "heading": "first", "title": "keyword1", "deadline": "keyword2", "count": "keyword3", "remark": "remark"}
    monkeypatch.setenv("QINGFENG_WECHAT_TEMPLATE_FIELDS", '{"title": "thing1", "deadline": "time2"}')
    assert load_settings().wechat_template_fields == {"title": "thing1", "deadline": "time2"}


# --- WeCom -----------------------------------------------------------------------------------


async def test_wecom_report_reply_and_digest_carry_every_chart(database_url, clock):
    async with wecom_harness(database_url, clock, **SLOW) as wc:
        tree = await build_org(wc.app, per_branch=5, branches=2, platform="wecom")
        for sender in tree.senders.values():
            wc.fake.add_user(sender.external_id, "成员", [1])
        rounds = await answered_rounds(wc.app, tree)
        secretary = tree.secretaries[0]
        userid = tree.senders[secretary.id].external_id

        text = await wc.say(userid, "报告")  # waits for the follow-ups too
        assert text is not None and "【第一支部·第2周学习答题统计】" in text
        (report,) = await wc.app.service.handle(Sender("wecom", userid), ShowReport(""))
        expected = chat_charts(report)
        assert len(expected) >= 2
        await wait_until(lambda: len(wc.fake.images(userid)) >= len(expected), rounds=PATIENCE)
        kinds = wc.fake.kinds(userid)  # the text was the passive reply (a long one continues in texts)
        assert kinds[-len(expected):] == ["image"] * len(expected) and kinds.count("image") == len(expected)
        for png in wc.fake.images(userid):
            check_chart(png)

        before = len(kinds)
        stats = await push_digest(wc.app, await queue_digest(wc.app, rounds[-1], secretary),
                                  {"wecom": wc.component.messenger})
        assert (stats.sent, stats.failed) == (1, 0)
        assert wc.fake.kinds(userid)[before:] == ["text"] + ["image"] * len(expected)
        assert "【第一支部·第2周学习答题统计】" in wc.fake.texts(userid)[-1]
        assert len(wc.fake.images(userid)) == 2 * len(expected)
        for png in wc.fake.images(userid):
            check_chart(png)
