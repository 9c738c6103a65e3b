"""Bank sync: an unchanged bank writes nothing; any change is written, gone items retired."""

from __future__ import annotations

import shutil
from pathlib import Path

from sqlalchemy import delete
from sqlmodel import col, select

from bot.app import start_app
from bot.core.bank_sync import FINGERPRINT_KEY, sync_bank
from bot.storage.models import BankItem, ItemStatus, KeyValue
from question_bank import Bank, load_bank
from tests.conftest import TEST_BANK, make_settings


async def items(app) -> dict[str, BankItem]:  # type: ignore[no-untyped-def]
    async with app.db.session() as session:
        return {i.id: i for i in (await session.exec(select(BankItem))).all()}


async def sync(app, bank):  # type: ignore[no-untyped-def]
    async with app.db.session() as session:
        return await sync_bank(session, bank)


def edited_bank(tmp_path: Path, old: str, new: str) -> Path:
    root = tmp_path / "bank"
    shutil.copytree(TEST_BANK, root)
    sample = root / "items" / "sample.yaml"
    text = sample.read_text("utf-8")
    assert old in text
    sample.write_text(text.replace(old, new, 1), "utf-8")
    return root


async def test_unchanged_bank_is_not_rewritten(app):
    before = await items(app)
    assert before and all(i.status != ItemStatus.retired for i in before.values())
    report = await sync(app, app.bank)
    assert report.unchanged and report.items == len(app.bank.items) and report.retired == 0
    after = await items(app)
    assert {i: r.synced_at for i, r in after.items()} == {i: r.synced_at for i, r in before.items()}


async def test_changed_bank_is_written_and_removed_items_retired(app, tmp_path):
    first = next(iter(app.bank.items.values()))
    edited = load_bank(edited_bank(tmp_path, first.stem, first.stem + "（改）"))
    report = await sync(app, edited)
    assert not report.unchanged and report.retired == 0
    assert (await items(app))[first.id].stem == first.stem + "（改）"
    assert (await sync(app, edited)).unchanged

    smaller = load_bank(edited_bank(tmp_path / "2", f"id: {first.id}\n", "id: t-new-001\n"))
    report = await sync(app, smaller)
    assert not report.unchanged and report.retired == 1
    rows = await items(app)
    assert rows[first.id].status == ItemStatus.retired and "t-new-001" in rows
    assert (await sync(app, smaller)).unchanged


async def test_lost_fingerprint_means_a_full_sync(app):
    async with app.db.session() as session:
        await session.exec(delete(KeyValue).where(col(KeyValue.key) == FINGERPRINT_KEY))  # type: ignore[call-overload]
        await session.commit()
    report = await sync(app, app.bank)
    assert not report.unchanged
    assert (await sync(app, app.bank)).unchanged


async def test_bank_built_in_code_is_compared_by_its_rows(app):
    first = next(iter(app.bank.items.values()))
    built = Bank(items=dict(app.bank.items), cases=dict(app.bank.cases), vocabulary=app.bank.vocabulary)
    assert not built.fingerprint
    assert not (await sync(app, built)).unchanged  # another fingerprint than the loaded bank's
    assert (await sync(app, built)).unchanged
    built.items[first.id] = first.model_copy(update={"stem": first.stem + "（改）"})
    assert not (await sync(app, built)).unchanged
    assert (await items(app))[first.id].stem == first.stem + "（改）"


async def test_a_start_with_an_unchanged_bank_does_not_parse_it(app):
    again = await start_app(make_settings(app.settings.database_url), upgrade=False)
    try:
        assert again.sync.unchanged and again.sync.items == len(app.bank.items)
        assert "items" not in vars(again.bank)  # opened, fingerprint compared, never parsed
        assert again.bank.items == app.bank.items  # still there on first use
    finally:
        await again.db.dispose()
