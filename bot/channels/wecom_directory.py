"""`qingfeng org import --from-wecom`: the WeCom directory as the roster source.

Departments become the organisation tree (names along the parent chain, from the chosen
root department down); users become members (`external_key` = WeCom userid) with their WeCom
identity bound at once — the userid *is* the identity, no invite code needed.

Reading: `department/list`, then `user/list_id` page by page (cursor) and `user/get` for each
user; an app without `user/list_id` permission (48002) falls back to `user/list` per
department. Everything is read first; the database is written in one transaction only if
reading succeeded, so a failed import changes nothing. Disabled (2) and departed (5) users
are made inactive, never deleted. Members that vanished from the directory are only counted.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.channels.wx_api import ApiCaller, ApiError
from bot.channels.wx_text import clip
from bot.core.orgs import ensure_path
from bot.storage.models import AuditLog, ChannelIdentity, Member

log = logging.getLogger(__name__)

PLATFORM = "wecom"
NO_LIST_ID = 48002  # the app may not call user/list_id
USER_UNREADABLE = frozenset({60111, 60011})  # gone since listing / outside the app's visible range
INACTIVE_STATUS = frozenset({2, 5})  # disabled, departed


class DirectoryError(Exception):
    """Reading the directory failed; the message is for the operator (zh-CN)."""


@dataclass(frozen=True)
class Department:
    id: int
    name: str
    parentid: int


@dataclass(frozen=True)
class DirectoryUser:
    userid: str
    name: str
    departments: tuple[int, ...]
    main_department: int | None
    position: str
    status: int


@dataclass
class DirectoryReport:
    departments: int = 0
    created: int = 0
    updated: int = 0
    deactivated: int = 0
    identities_bound: int = 0
    unreadable: int = 0  # listed but not readable (deleted meanwhile, outside the visible range)
    outside_root: int = 0  # users with no department under the chosen root
    not_in_directory: int = 0  # members bound to WeCom whom the directory no longer lists
    pages: int = 0  # user/list_id pages read
    notes: list[str] = field(default_factory=list)


def _wrap(exc: ApiError, what: str) -> DirectoryError:
    hint = {48002: "（应用无此接口权限）", 60011: "（不在应用可见范围内）", 40001: "（Secret 错误）",
            60020: "（请在企业微信后台配置可信 IP）"}.get(exc.errcode or 0, "")
    return DirectoryError(f"读取企业微信通讯录失败：{what}，错误码 {exc.errcode}{hint}")


class WeComDirectory:
    """Reads departments and users through wechatpy's WeCom client."""

    def __init__(self, api: ApiCaller, *, page_size: int = 1000, concurrency: int = 8) -> None:
        self.api = api
        self.page_size = page_size
        self._gate = asyncio.Semaphore(concurrency)

    async def departments(self, root: int | None) -> dict[int, Department]:
        try:
            rows = await self.api.call(lambda c: c.department.get(root))
        except ApiError as exc:
            raise _wrap(exc, "部门列表") from None
        return {int(d["id"]): Department(int(d["id"]), str(d["name"]), int(d.get("parentid") or 0)) for d in rows}

    async def user_ids(self, report: DirectoryReport) -> dict[str, list[int]] | None:
        """userid → departments via user/list_id pages; None if the app may not use it."""
        found: dict[str, list[int]] = {}
        cursor, seen = "", set()
        while True:
            data: dict[str, Any] = {"limit": self.page_size}
            if cursor:
                data["cursor"] = cursor
            try:
                page = await self.api.call(lambda c, d=data: c.post("user/list_id", data=d))
            except ApiError as exc:
                if exc.errcode == NO_LIST_ID and not found:
                    return None
                raise _wrap(exc, "成员 ID 列表") from None
            report.pages += 1
            for row in page.get("dept_user") or []:
                found.setdefault(str(row["userid"]), []).append(int(row["department"]))
            cursor = str(page.get("next_cursor") or "")
            if not cursor:
                return found
            if cursor in seen:
                raise DirectoryError("读取企业微信通讯录失败：分页游标重复，已停止以免死循环")
            seen.add(cursor)

    async def user(self, userid: str, report: DirectoryReport) -> DirectoryUser | None:
        async with self._gate:
            try:
                u = await self.api.call(lambda c: c.user.get(userid))
            except ApiError as exc:
                if exc.errcode in USER_UNREADABLE:
                    report.unreadable += 1
                    return None
                raise _wrap(exc, "成员详情") from None
        return _user(u)

    async def users_by_department(self, depts: list[int], report: DirectoryReport) -> list[DirectoryUser]:
        async def one(dept: int) -> list[dict[str, Any]]:
            async with self._gate:
                try:
                    return await self.api.call(lambda c: c.user.list(dept, fetch_child=False))  # type: ignore[no-any-return]
                except ApiError as exc:
                    raise _wrap(exc, f"部门 {dept} 的成员") from None

        merged: dict[str, DirectoryUser] = {}
        for rows in await asyncio.gather(*(one(d) for d in depts)):
            for row in rows:
                merged.setdefault(str(row["userid"]), _user(row))
        return list(merged.values())

    async def read(self, root: int | None) -> tuple[dict[int, Department], list[DirectoryUser], DirectoryReport]:
        report = DirectoryReport()
        depts = await self.departments(root)
        if not depts:
            raise DirectoryError("企业微信通讯录中没有可见的部门（请检查应用的可见范围）。")
        ids = await self.user_ids(report)
        if ids is None:
            report.notes.append("应用无「获取成员ID列表」权限，已改为按部门读取成员。")
            users = await self.users_by_department(sorted(depts), report)
        else:
            wanted = [u for u, ds in ids.items() if any(d in depts for d in ds)]
            report.outside_root = len(ids) - len(wanted)
            got = await asyncio.gather(*(self.user(u, report) for u in wanted))
            users = [u for u in got if u is not None]
        return depts, users, report


