"""Excel template for secretaries who write items in a spreadsheet, and its reader."""

from __future__ import annotations

import re
from datetime import date, datetime
from pathlib import Path
from typing import Any

from openpyxl import Workbook, load_workbook
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.worksheet.datavalidation import DataValidation

from question_bank.formats.common import TYPE_BY_NAME, TYPE_NAMES, ImportError_, validate_records
from question_bank.loader import Problem, Vocabulary
from question_bank.schema import LETTERS, Item, ItemType

OPTION_COLUMNS = [f"选项{c}" for c in LETTERS]
COLUMNS = ["题号", "题型", "题干", *OPTION_COLUMNS, "答案", "解析", "依据文件", "条款", "主题", "难度", "情景题",
           "状态", "复核人", "复核日期", "复核说明"]
WIDTHS = {"题号": 22, "题干": 50, "解析": 50, "依据文件": 30, "主题": 24}
TRUE_WORDS = {"对", "正确", "是", "√", "true", "t", "a"}
FALSE_WORDS = {"错", "错误", "否", "×", "false", "f", "b"}


def _topic_label(topic: str, vocabulary: Vocabulary) -> str:
    return f"{vocabulary.topics.get(topic, topic)}（{topic}）"


def export_xlsx(items: list[Item], path: Path, vocabulary: Vocabulary) -> None:
    wb = Workbook()
    ws = wb.active
    ws.title = "题目"
    ws.append(COLUMNS)
    for cell in ws[1]:
        cell.font = Font(bold=True)
        cell.fill = PatternFill("solid", fgColor="DDEBF7")
    for item in items:
        options = [] if item.type is ItemType.judge else list(item.options)
        answer = ("对" if item.answer == "A" else "错") if item.type is ItemType.judge else item.answer
        ws.append([
            item.id, TYPE_NAMES[item.type.value], item.stem, *options, *[None] * (8 - len(options)), answer,
            item.explanation, item.source.document, item.source.article,
            "、".join(_topic_label(t, vocabulary) for t in item.topics), item.difficulty,
            "是" if item.scenario else "否", item.status.value,
            item.review.reviewer if item.review else None, item.review.date if item.review else None,
            item.review.note if item.review else None,
        ])
    for idx, name in enumerate(COLUMNS, start=1):
        ws.column_dimensions[ws.cell(1, idx).column_letter].width = WIDTHS.get(name, 12)
    for row in ws.iter_rows(min_row=2):
        for cell in row:
            cell.alignment = Alignment(wrap_text=True, vertical="top")
    ws.freeze_panes = "C2"
    type_rule = DataValidation(type="list", formula1='"单选,多选,判断"', allow_blank=False)
    ws.add_data_validation(type_rule)
    type_rule.add(f"B2:B{max(ws.max_row, 500)}")
    _help_sheet(wb, vocabulary)
    wb.save(path)


def _help_sheet(wb: Workbook, vocabulary: Vocabulary) -> None:
    ws = wb.create_sheet("填写说明")
    rows = [
        ("列", "说明"),
        ("题号", "小写字母、数字和连字符，如 gifts-money-101；全库唯一，一经使用不再更改"),
        ("题型", "单选 / 多选 / 判断"),
        ("选项A…H", "单选、多选题填 2–8 个选项；判断题不填"),
        ("答案", "单选填一个字母（B）；多选填全部正确字母（AC）；判断填 对 或 错"),
        ("解析", "说明为什么正确、易错选项为什么错"),
        ("依据文件", "文件全称，加书名号，如 《中国共产党纪律处分条例》"),
        ("条款", "只填已核实的条款，否则留空"),
        ("主题", "见下表，可填名称或代码，多个用 、 分隔"),
        ("难度", "1 基础 / 2 中等 / 3 较难"),
        ("情景题", "是 / 否"),
        ("状态", "draft（待复核）/ approved（已复核，须填复核人与日期）/ retired"),
        ("", ""),
        ("主题代码", "主题名称"),
        *[(k, v) for k, v in vocabulary.topics.items()],
    ]
    for r in rows:
        ws.append(list(r))
    ws.column_dimensions["A"].width = 24
    ws.column_dimensions["B"].width = 80
    ws["A1"].font = ws["B1"].font = Font(bold=True)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def _topics(raw: str, vocabulary: Vocabulary) -> list[str]:
    """Accept '名称（code）' labels, bare codes or bare names (names may contain 、 themselves)."""
    coded = re.findall(r"[（(]([a-z_]+)[)）]", raw)
    if coded:
        return coded
    found: list[tuple[int, str]] = []
    rest = raw
    for code, name in sorted(vocabulary.topics.items(), key=lambda kv: -len(kv[1])):
        pos = rest.find(name)
        if pos >= 0:
            found.append((pos, code))
            rest = rest[:pos] + " " * len(name) + rest[pos + len(name):]
    found += [(raw.find(p), p) for p in re.split(r"[、,，;；\s]+", rest) if p]
    return [code for _, code in sorted(found)]


