"""`qingfeng dev seed`: build a large, realistic database fast (Core bulk inserts) for benchmarks.

Shape: one 党委 →党总支 → 党支部 (`branches` in all), members spread over the branches,
`rounds` weekly rounds of 5 items for the whole tree, and about `answers` answers whose
correctness depends on item difficulty and member rank, so reports have something to find.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import insert, select

from bot.reports.fold import fold_finished_rounds
from bot.reports.tally import recount
from bot.storage.db import Database
from bot.storage.models import (
    Answer,
    BankItem,
    Delivery,
    ItemStatus,
    Member,
    Organization,
    Round,
    RoundItem,
)

CHUNK = 5000
RANKS = ["科员", "副科", "正科", "副处", "正处", "副局"]
TAGS = ["新提任", "年轻干部", "关键岗位"]
LATE_SHARE = 0.02  # member-rounds answered after the deadline


@dataclass
class SeedReport:
    orgs: int
    members: int
    rounds: int
    deliveries: int
    answers: int


async def _bulk(db: Database, model: type, rows: list[dict]) -> None:  # type: ignore[type-arg]
    async with db.engine.begin() as conn:
        for start in range(0, len(rows), CHUNK):
            await conn.execute(insert(model.__table__), rows[start:start + CHUNK])  # type: ignore[attr-defined]


async def seed(db: Database, *, members: int, answers: int, branches: int = 300, rounds: int = 50,
               items_per_round: int = 5, seed: int = 7,
               progress: Callable[[str], None] | None = None) -> SeedReport:
    rng = random.Random(seed)
    say = progress or (lambda _msg: None)
    async with db.engine.connect() as conn:
        item_rows = (await conn.execute(
            select(BankItem.id, BankItem.difficulty, BankItem.answer, BankItem.content)  # type: ignore[call-overload]
            .where(BankItem.status == ItemStatus.approved).order_by(BankItem.id))).all()
        if (await conn.execute(select(Organization.id).limit(1))).first():  # type: ignore[call-overload]
            raise RuntimeError("数据库不为空：请对一个新数据库运行 dev seed")
    if len(item_rows) < items_per_round:
        raise RuntimeError("题库中已审核题目不足，请先同步题库")

    # organisation tree with precomputed ids and materialised paths
    totals = max(1, branches // 30)
    org_rows = [{"id": 1, "name": "机关党委", "kind": "党委", "parent_id": None, "path": "/1/",
                 "named_nonresponders": False, "created_at": datetime.now(UTC)}]
    branch_ids: list[int] = []
    next_id = 2
    for t in range(totals):
        tid = next_id
        next_id += 1
        org_rows.append({"id": tid, "name": f"第{t + 1}党总支", "kind": "党总支", "parent_id": 1,
                         "path": f"/1/{tid}/", "named_nonresponders": False, "created_at": datetime.now(UTC)})
        for b in range(branches // totals + (1 if t < branches % totals else 0)):
            bid = next_id
            next_id += 1
            branch_ids.append(bid)
            org_rows.append({"id": bid, "name": f"第{t + 1}总支第{b + 1}支部", "kind": "党支部", "parent_id": tid,
                             "path": f"/1/{tid}/{bid}/", "named_nonresponders": False,
                             "created_at": datetime.now(UTC)})
    await _bulk(db, Organization, org_rows)
    say(f"组织 {len(org_rows)} 个")

    member_rows, ability = [], []
    for i in range(members):
        level = rng.choices(range(1, 7), weights=[30, 25, 20, 12, 9, 4])[0]
        member_rows.append({
            "id": i + 1, "name": f"成员{i + 1:05d}", "org_id": branch_ids[i % len(branch_ids)],
            "role": "secretary" if i < len(branch_ids) else "member", "external_key": f"seed-{i + 1}",
            "rank": RANKS[level - 1], "rank_level": level, "position": None,
            "joined_party_year": rng.randint(1985, 2024), "tags": [t for t in TAGS if rng.random() < 0.15],
            "active": True, "created_at": datetime.now(UTC),
        })
        ability.append(rng.gauss(0, 0.8) + 0.2 * level)
    await _bulk(db, Member, member_rows)
    say(f"成员 {members} 人")

    start = datetime(2025, 1, 6, 1, 0, tzinfo=UTC)  # Mondays, 09:00 Asia/Shanghai
    round_rows, round_item_rows = [], []
    per_round: list[list[tuple]] = []  # type: ignore[type-arg]
    for r in range(rounds):
        opens = start + timedelta(weeks=r)
        round_rows.append({"id": r + 1, "org_id": 1, "kind": "weekly", "title": f"第{r + 1}周", "cohort_tag": None,
                           "opens_at": opens, "deadline": opens + timedelta(days=6, hours=11),
                           "occurrence_key": f"seed:{r + 1}", "created_at": opens})
        chosen = [item_rows[(r * items_per_round + k) % len(item_rows)] for k in range(items_per_round)]
        per_round.append(chosen)
        round_item_rows += [{"round_id": r + 1, "item_id": it[0], "position": k + 1} for k, it in enumerate(chosen)]
    await _bulk(db, Round, round_rows)
    await _bulk(db, RoundItem, round_item_rows)

    # Each member-round answered with probability p so that the total is about `answers`.
    p_respond = min(1.0, answers / max(1, members * rounds * items_per_round))
    written_deliveries = written_answers = 0
    for r, chosen in enumerate(per_round):
        opens = round_rows[r]["opens_at"]
        deliveries, answer_rows = [], []
        for m in range(members):
            deliveries.append({"round_id": r + 1, "member_id": m + 1, "status": "sent", "attempts": 1,
                               "last_error": None, "channel": "telegram", "created_at": opens, "sent_at": opens})
            if rng.random() >= p_respond:
                continue
            # A few answer after the deadline (补答): reports count them apart, and they may come
            # after the round is folded.
            late = rng.random() < LATE_SHARE
            when = (round_rows[r]["deadline"] + timedelta(minutes=rng.randint(10, 2000)) if late
                    else opens + timedelta(minutes=rng.randint(5, 8000)))
            for item_id, difficulty, key, content in chosen:
                logit = 1.6 - 0.8 * (difficulty - 2) + ability[m]
                correct = rng.random() < 1 / (1 + math.exp(-logit))
                n = len(content["options"])
                choice = key if correct else rng.choice([c for c in "ABCDEFGH"[:n] if c not in key] or ["A"])
                answer_rows.append({"member_id": m + 1, "round_id": r + 1, "item_id": item_id, "choice": choice,
                                    "correct": correct, "late": late, "answered_at": when,
                                    "latency_ms": rng.randint(2000, 60000), "channel": "telegram"})
        await _bulk(db, Delivery, deliveries)
        await _bulk(db, Answer, answer_rows)
        written_deliveries += len(deliveries)
        written_answers += len(answer_rows)
        say(f"第 {r + 1}/{rounds} 轮：累计作答 {written_answers}")
    async with db.engine.begin() as conn:  # bulk-loaded answers: rebuild the reports' answer tally
        await recount(conn)
    await fold_finished_rounds(db, datetime.now(UTC))  # as the scheduler's tick would
    if db.dialect == "postgresql":  # explicit ids above: move the sequences past them
        async with db.engine.begin() as conn:
            for table in ("organization", "member", "round"):
                await conn.exec_driver_sql(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT MAX(id) FROM {table}))")
        # After a bulk load, as PostgreSQL's documentation advises: VACUUM sets the visibility
        # map (without it no index-only scan, e.g. the answer tally's covering index, 0008)
        # and ANALYZE the statistics. Autovacuum would get there later, where it is on.
        async with db.engine.connect() as conn:
            vacuum = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await vacuum.exec_driver_sql("VACUUM (ANALYZE)")
    return SeedReport(len(org_rows), members, rounds, written_deliveries, written_answers)
