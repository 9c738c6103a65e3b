"""Telegram building blocks without a server: callback data, keyboards, retry policy,
update-id bookkeeping, settings helpers; and core's all-pending quiz view they rely on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TimedOut

from bot.channels.telegram import callbacks, state
from bot.channels.telegram.component import api_base, webhook_secret
from bot.channels.telegram.render import answered_text, card_text, keyboard, poll_for
from bot.channels.telegram.retry import RetryPolicy, with_retries
from bot.config import load_settings
from bot.core.commands import ShowQuiz
from bot.core.results import AnswerResult, QuizCard
from tests.conftest import TEST_BANK
from tests.factories import build_org, open_test_round

NOW = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)


def card(**kw: object) -> QuizCard:
    values: dict[str, object] = {
        "round_id": 12345, "item_id": "t-multiple-001", "position": 2, "total": 3, "type": "multiple",
        "stem": "以下属于党纪处分种类的有（  ）。", "options": [("A", "警告"), ("B", "记过"), ("C", "留党察看"),
                                                              ("D", "开除党籍")],
        "deadline": NOW + timedelta(days=7), **kw}
    return QuizCard(**values)  # type: ignore[arg-type]


# --- callback data ----------------------------------------------------------------------------


def test_callback_data_round_trips_and_stays_short():
    data = callbacks.encode("a", callbacks.card_ref(card()), "ACD")
    assert data == "a:12345.2:ACD"
    assert callbacks.decode(data) == callbacks.ButtonData("a", 12345, 2, None, "ACD")
    review = card(round_id=None, item_id="x" * 64)
    worst = callbacks.encode("t", callbacks.card_ref(review), "ABCDEFGH")
    assert len(worst.encode()) <= 64
    parsed = callbacks.decode(worst)
    assert parsed is not None and parsed.is_review and parsed.digest == callbacks.item_digest("x" * 64)
    huge = callbacks.encode("a", "9999999999.30", "ABCDEFGH")
    assert len(huge.encode()) <= 64


@pytest.mark.parametrize("data", [
    None, "", "a", "a:1.2", "x:1.2:A", "a:1.2:a", "a:1.2:BA", "a:1.2:AA", "a:1.2:I", "a:1.2:A;drop",
    "a:-1.2:A", "a:1.2.3:A", "a:r123:A", "a:rXYZXYZXYZ:A", "a:12345678901.2:A", "a:1.123:A",
    "a:1.2:ABCDEFGHA",
])
def test_malformed_or_forged_callback_data_is_refused(data):
    assert callbacks.decode(data) is None


def test_toggle():
    assert callbacks.toggle("", "C") == "C"
    assert callbacks.toggle("AC", "B") == "ABC"
    assert callbacks.toggle("ABC", "B") == "AC"


# --- rendering ---------------------------------------------------------------------------------


def test_keyboards_per_type():
    single = keyboard("single", "7.1", [("A", "形式主义"), ("B", "官僚主义")])
    assert [[b.callback_data for b in row] for row in single.inline_keyboard] == [["a:7.1:A"], ["a:7.1:B"]]
    judge = keyboard("judge", "7.3", [("A", "正确"), ("B", "错误")])
    assert [(b.text, b.callback_data) for b in judge.inline_keyboard[0]] == [("✔ 正确", "a:7.3:A"),
                                                                            ("✘ 错误", "a:7.3:B")]
    multi = keyboard("multiple", "7.2", [("A", "警告"), ("B", "记过"), ("C", "留党察看")], "AC")
    assert [(row[0].text, row[0].callback_data) for row in multi.inline_keyboard] == [
        ("☑ A. 警告", "t:7.2:C"), ("☐ B. 记过", "t:7.2:ABC"), ("☑ C. 留党察看", "t:7.2:A"),
        ("提交（已选 AC）", "a:7.2:AC")]
    long = keyboard("single", "7.1", [("A", "很长的选项" * 10), ("B", "短")])
    assert len(long.inline_keyboard[0][0].text) <= 32 and long.inline_keyboard[0][0].text.endswith("…")


def test_answered_text_replaces_the_hint_with_the_outcome():
    shown = card_text(card(), load_settings(bank_path=TEST_BANK).tz)
    assert shown.endswith("请勾选全部正确选项后点「提交」。")
    result = AnswerResult(round_id=12345, item_id="t-multiple-001", choice="AC", correct=False, key="ACD",
                          key_text=["警告", "留党察看", "开除党籍"], explanation="解析文字", source="《条例》",
                          late=False, duplicate=False)
    text = answered_text(shown, result)
    assert text.startswith("【第2/3题·多选题】") and "提交" not in text
    assert "❌ 回答错误。您的答案：AC，正确答案：ACD" in text and "解析：解析文字" in text and "依据：《条例》" in text


def test_quiz_polls_only_when_the_item_fits_telegram_limits():
    spec = poll_for(card(), "ACD", "解析")
    assert spec is not None and spec.correct == [0, 2, 3] and spec.multiple
    assert spec.question.startswith("【第2/3题】")
    assert poll_for(card(options=[("A", "长" * 101), ("B", "短")]), "A", "解析") is None
    assert poll_for(card(stem="题" * 300), "A", "解析") is None
    assert poll_for(card(), "ACD", "长" * 201).explanation is None  # sent without the native note


# --- retry policy (a recorded sleep instead of real waiting) ------------------------------------


class Flaky:
    """Fails with the given errors in turn, then returns "ok"."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


