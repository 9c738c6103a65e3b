"""Known-answer datasets for report tests, built through the project's own code paths:
organisations by `orgs.ensure_path`, rounds (with their deliveries) by `quiz.open_round`,
members and answers by the bulk inserts of `bot.storage.bulk` (hundreds of rows at once), followed
by the answer tally's recount of those rounds (`bot.reports.tally`, as bulk loaders must)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import col, select, update

from bot.app import App
from bot.core import quiz
from bot.core.orgs import ensure_path
from bot.reports.tally import recount
from bot.storage.bulk import insert_ignore
from bot.storage.models import Answer, BankItem, Member, Organization, Round


async def org(app: App, path: str) -> Organization:
    async with app.db.session() as s:
        o = await ensure_path(s, path.split("/"))
        await s.commit()
        return o


async def members(app: App, where: Organization, n: int, *, key: str,
                  attrs: Callable[[int], dict[str, Any]] | None = None) -> list[int]:
    """n members in `where`, ids in creation order; attrs(i) adds rank_level, tags, …"""
    now = app.service.clock()
    rows = [{"name": f"{key}-{i}", "org_id": where.id, "role": "member", "external_key": f"{key}-{i}",
             "tags": [], "active": True, "created_at": now, **(attrs(i) if attrs else {})} for i in range(n)]
    async with app.db.session() as s:
        await insert_ignore(s, Member, rows)
        await s.commit()
        ids = (await s.exec(select(Member.id).where(col(Member.external_key).startswith(f"{key}-"))
                            .order_by(col(Member.id)))).all()
    return list(ids)


async def open_round(app: App, where: Organization, items: Sequence[str], *, at: datetime | None = None,
                     title: str = "", days: float = 7) -> Round:
    opens = at or app.service.clock()
    async with app.db.session() as s:
        return await quiz.open_round(s, org=where, item_ids=list(items), opens_at=opens,
                                     deadline=opens + timedelta(days=days), title=title)


async def answers(app: App, rnd: Round, rows: Sequence[tuple[int, str, bool]], *, late: bool = False,
                  choice: Callable[[str, bool], str] | None = None) -> None:
    """(member id, item id, correct) rows as stored answers; the choice is the key or a wrong letter."""
    async with app.db.session() as s:
        keys = dict((await s.exec(select(BankItem.id, BankItem.answer))).all())
    when = rnd.deadline + timedelta(hours=1) if late else rnd.opens_at + timedelta(hours=1)

    def pick(item_id: str, correct: bool) -> str:
        if choice:
            return choice(item_id, correct)
        key = keys[item_id]
        return key if correct else ("B" if key != "B" else "A")

    payload = [{"member_id": m, "round_id": rnd.id, "item_id": i, "choice": pick(i, ok), "correct": ok,
                "late": late, "answered_at": when, "channel": "console"} for m, i, ok in rows]
    async with app.db.session() as s:
        await insert_ignore(s, Answer, payload)
        await recount(s, [rnd.id])  # a bulk load recounts the rounds it wrote, like `dev seed`
        await s.commit()


async def retire(app: App, item_id: str) -> None:
    async with app.db.session() as s:
        await s.exec(update(BankItem).where(col(BankItem.id) == item_id).values(status="retired"))  # type: ignore[call-overload]
        await s.commit()
