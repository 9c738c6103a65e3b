"""Mirror the validated YAML bank into the database (items shown and graded come from there)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete
from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.storage.bulk import insert_ignore, upsert
from bot.storage.models import BankItem, CaseStudy, ItemStatus, ItemTopic, utcnow
from question_bank import Bank


@dataclass(frozen=True)
class SyncReport:
    items: int
    cases: int
    retired: int


async def sync_bank(session: AsyncSession, bank: Bank) -> SyncReport:
    now = utcnow()
    item_rows = [
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
    case_rows = [
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
    await upsert(session, CaseStudy, case_rows, keys=["id"])
    await session.commit()
    return SyncReport(items=len(item_rows), cases=len(case_rows), retired=len(gone))