async def test_retry_after_is_honoured_and_transient_errors_back_off():
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    call = Flaky(RetryAfter(3), NetworkError("Bad Gateway"), TimedOut(), NetworkError("Internal Server Error (500)"))
    assert await with_retries(call, RetryPolicy(max_retries=5, backoff=1.0), sleep=sleep) == "ok"
    assert call.calls == 5
    assert sleeps[0] == pytest.approx(3.1)
    assert 0.5 <= sleeps[1] <= 1.5 and 1.0 <= sleeps[2] <= 3.0 and 2.0 <= sleeps[3] <= 6.0  # doubling, jittered


@pytest.mark.parametrize("error", [Forbidden("Forbidden: bot was blocked by the user"),
                                   BadRequest("Bad Request: chat not found")])
async def test_errors_a_retry_cannot_fix_are_not_retried(error):
    call = Flaky(error)
    with pytest.raises(type(error)):
        await with_retries(call, RetryPolicy(max_retries=5, backoff=0), sleep=_no_sleep)
    assert call.calls == 1


async def test_retries_are_bounded():
    call = Flaky(*[NetworkError("Bad Gateway")] * 10)
    with pytest.raises(NetworkError):
        await with_retries(call, RetryPolicy(max_retries=3, backoff=0), sleep=_no_sleep)
    assert call.calls == 4


async def _no_sleep(_seconds: float) -> None:
    return None


# --- update-id bookkeeping ------------------------------------------------------------------------


def test_replays_are_skipped_until_the_mark_goes_stale():
    assert not state.should_skip(10, None, None, NOW)
    assert state.should_skip(10, 10, NOW, NOW) and state.should_skip(9, 10, NOW, NOW)
    assert not state.should_skip(11, 10, NOW, NOW)
    # After a week without updates Telegram restarts ids at random: an old mark must not block them.
    assert not state.should_skip(5, 10, NOW - timedelta(days=8), NOW)


async def test_update_log_writes_behind_and_survives_a_restart(sqlite_app):
    log = state.UpdateLog(sqlite_app.db, 42)
    await log.load()
    for update_id in (100, 101, 102):
        assert not log.seen(update_id)
        log.done(update_id)
    await log.flush()
    again = state.UpdateLog(sqlite_app.db, 42)
    await again.load()
    assert again.seen(102) and again.seen(100) and not again.seen(103)
    other_bot = state.UpdateLog(sqlite_app.db, 43)
    await other_bot.load()
    assert not other_bot.seen(100)


# --- settings helpers -----------------------------------------------------------------------------


def test_base_url_accepts_the_server_root_or_a_bot_suffix():
    s = load_settings(bank_path=TEST_BANK, telegram_token="1:abc", telegram_base_url="http://h:8081/")
    assert api_base(s) == ("http://h:8081/bot", "http://h:8081/file/bot")
    s = load_settings(bank_path=TEST_BANK, telegram_token="1:abc", telegram_base_url="http://h:8081/bot")
    assert api_base(s) == ("http://h:8081/bot", "http://h:8081/file/bot")
    assert api_base(load_settings(bank_path=TEST_BANK, telegram_token="1:abc")) is None


def test_webhook_secret_is_configured_or_derived_from_the_token():
    s = load_settings(bank_path=TEST_BANK, telegram_token="1:abc", telegram_webhook_secret="given_secret-1")
    assert webhook_secret(s) == "given_secret-1"
    derived = webhook_secret(load_settings(bank_path=TEST_BANK, telegram_token="1:abc"))
    assert derived == webhook_secret(load_settings(bank_path=TEST_BANK, telegram_token="1:abc"))
    assert derived != webhook_secret(load_settings(bank_path=TEST_BANK, telegram_token="1:abd"))
    assert len(derived) == 48 and "abc" not in derived


# --- core: the all-pending view the keyboard channel uses -----------------------------------------


async def test_show_quiz_all_pending_lists_every_open_item(app):
    tree = await build_org(app, per_branch=1, branches=1)
    await open_test_round(app, tree.root, ["t-single-001", "t-multiple-001", "t-judge-001"])
    sender = tree.senders[tree.members[tree.branches[0].id][0].id]
    one = await app.service.handle(sender, ShowQuiz())
    every = await app.service.handle(sender, ShowQuiz(all_pending=True))
    assert [c.item_id for c in one] == ["t-single-001"]
    assert [(c.item_id, c.position, c.total) for c in every] == [
        ("t-single-001", 1, 3), ("t-multiple-001", 2, 3), ("t-judge-001", 3, 3)]
