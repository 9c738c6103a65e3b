"""Roster import from CSV or .xlsx. Chinese or English headers; see README for the columns."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.core.invites import issue_code
from bot.core.orgs import ensure_path, rank_level
from bot.storage.models import AuditLog, Member, Role

HEADERS: dict[str, tuple[str, ...]] = {
    "name": ("姓名", "name"),
    "org": ("组织", "所在组织", "支部", "org", "organization"),
    "role": ("角色", "role"),
    "external_key": ("工号", "编号", "人员编号", "id", "external_key"),
    "rank": ("行政级别", "级别", "职级", "rank"),
    "position": ("职务", "position"),
    "joined_party_year": ("入党年份", "入党时间", "joined_party_year"),
    "tags": ("标签", "人群", "tags"),
}
ROLES = {"党员": Role.member, "member": Role.member, "": Role.member, "支部书记": Role.secretary,
         "书记": Role.secretary, "secretary": Role.secretary, "管理员": Role.admin, "admin": Role.admin,
         "纪检委员": Role.secretary}


class RosterError(Exception):
    pass


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    codes: list[tuple[str, str, str]] = field(default_factory=list)  # (name, org, code)


def _rows_from_file(path: Path) -> list[dict[str, Any]]:
    if path.suffix.lower() == ".xlsx":
        from openpyxl import load_workbook

        ws = load_workbook(path, read_only=True, data_only=True).worksheets[0]
        values = [list(r) for r in ws.iter_rows(values_only=True)]
    elif path.suffix.lower() == ".csv":
        text = path.read_bytes().decode("utf-8-sig")
        values = list(csv.reader(io.StringIO(text)))
    else:
        raise RosterError(f"{path}: 只支持 .csv 与 .xlsx 文件")
    if not values:
        raise RosterError(f"{path}: 文件为空")
    header = [str(h or "").strip() for h in values[0]]
    mapping: dict[int, str] = {}
    for idx, h in enumerate(header):
        for key, names in HEADERS.items():
            if h.lower() in names:
                mapping[idx] = key
    missing = {"name", "org"} - set(mapping.values())
    if missing:
        need = "、".join(HEADERS[k][0] for k in sorted(missing))
        raise RosterError(f"{path}: 缺少必需的列：{need}（第 1 行应为表头）")
    rows = []
    for line_no, raw in enumerate(values[1:], start=2):
        if not any(str(v or "").strip() for v in raw):
            continue
        row = {mapping[i]: ("" if v is None else str(v).strip()) for i, v in enumerate(raw) if i in mapping}
        row["_line"] = line_no
        rows.append(row)
    return rows


def _parse_row(row: dict[str, Any], path: Path) -> dict[str, Any]:
    where = f"{path.name} 第 {row['_line']} 行"
    if not row.get("name"):
        raise RosterError(f"{where}: 姓名为空")
    org = [p for p in re.split(r"[/>＞／]", row.get("org", "")) if p.strip()]
    if not org:
        raise RosterError(f"{where}: 组织为空（如 机关党委/第一支部）")
    role = ROLES.get(row.get("role", "").strip().lower() if row.get("role") else "")
    if role is None:
        raise RosterError(f"{where}: 未知角色「{row.get('role')}」（可用：党员、支部书记、管理员）")
    year_text = row.get("joined_party_year", "")
    year = None
    if year_text:
        m = re.match(r"(\d{4})", year_text)
        if not m:
            raise RosterError(f"{where}: 入党年份应为四位年份，实际「{year_text}」")
        year = int(m.group(1))
    tags = [t for t in re.split(r"[、,，;；\s]+", row.get("tags", "")) if t]
    return {"name": row["name"], "org": org, "role": role, "external_key": row.get("external_key") or None,
            "rank": row.get("rank") or None, "position": row.get("position") or None,
            "joined_party_year": year, "tags": tags}


async def import_roster(
    session: AsyncSession, path: Path, *, now: datetime, ttl_days: int, actor: str = "cli"
) -> ImportReport:
    """Validate every row first (nothing is written on error), then create or update members."""
    parsed = [_parse_row(r, path) for r in _rows_from_file(path)]
    report = ImportReport()
    for p in parsed:
        org = await ensure_path(session, p["org"])
        member = None
        if p["external_key"]:
            member = (await session.exec(select(Member).where(Member.external_key == p["external_key"]))).first()
        if member is None:
            member = (await session.exec(select(Member).where(
                Member.name == p["name"], Member.org_id == org.id))).first()
        fields = {k: p[k] for k in ("name", "role", "external_key", "rank", "position",
                                     "joined_party_year", "tags")}
        fields["rank_level"] = rank_level(p["rank"])
        if member is None:
            member = Member(org_id=org.id, **fields)  # type: ignore[arg-type]
            session.add(member)
            await session.flush()
            report.created += 1
            code = await issue_code(session, member, now=now, ttl_days=ttl_days)
            report.codes.append((member.name, org.name, code))
        else:
            for k, v in fields.items():
                setattr(member, k, v)
            member.org_id = org.id  # type: ignore[assignment]
            member.active = True
            session.add(member)
            report.updated += 1
    session.add(AuditLog(at=now, actor=actor, action="org_import",
                         detail={"file": path.name, "created": report.created, "updated": report.updated}))
    await session.commit()
    return report
