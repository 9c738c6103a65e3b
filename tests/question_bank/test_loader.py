"""Bank loader: every kind of bad item is reported with file:line and id; nothing half-loads."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest
import yaml

from question_bank import BankError, Status, load_bank
from question_bank.checks import near_duplicates, quality_report
from tests.conftest import TEST_BANK

REPO_BANK = Path(__file__).resolve().parents[2] / "question_bank"

GOOD = """\
  - id: ok-001
    type: single
    stem: 正常的题目（  ）。
    options: [甲, 乙, 丙]
    answer: B
    explanation: 解析。
    source: {document: 《文件》}
    topics: [four_styles]
"""


def make_bank(tmp_path: Path, items_yaml: str, *, name: str = "bad.yaml") -> Path:
    root = tmp_path / "bank"
    (root / "items").mkdir(parents=True)
    (root / "cases").mkdir()
    shutil.copy(TEST_BANK / "vocabulary.yaml", root / "vocabulary.yaml")
    (root / "items" / "aa_good.yaml").write_text("items:\n" + GOOD, encoding="utf-8")
    (root / "items" / name).write_text(textwrap.dedent(items_yaml), encoding="utf-8")
    return root


def problems(root: Path) -> list[str]:
    with pytest.raises(BankError) as exc:
        load_bank(root)
    return [str(p) for p in exc.value.problems]


BAD_ITEMS = {
    "answer not among options": ("""\
        items:
          - id: bad-001
            type: single
            stem: 题干
            options: [甲, 乙]
            answer: C
            explanation: 解析
            source: {document: 《文件》}
            topics: [four_styles]
        """, "bad.yaml:2 [bad-001]", "不在选项"),
    "single with two keys": ("""\
        items:
          - id: bad-002
            type: single
            stem: 题干
            options: [甲, 乙, 丙]
            answer: [A, B]
            explanation: 解析
            source: {document: 《文件》}
            topics: [four_styles]
        """, "bad.yaml:2 [bad-002]", "只能有一个答案"),
    "unknown topic": ("""\
        items:
          - id: bad-003
            type: judge
            stem: 判断
            answer: true
            explanation: 解析
            source: {document: 《文件》}
            topics: [no_such_topic]
        """, "bad.yaml:8 [bad-003]", "未知主题"),
    "missing explanation": ("""\
        items:
          - id: bad-004
            type: judge
            stem: 判断
            answer: false
            source: {document: 《文件》}
            topics: [four_styles]
        """, "bad.yaml:2 [bad-004]", "explanation"),
    "wrong type of field": ("""\
        items:
          - id: bad-005
            type: single
            stem: 题干
            options: 甲乙丙
            answer: A
            explanation: 解析
            source: {document: 《文件》}
            topics: [four_styles]
        """, "bad.yaml:5 [bad-005]", "options"),
    "judge with options": ("""\
        items:
          - id: bad-006
            type: judge
            stem: 判断
            options: [对, 错]
            answer: true
            explanation: 解析
            source: {document: 《文件》}
            topics: [four_styles]
        """, "[bad-006]", "判断题"),
    "repeated options": ("""\
        items:
          - id: bad-007
            type: multiple
            stem: 题干
            options: [甲, 甲, 乙]
            answer: [A, C]
            explanation: 解析
            source: {document: 《文件》}
            topics: [four_styles]
        """, "bad.yaml:2 [bad-007]", "选项重复"),
    "approved without review": ("""\
        items:
          - id: bad-008
            type: judge
            stem: 判断
            answer: true
            explanation: 解析
            source: {document: 《文件》}
            topics: [four_styles]
            status: approved
        """, "bad.yaml:2 [bad-008]", "review"),
    "duplicate id": ("""\
        items:
          - id: ok-001
            type: judge
            stem: 另一道判断
            answer: true
            explanation: 解析
            source: {document: 《文件》}
            topics: [four_styles]
        """, "bad.yaml:2 [ok-001]", "id 重复"),
    "yaml syntax error": ("""\
        items:
          - id: bad-010
            stem: [unclosed
        """, "bad.yaml:", "YAML 语法错误"),
    "python tag": ("""\
        items:
          - id: bad-011
            stem: !!python/object/apply:os.system ["echo pwned"]
        """, "bad.yaml:", "python"),
    "alias bomb": ("""\
        a: &a ["x", "x"]
        b: &b [*a, *a]
        items: [*b]
        """, "bad.yaml:1", "锚点"),
}


@pytest.mark.parametrize("case", list(BAD_ITEMS), ids=list(BAD_ITEMS))
def test_each_bad_item_is_reported_with_file_line_and_id(tmp_path, case):
    body, where, what = BAD_ITEMS[case]
    found = problems(make_bank(tmp_path, body))
    assert any(where in p and what.lower() in p.lower() for p in found), found


def test_all_problems_reported_at_once_and_nothing_loaded(tmp_path):
    body = BAD_ITEMS["answer not among options"][0].rstrip() + "\n" + "\n".join(
        BAD_ITEMS["single with two keys"][0].splitlines()[1:]) + "\n"
    root = make_bank(tmp_path, body)
    found = problems(root)
    assert len(found) == 2 and "bad-001" in found[0] and "bad-002" in found[1]


def test_non_utf8_and_oversize_files_are_rejected(tmp_path):
    root = make_bank(tmp_path, "items: []\n")
    (root / "items" / "gbk.yaml").write_bytes("items:\n  - id: 题\n".encode("gbk"))
    (root / "items" / "huge.yaml").write_bytes(b"items: []\n" + b"#" * (3 * 1024 * 1024))
    found = problems(root)
    assert any("gbk.yaml" in p and "UTF-8" in p for p in found)
    assert any("huge.yaml" in p and "文件过大" in p for p in found)


def test_valid_bank_round_trips(tmp_path):
    bank = load_bank(TEST_BANK)
    assert len(bank.items) == 7 and len(bank.cases) == 3
    judge = bank.items["t-judge-002"]
    assert judge.options == ["正确", "错误"] and judge.answer == "B"
    assert bank.items["t-multiple-001"].answer == "ACD"
    # Dump every item back to YAML and load again: same content, same hashes.
    dumped = []
    for item in bank.items.values():
        d = item.model_dump(mode="json", exclude_none=True)
        if d["type"] == "judge":
            d["answer"] = d["answer"] == "A"
            del d["options"]
        dumped.append(d)
    root = tmp_path / "rt"
    (root / "items").mkdir(parents=True)
    shutil.copy(TEST_BANK / "vocabulary.yaml", root / "vocabulary.yaml")
    (root / "items" / "all.yaml").write_text(yaml.safe_dump({"items": dumped}, allow_unicode=True), "utf-8")
    again = load_bank(root)
    assert {i: it.content_hash() for i, it in again.items.items()} == {
        i: it.content_hash() for i, it in bank.items.items()}
    assert again.items["t-draft-001"].status is Status.draft


def test_folded_chinese_lines_lose_the_joining_space(tmp_path):
    root = make_bank(tmp_path, """\
        items:
          - id: fold-001
            type: judge
            stem: >-
              电子红包
              属于礼金。
            answer: true
            explanation: 解析
            source: {document: 《文件》}
            topics: [four_styles]
        """)
    assert load_bank(root).items["fold-001"].stem == "电子红包属于礼金。"


def test_near_duplicate_stems_are_found():
    bank = load_bank(TEST_BANK)
    items = list(bank.items.values())
    assert near_duplicates(items) == []
    twin = items[0].model_copy(update={"id": "twin", "stem": items[0].stem.replace("四风", "“四风”")})
    assert [(a, b) for a, b, _ in near_duplicates([items[0], twin])] == [(items[0].id, "twin")]


def test_shipped_bank_loads_and_passes_structural_checks():
    bank = load_bank(REPO_BANK)
    assert len(bank.items) >= 300 and len(bank.cases) >= 60
    report = quality_report(bank)
    assert not [e for e in report.errors if "题干高度相似" in e], report.errors
