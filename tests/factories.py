"""Builders of realistic test data through the project's own code paths."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from bot.app import App
from bot.core import quiz
from bot.core.invites import issue_code, redeem
from bot.core.orgs import ensure_path, rank_level
from bot.core.service import Sender
from bot.storage.models import Member, Organization, Role, Round


@dataclass
class OrgTree:
    root: Organization
    branches: list[Organization]
    secretaries: list[Member]  # one per branch
    members: dict[int, list[Member]]  # branch id -> plain members
    admin: Member
    senders: dict[int, Sender] = field(default_factory=dict)  # member id -> bound sender

    def all_members(self) -> list[Member]:
        return [*self.secretaries, *(m for ms in self.members.values() for m in ms)]


async def build_org(app: App, *, per_branch: int = 6, branches: int = 2, platform: str = "console",
                    bind: bool = True) -> OrgTree:
    """机关党委 with `branches` 支部, each a secretary and `per_branch` members, plus an admin."""
    ranks = ["科员", "副科", "正科", "副处", "正处", "副局"]
    async with app.db.session() as session:
        root = await ensure_path(session, ["机关党委"])
        tree_branches, secretaries, members = [], [], {}
        for b in range(branches):
            branch = await ensure_path(session, ["机关党委", f"第{'一二三四五六七八九十'[b]}支部"])
            tree_branches.append(branch)
            sec = Member(name=f"书记{b + 1}", org_id=branch.id, role=Role.secretary)  # type: ignore[arg-type]
            session.add(sec)
            secretaries.append(sec)
            members[branch.id] = []
            for i in range(per_branch):
                rank = ranks[i % len(ranks)]
                m = Member(name=f"党员{b + 1}-{i + 1}", org_id=branch.id, rank=rank,  # type: ignore[arg-type]
                           rank_level=rank_level(rank), joined_party_year=1990 + 3 * i,
                           tags=["年轻干部"] if i % 3 == 0 else [])
                session.add(m)
                members[branch.id].append(m)
        admin = Member(name="管理员", org_id=root.id, role=Role.admin)  # type: ignore[arg-type]
        session.add(admin)
        await session.commit()
        tree = OrgTree(root, tree_branches, secretaries, members, admin)
        if bind:
            now = app.service.clock()
            for m in [*tree.all_members(), admin]:
                code = await issue_code(session, m, now=now, ttl_days=30)
                await session.commit()
                ext = f"{platform}-{m.id}"
                await redeem(session, code=code, platform=platform, external_id=ext, now=now)
                tree.senders[m.id] = Sender(platform, ext)  # type: ignore[index]
    return tree


async def open_test_round(app: App, org: Organization, item_ids: list[str], *, days: int = 7,
                          occurrence_key: str | None = None) -> Round:
    now = app.service.clock()
    async with app.db.session() as session:
        return await quiz.open_round(session, org=org, item_ids=item_ids, opens_at=now,
                                     deadline=now + timedelta(days=days), occurrence_key=occurrence_key)
