"""`qingfeng backup`: an online SQLite copy that opens and holds the same rows; a pg_dump hint for
PostgreSQL that works as printed."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path

import pytest

from bot.core.commands import SubmitAnswer
from bot.ops.backup import BackupError, backup_sqlite, pg_dump_hint
from tests.conftest import PG_URL, TEST_BANK
from tests.factories import build_org, open_test_round
from tests.ops.cli import run_cli


def rows(db: Path) -> dict[str, list[tuple]]:
    """Every row of every table, in a stable order."""
    with closing(sqlite3.connect(db)) as conn:
        names = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        return {n: sorted(conn.execute(f'SELECT * FROM "{n}"').fetchall(), key=repr) for n in names}


async def populate(app) -> None:  # type: ignore[no-untyped-def]
    tree = await build_org(app, per_branch=4)
    rnd = await open_test_round(app, tree.root, ["t-single-001", "t-judge-001"])
    for i, m in enumerate(tree.all_members()):
        await app.service.handle(tree.senders[m.id], SubmitAnswer("CA"[i % 2], rnd.id, "t-single-001"))


def db_path(url: str) -> Path:
    return Path(url.split("///", 1)[1])


async def test_cli_backup_while_the_service_holds_the_database(sqlite_app, sqlite_url, tmp_path):
    await populate(sqlite_app)  # the app's engine stays open: this is an online backup
    source = db_path(sqlite_url)
    assert Path(f"{source}-wal").stat().st_size > 0  # recent writes still live in the WAL
    # A writer is mid-transaction during the backup: WAL lets the backup read past it.
    with closing(sqlite3.connect(source, isolation_level=None)) as writer:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("INSERT INTO auditlog (at, actor, action, detail) VALUES ('2026-11-23 01:00:00', 'x', "
                       "'uncommitted', '{}')")
        res = run_cli(["backup", "--out", str(tmp_path / "copy.db")], tmp_path,
                      env={"QINGFENG_DATABASE_URL": sqlite_url, "QINGFENG_BANK_PATH": str(TEST_BANK)})
        writer.execute("ROLLBACK")
    assert res.returncode == 0, res.stderr
    assert "完整性检查通过" in res.stdout
    copy = tmp_path / "copy.db"
    assert not Path(f"{copy}-wal").exists()  # one self-contained file
    with closing(sqlite3.connect(copy)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    original, copied = rows(source), rows(copy)
    assert copied == original
    assert len(copied["answer"]) == 10 and len(copied["member"]) == 11 and copied["bankitem"]
    assert not any(r for r in copied["auditlog"] if "uncommitted" in r)


def test_backup_refuses_to_overwrite_and_reports_a_missing_database(tmp_path):
    existing = tmp_path / "exists.db"
    existing.write_bytes(b"keep me")
    source = tmp_path / "src.db"
    with closing(sqlite3.connect(source)) as conn:
        conn.execute("CREATE TABLE t (x)")
    with pytest.raises(BackupError, match="已存在"):
        backup_sqlite(source, existing)
    assert existing.read_bytes() == b"keep me"
    with pytest.raises(BackupError, match="不存在"):
        backup_sqlite(tmp_path / "nope.db", tmp_path / "out.db")
    res = run_cli(["backup"], tmp_path, env={"QINGFENG_DATABASE_URL": f"sqlite:///{tmp_path / 'nope.db'}"})
    assert res.returncode == 1 and "不存在" in res.stderr
    assert not (tmp_path / "nope.db").exists()


def test_default_target_is_beside_the_database(tmp_path):
    source = tmp_path / "var" / "qingfeng.db"
    source.parent.mkdir()
    with closing(sqlite3.connect(source)) as conn:
        conn.execute("CREATE TABLE t (x)")
        conn.execute("INSERT INTO t VALUES (1)")
        conn.commit()
    res = run_cli(["backup"], tmp_path, env={"QINGFENG_DATABASE_URL": f"sqlite:///{source}"})
    assert res.returncode == 0, res.stderr
    made = list((source.parent / "backups").glob("qingfeng-*.db"))
    assert len(made) == 1 and rows(made[0]) == {"t": [(1,)]}


def test_postgres_gets_a_pg_dump_hint_without_the_password(tmp_path):
    res = run_cli(["backup"], tmp_path,
                  env={"QINGFENG_DATABASE_URL": "postgresql://qingfeng:s3cret-pw@db.internal:5433/qingfeng"})
    assert res.returncode == 2
    assert "pg_dump --format=custom" in res.stdout and "db.internal:5433/qingfeng" in res.stdout
    assert "s3cret-pw" not in res.stdout + res.stderr
    assert "pg_restore" in res.stdout


@pytest.mark.postgres
def test_the_printed_pg_dump_command_works(tmp_path):
    if not PG_URL:
        pytest.skip("PostgreSQL not configured (set QINGFENG_TEST_POSTGRES_URL)")
    if shutil.which("pg_dump") is None or shutil.which("pg_restore") is None:
        pytest.skip("pg_dump not installed")
    command = next(ln.strip() for ln in pg_dump_hint(PG_URL).splitlines() if ln.strip().startswith("pg_dump "))
    done = subprocess.run(shlex.split(command), cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PGCONNECT_TIMEOUT": "5"})
    if "server version mismatch" in done.stderr:
        pytest.skip("pg_dump is older than the server")
    assert done.returncode == 0, done.stderr
    dump = tmp_path / re.search(r"--file=(\S+)", command).group(1)  # type: ignore[union-attr]
    listing = subprocess.run(["pg_restore", "--list", str(dump)], capture_output=True, text=True, timeout=60)
    assert listing.returncode == 0 and dump.stat().st_size > 0
