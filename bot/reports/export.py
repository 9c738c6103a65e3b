"""Report files: Excel workbook (openpyxl), Word document (python-docx), HTML, plain text.

The workbook is built from the report's numbers (numbers stay numbers, shares are formatted
as percentages); the three document formats lay out the same `document.Document` blocks.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable
from pathlib import Path
from zoneinfo import ZoneInfo

from docx import Document as DocxDocument
from docx.enum.table import WD_TABLE_ALIGNMENT
from docx.enum.text import WD_ALIGN_PARAGRAPH
from docx.oxml.ns import qn
from docx.shared import Cm, Pt, RGBColor
from openpyxl import Workbook
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter

from bot.reports.analysis import wilson
from bot.reports.document import (
    TYPE_NAMES,
    Document,
    Figure,
    Heading,
    Para,
    build_document,
)
from bot.reports.model import FullReport
from bot.reports.wording import withheld_text

FORMATS = ("text", "xlsx", "docx", "html")
PERCENT = "0.0%"

# Font names only (nothing is embedded): what Chinese Word installs have for body and headings.
BODY_FONT, HEADING_FONT = "宋体", "黑体"


def write_report(report: FullReport, fmt: str, path: Path, tz: ZoneInfo, *,
                 document: Document | None = None) -> Path:
    """Write `report` as `fmt` to `path` (parents created); returns the path.

    Pass a `document` built once (with charts) to write several formats without redrawing.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "xlsx":
        path.write_bytes(to_xlsx(report, tz))
    elif fmt == "docx":
        path.write_bytes(to_docx(document or build_document(report, tz)))
    elif fmt == "html":
        path.write_text(to_html(document or build_document(report, tz)), encoding="utf-8")
    else:
        path.write_text(to_text(document or build_document(report, tz, with_charts=False)), encoding="utf-8")
    return path


def write_all(report: FullReport, out_dir: Path, tz: ZoneInfo, *, stem: str = "report") -> list[Path]:
    """xlsx, docx and html of one report, plus each chart as chart-NN.png, into `out_dir`."""
    document = build_document(report, tz)
    paths = [write_report(report, fmt, out_dir / f"{stem}.{fmt}", tz, document=document)
             for fmt in ("xlsx", "docx", "html")]
    for figure in figures(document):
        path = out_dir / f"chart-{figure.number:02d}.png"
        path.write_bytes(figure.png)
        paths.append(path)
    return paths


def figures(doc: Document) -> list[Figure]:
    return [b for b in doc.blocks if isinstance(b, Figure)]


# --- text ------------------------------------------------------------------------------------------


def to_text(doc: Document) -> str:
    out = [doc.title, doc.subtitle, ""]
    for block in doc.blocks:
        if isinstance(block, Heading):
            out += ["", block.text]
        elif isinstance(block, Para):
            out.append(block.text)
        elif isinstance(block, Figure):
            out.append(f"（图表{block.number}  {block.caption}：见 docx/html 版本）")
        else:
            out += ["", f"{block.label}  {block.caption}", "\t".join(block.header)]
            out += ["\t".join(row) for row in block.rows]
            if block.note:
                out.append("注：" + block.note)
    return "\n".join(out).strip() + "\n"


# --- html ------------------------------------------------------------------------------------------

_CSS = """
body { font-family: "Noto Sans CJK SC", "Source Han Sans SC", "Microsoft YaHei", "PingFang SC", sans-serif;
       max-width: 60em; margin: 2em auto; padding: 0 1em; line-height: 1.7; color: #222; }
h1 { text-align: center; font-size: 1.6em; } .subtitle { text-align: center; color: #555; }
h2 { font-size: 1.25em; margin-top: 1.6em; border-bottom: 1px solid #ccc; }
p { text-indent: 2em; } figure { margin: 1em 0; text-align: center; } figure img { max-width: 100%; }
table { border-collapse: collapse; margin: 0.5em auto; font-size: 0.9em; }
caption { font-weight: bold; margin-bottom: 0.3em; }
th, td { border: 1px solid #999; padding: 0.25em 0.6em; } th { background: #f0f0f0; }
td.num { text-align: right; } .note { font-size: 0.85em; color: #555; text-indent: 0; }
"""


def _is_number(text: str) -> bool:
    t = text.replace("%", "").replace("–", "").replace(".", "").replace("-", "").replace("<", "")
    return bool(t) and t.isdigit()


