"""`qingfeng backup`: a consistent copy of the SQLite database while the service keeps running.

SQLite's online backup API copies the pages through a normal connection, so it sees a
consistent snapshot including what is still in the WAL. It copies in one step: in WAL mode
that is one read transaction, which never blocks writers (copying in several steps would
restart whenever another connection writes, and could keep restarting on a busy database).
The copy is switched to rollback-journal mode (one self-contained file), checked with
`PRAGMA integrity_check`, and only then moved to its final name. PostgreSQL is backed up
with its own tool: `pg_dump_hint` says how, without printing the password.
"""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import URL, make_url


class BackupError(Exception):
    """A backup could not be made; the message says why, in Chinese."""


@dataclass(frozen=True)
class BackupResult:
    path: Path
    size: int
    tables: dict[str, int]  # row count per table in the copy


def sqlite_file(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    if not parsed.database or parsed.database == ":memory:":
        raise BackupError("内存数据库无法备份")
    return Path(parsed.database)


def default_target(source: Path, now: datetime | None = None) -> Path:
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return source.parent / "backups" / f"{source.stem}-{stamp}.db"


def table_counts(conn: sqlite3.Connection) -> dict[str, int]:
    names = [r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]
    return {n: conn.execute(f'SELECT count(*) FROM "{n}"').fetchone()[0] for n in names}


def backup_sqlite(source: Path, target: Path) -> BackupResult:
    if not source.is_file():
        raise BackupError(f"数据库文件 {source} 不存在")
    if target.exists():
        raise BackupError(f"目标文件 {target} 已存在，不会覆盖")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    try:
        with closing(sqlite3.connect(source, timeout=30)) as src, closing(sqlite3.connect(partial)) as dst:
            src.backup(dst)  # pages=-1: all in one read transaction
            dst.execute("PRAGMA journal_mode=DELETE")  # the source is WAL; the copy is one file
            problems = [r[0] for r in dst.execute("PRAGMA integrity_check")]
            if problems != ["ok"]:
                raise BackupError("备份文件完整性检查未通过：" + "；".join(problems[:5]))
            tables = table_counts(dst)
        os.replace(partial, target)
    except sqlite3.Error as exc:
        raise BackupError(f"备份失败：{exc}") from exc
    finally:
        partial.unlink(missing_ok=True)
    return BackupResult(path=target, size=target.stat().st_size, tables=tables)


def pg_dump_hint(url: str, now: datetime | None = None) -> str:
    """How to back up (and restore) a PostgreSQL database, password left out."""
    parsed = make_url(url)
    safe = URL.create("postgresql", username=parsed.username, host=parsed.host, port=parsed.port,
                      database=parsed.database, query=parsed.query).render_as_string(hide_password=False)
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    name = parsed.database or "qingfeng"
    user = parsed.username or "postgres"
    return (
        "PostgreSQL 数据库请用 pg_dump 备份（密码通过 PGPASSWORD 环境变量或 ~/.pgpass 提供）：\n"
        f'  pg_dump --format=custom --file={name}-{stamp}.dump "{safe}"\n'
        "使用 deploy/compose.yaml 部署时：\n"
        f"  docker compose exec -T postgres pg_dump --format=custom -U {user} {name} > {name}-{stamp}.dump\n"
        "恢复（先停止服务）：\n"
        f'  pg_restore --clean --if-exists --no-owner --dbname="{safe}" {name}-{stamp}.dump'
    )
