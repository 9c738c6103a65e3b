"""The CLI as an operator uses it: real subprocesses, real files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TEST_BANK

ROOT = Path(__file__).resolve().parents[1]
QINGFENG = [sys.executable, "-m", "bot"]


def run(args: list[str], cwd: Path, *, input: str | None = None, env: dict[str, str] | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("QINGFENG_")}
    full_env.update({"PYTHONPATH": str(ROOT), **(env or {})})
    return subprocess.run(QINGFENG + args, cwd=cwd, input=input, env=full_env, capture_output=True,
                          text=True, timeout=timeout)


def test_bank_check_reports_problems_and_exit_code(tmp_path):
    ok = run(["bank", "check", str(TEST_BANK)], tmp_path)
    assert ok.returncode == 0 and "题库检查通过" in ok.stdout
    bad = tmp_path / "bank"
    (bad / "items").mkdir(parents=True)
    (bad / "vocabulary.yaml").write_text((TEST_BANK / "vocabulary.yaml").read_text("utf-8"), "utf-8")
    (bad / "items" / "x.yaml").write_text("items:\n  - id: x-1\n    type: single\n", "utf-8")
    res = run(["bank", "check", str(bad)], tmp_path)
    assert res.returncode == 1 and "x.yaml:2 [x-1]" in res.stderr and "题库未加载" in res.stderr


def test_bad_setting_fails_fast_naming_the_key(tmp_path):
    res = run(["db", "upgrade"], tmp_path, env={"QINGFENG_HTTP_PORT": "abc"})
    assert res.returncode == 2 and "QINGFENG_HTTP_PORT" in res.stderr


def test_import_push_chat_and_report_on_a_fresh_database(tmp_path):
    env = {"QINGFENG_BANK_PATH": str(TEST_BANK), "QINGFENG_ROUND_ITEMS": "3"}
    roster = tmp_path / "r.csv"
    roster.write_text("姓名,组织,角色\n甲,机关党委/第一支部,支部书记\n乙,机关党委/第一支部,党员\n", "utf-8")
    imp = run(["org", "import", str(roster)], tmp_path, env=env)
    assert imp.returncode == 0, imp.stderr
    assert "新增 2 人" in imp.stdout and (tmp_path / "var" / "qingfeng.db").exists()
    push = run(["push", "--org", "第一支部", "--now"], tmp_path, env=env)
    assert push.returncode == 0 and "3 道题" in push.stdout, push.stderr
    chat = run(["chat", "--member", "乙"], tmp_path, env=env, input="/quiz\nZ\n/me\n/report\n/quit\n")
    assert chat.returncode == 0, chat.stderr
    out = chat.stdout
    assert "【第1/3题" in out and "没有看懂" in out and "累计作答 0 题" in out
    assert "仅向支部书记" in out  # a plain member is refused a report
    rep = run(["report", "--org", "第一支部"], tmp_path, env=env)
    assert rep.returncode == 0 and "第一支部" in rep.stdout


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path):
    res = run(["demo", "--out", str(tmp_path / "out"), "--database", str(tmp_path / "demo.db")], ROOT,
              timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    report = (tmp_path / "out" / "report.txt").read_text("utf-8")
    for branch in ("机关党委", "第一党支部", "第二党支部", "第三党支部"):
        assert f"【{branch}·" in report
    assert "份有效回答中，正确答案比例为" in report and "回收率" in report
    # Rerunnable: a second run starts from a fresh database and gives the same figures.
    again = run(["demo", "--out", str(tmp_path / "out2"), "--database", str(tmp_path / "demo.db")], ROOT,
                timeout=300)
    assert again.returncode == 0
    assert (tmp_path / "out2" / "report.txt").read_text("utf-8") == report