def to_html(doc: Document) -> str:
    e = html.escape
    parts = ["<!DOCTYPE html>", '<html lang="zh-CN"><head><meta charset="utf-8">',
             f"<title>{e(doc.title)}</title><style>{_CSS}</style></head><body>",
             f"<h1>{e(doc.title)}</h1>", f'<p class="subtitle">{e(doc.subtitle)}</p>']
    for block in doc.blocks:
        if isinstance(block, Heading):
            parts.append(f"<h2>{e(block.text)}</h2>")
        elif isinstance(block, Para):
            parts.append(f"<p>{e(block.text)}</p>")
        elif isinstance(block, Figure):
            data = base64.b64encode(block.png).decode("ascii")
            parts.append(f'<figure><img alt="图表{block.number} {e(block.caption)}" '
                         f'src="data:image/png;base64,{data}"></figure>')
        else:
            head = "".join(f"<th>{e(h)}</th>" for h in block.header)
            body = "".join(
                "<tr>" + "".join(f'<td class="num">{e(c)}</td>' if _is_number(c) else f"<td>{e(c)}</td>"
                                 for c in row) + "</tr>" for row in block.rows)
            parts.append(f"<table><caption>{e(block.label)}  {e(block.caption)}</caption>"
                         f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
            if block.note:
                parts.append(f'<p class="note">注：{e(block.note)}</p>')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


# --- docx ------------------------------------------------------------------------------------------


def _east_asian(style_or_run, name: str) -> None:  # type: ignore[no-untyped-def]
    """python-docx sets only the Latin font; Chinese text needs w:eastAsia as well."""
    style_or_run.font.name = name
    rpr = style_or_run.element.get_or_add_rPr()
    rfonts = rpr.find(qn("w:rFonts"))
    if rfonts is None:
        rfonts = rpr.makeelement(qn("w:rFonts"), {})
        rpr.append(rfonts)
    rfonts.set(qn("w:eastAsia"), name)


def to_docx(doc: Document) -> bytes:
    d = DocxDocument()
    normal = d.styles["Normal"]
    _east_asian(normal, BODY_FONT)
    normal.font.size = Pt(11)
    for style_name in ("Title", "Heading 1", "Caption"):
        style = d.styles[style_name]
        _east_asian(style, HEADING_FONT)
        style.font.color.rgb = RGBColor(0, 0, 0)
    d.styles["Heading 1"].font.size = Pt(14)
    for section in d.sections:
        section.left_margin = section.right_margin = Cm(2.5)

    title = d.add_heading(doc.title, level=0)
    title.alignment = WD_ALIGN_PARAGRAPH.CENTER
    sub = d.add_paragraph(doc.subtitle)
    sub.alignment = WD_ALIGN_PARAGRAPH.CENTER
    for block in doc.blocks:
        if isinstance(block, Heading):
            d.add_heading(block.text, level=1)
        elif isinstance(block, Para):
            p = d.add_paragraph(block.text)
            p.paragraph_format.first_line_indent = Pt(22)
        elif isinstance(block, Figure):
            d.add_picture(io.BytesIO(block.png), width=Cm(15.5))
            d.paragraphs[-1].alignment = WD_ALIGN_PARAGRAPH.CENTER
        else:
            cap = d.add_paragraph(f"{block.label}  {block.caption}", style="Caption")
            cap.alignment = WD_ALIGN_PARAGRAPH.CENTER
            table = d.add_table(rows=1, cols=len(block.header))
            table.style = "Table Grid"
            table.alignment = WD_TABLE_ALIGNMENT.CENTER
            for cell, text in zip(table.rows[0].cells, block.header, strict=True):
                cell.text = text
                for run in cell.paragraphs[0].runs:
                    run.bold = True
            for row in block.rows:
                cells = table.add_row().cells
                for cell, text in zip(cells, row, strict=True):
                    cell.text = text
                    if _is_number(text):
                        cell.paragraphs[0].alignment = WD_ALIGN_PARAGRAPH.RIGHT
            for row in table.rows:
                for cell in row.cells:
                    for par in cell.paragraphs:
                        for run in par.runs:
                            run.font.size = Pt(9)
            if block.note:
                note = d.add_paragraph("注：" + block.note)
                for run in note.runs:
                    run.font.size = Pt(9)
    buf = io.BytesIO()
    d.save(buf)
    return buf.getvalue()


# --- xlsx ------------------------------------------------------------------------------------------


def to_xlsx(report: FullReport, tz: ZoneInfo) -> bytes:
    wb = Workbook()
    ws = wb.active
    ws.title = "概况"
    hidden = withheld_text(report.min_group)
    _sheet_summary(ws, report, tz)
    if not report.withheld:
        _sheet(wb, "各题", ["题号", "题目", "题型", "正确答案", "作答人数", "有效回答", "答对", "正确率",
                          "置信下限", "置信上限", *[f"选{c}" for c in "ABCDEFGH"]],
               _item_rows(report, hidden), pct_cols={8, 9, 10})
        _sheet(wb, "主题", ["主题", "主题代码", "作答人数", "有效回答", "答对", "正确率", "置信下限", "置信上限"],
               [[t.label, t.key, hidden] if t.withheld else
                [t.label, t.key, t.people, t.answers, t.correct, t.accuracy, *(t.ci or (None, None))]
                for t in report.topics], pct_cols={6, 7, 8})
        _sheet(wb, "分周", ["周（周一）", "轮数", "推送人次", "有效人次", "回收率", "有效回答", "答对", "正确率"],
               [[w.week, w.rounds, hidden] if w.withheld else
                [w.week, w.rounds, w.pushed, w.responded, w.response_rate, w.answers, w.correct, w.accuracy]
                for w in report.weeks], pct_cols={5, 8})
        units = report.units.units if report.units else []
        _sheet(wb, "下级组织", ["名次", "组织", "推送人次", "有效人次", "回收率", "作答人数", "有效回答", "答对",
                            "正确率", "置信下限", "置信上限"],
               [[None, u.name, hidden] if u.withheld else
                [u.rank, u.name, u.pushed, u.responded, u.response_rate, u.people, u.answers, u.correct,
                 u.accuracy, *(u.ci or (None, None))] for u in units], pct_cols={5, 9, 10, 11})
        _sheet(wb, "属性分析", ["属性", "分组", "作答人数", "有效回答", "答对", "正确率", "置信下限", "置信上限"],
               [[t.title, s.label, hidden] if s.withheld else
                [t.title, s.label, s.people, s.answers, s.correct, s.accuracy, *(s.ci or (None, None))]
                for t in report.attributes for s in t.rows], pct_cols={6, 7, 8})
        _sheet(wb, "相关分析", ["变量X", "变量Y", "X的N", "Y的N", "配对N", "Pearson r", "Pearson p（双侧）",
                            "Spearman ρ", "Spearman p（双侧）", "结论"],
               [[c.x_label, c.y_label, c.n_x, c.n_y,
                 *((c.result.n, c.result.pearson_r, c.result.pearson_p, c.result.spearman_rho, c.result.spearman_p)
                   if c.result else (None,) * 5), c.sentence] for c in report.correlations],
               number_formats={6: "0.000", 7: "0.000", 8: "0.000", 9: "0.000"})
        _sheet(wb, "题目分析", ["轮次", "开启日期", "完整作答人数", "α", "题号", "题目", "难度系数", "标准差",
                            "区分度指数", "区分效率", "提示"],
               [[rnd.title, rnd.opens_at.astimezone(tz).date(), rnd.stats.respondents, rnd.stats.alpha, a.item_id,
                 rnd.stems.get(a.item_id, ""), a.facility / 100, a.sd, a.discrimination,
                 None if a.efficiency is None else a.efficiency / 100, "、".join(a.flags)]
                for rnd in report.rounds if rnd.stats for a in rnd.stats.items],
               pct_cols={7, 10}, number_formats={4: "0.00", 8: "0.00", 9: "0.0"})
    if report.nonresponders is not None:
        _sheet(wb, "未作答名单", ["姓名", "组织", "未作答轮数"], [list(r) for r in report.nonresponders])
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def _item_rows(report: FullReport, hidden: str) -> list[list[object]]:
    rows: list[list[object]] = []
    for item in sorted(report.items, key=lambda i: i.item_id):
        if item.withheld:
            rows.append([item.item_id, item.stem, TYPE_NAMES.get(item.type, ""), item.key, hidden])
            continue
        ci = wilson(item.correct, item.answered) or (None, None)
        n_options = len(item.options) or len(item.option_counts)
        options = [item.option_counts.get(c, 0) if i < n_options else None for i, c in enumerate("ABCDEFGH")]
        rows.append([item.item_id, item.stem, TYPE_NAMES.get(item.type, ""), item.key, item.people, item.answered,
                     item.correct, item.accuracy, *ci, *options])
    return rows


def _sheet_summary(ws, report: FullReport, tz: ZoneInfo) -> None:  # type: ignore[no-untyped-def]
    prev = report.previous
    rows: list[tuple[str, object, str | None]] = [
        ("组织", report.org_path or report.org_name, None),
        ("统计期间", report.period_text or report.period_label, None),
        ("生成时间", report.generated_at.astimezone(tz).replace(tzinfo=None) if report.generated_at else None,
         "yyyy-mm-dd hh:mm"),
        ("隐私阈值（人）", report.min_group, None),
        ("推送人次", report.pushed, None),
        ("回收人次", report.returned, None),
        ("回收率", report.return_rate, PERCENT),
        ("有效人次", report.responded, None),
        ("有效比例", report.valid_rate, PERCENT),
        ("逾期作答（份，未计入）", report.late_answers, None),
        ("停用题目作答（份，未计入）", report.retired_answers, None),
    ]
    if report.withheld:
        rows.append(("正确率", withheld_text(report.min_group), None))
    else:
        rows += [
            ("作答人数", report.people, None),
            ("有效回答（份）", report.valid_answers, None),
            ("答对（份）", report.correct_answers, None),
            ("正确率", report.accuracy, PERCENT),
            ("95%置信下限（Wilson）", report.ci[0] if report.ci else None, PERCENT),
            ("95%置信上限（Wilson）", report.ci[1] if report.ci else None, PERCENT),
        ]
        if prev is not None:
            rows += [("上期", prev.label, None),
                     ("上期正确率", prev.accuracy if not prev.withheld else withheld_text(report.min_group),
                      PERCENT)]
        if report.sibling_rank:
            s = report.sibling_rank
            rows.append((f"在{s.parent_name}所属组织中的名次", f"{s.position}/{s.of}", None))
    ws.append(["项目", "数值"])
    for label, value, fmt in rows:
        ws.append([label, value])
        if fmt and (isinstance(value, (int, float)) or hasattr(value, "year")):
            ws.cell(row=ws.max_row, column=2).number_format = fmt
    _style(ws, widths=[30, 40])


def _sheet(wb: Workbook, title: str, header: list[str], rows: Iterable[list[object]], *,
           pct_cols: frozenset[int] | set[int] = frozenset(), number_formats: dict[int, str] | None = None) -> None:
    ws = wb.create_sheet(title)
    ws.append(header)
    for row in rows:
        ws.append(row)
    for col in pct_cols:
        for (cell,) in ws.iter_rows(min_row=2, min_col=col, max_col=col):
            if isinstance(cell.value, (int, float)):
                cell.number_format = PERCENT
    for col, fmt in (number_formats or {}).items():
        for (cell,) in ws.iter_rows(min_row=2, min_col=col, max_col=col):
            if isinstance(cell.value, (int, float)):
                cell.number_format = fmt
    for (cell,) in ws.iter_rows(min_row=2, min_col=1, max_col=1):
        if hasattr(cell.value, "year"):
            cell.number_format = "yyyy-mm-dd"
    for (cell,) in ws.iter_rows(min_row=2, min_col=2, max_col=2):
        if hasattr(cell.value, "year"):
            cell.number_format = "yyyy-mm-dd"
    widths = [max(8, min(50, max(_display_width(c.value) for c in column) + 2)) for column in ws.columns]
    _style(ws, widths=widths)


def _display_width(value: object) -> int:
    text = "" if value is None else str(value)
    return sum(2 if ord(ch) > 0x2E7F else 1 for ch in text)


def _style(ws, *, widths: list[int]) -> None:  # type: ignore[no-untyped-def]
    for cell in ws[1]:
        cell.font = Font(bold=True)
        cell.fill = PatternFill("solid", fgColor="EEEEEE")
        cell.alignment = Alignment(horizontal="center", vertical="center", wrap_text=True)
    for i, width in enumerate(widths, start=1):
        ws.column_dimensions[get_column_letter(i)].width = width
    ws.freeze_panes = "A2"
