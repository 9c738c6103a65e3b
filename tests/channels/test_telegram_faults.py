"""Telegram pushes under faults: 200+ members through the project's messenger and core
`send_round` against the fake Bot API injecting 429s, 5xx, timeouts and a blocked user.

"Exactly once" is counted on the fake's side: what reached each chat. SQLite only: the
database is not the subject (core's exactly-once is tested on both databases).
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from sqlmodel import col, func, select

from bot.app import App
from bot.channels.telegram import TelegramMessenger, build_application
from bot.config import Settings, load_settings
from bot.core.invites import issue_code, redeem
from bot.core.push import send_round
from bot.storage.models import ChannelIdentity, Delivery, KeyValue, Member
from tests.conftest import TEST_BANK
from tests.factories import build_org, open_test_round
from tests.fakes.telegram_api import TOKEN, FakeTelegram

ITEMS = ["t-single-001", "t-multiple-001", "t-judge-001"]
PER_MEMBER = 1 + len(ITEMS)  # the intro, then one message per item
USER_BASE = 900_000


def settings_for(app: App, fake: FakeTelegram, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": app.settings.database_url, "bank_path": TEST_BANK, "telegram_token": TOKEN,
        "telegram_base_url": fake.base_url, "telegram_max_rate": 5000, "telegram_retry_backoff": 0.01,
        **overrides}
    return load_settings(**values)


async def bind_all(app: App, members: list[Member]) -> dict[int, int]:
    """Bind every member to a Telegram user id through core's invite redemption."""
    users: dict[int, int] = {}
    now = app.service.clock()
    async with app.db.session() as s:
        for m in members:
            code = await issue_code(s, m, now=now, ttl_days=30)
            await s.commit()
            users[m.id] = USER_BASE + m.id  # type: ignore[index]
            await redeem(s, code=code, platform="telegram", external_id=str(users[m.id]), now=now)  # type: ignore[index]
    return users


async def big_round(app: App, *, per_branch: int = 100) -> tuple[int, dict[int, int]]:
    tree = await build_org(app, per_branch=per_branch, branches=2, bind=False)
    members = [*tree.all_members(), tree.admin]
    users = await bind_all(app, members)
    rnd = await open_test_round(app, tree.root, ITEMS)
    return rnd.id, users  # type: ignore[return-value]


async def push(settings: Settings, app: App, round_id: int):  # type: ignore[no-untyped-def]
    async with TelegramMessenger(build_application(settings).bot, app.db, settings) as messenger:
        return await send_round(app.db, round_id, {"telegram": messenger})


async def delivery_states(app: App, round_id: int) -> Counter[str]:
    async with app.db.session() as s:
        rows = (await s.exec(select(Delivery.status).where(Delivery.round_id == round_id))).all()
    return Counter(rows)


def assert_each_got_it_once(fake: FakeTelegram, users: dict[int, int], *, except_: set[int] = frozenset()) -> None:
    counts = fake.sent_counts()
    expected = {u: PER_MEMBER for u in users.values() if u not in except_}
    assert {u: counts.get(u, 0) for u in expected} == expected
    for u in expected:  # and in order: intro, then the items
        heads = [(m.text or "").splitlines()[0] for m in fake.messages(u)]
        assert heads[1:] == ["【第1/3题·单选题】", "【第2/3题·多选题】", "【第3/3题·判断题】"], heads


async def test_429_with_retry_after_during_a_push_of_200(sqlite_app):
    app = sqlite_app
    with FakeTelegram() as fake:
        round_id, users = await big_round(app)
        assert len(users) == 203
        fake.inject("429", methods={"sendMessage"}, skip=150, times=3, retry_after=1)
        stats = await push(settings_for(app, fake), app, round_id)
        assert (stats.sent, stats.failed, stats.blocked) == (203, 0, 0)
        assert [c.status for c in fake.calls("sendMessage", ok=False)] == [429, 429, 429]
        assert_each_got_it_once(fake, users)
        assert await delivery_states(app, round_id) == {"sent": 203}


