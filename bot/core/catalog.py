"""Bounded caches of what every answer reads and nothing on the answer path writes: bank
items (stem, options, key, explanation), which item sits at each position of a round, and the
case catalogue. Entries expire after `ttl` seconds, so a bank sync by another process (the only
writer of items and cases) is seen within that time; a round's items never change once the
round is visible (`open_round` writes them in the same transaction as the round).

Who is speaking is deliberately NOT cached: identities and members are changed by binding,
roster imports, blocked-bot pushes and the WeCom directory, in this process and in others,
so the answer path reads them fresh inside its first statement instead (see quiz.answer_context).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import select

from bot.core.results import CaseCard
from bot.storage.bulk import Executor, as_connection
from bot.storage.models import BankItem, CaseStudy, ItemStatus, RoundItem

K = TypeVar("K")
V = TypeVar("V")
ITEM_TTL = 600.0  # seconds; items change only when a process syncs the bank
CASE_TTL = 600.0


class BoundedCache(Generic[K, V]):
    """Least-recently-used mapping with a size bound and an optional time to live."""

    def __init__(self, maxsize: int, ttl: float | None = None) -> None:
        self.maxsize, self.ttl = maxsize, ttl
        self._data: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def get(self, key: K) -> V | None:
        hit = self._data.get(key)
        if hit is None:
            return None
        at, value = hit
        if self.ttl is not None and time.monotonic() - at > self.ttl:
            del self._data[key]
            return None
        self._data.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._data[key] = (time.monotonic(), value)
        self._data.move_to_end(key)
        while len(self._data) > self.maxsize:
            self._data.popitem(last=False)

    def clear(self) -> None:
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


@dataclass(frozen=True)
class ItemInfo:
    """What members are shown and graded against, as synced from the bank."""

    id: str
    type: str
    stem: str
    answer: str
    topics: tuple[str, ...]
    status: str
    options: tuple[str, ...]
    explanation: str
    source: str

    @classmethod
    def from_row(cls, item_id: str, type_: str, stem: str, answer: str, topics: list[str], status: str,
                  content: dict[str, Any]) -> ItemInfo:
        src = content.get("source") or {}
        return cls(id=item_id, type=type_, stem=stem, answer=answer, topics=tuple(topics or ()), status=status,
                   options=tuple(content.get("options") or ()), explanation=content.get("explanation", ""),
                   source=src.get("document", "") + (src.get("article") or ""))

    @classmethod
    def from_model(cls, item: BankItem) -> ItemInfo:
        return cls.from_row(item.id, item.type, item.stem, item.answer, item.topics, item.status, item.content)


_ITEM_COLUMNS = (BankItem.id, BankItem.type, BankItem.stem, BankItem.answer, BankItem.topics,  # type: ignore[var-annotated]
                 BankItem.status, BankItem.content)


async def _run(conn: Executor, stmt: Any) -> Any:
    return await (await as_connection(conn)).execute(stmt)


class Catalog:
    """One per process (shared by the service's channel views)."""

    def __init__(self, *, max_items: int = 5000, max_rounds: int = 2000, max_cases: int = 2000) -> None:
        self.items: BoundedCache[str, ItemInfo] = BoundedCache(max_items, ITEM_TTL)
        self.rounds: BoundedCache[int, tuple[str, ...]] = BoundedCache(max_rounds)
        self.case_index: BoundedCache[bool, list[tuple[str, tuple[str, ...]]]] = BoundedCache(2, CASE_TTL)
        self.cases: BoundedCache[str, CaseCard] = BoundedCache(max_cases, CASE_TTL)

    async def item(self, conn: Executor, item_id: str) -> ItemInfo | None:
        info = self.items.get(item_id)
        if info is None:
            row = (await _run(conn, select(*_ITEM_COLUMNS).where(BankItem.id == item_id))).first()  # type: ignore[arg-type]
            if row is None:
                return None
            info = ItemInfo.from_row(*row)
            self.items.put(item_id, info)
        return info

    async def items_by_id(self, conn: Executor, item_ids: list[str]) -> dict[str, ItemInfo]:
        found = {i: info for i in item_ids if (info := self.items.get(i)) is not None}
        missing = [i for i in dict.fromkeys(item_ids) if i not in found]
        if missing:
            rows = (await _run(conn, select(*_ITEM_COLUMNS).where(BankItem.id.in_(missing)))).all()  # type: ignore[attr-defined]
            for row in rows:
                info = ItemInfo.from_row(*row)
                self.items.put(info.id, info)
                found[info.id] = info
        return found

    async def round_items(self, conn: Executor, round_id: int) -> tuple[str, ...]:
        """The round's item ids in position order (`open_round` numbers them 1..n); empty if no such round."""
        items = self.rounds.get(round_id)
        if items is None:
            rows = (await _run(conn,
                select(RoundItem.item_id, RoundItem.position).where(RoundItem.round_id == round_id)  # type: ignore[arg-type]
                .order_by(RoundItem.position))).all()
            items = tuple(item_id for item_id, _pos in rows)
            if items:  # an unknown round is not remembered: it may be opened later
                self.rounds.put(round_id, items)
        return items

    async def case_candidates(self, conn: Executor, *,
                              include_drafts: bool) -> list[tuple[str, tuple[str, ...]]]:
        """(case id, topics) of every approved (and, if asked, draft) case, by id."""
        index = self.case_index.get(include_drafts)
        if index is None:
            statuses = [ItemStatus.approved] + ([ItemStatus.draft] if include_drafts else [])
            rows = (await _run(conn,
                select(CaseStudy.id, CaseStudy.topics).where(CaseStudy.status.in_(statuses))  # type: ignore[attr-defined]
                .order_by(CaseStudy.id))).all()
            index = [(case_id, tuple(topics or ())) for case_id, topics in rows]
            self.case_index.put(include_drafts, index)
        return index

    async def case(self, conn: Executor, case_id: str) -> CaseCard | None:
        card = self.cases.get(case_id)
        if card is None:
            row = (await _run(conn,
                select(CaseStudy.id, CaseStudy.title, CaseStudy.category, CaseStudy.content)  # type: ignore[call-overload]
                .where(CaseStudy.id == case_id))).first()
            if row is None:
                return None
            card = case_card_from(row[0], row[1], row[2], row[3])
            self.cases.put(case_id, card)
        return card

    def clear(self) -> None:
        for cache in (self.items, self.rounds, self.case_index, self.cases):
            cache.clear()


def case_card_from(case_id: str, title: str, category: str, c: dict[str, Any]) -> CaseCard:
    return CaseCard(case_id=case_id, title=title, category=category, what_happened=c["what_happened"],
                    rule_broken=c["rule_broken"], consequence=c["consequence"], lesson=c["lesson"],
                    composite=c["composite"], source=c["source"])
