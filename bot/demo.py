"""`qingfeng demo`: a small 机关党委 on a fresh SQLite file, four simulated weekly rounds, a report.

Everything goes through core (rounds opened by the engine, answers submitted through
`Service.handle` as the console channel would), so the demo exercises the real paths.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlmodel import col, select, update

from bot.app import App, start_app
from bot.channels.text import render_summary
from bot.config import Settings
from bot.core import quiz
from bot.core.commands import SubmitAnswer
from bot.core.invites import issue_code, redeem
from bot.core.orgs import ensure_path, rank_level
from bot.core.service import Sender
from bot.reports.export import write_all
from bot.reports.model import FullReport
from bot.reports.period import Period
from bot.reports.report import full_report
from bot.storage.models import Delivery, DeliveryStatus, Member, Organization, Role, utcnow
from question_bank import LETTERS

BRANCHES = ("第一党支部", "第二党支部", "第三党支部")
RANKS = ("科员", "科员", "副科", "正科", "正科", "副处", "正处", "副局")
POSITIONS = ("科员", "主任科员", "副科长", "科长", "副处长", "处长", "副局长")
TAGS = ("新提任", "年轻干部", "关键岗位")
ROUNDS = 4
PER_BRANCH = 20


class SimClock:
    """A clock the demo moves forward; core reads time only through it."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


@dataclass
class DemoResult:
    text: str
    out_dir: Path
    answers: int


def _monday_0900(now: datetime, tz) -> datetime:  # type: ignore[no-untyped-def]
    local = now.astimezone(tz)
    monday = (local - timedelta(days=local.weekday())).replace(hour=9, minute=0, second=0, microsecond=0)
    return monday.astimezone(UTC)


async def _build_org(app: App, rng: random.Random) -> tuple[Organization, list[Member]]:
    async with app.db.session() as session:
        members: list[Member] = []
        root = await ensure_path(session, ["机关党委"])
        root.kind = "党委"
        for b, branch_name in enumerate(BRANCHES):
            branch = await ensure_path(session, ["机关党委", branch_name])
            for i in range(PER_BRANCH):
                rank = rng.choice(RANKS)
                m = Member(
                    name=f"{branch_name[:2]}党员{i + 1:02d}", org_id=branch.id,  # type: ignore[arg-type]
                    role=Role.secretary if i == 0 else Role.member,
                    external_key=f"demo-{b + 1}-{i + 1:02d}", rank=rank, rank_level=rank_level(rank),
                    position=rng.choice(POSITIONS), joined_party_year=rng.randint(1988, 2023),
                    tags=[t for t in TAGS if rng.random() < 0.2],
                )
                session.add(m)
                members.append(m)
        admin = Member(name="机关党委管理员", org_id=root.id, role=Role.admin,  # type: ignore[arg-type]
                       external_key="demo-admin")
        session.add(admin)
        await session.commit()
        # Bind each member's console identity with a real invite code, as a member would.
        for m in [*members, admin]:
            code = await issue_code(session, m, now=utcnow(), ttl_days=30)
            await session.commit()
            await redeem(session, code=code, platform="console", external_id=f"member-{m.id}", now=utcnow())
        return root, members


def _wrong_choice(rng: random.Random, key: str, n_options: int, kind: str) -> str:
    letters = LETTERS[:n_options]
    if kind == "multiple":
        while True:  # a plausible partial or over-complete selection
            k = rng.randint(1, n_options)
            pick = "".join(sorted(rng.sample(letters, k)))
            if pick != key:
                return pick
    return rng.choice([c for c in letters if c != key])


async def run_demo(settings: Settings, *, out_dir: Path, seed: int = 2026,
                   progress: Callable[[int, int], None] | None = None) -> DemoResult:
    rng = random.Random(seed)
    db_path = Path(settings.database_url.split("///", 1)[1])
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    first_round = _monday_0900(datetime.now(UTC), settings.tz) - timedelta(weeks=ROUNDS)
    clock = SimClock(first_round - timedelta(days=1))
    app = await start_app(settings, clock=clock)
    include_drafts = settings.push_drafts or len(app.bank.approved_items()) < settings.round_items * ROUNDS
    root, members = await _build_org(app, rng)
    ability = {m.id: rng.gauss(0, 0.8) + 0.15 * (m.rank_level or 0) for m in members}
    never = {m.id for m in members if rng.random() < 0.08}  # chronic non-responders
    service = app.service.for_channel("console")
    total, done, answers = ROUNDS * len(members), 0, 0
    for week in range(ROUNDS):
        opens = first_round + timedelta(weeks=week)
        clock.now = opens
        async with app.db.session() as session:
            root = await session.get(Organization, root.id)
            items = await quiz.choose_items(session, root, settings.round_items,  # type: ignore[arg-type]
                                            include_drafts=include_drafts, rng=rng)
            rnd = await quiz.open_round(session, org=root, item_ids=items, opens_at=opens,  # type: ignore[arg-type]
                                        deadline=opens + timedelta(days=6, hours=11),
                                        kind="demo", title=f"第{week + 1}周学习")
            await session.exec(update(Delivery).where(col(Delivery.round_id) == rnd.id)  # type: ignore[call-overload]
                               .values(status=DeliveryStatus.sent, sent_at=opens, channel="console"))
            await session.commit()
            bank_items = await quiz.round_items(session, rnd.id)  # type: ignore[arg-type]
        for m in members:
            done += 1
            if progress:
                progress(done, total)
            if m.id in never or rng.random() < 0.1:
                continue
            clock.now = opens + timedelta(hours=rng.uniform(1, 120))
            for item in bank_items:
                p = 1 / (1 + math.exp(-(1.9 - 0.7 * (item.difficulty - 2) + ability[m.id])))
                n = len(item.content["options"])
                choice = item.answer if rng.random() < p else _wrong_choice(rng, item.answer, n, item.type)
                await service.handle(Sender("console", f"member-{m.id}"),
                                     SubmitAnswer(choice=choice, round_id=rnd.id, item_id=item.id))
                answers += 1
    clock.now = first_round + timedelta(weeks=ROUNDS)
    out_dir.mkdir(parents=True, exist_ok=True)
    text, root_report = await _report_text(app, root, first_round, clock.now)
    (out_dir / "report.txt").write_text(text + "\n", encoding="utf-8")
    # The 机关党委 report as a secretary would download it: Excel, Word, HTML and the charts.
    write_all(root_report, out_dir, app.settings.tz)
    await app.db.dispose()
    return DemoResult(text=text, out_dir=out_dir, answers=answers)


async def _report_text(app: App, root: Organization, start: datetime, end: datetime) -> tuple[str, FullReport]:
    period = Period(start, end, f"近{ROUNDS}周")
    parts, reports = [], []
    async with app.db.session() as session:
        orgs = (await session.exec(select(Organization).where(col(Organization.path).startswith(root.path))
                                   .order_by(col(Organization.path)))).all()
        for org in orgs:
            report = await full_report(session, org=org, period=period, min_group=app.settings.report_min_group,
                                       tz=app.settings.tz, topic_names=app.bank.vocabulary.topics, now=end)
            reports.append(report)
            parts.append(render_summary(report))
    return "\n\n".join(parts), reports[0]