async def test_random_5xx_and_timeouts_everyone_exactly_once(sqlite_app):
    app = sqlite_app
    with FakeTelegram(seed=7) as fake:
        round_id, users = await big_round(app)
        fake.inject("5xx", methods={"sendMessage"}, probability=0.10, times=None, status=502)
        fake.inject("5xx", methods={"sendMessage"}, probability=0.02, times=None, status=500)
        fake.inject("timeout", methods={"sendMessage"}, times=3, delay=1.5)
        settings = settings_for(app, fake, telegram_max_retries=8, telegram_request_timeout=0.5)
        stats = await push(settings, app, round_id)
        assert (stats.sent, stats.failed, stats.blocked) == (203, 0, 0)
        # A timed-out call is recorded when the fake's delay ends, which may be after the push.
        await fake.wait_for(lambda: sum(c.status == 504 for c in fake.calls("sendMessage", ok=False)) == 3)
        refused = Counter(c.status for c in fake.calls("sendMessage", ok=False))
        assert refused[502] > 40 and refused[500] > 5 and refused[504] == 3  # the faults did happen
        assert_each_got_it_once(fake, users)


async def test_blocked_member_marked_inactive_others_served(sqlite_app):
    app = sqlite_app
    with FakeTelegram() as fake:
        round_id, users = await big_round(app, per_branch=20)
        blocked_member, blocked_user = next(iter(users.items()))
        fake.block(blocked_user)
        stats = await push(settings_for(app, fake), app, round_id)
        assert (stats.sent, stats.blocked, stats.failed) == (len(users) - 1, 1, 0)
        assert fake.sent_counts().get(blocked_user, 0) == 0
        assert_each_got_it_once(fake, users, except_={blocked_user})
        async with app.db.session() as s:
            identity = (await s.exec(select(ChannelIdentity).where(
                ChannelIdentity.external_id == str(blocked_user)))).one()
            status = (await s.exec(select(Delivery.status).where(
                Delivery.round_id == round_id, Delivery.member_id == blocked_member))).one()
        assert identity.active is False and status == "blocked"
        # The next push skips the inactive identity instead of hitting the 403 again.
        async with app.db.session() as s:
            root = (await s.exec(select(Member).where(Member.id == blocked_member))).one()
        tree_root = await org_of(app, root)
        nxt = await open_test_round(app, tree_root, ["t-single-002"])
        stats = await push(settings_for(app, fake), app, nxt.id)
        assert (stats.sent, stats.blocked, stats.no_channel) == (len(users) - 1, 0, 1)
        assert len(fake.calls("sendMessage", chat_id=blocked_user, ok=None)) == 1


async def test_a_push_stopped_part_way_resumes_without_repeats(sqlite_app):
    """Through core's push both times: the retry claims the failed delivery again (its second
    attempt), so the messenger looks up how far the first one got and sends only the rest."""
    app = sqlite_app
    with FakeTelegram() as fake:
        round_id, users = await big_round(app, per_branch=1)
        member_id, user = next(iter(users.items()))
        settings = settings_for(app, fake, telegram_max_retries=1)
        # The outage starts after the intro and the first item reached this member.
        fault = fake.inject("5xx", methods={"sendMessage"}, chat_id=user, skip=2, times=None)
        async with TelegramMessenger(build_application(settings).bot, app.db, settings) as messenger:
            first = await send_round(app.db, round_id, {"telegram": messenger})
            assert first.failed == 1 and fault.fired == 2  # tried twice, then gave up
            assert fake.sent_counts()[user] == 2
            fake.clear_faults()
            later = datetime.now(UTC) + timedelta(minutes=2)  # past the failed row's retry wait
            second = await send_round(app.db, round_id, {"telegram": messenger}, clock=lambda: later)
        assert (second.sent, second.failed) == (1, 0)
        heads = [(m.text or "").splitlines()[0] for m in fake.messages(user)]
        assert heads[1:] == ["【第1/3题·单选题】", "【第2/3题·多选题】", "【第3/3题·判断题】"]
        async with app.db.session() as s:  # the resume note is gone once the push completed
            left = (await s.exec(select(func.count()).select_from(KeyValue)
                                 .where(col(KeyValue.key).startswith("telegram:push:")))).one()
            delivery = (await s.exec(select(Delivery).where(Delivery.round_id == round_id,
                                                            Delivery.member_id == member_id))).one()
        assert left == 0 and delivery.status == "sent" and delivery.attempts == 2


async def org_of(app: App, member: Member):  # type: ignore[no-untyped-def]
    from bot.storage.models import Organization

    async with app.db.session() as s:
        org = await s.get(Organization, member.org_id)
        return await s.get(Organization, int(org.path.strip("/").split("/")[0]))  # the tree's root
