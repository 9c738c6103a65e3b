"""Mirror the validated YAML bank into the database (items shown and graded come from there).

Every start syncs. The fingerprint of the last sync is kept in `KeyValue`: of the bank files and
the code that parses them and writes the rows (or of the rows, for a bank built in code). A
start whose fingerprint matches skips the writes (a thousand items take a few hundred ms).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import delete
from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.storage.bulk import insert_ignore, upsert
from bot.storage.models import BankItem, CaseStudy, ItemStatus, ItemTopic, KeyValue, utcnow
from question_bank import Bank


@dataclass(frozen=True)
class SyncReport:
    items: int
    cases: int
    retired: int
    unchanged: bool = False  # the database already held exactly this bank: nothing written


FINGERPRINT_KEY = "bank:sync_fingerprint"
_THIS = Path(__file__)


def fingerprint(item_rows: list[dict[str, Any]], case_rows: list[dict[str, Any]]) -> str:
    """What a sync writes (timestamps aside), hashed: for a bank not loaded from files."""
    strip = lambda rows: [{k: v for k, v in r.items() if k != "synced_at"} for r in rows]  # noqa: E731
    blob = json.dumps([strip(item_rows), strip(case_rows)], ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _rows(bank: Bank, now: datetime) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    items = [
        {
            "id": item.id,
            "content_hash": item.content_hash(),
            "type": item.type.value,
            "stem": item.stem,
            "answer": item.answer,
            "topics": list(item.topics),
            "difficulty": item.difficulty,
            "status": item.status.value,
            "content": item.model_dump(mode="json"),
            "synced_at": now,
        }
        for item in bank.items.values()
    ]
    cases = [
        {
            "id": case.id,
            "content_hash": case.content_hash(),
            "title": case.title,
            "category": case.category,
            "topics": list(case.topics),
            "status": case.status.value,
            "content": case.model_dump(mode="json"),
            "synced_at": now,
        }
        for case in bank.cases.values()
    ]
    return items, cases


async def sync_bank(session: AsyncSession, bank: Bank) -> SyncReport:
    now = utcnow()
    rows = None
    if bank.fingerprint:  # files and parsing code unchanged: the rows are too (this code included)
        digest = hashlib.sha256(_THIS.read_bytes() + bank.fingerprint.encode()).hexdigest()
    else:
        rows = _rows(bank, now)
        digest = fingerprint(*rows)
    stored = await session.get(KeyValue, FINGERPRINT_KEY)
    if stored is not None and stored.value.get("sha256") == digest:  # bank.items untouched: not parsed
        return SyncReport(items=stored.value.get("items", 0), cases=stored.value.get("cases", 0), retired=0,
                          unchanged=True)
    item_rows, case_rows = rows or _rows(bank, now)
    await upsert(session, BankItem, item_rows, keys=["id"])
    if bank.items:
        await session.exec(delete(ItemTopic).where(col(ItemTopic.item_id).in_(list(bank.items))))  # type: ignore[call-overload]
    await insert_ignore(
        session, ItemTopic,
        [{"item_id": i.id, "topic": t} for i in bank.items.values() for t in dict.fromkeys(i.topics)],
    )
    # Items gone from YAML stay in the database (answers point at them) but are retired.
    gone = (await session.exec(
        select(BankItem.id).where(col(BankItem.id).not_in(list(bank.items) or [""]),
                                  BankItem.status != ItemStatus.retired)
    )).all()
    if gone:
        await session.exec(update(BankItem).where(col(BankItem.id).in_(gone))  # type: ignore[call-overload]
                           .values(status=ItemStatus.retired))
    await upsert(session, CaseStudy, case_rows, keys=["id"])
    stamp = {"sha256": digest, "items": len(item_rows), "cases": len(case_rows)}
    await upsert(session, KeyValue, [{"key": FINGERPRINT_KEY, "value": stamp, "expires_at": None,
                                      "updated_at": now}], keys=["key"])
    await session.commit()
    return SyncReport(items=len(item_rows), cases=len(case_rows), retired=len(gone))
