"""Fuzz the typed-text boundary (console; 公众号 and WeCom share the parser): no exception escapes,
every reply is a polite zh-CN sentence, and invalid input writes nothing."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func
from sqlmodel import select

from bot.channels.console import reply
from bot.core.commands import Bind, SubmitAnswer
from bot.core.parsing import parse_choice, parse_text
from bot.storage.models import Answer, AuditLog, CaseDelivery, ChannelIdentity, InviteCode, KeyValue, ReviewCard
from tests.factories import build_org, open_test_round

TABLES = (Answer, AuditLog, CaseDelivery, ChannelIdentity, InviteCode, KeyValue, ReviewCard)
odd_text = st.one_of(
    st.text(max_size=80),
    st.text(alphabet=st.characters(categories=["Cc", "Cf", "Zs", "So", "Mn"]), max_size=40),
    st.builds(lambda s: "/" + s, st.text(max_size=30)),
    st.builds(lambda s: "报告 " + s, st.text(max_size=30)),
    st.text(min_size=501, max_size=5000),
    st.sampled_from(["\x00", "A" * 9, "ABCDEFGHI", "ＡＢ", "对错", "/report ../../etc", "/quiz@other_bot",
                     "\u202e A", "💥", "/start", "绑定", "/me " + "x" * 400]),
)


async def _counts(app) -> tuple[int, ...]:
    async with app.db.session() as s:
        return tuple([(await s.exec(select(func.count()).select_from(t))).one() for t in TABLES])


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=odd_text)
async def test_console_replies_politely_and_writes_nothing_for_invalid_text(sqlite_app, text):
    app = sqlite_app
    if not hasattr(app, "_fuzz_world"):
        tree = await build_org(app, per_branch=2, branches=1)
        await open_test_round(app, tree.root, ["t-single-001", "t-multiple-001"])
        app._fuzz_world = tree  # type: ignore[attr-defined]
    tree = app._fuzz_world  # type: ignore[attr-defined]
    member = tree.members[tree.branches[0].id][0]
    command = parse_text(text)
    before = await _counts(app)
    replies = await reply(app.service, tree.senders[member.id], text)
    assert replies and all(isinstance(r, str) and r.strip() for r in replies)
    assert all(any("\u4e00" <= ch <= "\u9fff" for ch in r) for r in replies)  # Chinese sentences
    if not isinstance(command, SubmitAnswer | Bind):
        assert await _counts(app) == before


@given(st.text(max_size=50))
def test_parse_choice_is_total_and_canonical(text):
    choice = parse_choice(text)
    assert choice is None or (choice == "".join(sorted(set(choice))) and choice.isascii() and choice.isupper())
