"""Import/export: YAML -> format -> YAML is identical in content; bad rows are named."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from openpyxl import load_workbook

from question_bank import load_bank
from question_bank.formats.common import ImportError_, item_to_yaml_dict, items_to_yaml
from question_bank.formats.gift import export_gift, import_gift
from question_bank.formats.moodle import export_moodle, import_moodle
from question_bank.formats.xlsx import export_xlsx, import_xlsx
from tests.conftest import TEST_BANK
from tests.question_bank.test_loader import REPO_BANK

FORMATS = {
    "xlsx": (export_xlsx, import_xlsx, ".xlsx"),
    "moodle": (export_moodle, import_moodle, ".xml"),
    "gift": (export_gift, import_gift, ".gift"),
}


@pytest.fixture(scope="module")
def shipped_bank():
    return load_bank(REPO_BANK)


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_round_trip_of_the_shipped_bank_is_identical(fmt, shipped_bank, tmp_path):
    export, import_, suffix = FORMATS[fmt]
    items = list(shipped_bank.items.values())
    path = tmp_path / f"bank{suffix}"
    export(items, path, shipped_bank.vocabulary)
    back = import_(path, shipped_bank.vocabulary)
    by_id = lambda xs: sorted((item_to_yaml_dict(i) for i in xs), key=lambda d: d["id"])  # noqa: E731
    assert by_id(back) == by_id(items)


def test_yaml_writer_round_trips_through_the_loader(shipped_bank, tmp_path):
    root = tmp_path / "bank"
    (root / "items").mkdir(parents=True)
    (root / "vocabulary.yaml").write_text((REPO_BANK / "vocabulary.yaml").read_text("utf-8"), "utf-8")
    (root / "items" / "all.yaml").write_text(items_to_yaml(shipped_bank.items.values()), "utf-8")
    again = load_bank(root)
    assert {k: v.content_hash() for k, v in again.items.items()} == {
        k: v.content_hash() for k, v in shipped_bank.items.items()}


def test_xlsx_errors_name_the_row_and_nothing_is_returned(tmp_path):
    bank = load_bank(TEST_BANK)
    path = tmp_path / "t.xlsx"
    export_xlsx(list(bank.items.values()), path, bank.vocabulary)
    wb = load_workbook(path)
    ws = wb["题目"]
    header = [c.value for c in ws[1]]
    ws.cell(3, header.index("答案") + 1, "Z")  # row 3 = second item
    ws.cell(5, header.index("主题") + 1, "不存在的主题")
    wb.save(path)
    with pytest.raises(ImportError_) as exc:
        import_xlsx(path, bank.vocabulary)
    lines = [str(p) for p in exc.value.problems]
    assert any(line.startswith("t.xlsx:3 [") and "不在选项" in line for line in lines), lines
    assert any(line.startswith("t.xlsx:5 [") and "未知主题" in line for line in lines), lines


def test_xlsx_template_accepts_topic_names_and_judge_words(tmp_path):
    bank = load_bank(TEST_BANK)
    path = tmp_path / "t.xlsx"
    export_xlsx([], path, bank.vocabulary)
    wb = load_workbook(path)
    ws = wb["题目"]
    header = [c.value for c in ws[1]]
    row = dict.fromkeys(header)
    row.update({"题号": "new-001", "题型": "判断", "题干": "电子红包属于礼金。", "答案": "对", "解析": "是的。",
                "依据文件": "《中国共产党纪律处分条例》", "主题": "礼品礼金（含电子红包）", "难度": 1, "情景题": "否"})
    ws.append([row[h] for h in header])
    wb.save(path)
    (item,) = import_xlsx(path, bank.vocabulary)
    assert (item.type.value, item.answer, item.topics, item.status.value) == ("judge", "A", ["gifts_money"], "draft")


def test_gift_and_moodle_reject_bad_input(tmp_path):
    bank = load_bank(TEST_BANK)
    gift = tmp_path / "bad.gift"
    gift.write_text("::ok-1::题干{=甲 ~乙 ####解析}\n这不是题目\n", "utf-8")
    with pytest.raises(ImportError_) as exc:
        import_gift(gift, bank.vocabulary)
    assert any("bad.gift:2" in str(p) for p in exc.value.problems)
    xml = tmp_path / "bad.xml"
    xml.write_text('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><quiz/>', "utf-8")
    with pytest.raises(ImportError_, match="DOCTYPE"):
        import_moodle(xml, bank.vocabulary)


def test_cli_import_merges_into_the_target_file_without_losing_items(tmp_path):
    from tests.test_cli import run

    root = tmp_path / "bank"
    (root / "items").mkdir(parents=True)
    (root / "vocabulary.yaml").write_text((TEST_BANK / "vocabulary.yaml").read_text("utf-8"), "utf-8")
    (root / "items" / "sample.yaml").write_text((TEST_BANK / "items" / "sample.yaml").read_text("utf-8"), "utf-8")
    out = tmp_path / "export.gift"
    assert run(["bank", "export", "--format", "gift", "--bank", str(root), "--out", str(out)], tmp_path).returncode == 0
    text = out.read_text("utf-8").replace("::t-single-001::四风不包括", "::t-single-001::“四风”不包括")
    out.write_text(text, "utf-8")
    res = run(["bank", "import", str(out), "--bank", str(root), "--out", str(root / "items" / "sample.yaml")],
              tmp_path)
    assert res.returncode == 0, res.stderr
    data = yaml.safe_load((root / "items" / "sample.yaml").read_text("utf-8"))
    assert len(data["items"]) == 7 and data["items"][0]["stem"].startswith("“四风”不包括")
    clash = run(["bank", "import", str(out), "--bank", str(root)], tmp_path)  # into imported.yaml: ids clash
    assert clash.returncode == 1 and "已在题库的其他文件中" in clash.stderr
    assert not Path(root / "items" / "imported.yaml").exists()


def test_yaml_writer_never_emits_aliases_for_shared_values(tmp_path):
    bank = load_bank(TEST_BANK)
    item = bank.items["t-single-001"]
    twin = item.model_copy(update={"id": "t-single-001-b"})  # shares the very same review date object
    text = items_to_yaml([item, twin])
    assert "&id" not in text and "*id" not in text
    root = tmp_path / "b"
    (root / "items").mkdir(parents=True)
    (root / "vocabulary.yaml").write_text((TEST_BANK / "vocabulary.yaml").read_text("utf-8"), "utf-8")
    (root / "items" / "x.yaml").write_text(text, "utf-8")
    assert set(load_bank(root).items) == {"t-single-001", "t-single-001-b"}
