"""The organisation tree and its members: create, look up, walk subtrees."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.core.errors import UnknownOrganization
from bot.storage.models import Member, Organization

# 行政级别 in ascending order; the index is the ordinal used for rank correlations.
RANK_ORDER: tuple[tuple[str, ...], ...] = (
    ("办事员", "试用期"),
    ("科员", "一级科员", "二级科员", "四级主任科员以下"),
    ("副科", "副科级", "副主任科员", "四级主任科员", "三级主任科员"),
    ("正科", "正科级", "主任科员", "二级主任科员", "一级主任科员"),
    ("副处", "副处级", "副调研员", "四级调研员", "三级调研员"),
    ("正处", "正处级", "调研员", "二级调研员", "一级调研员"),
    ("副局", "副局级", "副厅", "副厅级", "副巡视员", "二级巡视员"),
    ("正局", "正局级", "正厅", "正厅级", "巡视员", "一级巡视员"),
)


def rank_level(rank: str | None) -> int | None:
    if not rank:
        return None
    rank = rank.strip()
    for level, names in enumerate(RANK_ORDER, start=1):
        if rank in names:
            return level
    return None


def kind_from_name(name: str) -> str:
    for suffix, kind in (("党委", "党委"), ("工委", "党委"), ("总支", "党总支"),
                         ("支部", "党支部"), ("小组", "党小组")):
        if name.endswith(suffix):
            return kind
    return "党支部"


async def get_or_create_org(
    session: AsyncSession, name: str, *, parent: Organization | None, kind: str | None = None
) -> Organization:
    parent_id = parent.id if parent else None
    found = (
        await session.exec(
            select(Organization).where(
                Organization.name == name,
                Organization.parent_id == parent_id if parent_id else col(Organization.parent_id).is_(None),
            )
        )
    ).first()
    if found:
        return found
    org = Organization(name=name, kind=kind or kind_from_name(name), parent_id=parent_id)
    session.add(org)
    await session.flush()
    org.path = f"{parent.path if parent else '/'}{org.id}/"
    await session.flush()
    return org


async def ensure_path(session: AsyncSession, names: Sequence[str]) -> Organization:
    """Create (or find) each level of '机关党委/第一党总支/第三支部'; return the last."""
    parent: Organization | None = None
    for name in names:
        parent = await get_or_create_org(session, name.strip(), parent=parent)
    if parent is None:
        raise UnknownOrganization("组织路径为空")
    return parent


async def find_org(session: AsyncSession, name_or_path: str) -> Organization:
    """Find by exact name or by '/'-separated path; ambiguous names must use the path."""
    parts = [p.strip() for p in name_or_path.replace(">", "/").split("/") if p.strip()]
    if not parts:
        raise UnknownOrganization()
    candidates = (await session.exec(select(Organization).where(Organization.name == parts[-1]))).all()
    if len(parts) > 1:
        matches = []
        for org in candidates:
            names = await org_path_names(session, org)
            if names[-len(parts):] == parts:
                matches.append(org)
        candidates = matches
    if not candidates:
        raise UnknownOrganization(f"没有找到组织「{name_or_path}」。")
    if len(candidates) > 1:
        raise UnknownOrganization(f"有多个名为「{parts[-1]}」的组织，请写出上级，如「上级/{parts[-1]}」。")
    return candidates[0]


async def org_path_names(session: AsyncSession, org: Organization) -> list[str]:
    ids = [int(x) for x in org.path.strip("/").split("/") if x]
    rows = (await session.exec(select(Organization).where(col(Organization.id).in_(ids)))).all()
    by_id = {o.id: o.name for o in rows}
    return [by_id[i] for i in ids]


def in_subtree(ancestor: Organization, org_path: str) -> bool:
    return org_path.startswith(ancestor.path)


async def subtree_org_ids(session: AsyncSession, root: Organization) -> list[int]:
    rows = await session.exec(
        select(Organization.id).where(col(Organization.path).startswith(root.path))
    )
    return [i for i in rows.all() if i is not None]


async def subtree_members(
    session: AsyncSession, root: Organization, *, active_only: bool = True,
    cohort_tag: str | None = None, exclude_paths: Sequence[str] = (),
) -> list[Member]:
    """Members of the subtree, minus the subtrees at `exclude_paths` (descendants that run
    their own schedule)."""
    stmt = (
        select(Member)
        .join(Organization, col(Member.org_id) == col(Organization.id))
        .where(col(Organization.path).startswith(root.path))
        .order_by(col(Member.id))
    )
    for path in exclude_paths:
        stmt = stmt.where(~col(Organization.path).startswith(path))
    if active_only:
        stmt = stmt.where(col(Member.active).is_(True))
    members = list((await session.exec(stmt)).all())
    if cohort_tag:
        members = [m for m in members if cohort_tag in (m.tags or [])]
    return members


async def children(session: AsyncSession, org: Organization) -> list[Organization]:
    return list(
        (await session.exec(select(Organization).where(Organization.parent_id == org.id)
                            .order_by(col(Organization.id)))).all()
    )


async def count_members(session: AsyncSession, root: Organization) -> int:
    stmt = (
        select(func.count())
        .select_from(Member)
        .join(Organization, col(Member.org_id) == col(Organization.id))
        .where(col(Organization.path).startswith(root.path), col(Member.active).is_(True))
    )
    return int((await session.exec(stmt)).one())