def _user(row: dict[str, Any]) -> DirectoryUser:
    departments = tuple(int(d) for d in row.get("department") or [])
    main = row.get("main_department")
    return DirectoryUser(userid=str(row["userid"]), name=str(row.get("name") or row["userid"]),
                         departments=departments, main_department=int(main) if main else None,
                         position=str(row.get("position") or ""), status=int(row.get("status") or 1))


def department_path(dept_id: int, depts: dict[int, Department]) -> list[str]:
    """Names from the topmost imported department down to this one."""
    names: list[str] = []
    seen: set[int] = set()
    current: int | None = dept_id
    while current in depts and current not in seen:
        seen.add(current)
        names.append(depts[current].name)
        current = depts[current].parentid
    return list(reversed(names))


def home_department(user: DirectoryUser, depts: dict[int, Department]) -> int | None:
    if user.main_department in depts:
        return user.main_department
    return next((d for d in user.departments if d in depts), None)


async def write_directory(session: AsyncSession, depts: dict[int, Department], users: list[DirectoryUser],
                          report: DirectoryReport, *, now: datetime, actor: str = "cli") -> DirectoryReport:
    orgs = {d: await ensure_path(session, department_path(d, depts)) for d in depts}
    report.departments = len(orgs)
    listed: set[str] = set()
    for user in users:
        home = home_department(user, depts)
        if home is None:
            report.outside_root += 1
            continue
        listed.add(user.userid)
        active = user.status not in INACTIVE_STATUS
        identity = (await session.exec(select(ChannelIdentity).where(
            ChannelIdentity.platform == PLATFORM, ChannelIdentity.external_id == user.userid))).first()
        member = (await session.exec(select(Member).where(Member.external_key == user.userid))).first()
        if member is None and identity is not None:
            member = await session.get(Member, identity.member_id)
        if member is None:
            if not active:
                continue  # never create someone who has already left
            member = Member(name=clip(user.name, 50), org_id=orgs[home].id, external_key=user.userid,  # type: ignore[arg-type]
                            position=clip(user.position, 50) or None)
            session.add(member)
            await session.flush()
            report.created += 1
        else:
            if member.active and not active:
                report.deactivated += 1
            elif active:
                report.updated += 1
            member.name = clip(user.name, 50)
            member.org_id = orgs[home].id  # type: ignore[assignment]
            member.position = clip(user.position, 50) or member.position
            member.external_key = member.external_key or user.userid
            member.active = active
            session.add(member)
        if identity is None:
            identity = ChannelIdentity(member_id=member.id, platform=PLATFORM, external_id=user.userid,  # type: ignore[arg-type]
                                       bound_at=now, active=active)
            report.identities_bound += int(active)
        else:
            identity.member_id = member.id  # type: ignore[assignment]
            identity.active = active
        session.add(identity)
    bound = (await session.exec(select(ChannelIdentity.external_id).where(
        ChannelIdentity.platform == PLATFORM, col(ChannelIdentity.active).is_(True)))).all()
    report.not_in_directory = len(set(bound) - listed)
    session.add(AuditLog(at=now, actor=actor, action="org_import_wecom", detail={
        "departments": report.departments, "created": report.created, "updated": report.updated,
        "deactivated": report.deactivated, "unreadable": report.unreadable}))
    await session.commit()
    return report


async def import_directory(session: AsyncSession, directory: WeComDirectory, *, root: int | None, now: datetime,
                           actor: str = "cli") -> DirectoryReport:
    depts, users, report = await directory.read(root)
    counts = Counter(u.status for u in users)
    log.info("wecom directory read: %d departments, %d users (%s)", len(depts), len(users), dict(counts))
    return await write_directory(session, depts, users, report, now=now, actor=actor)