def _record(row: dict[str, Any], vocabulary: Vocabulary) -> dict[str, Any]:
    kind = TYPE_BY_NAME.get(_text(row.get("题型")), _text(row.get("题型")))
    record: dict[str, Any] = {"id": _text(row.get("题号")), "type": kind, "stem": _text(row.get("题干"))}
    answer = _text(row.get("答案"))
    if kind == "judge":
        low = answer.lower()
        record["answer"] = True if low in TRUE_WORDS else False if low in FALSE_WORDS else answer
        extra = [c for c in OPTION_COLUMNS if _text(row.get(c))]
        if extra:
            record["options"] = [_text(row.get(c)) for c in extra]
    else:
        record["options"] = [_text(row.get(c)) for c in OPTION_COLUMNS if _text(row.get(c))]
        record["answer"] = answer if kind == "single" else list(re.sub(r"[\s,，、]", "", answer.upper()))
    record["explanation"] = _text(row.get("解析"))
    record["source"] = {"document": _text(row.get("依据文件"))}
    if _text(row.get("条款")):
        record["source"]["article"] = _text(row.get("条款"))
    record["topics"] = _topics(_text(row.get("主题")), vocabulary)
    difficulty = _text(row.get("难度")) or "2"
    record["difficulty"] = int(difficulty) if difficulty.isdigit() else difficulty
    record["scenario"] = _text(row.get("情景题")) in ("是", "true", "True", "1")
    record["status"] = _text(row.get("状态")) or "draft"
    reviewer, reviewed = _text(row.get("复核人")), row.get("复核日期")
    if reviewer or reviewed:
        if isinstance(reviewed, datetime):
            reviewed = reviewed.date()
        record["review"] = {"reviewer": reviewer, "date": reviewed if isinstance(reviewed, date) else _text(reviewed)}
        if _text(row.get("复核说明")):
            record["review"]["note"] = _text(row.get("复核说明"))
    return record


def import_xlsx(path: Path, vocabulary: Vocabulary) -> list[Item]:
    try:
        wb = load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises several kinds for a non-xlsx file
        raise ImportError_([Problem(path.name, 0, "", f"无法读取 Excel 文件：{type(exc).__name__}")]) from None
    ws = wb["题目"] if "题目" in wb.sheetnames else wb.worksheets[0]
    rows = ws.iter_rows(values_only=True)
    header = [_text(h) for h in next(rows, [])]
    missing = [c for c in ("题号", "题型", "题干", "答案", "解析", "依据文件", "主题") if c not in header]
    if missing:
        raise ImportError_([Problem(path.name, 1, "", f"表头缺少列：{'、'.join(missing)}")])
    records = []
    for row_no, values in enumerate(rows, start=2):
        if not any(_text(v) for v in values):
            continue
        row = dict(zip(header, values, strict=False))
        records.append((row_no, _record(row, vocabulary)))
    return validate_records(records, file=path.name, vocabulary=vocabulary)
