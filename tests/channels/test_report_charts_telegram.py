"""Telegram: a secretary's report arrives with all its charts — /report through the real
`qingfeng run` runtime, the weekly digest through the project's messenger — against the fake
Bot API over HTTP, on SQLite and PostgreSQL. A chart that cannot be drawn never costs the text."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from bot.app import App
from bot.channels.telegram import TelegramMessenger, build_application
from bot.core.commands import ShowReport
from bot.core.service import Sender
from bot.reports.charts import chat_charts
from bot.storage.models import Round
from tests.channels.report_support import (
    answered_rounds,
    check_chart,
    digest_report,
    failing_charts,
    push_digest,
    queue_digest,
)
from tests.channels.test_telegram_e2e import data_app, running, tg_settings
from tests.factories import OrgTree, build_org
from tests.fakes.telegram_api import FakeTelegram, StoredMessage
from tests.scheduler.support import bind_all

ADMIN, SECRETARY = 8101, 8102
PATIENCE = 120.0  # seconds a wait may take on a loaded machine (a bound, not a speed check)


async def reply(fake: FakeTelegram, chat_id: int, needle: str, *, after: int = 0) -> str:
    """Wait for a text to `chat_id` (index >= after) containing `needle`: reports take a while."""
    def found() -> str | None:
        return next((m.text for m in fake.messages(chat_id)[after:] if m.text and needle in m.text), None)
    return await fake.wait_for(found, timeout=PATIENCE, what=f"a reply containing {needle!r}")


async def photos_of(fake: FakeTelegram, chat_id: int, n: int) -> list[StoredMessage]:
    return await fake.wait_for(lambda: len(fake.photos(chat_id)) >= n and fake.photos(chat_id),
                               timeout=PATIENCE, what=f"{n} photos")


@pytest.fixture
def fake() -> Iterator[FakeTelegram]:
    with FakeTelegram() as f:
        yield f


async def _tree_with_reports(app: App) -> tuple[OrgTree, list[Round]]:
    tree = await build_org(app, per_branch=5, branches=2, bind=False)
    rounds = await answered_rounds(app, tree)
    await bind_all(app, [tree.admin.id, tree.secretaries[0].id], "telegram",
                   external=lambda m: str(ADMIN if m == tree.admin.id else SECRETARY))
    return tree, rounds


async def test_report_sends_the_text_then_every_chart_as_one_album(database_url, fake):
    settings = tg_settings(database_url, fake)
    async with data_app(settings) as app, running(settings):
        await _tree_with_reports(app)
        fake.send_text(ADMIN, "/report 累计")
        text = await reply(fake, ADMIN, "答题统计】")
        assert "机关党委·累计" in text
        # What the same command reports, drawn here: options, topics, weeks, branches.
        (report,) = await app.service.handle(Sender("telegram", str(ADMIN)), ShowReport("累计"))
        expected = chat_charts(report)
        assert [c for c, _ in expected] == ["各题选项分布", "各主题正确率", "分周趋势", "下级组织对比"]

        photos = await photos_of(fake, ADMIN, len(expected))
        assert len(photos) == len(expected)
        assert [p.caption for p in photos] == [c for c, _ in expected]
        for p in photos:
            check_chart(p.photo)  # type: ignore[arg-type]
        assert len({p.media_group_id for p in photos}) == 1 and photos[0].media_group_id  # one album
        assert len(fake.calls("sendMediaGroup", chat_id=ADMIN)) == 1
        messages = fake.messages(ADMIN)
        assert messages.index(photos[0]) > next(i for i, m in enumerate(messages) if m.text == text)  # text first

        # A branch secretary's latest round: one week, no sub-units — fewer charts, same rule.
        fake.send_text(SECRETARY, "/report")
        await reply(fake, SECRETARY, "第一支部·第2周学习答题统计】")
        (own,) = await app.service.handle(Sender("telegram", str(SECRETARY)), ShowReport(""))
        want = [c for c, _ in chat_charts(own)]
        assert want == ["各题选项分布", "各主题正确率"]
        got = await photos_of(fake, SECRETARY, len(want))
        assert [p.caption for p in got] == want


async def test_a_chart_that_fails_to_draw_is_left_out_and_the_text_still_arrives(sqlite_url, fake, monkeypatch,
                                                                                 caplog):
    settings = tg_settings(sqlite_url, fake)
    async with data_app(settings) as app, running(settings):
        await _tree_with_reports(app)
        with failing_charts(monkeypatch, titled="各主题正确率") as failed, caplog.at_level(logging.ERROR):
            fake.send_text(ADMIN, "/report 累计")
            await reply(fake, ADMIN, "答题统计】")
            photos = await photos_of(fake, ADMIN, 3)
        assert [p.caption for p in photos] == ["各题选项分布", "分周趋势", "下级组织对比"]
        assert len(failed) == 1 and "report chart 各主题正确率 failed: RuntimeError" in caplog.text
        assert "机关党委" not in caplog.text  # the log names the chart, not the report's data

        with failing_charts(monkeypatch) as failed:  # nothing can be drawn at all
            n = len(fake.messages(SECRETARY))
            fake.send_text(SECRETARY, "/report")
            await reply(fake, SECRETARY, "答题统计】", after=n)
            await fake.wait_for(lambda: len(failed) == 2, timeout=PATIENCE, what="both charts attempted")
        n = len(fake.messages(SECRETARY))
        fake.send_text(SECRETARY, "/help")  # handled after the report: its chart task has had its turn
        await reply(fake, SECRETARY, "/quiz", after=n)
        assert fake.photos(SECRETARY) == [] and not fake.calls("sendMediaGroup", chat_id=SECRETARY)


async def test_weekly_digest_reaches_the_secretary_with_its_charts(database_url, fake):
    settings = tg_settings(database_url, fake)
    async with data_app(settings) as app:
        tree, rounds = await _tree_with_reports(app)
        secretary = tree.secretaries[0]
        key = await queue_digest(app, rounds[-1], secretary)
        async with TelegramMessenger(build_application(settings).bot, app.db, settings) as messenger:
            stats = await push_digest(app, key, {"telegram": messenger})
        assert (stats.sent, stats.failed) == (1, 0)
        text = next(m.text for m in fake.messages(SECRETARY) if m.text)
        assert "【第一支部·第2周学习答题统计】" in text
        expected = chat_charts((await digest_report(app, rounds[-1], secretary))[0])  # type: ignore[arg-type]
        photos = fake.photos(SECRETARY)
        assert len(expected) >= 2 and [p.caption for p in photos] == [c for c, _ in expected]
        for p in photos:
            check_chart(p.photo)  # type: ignore[arg-type]
